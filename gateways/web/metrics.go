package web

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/uims/uims/internal/httpmetrics"
)

// Prometheus metrics of the web gateway process: uims_web_*, this
// gateway's own HTTP API (requests by route and status, latency, open event
// streams). The fabric-wide figures (uims_fabric_*) are the operator
// view's (package ops).
//
// Nothing is registered in the global default registry: the registerer
// comes from Config.Metrics.

// latencyBuckets span 100 µs to 30 s.
var latencyBuckets = prometheus.ExponentialBucketsRange(0.0001, 30, 16)

// mountMetrics adds GET /metrics to mux.
func (g *Gateway) mountMetrics(mux *http.ServeMux) {
	if g.gatherer != nil {
		mux.Handle("GET /metrics", metricsHandler(g.gatherer))
	}
}

// httpMetrics are the web gateway's own HTTP figures.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	streams  *prometheus.GaugeVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	return &httpMetrics{
		requests: httpmetrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "uims_web_http_requests_total",
			Help: "HTTP requests to the web gateway by route and status code (POST /api/v1/messages with 202 is an accepted message).",
		}, []string{"route", "code"})),
		duration: httpmetrics.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "uims_web_http_request_duration_seconds",
			Help:    "HTTP request latency by route (event streams excluded).",
			Buckets: latencyBuckets,
		}, []string{"route"})),
		streams: httpmetrics.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "uims_web_event_streams",
			Help: "Open Server-Sent Event streams by kind (client).",
		}, []string{"kind"})),
	}
}

// instrument wraps the gateway's handler: request metrics, and security
// headers on the page's assets.
func (m *httpMetrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		stream := ""
		if r.URL.Path == "/api/v1/events" {
			stream = "client"
		}
		if stream != "" {
			g := m.streams.WithLabelValues(stream)
			g.Inc()
			defer g.Dec()
		}
		if !strings.HasPrefix(r.URL.Path, "/api/") && r.URL.Path != "/metrics" {
			httpmetrics.PageHeaders(w.Header())
		}
		route, code := httpmetrics.Serve(next, w, r)
		m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
		if stream == "" {
			m.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}
	})
}

// metricsHandler serves the registry in the Prometheus text format.
func metricsHandler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}
