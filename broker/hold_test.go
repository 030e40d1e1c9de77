package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// Holds (docs/ROUTING.md "Holds", PROTOCOL.md §6.16): quiet hours,
// scheduled messages, cancel. The fabric: a broker, the originator "test"
// for alice, and bob's SMS and web gateways (Inboxes), every party on one
// settable clock.

type holdFabric struct {
	t        *testing.T
	f        *fabrictest.Fabric
	clock    *fabrictest.Clock
	og       *fabrictest.Inbox
	ogKit    *kit.Kit
	ogRun    *fabrictest.Running
	sms, web *fabrictest.Inbox
	cfg      broker.Config
	stopB    *fabrictest.Running
}

func newHold(t *testing.T, start time.Time, profiles ...*schemas.Profile) *holdFabric {
	return newHoldWith(t, start, nil, profiles...)
}

// newHoldWith is newHold with set called before the gateways start.
func newHoldWith(t *testing.T, start time.Time, set func(*holdFabric), profiles ...*schemas.Profile) *holdFabric {
	x := &holdFabric{t: t, f: fabrictest.New(t), clock: fabrictest.NewClock(start), og: fabrictest.NewInbox(),
		sms: fabrictest.NewInbox(), web: fabrictest.NewInbox()}
	x.f.AddParty("other", fabrictest.Grants["test"])
	if set != nil {
		set(x)
	}
	x.cfg = fallbackCfg
	x.cfg.Now = x.clock.Now
	_, x.stopB = x.f.StartBroker(x.cfg)
	x.f.PutProfiles(append([]*schemas.Profile{{ID: "alice", Addresses: map[string]string{"test": "alice"}}}, profiles...)...)
	x.startOG()
	x.f.StartKit(x.sms, kit.Config{Gateway: "sms", Medium: "sms", Now: x.clock.Now})
	x.f.StartKit(x.web, kit.Config{Gateway: "web", Medium: "web", Now: x.clock.Now})
	return x
}

func (x *holdFabric) startOG() {
	x.ogKit, x.ogRun = x.f.StartKit(x.og, kit.Config{Gateway: "test", Medium: "test", TransferTimeout: time.Second, Now: x.clock.Now})
}

// send sends s until the fabric routes it (the brokers hear the heartbeats).
func (x *holdFabric) send(s *kit.Submission) (*kit.Result, error) {
	if s.MsgID == "" {
		s.MsgID = kit.NewMsgID()
	}
	var res *kit.Result
	var err error
	fabrictest.Eventually(x.t, 10*time.Second, "a route to bob", func() bool {
		res, err = x.ogKit.Send(context.Background(), s)
		return miap.CodeOf(err) != schemas.CodeNoRoute
	})
	return res, err
}

func (x *holdFabric) status(msgID string) *schemas.TxStatus {
	st, err := x.ogKit.Query(context.Background(), msgID)
	if err != nil {
		x.t.Fatalf("status of %s: %v", msgID, err)
	}
	return st
}

func (x *holdFabric) delivered(in *fabrictest.Inbox, msgID string) {
	fabrictest.Eventually(x.t, 15*time.Second, "delivery of "+msgID, func() bool { return in.Deliveries(msgID) == 1 })
}

func paris(t *testing.T) *time.Location {
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// bobQuiet prefers SMS, quiet from 22:00 to 07:00 in Paris.
func bobQuiet(mode string, prefer ...string) *schemas.Profile {
	if len(prefer) == 0 {
		prefer = []string{"sms"}
	}
	return &schemas.Profile{ID: "bob", Addresses: map[string]string{"sms": "+15550100", "web": "bob"}, Prefer: prefer,
		TimeZone: "Europe/Paris", QuietHours: map[string]string{"sms": "22:00-07:00"}, Quiet: mode,
		UrgentFrom: []string{"carol"}, Fallback: &schemas.Fallback{On: []string{"none"}}}
}

// The case: a message sent at 23:00 to a client with SMS quiet
// hours arrives at 07:00 of the client's zone, not a minute before; the
// history says why it waited.
func TestQuietHoursHoldUntilMorning(t *testing.T) {
	loc := paris(t)
	x := newHold(t, time.Date(2026, 12, 7, 23, 0, 0, 0, loc), bobQuiet(""))
	s := submission("good night")
	res, err := x.send(s)
	if err != nil {
		t.Fatal(err)
	}
	morning := time.Date(2026, 12, 8, 7, 0, 0, 0, loc)
	if res.Status != schemas.StatusHeld || res.HeldUntil != morning.UnixMilli() {
		t.Fatalf("send at 23:00: %s until %d, want held until %v (%d)", res.Status, res.HeldUntil, morning, morning.UnixMilli())
	}
	if !strings.Contains(res.Held, "quiet hours on sms until 2026-12-08T07:00:00+01:00 (Europe/Paris)") {
		t.Errorf("held because %q", res.Held)
	}
	st := x.status(s.MsgID)
	if st.State != schemas.StatusHeld || st.HeldUntil != morning.UnixMilli() {
		t.Fatalf("status: %s until %d", st.State, st.HeldUntil)
	}
	if h := entries(st, schemas.StatusHeld); len(h) != 1 || h[0].Until != morning.UnixMilli() || h[0].Medium != "sms" {
		t.Fatalf("history %+v: want one held entry until 07:00 on sms", st.History)
	}

	// 06:59:58: still quiet.
	x.clock.Set(morning.Add(-2 * time.Second))
	time.Sleep(time.Second)
	if n := x.sms.Deliveries(s.MsgID); n != 0 {
		t.Fatalf("delivered %d time(s) before 07:00", n)
	}
	x.delivered(x.sms, s.MsgID)
	at := x.clock.Now()
	if at.Before(morning) {
		t.Fatalf("delivered at %v, before 07:00", at.In(loc))
	}
	st = x.status(s.MsgID)
	fabrictest.Eventually(t, 10*time.Second, "delivered", func() bool {
		st = x.status(s.MsgID)
		return st.State == schemas.StatusDelivered
	})
	rel := entries(st, schemas.StatusReleased)
	if len(rel) != 1 || rel[0].At < morning.UnixMilli() || rel[0].Reason != "to sms:+15550100" {
		t.Fatalf("history %+v: want one released entry at 07:00 to sms", st.History)
	}
	if x.web.Len() != 0 {
		t.Errorf("the web inbox got %d message(s): a hold is not a fallback", x.web.Len())
	}
	// the notification comes through the originator's status stream, a
	// moment after the transaction's state
	fabrictest.Eventually(t, 10*time.Second, "the sender's delivered", func() bool {
		return x.og.NoteOf(s.MsgID, schemas.StatusDelivered) != nil
	})
}

// A message held over a restart of the broker and of the originator
// still goes out when its hold ends: the hold is in the store, the
// content in the originator's bucket.
func TestHoldSurvivesRestarts(t *testing.T) {
	loc := paris(t)
	x := newHold(t, time.Date(2026, 12, 7, 23, 30, 0, 0, loc), bobQuiet(""))
	s := submission("kept over restarts")
	if res, err := x.send(s); err != nil || res.Status != schemas.StatusHeld {
		t.Fatalf("send: %+v %v", res, err)
	}
	x.stopB.Stop()
	x.ogRun.Stop()
	x.clock.Set(time.Date(2026, 12, 8, 7, 0, 5, 0, loc))
	x.f.StartBroker(x.cfg)
	x.startOG()
	x.delivered(x.sms, s.MsgID)
	if d := x.sms.Get(s.MsgID); string(d.Content) != "kept over restarts" {
		t.Fatalf("content %q", d.Content)
	}
}

// Urgent passes quiet hours only for a sender the profile names.
func TestUrgentPassesQuietHoursForNamedSenders(t *testing.T) {
	loc := paris(t)
	x := newHold(t, time.Date(2026, 12, 7, 23, 0, 0, 0, loc), bobQuiet(""),
		&schemas.Profile{ID: "carol", Addresses: map[string]string{"test": "carol"}})
	fromCarol := &kit.Submission{From: schemas.Endpoint{Medium: "test", Address: "carol", Client: "carol"}, To: "bob",
		Content: []byte("the house is on fire"), Urgent: true}
	res, err := x.send(fromCarol)
	if err != nil || res.Status == schemas.StatusHeld {
		t.Fatalf("urgent from carol: %+v %v, want sent at once", res, err)
	}
	x.delivered(x.sms, fromCarol.MsgID)

	fromAlice := submission("urgent, says alice")
	fromAlice.Urgent = true
	res, err = x.send(fromAlice)
	if err != nil || res.Status != schemas.StatusHeld {
		t.Fatalf("urgent from alice: %+v %v, want held", res, err)
	}
	if !strings.Contains(res.Held, "urgent is not allowed from alice") {
		t.Errorf("held because %q", res.Held)
	}
}

// quiet: next takes the first medium that is not quiet.
func TestQuietNextTakesAnotherMedium(t *testing.T) {
	loc := paris(t)
	x := newHold(t, time.Date(2026, 12, 7, 23, 0, 0, 0, loc), bobQuiet(schemas.QuietNext, "sms", "web"))
	s := submission("to the web, then")
	res, err := x.send(s)
	if err != nil || res.Status == schemas.StatusHeld || res.Dest.Medium != "web" {
		t.Fatalf("send: %+v %v, want sent on the web at once", res, err)
	}
	x.delivered(x.web, s.MsgID)

	// in the day, SMS first as always
	x.clock.Set(time.Date(2026, 12, 8, 9, 0, 0, 0, loc))
	s = submission("good morning")
	if res, err = x.send(s); err != nil || res.Dest.Medium != "sms" {
		t.Fatalf("send at 09:00: %+v %v, want sms", res, err)
	}
}

// send_at: held until then, then delivered; a send_at in the past or
// within a second is now.
func TestScheduledMessage(t *testing.T) {
	x := newHold(t, time.Now(), &schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob"}})
	s := submission("see you at nine")
	at := x.clock.Now().Add(2 * time.Second).Truncate(time.Millisecond)
	s.SendAt = at.UnixMilli()
	res, err := x.send(s)
	if err != nil || res.Status != schemas.StatusHeld || res.HeldUntil != at.UnixMilli() {
		t.Fatalf("send: %+v %v, want held until %d", res, err, at.UnixMilli())
	}
	if !strings.HasPrefix(res.Held, "scheduled for ") {
		t.Errorf("held because %q", res.Held)
	}
	// a retry while it is held: held again, not sent
	if res2, err := x.ogKit.Send(context.Background(), s); err != nil || res2.Status != schemas.StatusHeld {
		t.Fatalf("retry while held: %+v %v", res2, err)
	}
	x.delivered(x.web, s.MsgID)
	if now := x.clock.Now(); now.Before(at) {
		t.Fatalf("delivered at %v, before %v", now, at)
	}
	time.Sleep(300 * time.Millisecond)
	if n := x.web.Deliveries(s.MsgID); n != 1 {
		t.Fatalf("delivered %d times", n)
	}

	past := submission("already late")
	past.SendAt = x.clock.Now().Add(-time.Hour).UnixMilli()
	if res, err := x.send(past); err != nil || res.Status == schemas.StatusHeld {
		t.Fatalf("send_at in the past: %+v %v, want sent at once", res, err)
	}
}

// A scheduled message past its validity fails EXPIRED at its validity,
// and a send_at beyond 7 days or an expiry before it is refused.
func TestScheduledMessageLimits(t *testing.T) {
	x := newHold(t, time.Now(), &schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob"}})
	ctx := context.Background()
	late := submission("too far")
	late.SendAt = x.clock.Now().Add(schemas.MaxHold + time.Hour).UnixMilli()
	if _, err := x.ogKit.Send(ctx, late); miap.CodeOf(err) != schemas.CodeMalformed {
		t.Errorf("send_at in 7 days and an hour: %v, want MALFORMED", err)
	}
	backwards := submission("expires first")
	backwards.SendAt = x.clock.Now().Add(time.Hour).UnixMilli()
	backwards.Expires = x.clock.Now().Add(time.Minute).UnixMilli()
	if _, err := x.ogKit.Send(ctx, backwards); miap.CodeOf(err) != schemas.CodeMalformed {
		t.Errorf("expires before send_at: %v, want MALFORMED", err)
	}

	// bob's web is quiet all evening; the message is worth sending for 2 s
	x.f.PutProfiles(&schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob"}, QuietHours: map[string]string{"web": "00:00-23:59"}})
	s := submission("only for a moment")
	s.Expires = x.clock.Now().Add(2 * time.Second).UnixMilli()
	var res *kit.Result
	fabrictest.Eventually(t, 5*time.Second, "held by the new profile", func() bool {
		var err error
		res, err = x.ogKit.Send(ctx, s)
		return err == nil && res.Status == schemas.StatusHeld
	})
	if res.HeldUntil != s.Expires || !strings.Contains(res.Held, "it expires before then") {
		t.Fatalf("held until %d because %q, want until its expiry %d", res.HeldUntil, res.Held, s.Expires)
	}
	fabrictest.Eventually(t, 10*time.Second, "the expiry", func() bool { return x.status(s.MsgID).State == schemas.StatusFailed })
	st := x.status(s.MsgID)
	if f := entries(st, schemas.StatusFailed); len(f) != 1 || f[0].Code != "EXPIRED" {
		t.Fatalf("history %+v", st.History)
	}
	fabrictest.Eventually(t, 10*time.Second, "the sender's failed", func() bool {
		return x.og.NoteOf(s.MsgID, schemas.StatusFailed) != nil
	})
	if n := x.og.NoteOf(s.MsgID, schemas.StatusFailed); n.Code != "EXPIRED" {
		t.Fatalf("the sender heard %+v", n)
	}
	if x.web.Deliveries(s.MsgID) != 0 {
		t.Fatal("an expired message was delivered")
	}
}

// Cancel: only a held message, only by its originator; the sender hears
// failed CANCELLED once; nothing is delivered when the hold would have
// ended.
func TestCancelHeldMessage(t *testing.T) {
	x := newHold(t, time.Now(), &schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob"}})
	ctx := context.Background()
	s := submission("never mind")
	s.SendAt = x.clock.Now().Add(time.Hour).UnixMilli()
	if res, err := x.send(s); err != nil || res.Status != schemas.StatusHeld {
		t.Fatalf("send: %+v %v", res, err)
	}

	// another gateway may not cancel it, nor learn that it exists
	other, _ := x.f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "other", Medium: "test"})
	if _, err := other.Cancel(ctx, s.MsgID); miap.CodeOf(err) != schemas.CodeUnknownTx {
		t.Fatalf("cancel by another gateway: %v, want UNKNOWN_TX", err)
	}
	st, err := x.ogKit.Cancel(ctx, s.MsgID)
	if err != nil || st.State != schemas.StatusFailed {
		t.Fatalf("cancel: %+v %v", st, err)
	}
	if f := entries(st, schemas.StatusFailed); len(f) != 1 || f[0].Code != "CANCELLED" || f[0].Party != "test" {
		t.Fatalf("history %+v", st.History)
	}
	if _, err := x.ogKit.Cancel(ctx, s.MsgID); miap.CodeOf(err) != schemas.CodeSettled {
		t.Fatalf("cancel again: %v, want SETTLED", err)
	}
	fabrictest.Eventually(t, 5*time.Second, "the sender's failed", func() bool {
		n := x.og.NoteOf(s.MsgID, schemas.StatusFailed)
		return n != nil && n.Code == "CANCELLED"
	})
	x.clock.Set(time.UnixMilli(s.SendAt).Add(time.Second))
	time.Sleep(500 * time.Millisecond)
	if x.web.Deliveries(s.MsgID) != 0 {
		t.Fatal("a cancelled message was delivered")
	}

	// a message on its way can no longer be cancelled
	now := submission("at once")
	if _, err := x.send(now); err != nil {
		t.Fatal(err)
	}
	x.delivered(x.web, now.MsgID)
	fabrictest.Eventually(t, 10*time.Second, "delivered at the brokers", func() bool {
		return x.status(now.MsgID).State == schemas.StatusDelivered
	})
	if _, err := x.ogKit.Cancel(ctx, now.MsgID); miap.CodeOf(err) != schemas.CodeSettled {
		t.Fatalf("cancel a delivered message: %v, want SETTLED", err)
	}
	if _, err := x.ogKit.Cancel(ctx, kit.NewMsgID()); miap.CodeOf(err) != schemas.CodeUnknownTx {
		t.Fatalf("cancel an unknown message: %v, want UNKNOWN_TX", err)
	}
}

// A fallback into quiet hours: SMS refuses the message for good at 23:00,
// the web, bob's next medium, is quiet until 07:00: the second attempt is
// held until then, and the web gets the message at 07:00.
func TestRerouteHeldInQuietHours(t *testing.T) {
	loc := paris(t)
	bob := &schemas.Profile{ID: "bob", Addresses: map[string]string{"sms": "+15550100", "web": "bob"}, Prefer: []string{"sms", "web"},
		TimeZone: "Europe/Paris", QuietHours: map[string]string{"web": "22:00-07:00"}}
	x := newHoldWith(t, time.Date(2026, 12, 7, 23, 0, 0, 0, loc), func(x *holdFabric) {
		x.sms.Fail = schemas.Errorf(schemas.CodeRejected, nil, "no such subscriber")
	}, bob)
	s := submission("sms refuses, web sleeps")
	res, err := x.send(s)
	if err != nil || res.Status != schemas.StatusHeld {
		t.Fatalf("send: %+v %v, want accepted and held", res, err)
	}
	st := x.status(s.MsgID)
	morning := time.Date(2026, 12, 8, 7, 0, 0, 0, loc)
	h := entries(st, schemas.StatusHeld)
	if st.State != schemas.StatusHeld || len(h) != 1 || h[0].Attempt != 2 || h[0].Medium != "web" || h[0].Until != morning.UnixMilli() {
		t.Fatalf("status %s, history %+v: want attempt 2 held on the web until 07:00", st.State, st.History)
	}
	if f := entries(st, schemas.HistoryAttemptFailed); len(f) != 1 || f[0].Code != "REJECTED" {
		t.Fatalf("history %+v", st.History)
	}
	x.clock.Set(morning.Add(time.Second))
	x.delivered(x.web, s.MsgID)
	fabrictest.Eventually(t, 10*time.Second, "delivered", func() bool { return x.status(s.MsgID).State == schemas.StatusDelivered })
	st = x.status(s.MsgID)
	if r := entries(st, schemas.StatusReleased); len(r) != 1 || r[0].Attempt != 2 {
		t.Fatalf("history %+v: want attempt 2 released", st.History)
	}
	fabrictest.Eventually(t, 10*time.Second, "the sender's delivered", func() bool {
		return x.og.NoteOf(s.MsgID, schemas.StatusDelivered) != nil
	})
	n := x.og.NoteOf(s.MsgID, schemas.StatusDelivered)
	if n.Attempt != 2 || !strings.Contains(n.Reason, "after sms failed: REJECTED") {
		t.Fatalf("the sender heard %+v", n)
	}
}

// The originator is down when the hold ends and stays down past the
// route's deadline: the message waits for it instead of failing, and goes
// out when it is back.
func TestReleaseWaitsForTheOriginator(t *testing.T) {
	x := newHold(t, time.Now(), &schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob"}})
	s := submission("kept while the originator is away")
	s.SendAt = x.clock.Now().Add(2 * time.Second).UnixMilli()
	if res, err := x.send(s); err != nil || res.Status != schemas.StatusHeld {
		t.Fatalf("send: %+v %v", res, err)
	}
	x.ogRun.Stop()
	time.Sleep(2*time.Second + x.cfg.Deadline + time.Second)
	if x.web.Deliveries(s.MsgID) != 0 {
		t.Fatal("delivered without its originator")
	}
	x.startOG()
	x.delivered(x.web, s.MsgID)
	got := x.status(s.MsgID)
	var waited bool
	for _, h := range entries(got, schemas.StatusHeld) {
		waited = waited || strings.Contains(h.Reason, "waiting for the originating gateway test")
	}
	if !waited || len(entries(got, schemas.StatusReleased)) != 2 {
		t.Fatalf("history %+v: want released, held waiting for the originator, released again", got.History)
	}
	if f := entries(got, schemas.StatusFailed); len(f) != 0 {
		t.Fatalf("history %+v: failed while its originator was away", got.History)
	}
}

// A scheduled message, sealed (PROTOCOL.md §14), is released to a route
// whose hops announce encryption keys: bob prefers the web, whose gateway
// was down when the message was held (so it was held for SMS) and comes
// back without a key before the release. The release passes the web over
// and sends the message by SMS, rather than giving the originator a route
// it cannot seal to.
func TestReleasePassesOverAMediumWithoutKeys(t *testing.T) {
	x := &holdFabric{t: t, f: fabrictest.New(t), clock: fabrictest.NewClock(time.Now()), og: fabrictest.NewInbox(),
		sms: fabrictest.NewInbox(), web: fabrictest.NewInbox()}
	x.cfg = fallbackCfg
	x.cfg.Now = x.clock.Now
	_, x.stopB = x.f.StartBroker(x.cfg)
	x.f.PutProfiles(&schemas.Profile{ID: "alice", Addresses: map[string]string{"test": "alice"}},
		&schemas.Profile{ID: "bob", Addresses: map[string]string{"sms": "+15550100", "web": "bob"}, Prefer: []string{"web", "sms"}})
	x.startOG()
	x.f.StartKit(x.sms, kit.Config{Gateway: "sms", Medium: "sms", Now: x.clock.Now})
	s := submission("sealed and scheduled")
	at := x.clock.Now().Add(4 * time.Second).Truncate(time.Millisecond)
	s.SendAt = at.UnixMilli()
	res, err := x.send(s)
	if err != nil || res.Status != schemas.StatusHeld {
		t.Fatalf("send: %+v %v, want held", res, err)
	}
	x.f.StartKit(x.web, kit.Config{Gateway: "web", Medium: "web", Now: x.clock.Now, Seal: miap.SealOff})
	x.delivered(x.sms, s.MsgID)
	if d := x.sms.Get(s.MsgID); string(d.Content) != "sealed and scheduled" || d.Routed.IMI.Content.Sealed == "" {
		t.Fatalf("sms delivery %+v", d)
	}
	if x.web.Get(s.MsgID) != nil {
		t.Fatal("the web, which has no encryption key, got the sealed message")
	}
	// released straight to SMS: no attempt on the web that could only
	// have ended at its deadline
	st := x.status(s.MsgID)
	for _, e := range st.History {
		if e.Medium == "web" || strings.Contains(e.Reason, "web") {
			t.Fatalf("an attempt on the web: %+v", st.History)
		}
	}
	if st.Attempt > 1 {
		t.Fatalf("attempt %d; history %+v", st.Attempt, st.History)
	}
}
