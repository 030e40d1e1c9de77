package broker

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the broker's Prometheus collectors (README "Metrics").
type metrics struct {
	requests *prometheus.CounterVec   // endpoint, result (ok or the code)
	duration *prometheus.HistogramVec // endpoint: handling time in the worker
	outcomes *prometheus.CounterVec   // status applied: delivered, read, failed, expired
	queue    prometheus.GaugeFunc
	// contentDeleted counts objects of content by reference deleted at
	// an attempt's end (content.go)
	contentDeleted prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, queueLen func() float64) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "uims", Subsystem: "broker", Name: "requests_total",
			Help: "Broker requests by endpoint and result (ok or the MIAP error code)."}, []string{"endpoint", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "uims", Subsystem: "broker", Name: "request_duration_seconds",
			Help: "Time a broker worker spends on a request, by endpoint.", Buckets: prometheus.ExponentialBuckets(50e-6, 2, 14)}, []string{"endpoint"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "uims", Subsystem: "broker", Name: "transactions_total",
			Help: "Transaction status changes applied, by status (expired: non-delivery at the deadline)."}, []string{"status"}),
		queue: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "uims", Subsystem: "broker", Name: "queue_length",
			Help: "Requests waiting for a broker worker."}, queueLen),
		contentDeleted: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "uims", Subsystem: "broker", Name: "content_objects_deleted_total",
			Help: "Objects of content by reference deleted when their attempt ended (PROTOCOL.md §10)."}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.outcomes, m.queue, m.contentDeleted)
	}
	return m
}

func (m *metrics) observe(endpoint, result string, start time.Time) {
	m.requests.WithLabelValues(endpoint, result).Inc()
	m.duration.WithLabelValues(endpoint).Observe(time.Since(start).Seconds())
}
