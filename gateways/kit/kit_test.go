package kit_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// inbox is a medium that records deliveries and notifications in memory.
type inbox struct {
	mu        sync.Mutex
	delivered map[string]*kit.Delivery
	count     map[string]int
	notes     []schemas.StatusEvent
}

func newInbox() *inbox {
	return &inbox{delivered: map[string]*kit.Delivery{}, count: map[string]int{}}
}

func (m *inbox) Deliver(ctx context.Context, d *kit.Delivery) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.delivered[d.Routed.IMI.MsgID]; !dup {
		m.delivered[d.Routed.IMI.MsgID] = d
	}
	m.count[d.Routed.IMI.MsgID]++
	return schemas.StatusDelivered, nil
}

func (m *inbox) Notify(ctx context.Context, ev *schemas.StatusEvent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.notes = append(m.notes, *ev)
	return nil
}

func (m *inbox) statuses(msgID string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, n := range m.notes {
		if n.MsgID == msgID {
			out = append(out, n.Status)
		}
	}
	return out
}

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
	og, dg := newInbox(), newInbox()
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
	d := dg.delivered[res.MsgID]
	if d == nil || string(d.Content) != "hello bob" || d.Routed.Sender != "alice" || d.Routed.Recipient != "bob" {
		t.Fatalf("delivery %+v", d)
	}
	if err := dgKit.Ack(ctx, d.Ref, schemas.StatusRead, "", ""); err != nil {
		t.Fatal(err)
	}
	fabrictest.Eventually(t, 5*time.Second, "delivered and read notifications", func() bool {
		s := og.statuses(res.MsgID)
		return len(s) == 2
	})
	if s := og.statuses(res.MsgID); s[0] != schemas.StatusDelivered || s[1] != schemas.StatusRead {
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
