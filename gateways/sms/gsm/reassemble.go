package gsm

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Errors of the Reassembler.
var (
	// ErrPendingFull: the Reassembler already holds MaxPending incomplete
	// messages; the part is rejected.
	ErrPendingFull = errors.New("gsm: too many pending concatenated messages")
	// ErrPartsLimit: a part announces more parts than MaxParts.
	ErrPartsLimit = errors.New("gsm: too many parts announced")
)

// Reassembler defaults.
const (
	DefaultReassemblyTimeout = 5 * time.Minute
	DefaultMaxPending        = 10000
)

// Part is one received part of a concatenated message, from a
// concatenation UDH (ParseUDH) or the SMPP sar_* TLVs.
type Part struct {
	Source  string // originator address
	Dest    string // destination address
	Ref     uint16 // concatenation reference
	Total   uint8  // number of parts
	Seq     uint8  // this part, 1..Total
	Coding  Coding // data_coding of the part
	Payload []byte // user data after the UDH; copied by Add
}

// Message is a reassembled message.
type Message struct {
	Source  string
	Dest    string
	Ref     uint16
	Total   uint8
	Coding  Coding    // coding of the first part received
	Payload []byte    // payloads of the received parts in Seq order
	Partial bool      // some parts never arrived (from Expire)
	Missing []uint8   // Seq numbers missing, ascending; nil when complete
	First   time.Time // arrival of the first part
}

// Text decodes the payload with the message's coding. A concatenated
// GSM 7-bit or UCS-2 text decodes as a whole even if a sender split an
// escape sequence or surrogate pair across parts.
func (m *Message) Text() (string, error) {
	return Decode(m.Coding, m.Payload)
}

// Stats counts what a Reassembler did.
type Stats struct {
	Completed  uint64 // messages returned complete by Add
	Expired    uint64 // partial messages returned by Expire
	Duplicates uint64 // parts ignored because already held or delivered
	Late       uint64 // parts ignored because their message already expired
	Rejected   uint64 // parts refused with ErrPendingFull
}

// Reassembler collects the parts of concatenated messages, keyed by
// (source, destination, reference, total), and returns each message exactly
// once: complete from Add when its last missing part arrives, or partial
// from Expire once Timeout has passed since its first part.
//
// After a message is returned its key is remembered for Timeout with a
// fingerprint of every part, so a retransmitted part (e.g. an SMSC
// resending deliver_sm after a lost deliver_sm_resp) is counted as a
// duplicate or late instead of starting a second copy. A part whose payload
// differs from the remembered one is a new message reusing the reference.
//
// Set the exported fields before first use; the zero value uses the
// defaults. A Reassembler is safe for concurrent use.
type Reassembler struct {
	Now        func() time.Time // clock for arrivals; nil means time.Now
	Timeout    time.Duration    // 0 means DefaultReassemblyTimeout
	MaxPending int              // incomplete messages held; 0 means DefaultMaxPending
	MaxParts   int              // largest accepted Total; 0 or above 255 means 255

	mu      sync.Mutex
	pending map[partKey]*pendingMsg
	done    map[partKey]*doneMsg
	doneQ   []doneRef // done keys in insertion order, for eviction
	stats   Stats
}

type partKey struct {
	source, dest string
	ref          uint16
	total        uint8
}

type pendingMsg struct {
	first  time.Time
	coding Coding
	parts  [][]byte // index Seq-1; nil while missing
	have   int
}

// doneMsg remembers a returned message: fingerprints of its parts (0 for a
// part that never arrived) until expires.
type doneMsg struct {
	expires time.Time
	sums    []uint64
}

type doneRef struct {
	key     partKey
	expires time.Time
}

func (r *Reassembler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Reassembler) timeout() time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return DefaultReassemblyTimeout
}

func (r *Reassembler) maxPending() int {
	if r.MaxPending > 0 {
		return r.MaxPending
	}
	return DefaultMaxPending
}

// Add stores a part. It returns the complete message when p was the last
// missing part, nil otherwise (also for duplicates and late parts, which
// are only counted). A part with Total 1 is returned at once. Errors wrap
// ErrBadConcat, ErrPartsLimit or ErrPendingFull.
func (r *Reassembler) Add(p Part) (*Message, error) {
	if err := (Concat{Total: p.Total, Seq: p.Seq}).check(); err != nil {
		return nil, err
	}
	if limit := r.MaxParts; limit > 0 && int(p.Total) > limit {
		return nil, fmt.Errorf("%w: %d announced, limit %d", ErrPartsLimit, p.Total, limit)
	}
	now := r.now()
	if p.Total == 1 {
		return &Message{Source: p.Source, Dest: p.Dest, Ref: p.Ref, Total: 1, Coding: p.Coding,
			Payload: append([]byte{}, p.Payload...), First: now}, nil
	}
	k := partKey{source: p.Source, dest: p.Dest, ref: p.Ref, total: p.Total}

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending == nil {
		r.pending = make(map[partKey]*pendingMsg)
		r.done = make(map[partKey]*doneMsg)
	}

	if d, ok := r.done[k]; ok {
		switch sum := d.sums[p.Seq-1]; {
		case !now.Before(d.expires):
			delete(r.done, k)
		case sum == 0:
			r.stats.Late++
			return nil, nil
		case sum == fingerprint(p.Payload):
			r.stats.Duplicates++
			return nil, nil
		default:
			delete(r.done, k) // same key, other content: reference reused
		}
	}

	m, ok := r.pending[k]
	if !ok {
		if len(r.pending) >= r.maxPending() {
			r.stats.Rejected++
			return nil, fmt.Errorf("%w: %d held", ErrPendingFull, len(r.pending))
		}
		m = &pendingMsg{first: now, coding: p.Coding, parts: make([][]byte, p.Total)}
		r.pending[k] = m
	}
	if m.parts[p.Seq-1] != nil {
		r.stats.Duplicates++
		return nil, nil
	}
	m.parts[p.Seq-1] = append([]byte{}, p.Payload...)
	m.have++
	if m.have < len(m.parts) {
		return nil, nil
	}
	delete(r.pending, k)
	r.stats.Completed++
	msg := r.finish(k, m, now)
	return &msg, nil
}

// Expire returns, exactly once each, the messages whose first part arrived
// Timeout or longer before now, as partial messages listing the missing
// parts. They are ordered by first arrival.
func (r *Reassembler) Expire(now time.Time) []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Forget returned messages whose memory window has passed.
	for len(r.doneQ) > 0 && !now.Before(r.doneQ[0].expires) {
		r.dropOldestDone()
	}
	var out []Message
	deadline := now.Add(-r.timeout())
	for k, m := range r.pending {
		if m.first.After(deadline) {
			continue
		}
		delete(r.pending, k)
		r.stats.Expired++
		out = append(out, r.finish(k, m, now))
	}
	slices.SortFunc(out, func(a, b Message) int {
		return cmp.Or(a.First.Compare(b.First), cmp.Compare(a.Source, b.Source),
			cmp.Compare(a.Dest, b.Dest), cmp.Compare(a.Ref, b.Ref), cmp.Compare(a.Total, b.Total))
	})
	return out
}

// Pending returns the number of incomplete messages held.
func (r *Reassembler) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}

// Stats returns the counters.
func (r *Reassembler) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// finish builds the message from m and remembers k as done. r.mu is held.
func (r *Reassembler) finish(k partKey, m *pendingMsg, now time.Time) Message {
	msg := Message{Source: k.source, Dest: k.dest, Ref: k.ref, Total: k.total, Coding: m.coding, First: m.first}
	size := 0
	for _, p := range m.parts {
		size += len(p)
	}
	msg.Payload = make([]byte, 0, size)
	d := &doneMsg{expires: now.Add(r.timeout()), sums: make([]uint64, len(m.parts))}
	for i, p := range m.parts {
		if p == nil {
			msg.Missing = append(msg.Missing, uint8(i+1))
			continue
		}
		msg.Payload = append(msg.Payload, p...)
		d.sums[i] = fingerprint(p)
	}
	msg.Partial = msg.Missing != nil

	// Bound the memory: at most MaxPending remembered messages, and a queue
	// of at most twice that (it also holds stale entries for keys forgotten
	// early by Add).
	for len(r.doneQ) > 0 && (len(r.done) >= r.maxPending() || len(r.doneQ) >= 2*r.maxPending() ||
		!now.Before(r.doneQ[0].expires)) {
		r.dropOldestDone()
	}
	r.done[k] = d
	r.doneQ = append(r.doneQ, doneRef{key: k, expires: d.expires})
	return msg
}

// dropOldestDone forgets the oldest remembered message, unless its key was
// remembered again later (then the queue entry is stale).
func (r *Reassembler) dropOldestDone() {
	ref := r.doneQ[0]
	r.doneQ[0] = doneRef{}
	r.doneQ = r.doneQ[1:]
	if d, ok := r.done[ref.key]; ok && d.expires.Equal(ref.expires) {
		delete(r.done, ref.key)
	}
	if len(r.doneQ) == 0 {
		r.doneQ = nil // release the backing array
	}
}

// fingerprint is FNV-1a 64 of b with the low bit set, so that it is never
// the zero that marks a missing part.
func fingerprint(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, x := range b {
		h ^= uint64(x)
		h *= 1099511628211
	}
	return h | 1
}
