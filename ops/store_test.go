package ops

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/internal/natstest"
	"github.com/uims/uims/internal/tracing"
	"github.com/uims/uims/miap/natsauth"
	"github.com/uims/uims/schemas"
)

// runObserver runs an observer as the observer party name (its own NATS
// identity, with the observer role's permissions) until stop is called.
func runObserver(t *testing.T, ns *server.Server, a *natsauth.Authority, name string) (o *Observer, stop func()) {
	t.Helper()
	errs := make(chan error, 16)
	nc := natstest.ConnectAs(t, ns, a, name, natsauth.RoleObserver, nil, errs)
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Str("observer", name).Logger()
	o = NewObserver(nc, nil, ObserverConfig{Flush: 50 * time.Millisecond, Poll: time.Hour}, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() { done <- o.Run(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("observer %s: %v", name, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("observer %s not ready", name)
	}
	if o.store == nil {
		t.Fatalf("observer %s has no bucket: its permissions refused it", name)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("observer %s: %v", name, err)
			}
			select {
			case err := <-errs:
				t.Errorf("observer %s: %v", name, err)
			default:
			}
		})
	}
	t.Cleanup(stop)
	return o, stop
}

// publish sends events as their parties do: in batches on
// uims.trace.<party>.batch, each party with its own identity.
func publish(t *testing.T, ns *server.Server, a *natsauth.Authority, evs []Event) {
	t.Helper()
	pubs := map[string]*tracing.Publisher{}
	for _, ev := range evs {
		p := pubs[ev.Source]
		if p == nil {
			role, media := natsauth.RoleGateway, []string{schemas.MediumWeb}
			if ev.Source == "broker" {
				role, media = natsauth.RoleBroker, nil
			}
			p = tracing.New(natstest.ConnectAs(t, ns, a, ev.Source, role, media, nil), ev.Source, 0, 0)
			pubs[ev.Source] = p
		}
		te := ev.TraceEvent
		p.Publish(&te)
	}
	for _, p := range pubs {
		p.Flush()
	}
}

func stepsOf(tl *Timeline) map[string]int {
	out := map[string]int{}
	for _, e := range tl.Events {
		out[e.Source+"."+e.Step+"."+e.Result]++
	}
	return out
}

// TestTimelinesSharedByInstancesAndRestarts runs two operator view
// instances as observer parties against a fabric with NATS permissions:
// both hear the trace batches and show the same timeline; what only one of
// them heard reaches the other through the bucket (two concurrent writers
// lose nothing); and an instance started afterwards, or restarted, shows
// the timeline without having heard a single event of it.
func TestTimelinesSharedByInstancesAndRestarts(t *testing.T) {
	a, err := natsauth.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ns := natstest.RunAuth(t, a)
	o1, stop1 := runObserver(t, ns, a, "ops1")
	o2, _ := runObserver(t, ns, a, "ops2")

	publish(t, ns, a, webToWeb(msgA))
	for _, o := range []*Observer{o1, o2} {
		fabrictest.Eventually(t, 10*time.Second, "the timeline in both instances", func() bool {
			tl, ok := o.Timeline(context.Background(), msgA)
			return ok && tl.State == "read" && len(tl.Events) == 13
		})
	}
	tl1, _ := o1.Timeline(context.Background(), msgA)
	tl2, _ := o2.Timeline(context.Background(), msgA)
	if s1, s2 := stepsOf(tl1), stepsOf(tl2); len(s1) != len(s2) || tl1.Tx != tl2.Tx || tl1.Origin != tl2.Origin {
		t.Fatalf("the instances differ:\n%v %+v\n%v %+v", s1, tl1.TxSummary, s2, tl2.TxSummary)
	}

	// each instance hears one event the other does not, and both write at once
	only1 := ev("web", schemas.TraceEvent{Step: "notified", MsgID: msgA, Tx: "tx-012345", Party: "web", By: "web-2", Result: "read"})
	only2 := ev("broker", schemas.TraceEvent{Step: "notify", MsgID: msgA, Tx: "tx-012345", Party: "web", By: "broker-2", Result: "read"})
	o1.Ingest(only1)
	o2.Ingest(only2)
	var wg sync.WaitGroup
	for _, o := range []*Observer{o1, o2} {
		wg.Add(1)
		go func() { defer wg.Done(); o.Flush(context.Background()) }()
	}
	wg.Wait()
	doc, _, err := o1.store.get(context.Background(), msgA)
	if err != nil || doc == nil {
		t.Fatalf("the bucket lacks the timeline: %v", err)
	}
	if len(doc.Events) != 15 || doc.State != "read" {
		t.Fatalf("the bucket holds %d events (want 13 heard by both + 1 by each), state %s", len(doc.Events), doc.State)
	}
	// the instance that wrote first learns the other's event on its next write
	for _, o := range []*Observer{o1, o2} {
		o.Ingest(ev("web", schemas.TraceEvent{Step: "ack", MsgID: msgA, Tx: "tx-012345", Party: "web", By: "web-3", Result: "read"}))
		o.Flush(context.Background())
	}
	for i, o := range []*Observer{o1, o2} {
		tl, _ := o.Timeline(context.Background(), msgA)
		if len(tl.Events) != 16 {
			t.Fatalf("instance %d shows %d events, want 16", i+1, len(tl.Events))
		}
	}

	// a third instance, started now, shows it without having heard it
	o3, _ := runObserver(t, ns, a, "ops3")
	tl3, ok := o3.Timeline(context.Background(), msgA)
	if !ok || len(tl3.Events) != 16 || tl3.State != "read" || tl3.Tx != "tx-012345" {
		t.Fatalf("a new instance: %v %+v", ok, tl3)
	}
	if txs := o3.Transactions("", 10); len(txs) != 1 || txs[0].MsgID != msgA {
		t.Fatalf("a new instance's recent transactions: %+v", txs)
	}

	// the first one restarts: it still shows the timeline
	stop1()
	o1, _ = runObserver(t, ns, a, "ops1b")
	tl1, ok = o1.Timeline(context.Background(), msgA)
	if !ok || len(tl1.Events) != 16 || tl1.State != "read" || tl1.LatencyMs == 0 {
		t.Fatalf("after a restart: %v %+v", ok, tl1)
	}
	// a message it never heard and no longer holds in memory comes from the bucket
	o4 := NewObserver(nil, nil, ObserverConfig{Messages: 1}, zerolog.Nop())
	o4.store = o1.store
	if tl, ok := o4.Timeline(context.Background(), msgA); !ok || tl.Source != "store" || len(tl.Events) != 16 {
		t.Fatalf("from the bucket: %v %+v", ok, tl)
	}
}

// The merge keeps every event once, whoever heard it and when.
func TestMergeTimelines(t *testing.T) {
	evs := webToWeb(msgA)
	a := &storedTimeline{TxSummary: TxSummary{MsgID: msgA, State: "routed", Origin: "web", First: 5, Last: 9}, Events: evs[:8]}
	b := &storedTimeline{TxSummary: TxSummary{MsgID: msgA, State: "read", Sender: "alice", First: 4, Last: 12, LatencyMs: 2}, Events: slices.Clone(evs[3:])}
	for i := range b.Events {
		b.Events[i].Seen += 100 // heard later by the other instance
	}
	m := merge(a, b, 48)
	if len(m.Events) != 13 || m.Steps != 13 {
		t.Fatalf("%d events, want 13", len(m.Events))
	}
	if m.State != "read" || m.Origin != "web" || m.Sender != "alice" || m.First != 4 || m.Last != 12 || m.LatencyMs != 2 {
		t.Fatalf("summary %+v", m.TxSummary)
	}
	if m := merge(a, b, 5); len(m.Events) != 5 {
		t.Fatalf("bound: %d events", len(m.Events))
	}
}
