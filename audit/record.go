package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/uims/uims/schemas"
)

// Record kinds (PROTOCOL.md §15.1).
const (
	KindRoute      = "route"      // a message routed (attempt 1)
	KindHold       = "hold"       // a message accepted and held (§6.16), at routing or at a reroute
	KindConversion = "conversion" // a processor's report moved the content to its next hop (§6.7)
	KindAck        = "ack"        // an acknowledgement applied, or refused for its ID (§6.8)
	KindNotify     = "notify"     // the originator is notified of a status (§6.9)
	KindReroute    = "reroute"    // the message moved on to its next medium (§6.15)
	KindRelease    = "release"    // a held message routed at the end of its hold (§6.16)
	KindCancel     = "cancel"     // a held message cancelled by its sender (§6.16)
	KindExpire     = "expire"     // the deadline passed without an outcome (§6.9)
)

// ID comparison results of an ack record.
const (
	IDMatch    = "match"    // SHA-256 of the returned ID equals a stored one: applied
	IDMismatch = "mismatch" // it does not: refused with ID_MISMATCH, nothing changed
)

// Body is what a record says of one decision: meta information only, never
// content. Its exact JSON bytes are hashed into the chain.
type Body struct {
	V       int    `json:"v"`
	Tx      string `json:"tx"`
	Kind    string `json:"kind"`
	At      int64  `json:"at"`     // Unix ms of the decision
	Broker  string `json:"broker"` // the deciding broker instance
	Attempt int    `json:"attempt,omitempty"`
	// OG is the originating gateway (route, hold).
	OG string `json:"og,omitempty"`
	// Gateway is the destination (route, hold, reroute, release), the
	// acknowledging gateway (ack) or the reporting processor (conversion).
	Gateway string `json:"gateway,omitempty"`
	Medium  string `json:"medium,omitempty"`
	// Chain is the route's conversion steps, "processor:conversion".
	Chain []string `json:"chain,omitempty"`
	Step  int      `json:"step,omitempty"`  // conversion: the step reported
	Next  string   `json:"next,omitempty"`  // conversion: the next hop
	CType string   `json:"ctype,omitempty"` // conversion: the content type it produced
	// Status is the acknowledged (ack) or notified (notify) status.
	Status string `json:"status,omitempty"`
	Code   string `json:"code,omitempty"`
	// IDHash is the hex SHA-256 of the ID concerned: the acknowledged one
	// (ack), the new attempt's (route, reroute, release).
	IDHash  string `json:"idh,omitempty"`
	IDMatch string `json:"id,omitempty"` // ack: IDMatch or IDMismatch
	Relayed bool   `json:"relayed,omitempty"`
	Until   int64  `json:"until,omitempty"` // hold: Unix ms its hold ends
	// Due is the Unix ms by which the transaction's next decision is due
	// (its deadline plus grace, a hold's end); 0 when none is (an outcome).
	Due int64 `json:"due,omitempty"`
}

// Final reports whether a body records an outcome: after it no decision is
// due, though one may still come (a read after delivered, a late ack).
func (b *Body) Final() bool { return b.Due == 0 && b.defines() }

// defines reports whether a body changes the transaction's state, so that
// its Due says what comes next; a refused ack and a notification do not.
func (b *Body) defines() bool {
	switch b.Kind {
	case KindNotify:
		return false
	case KindAck:
		return b.IDMatch != IDMismatch
	}
	return true
}

// Record is one link of a transaction's chain as it is stored: its number
// N (1, 2, 3… per transaction), Prev (the hex SHA-256 of the previous
// record's body bytes, empty for N = 1) and the body's exact bytes.
type Record struct {
	N    int             `json:"n"`
	Prev string          `json:"prev"`
	B    json.RawMessage `json:"b"`

	Body Body   `json:"-"` // B decoded
	Hash string `json:"-"` // hex SHA-256 of B
}

// Hash returns the hex SHA-256 of a body's bytes: the chain link (§15.1).
func Hash(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// Link returns the record lines of consecutive bodies of one transaction,
// the first numbered n with previous hash prev, each next one linked to
// the one before.
func Link(bodies [][]byte, n int, prev string) [][]byte {
	out := make([][]byte, len(bodies))
	for i, b := range bodies {
		line := make([]byte, 0, len(b)+100)
		line = append(line, `{"n":`...)
		line = strconv.AppendInt(line, int64(n+i), 10)
		line = append(line, `,"prev":"`...)
		line = append(line, prev...)
		line = append(line, `","b":`...)
		line = append(line, b...)
		out[i] = append(line, '}')
		prev = Hash(b)
	}
	return out
}

// Head is what a decision's store step needs for its records: their count
// and the hash of the last one's body, the transaction's new chain head.
func Head(bodies [][]byte) (count int, head string) {
	if len(bodies) == 0 {
		return 0, ""
	}
	return len(bodies), Hash(bodies[len(bodies)-1])
}

// Errors of parsing.
var (
	ErrFormat    = errors.New("audit: malformed")
	ErrSignature = errors.New("audit: signature does not verify")
	ErrKey       = errors.New("audit: unknown key")
)

var knownKinds = map[string]bool{KindRoute: true, KindHold: true, KindConversion: true, KindAck: true, KindNotify: true,
	KindReroute: true, KindRelease: true, KindCancel: true, KindExpire: true}

// ParseRecord parses and checks one record line.
func ParseRecord(line []byte) (*Record, error) {
	var r Record
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: record: %w", ErrFormat, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: record: trailing data", ErrFormat)
	}
	if r.N < 1 {
		return nil, fmt.Errorf("%w: record: n %d", ErrFormat, r.N)
	}
	if (r.N == 1) != (r.Prev == "") || (r.Prev != "" && !schemas.LowerHex(r.Prev, 64)) {
		return nil, fmt.Errorf("%w: record %d: prev %q", ErrFormat, r.N, r.Prev)
	}
	if len(r.B) == 0 || r.B[0] != '{' {
		return nil, fmt.Errorf("%w: record %d: body", ErrFormat, r.N)
	}
	if err := json.Unmarshal(r.B, &r.Body); err != nil {
		return nil, fmt.Errorf("%w: record %d: body: %w", ErrFormat, r.N, err)
	}
	if r.Body.V != 1 || r.Body.Tx == "" || !knownKinds[r.Body.Kind] {
		return nil, fmt.Errorf("%w: record %d: body v %d tx %q kind %q", ErrFormat, r.N, r.Body.V, r.Body.Tx, r.Body.Kind)
	}
	r.Hash = Hash(r.B)
	return &r, nil
}

// BatchHeader is the first line of a batch.
type BatchHeader struct {
	V      int    `json:"v"`
	Broker string `json:"broker"` // the broker instance that decided and signed
	Boot   string `json:"boot"`   // random per start of the broker's publisher
	Seq    uint64 `json:"seq"`    // 1, 2, 3… per boot
	Kid    string `json:"kid"`    // the K2 kid whose audit key signed
	At     int64  `json:"at"`     // Unix ms the batch was signed
}

// sigContext prefixes what a batch signature covers (§15.2).
const sigContext = "UIMS-AUDIT/1\n"

// EncodeBatch returns a batch's bytes — the header line and one line per
// record, each ending in a newline — and its signature, base64url.
func EncodeBatch(h BatchHeader, records [][]byte, key ed25519.PrivateKey) (data []byte, sig string) {
	h.V = 1
	hb, _ := json.Marshal(h)
	n := len(hb) + 1
	for _, r := range records {
		n += len(r) + 1
	}
	data = make([]byte, 0, n)
	data = append(append(data, hb...), '\n')
	for _, r := range records {
		data = append(append(data, r...), '\n')
	}
	return data, Sign(key, data)
}

// Sign returns the signature of a batch's bytes, base64url.
func Sign(key ed25519.PrivateKey, data []byte) string {
	msg := make([]byte, 0, len(sigContext)+len(data))
	msg = append(append(msg, sigContext...), data...)
	return base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, msg))
}

// Batch is a parsed batch.
type Batch struct {
	Header  BatchHeader
	Records []*Record
	// Bad are lines that did not parse, with their error.
	Bad []error
}

// ParseBatch parses a batch's bytes. A header that does not parse is an
// error; a record line that does not is kept in Bad.
func ParseBatch(data []byte) (*Batch, error) {
	if len(data) == 0 || data[len(data)-1] != '\n' {
		return nil, fmt.Errorf("%w: batch does not end in a newline", ErrFormat)
	}
	lines := bytes.Split(data[:len(data)-1], []byte{'\n'})
	var b Batch
	dec := json.NewDecoder(bytes.NewReader(lines[0]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b.Header); err != nil || dec.More() {
		return nil, fmt.Errorf("%w: batch header", ErrFormat)
	}
	if b.Header.V != 1 || b.Header.Broker == "" || b.Header.Kid == "" || b.Header.Seq < 1 {
		return nil, fmt.Errorf("%w: batch header %+v", ErrFormat, b.Header)
	}
	for _, l := range lines[1:] {
		r, err := ParseRecord(l)
		if err != nil {
			b.Bad = append(b.Bad, err)
			continue
		}
		b.Records = append(b.Records, r)
	}
	return &b, nil
}

// CheckSignature verifies a batch's signature with the public audit keys
// by kid.
func CheckSignature(h *BatchHeader, data []byte, sig string, keys map[string]ed25519.PublicKey) error {
	pub, ok := keys[h.Kid]
	if !ok {
		return fmt.Errorf("%w %q", ErrKey, h.Kid)
	}
	s, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || len(s) != ed25519.SignatureSize {
		return ErrSignature
	}
	msg := make([]byte, 0, len(sigContext)+len(data))
	msg = append(append(msg, sigContext...), data...)
	if !ed25519.Verify(pub, msg, s) {
		return ErrSignature
	}
	return nil
}
