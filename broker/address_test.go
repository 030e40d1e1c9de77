package broker

import (
	"testing"

	"github.com/uims/uims/schemas"
)

// A recipient names its medium with a scheme when its address would be
// taken for another medium's: an xmpp JID looks like an e-mail address.
func TestSplitAndNormalizeAddress(t *testing.T) {
	for _, c := range []struct {
		to, medium, addr string
		ok               bool
	}{
		{"xmpp:Bob@Chat.Example.test/phone", "xmpp", "bob@chat.example.test", true},
		{"mailto:Alice@Example.com", "email", "alice@example.com", true},
		{"tel:+49 170 1234567", "sms", "+491701234567", true},
		{"sms:0049-170-1234567", "sms", "+491701234567", true},
		{"bot:echo", "bot", "echo", true},
		{"web:bob", "web", "bob", true},
		{"alice@example.com", "", "", false},
		{"bob", "", "", false},
		{"+491701234567", "", "", false},
		{"gopher:x", "", "", false}, // not a medium: the whole string is the address
		{"xmpp:", "", "", false},
	} {
		m, a, ok := SplitAddress(c.to)
		if ok != c.ok || m != c.medium || (ok && NormalizeAddress(m, a) != c.addr) {
			t.Errorf("%q: %q %q %v, want %q %q %v", c.to, m, NormalizeAddress(m, a), ok, c.medium, c.addr, c.ok)
		}
	}
}

// A client with SMPP credentials is an SMS application: a message for its
// number waits for its bind unless its profile chose the centre.
func TestDeliveryOptionsHoldForApplications(t *testing.T) {
	app := &schemas.Profile{ID: "erin", SMPP: &schemas.SMPPCredentials{SystemID: "erin"}, Options: map[string]string{"sms.long": "segment"}}
	if o := deliveryOptions(app, schemas.MediumSMS); o["sms.via"] != "smpp" || o["sms.long"] != "segment" {
		t.Errorf("application: %v", o)
	}
	if app.Options["sms.via"] != "" {
		t.Error("the profile's own options were changed")
	}
	if o := deliveryOptions(app, schemas.MediumWeb); o["sms.via"] != "" {
		t.Errorf("web: %v", o)
	}
	chose := &schemas.Profile{ID: "f", SMPP: &schemas.SMPPCredentials{SystemID: "f"}, Options: map[string]string{"sms.via": "smsc"}}
	if o := deliveryOptions(chose, schemas.MediumSMS); o["sms.via"] != "smsc" {
		t.Errorf("chosen: %v", o)
	}
	if o := deliveryOptions(&schemas.Profile{ID: "phone"}, schemas.MediumSMS); o["sms.via"] != "" {
		t.Errorf("a phone: %v", o)
	}
}
