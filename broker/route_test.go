package broker

import (
	"context"
	"testing"
	"time"

	"github.com/uims/uims/internal/redistest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// A recipient that names its medium reaches a client by that address, or
// an outside address through a gateway of that medium (the XMPP bridge's
// case: a JID alone looks like an e-mail address).
func TestRouteNamedMediumAndOtherMedia(t *testing.T) {
	_, rdb := redistest.Run(t)
	ctx := context.Background()
	b := &Broker{cfg: Config{Now: time.Now}, profiles: NewProfiles(rdb, nil), reg: newRegistry()}
	for _, p := range []*schemas.Profile{
		{ID: "carol", Addresses: map[string]string{schemas.MediumXMPP: "Carol@Chat.Example.Test"}, Prefer: []string{schemas.MediumXMPP}},
		{ID: "bob", Addresses: map[string]string{schemas.MediumWeb: "bob", schemas.MediumXMPP: "bob@chat.example.test"}},
	} {
		if err := b.profiles.Put(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UnixMilli()
	b.reg.add(&schemas.Announce{V: 1, Gateway: "xmpp", Medium: schemas.MediumXMPP, Instance: "x1", Reach: []string{"*"}, TTL: 60_000, At: now})
	b.reg.add(&schemas.Announce{V: 1, Gateway: "web", Medium: schemas.MediumWeb, Instance: "w1", TTL: 60_000, At: now})

	route := func(to string) (*decision, error) {
		return b.route(ctx, &schemas.IMI{To: to, Content: schemas.Content{Type: "text/plain; charset=utf-8"}}, nil)
	}
	for _, c := range []struct{ to, client, gateway, addr string }{
		{"carol", "carol", "xmpp", "carol@chat.example.test"},                        // xmpp only: after the default order
		{"xmpp:carol@chat.example.test", "carol", "xmpp", "carol@chat.example.test"}, // by her address
		{"bob", "bob", "web", "bob"},                                                 // web first by default
		{"xmpp:dave@chat.example.test", "", "xmpp", "dave@chat.example.test"},        // outside
		{"xmpp:Dave@Chat.Example.Test/phone", "", "xmpp", "dave@chat.example.test"},
	} {
		d, err := route(c.to)
		if err != nil {
			t.Errorf("route %q: %v", c.to, err)
			continue
		}
		client := ""
		if d.recipient != nil {
			client = d.recipient.ID
		}
		if client != c.client || d.dest.Gateway != c.gateway || d.dest.Address != c.addr {
			t.Errorf("route %q: client %q, dest %+v", c.to, client, d.dest)
		}
	}
	// dave@chat.example.test alone looks like e-mail, which no gateway serves here
	if _, err := route("dave@chat.example.test"); miap.CodeOf(err) != schemas.CodeNoRoute {
		t.Errorf("route of a JID without its medium: %v, want NO_ROUTE", err)
	}
}
