// Package kit is what every UIMS gateway shares (patent: instant message
// gateway, originator and receiver; ../../miap/PROTOCOL.md §6): it
// originates messages for its medium (meta information to the brokers,
// routed IMI verified, content transferred directly to the destination),
// receives messages for its medium (ticket, digest and expiry checked,
// duplicates dropped, delivered, acknowledged to the brokers) and hands
// status notifications to the medium.
//
// A medium plugs in through the small Medium interface; the conformance
// suite in kittest checks any implementation.
package kit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/uims/uims/internal/tracing"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/miapnats"
	"github.com/uims/uims/schemas"
)

// Medium is what a gateway plugs into the kit.
type Medium interface {
	// Deliver hands a message to its recipient (patent step S9) and returns
	// once the gateway owns it durably: schemas.StatusDelivered when the
	// recipient has it, schemas.StatusRead when the recipient has read it
	// already (a bot that answered at once: the kit acknowledges delivered,
	// then read), schemas.StatusTransferred when delivery goes on later (the
	// medium then reports the outcome with Kit.Ack). Deliver must
	// be idempotent per message id: the same message again must not be
	// delivered twice and must report the first outcome.
	Deliver(ctx context.Context, d *Delivery) (string, error)
	// Notify tells the local sender of a message what happened to it, in
	// the medium's own way (a DSN, an SMPP receipt, a web event). It may be
	// called more than once for the same event and must be idempotent.
	Notify(ctx context.Context, ev *schemas.StatusEvent) error
}

// Holder is a Medium that can tell whether it holds a message. The kit
// answers the brokers' deadline check with it (PROTOCOL.md §6.14): a
// message the medium stored but whose acknowledgement was lost (the
// gateway died in between) is acknowledged then, instead of failing at its
// deadline while it sits with its recipient. Held returns the reference
// stored with the message, or nil when the medium does not hold it.
type Holder interface {
	Held(ctx context.Context, q *schemas.HeldQuery) (*AckRef, error)
}

// SendOnly is the medium of an originator that receives nothing, such as
// the command-line sender: a delivery is UNSUPPORTED, a notification
// dropped (the sender asks the status instead).
type SendOnly struct{}

// Deliver refuses every message.
func (SendOnly) Deliver(context.Context, *Delivery) (string, error) {
	return "", &schemas.Error{Code: schemas.CodeUnsupported}
}

// Notify drops the status.
func (SendOnly) Notify(context.Context, *schemas.StatusEvent) error { return nil }

// Delivery is a message arrived for this gateway's medium.
type Delivery struct {
	Routed *schemas.RoutedIMI
	// Ref is what Kit.Ack needs later (read receipts, late outcomes); the
	// medium stores it with the message.
	Ref AckRef
	// Type is the content type after conversions; Content the bytes.
	Type    string
	Content []byte
}

// AckRef identifies a delivered message to the brokers: the inner digest ID
// proves the destination took part in the broker's transaction.
type AckRef struct {
	MsgID string `json:"msg_id"`
	Tx    string `json:"tx"`
	ID    string `json:"id"` // base64url
}

// Config configures a Kit.
type Config struct {
	// Gateway is the party id (key owner), e.g. "web"; Medium the medium.
	Gateway string
	Medium  string
	// Instance names this process; default a random id.
	Instance string
	// Version is what the gateway's micro service reports; default 0.1.0.
	Version string
	// Strict selects the strict MIAP mode (a TSCS login round trip before
	// each step, PROTOCOL.md §6); default fast.
	Strict bool
	// Accepts lists content types delivered as they are; others need a
	// conversion. Empty means any.
	Accepts []string
	// Reach lists outside addresses the gateway can deliver to ("*",
	// "@domain", "+prefix"); empty for none.
	Reach []string
	// RequestTimeout bounds each request to the brokers; default 5 s.
	RequestTimeout time.Duration
	// TransferTimeout bounds a transfer to the destination; default 15 s.
	TransferTimeout time.Duration
	// Heartbeat is the announce interval; default 1 s (TTL 3 intervals).
	Heartbeat time.Duration
	// Workers bounds concurrent incoming transfers; default 128.
	Workers int
	// NoTrace turns off protocol-step events.
	NoTrace bool
	// MIAP freshness; defaults as in package miap.
	Window, Skew time.Duration
	// KeepContent bounds how long the content of a message the brokers may
	// route again, or hold, is kept when no outcome comes (PROTOCOL.md
	// §6.15, §6.16): the TTL of the gateway's bucket uims_og_<gateway>;
	// default the longest hold (schemas.MaxHold, 7 days) and a day.
	KeepContent time.Duration
	// ContentRef is the content size from which a transfer goes by
	// reference through the object store (PROTOCOL.md §10); default
	// miap.DefaultContentRef (256 KiB), at least miap.MinContentRef.
	ContentRef int
	// Now is the clock the kit's MIAP engine corrects against the
	// brokers' (TSCS); default time.Now.
	Now func() time.Time
	// Seal says when content is sealed from hop to hop (PROTOCOL.md §14):
	// auto (default) when the gateway has an encryption key and every hop
	// announces one, off never, required always (nothing leaves unsealed).
	// The gateway announces its key unless off; it opens sealed content in
	// every mode.
	Seal miap.SealMode
}

func (c *Config) setDefaults() error {
	if !miap.ValidName(c.Gateway) {
		return fmt.Errorf("kit: invalid gateway id %q", c.Gateway)
	}
	if c.Medium == "" {
		c.Medium = c.Gateway
	}
	if c.Instance == "" {
		var b [4]byte
		rand.Read(b[:])
		c.Instance = c.Gateway + "-" + hex.EncodeToString(b[:])
	}
	if c.Version == "" {
		c.Version = "0.1.0"
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 5 * time.Second
	}
	if c.TransferTimeout == 0 {
		c.TransferTimeout = 15 * time.Second
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = time.Second
	}
	if c.Workers == 0 {
		c.Workers = 128
	}
	if c.KeepContent == 0 {
		c.KeepContent = schemas.MaxHold + 24*time.Hour
	}
	m, err := miap.ParseSealMode(string(c.Seal))
	if err != nil {
		return fmt.Errorf("kit: %w", err)
	}
	c.Seal = m
	return nil
}

// Kit is one gateway instance's connection to the fabric.
type Kit struct {
	cfg     Config
	nc      *nats.Conn
	js      jetstream.JetStream
	eng     *miap.Engine
	medium  Medium
	log     zerolog.Logger
	clock   miapnats.Clock
	client  *miapnats.Client
	content *miapnats.ContentStore
	tracer  *tracing.Publisher // nil: no trace events

	work    chan micro.Request
	count   counters
	workMu  sync.RWMutex // guards stopped; held for reading while sending on work
	stopped bool
	wg      sync.WaitGroup
	running atomic.Bool
	// held are acknowledgements that neither a broker nor the outbox took
	// (NATS itself down), retried until one does (receive.go holdAck).
	heldMu sync.Mutex
	held   map[string]queuedAck
	// keep is the content kept for reroutes (reroute.go).
	keep keptStore
}

// New returns a kit for one gateway. keys must hold the gateway's own K1.
func New(nc *nats.Conn, keys *miap.Keyring, medium Medium, cfg Config, log zerolog.Logger) (*Kit, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if !keys.Has(cfg.Gateway) {
		return nil, fmt.Errorf("kit: no key for gateway %q", cfg.Gateway)
	}
	k := &Kit{cfg: cfg, nc: nc, medium: medium,
		log:  log.With().Str("role", "gateway").Str("gateway", cfg.Gateway).Str("instance", cfg.Instance).Logger(),
		work: make(chan micro.Request, 4*cfg.Workers)}
	k.clock.Base = cfg.Now
	eng, err := miap.New(miap.Config{Keys: keys, Now: k.clock.Now, Window: cfg.Window, Skew: cfg.Skew})
	if err != nil {
		return nil, err
	}
	k.eng = eng
	if cfg.Seal == miap.SealRequired && !eng.CanSeal(cfg.Gateway) {
		return nil, fmt.Errorf("kit: seal mode required, and %q has no encryption key (PROTOCOL.md §14.2)", cfg.Gateway)
	}
	if k.js, err = jetstream.New(nc); err != nil {
		return nil, err
	}
	k.content = miapnats.NewContentStore(k.js)
	k.content.Threshold = cfg.ContentRef
	if !cfg.NoTrace {
		k.tracer = tracing.New(nc, cfg.Gateway, 0, 0)
	}
	k.client = &miapnats.Client{NC: nc, Eng: eng, Clock: &k.clock, Party: cfg.Gateway, Timeout: cfg.RequestTimeout, Content: k.content}
	return k, nil
}

func (k *Kit) now() time.Time { return k.clock.Now() }

// Gateway returns the gateway's party id.
func (k *Kit) Gateway() string { return k.cfg.Gateway }

// Instance returns the instance name.
func (k *Kit) Instance() string { return k.cfg.Instance }

// Conn returns the NATS connection.
func (k *Kit) Conn() *nats.Conn { return k.nc }

// JetStream returns the JetStream context.
func (k *Kit) JetStream() jetstream.JetStream { return k.js }

// Logger returns the kit's logger.
func (k *Kit) Logger() zerolog.Logger { return k.log }

// Run receives messages and notifications and announces the gateway until
// ctx is done. Ready reports when it serves.
func (k *Kit) Run(ctx context.Context, ready func()) error {
	// JetStream may not be up yet: wait for it instead of exiting.
	if err := miapnats.Await(ctx, func(ctx context.Context) error { return EnsureStreams(ctx, k.js) }, func(err error, next time.Duration) {
		k.log.Warn().Err(err).Dur("retry_in", next).Msg("waiting for JetStream")
	}); err != nil {
		return err
	}
	svc, err := k.serve(func(req micro.Request) {
		k.workMu.RLock()
		defer k.workMu.RUnlock()
		if k.stopped {
			respondError(req, schemas.CodeBusy, "gateway stopping")
			return
		}
		select {
		case k.work <- req:
		default:
			respondError(req, schemas.CodeBusy, "gateway at capacity")
		}
	}, k.handleLogin, func(req micro.Request) {
		go k.handleHeld(ctx, req)
	})
	if err != nil {
		return err
	}
	for range k.cfg.Workers {
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			for m := range k.work {
				k.handleIM(ctx, m)
			}
		}()
	}
	statusDone := make(chan error, 1)
	go func() { statusDone <- k.consumeStatus(ctx) }()
	ackDone := make(chan error, 1)
	go func() { ackDone <- k.consumeAcks(ctx) }()
	go miapnats.FollowOwnKeys(ctx, k.js, k.cfg.Gateway, KeyRefresh, k.eng, k.keysChanged)
	heldDone := make(chan struct{})
	go func() { k.retryHeld(ctx); close(heldDone) }()
	k.announce(ctx, k.cfg.Heartbeat*3)
	k.nc.Flush()
	k.running.Store(true)
	if ready != nil {
		ready()
	}
	k.log.Info().Str("subject", schemas.GatewayIM(k.cfg.Gateway)).Bool("strict", k.cfg.Strict).Msg("gateway serving")
	t := time.NewTicker(k.cfg.Heartbeat)
	defer t.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-t.C:
			k.announce(ctx, k.cfg.Heartbeat*3)
		case err := <-statusDone:
			if ctx.Err() == nil {
				k.log.Error().Err(err).Msg("status consumer stopped")
			}
			statusDone = nil
		}
	}
	k.running.Store(false)
	k.announce(context.Background(), 0) // goodbye: brokers stop routing here at once
	svc.Stop()                          // drains the endpoints' subscriptions
	k.workMu.Lock()
	k.stopped = true
	k.workMu.Unlock()
	close(k.work)
	k.wg.Wait()
	<-ackDone
	<-heldDone
	k.tracer.Flush()
	return nil
}

// announce publishes a signed heartbeat (PROTOCOL.md §6.12).
func (k *Kit) announce(ctx context.Context, ttl time.Duration) {
	a := schemas.Announce{V: schemas.Version, Gateway: k.cfg.Gateway, Medium: k.cfg.Medium, Instance: k.cfg.Instance,
		Accepts: k.cfg.Accepts, Reach: k.cfg.Reach, TTL: ttl.Milliseconds(), At: k.now().UnixMilli()}
	if k.cfg.Seal != miap.SealOff {
		a.XKey = k.eng.SealPublic(k.cfg.Gateway) // sealed content comes to it (§14)
	}
	if err := miapnats.Announce(k.nc, k.eng, &a); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrConnectionDraining) {
		// a closed connection: the gateway is being stopped, or its
		// owner closed the connection under it; nothing to tell
		k.log.Warn().Err(err).Msg("cannot announce")
	}
}

// Serve runs a gateway: the kit first and, once it serves, the medium's
// own server. serve runs that server and returns when it stopped; it must
// stop, draining what it has, once its ctx is done. ready (if not nil) is
// called when both run. The kit drains last, after the medium's server
// stopped, so that the medium's late acknowledgements still go out. Serve
// returns the first error of either; a gateway maps its server's "closed"
// error to nil itself. With it a gateway writes only its medium.
func (k *Kit) Serve(ctx context.Context, ready func(), serve func(ctx context.Context) error) error {
	kctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kitReady := make(chan struct{})
	kitDone := make(chan error, 1)
	go func() { kitDone <- k.Run(kctx, func() { close(kitReady) }) }()
	select {
	case <-kitReady:
	case err := <-kitDone:
		return err
	case <-ctx.Done():
		cancel()
		<-kitDone
		return nil
	}
	srvDone := make(chan error, 1)
	go func() { srvDone <- serve(ctx) }()
	if ready != nil {
		ready()
	}
	err := <-srvDone
	cancel()
	if kerr := <-kitDone; err == nil {
		err = kerr
	}
	return err
}

// KeyRefresh is how often a gateway reads its own entry of the key
// registry: a rotated key reaches it within this time (PROTOCOL.md §3.4).
const KeyRefresh = 2 * time.Second

// keysChanged logs what FollowOwnKeys found.
func (k *Kit) keysChanged(kids []string, err error) {
	if err != nil {
		k.log.Debug().Err(err).Msg("key registry not readable")
		return
	}
	k.log.Info().Strs("kids", kids).Msg("keys from the key registry")
}

// Streams of the gateway kit.
const (
	// AckStream holds acknowledgements that could not reach a broker yet.
	AckStream   = "UIMS_ACKS"
	ackSubjects = "uims.acks.>"
)

func ackSubject(gw string) string { return "uims.acks." + gw }

// EnsureStreams creates the streams the kit uses.
func EnsureStreams(ctx context.Context, js jetstream.JetStream) error {
	err := miapnats.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:        AckStream,
		Description: "acknowledgements waiting for a broker (docs/RELIABILITY.md, Acknowledgements)",
		Subjects:    []string{ackSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.WorkQueuePolicy,
		MaxAge:      7 * 24 * time.Hour,
		Duplicates:  10 * time.Minute,
	})
	if err != nil {
		return fmt.Errorf("kit: ack stream: %w", err)
	}
	err = miapnats.EnsureStatusStream(ctx, js)
	if err != nil {
		return fmt.Errorf("kit: status stream: %w", err)
	}
	return nil
}

// request sends a signed frame to the brokers and returns the verified reply.
func (k *Kit) request(ctx context.Context, subject string, f *miap.Frame, want miap.Purpose, extra map[string][]string) (*miap.Frame, *nats.Msg, error) {
	return k.client.Request(ctx, subject, f, want, extra)
}

// trace publishes a protocol-step event for observers.
func (k *Kit) trace(step, msgID, tx, result string, ev schemas.TraceEvent) {
	if k.tracer == nil {
		return
	}
	ev.Step, ev.MsgID, ev.Tx, ev.Party, ev.By, ev.Result, ev.At = step, msgID, tx, k.cfg.Gateway, k.cfg.Instance, result, k.now().UnixMilli()
	k.tracer.Publish(&ev)
}
