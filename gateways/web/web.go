// Package web is the UIMS web gateway (patent: WWW medium): a JSON HTTP API
// with bearer tokens, a durable inbox per client in a JetStream stream,
// live events over Server-Sent Events, and the browser page served from
// embedded assets. It originates messages for web clients and receives
// messages for them through the gateway kit.
package web

import (
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/kit/authlimit"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

//go:embed static
var static embed.FS

// Accepts is what the web gateway takes as it is, by default: what a
// browser shows or saves. A fax (image/tiff, which browsers do not show)
// is not among them: the brokers route it through the processors' OCR,
// and the inbox gets its text with the pages as a PDF (docs/FAX.md).
// Nor is a voice mail (audio/wav): it goes speech2mixed, and the inbox
// gets its transcript with the recording attached (docs/VOICE.md).
func Accepts() []string {
	return []string{"text/*", "multipart/*", "message/*", "application/*", "image/png", "image/jpeg",
		"image/gif", "image/webp", "image/svg+xml", "audio/mpeg", "audio/ogg", "audio/webm", "audio/aac",
		"audio/flac", "audio/mp4", "video/*"}
}

// Config configures the web gateway.
type Config struct {
	// Gateway is the party id; default "web".
	Gateway string
	// Addr is the HTTP listen address; default 127.0.0.1:8080.
	Addr string
	// TLS, if set, makes the listener serve HTTPS only (HTTP/2 offered).
	TLS *tls.Config
	// Kit configures the gateway kit (mode, timeouts); Gateway and Medium
	// are set from this Config.
	Kit kit.Config
	// MaxBody bounds a JSON request body, and the fields of a
	// multipart/form-data one; default 2 MiB.
	MaxBody int64
	// MaxUpload bounds the files of one message sent as
	// multipart/form-data (upload.go): their bytes in all; default
	// DefaultMaxUpload (25 MiB, the e-mail gateway's SIZE). uims run:
	// UIMS_WEB_MAX_UPLOAD.
	MaxUpload int64
	// UploadDir is where uploads are encoded on their way in (removed
	// when the request ends); default os.TempDir().
	UploadDir string
	// Extra mounts more handlers by pattern (not /metrics).
	Extra map[string]http.Handler
	// Metrics is where the gateway registers its Prometheus collectors and
	// what GET /metrics serves; nil: a registry of its own with the Go and
	// process collectors. Never the global default registry.
	Metrics *prometheus.Registry
	// TokenTTL is how long the gateway reuses the brokers' answer for a
	// bearer token: a known token's client, and an unknown token's
	// refusal (so a token that becomes valid is accepted at most TokenTTL
	// after its profile is added). Each kind is kept for at most 10,000
	// tokens. Default 30 s.
	TokenTTL time.Duration
	// AuthPerAddr limits failed token lookups per client address (an IPv6
	// /64; behind a reverse proxy, the proxy's): once it is reached,
	// tokens the gateway does not know are answered 401 with Retry-After
	// without asking the brokers, whose every query costs a nonce in the
	// store. Default 20 failures within a minute lock an address out for
	// a minute.
	AuthPerAddr authlimit.Policy
	// InboxShards is the number of inbox streams (inbox.go); default
	// DefaultInboxShards. Every instance must use the same count: an
	// instance configured otherwise than the existing streams refuses to
	// start.
	InboxShards int
	// InboxEachWrite creates new inbox streams that fsync each write, as
	// before group commit (inbox.go); existing streams keep their mode.
	InboxEachWrite bool
}

// Gateway is one web gateway instance.
type Gateway struct {
	cfg   Config
	nc    *nats.Conn
	kit   *kit.Kit
	inbox *inbox
	log   zerolog.Logger
	srv   *http.Server
	ln    net.Listener

	// known and unknown cache the brokers' answers per token hash;
	// authAddr limits failed lookups per client address (Config.TokenTTL,
	// AuthPerAddr).
	known    *authlimit.Cache[*schemas.ClientInfo]
	unknown  *authlimit.Cache[struct{}]
	authAddr *authlimit.Limiter
	// lookups are the token lookups in flight, by token hash: concurrent
	// requests with one token wait for the same lookup.
	lookMu  sync.Mutex
	lookups map[string]*tokenLookup

	gatherer prometheus.Gatherer
	httpm    *httpMetrics
}

// New returns a web gateway. keys must hold the gateway's K1.
func New(cfg Config, nc *nats.Conn, keys *miap.Keyring, log zerolog.Logger) (*Gateway, error) {
	if cfg.Gateway == "" {
		cfg.Gateway = "web"
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8080"
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 2 << 20
	}
	if cfg.MaxUpload == 0 {
		cfg.MaxUpload = DefaultMaxUpload
	}
	if cfg.MaxUpload < 0 {
		return nil, fmt.Errorf("web: MaxUpload %d: want a positive size", cfg.MaxUpload)
	}
	if cfg.InboxShards <= 0 {
		cfg.InboxShards = DefaultInboxShards
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = 30 * time.Second
	}
	if cfg.AuthPerAddr.Failures == 0 {
		cfg.AuthPerAddr = authlimit.Policy{Failures: 20, Window: time.Minute, Lockout: time.Minute}
	}
	g := &Gateway{cfg: cfg, nc: nc, log: log.With().Str("gateway", cfg.Gateway).Logger(),
		known: authlimit.NewCache[*schemas.ClientInfo](maxTokens, cfg.TokenTTL), unknown: authlimit.NewCache[struct{}](maxTokens, cfg.TokenTTL),
		authAddr: authlimit.New(cfg.AuthPerAddr), lookups: map[string]*tokenLookup{}}
	kc := cfg.Kit
	kc.Gateway, kc.Medium = cfg.Gateway, schemas.MediumWeb
	if len(kc.Accepts) == 0 {
		kc.Accepts = Accepts()
	}
	k, err := kit.New(nc, keys, g, kc, log)
	if err != nil {
		return nil, err
	}
	g.kit = k
	reg := cfg.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	g.gatherer, g.httpm = reg, newHTTPMetrics(reg)
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("web: jetstream: %w", err)
	}
	g.inbox = &inbox{js: js, nc: nc, shards: cfg.InboxShards, eachWrite: cfg.InboxEachWrite, log: g.log}
	return g, nil
}

// Kit returns the gateway's kit.
func (g *Gateway) Kit() *kit.Kit { return g.kit }

// Addr returns the bound HTTP address once Run is serving.
func (g *Gateway) Addr() string {
	if g.ln == nil {
		return g.cfg.Addr
	}
	return g.ln.Addr().String()
}

// Run serves HTTP and the kit until ctx is done.
func (g *Gateway) Run(ctx context.Context, ready func()) error {
	if err := g.inbox.ensure(ctx); err != nil {
		return err
	}
	defer g.inbox.close()
	ln, err := net.Listen("tcp", g.cfg.Addr)
	if err != nil {
		return fmt.Errorf("web: listen: %w", err)
	}
	g.ln = ln
	g.srv = &http.Server{Handler: g.Handler(), ReadHeaderTimeout: 10 * time.Second, TLSConfig: g.cfg.TLS}
	defer ln.Close()
	err = g.kit.Serve(ctx, ready, func(ctx context.Context) error {
		drained := make(chan struct{})
		go func() {
			<-ctx.Done()
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			g.srv.Shutdown(sctx) // requests in flight finish, with the kit still up
			close(drained)
		}()
		g.log.Info().Str("addr", ln.Addr().String()).Bool("tls", g.cfg.TLS != nil).Msg("web gateway listening")
		var err error
		if g.cfg.TLS != nil {
			err = g.srv.ServeTLS(ln, "", "") // certificates from TLSConfig
		} else {
			err = g.srv.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			<-drained
		}
		return err
	})
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
