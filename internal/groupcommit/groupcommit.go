// Package groupcommit writes messages to JetStream file streams durably for
// a fraction of an fsync each: group commit through a journal.
//
// A single-replica file stream with `sync always` fsyncs every write on its
// own, and on a small VM that fsync is most of a delivered message's cost.
// nats-server offers no group commit for such a stream (its atomic batches
// stage every batch in a new store), so this package builds one:
//
//   - the target streams are created in the server's asynchronous persist
//     mode (PersistMode async: acknowledged when written to the store's
//     buffer, flushed at once and fsynced every sync_interval);
//   - every write goes to a queue; one committer takes whatever waits in
//     it, writes it as one record to a journal stream in the default
//     persist mode (one fsync for the whole batch) and, at the same time,
//     each message to its target stream; a writer's caller hears of its
//     message only when both are acknowledged, so an acknowledgement still
//     means "on disk";
//   - after a crash of the server or the machine, a target stream may have
//     lost its unsynced tail. Recover replays the journal records from just
//     before the last message each target stream kept, and writes every
//     message whose subject the stream does not hold. It runs before the
//     first write and again after every reconnection of the connection.
//
// Subjects written through a Writer must be unique per message (the web
// inbox's are: uims.inbox.<shard>.<client>.<msgid>, its chunks, its read
// markers), since recovery decides by subject whether a message is there.
package groupcommit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Defaults of Config.
const (
	// recordHeadroom is what a journal record leaves free of the
	// connection's max_payload (the default MaxBytes).
	recordHeadroom = 4 << 10
	// DefaultMaxAge keeps journal records longer than nats-server's
	// default sync_interval (2 min) with room to spare: a record is needed
	// until its messages' target stream has synced them.
	DefaultMaxAge = 5 * time.Minute
	// DefaultWindow is how far before a target stream's last message
	// recovery starts reading the journal: more than the time a write may
	// take (its journal record and its message are written side by side).
	DefaultWindow = 10 * time.Second
	// writeTimeout bounds one batch's writes.
	writeTimeout = 5 * time.Second
	// recoverWait bounds the wait for each journal record during
	// recovery, and recoverResets the times its consumer is recreated.
	recoverWait   = 5 * time.Second
	recoverResets = 3
)

// Config configures a Writer.
type Config struct {
	// Journal is the journal stream's name and Subject its one subject.
	Journal, Subject string
	// Streams are the target streams in asynchronous persist mode that
	// Recover checks, and StreamOf names the one a subject is stored in.
	// Without StreamOf, subjects need not be unique: recovery writes every
	// journaled message of its window again with its message id, and the
	// stream's de-duplication keeps one copy within its duplicate window
	// (past it, a message may be stored twice: for records read
	// at-least-once, such as accounting records).
	Streams  []string
	StreamOf func(subject string) string
	// Prefixes are the subjects recovery may write back (a record of
	// another subject is skipped and logged): the journal is only as
	// trustworthy as whoever may publish to it, and recovery publishes
	// with the writer's own permissions.
	Prefixes []string
	// MaxBytes is the largest journal record (default: the connection's
	// max_payload less 4 KiB); a larger message is refused.
	MaxBytes int
	// MaxAge bounds the journal (DefaultMaxAge); JournalBytes too when
	// set. It is not set by default: JetStream reserves a file stream's
	// MaxBytes from the server's storage when the stream is created (a
	// 1 GiB journal failed "insufficient storage" on a small disk), and a
	// journal that dropped records by size before the target streams
	// synced them would lose what it is there to keep.
	MaxAge       time.Duration
	JournalBytes int64
	// Window is DefaultWindow when 0.
	Window time.Duration
	Log    zerolog.Logger
}

// Writer writes messages to target streams through the journal. It is
// safe for concurrent use; Close stops it.
type Writer struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	cfg Config

	queue chan *write
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
	// halt cancels a recovery in progress at Close (a server that stays
	// away must not hold Close for as long as recovery would wait).
	halt       context.Context
	cancelHalt context.CancelFunc

	// reconnects is the connection's reconnect count at the last
	// recovery (committer goroutine only).
	reconnects uint64
	// stats for tests and metrics
	mu      sync.Mutex
	records int64
	writes  int64
}

type write struct {
	subject, msgID string
	data           []byte
	res            chan result
}

type result struct {
	ack *jetstream.PubAck
	err error
}

// ErrTooLarge is a message that does not fit in one journal record.
var ErrTooLarge = errors.New("groupcommit: message larger than a journal record")

// ErrClosed is a write after Close.
var ErrClosed = errors.New("groupcommit: writer closed")

// New ensures the journal stream, recovers the target streams and starts
// the committer.
func New(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, cfg Config) (*Writer, error) {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = max(int(nc.MaxPayload())-recordHeadroom, 64<<10)
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: cfg.Journal, Description: "group-commit journal of " + fmt.Sprint(cfg.Streams) + " (internal/groupcommit)",
		Subjects: []string{cfg.Subject}, Storage: jetstream.FileStorage,
		MaxAge: cfg.MaxAge, MaxBytes: journalBytes(cfg.JournalBytes), Discard: jetstream.DiscardOld,
		MaxMsgSize: int32(cfg.MaxBytes + 4096),
	})
	if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return nil, fmt.Errorf("groupcommit: journal stream %s: %w", cfg.Journal, err)
	}
	w := &Writer{nc: nc, js: js, cfg: cfg, queue: make(chan *write, 4096),
		stop: make(chan struct{}), done: make(chan struct{})}
	w.halt, w.cancelHalt = context.WithCancel(context.Background())
	w.reconnects = nc.Stats().Reconnects
	if err := w.Recover(ctx); err != nil {
		return nil, err
	}
	go w.run()
	return w, nil
}

// journalBytes is the journal's MaxBytes: n, or -1 (no limit) when n is
// not positive.
func journalBytes(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// Close stops the committer: the batch being written is finished (its
// writes are bounded by a timeout), a recovery in progress is abandoned
// (the next start recovers), and what is still queued fails with
// ErrClosed.
func (w *Writer) Close() {
	w.once.Do(func() { close(w.stop); w.cancelHalt() })
	<-w.done
}

// Stats returns the journal records written and the messages they held.
func (w *Writer) Stats() (records, writes int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.records, w.writes
}

// Publish writes data to subject with message id msgID (the target
// stream's de-duplication) and returns the target stream's acknowledgement
// once the message's journal record is stored too.
func (w *Writer) Publish(ctx context.Context, subject string, data []byte, msgID string) (*jetstream.PubAck, error) {
	if entrySize(subject, msgID, data) > w.cfg.MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), w.cfg.MaxBytes)
	}
	select {
	case <-w.stop:
		return nil, ErrClosed
	default:
	}
	wr := &write{subject: subject, msgID: msgID, data: data, res: make(chan result, 1)}
	select {
	case w.queue <- wr:
	case <-w.stop:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-wr.res:
		return r.ack, r.err
	case <-w.done:
		// queued as the writer stopped: answered by drain, or never
		select {
		case r := <-wr.res:
			return r.ack, r.err
		default:
			return nil, ErrClosed
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (w *Writer) run() {
	defer close(w.done)
	var batch []*write
	for {
		batch = batch[:0]
		select {
		case wr := <-w.queue:
			batch = append(batch, wr)
		case <-w.stop:
			w.drain()
			return
		}
		// Everything that queued while the last batch was written joins
		// this one: that is the group commit (no timer, no added latency
		// for a lone message).
		size := entrySize(batch[0].subject, batch[0].msgID, batch[0].data)
	gather:
		for {
			select {
			case wr := <-w.queue:
				n := entrySize(wr.subject, wr.msgID, wr.data)
				if size+n > w.cfg.MaxBytes {
					w.commit(batch)
					batch, size = append(batch[:0], wr), n
					continue
				}
				batch, size = append(batch, wr), size+n
			default:
				break gather
			}
		}
		w.commit(batch)
	}
}

// drain fails what is still queued at Close.
func (w *Writer) drain() {
	for {
		select {
		case wr := <-w.queue:
			wr.res <- result{err: ErrClosed}
		default:
			return
		}
	}
}

// commit writes one batch: its journal record and its messages side by
// side, and answers each write.
func (w *Writer) commit(batch []*write) {
	if rc := w.nc.Stats().Reconnects; rc != w.reconnects {
		// The server may have restarted and lost the unsynced tail of
		// the target streams: put it back before writing more after it.
		ctx, cancel := context.WithTimeout(w.halt, time.Minute)
		if err := w.Recover(ctx); err != nil {
			w.cfg.Log.Error().Err(err).Msg("groupcommit: recovery after reconnecting failed; will try again")
		} else {
			w.reconnects = rc
		}
		cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	rec := make([]byte, 0, 256*len(batch))
	for _, wr := range batch {
		rec = appendEntry(rec, wr.subject, wr.msgID, wr.data)
	}
	jf, jerr := w.js.PublishAsync(w.cfg.Subject, rec)
	futures := make([]jetstream.PubAckFuture, len(batch))
	errs := make([]error, len(batch))
	for i, wr := range batch {
		m := nats.NewMsg(wr.subject)
		m.Data = wr.data
		if wr.msgID != "" {
			m.Header.Set(jetstream.MsgIDHeader, wr.msgID)
		}
		futures[i], errs[i] = w.js.PublishMsgAsync(m)
	}
	if jerr == nil {
		_, jerr = wait(ctx, jf)
	}
	if jerr != nil {
		jerr = fmt.Errorf("groupcommit: journal: %w", jerr)
	} else {
		w.mu.Lock()
		w.records++
		w.writes += int64(len(batch))
		w.mu.Unlock()
	}
	for i, wr := range batch {
		var r result
		switch {
		case errs[i] != nil:
			r.err = errs[i]
		default:
			r.ack, r.err = wait(ctx, futures[i])
		}
		if r.err == nil && jerr != nil {
			r.ack, r.err = nil, jerr // stored, but not durably: the caller tries again
		}
		wr.res <- r
	}
}

// wait waits for one asynchronous publish.
func wait(ctx context.Context, f jetstream.PubAckFuture) (*jetstream.PubAck, error) {
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, err
	case <-ctx.Done():
		return nil, fmt.Errorf("groupcommit: no acknowledgement: %w", ctx.Err())
	}
}

// Recover puts back every journaled message that a target stream lost:
// for each target stream, the journal records from Window before the
// stream's last message on (all of them for an empty stream), and of
// those the messages whose subject no target stream holds.
func (w *Writer) Recover(ctx context.Context) error {
	var from time.Time
	first := true
	for _, name := range w.cfg.Streams {
		st, err := w.js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("groupcommit: recover %s: %w", name, err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			return fmt.Errorf("groupcommit: recover %s: %w", name, err)
		}
		t := time.Time{} // empty: the whole journal
		if info.State.Msgs > 0 {
			t = info.State.LastTime.Add(-w.cfg.Window)
		}
		if first || t.Before(from) {
			from, first = t, false
		}
	}
	if first {
		return nil // no target stream yet
	}
	jst, err := w.js.Stream(ctx, w.cfg.Journal)
	if err != nil {
		return fmt.Errorf("groupcommit: journal %s: %w", w.cfg.Journal, err)
	}
	jinfo, err := jst.Info(ctx)
	if err != nil {
		return fmt.Errorf("groupcommit: journal %s: %w", w.cfg.Journal, err)
	}
	if jinfo.State.Msgs == 0 || jinfo.State.LastTime.Before(from) {
		return nil
	}
	// One ordered consumer for the whole read, with few resets: its
	// default is to recreate itself without end while the server is away,
	// and ctx bounds each wait.
	occ := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy, MaxResetAttempts: recoverResets}
	if !from.IsZero() {
		occ.DeliverPolicy, occ.OptStartTime = jetstream.DeliverByStartTimePolicy, &from
	}
	cons, err := jst.OrderedConsumer(ctx, occ)
	if err != nil {
		return fmt.Errorf("groupcommit: read journal: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("groupcommit: read journal: %w", err)
	}
	defer it.Stop()
	last := jinfo.State.LastSeq
	var checked, restored int
	streams := map[string]jetstream.Stream{}
	for {
		nctx, cancel := context.WithTimeout(ctx, recoverWait)
		m, err := it.Next(jetstream.NextContext(nctx))
		cancel()
		if err != nil {
			return fmt.Errorf("groupcommit: read journal: %w", err)
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("groupcommit: read journal: %w", err)
		}
		entries, err := DecodeRecord(m.Data())
		if err != nil {
			// a record this package did not write: say so, keep going
			w.cfg.Log.Error().Err(err).Uint64("seq", md.Sequence.Stream).Msg("groupcommit: journal record skipped")
		}
		for _, e := range entries {
			checked++
			if !w.restorable(e.Subject) {
				w.cfg.Log.Warn().Str("subject", e.Subject).Uint64("seq", md.Sequence.Stream).Msg("groupcommit: journal entry for a subject this writer does not write, skipped")
				continue
			}
			if w.cfg.StreamOf == nil {
				m := nats.NewMsg(e.Subject)
				m.Data = e.Data
				if e.MsgID != "" {
					m.Header.Set(jetstream.MsgIDHeader, e.MsgID)
				}
				ack, err := w.js.PublishMsg(ctx, m)
				if err != nil {
					return fmt.Errorf("groupcommit: restore %s: %w", e.Subject, err)
				}
				if !ack.Duplicate {
					restored++
				}
				continue
			}
			ok, err := w.holds(ctx, streams, e.Subject)
			if err != nil {
				return err
			}
			if ok {
				continue
			}
			m := nats.NewMsg(e.Subject)
			m.Data = e.Data
			if e.MsgID != "" {
				m.Header.Set(jetstream.MsgIDHeader, e.MsgID)
			}
			ack, err := w.js.PublishMsg(ctx, m)
			if err == nil && ack.Duplicate {
				// The stream still knows the id but not the message
				// (its de-duplication state outlived it): store it
				// without the id, which goes on de-duplicating retries.
				m.Header.Del(jetstream.MsgIDHeader)
				_, err = w.js.PublishMsg(ctx, m)
			}
			if err != nil {
				return fmt.Errorf("groupcommit: restore %s: %w", e.Subject, err)
			}
			restored++
		}
		if md.Sequence.Stream >= last {
			break
		}
	}
	if restored > 0 {
		w.cfg.Log.Warn().Int("checked", checked).Int("restored", restored).Str("journal", w.cfg.Journal).
			Msg("groupcommit: restored messages the target streams had lost")
	}
	return nil
}

// restorable reports whether recovery may write subject back: under one
// of Prefixes, and, with StreamOf, in one of the target streams.
func (w *Writer) restorable(subject string) bool {
	ok := false
	for _, p := range w.cfg.Prefixes {
		if strings.HasPrefix(subject, p) {
			ok = true
			break
		}
	}
	if !ok || w.cfg.StreamOf == nil {
		return ok
	}
	return slices.Contains(w.cfg.Streams, w.cfg.StreamOf(subject))
}

// holds reports whether the target stream of subject holds a message on
// it; streams caches the streams looked up.
func (w *Writer) holds(ctx context.Context, streams map[string]jetstream.Stream, subject string) (bool, error) {
	name := w.cfg.StreamOf(subject)
	st, ok := streams[name]
	if !ok {
		var err error
		if st, err = w.js.Stream(ctx, name); err != nil {
			return false, fmt.Errorf("groupcommit: stream %s of %s: %w", name, subject, err)
		}
		streams[name] = st
	}
	_, err := st.GetLastMsgForSubject(ctx, subject)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("groupcommit: look up %s in %s: %w", subject, name, err)
	}
}

// Entry is one message of a journal record.
type Entry struct {
	Subject, MsgID string
	Data           []byte
}

func entrySize(subject, msgID string, data []byte) int {
	return 8 + len(subject) + len(msgID) + len(data)
}

// appendEntry appends one entry: u16 subject length, subject, u16 id
// length, id, u32 data length, data (big endian).
func appendEntry(b []byte, subject, msgID string, data []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(subject)))
	b = append(b, subject...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(msgID)))
	b = append(b, msgID...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// ErrBadRecord is a journal record that does not decode.
var ErrBadRecord = errors.New("groupcommit: bad journal record")

// DecodeRecord returns the entries of a journal record, those before a
// malformed one with ErrBadRecord.
func DecodeRecord(b []byte) ([]Entry, error) {
	var out []Entry
	for len(b) > 0 {
		var e Entry
		var ok bool
		var s, id []byte
		if s, b, ok = field(b, 2); !ok {
			return out, fmt.Errorf("%w: entry %d: subject", ErrBadRecord, len(out))
		}
		if id, b, ok = field(b, 2); !ok {
			return out, fmt.Errorf("%w: entry %d: message id", ErrBadRecord, len(out))
		}
		if e.Data, b, ok = field(b, 4); !ok {
			return out, fmt.Errorf("%w: entry %d: data", ErrBadRecord, len(out))
		}
		if len(s) == 0 {
			return out, fmt.Errorf("%w: entry %d: empty subject", ErrBadRecord, len(out))
		}
		e.Subject, e.MsgID = string(s), string(id)
		out = append(out, e)
	}
	return out, nil
}

// field reads a length-prefixed field whose length has n bytes.
func field(b []byte, n int) (v, rest []byte, ok bool) {
	if len(b) < n {
		return nil, b, false
	}
	var l int
	if n == 2 {
		l = int(binary.BigEndian.Uint16(b))
	} else {
		l = int(binary.BigEndian.Uint32(b))
	}
	b = b[n:]
	if l > len(b) {
		return nil, b, false
	}
	return b[:l:l], b[l:], true
}
