// Package tracing publishes a party's protocol-step events
// (schemas.TraceEvent) for observers in batches: events are gathered for at
// most a short delay, or until a batch is full, and go out as one Batch on
// uims.trace.<party>.batch. One message per batch instead of one per
// step keeps the cost of observation off the message path (issue 7: the
// events were a fifth of the fabric's CPU at 64 senders). A batch tells how
// long each event waited in it, so that an observer dates every event on
// its own clock as if it had come alone. Nothing depends on the events
// being received.
package tracing

import (
	"strconv"
	"sync"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go"

	"github.com/uims/uims/schemas"
)

// Defaults of a Publisher.
const (
	DefaultDelay    = 20 * time.Millisecond
	DefaultMaxCount = 256
	maxBytes        = 256 << 10
)

// Publisher gathers and publishes the events of one party. Its zero value
// is not usable; a nil *Publisher drops every event (tracing off).
type Publisher struct {
	nc      *nats.Conn
	subject string
	delay   time.Duration
	max     int

	mu     sync.Mutex
	buf    []byte      // event ("," event)*
	queued []time.Time // when each event came
	out    []byte
	timer  *time.Timer
}

// Batch is the body of a message on uims.trace.<party>.batch.
type Batch struct {
	// AgeMicros[i] is how long event i waited before the batch went out.
	AgeMicros []int64 `json:"age_us"`
	// Events is a JSON array of schemas.TraceEvent.
	Events json.RawMessage `json:"events"`
}

// New returns a publisher for party; delay bounds how long an event waits
// (0: DefaultDelay), max the events of one batch (0: DefaultMaxCount).
func New(nc *nats.Conn, party string, delay time.Duration, max int) *Publisher {
	if delay <= 0 {
		delay = DefaultDelay
	}
	if max <= 0 {
		max = DefaultMaxCount
	}
	p := &Publisher{nc: nc, subject: schemas.TraceBatchSubject(party), delay: delay, max: max}
	p.timer = time.AfterFunc(time.Hour, p.Flush)
	p.timer.Stop()
	return p
}

// Publish queues one event.
func (p *Publisher) Publish(ev *schemas.TraceEvent) {
	if p == nil {
		return
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queued) == 0 {
		p.buf = p.buf[:0]
		p.timer.Reset(p.delay)
	} else {
		p.buf = append(p.buf, ',')
	}
	p.buf = ev.AppendJSON(p.buf)
	p.queued = append(p.queued, now)
	if len(p.queued) >= p.max || len(p.buf) >= maxBytes {
		p.flushLocked()
	}
}

// Flush publishes the events gathered so far; components call it when they
// stop.
func (p *Publisher) Flush() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.flushLocked()
}

func (p *Publisher) flushLocked() {
	if len(p.queued) == 0 {
		return
	}
	p.timer.Stop()
	now := time.Now()
	p.out = append(p.out[:0], `{"age_us":[`...)
	for i, t := range p.queued {
		if i > 0 {
			p.out = append(p.out, ',')
		}
		p.out = strconv.AppendInt(p.out, now.Sub(t).Microseconds(), 10)
	}
	p.out = append(p.out, `],"events":[`...)
	p.out = append(p.out, p.buf...)
	p.out = append(p.out, "]}"...)
	p.nc.Publish(p.subject, p.out) // the connection copies the bytes
	p.queued = p.queued[:0]
}

// Decode reads a batch into events, a slice of schemas.TraceEvent or of a
// type shaped like it, and returns the events' ages.
func Decode(data []byte, events any) ([]time.Duration, error) {
	var b Batch
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b.Events, events); err != nil {
		return nil, err
	}
	ages := make([]time.Duration, len(b.AgeMicros))
	for i, us := range b.AgeMicros {
		ages[i] = time.Duration(us) * time.Microsecond
	}
	return ages, nil
}
