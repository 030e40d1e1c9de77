// Package httpmetrics is what the HTTP servers of the web gateway and the
// operator view share for their Prometheus metrics: a ResponseWriter that
// records the status code, and collector registration that tolerates two
// servers in one process sharing a registry.
package httpmetrics

import (
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c, or returns the collector already registered in
// its place (two components in one process sharing a registry).
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(C); ok {
				return old
			}
		}
	}
	return c
}

// StatusWriter records the status code of a response; it passes Flush
// through, for Server-Sent Events.
type StatusWriter struct {
	http.ResponseWriter
	Code int
}

// WriteHeader records code and writes it.
func (w *StatusWriter) WriteHeader(code int) {
	if w.Code == 0 {
		w.Code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write records 200 if no status was written before.
func (w *StatusWriter) Write(b []byte) (int, error) {
	if w.Code == 0 {
		w.Code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush flushes the underlying writer, if it can.
func (w *StatusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap returns the underlying writer (http.ResponseController).
func (w *StatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// PageHeaders sets the security headers of a page and its assets: its own
// scripts and styles only, not framed, no referrer.
func PageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// Serve runs next and returns the route pattern that served the request
// ("unmatched" when none did) and the response's status code, the labels
// of a request counter.
func Serve(next http.Handler, w http.ResponseWriter, r *http.Request) (route string, code int) {
	sw := &StatusWriter{ResponseWriter: w}
	next.ServeHTTP(sw, r)
	route, code = r.Pattern, sw.Code
	if route == "" {
		route = "unmatched"
	}
	if code == 0 {
		code = http.StatusOK
	}
	return route, code
}
