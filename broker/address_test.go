package broker

import "testing"

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
