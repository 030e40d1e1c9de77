package broker_test

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// Accounting (docs/ACCOUNTING.md): one record per attempt at its outcome in
// UIMS_ACCOUNTING, at least once, de-duplicated by Nats-Msg-Id.

// outboxKey is the brokers' accounting outbox in Redis (broker.keyAcct).
const outboxKey = "{uims}:acct"

// accountingRecords reads every record of the stream, with its subject.
func accountingRecords(t *testing.T, nc *nats.Conn) ([]schemas.AccountingRecord, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(ctx, schemas.AccountingStream)
	if err != nil {
		t.Fatalf("accounting stream: %v", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := int(info.State.Msgs)
	if n == 0 {
		return nil, nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var recs []schemas.AccountingRecord
	var subjects []string
	for len(recs) < n {
		batch, err := cons.Fetch(n-len(recs), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			var r schemas.AccountingRecord
			if err := json.Unmarshal(m.Data(), &r); err != nil {
				t.Fatalf("record %s: %v", m.Data(), err)
			}
			if id := m.Headers().Get(jetstream.MsgIDHeader); id != r.ID {
				t.Errorf("record %s published with Nats-Msg-Id %q", r.ID, id)
			}
			recs = append(recs, r)
			subjects = append(subjects, m.Subject())
		}
		if got == 0 {
			t.Fatalf("read %d of %d records", len(recs), n)
		}
	}
	return recs, subjects
}

// waitRecords waits until the stream holds n records and the outbox is
// empty, and then a moment more, in which no record may come.
func waitRecords(t *testing.T, f *fabrictest.Fabric, n int) []schemas.AccountingRecord {
	t.Helper()
	nc := f.Conn("billing")
	js, _ := jetstream.New(nc)
	count := func() int {
		s, err := js.Stream(context.Background(), schemas.AccountingStream)
		if err != nil {
			return 0
		}
		info, err := s.Info(context.Background())
		if err != nil {
			return 0
		}
		return int(info.State.Msgs)
	}
	fabrictest.Eventually(t, 30*time.Second, fmt.Sprintf("%d accounting records and an empty outbox", n), func() bool {
		return count() >= n && f.RDB.ZCard(context.Background(), outboxKey).Val() == 0
	})
	time.Sleep(1500 * time.Millisecond) // the sweeper's round: nothing more comes
	recs, _ := accountingRecords(t, nc)
	if len(recs) != n {
		t.Fatalf("%d records, want %d: %+v", len(recs), n, recs)
	}
	return recs
}

// byMsg groups records by message id, each message's in attempt order.
func byMsg(recs []schemas.AccountingRecord) map[string][]schemas.AccountingRecord {
	out := map[string][]schemas.AccountingRecord{}
	for _, r := range recs {
		out[r.MsgID] = append(out[r.MsgID], r)
	}
	for _, rs := range out {
		sort.Slice(rs, func(i, j int) bool {
			return rs[i].Attempt < rs[j].Attempt || rs[i].Attempt == rs[j].Attempt && rs[i].At < rs[j].At
		})
	}
	return out
}

// Two broker replicas, acknowledgements sent twice, and a record published
// again by the sweeper (a broker that stopped after JetStream stored the
// record but before it took the mark out of the outbox): exactly one
// complete record per message, each final and delivered, and the usage
// counted once.
func TestAccountingOneRecordPerAttempt(t *testing.T) {
	f := fabrictest.New(t)
	cfg := broker.Config{SweepInterval: 50 * time.Millisecond}
	cfg.Instance = "b1"
	f.StartBroker(cfg)
	cfg.Instance = "b2"
	f.StartBroker(cfg)
	profiles(f)
	og, dg := fabrictest.NewInbox(), fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test"})
	dgKit, _ := f.StartKit(dg, kit.Config{Gateway: "peer", Medium: "web"})
	sent := []string{waitRoute(t, ogKit).MsgID}
	ctx := context.Background()
	for i := range 40 {
		res, err := ogKit.Send(ctx, submission("m"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, res.MsgID)
	}
	// a retried acknowledgement of every fifth message: a duplicate
	for i := 0; i < len(sent); i += 5 {
		if err := dgKit.Ack(ctx, dg.Get(sent[i]).Ref, schemas.StatusDelivered, "", ""); err != nil {
			t.Fatalf("ack again: %v", err)
		}
	}
	recs := waitRecords(t, f, len(sent))
	// the same outcome published again from the outbox
	again := recs[3]
	mark := fmt.Sprintf("%s|%d|%s|%s|%d|f", again.MsgID, again.Attempt, again.Outcome, again.Code, again.At)
	f.RDB.ZAdd(ctx, outboxKey, redis.Z{Score: 1, Member: mark})
	recs = waitRecords(t, f, len(sent))

	msgs := byMsg(recs)
	for _, id := range sent {
		rs := msgs[id]
		if len(rs) != 1 {
			t.Errorf("%s: %d records", id, len(rs))
			continue
		}
		r := rs[0]
		d := dg.Get(id)
		if r.V != 1 || r.ID != id+".1.delivered" || r.Tx != id || r.Attempt != 1 || r.Sender != "alice" || r.Recipient != "bob" ||
			r.Origin != (schemas.Hop{Gateway: "test", Medium: "test", Address: "alice"}) || r.Dest != (schemas.Hop{Gateway: "peer", Medium: "web", Address: "bob"}) ||
			r.Content.Type != d.Routed.IMI.Content.Type || r.Content.Length != int64(len(d.Content)) || r.Outcome != schemas.OutcomeDelivered ||
			r.Code != "" || !r.Final || r.Rerouted || r.Late || r.Accepted == 0 || r.Routed < r.Accepted-1000 || r.At < r.Routed || (r.Broker != "b1" && r.Broker != "b2") {
			t.Errorf("record %+v", r)
		}
	}
	// the usage counted once per message, the republished one too
	u := f.RDB.HGetAll(ctx, "{uims}:usaged:bob:"+time.Now().UTC().Format("20060102")).Val()
	if u["web.received"] != strconv.Itoa(len(sent)) {
		t.Errorf("bob's usage %v, want %d received on the web", u, len(sent))
	}
	a := f.RDB.HGetAll(ctx, "{uims}:usaged:alice:"+time.Now().UTC().Format("20060102")).Val()
	if a["test.sent"] != strconv.Itoa(len(sent)) || a["test.failed"] != "" {
		t.Errorf("alice's usage %v, want %d sent on test", a, len(sent))
	}
}

// A rerouted message (fallback across media): a record per attempt, the
// first failed (the destination's code) or expired (its deadline) and
// rerouted, the second delivered and final.
func TestAccountingReroute(t *testing.T) {
	t.Run("failed", func(t *testing.T) {
		email, web := permanent(schemas.CodeUnknownRecipient, "550 5.1.1 no such mailbox"), fabrictest.NewInbox()
		x := newFallback(t, bobPrefersEmail(nil), email, web)
		msgID, _, err := x.send("fall back")
		if err != nil {
			t.Fatal(err)
		}
		x.final(msgID)
		checkReroute(t, byMsg(waitRecords(t, x.f, 2))[msgID], schemas.OutcomeFailed, "UNKNOWN_RECIPIENT")
	})
	t.Run("expired", func(t *testing.T) {
		web := fabrictest.NewInbox()
		x := newFallback(t, bobPrefersEmail(nil), hangs{fabrictest.NewInbox()}, web)
		msgID, _, _ := x.send("too slow")
		x.final(msgID)
		checkReroute(t, byMsg(waitRecords(t, x.f, 2))[msgID], schemas.OutcomeExpired, "EXPIRED")
	})
}

func checkReroute(t *testing.T, rs []schemas.AccountingRecord, outcome, code string) {
	t.Helper()
	if len(rs) != 2 {
		t.Fatalf("records %+v", rs)
	}
	first, second := rs[0], rs[1]
	if first.Attempt != 1 || first.ID != first.Tx+".1."+outcome || first.Outcome != outcome || first.Code != code || !first.Rerouted || first.Final ||
		first.Dest.Medium != "email" || first.Dest.Address != "bob@example.test" || first.Origin.Medium != "test" {
		t.Errorf("first attempt %+v", first)
	}
	if second.Attempt != 2 || second.ID != second.Tx+".2.delivered" || second.Outcome != schemas.OutcomeDelivered || second.Code != "" || second.Rerouted || !second.Final ||
		second.Dest.Medium != "web" || second.Routed < first.At || second.Accepted != first.Accepted {
		t.Errorf("second attempt %+v", second)
	}
}

// A late success (docs/ROUTING.md, "Late acknowledgements"): the e-mail
// attempt expired and moved on to the web, then e-mail reported delivered.
// The e-mail attempt gets a second record, delivered, late and final; the
// open web attempt a cancelled one (SETTLED); the web's own acknowledgement
// that comes after makes none.
func TestAccountingLateSuccess(t *testing.T) {
	web := newGate()
	x, email, emailKit := lateFabric(t, web)
	msgID, _, err := x.send("late")
	if err != nil {
		t.Fatal(err)
	}
	x.waitAttempt(msgID, 2)
	if err := emailKit.Ack(context.Background(), email.Get(msgID).Ref, schemas.StatusDelivered, "", ""); err != nil {
		t.Fatalf("late acknowledgement: %v", err)
	}
	x.final(msgID)
	web.release()
	fabrictest.Eventually(t, 10*time.Second, "the web's acknowledgement recorded", func() bool {
		st, _ := x.ogKit.Query(context.Background(), msgID)
		return st != nil && len(entries(st, schemas.HistoryRecorded)) == 1
	})
	rs := byMsg(waitRecords(t, x.f, 3))[msgID]
	got := map[string]schemas.AccountingRecord{}
	for _, r := range rs {
		got[r.ID] = r
	}
	exp, late, cancelled := got[msgID+".1.expired"], got[msgID+".1.delivered"], got[msgID+".2.cancelled"]
	if !exp.Rerouted || exp.Final || exp.Dest.Medium != "email" || exp.Code != "EXPIRED" {
		t.Errorf("expired attempt %+v", exp)
	}
	if !late.Late || !late.Final || late.Dest.Medium != "email" || late.Outcome != schemas.OutcomeDelivered {
		t.Errorf("late success %+v", late)
	}
	if cancelled.Final || cancelled.Code != "SETTLED" || cancelled.Dest.Medium != "web" || cancelled.Outcome != schemas.OutcomeCancelled {
		t.Errorf("open attempt %+v", cancelled)
	}
	day := time.Now().UTC().Format("20060102")
	if u := x.f.RDB.HGetAll(context.Background(), "{uims}:usaged:bob:"+day).Val(); u["email.received"] != "1" || u["web.received"] != "" {
		t.Errorf("bob's usage %v: one received, on e-mail", u)
	}
	if u := x.f.RDB.HGetAll(context.Background(), "{uims}:usaged:alice:"+day).Val(); u["test.sent"] != "1" || u["test.failed"] != "" {
		t.Errorf("alice's usage %v: one sent", u)
	}
}

// Usage per client, medium and day (PROTOCOL.md §6.17): alice sends 50
// messages to bob from the web and 10 from SMS; bob takes the first 50 on
// the web and, once he prefers SMS, the 10 on SMS. The usage query answers
// exactly that, with alice's quota and what is left; a gateway learns it
// with the client's credential, never by id; the command-line party by id.
func TestUsageFigures(t *testing.T) {
	f := fabrictest.New(t)
	f.AddParty("cli", miap.Grant{Role: miap.RoleClient, Media: []string{schemas.MediumCLI}})
	reg := prometheus.NewRegistry()
	f.StartBroker(broker.Config{SweepInterval: 50 * time.Millisecond, Metrics: reg})
	bob := &schemas.Profile{ID: "bob", Token: "bob-token", Addresses: map[string]string{"web": "bob", "sms": "+15550101"}, Prefer: []string{"web", "sms"}}
	f.PutProfiles(&schemas.Profile{ID: "alice", Token: "alice-token", Quota: 100, Addresses: map[string]string{"web": "alice", "sms": "+15550100"}}, bob)
	webIn, smsIn := fabrictest.NewInbox(), fabrictest.NewInbox()
	webKit, _ := f.StartKit(webIn, kit.Config{Gateway: "web", Medium: "web"})
	smsKit, _ := f.StartKit(smsIn, kit.Config{Gateway: "sms", Medium: "sms"})
	cliKit, _ := f.StartKit(kit.SendOnly{}, kit.Config{Gateway: "cli", Medium: "cli"})
	ctx := context.Background()
	send := func(k *kit.Kit, medium, addr, text string) *kit.Result {
		t.Helper()
		var res *kit.Result
		s := &kit.Submission{MsgID: kit.NewMsgID(), From: schemas.Endpoint{Medium: medium, Address: addr, Client: "alice"}, To: "bob", Content: []byte(text)}
		fabrictest.Eventually(t, 10*time.Second, "a route to bob", func() bool {
			var err error
			res, err = k.Send(ctx, s)
			return err == nil
		})
		return res
	}
	bytes := 0
	for i := range 50 {
		text := "web message " + strconv.Itoa(i)
		bytes += len(text)
		if res := send(webKit, "web", "alice", text); res.Dest.Medium != "web" {
			t.Fatalf("routed to %+v", res.Dest)
		}
	}
	bob.Prefer = []string{"sms", "web"}
	f.PutProfiles(bob)
	time.Sleep(200 * time.Millisecond) // the brokers drop their cached profiles
	smsBytes := 0
	for i := range 10 {
		text := "sms " + strconv.Itoa(i)
		smsBytes += len(text)
		if res := send(smsKit, "sms", "+15550100", text); res.Dest.Medium != "sms" {
			t.Fatalf("routed to %+v", res.Dest)
		}
	}
	waitRecords(t, f, 60)

	u, err := webKit.Usage(ctx, schemas.UsageQuery{Kind: schemas.CredentialToken, Hash: schemas.TokenSHA256("alice-token")})
	if err != nil {
		t.Fatal(err)
	}
	today := time.Now().UTC().Format(time.DateOnly)
	if u.Client != "alice" || len(u.Days) != schemas.UsageDays || u.Days[0].Day != today || u.Days[1].Media != nil {
		t.Fatalf("usage %+v", u)
	}
	want := map[string]schemas.MediumUsage{"web": {Sent: 50, SentBytes: int64(bytes)}, "sms": {Sent: 10, SentBytes: int64(smsBytes)}}
	if !reflect.DeepEqual(u.Days[0].Media, want) {
		t.Errorf("alice today %+v, want %+v", u.Days[0].Media, want)
	}
	if q := u.Quota; q.Limit != 100 || q.Used != 60 || q.Left != 40 || q.Warned || q.Resets != time.Now().UTC().Truncate(24*time.Hour).Add(24*time.Hour).UnixMilli() {
		t.Errorf("alice's quota %+v", q)
	}
	b, err := cliKit.Usage(ctx, schemas.UsageQuery{Kind: schemas.ClientByID, User: "bob", Days: 2})
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]schemas.MediumUsage{"web": {Received: 50, ReceivedBytes: int64(bytes)}, "sms": {Received: 10, ReceivedBytes: int64(smsBytes)}}
	if b.Client != "bob" || len(b.Days) != 2 || !reflect.DeepEqual(b.Days[0].Media, want) || b.Quota != (schemas.Quota{Resets: u.Quota.Resets}) {
		t.Errorf("bob %+v, want today %+v", b, want)
	}
	// a gateway may not ask by id; a wrong credential is no client
	if _, err := webKit.Usage(ctx, schemas.UsageQuery{Kind: schemas.ClientByID, User: "bob"}); !kit.IsCode(err, schemas.CodeNotAllowed) {
		t.Errorf("a gateway asking bob's usage by id: %v, want NOT_ALLOWED", err)
	}
	if _, err := webKit.Usage(ctx, schemas.UsageQuery{Kind: schemas.CredentialToken, Hash: schemas.TokenSHA256("guess")}); !kit.IsCode(err, schemas.CodeUnauthorized) {
		t.Errorf("a wrong token: %v, want UNAUTHORIZED", err)
	}
	if _, err := cliKit.Usage(ctx, schemas.UsageQuery{Kind: schemas.ClientByID, User: "nobody"}); !kit.IsCode(err, schemas.CodeUnknownRecipient) {
		t.Errorf("no such client: %v, want UNKNOWN_RECIPIENT", err)
	}
	if _, err := cliKit.Usage(ctx, schemas.UsageQuery{Kind: schemas.ClientByID, User: "bob", Days: 400}); !kit.IsCode(err, schemas.CodeMalformed) {
		t.Errorf("400 days: %v, want MALFORMED", err)
	}
	// the brokers' Prometheus counters, per medium and never per client
	got := map[string]float64{}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "uims_accounting_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				if l.GetName() == "client" || l.GetValue() == "alice" || l.GetValue() == "bob" {
					t.Errorf("%s has a client label %v", mf.GetName(), m.GetLabel())
				}
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			got[key] = m.GetCounter().GetValue()
		}
	}
	for k, v := range map[string]float64{
		"uims_accounting_records_total outcome=delivered":              60,
		"uims_accounting_messages_total direction=sent medium=web":     50,
		"uims_accounting_messages_total direction=sent medium=sms":     10,
		"uims_accounting_messages_total direction=received medium=web": 50,
		"uims_accounting_messages_total direction=received medium=sms": 10,
		"uims_accounting_bytes_total direction=sent medium=web":        float64(bytes),
		"uims_accounting_bytes_total direction=received medium=sms":    float64(smsBytes),
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}

// The quota warning (PROTOCOL.md §6.17): alice may send 10 messages a day;
// her 8th makes the brokers send her one message from the sender system,
// which her web gateway delivers as any message, and no more that day,
// whichever of the two brokers routes her next ones. The next day, her 8th
// message brings the next day's warning.
func TestQuotaWarningOncePerDay(t *testing.T) {
	f := fabrictest.New(t)
	clock := fabrictest.NewClock(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	cfg := broker.Config{SweepInterval: 50 * time.Millisecond, Now: clock.Now}
	cfg.Instance = "b1"
	f.StartBroker(cfg)
	cfg.Instance = "b2"
	f.StartBroker(cfg)
	f.PutProfiles(&schemas.Profile{ID: "alice", Token: "alice-token", Quota: 10, Addresses: map[string]string{"test": "alice", "web": "alice"}},
		&schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob"}})
	ogKit, _ := f.StartKit(fabrictest.NewInbox(), kit.Config{Gateway: "test", Medium: "test", Now: clock.Now})
	web := fabrictest.NewInbox()
	webKit, _ := f.StartKit(web, kit.Config{Gateway: "web", Medium: "web", Now: clock.Now})
	ctx := context.Background()
	send := func() error {
		s := submission("hi")
		s.MsgID = kit.NewMsgID()
		var err error
		fabrictest.Eventually(t, 10*time.Second, "a route to bob", func() bool {
			_, err = ogKit.Send(ctx, s)
			return !kit.IsCode(err, schemas.CodeNoRoute)
		})
		return err
	}
	warnings := func() []*kit.Delivery {
		var out []*kit.Delivery
		for _, d := range web.All() {
			if d.Routed.Recipient == "alice" {
				out = append(out, d)
			}
		}
		return out
	}
	for i := 1; i <= 10; i++ {
		if err := send(); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if i == 7 {
			time.Sleep(300 * time.Millisecond)
			if n := len(warnings()); n != 0 {
				t.Fatalf("a warning after 7 of 10 messages")
			}
		}
	}
	if err := send(); !kit.IsCode(err, schemas.CodeQuotaExceeded) {
		t.Fatalf("the 11th message: %v, want QUOTA_EXCEEDED", err)
	}
	fabrictest.Eventually(t, 10*time.Second, "alice's quota warning", func() bool { return len(warnings()) >= 1 })
	time.Sleep(500 * time.Millisecond)
	ws := warnings()
	if len(ws) != 1 {
		t.Fatalf("%d warnings", len(ws))
	}
	w := ws[0]
	imi := w.Routed.IMI
	if imi.Gateway != schemas.SystemParty || imi.From.Medium != schemas.MediumSystem || imi.From.Address != "uims" || w.Routed.Sender != "" ||
		w.Routed.Dest.Medium != "web" || !strings.Contains(string(w.Content), "You have sent 8 of the 10 messages you may send today") {
		t.Errorf("warning %+v: %q", w.Routed, w.Content)
	}
	u, err := webKit.Usage(ctx, schemas.UsageQuery{Kind: schemas.CredentialToken, Hash: schemas.TokenSHA256("alice-token")})
	if err != nil {
		t.Fatal(err)
	}
	if u.Quota != (schemas.Quota{Limit: 10, Used: 10, Left: 0, Warned: true, Resets: time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC).UnixMilli()}) || u.Days[0].Day != "2026-12-06" {
		t.Errorf("usage %+v", u)
	}
	// the warning is a message like any: delivered, acknowledged, accounted
	recs := byMsg(waitRecords(t, f, 11))
	if r := recs[imi.MsgID]; len(r) != 1 || r[0].Outcome != schemas.OutcomeDelivered || r[0].Origin.Gateway != schemas.SystemParty ||
		r[0].Sender != "" || r[0].Recipient != "alice" || !r[0].Final {
		t.Errorf("the warning's record %+v", r)
	}
	fabrictest.Eventually(t, 5*time.Second, "the usage of the warning", func() bool {
		u, _ = webKit.Usage(ctx, schemas.UsageQuery{Kind: schemas.CredentialToken, Hash: schemas.TokenSHA256("alice-token")})
		return u != nil && u.Days[0].Media["web"].Received == 1 && u.Days[0].Media["test"].Sent == 10
	})

	// the next day
	clock.Set(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	for i := 1; i <= 8; i++ {
		if err := send(); err != nil {
			t.Fatalf("next day, message %d: %v", i, err)
		}
	}
	fabrictest.Eventually(t, 10*time.Second, "the next day's warning", func() bool { return len(warnings()) == 2 })
	time.Sleep(300 * time.Millisecond)
	if n := len(warnings()); n != 2 {
		t.Fatalf("%d warnings after two days", n)
	}
}

// A held message the sender cancels (PROTOCOL.md §6.16): one record,
// cancelled (CANCELLED), final, for the medium it was to go to; a sent
// message of alice's that failed.
func TestAccountingCancelled(t *testing.T) {
	x := newHold(t, time.Now(), &schemas.Profile{ID: "bob", Addresses: map[string]string{"web": "bob"}})
	s := submission("never mind")
	s.SendAt = x.clock.Now().Add(time.Hour).UnixMilli()
	if res, err := x.send(s); err != nil || res.Status != schemas.StatusHeld {
		t.Fatalf("send: %+v %v", res, err)
	}
	if _, err := x.ogKit.Cancel(context.Background(), s.MsgID); err != nil {
		t.Fatal(err)
	}
	r := waitRecords(t, x.f, 1)[0]
	if r.ID != s.MsgID+".1.cancelled" || r.Outcome != schemas.OutcomeCancelled || r.Code != "CANCELLED" || !r.Final || r.Dest.Medium != "web" || r.Sender != "alice" {
		t.Errorf("record %+v", r)
	}
	u := x.f.RDB.HGetAll(context.Background(), "{uims}:usaged:alice:"+x.clock.Now().UTC().Format("20060102")).Val()
	if u["test.sent"] != "1" || u["test.failed"] != "1" {
		t.Errorf("alice's usage %v", u)
	}
}
