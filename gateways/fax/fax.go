// Package fax is the UIMS fax gateway (patent fig. 1: the fax medium). It
// delivers faxes (content image/tiff, TIFF-F of RFC 3949; text reaches it
// converted by the processors) and takes faxes into the fabric, two ways:
//
//   - T.37 store-and-forward Internet fax (ITU-T T.37; RFC 3965 simple
//     mode, RFC 4142 full mode for the MDN): an outgoing fax is a MIME
//     message with the TIFF-F as image/tiff; application=faxbw (RFC 3965
//     §2.3, RFC 3302) to the offramp's mailbox FAX=+number@domain (RFC
//     3192, package faxaddr), sent with go-smtp's client to a relay with
//     DSN NOTIFY=SUCCESS,FAILURE and ENVID = the message id (RFC 3461). The
//     offramp's DSN (RFC 3464; "delivered" means the fax was sent, RFC
//     3965 §2.3.1) or MDN (RFC 8098, RFC 4142 §3) arrives on the gateway's
//     own SMTP listener and becomes the acknowledgement. Incoming faxes
//     from onramps (fax servers and printers that send mail) arrive on the
//     same listener: a TIFF attachment to <client or +number>@<domain>
//     from FAX=+number@onramp.
//   - HylaFAX (modems, T.38): jobs are submitted through hfaxd's client
//     protocol (package hylafax) and followed until done or failed; a
//     received fax is handed over by HylaFAX's faxrcvd hook (`uims fax
//     received`) through an authenticated HTTP POST on a loopback port.
//
// What waits for an outside party (a DSN, a HylaFAX job) is kept in the
// JetStream key-value bucket uims_fax (store.go). docs/FAX.md is the
// operator's guide.
package fax

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/uims/uims/gateways/fax/faxaddr"
	"github.com/uims/uims/gateways/fax/hylafax"
	"github.com/uims/uims/gateways/fax/tiffpages"
	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// ContentType is the one content type the gateway takes and makes.
const ContentType = "image/tiff"

// Config configures the fax gateway. Zero fields take the defaults in
// their comments.
type Config struct {
	// Gateway is the party id; default "fax".
	Gateway string
	// Domain is the gateway's own mail domain: onramps send faxes to
	// <client id or +number>@Domain, and DSNs come back to
	// fax-bounces@Domain. Default "localhost".
	Domain string

	// SMTPAddr is the inbound SMTP listener for onramps and DSNs/MDNs
	// (uims run: UIMS_FAX_SMTP_ADDR); empty: none.
	SMTPAddr string
	// T37Relay is the SMTP server (host:port) that takes outgoing T.37
	// mail (UIMS_FAX_T37_RELAY); T37Domain the offramp's mail domain: a
	// fax to +15550133 goes to FAX=+15550133@T37Domain
	// (UIMS_FAX_T37_DOMAIN). Both or neither.
	T37Relay, T37Domain string
	// HylaFAX is how to reach hfaxd (UIMS_FAX_HYLAFAX, host:port;
	// UIMS_FAX_HYLAFAX_USER). When set, outgoing faxes go through HylaFAX
	// rather than T.37.
	HylaFAX hylafax.Config
	// HylaFAXMaxDials bounds the dials of a job; default 3.
	HylaFAXMaxDials int
	// Poll is how often HylaFAX jobs are checked; default 5 s.
	Poll time.Duration

	// HookAddr is the loopback HTTP listener for HylaFAX's faxrcvd hook
	// (UIMS_FAX_HOOK_ADDR); HookToken the bearer token the hook must
	// present (UIMS_FAX_HOOK_TOKEN). Empty HookToken: no hook listener.
	HookAddr, HookToken string

	// MaxPages is the most pages a fax may have, both ways; default 100.
	MaxPages int
	// MaxSize is the largest fax mail or TIFF, in bytes; default 20 MiB.
	MaxSize int64
	// SendTimeout bounds the hand-over of a received fax to the fabric and
	// of an outgoing one to the relay; default 30 s.
	SendTimeout time.Duration

	// Kit configures the gateway kit; Gateway, Medium, Accepts and Reach
	// are set from this Config.
	Kit kit.Config
}

// Missing lists what keeps the gateway from reaching the fax world: empty
// when T.37 (relay and offramp domain) or HylaFAX is configured. uims run
// starts the gateway only then and logs the list otherwise.
func (c *Config) Missing() []string {
	if c.HylaFAX.Addr != "" || (c.T37Relay != "" && c.T37Domain != "") {
		return nil
	}
	var m []string
	if c.T37Relay == "" {
		m = append(m, "UIMS_FAX_T37_RELAY (T.37: the SMTP server for outgoing fax mail)")
	}
	if c.T37Domain == "" {
		m = append(m, "UIMS_FAX_T37_DOMAIN (T.37: the offramp's mail domain)")
	}
	return append(m, "UIMS_FAX_HYLAFAX (HylaFAX: hfaxd host:port)")
}

func (c *Config) setDefaults() error {
	if c.Gateway == "" {
		c.Gateway = schemas.MediumFax
	}
	if c.Domain == "" {
		c.Domain = "localhost"
	}
	c.Domain = strings.ToLower(c.Domain)
	if (c.T37Relay == "") != (c.T37Domain == "") {
		return errors.New("fax: T.37 needs both the relay (UIMS_FAX_T37_RELAY) and the offramp domain (UIMS_FAX_T37_DOMAIN)")
	}
	if c.HylaFAXMaxDials == 0 {
		c.HylaFAXMaxDials = 3
	}
	if c.Poll == 0 {
		c.Poll = 5 * time.Second
	}
	if c.HookAddr == "" {
		c.HookAddr = "127.0.0.1:4580"
	}
	if c.MaxPages == 0 {
		c.MaxPages = 100
	}
	if c.MaxSize == 0 {
		c.MaxSize = 20 << 20
	}
	if c.SendTimeout == 0 {
		c.SendTimeout = 30 * time.Second
	}
	return nil
}

// Gateway is one fax gateway instance; it implements kit.Medium and
// kit.Holder.
type Gateway struct {
	cfg   Config
	kit   *kit.Kit
	store *store
	hfax  *hylafax.Client // nil without HylaFAX
	log   zerolog.Logger

	mu       sync.Mutex
	smtpLn   net.Listener
	hookLn   net.Listener
	smtpSrv  *smtp.Server
	hookSrv  *http.Server
	follower sync.WaitGroup
}

// New returns a fax gateway. keys must hold the gateway's K1.
func New(cfg Config, nc *nats.Conn, keys *miap.Keyring, log zerolog.Logger) (*Gateway, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, log: log.With().Str("gateway", cfg.Gateway).Logger()}
	if cfg.HylaFAX.Addr != "" {
		c, err := hylafax.New(cfg.HylaFAX)
		if err != nil {
			return nil, fmt.Errorf("fax: %w", err)
		}
		g.hfax = c
	}
	kc := cfg.Kit
	kc.Gateway, kc.Medium = cfg.Gateway, schemas.MediumFax
	kc.Accepts = []string{ContentType}
	// every fax number: without a fax server the gateway still takes
	// them, to fail them with a clear reason
	kc.Reach = []string{"+"}
	k, err := kit.New(nc, keys, g, kc, log)
	if err != nil {
		return nil, err
	}
	g.kit = k
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("fax: jetstream: %w", err)
	}
	g.store = &store{js: js, gw: cfg.Gateway}
	return g, nil
}

// Kit returns the gateway's kit.
func (g *Gateway) Kit() *kit.Kit { return g.kit }

// Addr returns the inbound SMTP address once Run serves ("" without one).
func (g *Gateway) Addr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.smtpLn == nil {
		return g.cfg.SMTPAddr
	}
	return g.smtpLn.Addr().String()
}

// HookURL returns the URL of the faxrcvd hook once Run serves.
func (g *Gateway) HookURL() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.hookLn == nil {
		return ""
	}
	return "http://" + g.hookLn.Addr().String() + hookPath
}

// Run serves the kit, the SMTP listener, the hook and the HylaFAX job
// follower until ctx is done. ready reports when it serves.
func (g *Gateway) Run(ctx context.Context, ready func()) error {
	if err := g.store.ensure(ctx); err != nil {
		return err
	}
	if g.cfg.SMTPAddr != "" {
		ln, err := net.Listen("tcp", g.cfg.SMTPAddr)
		if err != nil {
			return fmt.Errorf("fax: SMTP listen: %w", err)
		}
		g.mu.Lock()
		g.smtpLn, g.smtpSrv = ln, g.newSMTPServer()
		g.mu.Unlock()
	}
	if g.cfg.HookToken != "" {
		ln, err := net.Listen("tcp", g.cfg.HookAddr)
		if err != nil {
			g.closeListeners()
			return fmt.Errorf("fax: hook listen: %w", err)
		}
		g.mu.Lock()
		g.hookLn = ln
		g.hookSrv = &http.Server{Handler: g.hookHandler(), ReadHeaderTimeout: 10 * time.Second}
		g.mu.Unlock()
	}
	return g.kit.Serve(ctx, ready, func(ctx context.Context) error {
		errc := make(chan error, 2)
		n := 0
		if g.smtpSrv != nil {
			n++
			go func() {
				err := g.smtpSrv.Serve(g.smtpLn)
				if errors.Is(err, smtp.ErrServerClosed) {
					err = nil
				}
				errc <- err
			}()
		}
		if g.hookSrv != nil {
			n++
			go func() {
				err := g.hookSrv.Serve(g.hookLn)
				if errors.Is(err, http.ErrServerClosed) {
					err = nil
				}
				errc <- err
			}()
		}
		if g.hfax != nil {
			g.follower.Add(1)
			go func() { defer g.follower.Done(); g.follow(ctx) }()
		}
		g.log.Info().Str("smtp", g.Addr()).Str("t37_relay", g.cfg.T37Relay).Str("t37_domain", g.cfg.T37Domain).
			Str("hylafax", g.cfg.HylaFAX.Addr).Str("hook", g.HookURL()).Msg("fax gateway serving")
		var err error
		select {
		case <-ctx.Done():
		case err = <-errc:
			n--
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if g.smtpSrv != nil {
			if g.smtpSrv.Shutdown(sctx) != nil {
				g.smtpSrv.Close()
			}
		}
		if g.hookSrv != nil {
			g.hookSrv.Shutdown(sctx)
		}
		for ; n > 0; n-- {
			if e := <-errc; err == nil {
				err = e
			}
		}
		g.follower.Wait()
		return err
	})
}

func (g *Gateway) closeListeners() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.smtpLn != nil {
		g.smtpLn.Close()
	}
}

// checkFax validates a TIFF: its structure, its pages (1 to MaxPages) and
// its size. Errors are *schemas.Error (MALFORMED, TOO_LARGE).
func (g *Gateway) checkFax(b []byte) (int, error) {
	if int64(len(b)) > g.cfg.MaxSize {
		return 0, schemas.Errorf(schemas.CodeTooLarge, nil, fmt.Sprintf("the fax has %d bytes, the limit is %d", len(b), g.cfg.MaxSize))
	}
	n, err := tiffpages.Count(b, g.cfg.MaxPages)
	switch {
	case errors.Is(err, tiffpages.ErrTooManyPages):
		return 0, schemas.Errorf(schemas.CodeTooLarge, err, fmt.Sprintf("the fax has more than %d pages, the limit", g.cfg.MaxPages))
	case errors.Is(err, tiffpages.ErrNoPages):
		return 0, schemas.Errorf(schemas.CodeMalformed, err, "the fax has no pages")
	case err != nil:
		return 0, schemas.Errorf(schemas.CodeMalformed, err, "the fax is not a valid TIFF: "+err.Error())
	}
	return n, nil
}

// Deliver sends a fax (kit.Medium): through HylaFAX when it is set up,
// else by T.37 mail to the offramp, else it fails UNREACHABLE. It answers
// transferred: the outcome comes from the job follower or the offramp's
// DSN. A message id already submitted is not submitted again.
func (g *Gateway) Deliver(ctx context.Context, d *kit.Delivery) (string, error) {
	if mt, _, _ := strings.Cut(d.Type, ";"); strings.TrimSpace(strings.ToLower(mt)) != ContentType {
		return "", schemas.Errorf(schemas.CodeUnsupported, nil, "the fax gateway sends image/tiff only, not "+d.Type)
	}
	number, err := faxaddr.Number(d.Routed.Dest.Address)
	if err != nil {
		return "", schemas.Errorf(schemas.CodeUnknownRecipient, err, "not a fax number: "+d.Routed.Dest.Address)
	}
	rec, err := g.store.getOut(ctx, d.Ref.MsgID)
	if err != nil {
		return "", schemas.Errorf(schemas.CodeStoreUnavailable, err, "")
	}
	if rec != nil {
		return schemas.StatusTransferred, nil // a retry: already submitted
	}
	pages, err := g.checkFax(d.Content)
	if err != nil {
		return "", err
	}
	switch {
	case g.hfax != nil:
		return g.deliverHylaFAX(ctx, d, number, pages)
	case g.cfg.T37Relay != "":
		return g.deliverT37(ctx, d, number, pages)
	}
	return "", schemas.Errorf(schemas.CodeUnreachable, nil, "no fax server configured: set UIMS_FAX_HYLAFAX or UIMS_FAX_T37_RELAY and UIMS_FAX_T37_DOMAIN")
}

// Notify is a status for a message a fax sender sent. A fax machine has no
// way to take a receipt back, so it is logged only (docs/FAX.md).
func (g *Gateway) Notify(ctx context.Context, ev *schemas.StatusEvent) error {
	g.log.Info().Str("msg_id", ev.MsgID).Str("status", ev.Status).Str("code", ev.Code).Str("reason", ev.Reason).
		Msg("status of a received fax (no receipt channel back to a fax machine)")
	return nil
}

// Held tells the brokers whether the gateway holds a message (kit.Holder).
func (g *Gateway) Held(ctx context.Context, q *schemas.HeldQuery) (*kit.AckRef, error) {
	rec, err := g.store.getOut(ctx, q.MsgID)
	if err != nil || rec == nil {
		return nil, err
	}
	return &rec.Ref, nil
}
