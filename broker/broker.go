// Package broker is the UIMS instant message broker (patent: instant message
// broker, figures 2, 4 and 5). It sees only meta information, never
// content: it checks MIAP authenticity, reads client profiles, picks the
// destination gateway and the conversions, keeps the transaction with its
// deadline, does accounting, and signs routes, tickets, receipts and
// notifications (../miap/PROTOCOL.md §6).
//
// A broker is a nats micro service named uims-broker in a queue group. It
// keeps no state of its own that matters: profiles, nonces, session keys
// and transactions live in Redis, status notifications in a JetStream
// stream, so any number of replicas share the load and any may stop.
package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/uims/uims/audit"
	"github.com/uims/uims/internal/groupcommit"
	"github.com/uims/uims/internal/tracing"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/miapnats"
	"github.com/uims/uims/miap/miapredis"
	"github.com/uims/uims/schemas"
)

// Config configures a Broker. The zero value is usable.
type Config struct {
	// Instance names this replica; default a random id.
	Instance string
	// Version is reported by the micro service.
	Version string
	// Deadline is how long an originator has to transfer a routed message and
	// the destination to acknowledge it; default 30 s. A missing
	// acknowledgement becomes a non-delivery report at the deadline.
	Deadline time.Duration
	// DeliveryDeadline is how long a destination that took a message for
	// later delivery ("transferred") has to report the outcome; default 24 h.
	DeliveryDeadline time.Duration
	// Grace is added to a deadline before the sweeper acts, so that an
	// acknowledgement sent just before the deadline still counts; default 10 s.
	Grace time.Duration
	// Workers bounds the requests handled at once; default 256.
	Workers int
	// Queue bounds the requests waiting for a worker; beyond it the broker
	// answers BUSY at once. Default 4096.
	Queue int
	// SweepInterval is how often expired transactions are looked for; default 500 ms.
	SweepInterval time.Duration
	// Retention is how long finished transactions stay queryable; default 7 days.
	Retention time.Duration
	// WaitReplicas, when above 0, makes every write of a transaction count
	// only once that many Redis replicas have it (WAIT): with Sentinel, a
	// failover then loses no transaction a gateway was told about, since
	// Redis replicates asynchronously (docs/RELIABILITY.md). uims sets 1
	// for a redis-sentinel URL (UIMS_REDIS_WAIT). WaitTimeout bounds the
	// wait; default 500 ms.
	WaitReplicas int
	WaitTimeout  time.Duration
	// Strict enforces the strict MIAP mode: an IMI or an acknowledgement
	// without a session key from a login is refused with STRICT_REQUIRED
	// (PROTOCOL.md §6.13). The mode is in the micro service's metadata
	// ("miap_mode").
	Strict bool
	// NoTrace turns off the protocol-step events on uims.trace.>.
	NoTrace bool
	// NoAudit turns off the audit trail (PROTOCOL.md §15, UIMS_AUDIT=off):
	// no decision is recorded in the stream UIMS_AUDIT.
	NoAudit bool
	// Now is the clock; default time.Now. It must match the MIAP engine's.
	Now func() time.Time
	// Metrics, if set, is where the broker registers its Prometheus collectors.
	Metrics prometheus.Registerer
	// OnProfilesChanged, if set, is called after the administrator changed
	// profiles through this broker (uims.broker.profile), before it answers;
	// an error fails the request. `uims run` saves its embedded store's
	// profiles with it.
	OnProfilesChanged func(ctx context.Context) error
}

func (c *Config) setDefaults() {
	if c.Instance == "" {
		var b [4]byte
		rand.Read(b[:])
		c.Instance = "broker-" + hex.EncodeToString(b[:])
	}
	if c.Version == "" {
		c.Version = "0.1.0"
	}
	if c.Deadline == 0 {
		c.Deadline = 30 * time.Second
	}
	if c.DeliveryDeadline == 0 {
		c.DeliveryDeadline = 24 * time.Hour
	}
	if c.Grace == 0 {
		c.Grace = 10 * time.Second
	}
	if c.Workers == 0 {
		c.Workers = 256
	}
	if c.Queue == 0 {
		c.Queue = 4096
	}
	if c.WaitTimeout == 0 {
		c.WaitTimeout = 500 * time.Millisecond
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = 500 * time.Millisecond
	}
	if c.Retention == 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Broker is one broker replica.
type Broker struct {
	cfg      Config
	nc       *nats.Conn
	tracer   *tracing.Publisher // nil: no trace events
	audit    *audit.Publisher   // nil: no audit trail (auditlog.go)
	js       jetstream.JetStream
	rdb      redis.UniversalClient
	guard    *miap.Guard
	eng      *miap.Engine
	store    *miapredis.Store
	profiles *Profiles
	reg      *registry
	log      zerolog.Logger

	work    chan job
	workMu  sync.RWMutex // guards stopped; held for reading while sending on work
	stopped bool
	mu      sync.Mutex
	stats   map[string]*endpointStats
	pending sync.WaitGroup
	metrics *metrics
	notes   chan note   // notifications, in order (notify.go)
	acct    chan string // outcome marks to publish (accounting.go)
	// acctW writes accounting records with group commit when the stream
	// is in asynchronous persist mode (accounting.go); nil: each write
	acctW   *groupcommit.Writer
	bg      sync.WaitGroup // background work that may account or notify (system.go)
	batch   *batcher       // shared Redis pipelines of the hot path (batch.go)
	quiet   quietCache
	content *miapnats.ContentStore // deletes content by reference (content.go)
	dropQ   chan string            // IDs of attempts whose objects to delete
	// refsLive says that some broker noted content by reference whose
	// objects may still exist (content.go): without, an attempt's end
	// queues no deletion
	refsLive atomic.Bool
	warned   quotaWarned // clients warned of their quota today (system.go)
}

type job struct {
	req micro.Request
	fn  func(context.Context, micro.Request)
}

// handler handles one request; an error is answered by the wrapper with
// its wire code and logged with its detail.
type handler func(ctx context.Context, req micro.Request) error

// New returns a broker. engine must hold every gateway's K1 and the K2 keys.
func New(cfg Config, nc *nats.Conn, rdb redis.UniversalClient, engine *miap.Engine, log zerolog.Logger) (*Broker, error) {
	cfg.setDefaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("broker: jetstream: %w", err)
	}
	b := &Broker{cfg: cfg, nc: nc, js: js, rdb: rdb, store: miapredis.New(rdb),
		profiles: NewProfiles(rdb, cfg.Now), reg: newRegistry(),
		log:   log.With().Str("role", "broker").Str("instance", cfg.Instance).Logger(),
		work:  make(chan job, cfg.Queue),
		notes: make(chan note, cfg.Queue),
		acct:  make(chan string, cfg.Queue),
		stats: make(map[string]*endpointStats),
		dropQ: make(chan string, 4096),
	}
	b.content = miapnats.NewContentStore(js)
	b.eng = engine
	b.guard = miap.NewGuard(engine, b.store, b.recordEpoch)
	b.metrics = newMetrics(cfg.Metrics, func() float64 { return float64(len(b.work)) })
	b.batch = newBatcher(rdb, 4)
	b.batch.replicas, b.batch.timeout = cfg.WaitReplicas, cfg.WaitTimeout
	if !cfg.NoTrace {
		b.tracer = tracing.New(nc, "broker", 0, 0)
	}
	return b, nil
}

// Profiles returns the broker's profile database.
func (b *Broker) Profiles() *Profiles { return b.profiles }

// Instance returns the replica's instance name.
func (b *Broker) Instance() string { return b.cfg.Instance }

// Run serves until ctx is done, then drains in-flight requests. ready, if
// not nil, is called once serving.
func (b *Broker) Run(ctx context.Context, ready func()) error {
	// JetStream and the store may not be up yet (a cluster starting, a
	// restart after an outage): wait for them instead of exiting.
	retrying := func(what string) func(error, time.Duration) {
		return func(err error, next time.Duration) {
			b.log.Warn().Err(err).Dur("retry_in", next).Msg("waiting for " + what)
		}
	}
	if err := miapnats.Await(ctx, func(ctx context.Context) error { return EnsureStreams(ctx, b.js) }, retrying("JetStream")); err != nil {
		return err
	}
	if err := miapnats.Await(ctx, b.startGuard, retrying("the nonce store")); err != nil {
		return err
	}
	if err := miapnats.Await(ctx, b.startAccountingCommit, retrying("the accounting journal")); err != nil {
		return err
	}
	b.startAudit()
	for range b.cfg.Workers {
		go func() {
			for j := range b.work {
				j.fn(ctx, j.req)
				b.pending.Done()
			}
		}()
	}
	go b.dropContents(ctx)
	go b.followRefs(ctx)
	annSub, err := b.nc.Subscribe(schemas.SubjectBrokerAnnounce, b.handleAnnounce)
	if err != nil {
		return fmt.Errorf("broker: subscribe announce: %w", err)
	}
	defer annSub.Unsubscribe()
	profSub, err := b.nc.Subscribe(schemas.SubjectProfilesChanged, func(*nats.Msg) { b.profiles.Invalidate() })
	if err != nil {
		return fmt.Errorf("broker: subscribe profiles: %w", err)
	}
	defer profSub.Unsubscribe()

	svc, err := micro.AddService(b.nc, micro.Config{
		Name:        schemas.BrokerService,
		Version:     b.cfg.Version,
		Description: "UIMS instant message broker: MIAP, routing, transactions, accounting",
		QueueGroup:  schemas.BrokerQueue,
		Metadata:    map[string]string{"instance": b.cfg.Instance, "miap_mode": b.mode()},
		StatsHandler: func(e *micro.Endpoint) any {
			return b.endpointStats(e.Name)
		},
	})
	if err != nil {
		return fmt.Errorf("broker: micro service: %w", err)
	}
	endpoints := []struct {
		name, subject string
		fn            handler
	}{
		{"login", schemas.SubjectBrokerLogin, b.handleLogin},
		{"imi", schemas.SubjectBrokerIMI, b.handleIMI},
		{"routeack", schemas.SubjectBrokerRouteAck, b.handleRouteAck},
		{"ack", schemas.SubjectBrokerAck, b.handleAck},
		{"conv", schemas.SubjectBrokerConv, b.handleConv},
		{"status", schemas.SubjectBrokerStatus, b.handleStatus},
		{"client", schemas.SubjectBrokerClient, b.handleClient},
		{"cancel", schemas.SubjectBrokerCancel, b.handleCancel},
		{"usage", schemas.SubjectBrokerUsage, b.handleUsage},
		{"profile", schemas.SubjectBrokerProfile, b.handleProfile},
	}
	for _, ep := range endpoints {
		fn := b.instrument(ep.name, ep.fn)
		h := micro.HandlerFunc(func(req micro.Request) { b.dispatch(req, fn) })
		if err := svc.AddEndpoint(ep.name, h, micro.WithEndpointSubject(ep.subject)); err != nil {
			svc.Stop()
			return fmt.Errorf("broker: endpoint %s: %w", ep.name, err)
		}
	}
	b.log.Info().Str("service", schemas.BrokerService).Str("queue", schemas.BrokerQueue).Str("miap_mode", b.mode()).Msg("broker serving")
	if ready != nil {
		ready()
	}

	sweepDone, notesDone, acctDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() { b.sweep(ctx); close(sweepDone) }()
	go b.publishNotes(notesDone)
	go b.runAccounting(acctDone)
	go b.keepAlive(ctx)
	go b.followKeys(ctx)

	<-ctx.Done()
	err = svc.Stop() // drains the subscriptions; late requests are answered BUSY below
	b.workMu.Lock()
	b.stopped = true
	b.workMu.Unlock()
	b.pending.Wait()
	close(b.work)
	<-sweepDone
	b.bg.Wait()
	close(b.acct)
	<-acctDone
	if b.acctW != nil {
		b.acctW.Close()
	}
	close(b.notes)
	<-notesDone
	b.stopAudit()
	b.tracer.Flush()
	b.log.Info().Msg("broker stopped")
	return err
}

// mode is the MIAP mode the broker enforces: "strict" or "fast" (which
// takes both).
func (b *Broker) mode() string {
	if b.cfg.Strict {
		return "strict"
	}
	return "fast"
}

// dispatch hands a request to a worker; nats calls handlers one at a time
// per subscription, so the work happens elsewhere. A full queue answers
// BUSY at once: the gateway tells its client to retry.
func (b *Broker) dispatch(req micro.Request, fn func(context.Context, micro.Request)) {
	b.workMu.RLock()
	defer b.workMu.RUnlock()
	if b.stopped {
		b.replyError(req, schemas.Errorf(schemas.CodeBusy, nil, "broker stopping"))
		return
	}
	b.pending.Add(1)
	select {
	case b.work <- job{req: req, fn: fn}:
	default:
		b.pending.Done()
		b.replyError(req, schemas.Errorf(schemas.CodeBusy, nil, "work queue full"))
	}
}

// EnsureStreams creates the JetStream streams and buckets the broker uses.
func EnsureStreams(ctx context.Context, js jetstream.JetStream) error {
	err := miapnats.EnsureStatusStream(ctx, js)
	if err != nil {
		return fmt.Errorf("broker: status stream: %w", err)
	}
	if err := EnsureAccountingStream(ctx, js); err != nil {
		return fmt.Errorf("broker: accounting stream: %w", err)
	}
	if err := audit.EnsureStream(ctx, js); err != nil {
		return fmt.Errorf("broker: audit stream: %w", err)
	}
	err = miapnats.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      epochBucket,
		Description: "MIAP nonce store epoch marker (PROTOCOL.md §7.4)",
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("broker: epoch bucket: %w", err)
	}
	return nil
}

const (
	epochBucket = "uims_miap"
	epochKey    = "epoch"
	aliveEvery  = 5 * time.Second
)

type epochMarker struct {
	Epoch      string `json:"epoch"`
	AliveUntil int64  `json:"alive_until"`
}

// startGuard compares the nonce store's epoch with the one recorded in
// JetStream (which survives a Redis that lost its data) and quarantines if
// they differ (PROTOCOL.md §7.4).
func (b *Broker) startGuard(ctx context.Context) error {
	kv, err := b.js.KeyValue(ctx, epochBucket)
	if err != nil {
		return fmt.Errorf("broker: epoch bucket: %w", err)
	}
	var m epochMarker
	if e, err := kv.Get(ctx, epochKey); err == nil {
		json.Unmarshal(e.Value(), &m)
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("broker: read epoch marker: %w", err)
	}
	epoch, err := b.guard.Start(ctx, m.Epoch, time.UnixMilli(m.AliveUntil))
	if err != nil {
		return fmt.Errorf("broker: nonce store: %w", err)
	}
	if q := b.guard.QuarantineUntil(); !q.IsZero() {
		b.log.Warn().Str("known_epoch", m.Epoch).Str("store_epoch", epoch).Time("until", q).
			Msg("nonce store lost its state: refusing frames it could have seen (PROTOCOL.md §7.4)")
	}
	b.recordEpoch(epoch)
	return nil
}

func (b *Broker) recordEpoch(epoch string) {
	kv, err := b.js.KeyValue(context.Background(), epochBucket)
	if err != nil {
		return
	}
	m, _ := json.Marshal(epochMarker{Epoch: epoch, AliveUntil: b.cfg.Now().Add(2 * aliveEvery).UnixMilli()})
	if _, err := kv.Put(context.Background(), epochKey, m); err != nil {
		b.log.Warn().Err(err).Msg("cannot record epoch marker")
	}
}

func (b *Broker) keepAlive(ctx context.Context) {
	t := time.NewTicker(aliveEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if e := b.guard.Epoch(); e != "" {
				b.recordEpoch(e)
			}
		}
	}
}

// replyError answers with a MIAP error: the code crosses the wire, the
// detail stays in the log (PROTOCOL.md §9), but for a reason meant for the
// sender (reasonError), which goes in Uims-Reason.
func (b *Broker) replyError(req micro.Request, err error) {
	code := miap.CodeOf(err)
	h := micro.Headers{miap.HdrError: {code.String()}}
	var se *miap.SkewError
	if errors.As(err, &se) {
		h[miap.HdrServerTS] = []string{strconv.FormatInt(se.ServerTime, 10)}
	}
	var reason interface{ Reason() string }
	if errors.As(err, &reason) {
		h[schemas.HdrReason] = []string{reason.Reason()}
	}
	if q := b.guard.QuarantineUntil(); code == schemas.CodeQuarantine && !q.IsZero() {
		h[miap.HdrServerTS] = []string{strconv.FormatInt(b.cfg.Now().UnixMilli(), 10)}
		h["Retry-After-Ms"] = []string{strconv.FormatInt(max(0, time.Until(q).Milliseconds()), 10)}
	}
	// micro's Request.Error records the error in a field that its handler
	// reads once Handle returns; the brokers answer from worker goroutines
	// after that (dispatch), so the same headers are written here instead
	// (a data race otherwise). Errors are counted by code in endpointStats.
	m := nats.NewMsg(req.Reply())
	for k, v := range h {
		m.Header[k] = v
	}
	m.Header.Set(micro.ErrorHeader, code.String()+": "+code.Text())
	m.Header.Set(micro.ErrorCodeHeader, strconv.Itoa(int(code)))
	if err := b.nc.PublishMsg(m); err != nil {
		b.log.Debug().Err(err).Msg("error reply not sent")
	}
}

// reply answers with a signed frame.
func (b *Broker) reply(req micro.Request, f *miap.Frame, extra map[string][]string) error {
	if err := b.guard.Sign(f); err != nil {
		return err
	}
	h := micro.Headers{}
	f.PutHeader(h)
	for k, v := range extra {
		h[k] = v
	}
	return req.Respond(f.Body, micro.WithHeaders(h))
}

// trace publishes a protocol-step event for observers (operator view).
func (b *Broker) trace(step, msgID, tx, party, result string, ev schemas.TraceEvent) {
	if b.tracer == nil {
		return
	}
	ev.Step, ev.MsgID, ev.Tx, ev.Party, ev.By, ev.Result, ev.At = step, msgID, tx, party, b.cfg.Instance, result, b.cfg.Now().UnixMilli()
	b.tracer.Publish(&ev)
}

// endpointStats are the custom stats shown by `nats micro stats uims-broker`.
type endpointStats struct {
	mu    sync.Mutex
	codes map[string]int64
}

// instrument wraps a handler: errors are answered with their code,
// counted per endpoint and code, and logged with their detail.
func (b *Broker) instrument(name string, fn handler) func(context.Context, micro.Request) {
	b.mu.Lock()
	st := &endpointStats{codes: map[string]int64{}}
	b.stats[name] = st
	b.mu.Unlock()
	return func(ctx context.Context, req micro.Request) {
		start := time.Now()
		err := fn(ctx, req)
		if err == nil {
			b.metrics.observe(name, "ok", start)
			return
		}
		code := miap.CodeOf(err)
		b.metrics.observe(name, code.String(), start)
		st.mu.Lock()
		st.codes[code.String()]++
		st.mu.Unlock()
		ev := b.log.Info()
		switch code {
		case schemas.CodeBadMAC, schemas.CodeReplay, schemas.CodeIDMismatch, schemas.CodeBadTicket, schemas.CodeNotAllowed, schemas.CodeBadSession, schemas.CodeUnknownKey,
			schemas.CodeStrictRequired:
			ev = b.log.Warn().Bool("security", true)
		case schemas.CodeInternal, schemas.CodeStoreUnavailable:
			ev = b.log.Error()
		}
		party := req.Headers().Get(miap.HdrParty)
		ev.Str("endpoint", name).Str("code", code.String()).Err(err).Str("party", party).Msg("refused")
		b.trace(name, "", "", party, "refused", schemas.TraceEvent{Code: code.String()})
		b.replyError(req, err)
	}
}

func (b *Broker) endpointStats(name string) any {
	b.mu.Lock()
	st := b.stats[name]
	b.mu.Unlock()
	out := map[string]any{"instance": b.cfg.Instance}
	if st != nil {
		st.mu.Lock()
		codes := make(map[string]int64, len(st.codes))
		for k, v := range st.codes {
			codes[k] = v
		}
		st.mu.Unlock()
		out["rejections"] = codes
	}
	if name == "imi" {
		out["gateways"] = b.reg.snapshot(b.cfg.Now().UnixMilli())
	}
	return out
}
