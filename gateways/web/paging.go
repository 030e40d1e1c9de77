package web

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go/jetstream"
)

// Inbox paging (GET /api/v1/inbox?limit=&before=|after=).
//
// A client's messages in shard k are the stream messages of UIMS_INBOX_k on
// uims.inbox.<k>.<client>.*; within a stream, sequence order is the order
// of the stream's timestamps. A position in an inbox is therefore one
// stream sequence per shard, and a cursor is that vector, encoded opaquely:
// a message of shard k is older than the position when its sequence is
// below pos[k], newer otherwise. A page merges the shards by stream
// timestamp, as the whole-inbox listing did, and moves each shard's
// position past the messages it took, so that paging returns every message
// once whatever the shards' clocks or ties.
//
// Reading: JetStream reads forward only. A shard is read with batched
// direct gets ($JS.API.DIRECT.GET.<stream> with {"seq","next_by_subj",
// "batch"}, nats-server 2.11+; no client API in nats.go v1.55.0), which
// use the stream's per-subject index to step over other clients' messages
// and the read markers. Reading older messages goes backwards in windows
// of sequences below the position: a window is read forward; when it holds
// at least as many of the client's messages as still wanted, only its newer
// half is read first (bisection); when it holds too few, the next window
// below is twice as wide. A shard is refilled lazily, in chunks of about
// 2·limit/shards, only when the merge needs its next message. So a page
// reads about limit + shards·chunk messages whatever the inbox size; the
// server still walks its subject index for a wildcard filter (counting the
// batch's pending messages), work that grows with the shard, without
// loading or sending the messages.
//
// Read markers are fetched for the page's messages only: one multi_last
// direct get per shard naming each message's uims.read.<k>.<client>.<id>.
//
// Direct gets need AllowDirect on the inbox streams (ensure sets it); the
// web identity's permissions already allow $JS.API.DIRECT.GET.<stream>.

const (
	// DefaultPageLimit is the page size without ?limit=.
	DefaultPageLimit = 50
	// MaxPageLimit is the largest ?limit= allowed.
	MaxPageLimit = 1000
)

// ErrBadCursor is a cursor this inbox did not make (or made with another
// shard count).
var ErrBadCursor = errors.New("web: bad inbox cursor")

// Page is the answer to GET /api/v1/inbox.
type Page struct {
	// Messages, newest first.
	Messages []Message `json:"messages"`
	// Next is the cursor of the older messages (?before=); empty when there
	// are none. Only on pages read backwards (no ?after=).
	Next string `json:"next,omitempty"`
	// Newer is the cursor of the messages newer than this page (?after=),
	// to poll with.
	Newer string `json:"newer"`
	// More says, on a page read forwards (?after=), that more newer
	// messages than the limit were there: ask again with Newer.
	More bool `json:"more,omitempty"`
}

// cursor is a position in an inbox: one stream sequence per shard.
type cursor []uint64

// encodeCursor returns the opaque form: the shard count and the sequences
// as uvarints, base64url without padding.
func encodeCursor(c cursor) string {
	b := binary.AppendUvarint(nil, uint64(len(c)))
	for _, s := range c {
		b = binary.AppendUvarint(b, s)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor parses a cursor of an inbox with n shards.
func decodeCursor(s string, n int) (cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 || len(b) > 10*(n+1) {
		return nil, ErrBadCursor
	}
	k, w := binary.Uvarint(b)
	if w <= 0 || k != uint64(n) {
		return nil, ErrBadCursor
	}
	b = b[w:]
	c := make(cursor, n)
	for i := range c {
		v, w := binary.Uvarint(b)
		if w <= 0 {
			return nil, ErrBadCursor
		}
		c[i], b = v, b[w:]
	}
	if len(b) != 0 {
		return nil, ErrBadCursor
	}
	return c, nil
}

// rawMsg is a stream message from a direct get.
type rawMsg struct {
	shard int
	seq   uint64
	at    time.Time
	subj  string
	data  []byte
}

// directRequest is the body of $JS.API.DIRECT.GET.<stream> (nats-server
// JSApiMsgGetRequest).
type directRequest struct {
	Seq        uint64   `json:"seq,omitempty"`
	NextBySubj string   `json:"next_by_subj,omitempty"`
	Batch      int      `json:"batch,omitempty"`
	MultiLast  []string `json:"multi_last,omitempty"`
}

// direct sends one batched direct get and returns the messages of its
// answer, which ends with a 204 (end of batch) or is a 404 (nothing).
func (in *inbox) direct(ctx context.Context, shard int, req directRequest) ([]rawMsg, error) {
	reply := in.nc.NewInbox()
	sub, err := in.nc.SubscribeSync(reply)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	stream := InboxStreamName(shard)
	if err := in.nc.PublishRequest(jetstream.DefaultAPIPrefix+"DIRECT.GET."+stream, reply, body); err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	var out []rawMsg
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, fmt.Errorf("web: direct get %s: %w", stream, err)
		}
		switch st := m.Header.Get("Status"); st {
		case "":
		case "204":
			return out, nil
		case "404":
			return out, nil
		default:
			return nil, fmt.Errorf("web: direct get %s: %s %s", stream, st, m.Header.Get("Description"))
		}
		seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("web: direct get %s: bad sequence %q", stream, m.Header.Get(jetstream.SequenceHeader))
		}
		at, _ := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
		out = append(out, rawMsg{shard: shard, seq: seq, at: at, subj: m.Header.Get(jetstream.SubjectHeader), data: m.Data})
		if req.Batch == 0 && len(req.MultiLast) == 0 {
			return out, nil // a single get has no end-of-batch
		}
	}
}

// shardReader reads one client's messages of one shard in one direction.
type shardReader struct {
	in     *inbox
	shard  int
	filter string
	older  bool
	chunk  int
	first  uint64 // the stream's first sequence
	bound  uint64 // older: the unread lie below; newer: at and above
	done   bool   // nothing left to read
	buf    []rawMsg
	next   int    // buf[next] is the next message to take
	from   uint64 // the position the page started at
	pos    uint64 // the position past the messages taken
}

// peek returns the next message in the reader's direction, reading more
// when its buffer is used up; nil when there is none.
func (r *shardReader) peek(ctx context.Context) (*rawMsg, error) {
	for r.next >= len(r.buf) {
		if r.done {
			return nil, nil
		}
		r.buf, r.next = r.buf[:0], 0
		var err error
		if r.older {
			err = r.fillOlder(ctx, r.chunk)
		} else {
			err = r.fillNewer(ctx, r.chunk)
		}
		if err != nil {
			return nil, err
		}
	}
	return &r.buf[r.next], nil
}

// fillNewer reads up to need messages at and above the bound.
func (r *shardReader) fillNewer(ctx context.Context, need int) error {
	msgs, err := r.in.direct(ctx, r.shard, directRequest{Seq: max(r.bound, 1), NextBySubj: r.filter, Batch: need})
	if err != nil {
		return err
	}
	r.buf = append(r.buf, msgs...)
	if len(msgs) < need {
		r.done = true
	}
	if len(msgs) > 0 {
		r.bound = msgs[len(msgs)-1].seq + 1
	}
	return nil
}

// fillOlder reads the newest need messages below the bound, newest first,
// in windows (see the comment at the top of this file).
func (r *shardReader) fillOlder(ctx context.Context, need int) error {
	w := uint64(2 * need)
	got := 0
	for got < need && r.bound > r.first {
		lo := r.first
		if r.bound-r.first > w {
			lo = r.bound - w
		}
		c := need - got
		msgs, err := r.in.direct(ctx, r.shard, directRequest{Seq: lo, NextBySubj: r.filter, Batch: c})
		if err != nil {
			return err
		}
		if len(msgs) == c && msgs[c-1].seq < r.bound-1 {
			// [lo, bound) may hold more than c: its newer half first.
			// (bound-lo ≥ 2 here, since msgs[c-1].seq ≥ lo.)
			w = (r.bound - lo) / 2
			continue
		}
		for i := len(msgs) - 1; i >= 0; i-- {
			if msgs[i].seq < r.bound {
				r.buf = append(r.buf, msgs[i])
				got++
			}
		}
		r.bound = lo
		if got < need {
			w *= 2
		}
	}
	if r.bound <= r.first {
		r.done = true
	}
	return nil
}

// page returns up to limit messages of client's inbox: before the
// position c (nil: the newest), or, with newer, the oldest ones after it.
func (in *inbox) page(ctx context.Context, client string, c cursor, newer bool, limit int) (*Page, error) {
	if c != nil && len(c) != in.shards {
		return nil, ErrBadCursor
	}
	readers := make([]*shardReader, in.shards)
	chunk := max(2*limit/in.shards+1, 4)
	var wg sync.WaitGroup
	errs := make([]error, in.shards)
	for k := range readers {
		r := &shardReader{in: in, shard: k, older: !newer, chunk: min(chunk, limit+1),
			filter: "uims.inbox." + strconv.Itoa(k) + "." + client + ".*"}
		readers[k] = r
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[k] = r.start(ctx, c)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	// Merge: newest first backwards, oldest first forwards.
	var taken []rawMsg
	for len(taken) < limit {
		var best *shardReader
		var bm *rawMsg
		for _, r := range readers {
			m, err := r.peek(ctx)
			if err != nil {
				return nil, err
			}
			if m == nil {
				continue
			}
			if bm == nil || (!newer && m.at.After(bm.at)) || (newer && m.at.Before(bm.at)) {
				best, bm = r, m
			}
		}
		if best == nil {
			break
		}
		taken = append(taken, *bm)
		best.next++
		best.pos = bm.seq // older: below it is older still
		if newer {
			best.pos++ // newer: above it is newer still
		}
	}
	more := false
	for _, r := range readers {
		m, err := r.peek(ctx)
		if err != nil {
			return nil, err
		}
		more = more || m != nil
	}

	p := &Page{Messages: make([]Message, 0, len(taken))}
	if newer {
		slices.Reverse(taken)
		p.More = more
		p.Newer = encodeCursor(positions(readers, false))
	} else {
		if more {
			p.Next = encodeCursor(positions(readers, false))
		}
		p.Newer = encodeCursor(positions(readers, true))
	}
	read, err := in.readMarkers(ctx, client, taken)
	if err != nil {
		return nil, err
	}
	for _, m := range taken {
		var s stored
		if err := json.Unmarshal(m.data, &s); err != nil {
			continue
		}
		s.ReadAt = read[s.ID]
		p.Messages = append(p.Messages, s.Message)
	}
	return p, nil
}

// start sets the reader at the position c (nil: the end of the stream)
// and reads its first chunk.
func (r *shardReader) start(ctx context.Context, c cursor) error {
	st, err := r.in.js.Stream(ctx, InboxStreamName(r.shard))
	if err != nil {
		return err
	}
	state := st.CachedInfo().State
	r.first = max(state.FirstSeq, 1)
	r.bound = state.LastSeq + 1
	if c != nil {
		r.bound = c[r.shard]
	}
	r.from, r.pos = r.bound, r.bound
	_, err = r.peek(ctx)
	return err
}

// positions returns the cursor past the readers' taken messages, or the
// one the page started at.
func positions(readers []*shardReader, from bool) cursor {
	c := make(cursor, len(readers))
	for i, r := range readers {
		c[i] = r.pos
		if from {
			c[i] = r.from
		}
	}
	return c
}

// readMarkers returns the read times of msgs by message id: one multi_last
// direct get per shard naming each message's read subject.
func (in *inbox) readMarkers(ctx context.Context, client string, msgs []rawMsg) (map[string]int64, error) {
	subjects := make(map[int][]string)
	for _, m := range msgs {
		id := m.subj[strings.LastIndexByte(m.subj, '.')+1:]
		subjects[m.shard] = append(subjects[m.shard], in.readSubject(client, id))
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	read := make(map[string]int64)
	var errs []error
	for k, subj := range subjects {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := in.direct(ctx, k, directRequest{MultiLast: subj})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			for _, m := range got {
				var at int64
				fmt.Sscan(string(m.data), &at)
				read[m.subj[strings.LastIndexByte(m.subj, '.')+1:]] = at
			}
		}()
	}
	wg.Wait()
	return read, errors.Join(errs...)
}
