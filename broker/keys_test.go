package broker_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/miapnats"
	"github.com/uims/uims/schemas"
)

// A gateway that announces itself for a medium it was not provisioned for
// would be sent that medium's messages: its heartbeats are refused, and
// nothing is routed to it.
func TestAnnounceBoundToGrant(t *testing.T) {
	f := fabrictest.New(t)
	f.AddParty("bot", miap.Grant{Role: miap.RoleGateway, Media: []string{schemas.MediumBot}})
	f.StartBroker(broker.Config{})
	f.PutProfiles(&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}},
		&schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob"}})
	og, thief, dg := fabrictest.NewInbox(), fabrictest.NewInbox(), fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test"})
	f.StartKit(thief, kit.Config{Gateway: "bot", Medium: schemas.MediumWeb, Heartbeat: 200 * time.Millisecond})
	time.Sleep(time.Second) // five of the thief's heartbeats
	if _, err := ogKit.Send(context.Background(), submission("for bob")); miap.CodeOf(err) != schemas.CodeNoRoute {
		t.Fatalf("send with only the thief announcing web: %v, want NO_ROUTE", err)
	}
	f.StartKit(dg, kit.Config{Gateway: "peer", Medium: schemas.MediumWeb})
	res := waitRoute(t, ogKit)
	if res.Dest.Gateway != "peer" {
		t.Errorf("routed to %q, want peer", res.Dest.Gateway)
	}
	if thief.Len() != 0 {
		t.Errorf("the gateway that announced another medium got %d messages", thief.Len())
	}
}

// Parties added to and removed from the key registry take effect in a
// running broker: no restart.
func TestKeyRegistryAddsAndRemovesParties(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	f.PutProfiles(&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice", "bot": "alice-bot"}},
		&schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob"}})
	dg := fabrictest.NewInbox()
	f.StartKit(dg, kit.Config{Gateway: "peer", Medium: schemas.MediumWeb})

	// "late" is added after the broker started
	e, err := miap.NewKeyEntry(rand.Reader, "late", "late-1", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	e.Role, e.Media = miap.RoleGateway, []string{schemas.MediumBot}
	f.Keys.Keys = append(f.Keys.Keys, e)
	js, err := jetstream.New(f.Conn("admin"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := miapnats.PublishKeys(ctx, js, f.Keys, true); err != nil {
		t.Fatal(err)
	}
	late, _ := f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "late", Medium: schemas.MediumBot})
	send := func() error {
		_, err := late.Send(ctx, &kit.Submission{From: schemas.Endpoint{Medium: schemas.MediumBot, Address: "alice-bot", Client: "alice"},
			To: "bob", Content: []byte("from late")})
		return err
	}
	fabrictest.Eventually(t, 10*time.Second, "the added party's message delivered", func() bool { return send() == nil })

	if err := miapnats.DeleteParty(ctx, js, "late"); err != nil {
		t.Fatal(err)
	}
	fabrictest.Eventually(t, 10*time.Second, "the removed party refused", func() bool {
		return miap.CodeOf(send()) == schemas.CodeUnknownKey
	})
	n := dg.Len()
	if err := send(); miap.CodeOf(err) != schemas.CodeUnknownKey {
		t.Errorf("removed party: %v, want UNKNOWN_KEY", err)
	}
	if dg.Len() != n {
		t.Error("a removed party's message was delivered")
	}
}
