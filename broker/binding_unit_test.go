package broker

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// The sender binding's rules, without a fabric (PROTOCOL.md §3.5, §6.2).
func TestSenderBindingRules(t *testing.T) {
	var entries []miap.KeyEntry
	for party, g := range map[string]miap.Grant{
		"web":    {Role: miap.RoleGateway, Media: []string{"web"}},
		"email":  {Role: miap.RoleGateway, Media: []string{"email"}},
		"sms":    {Role: miap.RoleGateway, Media: []string{"sms"}},
		"proc":   {Role: miap.RoleProcessor},
		"cli":    {Role: miap.RoleClient, Media: []string{"cli"}},
		"odd":    {Role: "superuser", Media: []string{"web"}},
		"legacy": {},
	} {
		e, err := miap.NewKeyEntry(rand.Reader, party, party+"-1", time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		e.Role, e.Media = g.Role, g.Media
		entries = append(entries, e)
	}
	kr, err := miap.NewKeyring(entries)
	if err != nil {
		t.Fatal(err)
	}
	alice := &schemas.Profile{ID: "alice", Addresses: map[string]string{"email": "Alice@Example.test", "sms": "+15550100"}}
	cases := []struct {
		party string
		from  schemas.Endpoint
		ok    bool
	}{
		{"web", schemas.Endpoint{Medium: "web", Address: "alice", Client: "alice"}, true}, // no web address: the id
		{"web", schemas.Endpoint{Medium: "web", Address: "bob", Client: "alice"}, false},
		{"web", schemas.Endpoint{Medium: "email", Address: "alice@example.test", Client: "alice"}, false},
		{"email", schemas.Endpoint{Medium: "email", Address: "ALICE@example.TEST", Client: "alice"}, true},
		{"email", schemas.Endpoint{Medium: "email", Address: "mallory@example.test", Client: "alice"}, false},
		{"email", schemas.Endpoint{Medium: "email", Address: "carol@outside.test"}, true}, // an outside sender
		{"sms", schemas.Endpoint{Medium: "sms", Address: "15550100", Client: "alice"}, true},
		{"sms", schemas.Endpoint{Medium: "sms", Address: "alice", Client: "alice"}, false},
		{"cli", schemas.Endpoint{Medium: "cli", Address: "alice", Client: "alice"}, true},
		{"cli", schemas.Endpoint{Medium: "cli", Address: "bob", Client: "alice"}, false},
		{"cli", schemas.Endpoint{Medium: "web", Address: "alice", Client: "alice"}, false},
		{"proc", schemas.Endpoint{Medium: "web", Address: "alice", Client: "alice"}, false},
		{"odd", schemas.Endpoint{Medium: "web", Address: "alice", Client: "alice"}, false},
		{"legacy", schemas.Endpoint{Medium: "web", Address: "alice", Client: "alice"}, false},
		{"unknown", schemas.Endpoint{Medium: "web", Address: "alice", Client: "alice"}, false},
	}
	for _, c := range cases {
		g, err := checkGrant(kr, c.party, &c.from)
		if err == nil && c.from.Client != "" && g.Role != miap.RoleClient {
			err = checkOwner(alice, &c.from)
		}
		if (err == nil) != c.ok {
			t.Errorf("%s naming %+v: %v, want ok=%v", c.party, c.from, err, c.ok)
		}
		if err != nil && miap.CodeOf(err) != schemas.CodeNotAllowed {
			t.Errorf("%s naming %+v: code %v, want NOT_ALLOWED", c.party, c.from, miap.CodeOf(err))
		}
	}
}
