// Package sms is the UIMS SMS gateway (patent: instant message gateway for
// the GSM/SMS medium). It originates and receives messages for the "sms"
// medium through the gateway kit and speaks SMPP 3.4 on two sides:
//
//   - an SMPP server for applications (ESMEs) that bind with the SMPP
//     credentials of their client profile: submit_sm goes into the fabric
//     (submit_sm_resp only once the destination took the message),
//     messages for a bound application go out as deliver_sm, and delivery
//     receipts go back to the application that asked for them;
//   - an SMPP client (github.com/linxGnu/gosmpp) to an upstream SMS centre
//     for phone numbers no application owns: submit_sm with registered
//     delivery, receipts matched to our message id, mobile-originated
//     messages into the fabric.
//
// Everything that waits for an outside party (messages and receipts for an
// unbound application, the SMS centre's message ids awaiting receipts)
// lives in JetStream, never only in memory (docs/RELIABILITY.md,
// Ownership). The codecs are in the subpackages pdu (SMPP 3.4 PDUs), gsm (GSM 03.38, UCS-2, UDH,
// reassembly) and dlr (receipt text, message id matching).
package sms

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/kit/authlimit"
	"github.com/uims/uims/gateways/sms/gsm"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// Config configures a Gateway. The zero value (with an SMSC left empty)
// serves applications on 127.0.0.1:2775.
type Config struct {
	// Gateway is the party id (MIAP key owner); default "sms".
	Gateway string
	// Addr is the SMPP listen address for applications; default
	// 127.0.0.1:2775 (uims run: UIMS_SMPP_ADDR). Port 0 picks a free one
	// (see Gateway.Addr).
	Addr string
	// SystemID is the system_id this SMSC returns in bind responses
	// (SMPP 3.4 §4.1.2); default "uims".
	SystemID string
	// Window bounds the requests outstanding per session in each
	// direction: submit_sm being handled (beyond it the application gets
	// ESME_RTHROTTLED) and deliver_sm waiting for deliver_sm_resp;
	// default 10.
	Window int
	// EnquireLink is how long a session may stay silent before the server
	// sends enquire_link (SMPP 3.4 §4.11); a session that does not answer
	// within ResponseTimeout is closed. Default 60 s.
	EnquireLink time.Duration
	// ResponseTimeout bounds the wait for a response to a PDU we sent;
	// default 10 s.
	ResponseTimeout time.Duration
	// SendTimeout bounds the hand-over of one submitted message to the
	// fabric; default 20 s.
	SendTimeout time.Duration
	// ReassemblyTimeout is how long the parts of a concatenated message
	// are awaited before the partial message is delivered, marked as
	// partial; default 3 minutes.
	ReassemblyTimeout time.Duration
	// MaxPDU bounds command_length of received PDUs; default
	// pdu.DefaultMaxLength.
	MaxPDU uint32
	// MaxSessions bounds concurrent SMPP sessions; default 1000.
	MaxSessions int
	// MaxParts is the most SMS parts one outgoing message may take; a
	// longer text is shortened to one SMS with a pointer to the web inbox.
	// Default 10 (1530 GSM characters, 670 UCS-2 code units).
	MaxParts int
	// InboxURL, if set, is the web inbox address put in shortened messages.
	InboxURL string
	// QueueMaxAge bounds how long messages and receipts wait for an
	// unbound application; default 7 days.
	QueueMaxAge time.Duration
	// ReceiptDelay is the least time between the outcome of a message and
	// its delivery receipt; default 1 s, negative for none. An application
	// may store its receipt bookkeeping only after reading submit_sm_resp
	// (Kannel does, on another thread), so a receipt right behind the
	// response would find nothing there and be dropped.
	ReceiptDelay time.Duration
	// SMSC is the upstream SMS centre; empty Addr means none.
	SMSC SMSCConfig
	// NoOutsideReach makes a gateway without an SMS centre announce no
	// phone prefixes. By default it announces those of SMSC.Reach (every
	// number) all the same, so that the brokers route a number no client
	// owns here and its sender hears at once that it is UNREACHABLE (no
	// centre configured: permanent) instead of NO_ROUTE (no live gateway
	// now: try again later) from the brokers. Set it when another SMS
	// gateway party with a centre serves those numbers: the brokers take
	// the first gateway (by party id) whose prefixes match.
	NoOutsideReach bool

	// BindPerID and BindPerAddr lock out binds for a system_id and for a
	// remote address (an IPv6 /64) after failed passwords
	// (authlimit.Policy). While locked out, every bind is answered
	// ESME_RBINDFAIL after BindDelay, doubled for each refused attempt up
	// to ten times BindDelay, without checking the password: the right
	// password too is refused until the lockout ends. Default: 5 failures
	// within a minute lock a system_id out for 5 minutes, 20 an address
	// (one address may serve several applications).
	BindPerID, BindPerAddr authlimit.Policy
	// BindDelay is the first delay of a bind refused during a lockout;
	// default 1 s.
	BindDelay time.Duration

	// Kit configures the gateway kit (mode, instance, timeouts); Gateway,
	// Medium, Accepts and Reach are set from this Config.
	Kit kit.Config
}

// SMSCConfig configures the link to an upstream SMS centre (uims run:
// UIMS_SMSC_ADDR, UIMS_SMSC_SYSTEM_ID, UIMS_SMSC_PASSWORD, UIMS_SMSC_RATE).
type SMSCConfig struct {
	// Addr is host:port of the centre; empty means no centre.
	Addr string
	// SystemID, Password and SystemType are the bind credentials
	// (SMPP 3.4 §4.1.5).
	SystemID   string
	Password   string
	SystemType string
	// Rate is the most submit_sm per second on the link (token bucket);
	// default 50. Burst is the bucket size; default max(1, Rate).
	Rate  float64
	Burst int
	// Window bounds submit_sm awaiting submit_sm_resp; default 10.
	Window int
	// EnquireLink is the keep-alive interval; default 30 s.
	EnquireLink time.Duration
	// ReconnectDelay is the wait between bind attempts; default 2 s.
	ReconnectDelay time.Duration
	// ResponseTimeout bounds the wait for submit_sm_resp; default 10 s.
	ResponseTimeout time.Duration
	// SourceAddr is the source_addr of messages whose sender has no phone
	// number; default "UIMS" (alphanumeric).
	SourceAddr string
	// Reach lists the phone number prefixes announced to the brokers;
	// default ["+"] (every number).
	Reach []string
}

func (c *Config) setDefaults() error {
	if c.Gateway == "" {
		c.Gateway = "sms"
	}
	if !miap.ValidName(c.Gateway) {
		return fmt.Errorf("sms: invalid gateway id %q", c.Gateway)
	}
	if c.Addr == "" {
		c.Addr = "127.0.0.1:2775"
	}
	if c.SystemID == "" {
		c.SystemID = "uims"
	}
	if len(c.SystemID) > 15 {
		return fmt.Errorf("sms: system_id %q longer than 15 octets", c.SystemID)
	}
	if c.Window <= 0 {
		c.Window = 10
	}
	if c.EnquireLink <= 0 {
		c.EnquireLink = 60 * time.Second
	}
	if c.ResponseTimeout <= 0 {
		c.ResponseTimeout = 10 * time.Second
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = 20 * time.Second
	}
	if c.ReassemblyTimeout <= 0 {
		c.ReassemblyTimeout = 3 * time.Minute
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = 1000
	}
	if c.MaxParts <= 0 {
		c.MaxParts = 10
	}
	if c.MaxParts > gsm.MaxParts {
		c.MaxParts = gsm.MaxParts
	}
	if c.QueueMaxAge <= 0 {
		c.QueueMaxAge = 7 * 24 * time.Hour
	}
	if c.ReceiptDelay == 0 {
		c.ReceiptDelay = time.Second
	}
	if c.BindPerID.Failures == 0 {
		c.BindPerID = authlimit.Policy{Failures: 5, Window: time.Minute, Lockout: 5 * time.Minute}
	}
	if c.BindPerAddr.Failures == 0 {
		c.BindPerAddr = authlimit.Policy{Failures: 20, Window: time.Minute, Lockout: 5 * time.Minute}
	}
	if c.BindDelay <= 0 {
		c.BindDelay = time.Second
	}
	s := &c.SMSC
	if s.Addr == "" {
		return nil
	}
	if s.Rate <= 0 {
		s.Rate = 50
	}
	if s.Burst <= 0 {
		s.Burst = max(1, int(s.Rate))
	}
	if s.Window <= 0 {
		s.Window = 10
	}
	if s.EnquireLink <= 0 {
		s.EnquireLink = 30 * time.Second
	}
	if s.ReconnectDelay <= 0 {
		s.ReconnectDelay = 2 * time.Second
	}
	if s.ResponseTimeout <= 0 {
		s.ResponseTimeout = 10 * time.Second
	}
	if s.SourceAddr == "" {
		s.SourceAddr = "UIMS"
	}
	if len(s.Reach) == 0 {
		s.Reach = []string{"+"}
	}
	return nil
}

// Gateway is one SMS gateway instance. It implements kit.Medium.
type Gateway struct {
	cfg  Config
	nc   *nats.Conn
	js   jetstream.JetStream
	kit  *kit.Kit
	log  zerolog.Logger
	ln   net.Listener
	smsc *smscLink // nil without a centre

	store *store
	queue *queue
	parts *reassembly
	// deciding tracks submissions whose outcome the application has not
	// heard yet (receipt.go, Refusals).
	deciding deciding

	mu       sync.Mutex
	sessions map[*session]struct{}
	runCtx   context.Context
	wg       sync.WaitGroup

	// bindID and bindAddr lock out failed binds (Config.BindPerID,
	// BindPerAddr); bindStats counts them.
	bindID, bindAddr *authlimit.Limiter
	bindStats        bindCounters
}

// BindStats counts refused binds since the gateway started.
type BindStats struct {
	// Failed: binds with a wrong system_id or password.
	Failed int64
	// LockedOut: binds refused, unchecked, during a lockout.
	LockedOut int64
	// Lockouts: lockouts started (of a system_id or an address).
	Lockouts int64
}

type bindCounters struct{ failed, lockedOut, lockouts atomic.Int64 }

// BindStats returns the bind failure counters.
func (g *Gateway) BindStats() BindStats {
	return BindStats{Failed: g.bindStats.failed.Load(), LockedOut: g.bindStats.lockedOut.Load(), Lockouts: g.bindStats.lockouts.Load()}
}

// New returns a gateway and binds its SMPP listener (so that Addr is known
// before Run). keys must hold the gateway's own K1.
func New(cfg Config, nc *nats.Conn, keys *miap.Keyring, log zerolog.Logger) (*Gateway, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, nc: nc, sessions: make(map[*session]struct{}),
		bindID: authlimit.New(cfg.BindPerID), bindAddr: authlimit.New(cfg.BindPerAddr),
		log: log.With().Str("role", "gateway").Str("gateway", cfg.Gateway).Str("medium", schemas.MediumSMS).Logger()}
	kc := cfg.Kit
	kc.Gateway, kc.Medium, kc.Accepts, kc.Reach = cfg.Gateway, schemas.MediumSMS, []string{"text/plain"}, nil
	switch {
	case cfg.SMSC.Addr != "":
		kc.Reach = cfg.SMSC.Reach
	case !cfg.NoOutsideReach:
		// No centre: Deliver refuses these numbers as UNREACHABLE.
		kc.Reach = cfg.SMSC.Reach
		if len(kc.Reach) == 0 {
			kc.Reach = []string{"+"}
		}
	}
	k, err := kit.New(nc, keys, g, kc, log)
	if err != nil {
		return nil, fmt.Errorf("sms: %w", err)
	}
	g.kit = k
	g.js = k.JetStream()
	g.store = &store{js: g.js, gw: cfg.Gateway}
	g.queue = newQueue(g)
	g.parts = newReassembly(cfg.Gateway, cfg.ReassemblyTimeout, 2*cfg.SendTimeout+5*time.Second)
	if cfg.SMSC.Addr != "" {
		g.smsc = newSMSCLink(g, cfg.SMSC)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("sms: listen %s: %w", cfg.Addr, err)
	}
	g.ln = ln
	return g, nil
}

// Addr returns the bound SMPP listen address.
func (g *Gateway) Addr() net.Addr { return g.ln.Addr() }

// Kit returns the gateway's kit (for status queries and tests).
func (g *Gateway) Kit() *kit.Kit { return g.kit }

// Run serves until ctx is done: the kit (messages and notifications from
// the fabric), the SMPP server and, if configured, the link to the SMS
// centre. Ready reports when all of them serve.
func (g *Gateway) Run(ctx context.Context, ready func()) error {
	defer g.ln.Close()
	if err := g.store.ensure(ctx, g.cfg.QueueMaxAge); err != nil {
		return err
	}
	if err := g.parts.ensure(ctx, g.js); err != nil {
		return err
	}
	g.runCtx = ctx
	return g.kit.Serve(ctx, ready, func(ctx context.Context) error {
		if g.smsc != nil {
			g.wg.Add(1)
			go func() { defer g.wg.Done(); g.smsc.run(ctx) }()
		}
		g.wg.Add(3)
		go func() {
			defer g.wg.Done()
			if err := g.parts.watch(ctx); err != nil {
				g.log.Error().Err(err).Msg("reassembly index stopped")
			}
		}()
		go func() { defer g.wg.Done(); g.expireLoop(ctx) }()
		go func() { defer g.wg.Done(); g.acceptLoop(ctx) }()
		g.log.Info().Str("addr", g.ln.Addr().String()).Str("smsc", g.cfg.SMSC.Addr).Msg("SMPP server serving")
		<-ctx.Done()
		g.ln.Close()
		g.mu.Lock()
		for s := range g.sessions {
			s.shutdown()
		}
		g.mu.Unlock()
		g.wg.Wait()
		g.queue.stopAll()
		return nil
	})
}

func (g *Gateway) acceptLoop(ctx context.Context) {
	for {
		conn, err := g.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			g.log.Warn().Err(err).Msg("accept")
			time.Sleep(50 * time.Millisecond)
			continue
		}
		g.mu.Lock()
		full := len(g.sessions) >= g.cfg.MaxSessions
		var s *session
		if !full {
			s = newSession(g, conn)
			g.sessions[s] = struct{}{}
			g.wg.Add(1)
		}
		g.mu.Unlock()
		if full {
			g.log.Warn().Str("remote", conn.RemoteAddr().String()).Msg("too many SMPP sessions; connection refused")
			conn.Close()
			continue
		}
		go func() {
			defer g.wg.Done()
			s.serve(ctx)
			g.mu.Lock()
			delete(g.sessions, s)
			g.mu.Unlock()
		}()
	}
}

// expireLoop delivers concatenated messages whose parts stopped coming,
// marked as partial (never silently dropped, never twice), and retries
// reassembled messages the fabric refused for now.
func (g *Gateway) expireLoop(ctx context.Context) {
	tick := min(time.Second, g.cfg.ReassemblyTimeout/4)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for key, d := range g.parts.expired(ctx, now) {
				g.wg.Add(1)
				go func() { defer g.wg.Done(); g.sendClaimed(ctx, key, d) }()
			}
		}
	}
}

// Deliver implements kit.Medium: a message for a phone number or an
// application. An application (a client that binds over SMPP, or whose
// profile says "sms.via": "smpp") gets it as deliver_sm when it is bound:
// the message waits in JetStream and Deliver reports transferred; the
// outcome follows with Kit.Ack. Other numbers go to the SMS centre.
// Without a centre they are UNREACHABLE: permanent, since no retry makes a
// centre appear (docs/SMS.md, "Status codes"), unlike NO_ROUTE.
func (g *Gateway) Deliver(ctx context.Context, d *kit.Delivery) (string, error) {
	text, err := g.deliveryText(d)
	if err != nil {
		return "", err
	}
	rcpt := d.Routed.Recipient
	via, err := g.via(ctx, d)
	if err != nil {
		// Could not look whether the recipient is an application: try
		// again later rather than fail the message as unreachable.
		return "", schemas.Errorf(schemas.CodeBusy, err, "SMS application state")
	}
	switch via {
	case viaApp:
		return g.queue.enqueueMT(ctx, rcpt, d, text)
	case viaSMSC:
		return g.smsc.deliver(ctx, d, text)
	}
	if rcpt == "" {
		return "", schemas.Errorf(schemas.CodeUnreachable, nil,
			"no SMS centre configured for "+d.Routed.Dest.Address+", a number no client owns")
	}
	return "", schemas.Errorf(schemas.CodeUnreachable, nil,
		"no SMS centre configured, and client "+rcpt+" ("+d.Routed.Dest.Address+") has never bound as an SMPP application to receive")
}

type route int

const (
	viaNone route = iota
	viaApp
	viaSMSC
)

// via decides where a message for this gateway goes: the recipient's
// profile option "sms.via" ("smpp" or "smsc") first, then an application
// that has bound as the recipient before, then the SMS centre. An error
// means the application store could not be read.
//
// An application that has never bound is known here only by "sms.via":
// "smpp": the gateway cannot see a profile's smpp credential, which the
// brokers keep (docs/SMS.md, "Applications that have not bound yet").
func (g *Gateway) via(ctx context.Context, d *kit.Delivery) (route, error) {
	rcpt := d.Routed.Recipient
	switch strings.ToLower(d.Routed.Options["sms.via"]) {
	case "smpp", "esme", "app":
		if rcpt != "" {
			return viaApp, nil
		}
	case "smsc":
		if g.smsc != nil {
			return viaSMSC, nil
		}
	}
	if rcpt != "" {
		app, err := g.store.isApp(ctx, rcpt)
		if err != nil {
			return viaNone, err
		}
		if app {
			return viaApp, nil
		}
	}
	if g.smsc != nil {
		return viaSMSC, nil
	}
	return viaNone, nil
}

// deliveryText returns the text to send for a delivery: the subject (if
// any) on its own line, then the body.
func (g *Gateway) deliveryText(d *kit.Delivery) (string, error) {
	if t := strings.ToLower(strings.TrimSpace(d.Type)); t != "" && !strings.HasPrefix(t, "text/plain") {
		return "", schemas.Errorf(schemas.CodeUnsupported, nil, "content type "+d.Type)
	}
	text := strings.ToValidUTF8(string(d.Content), "\uFFFD")
	if s := d.Routed.IMI.Subject; s != "" {
		text = s + "\n" + text
	}
	return text, nil
}

// Notify implements kit.Medium: a delivery receipt for an application
// that submitted the message and asked for one in registered_delivery
// (SMPP 3.4 §5.2.17). The receipt waits in JetStream until the
// application is bound as receiver or transceiver.
func (g *Gateway) Notify(ctx context.Context, ev *schemas.StatusEvent) error {
	if ev.From.Medium != schemas.MediumSMS || ev.From.Client == "" || ev.Meta["sms.message_id"] == "" {
		return nil // not from an application of ours (e.g. a mobile-originated message)
	}
	r, ok := receiptFor(ev, time.Now())
	if !ok {
		return nil
	}
	return g.queue.enqueueReceipt(ctx, ev.From.Client, ev, r)
}
