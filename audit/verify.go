package audit

import (
	"crypto/ed25519"
	"fmt"
	"sort"
	"time"

	"github.com/uims/uims/schemas"
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
	// Anchors are the brokers' anchors (PROTOCOL.md §15.5) by Anchor.Field,
	// read from the store BEFORE the stream is read, so that each names a
	// batch stored before the read's end. Finish reports a boot whose
	// batches end before its anchored batch, or are absent, missing, and an
	// anchored batch whose bytes differ altered. nil: no anchor check; the
	// last batches of a boot, or all of them, may then be gone unseen.
	Anchors map[string]Anchor
	// Since is the time a Partial read began at (Verify sets it): an
	// anchor recorded before Since plus AnchorSkew is not checked, since
	// its batch may have been stored before the read began. Partial with
	// a zero Since checks no anchor.
	Since time.Time
	// Retention is how long the stream keeps a batch; default
	// schemas.AuditMaxAge. When Now is set, an anchor recorded before Now
	// minus Retention plus AnchorSkew is not checked: its batch may have
	// aged out of the stream.
	Retention time.Duration

	findings []Finding
	boots    map[string]*boot
	txs      map[string]*chain
	batches  int
	records  int
}

// boot is what the walk keeps of one broker boot's batches.
type boot struct {
	seq      uint64 // the highest batch seq read
	lo       uint64 // the lowest
	anchored []seen // the batches read with the seq of the boot's anchor
}

// seen is a batch read at its anchored seq.
type seen struct {
	digest    string
	streamSeq uint64
}

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
		st = &boot{seq: h.Seq, lo: h.Seq}
		v.boots[bk] = st
	case h.Seq <= st.seq:
		v.add(Finding{Kind: OutOfOrder, Broker: h.Broker, StreamSeq: m.Seq, Detail: fmt.Sprintf("batch %d of %s after its batch %d", h.Seq, h.Broker, st.seq)})
	default:
		if h.Seq > st.seq+1 {
			v.add(Finding{Kind: Missing, Broker: h.Broker, StreamSeq: m.Seq, Detail: fmt.Sprintf("batches %d–%d of %s (boot %s)", st.seq+1, h.Seq-1, h.Broker, h.Boot)})
		}
		st.seq = h.Seq
	}
	st.lo = min(st.lo, h.Seq)
	if a, ok := v.Anchors[bk]; ok && a.Seq == h.Seq {
		// every copy read, a replayed one too: one with the anchored
		// bytes is the batch the broker had stored
		st.anchored = append(st.anchored, seen{digest: Hash(m.Data), streamSeq: m.Seq})
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
	Batches int `json:"batches"`
	Records int `json:"records"`
	Txs     int `json:"transactions"`
	// AnchorsChecked counts the boots whose anchor was checked against
	// the stream; AnchorsUnchecked those whose anchor was not, being older
	// than the read (Since) or than the stream's retention.
	AnchorsChecked   int       `json:"anchors_checked,omitempty"`
	AnchorsUnchecked int       `json:"anchors_unchecked,omitempty"`
	Findings         []Finding `json:"findings"`
	chains           map[string]*chain
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
	checked, unchecked := v.checkAnchors()
	return &Report{Batches: v.batches, Records: v.records, Txs: len(v.txs), AnchorsChecked: checked, AnchorsUnchecked: unchecked,
		Findings: v.findings, chains: v.txs}
}

// checkAnchors compares each boot's anchor with the batches read
// (§15.5): the stream must hold the anchored batch, with the anchored
// bytes. It returns how many anchors it checked and how many it could not.
func (v *Verifier) checkAnchors() (checked, unchecked int) {
	keys := make([]string, 0, len(v.Anchors))
	for k := range v.Anchors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		a := v.Anchors[k]
		if !v.anchorInRange(a) {
			unchecked++
			continue
		}
		checked++
		v.checkAnchor(a, v.boots[a.Field()])
	}
	return checked, unchecked
}

// anchorInRange reports whether an anchor's batch must be among those
// read: recorded after the read's start (a partial read) and inside the
// stream's retention, each with AnchorSkew to spare for the clocks. The
// anchor is recorded after its batch was stored, and read before the
// stream is, so its batch is never after the read's end.
func (v *Verifier) anchorInRange(a Anchor) bool {
	at := time.UnixMilli(a.At)
	if v.Partial && (v.Since.IsZero() || at.Before(v.Since.Add(AnchorSkew))) {
		return false
	}
	retention := v.Retention
	if retention <= 0 {
		retention = schemas.AuditMaxAge
	}
	return v.Now.IsZero() || !at.Before(v.Now.Add(-retention).Add(AnchorSkew))
}

// checkAnchor checks one boot's anchor against its batches read (st, nil
// when none was): a boot without batches, or whose batches end before the
// anchored one, lost its tail; an anchored batch read with other bytes was
// replaced. A gap that hides the anchored batch is the walk's finding
// already (Add), unless the read began after the boot's first batch.
func (v *Verifier) checkAnchor(a Anchor, st *boot) {
	where := fmt.Sprintf("the store anchors batch %d (stream seq %d, %s)", a.Seq, a.StreamSeq,
		time.UnixMilli(a.At).UTC().Format(time.RFC3339))
	switch {
	case st == nil:
		what := batchesText(1, a.Seq)
		if v.Partial {
			what = fmt.Sprintf("batches up to %d", a.Seq)
		}
		v.add(Finding{Kind: Missing, Broker: a.Broker, Detail: fmt.Sprintf("%s of %s (boot %s): %s; the stream holds none of this boot (deleted or purged)",
			what, a.Broker, a.Boot, where)})
	case st.seq < a.Seq:
		v.add(Finding{Kind: Missing, Broker: a.Broker, Detail: fmt.Sprintf("%s of %s (boot %s): %s; the stream's last of this boot is %d (its tail deleted)",
			batchesText(st.seq+1, a.Seq), a.Broker, a.Boot, where, st.seq)})
	case len(st.anchored) == 0:
		if v.Partial && a.Seq < st.lo {
			v.add(Finding{Kind: Missing, Broker: a.Broker, Detail: fmt.Sprintf("batch %d of %s (boot %s): %s; the first read of this boot is %d",
				a.Seq, a.Broker, a.Boot, where, st.lo)})
		}
	default:
		for _, s := range st.anchored {
			if s.digest == a.Digest {
				return
			}
		}
		s := st.anchored[0]
		v.add(Finding{Kind: Altered, Broker: a.Broker, StreamSeq: s.streamSeq, Detail: fmt.Sprintf("batch %d of %s (boot %s) is not the one stored: SHA-256 %s, %s with SHA-256 %s",
			a.Seq, a.Broker, a.Boot, short(s.digest), where, short(a.Digest))})
	}
}

// batchesText names the batches a to b.
func batchesText(a, b uint64) string {
	if a == b {
		return fmt.Sprintf("batch %d", a)
	}
	return fmt.Sprintf("batches %d–%d", a, b)
}

// short is a digest's first 12 digits, enough to tell two apart.
func short(digest string) string { return digest[:min(12, len(digest))] }

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
