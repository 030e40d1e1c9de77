package sms

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/sms/gsm"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/miapnats"
)

// PartsBucket holds concatenated messages being reassembled. Parts an
// application or the centre was told are accepted are owned by the
// gateway (docs/RELIABILITY.md, Ownership): they live here, not in one process's memory, so a
// restart loses none and parts arriving at different instances meet.
const PartsBucket = "uims_sms_parts"

// errPendingFull: too many concatenated messages are incomplete.
var errPendingFull = errors.New("sms: too many incomplete concatenated messages")

// Part document states.
const (
	partPending = ""        // parts still coming
	partSending = "sending" // complete or expired; one instance claimed it and sends it
	partSent    = "sent"    // the fabric took it; kept to recognise repeated parts
	partRetry   = "retry"   // the fabric refused it for now; a repeated part sends it again
)

// partDoc is one concatenated message being reassembled (TS 23.040
// §9.2.3.24.1, SMPP 3.4 §5.3.2.22-24): its message id, chosen at the first
// part, and the parts so far.
type partDoc struct {
	MsgID   string     `json:"msg_id"`
	Origin  string     `json:"origin"` // client id, "" for the SMS centre
	Src     address    `json:"src"`
	Dst     address    `json:"dst"`
	DCS     uint8      `json:"dcs"`
	RD      uint8      `json:"rd"` // registered_delivery of all parts, or-ed
	Coding  gsm.Coding `json:"coding"`
	Ref     uint16     `json:"ref"`
	Total   uint8      `json:"total"`
	First   int64      `json:"first"` // arrival of the first part, Unix ms
	Parts   [][]byte   `json:"parts"` // index seq-1; nil while missing
	State   string     `json:"state,omitempty"`
	Claimed int64      `json:"claimed,omitempty"` // when an instance claimed it, Unix ms
	// the first part's schedule_delivery_time, validity_period and
	// priority (PROTOCOL.md §6.16), Unix ms
	SendAt  int64 `json:"send_at,omitempty"`
	Expires int64 `json:"expires,omitempty"`
	Urgent  bool  `json:"urgent,omitempty"`
}

func (d *partDoc) complete() bool {
	for _, p := range d.Parts {
		if p == nil {
			return false
		}
	}
	return true
}

// received lists the parts present, "1,2,3".
func (d *partDoc) received() string {
	var out []string
	for i, p := range d.Parts {
		if p != nil {
			out = append(out, strconv.Itoa(i+1))
		}
	}
	return strings.Join(out, ",")
}

func (d *partDoc) missing() []string {
	var out []string
	for i, p := range d.Parts {
		if p == nil {
			out = append(out, strconv.Itoa(i+1))
		}
	}
	return out
}

func (d *partDoc) payload() []byte {
	var b []byte
	for _, p := range d.Parts {
		b = append(b, p...)
	}
	return b
}

// reassembly keeps concatenated messages in PartsBucket, shared by every
// instance of the gateway. Each instance watches the bucket to know the
// pending messages and their age; claiming a message for sending is a
// compare-and-set, so exactly one instance sends it.
type reassembly struct {
	gw         string
	timeout    time.Duration
	sendWait   time.Duration // a claim older than this is taken over
	maxPending int
	kv         jetstream.KeyValue

	mu    sync.Mutex
	index map[string]partInfo // key → state, from the watcher
}

type partInfo struct {
	state   string
	first   int64
	claimed int64
}

func newReassembly(gw string, timeout, sendWait time.Duration) *reassembly {
	return &reassembly{gw: gw, timeout: timeout, sendWait: sendWait, maxPending: gsm.DefaultMaxPending,
		index: make(map[string]partInfo)}
}

func (r *reassembly) ensure(ctx context.Context, js jetstream.JetStream) error {
	kv, err := miapnats.KeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket: PartsBucket, Description: "SMS gateway: concatenated messages being reassembled",
		Storage: jetstream.FileStorage, TTL: max(24*time.Hour, 10*r.timeout),
	})
	if err != nil {
		return fmt.Errorf("sms: parts bucket: %w", err)
	}
	r.kv = kv
	return nil
}

// watch keeps the index of this gateway's documents until ctx is done.
func (r *reassembly) watch(ctx context.Context) error {
	w, err := r.kv.Watch(ctx, r.gw+".*")
	if err != nil {
		return fmt.Errorf("sms: watch parts: %w", err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return nil
			}
			if e == nil {
				continue // the initial values are in
			}
			r.mu.Lock()
			if e.Operation() != jetstream.KeyValuePut {
				delete(r.index, e.Key())
			} else {
				var d partDoc
				if json.Unmarshal(e.Value(), &d) == nil {
					r.index[e.Key()] = partInfo{state: d.State, first: d.First, claimed: d.Claimed}
				}
			}
			r.mu.Unlock()
		}
	}
}

func (r *reassembly) pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, i := range r.index {
		if i.state == partPending {
			n++
		}
	}
	return n
}

// key names the message a part belongs to: the reassembly key of
// TS 23.040 (originator, destination, reference, total), per origin.
func (r *reassembly) key(in *incoming, c gsm.Concat) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%s\x00%d\x00%d", in.origin, in.src.international(), in.dst.international(), c.Ref, c.Total))
	return r.gw + "." + hex.EncodeToString(h[:16])
}

// add stores one part. It returns the document and whether the caller
// claimed it for sending (the last missing part, or a repeated part of a
// message the fabric refused before); the caller then sends it and calls
// finish. A repeated or late part only returns the document.
func (r *reassembly) add(ctx context.Context, in *incoming, c gsm.Concat, coding gsm.Coding, payload []byte) (*partDoc, string, bool, error) {
	key := r.key(in, c)
	for attempt := 0; attempt < 50; attempt++ {
		e, err := r.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			if r.pending() >= r.maxPending {
				return nil, "", false, errPendingFull
			}
			d := r.newDoc(in, c, coding, payload)
			claim := d.complete()
			if claim {
				d.State, d.Claimed = partSending, time.Now().UnixMilli()
			}
			b, _ := json.Marshal(d)
			if _, err := r.kv.Create(ctx, key, b); errors.Is(err, jetstream.ErrKeyExists) {
				continue
			} else if err != nil {
				return nil, "", false, err
			}
			return d, key, claim, nil
		}
		if err != nil {
			return nil, "", false, err
		}
		var d partDoc
		if err := json.Unmarshal(e.Value(), &d); err != nil || len(d.Parts) != int(c.Total) {
			d = partDoc{State: partSent} // unreadable: replaced below as a new message
		}
		have := d.Parts != nil && d.Parts[c.Seq-1] != nil
		same := have && bytes.Equal(d.Parts[c.Seq-1], payload)
		claim := false
		switch {
		case d.State == partPending && have:
			return &d, key, false, nil // repeated part
		case d.State == partPending:
			d.Parts[c.Seq-1] = append([]byte{}, payload...)
			d.RD |= in.rd
			if claim = d.complete(); claim {
				d.State, d.Claimed = partSending, time.Now().UnixMilli()
			}
		case same || (!have && d.Parts != nil && time.Since(time.UnixMilli(d.First)) < 2*r.timeout):
			// Repeated part of a finished message, or a late part of one
			// delivered as partial: answered, not sent again, unless the
			// fabric refused the message and the application retries.
			if d.State != partRetry {
				return &d, key, false, nil
			}
			d.State, d.Claimed, claim = partSending, time.Now().UnixMilli(), true
		default:
			// Other content under the key of a finished message: the
			// reference was reused for a new message.
			d = *r.newDoc(in, c, coding, payload)
			if claim = d.complete(); claim {
				d.State, d.Claimed = partSending, time.Now().UnixMilli()
			}
		}
		b, _ := json.Marshal(&d)
		if _, err := r.kv.Update(ctx, key, b, e.Revision()); err != nil {
			if ctx.Err() != nil {
				return nil, "", false, err
			}
			continue // changed meanwhile: read again
		}
		return &d, key, claim, nil
	}
	return nil, "", false, fmt.Errorf("sms: parts of %s keep changing", key)
}

func (r *reassembly) newDoc(in *incoming, c gsm.Concat, coding gsm.Coding, payload []byte) *partDoc {
	d := &partDoc{MsgID: kit.NewMsgID(), Origin: in.origin, Src: in.src, Dst: in.dst, DCS: in.dcs, RD: in.rd, Coding: coding,
		Ref: c.Ref, Total: c.Total, First: time.Now().UnixMilli(), Parts: make([][]byte, c.Total),
		SendAt: in.sendAt, Expires: in.expires, Urgent: in.urgent}
	d.Parts[c.Seq-1] = append([]byte{}, payload...)
	return d
}

// finish records the outcome of sending a claimed message.
func (r *reassembly) finish(ctx context.Context, key string, sent bool) {
	state := partRetry
	if sent {
		state = partSent
	}
	for attempt := 0; attempt < 20; attempt++ {
		e, err := r.kv.Get(ctx, key)
		if err != nil {
			return
		}
		var d partDoc
		if json.Unmarshal(e.Value(), &d) != nil || d.State != partSending {
			return
		}
		d.State, d.Claimed = state, time.Now().UnixMilli()
		b, _ := json.Marshal(&d)
		if _, err := r.kv.Update(ctx, key, b, e.Revision()); err == nil {
			return
		}
	}
}

// expired claims the messages whose parts stopped coming (and messages
// whose claiming instance vanished) and returns them for sending as
// partial messages; it forgets finished ones.
func (r *reassembly) expired(ctx context.Context, now time.Time) map[string]*partDoc {
	ms := now.UnixMilli()
	var due, old []string
	r.mu.Lock()
	for k, i := range r.index {
		switch {
		case i.state == partPending && ms-i.first >= r.timeout.Milliseconds():
			due = append(due, k)
		case i.state == partSending && ms-i.claimed >= r.sendWait.Milliseconds():
			due = append(due, k) // the claiming instance vanished
		case i.state == partRetry && ms-i.claimed >= retryDelay.Milliseconds():
			due = append(due, k)
		case i.state == partSent && ms-i.first >= 3*r.timeout.Milliseconds():
			old = append(old, k)
		}
	}
	r.mu.Unlock()
	out := make(map[string]*partDoc)
	for _, k := range due {
		e, err := r.kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var d partDoc
		if json.Unmarshal(e.Value(), &d) != nil {
			continue
		}
		if !r.due(&d, ms) {
			continue
		}
		d.State, d.Claimed = partSending, ms
		b, _ := json.Marshal(&d)
		if _, err := r.kv.Update(ctx, k, b, e.Revision()); err == nil {
			out[k] = &d // claimed by this instance
		}
	}
	for _, k := range old {
		if e, err := r.kv.Get(ctx, k); err == nil {
			r.kv.Delete(ctx, k, jetstream.LastRevision(e.Revision()))
		}
	}
	return out
}

// retryDelay is the wait before a message the fabric refused for now is
// sent again.
const retryDelay = 5 * time.Second

func (r *reassembly) due(d *partDoc, ms int64) bool {
	switch d.State {
	case partPending:
		return ms-d.First >= r.timeout.Milliseconds()
	case partSending:
		return ms-d.Claimed >= r.sendWait.Milliseconds()
	case partRetry:
		return ms-d.Claimed >= retryDelay.Milliseconds()
	}
	return false
}

// sendDoc sends a reassembled (possibly partial) message into the fabric.
func (g *Gateway) sendDoc(ctx context.Context, d *partDoc) error {
	text, err := decodeText(d.Coding, d.payload())
	if err != nil {
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	extra := map[string]string{"sms.total": strconv.Itoa(int(d.Total)), "sms.parts": d.received()}
	if missing := d.missing(); len(missing) > 0 {
		extra["sms.partial"] = "missing " + strings.Join(missing, ",") + " of " + strconv.Itoa(int(d.Total))
		extra["subject"] = fmt.Sprintf("[partial SMS: %d of %d parts missing]", len(missing), d.Total)
	}
	in := &incoming{origin: d.Origin, src: d.Src, dst: d.Dst, dcs: d.DCS, rd: d.RD, sendAt: d.SendAt, expires: d.Expires, urgent: d.Urgent}
	return g.send(ctx, in, d.MsgID, text, extra)
}

// sendClaimed sends a message this instance claimed (complete, expired
// or refused before) and records the outcome: a temporary refusal leaves
// it for another attempt a little later.
func (g *Gateway) sendClaimed(ctx context.Context, key string, d *partDoc) {
	sctx, cancel := context.WithTimeout(ctx, g.cfg.SendTimeout)
	err := g.sendDoc(sctx, d)
	cancel()
	retry := err != nil && (miap.CodeOf(err).Retryable() || errors.Is(err, context.DeadlineExceeded))
	g.parts.finish(ctx, key, !retry)
	switch {
	case err == nil:
		g.log.Info().Str("msg_id", d.MsgID).Strs("missing", d.missing()).Msg("reassembled message sent")
	case retry:
		g.log.Warn().Err(err).Str("msg_id", d.MsgID).Msg("reassembled message not taken by the fabric; will retry")
	default:
		g.log.Error().Err(err).Str("msg_id", d.MsgID).Msg("reassembled message refused by the fabric")
	}
}
