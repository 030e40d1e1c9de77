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
	"github.com/nats-io/nats.go"
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
// Reading: JetStream reads forward only. A shard is read with direct gets
// ($JS.API.DIRECT.GET.<stream> {"seq","next_by_subj"}), which use the
// stream's per-subject index to step over other clients' messages and the
// read markers. Reading older messages goes backwards in windows of
// sequences below the position: a window is read forwards, keeping its
// newest messages; its width is what the client's share of the shard, as
// last seen, says holds the messages still wanted (at first: all of the
// shard is the client's; a window with none of them makes the next one 4
// times wider). A shard is refilled lazily, in chunks of about
// 2·limit/shards, only when the merge needs its next message. So a page
// reads about limit + shards·chunk messages whatever the inbox size.
//
// One get per message, not the batched direct get of nats-server 2.11+
// ({"batch":n}): for every batch, the server counts the filter's pending
// messages (fileStore.NumPending), which for a wildcard filter walks the
// client's whole subject index in the shard. Measured (BenchmarkInboxPage,
// docs/BENCHMARKS.md), batches made a page of 50 cost 4 ms at 1,000
// messages and 13 ms at 20,000; single gets cost about 8 ms at both.
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

// direct sends one direct get and returns the messages of its answer: one,
// or for a batch or multi_last those up to the 204 (end of batch); none on
// a 404.
func (in *inbox) direct(ctx context.Context, shard int, req directRequest) ([]rawMsg, error) {
	stream := InboxStreamName(shard)
	subject := jetstream.DefaultAPIPrefix + "DIRECT.GET." + stream
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	single := req.Batch == 0 && len(req.MultiLast) == 0
	var ch chan *nats.Msg
	if single {
		// One answer: the connection's shared reply subscription.
		m, err := in.nc.RequestWithContext(ctx, subject, body)
		if err != nil {
			return nil, fmt.Errorf("web: direct get %s: %w", stream, err)
		}
		ch = make(chan *nats.Msg, 1)
		ch <- m
	} else {
		var done func()
		if ch, done, err = in.request(subject, body, max(req.Batch, len(req.MultiLast))+2); err != nil {
			return nil, fmt.Errorf("web: direct get %s: %w", stream, err)
		}
		defer done()
	}
	var out []rawMsg
	for {
		var m *nats.Msg
		select {
		case m = <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("web: direct get %s: %w", stream, ctx.Err())
		}
		switch st := m.Header.Get("Status"); st {
		case "":
		case "204", "404":
			return out, nil // end of batch, or nothing
		default:
			return nil, fmt.Errorf("web: direct get %s: %s %s", stream, st, m.Header.Get("Description"))
		}
		seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("web: direct get %s: bad sequence %q", stream, m.Header.Get(jetstream.SequenceHeader))
		}
		at, _ := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
		out = append(out, rawMsg{shard: shard, seq: seq, at: at, subj: m.Header.Get(jetstream.SubjectHeader), data: m.Data})
		if single {
			return out, nil // a single get has no end-of-batch
		}
	}
}

// request publishes a request whose answer is several messages and
// returns the channel they arrive on, big enough for n of them (a sync
// subscription's, of 64k messages, would cost more than the page), and
// the end of the subscription.
func (in *inbox) request(subject string, body []byte, n int) (chan *nats.Msg, func(), error) {
	ch := make(chan *nats.Msg, n)
	reply := in.nc.NewInbox()
	sub, err := in.nc.ChanSubscribe(reply, ch)
	if err != nil {
		return nil, nil, err
	}
	if err := in.nc.PublishRequest(subject, reply, body); err != nil {
		sub.Unsubscribe()
		return nil, nil, err
	}
	return ch, func() { sub.Unsubscribe() }, nil
}

// shardReader reads one client's messages of one shard in one direction.
type shardReader struct {
	in      *inbox
	shard   int
	filter  string
	older   bool
	chunk   int
	first   uint64  // the stream's first sequence
	bound   uint64  // older: the unread lie below; newer: at and above
	done    bool    // nothing left to read
	density float64 // the client's share of the shard's messages, as last seen
	buf     []rawMsg
	next    int    // buf[next] is the next message to take
	from    uint64 // the position the page started at
	pos     uint64 // the position past the messages taken
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

// read reads up to n of the client's messages from seq on, one direct
// get each: a batch would make the server count the filter's pending
// messages, a walk of the client's whole subject index in the shard.
func (r *shardReader) read(ctx context.Context, seq uint64, n int) ([]rawMsg, error) {
	var out []rawMsg
	for len(out) < n {
		msgs, err := r.in.direct(ctx, r.shard, directRequest{Seq: seq, NextBySubj: r.filter})
		if err != nil || len(msgs) == 0 {
			return out, err
		}
		out = append(out, msgs[0])
		seq = msgs[0].seq + 1
	}
	return out, nil
}

// fillNewer reads up to need messages at and above the bound.
func (r *shardReader) fillNewer(ctx context.Context, need int) error {
	msgs, err := r.read(ctx, max(r.bound, 1), need)
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
	if r.density == 0 {
		r.density = 1 // at first, suppose the shard holds nothing else
	}
	for need > 0 && r.bound > r.first {
		w := min(uint64(float64(need)/r.density*1.25)+1, r.bound-r.first)
		lo := r.bound - w
		// Read [lo, bound) forwards, keeping its newest need messages.
		var win []rawMsg
		count := 0
		for seq := lo; ; {
			msgs, err := r.read(ctx, seq, need)
			if err != nil {
				return err
			}
			for _, m := range msgs {
				if m.seq < r.bound {
					win = append(win, m)
					count++
				}
			}
			if len(msgs) < need || msgs[len(msgs)-1].seq >= r.bound-1 {
				break
			}
			seq = msgs[len(msgs)-1].seq + 1
			if len(win) > need {
				win = append(win[:0], win[len(win)-need:]...)
			}
		}
		r.bound = lo
		if len(win) > need {
			win = win[len(win)-need:]
			r.bound = win[0].seq // the older ones of the window next time
		}
		for i := len(win) - 1; i >= 0; i-- {
			r.buf = append(r.buf, win[i])
		}
		need -= len(win)
		if count > 0 {
			r.density = float64(count) / float64(w)
		} else {
			r.density = max(r.density/4, 1e-9)
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
