// Package ops is the operator view: it watches the whole fabric through
// trace events and heartbeats, and serves what it sees to operators (a page,
// a JSON API and Prometheus metrics).
//
// It is a component of its own (uims ops, and a part of uims run): it meets
// the others only on NATS subjects and schemas types. It connects as the
// observer party (docs/SECURITY.md: it reads uims.> and the service
// listings, publishes nothing on uims.>), and keeps the messages' timelines
// in the JetStream key-value bucket uims_ops, so that its instances share
// them and a restarted instance still shows them (store.go, docs/OPS.md).
package ops

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/uims/uims/schemas"
	"github.com/uims/uims/webui"
)

//go:embed static
var static embed.FS

// DefaultAddr is where uims ops listens unless told otherwise (UIMS_OPS_ADDR).
const DefaultAddr = "127.0.0.1:8081"

// Config configures the operator view.
type Config struct {
	// Addr is the HTTP listen address; default DefaultAddr.
	Addr string
	// TLS, if set, makes the listener serve HTTPS only.
	TLS *tls.Config
	// Token is the operator token (a bearer token); empty: the operator API
	// answers 404 (the page and /metrics are still served).
	Token string
	// Metrics is where the fabric-wide metrics are registered and what
	// GET /metrics serves; nil: a registry of its own with the Go and
	// process collectors. Never the global default registry.
	Metrics *prometheus.Registry
	// Observer bounds the observer's memory and names its bucket.
	Observer ObserverConfig
	// AuditKeys are the brokers' public audit keys by kid
	// (miap.Keyring.AuditPublicKeys): a message's timeline then shows the
	// verified state of its audit chain (audit.go). Nil: not shown.
	AuditKeys map[string]ed25519.PublicKey
}

// Server is one instance of the operator view.
type Server struct {
	cfg      Config
	obs      *Observer
	usage    *usageBook
	gatherer prometheus.Gatherer
	httpm    *httpMetrics
	log      zerolog.Logger
	ln       net.Listener
	js       jetstream.JetStream // reads the audit stream (audit.go)
}

// New returns an operator view that watches the fabric through nc, which
// should be the observer's identity (ops): no other role may read the
// trace events.
func New(cfg Config, nc *nats.Conn, log zerolog.Logger) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if nc == nil {
		return nil, errors.New("ops: no NATS connection")
	}
	reg := cfg.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	log = log.With().Str("component", "ops").Logger()
	s := &Server{cfg: cfg, gatherer: reg, httpm: newHTTPMetrics(reg), log: log}
	s.obs = NewObserver(nc, newFabricMetrics(reg), cfg.Observer, log)
	s.usage = newUsageBook(s.obs.cfg.Now)
	if cfg.AuditKeys != nil {
		js, err := jetstream.New(nc)
		if err != nil {
			return nil, fmt.Errorf("ops: jetstream: %w", err)
		}
		s.js = js
	}
	return s, nil
}

// Observer returns the server's observer.
func (s *Server) Observer() *Observer { return s.obs }

// Addr returns the bound HTTP address once Run is serving.
func (s *Server) Addr() string {
	if s.ln == nil {
		return s.cfg.Addr
	}
	return s.ln.Addr().String()
}

// Run watches the fabric and serves HTTP until ctx is done. ready, if not
// nil, is called once the observer is subscribed and the listener is open.
func (s *Server) Run(ctx context.Context, ready func()) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("ops: listen: %w", err)
	}
	s.ln = ln
	octx, cancel := context.WithCancel(ctx)
	defer cancel()
	obsReady := make(chan struct{})
	obsDone := make(chan error, 1)
	go func() { obsDone <- s.obs.Run(octx, func() { close(obsReady) }) }()
	usageDone := make(chan struct{})
	go func() { defer close(usageDone); s.usage.follow(octx, s.obs.nc, s.log) }()
	defer func() { cancel(); <-usageDone }()
	select {
	case <-obsReady:
	case err := <-obsDone:
		ln.Close()
		return err
	case <-ctx.Done():
		ln.Close()
		<-obsDone
		return nil
	}
	// a copy: net/http adds its protocols to the configuration, which the
	// caller may share with another server (uims run: the web gateway's)
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, TLSConfig: s.cfg.TLS.Clone()}
	srvDone := make(chan error, 1)
	go func() {
		if s.cfg.TLS != nil {
			srvDone <- srv.ServeTLS(ln, "", "") // certificates from TLSConfig
		} else {
			srvDone <- srv.Serve(ln)
		}
	}()
	s.log.Info().Str("addr", ln.Addr().String()).Bool("tls", s.cfg.TLS != nil).Bool("token", s.cfg.Token != "").Msg("operator view listening")
	if ready != nil {
		ready()
	}
	select {
	case <-ctx.Done():
	case err = <-srvDone:
	case err = <-obsDone:
		obsDone <- err
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	srv.Shutdown(sctx)
	cancel()
	if oerr := <-obsDone; err == nil {
		err = oerr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// The operator view's data, under /ops/api/, behind the operator token of
// Config.Token (a bearer token, or ?access_token= for the event stream,
// since EventSource cannot set headers):
//
//	GET /ops/api/fabric                 the live picture: nodes, instances, edges with rates
//	GET /ops/api/stats?step=10          throughput and latency p50/p99 over the last minutes
//	GET /ops/api/transactions?q=&limit= recent transactions, searchable by message id or client
//	GET /ops/api/messages/{id}          one message's MIAP timeline
//	GET /ops/api/events?limit=          the latest trace events of any message
//	GET /ops/api/usage?day=&q=&limit=   usage per client and medium on a UTC day, from the accounting records (usage.go)
//	GET /ops/api/stream                 Server-Sent Events: a "snapshot" (fabric, stats, version) every second
//
// The page is /ops.html (and /), static assets; /metrics is Prometheus.

// Handler returns the operator view's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metricsHandler(s.gatherer))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	mux.HandleFunc("GET /ops/api/fabric", s.auth(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.obs.Fabric())
	}))
	mux.HandleFunc("GET /ops/api/stats", s.auth(func(w http.ResponseWriter, r *http.Request) {
		step, _ := strconv.Atoi(r.URL.Query().Get("step"))
		writeJSON(w, http.StatusOK, s.obs.Stats(min(max(step, 1), 60)))
	}))
	mux.HandleFunc("GET /ops/api/transactions", s.auth(func(w http.ResponseWriter, r *http.Request) {
		limit := 50
		if n, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && n > 0 {
			limit = min(n, 1000)
		}
		writeJSON(w, http.StatusOK, map[string]any{"transactions": s.obs.Transactions(r.URL.Query().Get("q"), limit), "version": s.obs.Version()})
	}))
	mux.HandleFunc("GET /ops/api/messages/{id}", s.auth(func(w http.ResponseWriter, r *http.Request) {
		id := strings.ToLower(r.PathValue("id"))
		if id == "" || len(id) > 128 {
			writeError(w, http.StatusBadRequest, schemas.CodeMalformed, "bad message id")
			return
		}
		tl, ok := s.obs.Timeline(r.Context(), id)
		if !ok {
			writeError(w, http.StatusNotFound, schemas.CodeUnknownTx, "no trace events and no transaction for this message")
			return
		}
		if s.js != nil {
			var last int64
			if schemas.Terminal(tl.State) {
				// read to a minute past its last step (a later read
				// receipt is a step of the timeline too)
				last = tl.Last
			}
			tl.Audit = s.auditOf(r.Context(), tl.MsgID, tl.First, last)
		}
		writeJSON(w, http.StatusOK, tl)
	}))
	mux.HandleFunc("GET /ops/api/events", s.auth(func(w http.ResponseWriter, r *http.Request) {
		limit := 100
		if n, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && n > 0 {
			limit = n
		}
		writeJSON(w, http.StatusOK, map[string]any{"events": s.obs.Recent(limit)})
	}))
	mux.HandleFunc("GET /ops/api/usage", s.auth(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		day := q.Get("day")
		if _, err := time.Parse(time.DateOnly, day); day != "" && err != nil {
			writeError(w, http.StatusBadRequest, schemas.CodeMalformed, "day must be YYYY-MM-DD")
			return
		}
		limit := 100
		if n, err := strconv.Atoi(q.Get("limit")); err == nil && n > 0 {
			limit = min(n, 1000)
		}
		writeJSON(w, http.StatusOK, s.usage.view(day, q.Get("q"), limit))
	}))
	mux.HandleFunc("GET /ops/api/stream", s.authFrom(true, s.stream))
	sub, _ := fs.Sub(static, "static")
	files := http.FileServerFS(sub)
	mux.Handle("GET /{$}", http.RedirectHandler("/ops.html", http.StatusFound))
	mux.Handle("GET /", files)
	mux.Handle("GET "+webui.BasePath, webui.Base()) // the rules both pages share
	return s.httpm.instrument(mux)
}

// auth checks the operator token of the Authorization header. Without a
// configured token the operator API is off.
func (s *Server) auth(h http.HandlerFunc) http.HandlerFunc { return s.authFrom(false, h) }

// authFrom is auth; with urlToken (the event stream: EventSource cannot set
// headers) the token may come as ?access_token=, otherwise a token in the
// URL is refused (URLs end up in logs and browser histories).
func (s *Server) authFrom(urlToken bool, h http.HandlerFunc) http.HandlerFunc {
	want := sha256.Sum256([]byte(s.cfg.Token))
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if s.cfg.Token == "" {
			writeError(w, http.StatusNotFound, schemas.CodeNotAllowed, "the operator view is off: no operator token is configured")
			return
		}
		q := r.URL.Query()
		if !urlToken && (q.Has("access_token") || q.Has("token")) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="uims-ops", error="invalid_request"`)
			writeError(w, http.StatusUnauthorized, schemas.CodeUnauthorized,
				"operator token in the URL refused: send it in the Authorization header (only GET /ops/api/stream takes ?access_token=)")
			return
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if urlToken && !ok {
			tok = q.Get("access_token")
		}
		got := sha256.Sum256([]byte(tok))
		if tok == "" || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="uims-ops"`)
			writeError(w, http.StatusUnauthorized, schemas.CodeUnauthorized, "missing or wrong operator token")
			return
		}
		h(w, r)
	}
}

// snapshot is what the operator stream sends every second.
type snapshot struct {
	Fabric  Fabric `json:"fabric"`
	Stats   Stats  `json:"stats"`
	Version uint64 `json:"version"`
}

func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, schemas.CodeInternal, "streaming unsupported")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, ": connected\n\n")
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		data, _ := json.Marshal(snapshot{Fabric: s.obs.Fabric(), Stats: s.obs.Stats(10), Version: s.obs.Version()})
		if _, err := fmt.Fprintf(w, "event: snapshot\ndata: %s\n\n", data); err != nil {
			return
		}
		fl.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
	}
}

// apiError is the JSON error body, as the web gateway's API writes it.
type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code schemas.Code, msg string) {
	writeJSON(w, status, apiError{Error: msg, Code: code.String()})
}
