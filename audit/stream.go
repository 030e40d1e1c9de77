package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/uims/uims/miap/miapnats"
	"github.com/uims/uims/schemas"
)

// EnsureStream creates the audit stream if it does not exist; an existing
// one is left as it is (the operator may have changed its limits).
func EnsureStream(ctx context.Context, js jetstream.JetStream) error {
	return miapnats.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:        schemas.AuditStream,
		Description: "audit trail: the brokers' signed, hash-chained decisions (PROTOCOL.md §15)",
		Subjects:    []string{schemas.AuditSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      schemas.AuditMaxAge,
		Duplicates:  schemas.AuditDuplicates,
	})
}

// Defaults of a Publisher.
const (
	DefaultDelay    = 20 * time.Millisecond
	DefaultMaxCount = 512
	DefaultMaxQueue = 1 << 18
	maxBatchBytes   = 512 << 10
)

// Signer returns the key a broker signs batches with now, and its kid.
type Signer func() (kid string, key ed25519.PrivateKey, ok bool)

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	Broker   string        // the broker instance
	Delay    time.Duration // how long a record waits for others; default DefaultDelay
	MaxCount int           // records of one batch; default DefaultMaxCount
	MaxQueue int           // records waiting at most; beyond, new ones are dropped (and verify finds them missing)
	Now      func() time.Time
	Log      zerolog.Logger
	// OnStored, if set, is called with the boot's anchor (§15.5) after
	// JetStream acknowledged each batch, from the publisher's goroutine:
	// it may take a round trip to a store without holding up any request,
	// only the next batch. The broker records the anchor in Redis with it;
	// this package knows no store.
	OnStored func(Anchor)
}

// Publisher gathers a broker's records and publishes them as signed
// batches, one JetStream write per batch, in order, from one goroutine:
// adding a record never waits for the stream. A batch the stream does not
// take is retried (same Nats-Msg-Id, so a batch stored twice is stored
// once) until it is taken or the publisher closes. Records still queued
// when the process dies are lost: verification reports them missing.
type Publisher struct {
	js     jetstream.JetStream
	signer Signer
	cfg    PublisherConfig
	boot   string

	mu      sync.Mutex
	buf     [][]byte
	dropped int
	kick    chan struct{}
	full    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	seq     uint64
	once    sync.Once
}

// NewPublisher starts a publisher; Close flushes and stops it.
func NewPublisher(js jetstream.JetStream, signer Signer, cfg PublisherConfig) *Publisher {
	if cfg.Delay <= 0 {
		cfg.Delay = DefaultDelay
	}
	if cfg.MaxCount <= 0 {
		cfg.MaxCount = DefaultMaxCount
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = DefaultMaxQueue
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var b [6]byte
	rand.Read(b[:])
	p := &Publisher{js: js, signer: signer, cfg: cfg, boot: hex.EncodeToString(b[:]),
		kick: make(chan struct{}, 1), full: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	return p
}

// Add queues record lines (Link) of one decision, in order.
func (p *Publisher) Add(records ...[]byte) {
	if p == nil || len(records) == 0 {
		return
	}
	p.mu.Lock()
	if len(p.buf)+len(records) > p.cfg.MaxQueue {
		p.dropped += len(records)
		p.mu.Unlock()
		return
	}
	first := len(p.buf) == 0
	p.buf = append(p.buf, records...)
	full := len(p.buf) >= p.cfg.MaxCount
	p.mu.Unlock()
	if first {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
	if full {
		select {
		case p.full <- struct{}{}:
		default:
		}
	}
}

// Close publishes what is queued and stops, waiting at most until ctx is
// done.
func (p *Publisher) Close(ctx context.Context) error {
	if p == nil {
		return nil
	}
	p.once.Do(func() { close(p.stop) })
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("audit: close: %w", ctx.Err())
	}
}

func (p *Publisher) run() {
	defer close(p.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-p.kick:
		case <-p.full:
		case <-p.stop:
			p.flushAll(true)
			return
		}
		timer.Reset(p.cfg.Delay)
		select {
		case <-timer.C:
		case <-p.full:
			timer.Stop()
		case <-p.stop:
			timer.Stop()
			p.flushAll(true)
			return
		}
		p.flushAll(false)
	}
}

// flushAll publishes the queued records, in batches of at most MaxCount.
func (p *Publisher) flushAll(closing bool) {
	for {
		p.mu.Lock()
		n := len(p.buf)
		if n > p.cfg.MaxCount {
			n = p.cfg.MaxCount
		}
		size := 0
		for i := 0; i < n; i++ {
			if size += len(p.buf[i]); size > maxBatchBytes && i > 0 {
				n = i
				break
			}
		}
		recs := append([][]byte(nil), p.buf[:n]...)
		p.buf = append(p.buf[:0], p.buf[n:]...)
		dropped := p.dropped
		p.dropped = 0
		more := len(p.buf) > 0
		p.mu.Unlock()
		if dropped > 0 {
			p.cfg.Log.Error().Int("records", dropped).Msg("audit queue full: records dropped (audit verify reports them missing)")
		}
		if len(recs) > 0 {
			p.publish(recs, closing)
		}
		if !more || (!closing && len(recs) < p.cfg.MaxCount) {
			return
		}
	}
}

func (p *Publisher) publish(recs [][]byte, closing bool) {
	kid, key, ok := p.signer()
	if !ok {
		p.cfg.Log.Error().Int("records", len(recs)).Msg("audit: no K2 key to sign with: records dropped")
		return
	}
	p.seq++
	h := BatchHeader{Broker: p.cfg.Broker, Boot: p.boot, Seq: p.seq, Kid: kid, At: p.cfg.Now().UnixMilli()}
	data, sig := EncodeBatch(h, recs, key)
	msg := nats.NewMsg(schemas.AuditSubject(p.cfg.Broker))
	msg.Data = data
	msg.Header.Set(schemas.HdrAuditSig, sig)
	id := p.cfg.Broker + ":" + p.boot + ":" + strconv.FormatUint(p.seq, 10)
	tries := 10
	if closing {
		tries = 3
	}
	var err error
	for attempt := 1; attempt <= tries; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var ack *jetstream.PubAck
		ack, err = p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id))
		cancel()
		if err == nil {
			// a duplicate (a retry the stream had stored) is acknowledged
			// with the stream sequence of the copy it kept
			if p.cfg.OnStored != nil {
				p.cfg.OnStored(AnchorOf(&h, data, ack.Sequence, p.cfg.Now()))
			}
			return
		}
		select {
		case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
		case <-p.stop:
			if !closing {
				closing, tries = true, min(tries, attempt+2)
			}
		}
	}
	p.cfg.Log.Error().Err(err).Uint64("batch", p.seq).Int("records", len(recs)).Msg("audit batch not stored (audit verify reports it missing)")
}

// Read reads the audit stream from its beginning, or from the first
// message at or after since when since is not zero, up to the last message
// there was when it started, and hands every message to fn in stream
// order.
func Read(ctx context.Context, js jetstream.JetStream, since time.Time, fn func(Msg)) error {
	return ReadRange(ctx, js, since, time.Time{}, fn)
}

// ReadRange is Read that stops at the first message stored after until
// (not zero): what one message's timeline needs, without reading the
// stream to its end.
func ReadRange(ctx context.Context, js jetstream.JetStream, since, until time.Time, fn func(Msg)) error {
	s, err := js.Stream(ctx, schemas.AuditStream)
	if err != nil {
		return fmt.Errorf("audit: stream: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("audit: stream info: %w", err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return nil
	}
	cfg := jetstream.OrderedConsumerConfig{}
	if !since.IsZero() {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	}
	c, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("audit: consumer: %w", err)
	}
	for {
		batch, err := c.Fetch(256, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("audit: fetch: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("audit: metadata: %w", err)
			}
			if !until.IsZero() && md.Timestamp.After(until) {
				return nil
			}
			fn(Msg{Seq: md.Sequence.Stream, Data: m.Data(), Sig: m.Headers().Get(schemas.HdrAuditSig)})
			if md.Sequence.Stream >= last || md.NumPending == 0 {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("audit: fetch: %w", err)
		}
		if got == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			return nil // nothing more within the wait: whatever is left came after last
		}
	}
}

// Verify reads the stream as Read does and verifies it. v.Anchors, if
// any, must have been read before Verify is called.
func Verify(ctx context.Context, js jetstream.JetStream, v *Verifier, since time.Time) (*Report, error) {
	if !since.IsZero() {
		v.Partial, v.Since = true, since
	}
	if err := Read(ctx, js, since, v.Add); err != nil {
		return nil, err
	}
	return v.Finish(), nil
}

// VerifyRange is Verify of the batches stored from since to until (see
// ReadRange); v should be limited to the transactions of that span (Only).
// A read that stops at until cannot check anchors: their batches may lie
// after it, so v.Anchors is dropped then.
func VerifyRange(ctx context.Context, js jetstream.JetStream, v *Verifier, since, until time.Time) (*Report, error) {
	if !since.IsZero() {
		v.Partial, v.Since = true, since
	}
	if !until.IsZero() {
		v.Anchors = nil
	}
	if err := ReadRange(ctx, js, since, until, v.Add); err != nil {
		return nil, err
	}
	return v.Finish(), nil
}
