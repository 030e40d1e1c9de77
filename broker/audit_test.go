package broker_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/audit"
	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// auditFabric runs a broker with two kits and sends n messages, each
// delivered; it returns the fabric, an administrator's JetStream and the
// message ids.
func auditFabric(t *testing.T, cfg broker.Config, n int) (*fabrictest.Fabric, jetstream.JetStream, []string) {
	f := fabrictest.New(t)
	f.StartBroker(cfg)
	profiles(f)
	og, dg := fabrictest.NewInbox(), fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test"})
	f.StartKit(dg, kit.Config{Gateway: "peer", Medium: "web"})
	var ids []string
	ids = append(ids, waitRoute(t, ogKit).MsgID)
	for i := 1; i < n; i++ {
		res, err := ogKit.Send(context.Background(), submission("audited"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.MsgID)
	}
	for _, id := range ids {
		fabrictest.Eventually(t, 10*time.Second, "delivery of "+id, func() bool { return dg.Get(id) != nil })
	}
	js, err := jetstream.New(f.Conn("admin"))
	if err != nil {
		t.Fatal(err)
	}
	return f, js, ids
}

func verify(t *testing.T, f *fabrictest.Fabric, js jetstream.JetStream) *audit.Report {
	t.Helper()
	v := &audit.Verifier{Keys: f.Keyring(miap.BrokerParty).AuditPublicKeys()}
	rep, err := audit.Verify(context.Background(), js, v, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// waitChains waits until every message's chain has its route and its ack.
func waitChains(t *testing.T, f *fabrictest.Fabric, js jetstream.JetStream, ids []string) *audit.Report {
	t.Helper()
	var rep *audit.Report
	fabrictest.Eventually(t, 10*time.Second, "audit records", func() bool {
		rep = verify(t, f, js)
		for _, id := range ids {
			if len(rep.Tx(id).Records) < 2 {
				return false
			}
		}
		return true
	})
	return rep
}

func has(rep *audit.Report, kind string) bool {
	for _, f := range rep.Findings {
		if f.Kind == kind {
			return true
		}
	}
	return false
}

// A delivered message leaves a verifiable chain: its route, then its
// acknowledgement with the ID comparison, each record linked to the one
// before and signed by the broker that decided.
func TestAuditChainOfADeliveredMessage(t *testing.T) {
	f, js, ids := auditFabric(t, broker.Config{Instance: "b1"}, 3)
	rep := waitChains(t, f, js, ids)
	if !rep.OK() {
		t.Fatalf("findings on an untouched stream: %v", rep.Findings)
	}
	tx := rep.Tx(ids[1])
	if tx.Records[0].Body.Kind != audit.KindRoute || tx.Records[0].Body.OG != "test" || tx.Records[0].Body.Gateway != "peer" {
		t.Errorf("record 1: %+v", tx.Records[0].Body)
	}
	ack := tx.Records[1].Body
	if ack.Kind != audit.KindAck || ack.Status != schemas.StatusDelivered || ack.IDMatch != audit.IDMatch || ack.IDHash != tx.Records[0].Body.IDHash {
		t.Errorf("record 2: %+v", ack)
	}
	for i, r := range tx.Records {
		if r.N != i+1 || !r.Signed || r.Broker != "b1" {
			t.Errorf("record %d: %+v", i+1, r)
		}
	}
	if s := tx.Summary(); s != "verified (2 records)" {
		t.Errorf("summary %q", s)
	}
}

// A forged acknowledgement (an ID that is not the stored one) is recorded
// as refused, in the chain.
func TestAuditRecordsIDMismatch(t *testing.T) {
	f, js, ids := auditFabric(t, broker.Config{Instance: "b1"}, 1)
	waitChains(t, f, js, ids)
	peer := f.Keyring("peer")
	eng, err := miap.New(miap.Config{Keys: peer})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"v":1,"tx":"` + ids[0] + `","msg_id":"` + ids[0] + `","gateway":"peer","status":"read"}`)
	fr := &miap.Frame{Purpose: miap.PurposeAck, Party: "peer", ID: bytes.Repeat([]byte{7}, 32), Body: body}
	if _, err := rand.Read(fr.Nonce[:]); err != nil {
		t.Fatal(err)
	}
	if err := eng.Sign(fr); err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(schemas.SubjectBrokerAck)
	fr.PutHeader(msg.Header)
	msg.Data = body
	reply, err := f.Conn("peer").RequestMsg(msg, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c := reply.Header.Get(schemas.HdrServiceErrorCode); c != strconv.Itoa(int(schemas.CodeIDMismatch)) {
		t.Fatalf("forged ack answered %q", c)
	}
	var rep *audit.Report
	fabrictest.Eventually(t, 5*time.Second, "the refused ack's record", func() bool {
		rep = verify(t, f, js)
		return len(rep.Tx(ids[0]).Records) == 3
	})
	last := rep.Tx(ids[0]).Records[2].Body
	if last.Kind != audit.KindAck || last.IDMatch != audit.IDMismatch || !rep.OK() {
		t.Errorf("record 3 %+v, findings %v", last, rep.Findings)
	}
}

// streamMsgs returns the audit stream's messages.
func streamMsgs(t *testing.T, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, schemas.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(ctx)
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		if m, err := s.GetMsg(ctx, seq); err == nil {
			out = append(out, m)
		}
	}
	return out
}

// waitBatches sends messages until the stream holds at least n batches.
func manyBatches(t *testing.T, n int) (*fabrictest.Fabric, jetstream.JetStream, jetstream.Stream) {
	t.Helper()
	f, js, ids := auditFabric(t, broker.Config{Instance: "b1"}, 1)
	og := fabrictest.NewInbox()
	ogKit, _ := f.StartKit(og, kit.Config{Gateway: "test", Medium: "test"})
	for len(streamMsgs(t, js)) < n {
		res, err := ogKit.Send(context.Background(), submission("more"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.MsgID)
		time.Sleep(30 * time.Millisecond) // another batch
	}
	waitChains(t, f, js, ids)
	s, _ := js.Stream(context.Background(), schemas.AuditStream)
	return f, js, s
}

// A record removed from the stream is reported missing.
func TestAuditVerifyFindsARemovedRecord(t *testing.T) {
	f, js, s := manyBatches(t, 4)
	if rep := verify(t, f, js); !rep.OK() {
		t.Fatalf("before: %v", rep.Findings)
	}
	msgs := streamMsgs(t, js)
	if err := s.DeleteMsg(context.Background(), msgs[1].Sequence); err != nil {
		t.Fatal(err)
	}
	rep := verify(t, f, js)
	if !has(rep, audit.Missing) {
		t.Fatalf("a removed batch not found: %v", rep.Findings)
	}
}

// An edited record, stored in place of the original, is reported altered;
// a record signed with another key too.
func TestAuditVerifyFindsAnEditedRecord(t *testing.T) {
	f, js, s := manyBatches(t, 3)
	msgs := streamMsgs(t, js)
	orig := msgs[1]
	edited := bytes.Replace(orig.Data, []byte(`"status":"delivered"`), []byte(`"status":"failed"`), 1)
	if bytes.Equal(edited, orig.Data) {
		edited = bytes.Replace(orig.Data, []byte(`"gateway":"peer"`), []byte(`"gateway":"evil"`), 1)
	}
	admin := f.Conn("admin")
	m := nats.NewMsg(orig.Subject)
	m.Data = edited
	m.Header.Set(schemas.HdrAuditSig, orig.Header.Get(schemas.HdrAuditSig)) // no Nats-Msg-Id: the stream would drop it as a duplicate
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(context.Background(), orig.Sequence); err != nil {
		t.Fatal(err)
	}
	rep := verify(t, f, js)
	if !has(rep, audit.Altered) {
		t.Fatalf("an edited record not found: %v", rep.Findings)
	}

	// a forged batch under the brokers' kid, signed with another key
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	b, err := audit.ParseBatch(msgs[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	h := b.Header
	h.Seq = 1000
	data, sig := audit.EncodeBatch(h, [][]byte{audit.Link([][]byte{[]byte(`{"v":1,"tx":"x","kind":"route","at":1,"broker":"b1"}`)}, 1, "")[0]}, other)
	fm := nats.NewMsg(schemas.AuditSubject("b1"))
	fm.Data = data
	fm.Header.Set(schemas.HdrAuditSig, sig)
	if err := admin.PublishMsg(fm); err != nil {
		t.Fatal(err)
	}
	fabrictest.Eventually(t, 5*time.Second, "the forged record found", func() bool {
		for _, fd := range verify(t, f, js).Findings {
			if fd.Tx == "x" && fd.Kind == audit.Altered {
				return true
			}
		}
		return false
	})
}

// A batch stored again later (a replay, or the stream reordered) is
// reported out of order.
func TestAuditVerifyFindsOutOfOrder(t *testing.T) {
	f, js, s := manyBatches(t, 3)
	msgs := streamMsgs(t, js)
	orig := msgs[0]
	m := nats.NewMsg(orig.Subject)
	m.Data = orig.Data
	m.Header.Set(schemas.HdrAuditSig, orig.Header.Get(schemas.HdrAuditSig))
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(context.Background(), orig.Sequence); err != nil {
		t.Fatal(err)
	}
	rep := verify(t, f, js)
	if !has(rep, audit.OutOfOrder) {
		t.Fatalf("a moved batch not found: %v", rep.Findings)
	}
}

// UIMS_AUDIT=off: no records.
func TestAuditOff(t *testing.T) {
	f, js, _ := auditFabric(t, broker.Config{Instance: "b1", NoAudit: true}, 2)
	time.Sleep(100 * time.Millisecond)
	if msgs := streamMsgs(t, js); len(msgs) != 0 {
		t.Errorf("%d audit batches with the audit trail off", len(msgs))
	}
	if anchors, err := broker.AuditAnchors(context.Background(), f.RDB); err != nil || len(anchors) != 0 {
		t.Errorf("anchors with the audit trail off: %v %v", anchors, err)
	}
}

// A message that falls back to its next medium leaves one chain across
// its attempts: route, the failed ack, reroute, notify, then the second
// attempt's delivered ack.
func TestAuditChainAcrossAReroute(t *testing.T) {
	email, web := permanent(schemas.CodeUnknownRecipient, "550 5.1.1 no such mailbox"), fabrictest.NewInbox()
	x := newFallback(t, bobPrefersEmail(nil), email, web)
	msgID, _, err := x.send("fall back")
	if err != nil {
		t.Fatal(err)
	}
	if st := x.final(msgID); st.State != schemas.StatusDelivered {
		t.Fatalf("state %s", st.State)
	}
	js, _ := jetstream.New(x.f.Conn("admin"))
	var tx audit.TxResult
	want := []string{audit.KindRoute, audit.KindAck, audit.KindReroute, audit.KindNotify, audit.KindAck}
	fabrictest.Eventually(t, 5*time.Second, "the chain across two attempts", func() bool {
		rep := verify(t, x.f, js)
		tx = rep.Tx(msgID)
		return len(tx.Records) >= len(want) && rep.OK()
	})
	for i, k := range want {
		if b := tx.Records[i].Body; b.Kind != k {
			t.Errorf("record %d: %s, want %s (%+v)", i+1, b.Kind, k, b)
		}
	}
	if b := tx.Records[2].Body; b.Attempt != 2 || b.Medium != "web" || b.Code != "UNKNOWN_RECIPIENT" {
		t.Errorf("reroute %+v", b)
	}
	if b := tx.Records[4].Body; b.Status != schemas.StatusDelivered || b.Gateway != "web" || b.IDHash != tx.Records[2].Body.IDHash {
		t.Errorf("second attempt's ack %+v", b)
	}
}

// anchored waits until the store's anchor of the broker's boot names the
// last batch in the stream, and returns the anchors.
func anchored(t *testing.T, f *fabrictest.Fabric, js jetstream.JetStream) map[string]audit.Anchor {
	t.Helper()
	var anchors map[string]audit.Anchor
	fabrictest.Eventually(t, 10*time.Second, "the anchor of the last batch", func() bool {
		var err error
		if anchors, err = broker.AuditAnchors(context.Background(), f.RDB); err != nil {
			t.Fatal(err)
		}
		msgs := streamMsgs(t, js)
		if len(msgs) == 0 || len(anchors) != 1 {
			return false
		}
		last, err := audit.ParseBatch(msgs[len(msgs)-1].Data)
		if err != nil {
			t.Fatal(err)
		}
		a, ok := anchors["b1/"+last.Header.Boot]
		return ok && a.Seq == last.Header.Seq && a.StreamSeq == msgs[len(msgs)-1].Sequence
	})
	return anchors
}

// verifyAnchored verifies the whole stream against anchors, read before.
func verifyAnchored(t *testing.T, f *fabrictest.Fabric, js jetstream.JetStream, anchors map[string]audit.Anchor) *audit.Report {
	t.Helper()
	v := &audit.Verifier{Keys: f.Keyring(miap.BrokerParty).AuditPublicKeys(), Anchors: anchors, Now: time.Now()}
	rep, err := audit.Verify(context.Background(), js, v, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// A stream nobody touched verifies against the broker's anchor.
func TestAuditAnchorsUntouched(t *testing.T) {
	f, js, ids := auditFabric(t, broker.Config{Instance: "b1"}, 3)
	waitChains(t, f, js, ids)
	anchors := anchored(t, f, js)
	if rep := verifyAnchored(t, f, js, anchors); !rep.OK() || rep.AnchorsChecked != 1 {
		t.Fatalf("untouched: %+v", rep)
	}
}

// The whole stream purged (the NATS operator's right): the stream alone
// verifies — nothing is left to find a gap in — but the anchor in Redis
// names a batch it no longer holds. This is why `uims audit verify` wants
// the store.
func TestAuditAnchorsFindAPurgedStream(t *testing.T) {
	f, js, ids := auditFabric(t, broker.Config{Instance: "b1"}, 2)
	waitChains(t, f, js, ids)
	anchors := anchored(t, f, js)
	s, _ := js.Stream(context.Background(), schemas.AuditStream)
	if err := s.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rep := verify(t, f, js); !rep.OK() || rep.Batches != 0 {
		t.Fatalf("purged, without anchors: %+v", rep)
	}
	rep := verifyAnchored(t, f, js, anchors)
	if !has(rep, audit.Missing) || len(rep.Findings) != 1 || rep.Findings[0].Broker != "b1" || !strings.Contains(rep.Findings[0].Detail, "none of this boot") {
		t.Fatalf("purged, with anchors: %v", rep.Findings)
	}
}

// The last batch deleted: no gap after it, every chain closed, so only the
// anchor shows it.
func TestAuditAnchorsFindADeletedTail(t *testing.T) {
	f, js, s := manyBatches(t, 3)
	anchors := anchored(t, f, js)
	msgs := streamMsgs(t, js)
	if err := s.DeleteMsg(context.Background(), msgs[len(msgs)-1].Sequence); err != nil {
		t.Fatal(err)
	}
	if rep := verify(t, f, js); !rep.OK() {
		t.Fatalf("tail deleted, without anchors: %v", rep.Findings)
	}
	rep := verifyAnchored(t, f, js, anchors)
	if !has(rep, audit.Missing) || len(rep.Findings) != 1 || !strings.Contains(rep.Findings[0].Detail, "tail deleted") {
		t.Fatalf("tail deleted, with anchors: %v", rep.Findings)
	}
}

// The anchored batch replaced by one validly signed (the test holds K2, as
// an attacker with the brokers' key file would) that leaves a consistent
// chain: signatures and chains verify, the anchor's digest does not.
func TestAuditAnchorsFindAReplacedBatch(t *testing.T) {
	f, js, s := manyBatches(t, 3)
	anchors := anchored(t, f, js)
	msgs := streamMsgs(t, js)
	orig := msgs[len(msgs)-1]
	b, err := audit.ParseBatch(orig.Data)
	if err != nil {
		t.Fatal(err)
	}
	// the batch's last record says another thing: nothing follows it in
	// its chain, so no prev gives it away
	h := b.Header
	recs := make([][]byte, len(b.Records))
	for i, r := range b.Records {
		body := r.B
		if i == len(b.Records)-1 {
			body = bytes.Replace(body, []byte(`"status":"delivered"`), []byte(`"status":"failed"`), 1)
			if bytes.Equal(body, r.B) {
				body = bytes.Replace(body, []byte(`"at":`), []byte(`"at":1`), 1)
			}
		}
		recs[i] = audit.Link([][]byte{body}, r.N, r.Prev)[0]
	}
	_, key, ok := f.Keyring(miap.BrokerParty).AuditSigner(time.Now())
	if !ok {
		t.Fatal("no audit key")
	}
	data, sig := audit.EncodeBatch(h, recs, key)
	m := nats.NewMsg(orig.Subject)
	m.Data = data
	m.Header.Set(schemas.HdrAuditSig, sig)
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(context.Background(), orig.Sequence); err != nil {
		t.Fatal(err)
	}
	if rep := verify(t, f, js); !rep.OK() {
		t.Fatalf("replaced, without anchors: %v", rep.Findings)
	}
	rep := verifyAnchored(t, f, js, anchors)
	if !has(rep, audit.Altered) || len(rep.Findings) != 1 || rep.Findings[0].Broker != "b1" {
		t.Fatalf("replaced, with anchors: %v", rep.Findings)
	}
}
