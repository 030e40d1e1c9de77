package broker_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// Fallback across media (docs/ROUTING.md, PROTOCOL.md §6.15): the tests
// run a broker with short deadlines, the originator "test" for alice, and
// two destinations, "email" (medium email) and "web" (medium web), for
// bob, who prefers e-mail and then the web.

// fallbackCfg is a broker whose deadlines pass in seconds.
var fallbackCfg = broker.Config{Deadline: 3 * time.Second, Grace: 200 * time.Millisecond, SweepInterval: 50 * time.Millisecond}

func bobPrefersEmail(fb *schemas.Fallback) *schemas.Profile {
	return &schemas.Profile{ID: "bob", Addresses: map[string]string{"email": "bob@example.test", "web": "bob"},
		Prefer: []string{"email", "web"}, Fallback: fb}
}

type fallbackFabric struct {
	t     *testing.T
	f     *fabrictest.Fabric
	og    *fabrictest.Inbox
	ogKit *kit.Kit
	ogRun *fabrictest.Running
}

// newFallback starts the fabric with bob's profile and the two
// destinations' media (nil: none of that medium).
func newFallback(t *testing.T, bob *schemas.Profile, email, web kit.Medium) *fallbackFabric {
	return newFallbackMode(t, false, bob, email, web)
}

// newFallbackMode is newFallback, in strict MIAP mode if strict.
func newFallbackMode(t *testing.T, strict bool, bob *schemas.Profile, email, web kit.Medium) *fallbackFabric {
	cfg := fallbackCfg
	cfg.Strict = strict
	return newFallbackCfg(t, cfg, bob, email, web)
}

// newFallbackCfg is newFallback with the broker configuration cfg.
func newFallbackCfg(t *testing.T, cfg broker.Config, bob *schemas.Profile, email, web kit.Medium) *fallbackFabric {
	f := fabrictest.New(t)
	strict := cfg.Strict
	f.StartBroker(cfg)
	f.PutProfiles(&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}}, bob)
	x := &fallbackFabric{t: t, f: f, og: fabrictest.NewInbox()}
	x.ogKit, x.ogRun = f.StartKit(x.og, kit.Config{Gateway: "test", Medium: "test", TransferTimeout: time.Second, Strict: strict})
	if email != nil {
		f.StartKit(email, kit.Config{Gateway: "email", Medium: "email", Strict: strict})
	}
	if web != nil {
		f.StartKit(web, kit.Config{Gateway: "web", Medium: "web", Strict: strict})
	}
	return x
}

// send sends one message to bob until the fabric routes it (the brokers
// hear the heartbeats), and returns its id with Send's last answer.
func (x *fallbackFabric) send(text string) (string, *kit.Result, error) {
	s := submission(text)
	s.MsgID = kit.NewMsgID()
	var res *kit.Result
	var err error
	fabrictest.Eventually(x.t, 10*time.Second, "a route to bob", func() bool {
		res, err = x.ogKit.Send(context.Background(), s)
		return miap.CodeOf(err) != schemas.CodeNoRoute
	})
	return s.MsgID, res, err
}

// final waits until the message has its outcome and returns its status.
func (x *fallbackFabric) final(msgID string) *schemas.TxStatus {
	var st *schemas.TxStatus
	fabrictest.Eventually(x.t, 20*time.Second, "the outcome", func() bool {
		var err error
		st, err = x.ogKit.Query(context.Background(), msgID)
		return err == nil && schemas.Terminal(st.State)
	})
	return st
}

// terminalNotes waits for the sender's one terminal status and checks
// that no other terminal status comes within a while.
func (x *fallbackFabric) terminalNote(msgID string) *schemas.StatusEvent {
	var n *schemas.StatusEvent
	fabrictest.Eventually(x.t, 20*time.Second, "the sender's final status", func() bool {
		for _, s := range x.og.Statuses(msgID) {
			if schemas.Terminal(s) {
				n = x.og.Note(msgID)
				return true
			}
		}
		return false
	})
	time.Sleep(500 * time.Millisecond)
	terminal := 0
	for _, s := range x.og.Statuses(msgID) {
		if schemas.Terminal(s) && s != schemas.StatusRead {
			terminal++
		}
	}
	if terminal != 1 {
		x.t.Fatalf("the sender heard %v: want exactly one terminal status", x.og.Statuses(msgID))
	}
	return n
}

// entries returns the history entries with status.
func entries(st *schemas.TxStatus, status string) []schemas.HistoryEntry {
	var out []schemas.HistoryEntry
	for _, h := range st.History {
		if h.Status == status {
			out = append(out, h)
		}
	}
	return out
}

func permanent(code schemas.Code, reason string) *fabrictest.Inbox {
	in := fabrictest.NewInbox()
	in.Fail = schemas.Errorf(code, nil, reason)
	return in
}

// A permanent failure on the first medium (the destination acknowledges
// failed with UNKNOWN_RECIPIENT) reaches the second medium's destination:
// the history shows both attempts, the sender hears rerouted as
// information and then one delivered that says how.
func TestFallbackOnPermanentFailure(t *testing.T) {
	for _, strict := range []bool{false, true} {
		t.Run(map[bool]string{false: "fast", true: "strict"}[strict], func(t *testing.T) { testFallbackOnPermanentFailure(t, strict) })
	}
}

func testFallbackOnPermanentFailure(t *testing.T, strict bool) {
	email, web := permanent(schemas.CodeUnknownRecipient, "550 5.1.1 no such mailbox"), fabrictest.NewInbox()
	x := newFallbackMode(t, strict, bobPrefersEmail(nil), email, web)
	msgID, res, err := x.send("fall back")
	if err != nil {
		t.Fatalf("Send: %v (a message routed with fallback is accepted when its first medium refuses it)", err)
	}
	t.Logf("Send answered %s to %s", res.Status, res.Dest.Gateway)
	st := x.final(msgID)
	if st.State != schemas.StatusDelivered || st.Dest.Medium != "web" || st.Attempt != 2 {
		t.Fatalf("state %s on %+v attempt %d; history %+v", st.State, st.Dest, st.Attempt, st.History)
	}
	if d := web.Get(msgID); d == nil || string(d.Content) != "fall back" || d.Routed.Attempt != 2 {
		t.Fatalf("web delivery %+v", d)
	}
	af := entries(st, schemas.HistoryAttemptFailed)
	rr := entries(st, schemas.StatusRerouted)
	dl := entries(st, schemas.StatusDelivered)
	if len(af) != 1 || af[0].Attempt != 1 || af[0].Medium != "email" || af[0].Code != "UNKNOWN_RECIPIENT" || !strings.Contains(af[0].Reason, "550 5.1.1") {
		t.Errorf("attempt-failed %+v", af)
	}
	if len(rr) != 1 || rr[0].Attempt != 2 || rr[0].Medium != "web" || rr[0].Reason != "to web:bob" {
		t.Errorf("rerouted %+v", rr)
	}
	if ra := entries(st, "route-acknowledged"); strict && len(ra) != 2 {
		t.Errorf("strict: route acknowledgements %+v, want one per attempt", ra)
	}
	if len(dl) != 1 || dl[0].Attempt != 2 || dl[0].Medium != "web" || len(entries(st, schemas.StatusFailed)) != 0 {
		t.Errorf("history %+v", st.History)
	}
	n := x.terminalNote(msgID)
	if n.Status != schemas.StatusDelivered || n.Dest.Medium != "web" || n.Attempt != 2 ||
		!strings.Contains(n.Reason, "delivered (web, after email failed: UNKNOWN_RECIPIENT 550 5.1.1 no such mailbox)") ||
		len(n.Earlier) != 1 || n.Earlier[0].Medium != "email" {
		t.Errorf("final status %+v", n)
	}
	if r := x.og.NoteOf(msgID, schemas.StatusRerouted); r == nil || r.Dest.Medium != "web" || r.Routed != "" {
		t.Errorf("the medium was told rerouted as %+v (and never the IMI′)", r)
	}
	x.noKeptContent(msgID)
}

// noKeptContent checks that the originator dropped the content it kept.
func (x *fallbackFabric) noKeptContent(msgID string) {
	x.t.Helper()
	js, _ := jetstream.New(x.f.Conn("check"))
	fabrictest.Eventually(x.t, 5*time.Second, "the kept content dropped", func() bool {
		kv, err := js.KeyValue(context.Background(), schemas.KeptContentBucket("test"))
		if err != nil {
			return true
		}
		_, err = kv.Get(context.Background(), msgID)
		return err != nil
	})
}

// hangs takes a transfer and never answers it: a destination that does
// not acknowledge before the deadline.
type hangs struct{ *fabrictest.Inbox }

func (h hangs) Deliver(ctx context.Context, d *kit.Delivery) (string, error) {
	<-ctx.Done()
	return "", schemas.Errorf(schemas.CodeBusy, nil, "hung")
}

// A destination that never answers: at the deadline the message goes on to
// the next medium (the originator's transfer timed out, its client was told
// to try again; the brokers moved on meanwhile).
func TestFallbackOnDeadline(t *testing.T) {
	web := fabrictest.NewInbox()
	x := newFallback(t, bobPrefersEmail(nil), hangs{fabrictest.NewInbox()}, web)
	msgID, _, err := x.send("too slow")
	t.Logf("Send: %v", err)
	st := x.final(msgID)
	if st.State != schemas.StatusDelivered || st.Dest.Medium != "web" {
		t.Fatalf("state %s; history %+v", st.State, st.History)
	}
	af := entries(st, schemas.HistoryAttemptFailed)
	if len(af) != 1 || af[0].Code != "EXPIRED" || af[0].Medium != "email" {
		t.Fatalf("attempt-failed %+v", af)
	}
	if n := x.terminalNote(msgID); !strings.Contains(n.Reason, "after email expired: EXPIRED") {
		t.Errorf("final status %+v", n)
	}
}

// A destination that took the message for later delivery (transferred)
// gets no more than the time fallback.after gives its medium.
func TestFallbackAfterPerMedium(t *testing.T) {
	email := fabrictest.NewInbox()
	email.Status = schemas.StatusTransferred
	web := fabrictest.NewInbox()
	x := newFallback(t, bobPrefersEmail(&schemas.Fallback{After: map[string]string{"email": "1s"}}), email, web)
	start := time.Now()
	msgID, res, err := x.send("waiting for a bounce")
	if err != nil || res.Status != schemas.StatusTransferred {
		t.Fatalf("Send: %+v %v", res, err)
	}
	st := x.final(msgID)
	if st.State != schemas.StatusDelivered || st.Dest.Medium != "web" {
		t.Fatalf("state %s; history %+v", st.State, st.History)
	}
	if took := time.Since(start); took > 2*fallbackCfg.Deadline {
		t.Errorf("moved on after %v: the medium's 1 s were not heeded", took)
	}
	af := entries(st, schemas.HistoryAttemptFailed)
	if len(af) != 1 || af[0].Code != "EXPIRED" || !strings.Contains(af[0].Reason, "time its medium may take") {
		t.Fatalf("attempt-failed %+v", af)
	}
}

// Nothing left to try: the message fails with the last attempt's code
// and a reason that names every attempt; the sender hears one failure.
func TestFallbackNothingLeft(t *testing.T) {
	email := permanent(schemas.CodeUnknownRecipient, "550 5.1.1 no such mailbox")
	web := permanent(schemas.CodeRejected, "inbox closed")
	x := newFallback(t, bobPrefersEmail(nil), email, web)
	msgID, _, err := x.send("nowhere")
	t.Logf("Send: %v", err)
	st := x.final(msgID)
	if st.State != schemas.StatusFailed {
		t.Fatalf("state %s; history %+v", st.State, st.History)
	}
	n := x.terminalNote(msgID)
	if n.Status != schemas.StatusFailed || n.Code != "REJECTED" ||
		n.Reason != "email: UNKNOWN_RECIPIENT 550 5.1.1 no such mailbox; web: REJECTED inbox closed" {
		t.Fatalf("final status %+v", n)
	}
	x.noKeptContent(msgID)
}

// A message for a client with one medium works as before: no fallback
// flag, no content kept, a failure fails it with the destination's reason.
func TestFallbackSingleMediumUnchanged(t *testing.T) {
	web := permanent(schemas.CodeRejected, "inbox closed")
	x := newFallback(t, &schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob"}, Prefer: []string{"web"}}, nil, web)
	msgID, _, err := x.send("only web")
	if miap.CodeOf(err) != schemas.CodeRejected {
		t.Fatalf("Send: %v, want REJECTED as before", err)
	}
	st := x.final(msgID)
	if st.State != schemas.StatusFailed || st.Attempt != 0 {
		t.Fatalf("state %s attempt %d", st.State, st.Attempt)
	}
	for _, h := range st.History {
		if h.Attempt != 0 || h.Medium != "" || h.Status == schemas.HistoryAttemptFailed || h.Status == schemas.StatusRerouted {
			t.Errorf("history entry %+v of a message routed once", h)
		}
	}
	n := x.terminalNote(msgID)
	if n.Reason != "inbox closed" || n.Attempt != 0 || len(n.Earlier) != 0 {
		t.Errorf("final status %+v", n)
	}
	for _, s := range x.og.Statuses(msgID) {
		if s == schemas.StatusRerouted {
			t.Error("rerouted")
		}
	}
	js, _ := jetstream.New(x.f.Conn("check"))
	if kv, err := js.KeyValue(context.Background(), schemas.KeptContentBucket("test")); err == nil {
		if _, err := kv.Get(context.Background(), msgID); err == nil {
			t.Error("the content of a message without fallback was kept")
		}
	}
}

// gate holds deliveries until it is opened.
type gate struct {
	*fabrictest.Inbox
	open chan struct{}
	once sync.Once
}

func newGate() *gate { return &gate{Inbox: fabrictest.NewInbox(), open: make(chan struct{})} }

func (g *gate) Deliver(ctx context.Context, d *kit.Delivery) (string, error) {
	select {
	case <-g.open:
	case <-ctx.Done():
		return "", schemas.Errorf(schemas.CodeBusy, nil, "gate")
	}
	return g.Inbox.Deliver(ctx, d)
}

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

// lateFabric routes a message to e-mail, which takes it for later
// delivery and does not report within its second, then to the web.
func lateFabric(t *testing.T, web kit.Medium) (*fallbackFabric, *fabrictest.Inbox, *kit.Kit) {
	email := fabrictest.NewInbox()
	email.Status = schemas.StatusTransferred
	f := fabrictest.New(t)
	f.StartBroker(fallbackCfg)
	f.PutProfiles(&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}},
		bobPrefersEmail(&schemas.Fallback{After: map[string]string{"email": "1s"}}))
	x := &fallbackFabric{t: t, f: f, og: fabrictest.NewInbox()}
	x.ogKit, x.ogRun = f.StartKit(x.og, kit.Config{Gateway: "test", Medium: "test", TransferTimeout: 5 * time.Second})
	emailKit, _ := f.StartKit(email, kit.Config{Gateway: "email", Medium: "email"})
	f.StartKit(web, kit.Config{Gateway: "web", Medium: "web"})
	return x, email, emailKit
}

// waitAttempt waits until the message is on its attempt n.
func (x *fallbackFabric) waitAttempt(msgID string, n int) {
	fabrictest.Eventually(x.t, 10*time.Second, "the next attempt", func() bool {
		st, err := x.ogKit.Query(context.Background(), msgID)
		return err == nil && st.Attempt >= n
	})
}

// Late success of an earlier attempt (docs/ROUTING.md, "Late
// acknowledgements"), first order: e-mail reports delivered after the
// message moved on to the web but before the web did. The e-mail
// attempt's acknowledgement is checked against its own ID, and it ends the
// transaction: delivered on e-mail. The web's later acknowledgement is
// recorded and changes nothing; the sender hears one delivered.
func TestLateSuccessBeforeTheNextAttempt(t *testing.T) {
	web := newGate()
	x, email, emailKit := lateFabric(t, web)
	msgID, _, err := x.send("late")
	if err != nil {
		t.Fatal(err)
	}
	x.waitAttempt(msgID, 2)
	d := email.Get(msgID)
	if err := emailKit.Ack(context.Background(), d.Ref, schemas.StatusDelivered, "", ""); err != nil {
		t.Fatalf("late acknowledgement: %v", err)
	}
	st := x.final(msgID)
	if st.State != schemas.StatusDelivered {
		t.Fatalf("state %s", st.State)
	}
	n := x.terminalNote(msgID)
	if n.Dest.Medium != "email" || n.Attempt != 1 || !strings.Contains(n.Reason, "acknowledged late") {
		t.Errorf("final status %+v", n)
	}
	web.release()
	// the web's acknowledgement may go through its outbox (UIMS_ACKS) when
	// the broker was busy: on a loaded machine that retry takes a while
	fabrictest.Eventually(t, 30*time.Second, "the web's acknowledgement recorded", func() bool {
		st, _ = x.ogKit.Query(context.Background(), msgID)
		return len(entries(st, schemas.HistoryRecorded)) == 1
	})
	rec := entries(st, schemas.HistoryRecorded)[0]
	if st.State != schemas.StatusDelivered || rec.Attempt != 2 || rec.Medium != "web" || !strings.HasPrefix(rec.Reason, "delivered") {
		t.Fatalf("state %s, recorded %+v", st.State, rec)
	}
	dl := entries(st, schemas.StatusDelivered)
	if len(dl) != 1 || dl[0].Attempt != 1 || dl[0].Medium != "email" {
		t.Fatalf("delivered entries %+v", dl)
	}
	x.terminalNote(msgID) // still one
}

// Second order: the web delivered first, then e-mail's late success comes:
// recorded only.
func TestLateSuccessAfterTheOutcome(t *testing.T) {
	web := fabrictest.NewInbox()
	x, email, emailKit := lateFabric(t, web)
	msgID, _, err := x.send("late again")
	if err != nil {
		t.Fatal(err)
	}
	st := x.final(msgID)
	if st.State != schemas.StatusDelivered || st.Dest.Medium != "web" {
		t.Fatalf("state %s on %s: %+v", st.State, st.Dest.Medium, st.History)
	}
	if err := emailKit.Ack(context.Background(), email.Get(msgID).Ref, schemas.StatusDelivered, "", ""); err != nil {
		t.Fatalf("late acknowledgement: %v", err)
	}
	// and a late failure of it too
	if err := emailKit.Ack(context.Background(), email.Get(msgID).Ref, schemas.StatusFailed, "UNKNOWN_RECIPIENT", "bounced"); err != nil {
		t.Fatalf("late failure: %v", err)
	}
	st, _ = x.ogKit.Query(context.Background(), msgID)
	rec := entries(st, schemas.HistoryRecorded)
	if st.State != schemas.StatusDelivered || len(rec) != 2 || rec[0].Attempt != 1 || rec[0].Medium != "email" {
		t.Fatalf("state %s, recorded %+v", st.State, rec)
	}
	if n := x.terminalNote(msgID); n.Dest.Medium != "web" {
		t.Errorf("final status %+v", n)
	}
}

// A late acknowledgement is checked against its attempt's ID: e-mail
// cannot acknowledge the web attempt, nor its own with a forged ID.
func TestLateAcknowledgementNeedsItsID(t *testing.T) {
	web := newGate()
	x, email, emailKit := lateFabric(t, web)
	msgID, _, err := x.send("ids")
	if err != nil {
		t.Fatal(err)
	}
	x.waitAttempt(msgID, 2)
	ref := email.Get(msgID).Ref
	forged := ref
	forged.ID = miap.EncodeB64(make([]byte, 32))
	// not the ID of any of its attempts: e-mail is not the current hop
	if err := emailKit.Ack(context.Background(), forged, schemas.StatusDelivered, "", ""); miap.CodeOf(err) != schemas.CodeNotAllowed {
		t.Fatalf("forged ID: %v", err)
	}
	st, _ := x.ogKit.Query(context.Background(), msgID)
	if schemas.Terminal(st.State) {
		t.Fatalf("a forged late acknowledgement ended it: %s", st.State)
	}
	web.release()
	if st := x.final(msgID); st.State != schemas.StatusDelivered || st.Dest.Medium != "web" {
		t.Fatalf("state %s on %s: %+v", st.State, st.Dest.Medium, st.History)
	}
}

// The originator restarting between attempts still has the content: it
// is kept in JetStream, not in the process.
func TestFallbackAfterOriginatorRestart(t *testing.T) {
	email := fabrictest.NewInbox()
	email.Status = schemas.StatusTransferred
	web := fabrictest.NewInbox()
	x := newFallback(t, bobPrefersEmail(&schemas.Fallback{After: map[string]string{"email": "1s"}}), email, web)
	msgID, _, err := x.send("survives a restart")
	if err != nil {
		t.Fatal(err)
	}
	x.ogRun.Stop() // the originator's process goes before the reroute
	x.ogKit.Conn().Close()
	q, err := kit.New(x.f.Conn("query"), x.f.Keyring("test"), fabrictest.NewInbox(), kit.Config{Gateway: "test", Medium: "test"}, x.f.Log)
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Eventually(t, 10*time.Second, "the reroute", func() bool {
		st, err := q.Query(context.Background(), msgID)
		return err == nil && st.Attempt == 2
	})
	og2 := fabrictest.NewInbox()
	x.f.StartKit(og2, kit.Config{Gateway: "test", Medium: "test"})
	fabrictest.Eventually(t, 15*time.Second, "the delivery on the web", func() bool { return web.Get(msgID) != nil })
	if d := web.Get(msgID); string(d.Content) != "survives a restart" {
		t.Fatalf("content %q", d.Content)
	}
	fabrictest.Eventually(t, 10*time.Second, "the sender told", func() bool { return og2.NoteOf(msgID, schemas.StatusDelivered) != nil })
}

// A reroute notification that is replayed, or forged, is refused by the
// originator: nothing is transferred for it.
func TestRerouteNotificationReplayedOrForged(t *testing.T) {
	email := permanent(schemas.CodeUnknownRecipient, "550 5.1.1 no such mailbox")
	web := fabrictest.NewInbox()
	x := newFallback(t, bobPrefersEmail(nil), email, web)
	watch := x.f.Conn("watch")
	notes := make(chan *nats.Msg, 16)
	sub, err := watch.ChanSubscribe(schemas.StatusFor("test"), notes)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	msgID, _, err := x.send("once")
	if err != nil {
		t.Fatal(err)
	}
	x.final(msgID)
	var reroute *nats.Msg
	fabrictest.Eventually(t, 5*time.Second, "the reroute notification", func() bool {
		select {
		case m := <-notes:
			if strings.Contains(string(m.Data), `"status":"rerouted"`) {
				reroute = m
			}
		default:
		}
		return reroute != nil
	})
	fabrictest.Eventually(t, 5*time.Second, "the transfer", func() bool { return web.Deliveries(msgID) == 1 })
	republish := func(data []byte, h nats.Header) {
		m := nats.NewMsg(schemas.StatusFor("test"))
		for k, v := range h {
			m.Header[k] = v
		}
		m.Header.Set(jetstream.MsgIDHeader, kit.NewMsgID()) // past the stream's de-duplication
		m.Data = data
		js, _ := jetstream.New(watch)
		if _, err := js.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	// replayed as it was
	republish(reroute.Data, reroute.Header)
	// forged: the route changed (another address), the MAC no longer fits
	forged := strings.Replace(string(reroute.Data), `"tx"`, `"tx" `, 1)
	republish([]byte(forged), reroute.Header)
	time.Sleep(2 * time.Second)
	if n := web.Deliveries(msgID); n != 1 {
		t.Fatalf("the web got %d transfers: a replayed or forged reroute was followed", n)
	}
}

// Content larger than a NATS message is kept in the originator's object
// store and goes to the next destination by reference (PROTOCOL.md §10).
func TestFallbackLargeContent(t *testing.T) {
	email, web := permanent(schemas.CodeUnknownRecipient, "550 5.1.1 no such mailbox"), fabrictest.NewInbox()
	cfg := fallbackCfg
	cfg.Deadline = 15 * time.Second // 9 MiB through the object store, under -race on a busy machine
	x := newFallbackCfg(t, cfg, bobPrefersEmail(nil), email, web)
	big := strings.Repeat("large content ", (9<<20)/14) // above the server's 8 MiB max_payload
	s := submission(big)
	s.MsgID = kit.NewMsgID()
	fabrictest.Eventually(t, 10*time.Second, "a route to bob", func() bool {
		_, err := x.ogKit.Send(context.Background(), s)
		return miap.CodeOf(err) != schemas.CodeNoRoute
	})
	if st := x.final(s.MsgID); st.State != schemas.StatusDelivered || st.Dest.Medium != "web" {
		t.Fatalf("state %s on %s: %+v", st.State, st.Dest.Medium, st.History)
	}
	if d := web.Get(s.MsgID); d == nil || string(d.Content) != big {
		t.Fatal("the web did not get the large content")
	}
	x.noKeptContent(s.MsgID)
	js, _ := jetstream.New(x.f.Conn("check"))
	os, err := js.ObjectStore(context.Background(), schemas.KeptContentBucket("test"))
	if err != nil {
		t.Fatalf("the large content was not kept in the object store: %v", err)
	}
	fabrictest.Eventually(t, 5*time.Second, "the kept object dropped", func() bool {
		_, err := os.GetInfo(context.Background(), s.MsgID)
		return err != nil
	})
}

// Sealed content (PROTOCOL.md §14.1) falls back only to a medium whose
// hops announce an encryption key: bob prefers e-mail, the web, then SMS;
// the web gateway runs without sealing (no key), so when e-mail refuses
// the message the brokers pass the web over and route it to SMS at once,
// instead of a web attempt the originator cannot seal to and that would
// end only at its deadline.
func TestFallbackPassesOverAMediumWithoutKeys(t *testing.T) {
	f := fabrictest.New(t)
	f.StartBroker(fallbackCfg)
	bob := &schemas.Profile{ID: "bob", Addresses: map[string]string{"email": "bob@example.test", "web": "bob", "sms": "+15550100"},
		Prefer: []string{"email", "web", "sms"}}
	f.PutProfiles(&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}}, bob)
	x := &fallbackFabric{t: t, f: f, og: fabrictest.NewInbox()}
	x.ogKit, x.ogRun = f.StartKit(x.og, kit.Config{Gateway: "test", Medium: "test", TransferTimeout: time.Second})
	email, web, sms := permanent(schemas.CodeUnknownRecipient, "550 5.1.1 no such mailbox"), fabrictest.NewInbox(), fabrictest.NewInbox()
	f.StartKit(email, kit.Config{Gateway: "email", Medium: "email"})
	f.StartKit(web, kit.Config{Gateway: "web", Medium: "web", Seal: miap.SealOff})
	f.StartKit(sms, kit.Config{Gateway: "sms", Medium: "sms"})
	time.Sleep(2 * time.Second) // every gateway's announcement heard (they announce every second)
	msgID, _, err := x.send("sealed")
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	st := x.final(msgID)
	if st.State != schemas.StatusDelivered || st.Dest.Medium != "sms" || st.Attempt != 2 {
		t.Fatalf("state %s on %+v attempt %d; history %+v", st.State, st.Dest, st.Attempt, st.History)
	}
	if d := sms.Get(msgID); d == nil || string(d.Content) != "sealed" || d.Routed.IMI.Content.Sealed == "" {
		t.Fatalf("sms delivery %+v", d)
	}
	if web.Get(msgID) != nil {
		t.Fatal("the web, which has no encryption key, got the sealed message")
	}
	// no attempt on the web, which could only have ended at its deadline
	for _, e := range st.History {
		if e.Medium == "web" || strings.Contains(e.Reason, "web") {
			t.Fatalf("an attempt on the web: %+v", st.History)
		}
	}
}
