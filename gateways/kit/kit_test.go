package kit_test

import (
	"context"
	"testing"
	"time"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

func TestSendDeliverReadAcrossTheFabric(t *testing.T) {
	for _, strict := range []bool{false, true} {
		t.Run(map[bool]string{false: "fast", true: "strict"}[strict], func(t *testing.T) { testSendDeliverRead(t, strict) })
	}
}

func testSendDeliverRead(t *testing.T, strict bool) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	f.PutProfiles(
		&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}},
		&schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob"}, Prefer: []string{"web"}},
	)
	og, dg := fabrictest.NewInbox(), fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test", Strict: strict})
	dgKit, _ := f.StartKit(dg, kit.Config{Gateway: "peer", Medium: "web", Strict: strict})
	ctx := context.Background()
	var res *kit.Result
	fabrictest.Eventually(t, 5*time.Second, "a route to bob", func() bool {
		var err error
		res, err = ogKit.Send(ctx, &kit.Submission{From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"},
			To: "bob", Subject: "hi", Content: []byte("hello bob")})
		return err == nil
	})
	if res.Status != schemas.StatusDelivered || res.Receipt == nil || res.Dest.Gateway != "peer" {
		t.Fatalf("result %+v", res)
	}
	d := dg.Get(res.MsgID)
	if d == nil || string(d.Content) != "hello bob" || d.Routed.Sender != "alice" || d.Routed.Recipient != "bob" {
		t.Fatalf("delivery %+v", d)
	}
	if err := dgKit.Ack(ctx, d.Ref, schemas.StatusRead, "", ""); err != nil {
		t.Fatal(err)
	}
	fabrictest.Eventually(t, 5*time.Second, "delivered and read notifications", func() bool {
		s := og.Statuses(res.MsgID)
		return len(s) == 2
	})
	if s := og.Statuses(res.MsgID); s[0] != schemas.StatusDelivered || s[1] != schemas.StatusRead {
		t.Fatalf("notifications %v", s)
	}
	st, err := ogKit.Query(ctx, res.MsgID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range st.History {
		got = append(got, h.Status)
	}
	want := []string{"accepted", "routed", "delivered", "read"}
	if strict { // the originator's acknowledgement of the routed IMI (PROTOCOL.md §6.4)
		want = []string{"accepted", "routed", "route-acknowledged", "delivered", "read"}
	}
	if len(got) != len(want) {
		t.Fatalf("history %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("history %v, want %v", got, want)
		}
	}
}

// Content larger than a NATS message travels by reference through the
// object store (PROTOCOL.md §10) and is still checked against its ticket.
func TestLargeContentByReference(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	f.PutProfiles(&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}},
		&schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob"}})
	og, dg := fabrictest.NewInbox(), fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test"})
	f.StartKit(dg, kit.Config{Gateway: "peer", Medium: "web"})
	big := make([]byte, 9<<20) // over the 8 MiB max payload of the test server
	for i := range big {
		big[i] = byte(i * 7)
	}
	var res *kit.Result
	fabrictest.Eventually(t, 10*time.Second, "a route to bob", func() bool {
		var err error
		res, err = ogKit.Send(context.Background(), &kit.Submission{From: schemas.Endpoint{Medium: "test", Address: "alice", Client: "alice"},
			To: "bob", Type: "application/octet-stream", Content: big})
		return err == nil
	})
	d := dg.Get(res.MsgID)
	if d == nil || len(d.Content) != len(big) || d.Content[12345] != big[12345] {
		t.Fatalf("large content not delivered intact")
	}
}
