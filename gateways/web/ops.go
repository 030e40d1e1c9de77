package web

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json"

	"github.com/uims/uims/schemas"
)

// The operator view's data, under /ops/api/, behind the operator token of
// Config.OperatorToken (a bearer token, or ?access_token= for the event
// stream, since EventSource cannot set headers):
//
//	GET /ops/api/fabric                 the live picture: nodes, instances, edges with rates
//	GET /ops/api/stats?step=10          throughput and latency p50/p99 over the last minutes
//	GET /ops/api/transactions?q=&limit= recent transactions, searchable by message id or client
//	GET /ops/api/messages/{id}          one message's MIAP timeline
//	GET /ops/api/events?limit=          the latest trace events of any message
//	GET /ops/api/stream                 Server-Sent Events: a "snapshot" (fabric, stats, version) every second
//
// The page itself is /ops.html, a static asset like the client page.

// mountOps adds the operator API and /metrics to mux.
func (g *Gateway) mountOps(mux *http.ServeMux) {
	if g.gatherer != nil {
		mux.Handle("GET /metrics", metricsHandler(g.gatherer))
	}
	mux.HandleFunc("GET /ops/api/fabric", g.opsAuth(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, g.obs.Fabric())
	}))
	mux.HandleFunc("GET /ops/api/stats", g.opsAuth(func(w http.ResponseWriter, r *http.Request) {
		step, _ := strconv.Atoi(r.URL.Query().Get("step"))
		writeJSON(w, http.StatusOK, g.obs.Stats(min(max(step, 1), 60)))
	}))
	mux.HandleFunc("GET /ops/api/transactions", g.opsAuth(func(w http.ResponseWriter, r *http.Request) {
		limit := 50
		if n, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && n > 0 {
			limit = min(n, 1000)
		}
		writeJSON(w, http.StatusOK, map[string]any{"transactions": g.obs.Transactions(r.URL.Query().Get("q"), limit), "version": g.obs.Version()})
	}))
	mux.HandleFunc("GET /ops/api/messages/{id}", g.opsAuth(func(w http.ResponseWriter, r *http.Request) {
		id := strings.ToLower(r.PathValue("id"))
		if id == "" || len(id) > 128 {
			writeError(w, http.StatusBadRequest, schemas.CodeMalformed, "bad message id")
			return
		}
		tl, ok := g.obs.Timeline(r.Context(), id)
		if !ok {
			writeError(w, http.StatusNotFound, schemas.CodeUnknownTx, "no trace events and no transaction for this message")
			return
		}
		writeJSON(w, http.StatusOK, tl)
	}))
	mux.HandleFunc("GET /ops/api/events", g.opsAuth(func(w http.ResponseWriter, r *http.Request) {
		limit := 100
		if n, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && n > 0 {
			limit = n
		}
		writeJSON(w, http.StatusOK, map[string]any{"events": g.obs.Recent(limit)})
	}))
	mux.HandleFunc("GET /ops/api/stream", g.opsAuthFrom(true, g.opsStream))
}

// opsAuth checks the operator token of the Authorization header. Without a
// configured token the operator view is off.
func (g *Gateway) opsAuth(h http.HandlerFunc) http.HandlerFunc { return g.opsAuthFrom(false, h) }

// opsAuthFrom is opsAuth; with urlToken (the event stream: EventSource
// cannot set headers) the token may come as ?access_token=, otherwise a
// token in the URL is refused.
func (g *Gateway) opsAuthFrom(urlToken bool, h http.HandlerFunc) http.HandlerFunc {
	want := sha256.Sum256([]byte(g.cfg.OperatorToken))
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if g.cfg.OperatorToken == "" || g.obs == nil {
			writeError(w, http.StatusNotFound, schemas.CodeNotAllowed, "the operator view is off: no operator token is configured")
			return
		}
		if !urlToken && tokenInURL(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="uims-ops", error="invalid_request"`)
			writeError(w, http.StatusUnauthorized, schemas.CodeUnauthorized,
				"operator token in the URL refused: send it in the Authorization header (only GET /ops/api/stream takes ?access_token=)")
			return
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if urlToken && !ok {
			tok = r.URL.Query().Get("access_token")
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

// opsSnapshot is what the operator stream sends every second.
type opsSnapshot struct {
	Fabric  Fabric `json:"fabric"`
	Stats   Stats  `json:"stats"`
	Version uint64 `json:"version"`
}

func (g *Gateway) opsStream(w http.ResponseWriter, r *http.Request) {
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
		data, _ := json.Marshal(opsSnapshot{Fabric: g.obs.Fabric(), Stats: g.obs.Stats(10), Version: g.obs.Version()})
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
