package ops

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/uims/uims/internal/httpmetrics"
)

// Prometheus metrics of the operator view. Two families:
//
//   - uims_fabric_*, uims_broker_* and uims_gateway_*: fabric-wide figures
//     the observer computes from the trace events and the micro services'
//     STATS it hears. Every instance hears the whole fabric, so these must not be
//     summed over instances (take max, or scrape one);
//   - uims_ops_*: this instance's own HTTP API.
//
// Nothing is registered in the global default registry: the registerer
// comes from Config.Metrics.

// fabricMetrics are the figures computed from trace events. A nil
// *fabricMetrics records nothing.
type fabricMetrics struct {
	obs        *Observer
	events     *prometheus.CounterVec
	messages   *prometheus.CounterVec
	rejections *prometheus.CounterVec
	steps      *prometheus.HistogramVec
	deliveries *prometheus.HistogramVec
	gwMessages *prometheus.CounterVec
	gwCodes    *prometheus.CounterVec
}

// latencyBuckets span 100 µs to 30 s.
var latencyBuckets = prometheus.ExponentialBucketsRange(0.0001, 30, 16)

func newFabricMetrics(reg prometheus.Registerer) *fabricMetrics {
	m := &fabricMetrics{
		events: httpmetrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "uims_fabric_trace_events_total",
			Help: "Protocol-step trace events heard on uims.trace.>, by publisher (broker or gateway id), step and result.",
		}, []string{"source", "step", "result"})),
		messages: httpmetrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "uims_fabric_messages_total",
			Help: "Messages by originating medium, destination medium and outcome (delivered, read, failed, rejected); read is counted in addition to delivered.",
		}, []string{"origin_medium", "dest_medium", "outcome"})),
		rejections: httpmetrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "uims_fabric_rejections_total",
			Help: "Protocol steps that ended in an error code (MIAP refusals and delivery failures), by publisher, step and code.",
		}, []string{"source", "step", "code"})),
		steps: httpmetrics.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "uims_fabric_step_latency_seconds",
			Help:    "Time from a message's previous protocol step to this one, as the observer heard them; broker steps are prefixed broker.",
			Buckets: latencyBuckets,
		}, []string{"step"})),
		deliveries: httpmetrics.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "uims_fabric_delivery_latency_seconds",
			Help:    "Time from accepted at the originating gateway to delivered at the destination, by destination medium.",
			Buckets: latencyBuckets,
		}, []string{"dest_medium"})),
		gwMessages: httpmetrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "uims_gateway_messages_total",
			Help: "Gateway outcomes (received, delivered, transferred, failed, refused, sent, send_failed) by gateway and medium, summed over its instances: the increases of the counters in $SRV.STATS.uims-gw-<gateway> since this observer started.",
		}, []string{"gateway", "medium", "outcome"})),
		gwCodes: httpmetrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "uims_gateway_codes_total",
			Help: "Refusals and failures at a gateway by MIAP code, from $SRV.STATS.uims-gw-<gateway> since this observer started.",
		}, []string{"gateway", "medium", "code"})),
	}
	httpmetrics.Register(reg, &observerCollector{m: m})
	return m
}

func (m *fabricMetrics) event(ev Event) {
	if m == nil {
		return
	}
	m.events.WithLabelValues(ev.Source, ev.Step, ev.Result).Inc()
}

func (m *fabricMetrics) rejection(source, step, code string) {
	if m == nil {
		return
	}
	m.rejections.WithLabelValues(source, step, code).Inc()
}

func (m *fabricMetrics) outcome(origin, dest, outcome string) {
	if m == nil {
		return
	}
	m.messages.WithLabelValues(origin, dest, outcome).Inc()
}

func (m *fabricMetrics) stepLatency(step string, s float64) {
	if m == nil {
		return
	}
	m.steps.WithLabelValues(step).Observe(s)
}

func (m *fabricMetrics) delivery(dest string, s float64) {
	if m == nil {
		return
	}
	m.deliveries.WithLabelValues(dest).Observe(s)
}

// gatewaySeen makes a gateway's outcome series exist from its first poll,
// at zero: rate() needs a first sample.
func (m *fabricMetrics) gatewaySeen(gateway, medium string) {
	if m == nil {
		return
	}
	for _, oc := range outcomes {
		m.gwMessages.WithLabelValues(gateway, medium, oc)
	}
}

// gatewayCounts adds one poll's increases of a gateway instance's counters.
func (m *fabricMetrics) gatewayCounts(gateway, medium string, d GatewayCounts, codes map[string]int64) {
	if m == nil {
		return
	}
	for i, n := range d.fields() {
		if *n > 0 {
			m.gwMessages.WithLabelValues(gateway, medium, outcomes[i]).Add(float64(*n))
		}
	}
	for c, n := range codes {
		m.gwCodes.WithLabelValues(gateway, medium, c).Add(float64(n))
	}
}

// observerCollector reads the observer's live view at scrape time.
type observerCollector struct{ m *fabricMetrics }

var (
	instancesDesc = prometheus.NewDesc("uims_fabric_instances",
		"Live instances per fabric node (broker, gateway or processor group), from heartbeats, $SRV.PING and trace events.",
		[]string{"kind", "name", "medium"}, nil)
	brokerRejectionsDesc = prometheus.NewDesc("uims_broker_rejections_total",
		"Requests the brokers refused, by endpoint and MIAP code, summed over live broker instances from $SRV.STATS.uims-broker.",
		[]string{"endpoint", "code"}, nil)
)

func (c *observerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- instancesDesc
	ch <- brokerRejectionsDesc
}

func (c *observerCollector) Collect(ch chan<- prometheus.Metric) {
	o := c.m.obs
	if o == nil {
		return
	}
	for k, n := range o.instanceCounts() {
		ch <- prometheus.MustNewConstMetric(instancesDesc, prometheus.GaugeValue, float64(n), k[0], k[1], k[2])
	}
	for k, n := range o.brokerRejections() {
		ch <- prometheus.MustNewConstMetric(brokerRejectionsDesc, prometheus.CounterValue, float64(n), k[0], k[1])
	}
}

// httpMetrics are the operator view's own HTTP figures.
type httpMetrics struct {
	requests *prometheus.CounterVec
	streams  prometheus.Gauge
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	return &httpMetrics{
		requests: httpmetrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "uims_ops_http_requests_total",
			Help: "HTTP requests to the operator view by route and status code.",
		}, []string{"route", "code"})),
		streams: httpmetrics.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "uims_ops_event_streams",
			Help: "Open operator event streams (GET /ops/api/stream).",
		})),
	}
}

// instrument wraps the handler: request metrics, and security headers on
// the page's assets.
func (m *httpMetrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ops/api/stream" {
			m.streams.Inc()
			defer m.streams.Dec()
		}
		if !strings.HasPrefix(r.URL.Path, "/ops/api/") && r.URL.Path != "/metrics" {
			httpmetrics.PageHeaders(w.Header())
		}
		route, code := httpmetrics.Serve(next, w, r)
		m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	})
}

// metricsHandler serves the registry in the Prometheus text format.
func metricsHandler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}
