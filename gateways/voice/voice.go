// Package voice is the UIMS voice gateway (patent fig. 1: the voice
// medium). It is a SIP user agent (RFC 3261, on UDP and TCP, with
// github.com/emiago/sipgo) with its own RTP (RFC 3550; G.711 µ-law and
// A-law, RFC 3551; telephone events, RFC 4733) and SDP offer/answer
// (RFC 4566, RFC 3264) for one audio stream:
//
//   - mailbox: a call to a client's voice address (sip:bob@<Domain>) is
//     answered with a spoken greeting (espeak-ng, or a tone when it is
//     missing) and a beep, recorded until the caller hangs up, Silence or
//     MaxMessage, and the recording (audio/wav, 8 kHz mono) becomes a
//     message from the caller's SIP URI to that client (mailbox.go);
//   - OPTIONS are answered 200 with Allow and Accept; a request sipgo
//     cannot parse is answered 400 when enough of it can be read
//     (badreq.go); beyond MaxCalls an INVITE gets 486 Busy Here with
//     Retry-After; an INVITE for no client's address gets 404.
//
// docs/VOICE.md is the operator's guide.
package voice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// ContentType is what the gateway delivers and records: a WAV file
// (RIFF, PCM 16-bit, 8 kHz mono when it makes one).
const ContentType = "audio/wav"

// Config configures the voice gateway. Zero fields take the defaults in
// their comments.
type Config struct {
	// Gateway is the party id; default "voice".
	Gateway string
	// SIPAddr is the SIP listener, UDP and TCP on the same port (uims
	// run: UIMS_SIP_ADDR); default 127.0.0.1:5060. Port 0 picks one.
	SIPAddr string
	// Domain is the host of the mailbox addresses: a call to
	// sip:bob@<anything> reaches the client with the voice address
	// sip:bob@Domain (UIMS_SIP_DOMAIN); default the host of SIPAddr.
	Domain string
	// RTPPortMin and RTPPortMax bound the RTP ports (even ones are used);
	// default 10000 to 10999.
	RTPPortMin, RTPPortMax int
	// MaxCalls bounds concurrent calls, both ways; beyond it an INVITE is
	// answered 486 Busy Here with Retry-After. Default 16.
	MaxCalls int
	// MaxMessage bounds a recording; default 2 minutes.
	MaxMessage time.Duration
	// Silence ends a recording after this long without voice (or without
	// RTP); default 5 s.
	Silence time.Duration
	// Greeting is the mailbox's greeting; %s is the client's name (or
	// id). Default "You have reached %s. Leave a message after the tone."
	Greeting string
	// Espeak is the text-to-speech program for the greeting; default
	// "espeak-ng" on PATH. Missing: a tone-only greeting (logged).
	Espeak string
	// SendTimeout bounds the hand-over of a recording to the fabric;
	// default 30 s.
	SendTimeout time.Duration

	// Proxy is the outbound proxy or trunk (a SIP URI, "sip:pbx.example:5060";
	// UIMS_SIP_PROXY): every call out goes through it, and numbers are
	// called as sip:+number@<its host>. Without it, calls go straight to
	// the recipient's SIP URI and numbers cannot be called.
	Proxy string
	// Registrar, when set, is registered with (REGISTER, RFC 3261 §10;
	// UIMS_SIP_REGISTRAR) as User@Domain, refreshed before
	// RegisterExpiry (default 10 min) runs out, so that calls for that
	// account reach the mailbox.
	Registrar      string
	RegisterExpiry time.Duration
	// User and Password answer digest challenges (RFC 2617, RFC 8760 MD5)
	// of the registrar and of the proxy on calls out (UIMS_SIP_USER,
	// UIMS_SIP_PASSWORD). User is also the From of calls out (default the
	// party id).
	User, Password string
	// RingTimeout is how long a call out rings before it is given up
	// (profile option voice.ring); default 30 s.
	RingTimeout time.Duration
	// Retries and RetryInterval: a call out that is busy, not answered,
	// declined or hung up before the end is tried again (profile options
	// voice.retries, voice.retry_interval); default 2 times, 2 minutes
	// apart.
	Retries       int
	RetryInterval time.Duration
	// MaxPlay bounds the audio of a message to speak; longer is
	// TOO_LARGE. Default 5 minutes.
	MaxPlay time.Duration
	// Prompt is said after the message; PromptWait is how long a digit is
	// waited for after it. Defaults: "Press 1 to hear the message again.
	// Press 2 to confirm.", 6 s.
	Prompt     string
	PromptWait time.Duration

	// Kit configures the gateway kit; Gateway, Medium and Accepts are set
	// from this Config.
	Kit kit.Config
}

func (c *Config) setDefaults() error {
	if c.Gateway == "" {
		c.Gateway = schemas.MediumVoice
	}
	if c.SIPAddr == "" {
		c.SIPAddr = "127.0.0.1:5060"
	}
	host, _, err := net.SplitHostPort(c.SIPAddr)
	if err != nil {
		return fmt.Errorf("voice: SIP address %q: %w", c.SIPAddr, err)
	}
	if c.Domain == "" {
		c.Domain = host
	}
	if c.RTPPortMin == 0 && c.RTPPortMax == 0 {
		c.RTPPortMin, c.RTPPortMax = 10000, 10999
	}
	if c.RTPPortMin <= 0 || c.RTPPortMax > 65535 || c.RTPPortMax < c.RTPPortMin+1 {
		return fmt.Errorf("voice: RTP ports %d-%d", c.RTPPortMin, c.RTPPortMax)
	}
	if c.MaxCalls == 0 {
		c.MaxCalls = 16
	}
	if c.MaxMessage == 0 {
		c.MaxMessage = 2 * time.Minute
	}
	if c.Silence == 0 {
		c.Silence = 5 * time.Second
	}
	if c.Greeting == "" {
		c.Greeting = "You have reached %s. Leave a message after the tone."
	}
	if c.Espeak == "" {
		c.Espeak = "espeak-ng"
	}
	if c.SendTimeout == 0 {
		c.SendTimeout = 30 * time.Second
	}
	if c.RegisterExpiry == 0 {
		c.RegisterExpiry = 10 * time.Minute
	}
	if c.RingTimeout == 0 {
		c.RingTimeout = 30 * time.Second
	}
	if c.Retries == 0 {
		c.Retries = 2
	}
	if c.Retries < 0 || c.Retries > maxRetries {
		return fmt.Errorf("voice: retries %d outside 0 to %d", c.Retries, maxRetries)
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = 2 * time.Minute
	}
	if c.MaxPlay == 0 {
		c.MaxPlay = 5 * time.Minute
	}
	if c.Prompt == "" {
		c.Prompt = "Press 1 to hear the message again. Press 2 to confirm."
	}
	if c.PromptWait == 0 {
		c.PromptWait = 6 * time.Second
	}
	for _, u := range []string{c.Proxy, c.Registrar} {
		if u == "" {
			continue
		}
		if _, err := hostPort(u); err != nil {
			return err
		}
	}
	return nil
}

// Missing lists the tools the gateway looks for and did not find; it
// serves without them (a tone-only greeting without espeak-ng).
func (c *Config) Missing() []string {
	p := c.Espeak
	if p == "" {
		p = "espeak-ng"
	}
	if _, err := exec.LookPath(p); err != nil {
		return []string{p + " (text to speech for the mailbox greeting; a tone is played instead)"}
	}
	return nil
}

// Gateway is one voice gateway instance; it implements kit.Medium.
type Gateway struct {
	cfg   Config
	kit   *kit.Kit
	log   zerolog.Logger
	rtpIP netip.Addr

	slots     chan struct{} // one per call in progress, both ways
	ports     *portPool
	store     *store
	proxyAddr string // host:port calls out are sent to; "" straight

	speechMu sync.Mutex
	speech   map[string][]int16 // prompts spoken, by text

	mu         sync.Mutex
	udp        net.PacketConn
	tcp        net.Listener
	ua         *sipgo.UserAgent
	srv        *sipgo.Server
	client     *sipgo.Client
	dialogs    *sipgo.DialogServerCache
	outDialogs *sipgo.DialogClientCache
	runCtx     context.Context
	following  map[string]bool // calls out by message id
	calls      sync.WaitGroup  // calls and their hand-overs
	reg        registration

	stats Stats
}

// New returns a voice gateway. keys must hold the gateway's K1.
func New(cfg Config, nc *nats.Conn, keys *miap.Keyring, log zerolog.Logger) (*Gateway, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(cfg.SIPAddr)
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.IsUnspecified() {
		return nil, fmt.Errorf("voice: the SIP address must be an IP address to announce in SDP, not %q", host)
	}
	g := &Gateway{cfg: cfg, log: log.With().Str("gateway", cfg.Gateway).Logger(), rtpIP: ip,
		slots: make(chan struct{}, cfg.MaxCalls), ports: newPortPool(cfg.RTPPortMin, cfg.RTPPortMax),
		speech: map[string][]int16{}, following: map[string]bool{}}
	if cfg.Proxy != "" {
		g.proxyAddr, _ = hostPort(cfg.Proxy)
	}
	kc := cfg.Kit
	kc.Gateway, kc.Medium = cfg.Gateway, schemas.MediumVoice
	kc.Accepts = []string{ContentType}
	k, err := kit.New(nc, keys, g, kc, log)
	if err != nil {
		return nil, err
	}
	g.kit = k
	g.store = &store{js: k.JetStream(), gw: cfg.Gateway}
	return g, nil
}

// Kit returns the gateway's kit.
func (g *Gateway) Kit() *kit.Kit { return g.kit }

// Addr returns the SIP address (UDP and TCP) once Run serves.
func (g *Gateway) Addr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.udp == nil {
		return g.cfg.SIPAddr
	}
	return g.udp.LocalAddr().String()
}

// Run serves SIP until ctx is done, then ends the calls in progress and
// hands their recordings over before the kit drains.
func (g *Gateway) Run(ctx context.Context, ready func()) error {
	udp, tcp, err := listen(g.cfg.SIPAddr)
	if err != nil {
		return err
	}
	host, ps, _ := net.SplitHostPort(udp.LocalAddr().String())
	port, _ := strconv.Atoi(ps)
	slog := slog.New(slog.DiscardHandler)
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("UIMS voice gateway"), sipgo.WithUserAgentHostname(host))
	if err != nil {
		udp.Close()
		tcp.Close()
		return fmt.Errorf("voice: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(slog))
	if err != nil {
		return fmt.Errorf("voice: %w", err)
	}
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname(host), sipgo.WithClientPort(port), sipgo.WithClientLogger(slog))
	if err != nil {
		return fmt.Errorf("voice: %w", err)
	}
	contact := sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: g.cfg.Gateway, Host: host, Port: port}}
	g.mu.Lock()
	g.udp, g.tcp, g.ua, g.srv, g.client = &badRequestConn{PacketConn: udp, log: g.log, stats: &g.stats}, tcp, ua, srv, client
	g.dialogs = sipgo.NewDialogServerCache(client, contact)
	g.outDialogs = sipgo.NewDialogClientCache(client, contact)
	g.mu.Unlock()
	g.routes(srv)

	if err := g.store.ensure(ctx); err != nil {
		udp.Close()
		tcp.Close()
		ua.Close()
		return err
	}
	// set before the kit serves: a delivery may come before the SIP side
	// starts, and its call is placed under this context
	g.mu.Lock()
	g.runCtx = ctx
	g.mu.Unlock()
	return g.kit.Serve(ctx, ready, func(ctx context.Context) error {
		errc := make(chan error, 2)
		go func() { errc <- srv.ServeUDP(g.udp) }()
		go func() { errc <- srv.ServeTCP(tcp) }()
		g.resume(ctx)
		regDone := make(chan struct{})
		go func() { defer close(regDone); g.register(ctx, contact) }()
		g.log.Info().Str("sip", g.Addr()).Str("domain", g.cfg.Domain).Int("max_calls", g.cfg.MaxCalls).
			Strs("missing", g.cfg.Missing()).Msg("voice gateway serving")
		<-ctx.Done()
		g.calls.Wait() // calls end with ctx (BYE) and hand their recordings over
		<-regDone      // unregistered
		g.udp.Close()
		tcp.Close()
		ua.Close()
		for range 2 {
			if err := <-errc; err != nil && !errors.Is(err, net.ErrClosed) {
				g.log.Debug().Err(err).Msg("SIP listener")
			}
		}
		return nil
	})
}

// listen opens UDP and TCP on the same port.
func listen(addr string) (net.PacketConn, net.Listener, error) {
	for try := 0; ; try++ {
		udp, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("voice: SIP listen UDP: %w", err)
		}
		tcp, err := net.Listen("tcp", udp.LocalAddr().String())
		if err == nil {
			return udp, tcp, nil
		}
		udp.Close()
		if _, p, _ := net.SplitHostPort(addr); p != "0" || try > 10 {
			return nil, nil, fmt.Errorf("voice: SIP listen TCP: %w", err)
		}
	}
}

// Allowed are the methods the gateway answers (Allow header).
const Allowed = "INVITE, ACK, BYE, CANCEL, OPTIONS"

func (g *Gateway) routes(srv *sipgo.Server) {
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
		res.AppendHeader(sip.NewHeader("Allow", Allowed))
		res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
		res.AppendHeader(sip.NewHeader("Accept-Encoding", "identity"))
		res.AppendHeader(sip.NewHeader("Accept-Language", "en"))
		g.respond(tx, res)
	})
	srv.OnInvite(g.onInvite)
	srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {
		g.dialogs.ReadAck(req, tx) // an ACK for no dialog of ours is dropped (RFC 3261 §17.2.1)
	})
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := g.outDialogs.ReadBye(req, tx); err == nil {
			return // a call out, hung up by the callee
		}
		if err := g.dialogs.ReadBye(req, tx); err != nil {
			g.respond(tx, sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
		}
	})
}

func (g *Gateway) respond(tx sip.ServerTransaction, res *sip.Response) {
	if err := tx.Respond(res); err != nil {
		g.log.Debug().Err(err).Int("status", int(res.StatusCode)).Msg("SIP response not sent")
	}
}

// reject answers an INVITE with a final error (and a Retry-After when
// retry > 0).
func (g *Gateway) reject(req *sip.Request, tx sip.ServerTransaction, code int, reason, warning string, retry time.Duration) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if retry > 0 {
		res.AppendHeader(sip.NewHeader("Retry-After", strconv.Itoa(int(retry/time.Second))))
	}
	if warning != "" { // RFC 3261 §20.43: 399 = miscellaneous warning
		res.AppendHeader(sip.NewHeader("Warning", fmt.Sprintf("399 %s %q", g.cfg.Domain, warning)))
	}
	g.respond(tx, res)
}

// Notify is a status for a message a caller left. A caller has no
// channel back, so it is logged only.
func (g *Gateway) Notify(ctx context.Context, ev *schemas.StatusEvent) error {
	g.log.Info().Str("msg_id", ev.MsgID).Str("status", ev.Status).Str("code", ev.Code).Str("reason", ev.Reason).
		Msg("status of a voice message (no receipt channel back to a caller)")
	return nil
}

// Stats counts what the gateway refused; safe for concurrent use.
type Stats struct {
	mu                                           sync.Mutex
	Malformed, Busy, WrongPT, Recorded, CallsOut int
}

func (s *Stats) add(f *int) {
	s.mu.Lock()
	*f++
	s.mu.Unlock()
}

// Snapshot returns a copy of the counters.
func (g *Gateway) Snapshot() (malformed, busy, wrongPT, recorded int) {
	g.stats.mu.Lock()
	defer g.stats.mu.Unlock()
	return g.stats.Malformed, g.stats.Busy, g.stats.WrongPT, g.stats.Recorded
}
