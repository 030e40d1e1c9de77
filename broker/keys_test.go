package broker_test

import (
	"context"
	"crypto/rand"
	"sync"
	"sync/atomic"
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

// A gateway's key rotated while it sends: the new key reaches the broker
// (watch) and the gateway (poll of its own entry) before it starts
// signing, both verify in the overlap, the old one is retired after it,
// and not one message is refused or lost (PROTOCOL.md §3.4).
func TestRotationUnderLoadLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 10 s of load")
	}
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	f.PutProfiles(&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}},
		&schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob"}})
	dg := fabrictest.NewInbox()
	f.StartKit(dg, kit.Config{Gateway: "peer", Medium: schemas.MediumWeb})
	js, err := jetstream.New(f.Conn("admin"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := miapnats.PublishKeys(ctx, js, f.Keys, true); err != nil {
		t.Fatal(err)
	}
	og, _ := f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "test", Medium: "test"})
	waitRoute(t, og)
	before := dg.Len()

	var sent, failed atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	// the new key signs from 3 s, the old one is retired at 6 s; load runs to 9 s
	newFrom, oldUntil, end := start.Add(3*time.Second), start.Add(6*time.Second), start.Add(9*time.Second)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				if _, err := og.Send(ctx, submission("rotating")); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				} else {
					sent.Add(1)
				}
			}
		}()
	}
	time.Sleep(time.Second)
	e, err := miap.NewKeyEntry(rand.Reader, "test", "test-2", newFrom)
	if err != nil {
		t.Fatal(err)
	}
	for i := range f.Keys.Keys {
		if f.Keys.Keys[i].Party == "test" {
			e.Role, e.Media = f.Keys.Keys[i].Role, f.Keys.Keys[i].Media
			f.Keys.Keys[i].NotAfter = oldUntil
		}
	}
	f.Keys.Keys = append(f.Keys.Keys, e)
	if err := miapnats.PublishKeys(ctx, js, f.Keys, true); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d sends failed during the rotation; first: %v", n, n+sent.Load(), firstErr.Load())
	}
	fabrictest.Eventually(t, 5*time.Second, "every accepted message delivered", func() bool {
		return dg.Len()-before == int(sent.Load())
	})
	t.Logf("%d messages sent and delivered across the rotation", sent.Load())
	if sent.Load() < 20 {
		t.Errorf("only %d messages sent in 9 s", sent.Load())
	}
	// after the overlap only the new key is good: the sends after 6 s prove
	// the gateway signed with it, since the broker refuses the old kid then
	if time.Now().Before(oldUntil) {
		t.Fatal("the load ended before the old key was retired")
	}
	if _, err := og.Send(ctx, submission("after the overlap")); err != nil {
		t.Errorf("after the overlap: %v", err)
	}
}
