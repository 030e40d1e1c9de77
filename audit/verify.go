package audit

import (
	"crypto/ed25519"
	"fmt"
	"sort"
	"time"
)

// Finding kinds (PROTOCOL.md §15.4).
const (
	Missing    = "missing"      // a gap in a chain or in a broker's batches, or a chain's overdue tail
	Altered    = "altered"      // a signature that does not verify, a record that does not parse or does not match its successor's prev
	OutOfOrder = "out-of-order" // a broker's batches or a transaction's records going back
)

// Finding is one thing verification found wrong.
type Finding struct {
	Kind      string `json:"kind"`
	Tx        string `json:"tx,omitempty"`
	N         int    `json:"n,omitempty"` // the record concerned
	Broker    string `json:"broker,omitempty"`
	StreamSeq uint64 `json:"stream_seq,omitempty"`
	Detail    string `json:"detail"`
}

func (f Finding) String() string {
	s := f.Kind
	if f.Tx != "" {
		s += " tx " + f.Tx
	}
	if f.N > 0 {
		s += fmt.Sprintf(" record %d", f.N)
	}
	if f.StreamSeq > 0 {
		s += fmt.Sprintf(" (stream seq %d)", f.StreamSeq)
	}
	return s + ": " + f.Detail
}

// Msg is one stream message of the audit stream.
type Msg struct {
	Seq  uint64 // stream sequence
	Data []byte
	Sig  string // the HdrAuditSig header
}

// Verifier checks the audit stream, message by message in stream order.
type Verifier struct {
	// Keys are the public audit keys by kid (miap.Keyring.AuditPublicKeys).
	Keys map[string]ed25519.PublicKey
	// Partial says the messages start after the stream's beginning
	// (--since): a chain or a broker's batches that begin before the first
	// message read are not reported missing.
	Partial bool
	// Now and Slack: a chain whose last record's Due is more than Slack
	// before Now misses its tail. Slack 0 turns the check off.
	Now   time.Time
	Slack time.Duration
	// Only, if set, limits the chains kept to that transaction (show).
	Only string
	// ChainStart reports a chain that does not start at record 1 even when
	// Partial: the caller read from before the transaction began.
	ChainStart bool

	findings []Finding
	boots    map[string]*boot
	txs      map[string]*chain
	batches  int
	records  int
}

type boot struct{ seq uint64 }

type chain struct {
	recs  []located
	lastN map[string]int // per broker boot: the last n seen, in stream order
}

// located is a record where it was found.
type located struct {
	*Record
	Broker    string
	Kid       string
	StreamSeq uint64
	Signed    bool // its batch's signature verified
}

func (v *Verifier) add(f Finding) { v.findings = append(v.findings, f) }

// Add checks one stream message.
func (v *Verifier) Add(m Msg) {
	if v.boots == nil {
		v.boots, v.txs = make(map[string]*boot), make(map[string]*chain)
	}
	v.batches++
	b, err := ParseBatch(m.Data)
	if err != nil {
		v.add(Finding{Kind: Altered, StreamSeq: m.Seq, Detail: err.Error()})
		return
	}
	h := &b.Header
	signed := true
	if err := CheckSignature(h, m.Data, m.Sig, v.Keys); err != nil {
		signed = false
		v.add(Finding{Kind: Altered, Broker: h.Broker, StreamSeq: m.Seq, Detail: fmt.Sprintf("batch %d of %s: %v", h.Seq, h.Broker, err)})
	}
	for _, e := range b.Bad {
		v.add(Finding{Kind: Altered, Broker: h.Broker, StreamSeq: m.Seq, Detail: e.Error()})
	}
	bk := h.Broker + "/" + h.Boot
	st := v.boots[bk]
	switch {
	case st == nil:
		if h.Seq != 1 && !v.Partial {
			v.add(Finding{Kind: Missing, Broker: h.Broker, StreamSeq: m.Seq, Detail: fmt.Sprintf("batches 1–%d of %s (boot %s)", h.Seq-1, h.Broker, h.Boot)})
		}
		v.boots[bk] = &boot{seq: h.Seq}
	case h.Seq <= st.seq:
		v.add(Finding{Kind: OutOfOrder, Broker: h.Broker, StreamSeq: m.Seq, Detail: fmt.Sprintf("batch %d of %s after its batch %d", h.Seq, h.Broker, st.seq)})
	default:
		if h.Seq > st.seq+1 {
			v.add(Finding{Kind: Missing, Broker: h.Broker, StreamSeq: m.Seq, Detail: fmt.Sprintf("batches %d–%d of %s (boot %s)", st.seq+1, h.Seq-1, h.Broker, h.Boot)})
		}
		st.seq = h.Seq
	}
	for _, r := range b.Records {
		v.records++
		if v.Only != "" && r.Body.Tx != v.Only {
			continue
		}
		c := v.txs[r.Body.Tx]
		if c == nil {
			c = &chain{lastN: make(map[string]int)}
			v.txs[r.Body.Tx] = c
		}
		if last, ok := c.lastN[bk]; ok && r.N <= last {
			v.add(Finding{Kind: OutOfOrder, Tx: r.Body.Tx, N: r.N, Broker: h.Broker, StreamSeq: m.Seq,
				Detail: fmt.Sprintf("record %d after record %d of the same broker", r.N, last)})
		}
		c.lastN[bk] = r.N
		if !signed {
			v.add(Finding{Kind: Altered, Tx: r.Body.Tx, N: r.N, Broker: h.Broker, StreamSeq: m.Seq, Detail: "its batch's signature does not verify"})
		}
		if r.Body.Broker != h.Broker {
			v.add(Finding{Kind: Altered, Tx: r.Body.Tx, N: r.N, Broker: h.Broker, StreamSeq: m.Seq,
				Detail: fmt.Sprintf("record of broker %q in a batch of %q", r.Body.Broker, h.Broker)})
		}
		c.recs = append(c.recs, located{Record: r, Broker: h.Broker, Kid: h.Kid, StreamSeq: m.Seq, Signed: signed})
	}
}

// Report is the outcome of a verification.
type Report struct {
	Batches  int       `json:"batches"`
	Records  int       `json:"records"`
	Txs      int       `json:"transactions"`
	Findings []Finding `json:"findings"`
	chains   map[string]*chain
}

// OK reports whether nothing was found.
func (r *Report) OK() bool { return len(r.Findings) == 0 }

// TxResult is the verified chain of one transaction.
type TxResult struct {
	Tx       string    `json:"tx"`
	Records  []Located `json:"records"`
	Findings []Finding `json:"findings"`
}

// Located is a record as found in the stream, for show and the operator view.
type Located struct {
	N         int    `json:"n"`
	Prev      string `json:"prev"`
	Hash      string `json:"hash"`
	Body      Body   `json:"body"`
	Broker    string `json:"broker"`
	Kid       string `json:"kid"`
	StreamSeq uint64 `json:"stream_seq"`
	Signed    bool   `json:"signed"`
}

// Tx returns a transaction's records in chain order and the findings that
// concern it.
func (r *Report) Tx(tx string) TxResult {
	out := TxResult{Tx: tx}
	if c := r.chains[tx]; c != nil {
		for _, l := range c.recs {
			out.Records = append(out.Records, Located{N: l.N, Prev: l.Prev, Hash: l.Hash, Body: l.Body, Broker: l.Broker,
				Kid: l.Kid, StreamSeq: l.StreamSeq, Signed: l.Signed})
		}
	}
	for _, f := range r.Findings {
		if f.Tx == tx {
			out.Findings = append(out.Findings, f)
		}
	}
	return out
}

// Finish checks every chain and returns the report.
func (v *Verifier) Finish() *Report {
	txs := make([]string, 0, len(v.txs))
	for tx := range v.txs {
		txs = append(txs, tx)
	}
	sort.Strings(txs)
	for _, tx := range txs {
		v.checkChain(tx, v.txs[tx])
	}
	return &Report{Batches: v.batches, Records: v.records, Txs: len(v.txs), Findings: v.findings, chains: v.txs}
}

// checkChain checks one transaction's records (§15.4): numbered 1..N
// without gaps, each linked to the one before, its tail not overdue.
func (v *Verifier) checkChain(tx string, c *chain) {
	sort.SliceStable(c.recs, func(i, j int) bool { return c.recs[i].N < c.recs[j].N })
	// the same record twice (a batch stored again) counts once; two
	// different records with one number are not the brokers'
	recs := c.recs[:0]
	for _, l := range c.recs {
		if n := len(recs); n > 0 && recs[n-1].N == l.N {
			if recs[n-1].Hash != l.Hash || recs[n-1].Prev != l.Prev {
				v.add(Finding{Kind: Altered, Tx: tx, N: l.N, StreamSeq: l.StreamSeq, Detail: "two different records with this number"})
			}
			continue
		}
		recs = append(recs, l)
	}
	c.recs = recs
	if len(recs) == 0 {
		return
	}
	if first := recs[0]; first.N != 1 && (!v.Partial || v.ChainStart) {
		v.add(Finding{Kind: Missing, Tx: tx, N: 1, Detail: rangeText(1, first.N-1)})
	}
	for i := 1; i < len(recs); i++ {
		prev, cur := recs[i-1], recs[i]
		if cur.N != prev.N+1 {
			v.add(Finding{Kind: Missing, Tx: tx, N: prev.N + 1, Detail: rangeText(prev.N+1, cur.N-1)})
			continue
		}
		if cur.Prev != prev.Hash {
			v.add(Finding{Kind: Altered, Tx: tx, N: prev.N, StreamSeq: prev.StreamSeq,
				Detail: fmt.Sprintf("record %d does not hash to the prev of record %d", prev.N, cur.N)})
		}
	}
	if v.Slack > 0 {
		for i := len(recs) - 1; i >= 0; i-- {
			if !recs[i].Body.defines() {
				continue
			}
			if due := recs[i].Body.Due; due > 0 && v.Now.UnixMilli() > due+v.Slack.Milliseconds() {
				v.add(Finding{Kind: Missing, Tx: tx, N: recs[len(recs)-1].N + 1,
					Detail: fmt.Sprintf("no record after %d (a decision was due by %s)", recs[len(recs)-1].N, time.UnixMilli(due).UTC().Format(time.RFC3339))})
			}
			break
		}
	}
}

func rangeText(a, b int) string {
	if a == b {
		return fmt.Sprintf("record %d", a)
	}
	return fmt.Sprintf("records %d–%d", a, b)
}

// Summary is the one-line verified state of a transaction, for the
// operator view: "verified (4 records)", "BROKEN — missing record 3".
func (t *TxResult) Summary() string {
	if len(t.Findings) > 0 {
		f := t.Findings[0]
		s := "BROKEN — " + f.Kind + " " + f.Detail
		if len(t.Findings) > 1 {
			s += fmt.Sprintf(" (+%d more)", len(t.Findings)-1)
		}
		return s
	}
	if len(t.Records) == 0 {
		return "no records"
	}
	return fmt.Sprintf("verified (%d records)", len(t.Records))
}
