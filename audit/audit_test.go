package audit_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/audit"
)

var seed = bytes.Repeat([]byte{3}, ed25519.SeedSize)

func key() (ed25519.PrivateKey, map[string]ed25519.PublicKey) {
	k := ed25519.NewKeyFromSeed(seed)
	return k, map[string]ed25519.PublicKey{"k2": k.Public().(ed25519.PublicKey)}
}

func body(tx, kind string, at int64, due int64) []byte {
	b, _ := json.Marshal(audit.Body{V: 1, Tx: tx, Kind: kind, At: at, Broker: "b1", Due: due})
	return b
}

// chainOf is a transaction's records: route, ack, notify.
func chainOf(tx string) [][]byte {
	return audit.Link([][]byte{body(tx, audit.KindRoute, 1, 50), body(tx, audit.KindAck, 2, 0), body(tx, audit.KindNotify, 3, 0)}, 1, "")
}

func batch(seq uint64, recs [][]byte) audit.Msg {
	k, _ := key()
	data, sig := audit.EncodeBatch(audit.BatchHeader{Broker: "b1", Boot: "x", Seq: seq, Kid: "k2", At: 1}, recs, k)
	return audit.Msg{Seq: seq, Data: data, Sig: sig}
}

func run(partial bool, msgs ...audit.Msg) *audit.Report {
	_, pub := key()
	v := &audit.Verifier{Keys: pub, Partial: partial}
	for _, m := range msgs {
		v.Add(m)
	}
	return v.Finish()
}

func kinds(r *audit.Report) string {
	var s []string
	for _, f := range r.Findings {
		s = append(s, f.Kind)
	}
	return strings.Join(s, ",")
}

func TestVerifyIntact(t *testing.T) {
	a, b := chainOf("a"), chainOf("b")
	r := run(false, batch(1, [][]byte{a[0], b[0]}), batch(2, [][]byte{a[1], a[2], b[1]}), batch(3, [][]byte{b[2]}))
	if !r.OK() || r.Records != 6 || r.Txs != 2 {
		t.Fatalf("%+v", r)
	}
	if s := r.Tx("a"); s.Summary() != "verified (3 records)" {
		t.Errorf("%q", s.Summary())
	}
}

// A holder of the key who re-signs a batch without a record still leaves
// a gap in the chain; one who edits a record breaks the next one's prev.
func TestVerifyChainFindings(t *testing.T) {
	a := chainOf("a")
	if r := run(false, batch(1, [][]byte{a[0], a[2]})); kinds(r) != audit.Missing || r.Findings[0].N != 2 {
		t.Errorf("gap: %v", r.Findings)
	}
	edited := bytes.Replace(a[0], []byte(`"at":1`), []byte(`"at":9`), 1)
	if r := run(false, batch(1, [][]byte{edited, a[1], a[2]})); kinds(r) != audit.Altered || r.Findings[0].N != 1 {
		t.Errorf("edit: %v", r.Findings)
	}
	if r := run(false, batch(1, [][]byte{a[1], a[0], a[2]})); kinds(r) != audit.OutOfOrder {
		t.Errorf("order: %v", r.Findings)
	}
	// a chain that starts before --since is no finding
	if r := run(true, batch(5, [][]byte{a[1], a[2]})); !r.OK() {
		t.Errorf("partial: %v", r.Findings)
	}
	if r := run(false, batch(5, [][]byte{a[1], a[2]})); kinds(r) != audit.Missing+","+audit.Missing {
		t.Errorf("not partial: %v", r.Findings)
	}
	// the same batch twice, in order
	if r := run(false, batch(1, a), batch(1, a)); kinds(r) != audit.OutOfOrder+","+audit.OutOfOrder {
		t.Errorf("replay: %v", r.Findings)
	}
}

// Batch findings: a signature that does not verify, a removed batch.
func TestVerifyBatchFindings(t *testing.T) {
	a := chainOf("a")
	m := batch(1, a)
	m.Data = bytes.Replace(m.Data, []byte(`"kind":"ack"`), []byte(`"kind":"cancel"`), 1)
	r := run(false, m)
	if len(r.Findings) == 0 || r.Findings[0].Kind != audit.Altered {
		t.Errorf("edited batch: %v", r.Findings)
	}
	if r := run(false, batch(1, a[:1]), batch(3, a[2:])); kinds(r) != audit.Missing+","+audit.Missing {
		t.Errorf("removed batch: %v", r.Findings)
	}
}

// A chain whose next decision is overdue misses its tail.
func TestVerifyTail(t *testing.T) {
	a := chainOf("a")
	_, pub := key()
	v := &audit.Verifier{Keys: pub, Now: time.UnixMilli(1000), Slack: time.Millisecond}
	v.Add(batch(1, a[:1]))
	if r := v.Finish(); kinds(r) != audit.Missing {
		t.Errorf("tail: %v", r.Findings)
	}
	v = &audit.Verifier{Keys: pub, Now: time.UnixMilli(1000), Slack: time.Millisecond}
	v.Add(batch(1, a))
	if r := v.Finish(); !r.OK() {
		t.Errorf("closed chain: %v", r.Findings)
	}
}

// FuzzAuditRecord: any batch bytes parse or fail cleanly, and verifying
// them never panics; a record that parses encodes back to its bytes.
func FuzzAuditRecord(f *testing.F) {
	a := chainOf("a")
	f.Add(batch(1, a).Data, batch(1, a).Sig)
	f.Add(a[1], "")
	f.Add([]byte("{\"v\":1,\"broker\":\"b\",\"boot\":\"x\",\"seq\":1,\"kid\":\"k2\",\"at\":1}\n{\"n\":1,\"prev\":\"\",\"b\":{}}\n"), "")
	f.Fuzz(func(t *testing.T, data []byte, sig string) {
		_, pub := key()
		v := &audit.Verifier{Keys: pub}
		v.Add(audit.Msg{Seq: 1, Data: data, Sig: sig})
		r := v.Finish()
		for _, fd := range r.Findings {
			_ = fd.String()
		}
		if rec, err := audit.ParseRecord(data); err == nil {
			again := audit.Link([][]byte{rec.B}, rec.N, rec.Prev)[0]
			back, err := audit.ParseRecord(again)
			if err != nil || back.Hash != rec.Hash || back.N != rec.N || back.Prev != rec.Prev {
				t.Fatalf("re-encoded record differs: %v", err)
			}
		}
	})
}
