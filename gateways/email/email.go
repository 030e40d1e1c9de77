// Package email is the UIMS e-mail gateway (patent fig. 1: the e-mail
// medium). Towards the mail world it behaves like a well-run mail server;
// towards the fabric it is a gateway on the kit like any other:
//
//   - Inbound (RFC 5321 with github.com/emersion/go-smtp): mail only for the
//     addresses of known clients, never relaying (RFC 5321 §3.6.2 and the
//     relay tricks refused by mailaddr), SIZE (RFC 1870), STARTTLS (RFC
//     3207) when a certificate is configured, DSN parameters (RFC 3461).
//     The final 250 is given only after the destination gateway took the
//     message (one kit.Send per recipient); a temporary failure answers
//     451 so that the sending MTA retries with the same message ids. Only
//     <CRLF>.<CRLF> ends the data, and data with a bare CR or LF is
//     refused (SMTP smuggling, RFC 5321 §2.3.8).
//   - Submission (RFC 6409 style): AUTH PLAIN (RFC 4954, RFC 4616) over TLS
//     or loopback with the client's SMTP credentials; an authenticated
//     client sends as itself to any address (client id, phone number,
//     outside e-mail address).
//   - Outbound: messages for outside addresses (or clients who prefer
//     e-mail) are composed (RFC 5322, MIME) and queued durably in a
//     JetStream stream, then delivered through a smarthost with retries and
//     backoff (RFC 5321 §4.5.4.1); the outcome is acknowledged to the
//     brokers. A bounce (RFC 3464 DSN) that arrives later becomes a
//     non-delivery report for the original message.
//   - Receipts: delivery and non-delivery notices (RFC 3464, in a
//     multipart/report, RFC 6522) and read notices (RFC 8098) go back to
//     e-mail senders, as the sender's profile (or, for outside senders, the
//     RFC 3461 NOTIFY parameter and the Disposition-Notification-To field)
//     asks.
//
// MIME conversion lives in the subpackage mailmsg, envelope address checks
// in mailaddr.
package email

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/uims/uims/gateways/email/mailmsg"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/kit/authlimit"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// Config configures the e-mail gateway. Zero fields take the defaults named
// in their comments.
type Config struct {
	// Gateway is the party id (MIAP key owner); default "email".
	Gateway string
	// Addr is the SMTP listen address; default 127.0.0.1:2525 (uims run:
	// UIMS_SMTP_ADDR). Port 0 picks a free one (see Gateway.Addr).
	Addr string
	// Domains are the local domains: mail for them is accepted for known
	// clients, everything else is relaying and refused. A client is
	// reachable at its e-mail address and at <client id>@<any local domain>.
	Domains []string
	// Hostname is the name in the SMTP greeting, in Message-IDs and in
	// Reporting-MTA; default the first local domain, else "localhost".
	Hostname string

	// Relay is the smarthost (host:port) for outside addresses (uims run:
	// UIMS_SMTP_RELAY). Empty: mail to outside addresses fails at once with
	// the reason "no SMTP relay configured for outside addresses".
	Relay string
	// RelayUser and RelayPassword, if set, authenticate to the smarthost
	// with AUTH PLAIN, which is only sent over TLS or to a loopback relay.
	RelayUser, RelayPassword string
	// RelayTLS configures STARTTLS to the smarthost (used when the relay
	// offers it); default verifies the relay's host name.
	RelayTLS *tls.Config
	// RelayNoTLS turns STARTTLS to the smarthost off.
	RelayNoTLS bool
	// Retry is the wait before each further delivery attempt (the last
	// value repeats); default 1m, 5m, 15m, 30m, 1h.
	Retry []time.Duration
	// GiveUp is how long an outbound message is retried before it is
	// reported as failed (RFC 5321 §4.5.4.1); default 20 h, below the
	// brokers' 24 h delivery deadline.
	GiveUp time.Duration
	// NoReadRequests stops asking recipients' mail programs for read
	// notices (Disposition-Notification-To, RFC 8098) when the sender wants
	// read receipts.
	NoReadRequests bool
	// Workers bounds concurrent outbound SMTP transactions; default 4.
	Workers int

	// MaxSize is the largest accepted message (RFC 1870 SIZE); default
	// 25 MiB.
	MaxSize int64
	// MaxRecipients bounds RCPT commands per message; default 100.
	MaxRecipients int
	// MaxConnections bounds concurrent SMTP connections (each may buffer
	// a message of MaxSize); a client beyond it is answered "421 4.3.2 too
	// many connections, try again later" at connect. Default 100.
	MaxConnections int
	// MaxPerIP bounds concurrent SMTP connections from one client address
	// (an IPv6 /64); a client beyond it is answered "421 4.7.0 too many
	// connections from your address" at connect. Default 10 (uims run:
	// UIMS_SMTP_MAX_PER_IP).
	MaxPerIP int
	// PreMailTimeout bounds the wait for each command until the client
	// has authenticated or a MAIL command was accepted, and four of it the
	// whole of that phase; then the connection gets "421 4.4.2 Idle
	// timeout" and is closed, so idle connections cannot hold the slots.
	// Default 30 s.
	PreMailTimeout time.Duration
	// AuthPerUser and AuthPerAddr lock out AUTH for a user name and for a
	// client address after failures (authlimit.Policy); meanwhile AUTH is
	// answered 454 4.7.0 without a check, even with the right password.
	// Default 5 failures a minute lock a user out for 5 minutes, 20 an
	// address.
	AuthPerUser, AuthPerAddr authlimit.Policy
	// Limits bounds MIME parsing (depth, parts, headers); MaxBytes is
	// always MaxSize.
	Limits mailmsg.Limits
	// TLS, when set, enables STARTTLS on the listener (RFC 3207).
	TLS *tls.Config
	// SendTimeout bounds the hand-over of one recipient's message to the
	// fabric; default 30 s.
	SendTimeout time.Duration
	// ReadTimeout and WriteTimeout bound SMTP reads and writes; default
	// 5 min (RFC 5321 §4.5.3.2) and 1 min.
	ReadTimeout, WriteTimeout time.Duration
	// BounceLocal is the local part of the envelope sender of outgoing
	// mail; bounces come back to <BounceLocal>+<message id>@<first local
	// domain>. Default "bounces".
	BounceLocal string
	// NoReply is the From address for senders that have no address of
	// their own on e-mail; default noreply@<first local domain>.
	NoReply string

	// Kit configures the gateway kit (mode, timeouts); Gateway, Medium and
	// Reach are set from this Config.
	Kit kit.Config
}

func (c *Config) setDefaults() error {
	if c.Gateway == "" {
		c.Gateway = schemas.MediumEmail
	}
	if c.Addr == "" {
		c.Addr = "127.0.0.1:2525"
	}
	var doms []string
	for _, d := range c.Domains {
		d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
		if d == "" {
			continue
		}
		if strings.Trim(d, "abcdefghijklmnopqrstuvwxyz0123456789.-") != "" {
			return fmt.Errorf("email: invalid local domain %q", d)
		}
		doms = append(doms, d)
	}
	c.Domains = doms
	if c.Hostname == "" {
		c.Hostname = "localhost"
		if len(c.Domains) > 0 {
			c.Hostname = c.Domains[0]
		}
	}
	if strings.Trim(c.Hostname, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") != "" {
		return fmt.Errorf("email: invalid host name %q", c.Hostname)
	}
	if len(c.Retry) == 0 {
		c.Retry = []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour}
	}
	if c.GiveUp == 0 {
		c.GiveUp = 20 * time.Hour
	}
	if c.Workers == 0 {
		c.Workers = 4
	}
	if c.MaxSize == 0 {
		c.MaxSize = 25 << 20
	}
	if c.MaxSize < 0 {
		return fmt.Errorf("email: MaxSize %d", c.MaxSize)
	}
	if c.MaxRecipients == 0 {
		c.MaxRecipients = 100
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = 100
	}
	if c.MaxPerIP == 0 {
		c.MaxPerIP = 10
	}
	if c.MaxPerIP < 0 || c.MaxConnections < 0 {
		return fmt.Errorf("email: MaxPerIP and MaxConnections must be positive (UIMS_SMTP_MAX_PER_IP)")
	}
	if c.PreMailTimeout == 0 {
		c.PreMailTimeout = 30 * time.Second
	}
	if c.AuthPerUser.Failures == 0 {
		c.AuthPerUser = authlimit.Policy{Failures: 5, Window: time.Minute, Lockout: 5 * time.Minute}
	}
	if c.AuthPerAddr.Failures == 0 {
		c.AuthPerAddr = authlimit.Policy{Failures: 20, Window: time.Minute, Lockout: 5 * time.Minute}
	}
	c.Limits.MaxBytes = c.MaxSize
	if c.SendTimeout == 0 {
		c.SendTimeout = 30 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 5 * time.Minute
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = time.Minute
	}
	if c.BounceLocal == "" {
		c.BounceLocal = "bounces"
	}
	if c.NoReply == "" {
		c.NoReply = "noreply@" + c.mailDomain()
	}
	return nil
}

// mailDomain is the domain of the gateway's own addresses.
func (c *Config) mailDomain() string {
	if len(c.Domains) > 0 {
		return c.Domains[0]
	}
	return c.Hostname
}

// Gateway is one e-mail gateway instance. It implements kit.Medium.
type Gateway struct {
	cfg   Config
	nc    *nats.Conn
	kit   *kit.Kit
	store *store
	log   zerolog.Logger
	srv   *smtp.Server

	mu sync.Mutex
	ln *limitListener

	// authUser and authAddr limit failed AUTH per user name and address.
	authUser, authAddr *authlimit.Limiter

	// loopback decides whether a connection counts as local for AUTH
	// without TLS; tests replace it.
	loopback func(net.Addr) bool
}

// New returns an e-mail gateway. keys must hold the gateway's K1.
func New(cfg Config, nc *nats.Conn, keys *miap.Keyring, log zerolog.Logger) (*Gateway, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, nc: nc, log: log.With().Str("gateway", cfg.Gateway).Logger(), loopback: isLoopback,
		authUser: authlimit.New(cfg.AuthPerUser), authAddr: authlimit.New(cfg.AuthPerAddr)}
	kc := cfg.Kit
	kc.Gateway, kc.Medium = cfg.Gateway, schemas.MediumEmail
	// Every outside e-mail address: without a relay the gateway still
	// takes them, to fail them with a clear reason.
	kc.Reach = []string{"*"}
	k, err := kit.New(nc, keys, g, kc, log)
	if err != nil {
		return nil, err
	}
	g.kit = k
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("email: jetstream: %w", err)
	}
	g.store = &store{js: js, gw: cfg.Gateway}
	if len(cfg.Domains) == 0 {
		g.log.Warn().Msg("no local domains: inbound mail is refused as relaying")
	}
	return g, nil
}

// Kit returns the gateway's kit.
func (g *Gateway) Kit() *kit.Kit { return g.kit }

// Addr returns the bound SMTP address once Run is serving.
func (g *Gateway) Addr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln == nil {
		return g.cfg.Addr
	}
	return g.ln.Addr().String()
}

// Run serves SMTP, the kit and the outbound queue until ctx is done. Ready
// reports when it serves.
func (g *Gateway) Run(ctx context.Context, ready func()) error {
	if err := g.store.ensure(ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", g.cfg.Addr)
	if err != nil {
		return fmt.Errorf("email: listen: %w", err)
	}
	lln := newLimitListener(ln, &g.cfg, g.log)
	g.mu.Lock()
	g.ln = lln
	g.mu.Unlock()
	g.srv = g.newServer()

	defer ln.Close()
	err = g.kit.Serve(ctx, ready, func(ctx context.Context) error {
		outCtx, outCancel := context.WithCancel(context.Background())
		outDone := make(chan error, 1)
		go func() { outDone <- g.runOutbound(outCtx) }()
		drained := make(chan struct{})
		go func() {
			<-ctx.Done()
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			if err := g.srv.Shutdown(sctx); err != nil {
				g.srv.Close()
			}
			close(drained)
		}()
		g.log.Info().Str("addr", ln.Addr().String()).Strs("domains", g.cfg.Domains).Str("relay", g.cfg.Relay).
			Int("max_connections", g.cfg.MaxConnections).Int("max_per_ip", g.cfg.MaxPerIP).Msg("e-mail gateway listening")
		err := g.srv.Serve(lln)
		if errors.Is(err, smtp.ErrServerClosed) {
			<-drained
			err = nil
		}
		// the outbound queue stops after the SMTP server, before the kit
		outCancel()
		if oerr := <-outDone; err == nil {
			err = oerr
		}
		return err
	})
	if errors.Is(err, smtp.ErrServerClosed) {
		err = nil
	}
	return err
}

// newServer configures the go-smtp server.
func (g *Gateway) newServer() *smtp.Server {
	s := smtp.NewServer(&backend{g: g})
	s.Domain = g.cfg.Hostname
	s.MaxMessageBytes = g.cfg.MaxSize
	s.MaxRecipients = g.cfg.MaxRecipients
	s.ReadTimeout = g.cfg.ReadTimeout
	s.WriteTimeout = g.cfg.WriteTimeout
	s.TLSConfig = g.cfg.TLS
	// The session decides (TLS or loopback, RFC 4954 §4) and answers 538
	// otherwise; go-smtp's own check would hide AUTH on loopback.
	s.AllowInsecureAuth = true
	s.EnableDSN = true
	s.ErrorLog = logAdapter{g.log}
	return s
}

// logAdapter sends go-smtp's internal errors to zerolog.
type logAdapter struct{ log zerolog.Logger }

func (l logAdapter) Printf(format string, v ...any) {
	l.log.Warn().Msg("smtp: " + strings.TrimSpace(fmt.Sprintf(format, v...)))
}

func (l logAdapter) Println(v ...any) {
	l.log.Warn().Msg("smtp: " + strings.TrimSpace(fmt.Sprintln(v...)))
}

// isLoopback reports whether a remote address is on the loopback
// interface.
func isLoopback(a net.Addr) bool {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.IsLoopback()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
