package broker_test

import (
	"context"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// gatedInbox delivers like fabrictest.Inbox; while hold is set, a
// delivery tells entered and waits for release.
type gatedInbox struct {
	*fabrictest.Inbox
	hold    atomic.Bool
	entered chan string
	release chan struct{}
}

func (g *gatedInbox) Deliver(ctx context.Context, d *kit.Delivery) (string, error) {
	if g.hold.Load() {
		g.entered <- d.Routed.IMI.MsgID
		<-g.release
	}
	return g.Inbox.Deliver(ctx, d)
}

// The brokers are all down for longer than a transaction's deadline while
// the destination stores the message: its acknowledgement waits in the
// outbox, and the deadline does not count the outage, so the message ends
// delivered — never failed while in the recipient's inbox
// (docs/RELIABILITY.md, "Deadlines").
func TestBrokerOutageLongerThanDeadline(t *testing.T) {
	f := fabrictest.New(t)
	cfg := broker.Config{Deadline: 2 * time.Second, Grace: 500 * time.Millisecond, SweepInterval: 50 * time.Millisecond}
	_, b1 := f.StartBroker(cfg)
	profiles(f)
	og := fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test", TransferTimeout: 10 * time.Second})
	dg := &gatedInbox{Inbox: fabrictest.NewInbox(), entered: make(chan string, 1), release: make(chan struct{})}
	f.StartKit(dg, kit.Config{Gateway: "peer", Medium: "web"})
	waitRoute(t, ogKit)
	dg.hold.Store(true)

	s := submission("through the outage")
	s.MsgID = kit.NewMsgID()
	go ogKit.Send(context.Background(), s)
	select {
	case id := <-dg.entered:
		if id != s.MsgID {
			t.Fatalf("delivering %s, want %s", id, s.MsgID)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not delivered to the destination")
	}
	b1.Stop()                   // every broker down ...
	close(dg.release)           // ... while the destination stores the message: its ack waits in the outbox
	time.Sleep(4 * time.Second) // twice the deadline
	if dg.Get(s.MsgID) == nil {
		t.Fatal("the destination did not store the message")
	}
	f.StartBroker(cfg)
	fabrictest.Eventually(t, 15*time.Second, "the outcome reported to the originator", func() bool {
		n := og.Note(s.MsgID)
		return n != nil && schemas.Terminal(n.Status)
	})
	st, err := ogKit.Query(context.Background(), s.MsgID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != schemas.StatusDelivered {
		t.Errorf("state %s after the outage, want delivered; history %+v", st.State, st.History)
	}
	for _, h := range st.History {
		if h.Status == schemas.StatusFailed {
			t.Errorf("a failure was recorded for a message in the recipient's inbox: %+v", h)
		}
	}
}

// The store is paused (SIGSTOP) for longer than a transaction's deadline
// while the destination stores the message: the acknowledgement waits in
// the outbox, no deadline passes while the store is away, and the message
// ends delivered.
func TestStorePauseLongerThanDeadline(t *testing.T) {
	f := fabrictest.New(t)
	cfg := broker.Config{Deadline: 2 * time.Second, Grace: 500 * time.Millisecond, SweepInterval: 50 * time.Millisecond}
	f.StartBroker(cfg)
	profiles(f)
	og := fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test", TransferTimeout: 10 * time.Second})
	dg := &gatedInbox{Inbox: fabrictest.NewInbox(), entered: make(chan string, 1), release: make(chan struct{})}
	f.StartKit(dg, kit.Config{Gateway: "peer", Medium: "web"})
	waitRoute(t, ogKit)
	dg.hold.Store(true)

	s := submission("through the pause")
	s.MsgID = kit.NewMsgID()
	go ogKit.Send(context.Background(), s)
	select {
	case <-dg.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("not delivered to the destination")
	}
	pid := f.Redis.PID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	defer resume()
	close(dg.release)
	time.Sleep(4 * time.Second) // twice the deadline
	resume()
	// The outcome reaches the originator in the transfer's reply (a relayed
	// receipt) or as a notification; the transaction's state is the record.
	var st *schemas.TxStatus
	fabrictest.Eventually(t, 20*time.Second, "the outcome", func() bool {
		var err error
		st, err = ogKit.Query(context.Background(), s.MsgID)
		return err == nil && schemas.Terminal(st.State)
	})
	if st.State != schemas.StatusDelivered || dg.Get(s.MsgID) == nil {
		t.Errorf("state %s after the pause (stored: %v), want delivered; history %+v", st.State, dg.Get(s.MsgID) != nil, st.History)
	}
}

// NATS is down for longer than a transaction's deadline right after the
// destination stored the message: neither a broker nor the outbox can take
// its acknowledgement, so the gateway holds it until NATS is back; no
// deadline passes while the brokers cannot hear, and the message ends
// delivered.
func TestNATSOutageLongerThanDeadline(t *testing.T) {
	f := fabrictest.New(t)
	cfg := broker.Config{Deadline: 2 * time.Second, Grace: 500 * time.Millisecond, SweepInterval: 50 * time.Millisecond}
	f.StartBroker(cfg)
	profiles(f)
	og := fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test", TransferTimeout: 3 * time.Second, RequestTimeout: time.Second})
	dg := &gatedInbox{Inbox: fabrictest.NewInbox(), entered: make(chan string, 1), release: make(chan struct{})}
	f.StartKit(dg, kit.Config{Gateway: "peer", Medium: "web", RequestTimeout: time.Second})
	waitRoute(t, ogKit)
	dg.hold.Store(true)

	s := submission("through the NATS outage")
	s.MsgID = kit.NewMsgID()
	go ogKit.Send(context.Background(), s)
	select {
	case <-dg.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("not delivered to the destination")
	}
	go func() {
		time.Sleep(100 * time.Millisecond) // NATS goes down while the message is stored
		close(dg.release)
	}()
	f.RestartNATS(4 * time.Second) // twice the deadline
	if dg.Get(s.MsgID) == nil {
		t.Fatal("the destination did not store the message")
	}
	var st *schemas.TxStatus
	fabrictest.Eventually(t, 30*time.Second, "the outcome", func() bool {
		var err error
		st, err = ogKit.Query(context.Background(), s.MsgID)
		return err == nil && schemas.Terminal(st.State)
	})
	if st.State != schemas.StatusDelivered {
		t.Errorf("state %s after the NATS outage, want delivered; history %+v", st.State, st.History)
	}
}

// refuseWhenSet is a medium that answers BUSY while refuse is set.
type refuseWhenSet struct {
	*fabrictest.Inbox
	refuse atomic.Bool
}

func (r *refuseWhenSet) Deliver(ctx context.Context, d *kit.Delivery) (string, error) {
	if r.refuse.Load() {
		return "", schemas.Errorf(schemas.CodeBusy, nil, "test: not this instance")
	}
	return r.Inbox.Deliver(ctx, d)
}

// storeThenHang stores a delivery and never returns: a destination gateway
// that dies after it stored a message and before its acknowledgement left.
type storeThenHang struct{ *fabrictest.Inbox }

func (s storeThenHang) Deliver(ctx context.Context, d *kit.Delivery) (string, error) {
	s.Inbox.Deliver(ctx, d)
	<-ctx.Done()
	select {} // the acknowledgement never leaves
}

// A destination stores a message and never acknowledges it; another
// instance of the same gateway, sharing its store, runs (the gateway came
// back). At the deadline the broker asks the destination whether it holds
// the message (PROTOCOL.md §6.14): it does, acknowledges it, and the
// message ends delivered instead of failed while in the recipient's inbox.
func TestDeadlineAsksTheDestination(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{Deadline: 2 * time.Second, Grace: 500 * time.Millisecond, SweepInterval: 50 * time.Millisecond})
	profiles(f)
	og := fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test", TransferTimeout: time.Second})
	store := fabrictest.NewInbox()
	healthy := &refuseWhenSet{Inbox: store}
	f.StartKit(healthy, kit.Config{Gateway: "peer", Medium: "web"})
	waitRoute(t, ogKit)

	// the next message goes to an instance that stores it and hangs
	k, err := kit.New(f.Conn("gw-peer-2"), f.Keyring("peer"), storeThenHang{store}, kit.Config{Gateway: "peer", Medium: "web"}, f.Log)
	if err != nil {
		t.Fatal(err)
	}
	hangCtx, hang := context.WithCancel(context.Background())
	defer hang()
	go k.Run(hangCtx, nil)
	healthy.refuse.Store(true) // the healthy instance takes no transfer: it only answers the deadline check
	s := submission("stored, never acknowledged")
	s.MsgID = kit.NewMsgID()
	fabrictest.Eventually(t, 10*time.Second, "the message stored by the hanging instance", func() bool {
		ogKit.Send(context.Background(), s)
		return store.Get(s.MsgID) != nil
	})
	var st *schemas.TxStatus
	fabrictest.Eventually(t, 15*time.Second, "the outcome", func() bool {
		st, err = ogKit.Query(context.Background(), s.MsgID)
		return err == nil && schemas.Terminal(st.State)
	})
	if st.State != schemas.StatusDelivered {
		t.Errorf("state %s, want delivered (the destination holds it); history %+v", st.State, st.History)
	}
}

// With WaitReplicas a write counts only once a replica has it: a store
// without replicas answers STORE_UNAVAILABLE (retryable) instead of
// routing a transaction a Sentinel failover could lose.
func TestWaitReplicasRefusesUnreplicatedWrites(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{WaitReplicas: 1, WaitTimeout: 50 * time.Millisecond})
	profiles(f)
	ogKit, _ := f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "test", Medium: "test"})
	f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "peer", Medium: "web"})
	var err error
	fabrictest.Eventually(t, 10*time.Second, "an answer from the store", func() bool {
		_, err = ogKit.Send(context.Background(), submission("unreplicated"))
		return miap.CodeOf(err) != schemas.CodeNoRoute
	})
	if miap.CodeOf(err) != schemas.CodeStoreUnavailable {
		t.Fatalf("send with no replica to wait for: %v, want STORE_UNAVAILABLE", err)
	}
}

// A Redis that lost its script cache (restarted, or SCRIPT FLUSH) answers
// NOSCRIPT to the pipelined EVALSHA: the broker runs the scripts again
// with their source, and the messages go through.
func TestScriptCacheFlushed(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	profiles(f)
	ogKit, _ := f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "test", Medium: "test"})
	dest := fabrictest.NewInbox()
	f.StartKit(dest, kit.Config{Gateway: "peer", Medium: "web"})
	waitRoute(t, ogKit)
	if err := f.RDB.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	s := submission("after the flush")
	s.MsgID = kit.NewMsgID()
	if _, err := ogKit.Send(context.Background(), s); err != nil {
		t.Fatalf("send after SCRIPT FLUSH: %v", err)
	}
	var st *schemas.TxStatus
	fabrictest.Eventually(t, 10*time.Second, "the outcome", func() bool {
		var err error
		st, err = ogKit.Query(context.Background(), s.MsgID)
		return err == nil && schemas.Terminal(st.State)
	})
	if st.State != schemas.StatusDelivered || dest.Get(s.MsgID) == nil {
		t.Fatalf("state %s after SCRIPT FLUSH, want delivered; history %+v", st.State, st.History)
	}
}
