package ops

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/schemas"
)

// The attempts and holds of a message (attempts.go), from the brokers'
// history and from trace events alone, with the entries and steps of
// docs/ROUTING.md and PROTOCOL.md §13.10.

// attemptsText is attempts as "1 email via email: failed UNKNOWN_RECIPIENT; 2 …".
func attemptsText(atts []Attempt) string {
	parts := make([]string, len(atts))
	for i, a := range atts {
		parts[i] = fmt.Sprintf("%d %s via %s: %s", a.N, a.Medium, a.Gateway, strings.TrimSpace(a.Outcome+a.State+" "+a.Code))
	}
	return strings.Join(parts, "; ")
}

func media(g string) string {
	return map[string]string{"email": "email", "peer": "web", "web": "web", "sms": "sms"}[g]
}

// at is 2026-12-05 22:00 UTC plus ms.
func at(ms int64) int64 { return 1796508000000 + ms }

func TestAttemptsFromHistory(t *testing.T) {
	for _, c := range []struct {
		name    string
		history []schemas.HistoryEntry
		want    string
		hold    string // "at until local zone released cancelled", "" for none
	}{
		{"routed once", []schemas.HistoryEntry{
			{Status: "accepted", At: at(0), Party: "web"},
			{Status: "routed", At: at(4), Reason: "to peer:bob", Party: "broker-1"},
			{Status: "delivered", At: at(30), Party: "peer"},
		}, "1 web via peer: delivered", ""},
		{"fallback (docs/ROUTING.md, History)", []schemas.HistoryEntry{
			{Status: "accepted", At: at(0), Party: "web"},
			{Status: "routed", At: at(4), Reason: "to email:bob@example.org", Party: "broker-1"},
			{Status: "transferred", At: at(30), Party: "email"},
			{Status: "attempt-failed", At: at(2100), Code: "UNKNOWN_RECIPIENT", Reason: "550 5.1.1 no such mailbox", Party: "email", Attempt: 1, Medium: "email"},
			{Status: "rerouted", At: at(2100), Reason: "to web:bob", Party: "broker-1", Attempt: 2, Medium: "web"},
			{Status: "delivered", At: at(2130), Party: "web", Attempt: 2, Medium: "web"},
		}, "1 email via email: failed UNKNOWN_RECIPIENT; 2 web via web: delivered", ""},
		{"expired, then every medium failed", []schemas.HistoryEntry{
			{Status: "routed", At: at(4), Reason: "to email:bob@example.org", Party: "broker-1"},
			{Status: "transferred", At: at(30), Party: "email"},
			{Status: "attempt-failed", At: at(600000), Code: "EXPIRED", Reason: "no outcome within the time its medium may take", Party: "broker-1", Attempt: 1, Medium: "email"},
			{Status: "rerouted", At: at(600000), Reason: "to peer:bob", Party: "broker-1", Attempt: 2, Medium: "web"},
			{Status: "failed", At: at(600040), Code: "REJECTED", Reason: "email: EXPIRED …; web: REJECTED inbox closed", Party: "peer", Attempt: 2, Medium: "web"},
		}, "1 email via email: expired EXPIRED; 2 web via peer: failed REJECTED", ""},
		{"a late success of attempt 1, recorded for attempt 2", []schemas.HistoryEntry{
			{Status: "routed", At: at(4), Reason: "to email:bob@example.org", Party: "broker-1"},
			{Status: "transferred", At: at(30), Party: "email"},
			{Status: "attempt-failed", At: at(60000), Code: "EXPIRED", Party: "broker-1", Attempt: 1, Medium: "email"},
			{Status: "rerouted", At: at(60000), Reason: "to sms:+15550100", Party: "broker-1", Attempt: 2, Medium: "sms"},
			{Status: "delivered", At: at(61000), Party: "email", Attempt: 1, Medium: "email"},
			{Status: "recorded", At: at(62000), Reason: "delivered", Party: "sms", Attempt: 2, Medium: "sms"},
		}, "1 email via email: delivered EXPIRED; 2 sms via sms: routed", ""},
		{"held, released, attempt-failed, rerouted, delivered", []schemas.HistoryEntry{
			{Status: "accepted", At: at(0), Party: "web"},
			{Status: "held", At: at(3), Reason: "quiet hours on sms until 2026-12-06T07:00:00+01:00 (Europe/Paris)", Party: "broker-1"},
			{Status: "released", At: at(28800000), Reason: "to sms:+33612345678", Party: "broker-2"},
			{Status: "transferred", At: at(28800050), Party: "sms"},
			{Status: "attempt-failed", At: at(28805000), Code: "UNKNOWN_RECIPIENT", Reason: "absent subscriber", Party: "sms", Attempt: 1, Medium: "sms"},
			{Status: "rerouted", At: at(28805000), Reason: "to peer:bob", Party: "broker-2", Attempt: 2, Medium: "web"},
			{Status: "delivered", At: at(28805030), Party: "peer", Attempt: 2, Medium: "web"},
		}, "1 sms via sms: failed UNKNOWN_RECIPIENT; 2 web via peer: delivered",
			fmt.Sprintf("%d %d 2026-12-06 07:00 Europe/Paris %d 0", at(3), time.Date(2026, 12, 6, 6, 0, 0, 0, time.UTC).UnixMilli(), at(28800000))},
		{"scheduled, then cancelled", []schemas.HistoryEntry{
			{Status: "accepted", At: at(0), Party: "web"},
			{Status: "held", At: at(3), Reason: "scheduled for 2026-12-06T09:00:00Z", Party: "broker-1"},
			{Status: "failed", At: at(60000), Code: "CANCELLED", Reason: "cancelled by the sender", Party: "web"},
		}, "", fmt.Sprintf("%d %d 2026-12-06 09:00 UTC 0 %d", at(3), time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC).UnixMilli(), at(60000))},
	} {
		t.Run(c.name, func(t *testing.T) {
			atts, hold := attemptsFromHistory(c.history, media)
			if got := attemptsText(atts); got != c.want {
				t.Errorf("attempts\n got %s\nwant %s", got, c.want)
			}
			got := ""
			if hold != nil {
				got = fmt.Sprintf("%d %d %s %s %d %d", hold.At, hold.Until, hold.Local, hold.Zone, hold.Released, hold.Cancelled)
			}
			if got != c.hold {
				t.Errorf("hold\n got %q\nwant %q", got, c.hold)
			}
		})
	}
}

// rerouted is the trace of a message from alice (gateway test) to carol,
// who prefers e-mail and then the web: the e-mail gateway refuses it for
// good, the brokers move it on to peer (web), which delivers it. The
// events are in the order a real fabric published them (TestBrowserFallback
// logs them): the e-mail gateway's failed ack and the originator's refused
// transfer come after the reroute they caused.
func rerouted(id string) []Event {
	tx := id
	return []Event{
		ev("test", schemas.TraceEvent{Step: "accepted", MsgID: id, Party: "test", By: "test-1", Result: "ok"}),
		ev("broker", schemas.TraceEvent{Step: "imi", MsgID: id, Tx: tx, Party: "test", By: "broker-1", Result: "routed", Dest: "email", ID: "KTP7_rUm", Sender: "alice", Recipient: "carol", To: "carol"}),
		ev("email", schemas.TraceEvent{Step: "deliver", MsgID: id, Tx: tx, Party: "email", By: "email-1", Result: "UNKNOWN_RECIPIENT"}),
		ev("test", schemas.TraceEvent{Step: "route", MsgID: id, Tx: tx, Party: "test", By: "test-1", Result: "verified", Dest: "email"}),
		ev("broker", schemas.TraceEvent{Step: "notify", MsgID: id, Tx: tx, Party: "test", By: "broker-1", Result: "rerouted", Status: "rerouted"}),
		ev("broker", schemas.TraceEvent{Step: "reroute", MsgID: id, Tx: tx, Party: "test", By: "broker-1", Result: "rerouted", Dest: "peer", ID: "IrqGateB", Code: "UNKNOWN_RECIPIENT"}),
		ev("email", schemas.TraceEvent{Step: "ack", MsgID: id, Tx: tx, Party: "email", By: "email-1", Result: "failed"}),
		ev("test", schemas.TraceEvent{Step: "transfer", MsgID: id, Tx: tx, Party: "test", By: "test-1", Result: "UNKNOWN_RECIPIENT"}),
		ev("peer", schemas.TraceEvent{Step: "deliver", MsgID: id, Tx: tx, Party: "peer", By: "peer-1", Result: "delivered"}),
		ev("test", schemas.TraceEvent{Step: "reroute", MsgID: id, Tx: tx, Party: "test", By: "test-1", Result: "verified", Dest: "peer"}),
		ev("broker", schemas.TraceEvent{Step: "ack", MsgID: id, Tx: tx, Party: "peer", By: "broker-1", Result: "applied", Status: "delivered", IDMatch: true}),
		ev("peer", schemas.TraceEvent{Step: "ack", MsgID: id, Tx: tx, Party: "peer", By: "peer-1", Result: "delivered"}),
		ev("test", schemas.TraceEvent{Step: "notified", MsgID: id, Tx: tx, Party: "test", By: "test-1", Result: "delivered"}),
		ev("test", schemas.TraceEvent{Step: "transfer", MsgID: id, Tx: tx, Party: "test", By: "test-1", Result: "delivered"}),
	}
}

// stepAttempts is the attempt of each step: "1 test.accepted, 1 broker.imi, …".
func stepAttempts(evs []Event) string {
	parts := make([]string, len(evs))
	for i, e := range evs {
		parts[i] = fmt.Sprintf("%d %s.%s", e.Attempt, e.Source, e.Step)
	}
	return strings.Join(parts, ", ")
}

// ingestAll ingests events 1 ms apart, dated as from their batches.
func ingestAll(o *Observer, clock *fakeClock, evs []Event) {
	start := clock.Now()
	for i := range evs {
		evs[i].Seen = start.Add(time.Duration(i+1) * time.Millisecond).UnixMicro()
		evs[i].At = evs[i].Seen / 1000
		o.Ingest(evs[i])
	}
	clock.add(time.Duration(len(evs)+1) * time.Millisecond)
}

// A message that fell back from e-mail to the web, heard in trace events
// only: two attempts, each step in its own, and the message delivered on
// peer — not failed by the e-mail gateway's failure, which the brokers
// turned into a reroute.
func TestAttemptsFromTraceEvents(t *testing.T) {
	o, clock, _ := newTestObserver(t, ObserverConfig{})
	o.parties["peer"] = &partyRec{medium: "web", instances: map[string]*instRec{}}
	o.parties["email"] = &partyRec{medium: "email", instances: map[string]*instRec{}}
	ingestAll(o, clock, rerouted(msgA))
	txs := o.Transactions("", 10)
	if len(txs) != 1 {
		t.Fatalf("transactions %+v", txs)
	}
	s := txs[0]
	if s.State != "delivered" || s.Dest != "peer" || s.Code != "" || s.Origin != "test" {
		t.Errorf("summary: state %s dest %s code %q origin %s", s.State, s.Dest, s.Code, s.Origin)
	}
	if got, want := attemptsText(s.Attempts), "1 email via email: failed UNKNOWN_RECIPIENT; 2 web via peer: delivered"; got != want {
		t.Errorf("attempts\n got %s\nwant %s", got, want)
	}
	if st := o.Stats(10); st.Failed != 0 || st.Delivered != 1 {
		t.Errorf("stats: %d failed, %d delivered; want the one delivery only", st.Failed, st.Delivered)
	}
	tl, ok := o.Timeline(context.Background(), msgA)
	if !ok {
		t.Fatal("no timeline")
	}
	want := "1 test.accepted, 1 broker.imi, 1 email.deliver, 1 test.route, 2 broker.notify, 2 broker.reroute, 1 email.ack, " +
		"1 test.transfer, 2 peer.deliver, 2 test.reroute, 2 broker.ack, 2 peer.ack, 2 test.notified, 2 test.transfer"
	if got := stepAttempts(tl.Events); got != want {
		t.Errorf("steps by attempt\n got %s\nwant %s", got, want)
	}
	// before the brokers' batch: the originator's reroute stands for theirs
	o2, clock2, _ := newTestObserver(t, ObserverConfig{})
	var gw []Event
	for _, e := range rerouted(msgB) {
		if !e.broker() {
			gw = append(gw, e)
		}
	}
	ingestAll(o2, clock2, gw)
	if s := o2.Transactions("", 1)[0]; len(s.Attempts) != 2 || s.Attempts[1].Gateway != "peer" || s.State != "delivered" {
		t.Errorf("from the gateways' events only: %+v", s)
	}
}

// A routed-once message keeps its summary as it was: no attempts.
func TestAttemptsNotForAMessageRoutedOnce(t *testing.T) {
	o, clock, _ := newTestObserver(t, ObserverConfig{})
	ingestAll(o, clock, webToWeb(msgA))
	if s := o.Transactions("", 1)[0]; s.Attempts != nil || s.Hold != nil || s.State != "read" {
		t.Fatalf("summary %+v", s)
	}
	tl, _ := o.Timeline(context.Background(), msgA)
	if tl.Attempts != nil || tl.Events[0].Attempt != 1 {
		t.Fatalf("timeline %+v, first step attempt %d", tl.TxSummary, tl.Events[0].Attempt)
	}
}

// A held message in trace events: held until the broker's release, whose
// destination starts attempt 1; the steps before it are attempt 0.
func TestHoldFromTraceEvents(t *testing.T) {
	o, clock, _ := newTestObserver(t, ObserverConfig{})
	held := []Event{
		ev("web", schemas.TraceEvent{Step: "accepted", MsgID: msgA, Party: "web", Result: "ok"}),
		ev("broker", schemas.TraceEvent{Step: "imi", MsgID: msgA, Tx: msgA, Party: "web", By: "broker-1", Result: "held"}),
		ev("broker", schemas.TraceEvent{Step: "hold", MsgID: msgA, Tx: msgA, Party: "web", By: "broker-1", Result: "held"}),
		ev("broker", schemas.TraceEvent{Step: "notify", MsgID: msgA, Tx: msgA, Party: "web", By: "broker-1", Result: "held", Status: "held"}),
		ev("web", schemas.TraceEvent{Step: "notified", MsgID: msgA, Tx: msgA, Party: "web", Result: "held"}),
	}
	ingestAll(o, clock, held)
	s := o.Transactions("", 1)[0]
	if s.State != "held" || s.Hold == nil || s.Hold.Released != 0 || len(s.Attempts) != 0 {
		t.Fatalf("held: %+v (hold %+v)", s, s.Hold)
	}
	released := []Event{
		ev("broker", schemas.TraceEvent{Step: "release", MsgID: msgA, Tx: msgA, Party: "web", By: "broker-2", Result: "released", Dest: "sms"}),
		ev("broker", schemas.TraceEvent{Step: "notify", MsgID: msgA, Tx: msgA, Party: "web", By: "broker-2", Result: "released", Status: "released"}),
		ev("web", schemas.TraceEvent{Step: "transfer", MsgID: msgA, Tx: msgA, Party: "web", Result: "delivered"}),
		ev("sms", schemas.TraceEvent{Step: "deliver", MsgID: msgA, Tx: msgA, Party: "sms", Result: "delivered"}),
		ev("broker", schemas.TraceEvent{Step: "ack", MsgID: msgA, Tx: msgA, Party: "sms", By: "broker-2", Result: "applied", Status: "delivered", IDMatch: true}),
	}
	ingestAll(o, clock, released)
	s = o.Transactions("", 1)[0]
	if s.State != "delivered" || s.Dest != "sms" || s.Hold == nil || s.Hold.Released == 0 || attemptsText(s.Attempts) != "1 sms via sms: delivered" {
		t.Fatalf("released: %+v (hold %+v)", s, s.Hold)
	}
	tl, _ := o.Timeline(context.Background(), msgA)
	want := "0 web.accepted, 0 broker.imi, 0 broker.hold, 0 broker.notify, 0 web.notified, " +
		"1 broker.release, 1 broker.notify, 1 web.transfer, 1 sms.deliver, 1 broker.ack"
	if got := stepAttempts(tl.Events); got != want {
		t.Errorf("steps by attempt\n got %s\nwant %s", got, want)
	}
}

// Holds the brokers' history tells of (no hold exists on main yet: a
// synthetic history through ObserverConfig.Query): a message no longer in
// memory, held by quiet hours, released, failed on SMS and delivered on
// the web; and a scheduled one cancelled while held.
func TestHoldFromHistory(t *testing.T) {
	histories := map[string]*schemas.TxStatus{
		msgA: {MsgID: msgA, Tx: msgA, State: "delivered", Dest: schemas.Hop{Gateway: "peer", Medium: "web", Address: "bob"}, Attempt: 2,
			History: []schemas.HistoryEntry{
				{Status: "accepted", At: at(0), Party: "web"},
				{Status: "held", At: at(3), Reason: "quiet hours on sms until 2026-12-06T07:00:00+01:00 (Europe/Paris)", Party: "broker-1"},
				{Status: "released", At: at(28800000), Reason: "to sms:+33612345678", Party: "broker-2"},
				{Status: "attempt-failed", At: at(28805000), Code: "UNKNOWN_RECIPIENT", Reason: "absent subscriber", Party: "sms", Attempt: 1, Medium: "sms"},
				{Status: "rerouted", At: at(28805000), Reason: "to peer:bob", Party: "broker-2", Attempt: 2, Medium: "web"},
				{Status: "delivered", At: at(28805030), Party: "peer", Attempt: 2, Medium: "web"},
			}},
		msgB: {MsgID: msgB, Tx: msgB, State: "failed", Dest: schemas.Hop{Gateway: "peer", Medium: "web", Address: "bob"},
			History: []schemas.HistoryEntry{
				{Status: "accepted", At: at(0), Party: "web"},
				{Status: "held", At: at(3), Reason: "scheduled for 2026-12-06T09:00:00Z", Party: "broker-1"},
				{Status: "failed", At: at(60000), Code: "CANCELLED", Reason: "cancelled by the sender", Party: "web"},
			}},
	}
	o, _, _ := newTestObserver(t, ObserverConfig{Query: func(ctx context.Context, id string) (*schemas.TxStatus, error) {
		if st := histories[id]; st != nil {
			return st, nil
		}
		return nil, errors.New("unknown")
	}})
	tl, ok := o.Timeline(context.Background(), msgA)
	if !ok || tl.Source != "history" {
		t.Fatalf("timeline %v %+v", ok, tl)
	}
	if tl.State != "delivered" || tl.Dest != "peer" || tl.Code != "" || attemptsText(tl.Attempts) != "1 sms via sms: failed UNKNOWN_RECIPIENT; 2 web via peer: delivered" {
		t.Errorf("held, released, fell back: %+v, attempts %s", tl.TxSummary, attemptsText(tl.Attempts))
	}
	if h := tl.Hold; h == nil || h.Local != "2026-12-06 07:00" || h.Zone != "Europe/Paris" || h.Released != at(28800000) || h.Party != "broker-1" {
		t.Errorf("hold %+v", h)
	}
	tl, ok = o.Timeline(context.Background(), msgB)
	if !ok || tl.State != "failed" || tl.Code != "CANCELLED" || len(tl.Attempts) != 0 {
		t.Fatalf("cancelled: %v %+v", ok, tl)
	}
	if h := tl.Hold; h == nil || h.Cancelled != at(60000) || h.Zone != "UTC" || h.Local != "2026-12-06 09:00" {
		t.Errorf("hold %+v", h)
	}
}

// A held message cancelled, heard in trace events: failed with CANCELLED.
func TestCancelFromTraceEvents(t *testing.T) {
	o, clock, _ := newTestObserver(t, ObserverConfig{})
	ingestAll(o, clock, []Event{
		ev("web", schemas.TraceEvent{Step: "accepted", MsgID: msgA, Party: "web", Result: "ok"}),
		ev("broker", schemas.TraceEvent{Step: "hold", MsgID: msgA, Tx: msgA, Party: "web", By: "broker-1", Result: "held"}),
		ev("broker", schemas.TraceEvent{Step: "cancel", MsgID: msgA, Tx: msgA, Party: "web", By: "broker-1", Result: "cancelled"}),
		ev("broker", schemas.TraceEvent{Step: "notify", MsgID: msgA, Tx: msgA, Party: "web", By: "broker-1", Result: "failed", Status: "failed"}),
	})
	s := o.Transactions("", 1)[0]
	if s.State != "failed" || s.Code != "CANCELLED" || s.Hold == nil || s.Hold.Cancelled == 0 {
		t.Fatalf("cancelled: %+v (hold %+v)", s, s.Hold)
	}
}
