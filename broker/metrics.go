package broker

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/uims/uims/schemas"
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
	// accounting (accounting.go), by medium, never by client: the label
	// values are the fabric's media, a short list
	records    *prometheus.CounterVec // outcome: records stored
	messages   *prometheus.CounterVec // direction (sent, received), medium
	bytes      *prometheus.CounterVec // direction, medium: content bytes as sent
	acctErrors *prometheus.CounterVec // reason: publish (retried), lost
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
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "uims", Subsystem: "accounting", Name: "records_total",
			Help: "Accounting records stored in UIMS_ACCOUNTING, one per attempt at its outcome, by outcome (docs/ACCOUNTING.md)."}, []string{"outcome"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "uims", Subsystem: "accounting", Name: "messages_total",
			Help: "Messages accounted, by direction and medium: sent (a message that ended, by the medium it came from) and received (a delivery, by the medium it went to)."},
			[]string{"direction", "medium"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "uims", Subsystem: "accounting", Name: "bytes_total",
			Help: "Content bytes (as sent, from the IMI) of the messages accounted, by direction and medium."}, []string{"direction", "medium"}),
		acctErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "uims", Subsystem: "accounting", Name: "errors_total",
			Help: "Accounting records not stored: publish (JetStream did not take it; published again later), lost (its transaction expired first)."},
			[]string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.outcomes, m.queue, m.contentDeleted, m.records, m.messages, m.bytes, m.acctErrors)
	}
	return m
}

// accounted counts a record stored for the first time.
func (m *metrics) accounted(r *schemas.AccountingRecord) {
	m.records.WithLabelValues(r.Outcome).Inc()
	if r.Final {
		m.messages.WithLabelValues("sent", r.Origin.Medium).Inc()
		m.bytes.WithLabelValues("sent", r.Origin.Medium).Add(float64(r.Content.Length))
	}
	if r.Delivered() {
		m.messages.WithLabelValues("received", r.Dest.Medium).Inc()
		m.bytes.WithLabelValues("received", r.Dest.Medium).Add(float64(r.Content.Length))
	}
}

func (m *metrics) observe(endpoint, result string, start time.Time) {
	m.requests.WithLabelValues(endpoint, result).Inc()
	m.duration.WithLabelValues(endpoint).Observe(time.Since(start).Seconds())
}
