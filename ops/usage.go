package ops

import (
	"context"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/uims/uims/schemas"
)

// Usage per client and medium (docs/OPS.md, "Usage"; docs/ACCOUNTING.md):
// the operator view reads the brokers' accounting records from the stream
// UIMS_ACCOUNTING (an observer may read it) from the start of the oldest
// day it shows, and follows it. It counts as the brokers do for the usage
// query: for the sender, a message once, at its final record, on the
// medium it came from; for the recipient, each delivery on the medium it
// came in. What it shows is its own reading of the stream: a record the
// stream took twice (beyond the de-duplication window) would count twice
// here, where the brokers' figures count it once.

// UsageDays is how many UTC days the operator view keeps, today included.
const UsageDays = 7

// maxUsageClients bounds the clients counted per day: beyond it, a new
// client's figures go to the client "(others)".
const maxUsageClients = 100_000

// usageBook is the figures per day, client and medium.
type usageBook struct {
	mu      sync.Mutex
	now     func() time.Time
	days    map[string]*usageDay // YYYY-MM-DD
	records int64
	last    int64 // Unix ms of the newest record read
	err     string
	version uint64
}

type usageDay struct {
	clients  map[string]map[string]*schemas.MediumUsage
	media    map[string]*schemas.MediumUsage
	outcomes map[string]int64
	records  int64
}

func newUsageBook(now func() time.Time) *usageBook {
	return &usageBook{now: now, days: map[string]*usageDay{}}
}

// first is the first day the book keeps.
func (u *usageBook) first() time.Time {
	return u.now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -(UsageDays - 1))
}

// add counts one record.
func (u *usageBook) add(r *schemas.AccountingRecord) {
	t := time.UnixMilli(r.At).UTC()
	u.mu.Lock()
	defer u.mu.Unlock()
	u.records++
	u.err = ""
	u.last = max(u.last, r.At)
	u.version++
	if t.Before(u.first()) {
		return
	}
	key := t.Format(time.DateOnly)
	d := u.days[key]
	if d == nil {
		d = &usageDay{clients: map[string]map[string]*schemas.MediumUsage{}, media: map[string]*schemas.MediumUsage{}, outcomes: map[string]int64{}}
		u.days[key] = d
		u.prune()
	}
	d.records++
	d.outcomes[r.Outcome]++
	if r.Final {
		for _, m := range []*schemas.MediumUsage{d.medium(r.Origin.Medium), d.client(r.Sender, r.Origin.Medium)} {
			if m == nil {
				continue
			}
			m.Sent++
			m.SentBytes += r.Content.Length
			if !r.Delivered() {
				m.Failed++
			}
		}
	}
	if r.Delivered() {
		for _, m := range []*schemas.MediumUsage{d.medium(r.Dest.Medium), d.client(r.Recipient, r.Dest.Medium)} {
			if m == nil {
				continue
			}
			m.Received++
			m.ReceivedBytes += r.Content.Length
		}
	}
}

func (d *usageDay) medium(m string) *schemas.MediumUsage {
	x := d.media[m]
	if x == nil {
		x = &schemas.MediumUsage{}
		d.media[m] = x
	}
	return x
}

// client is the figures of a client on a medium; nil for no client (an
// outside sender or recipient).
func (d *usageDay) client(c, m string) *schemas.MediumUsage {
	if c == "" {
		return nil
	}
	cm := d.clients[c]
	if cm == nil {
		if len(d.clients) >= maxUsageClients {
			c = "(others)"
			cm = d.clients[c]
		}
		if cm == nil {
			cm = map[string]*schemas.MediumUsage{}
			d.clients[c] = cm
		}
	}
	x := cm[m]
	if x == nil {
		x = &schemas.MediumUsage{}
		cm[m] = x
	}
	return x
}

// prune drops the days older than the book keeps.
func (u *usageBook) prune() {
	first := u.first().Format(time.DateOnly)
	for k := range u.days {
		if k < first {
			delete(u.days, k)
		}
	}
}

// ClientUsage is one client's figures on a day.
type ClientUsage struct {
	Client string                         `json:"client"`
	Media  map[string]schemas.MediumUsage `json:"media"`
	Total  schemas.MediumUsage            `json:"total"`
}

// UsageView is what GET /ops/api/usage answers.
type UsageView struct {
	// Day is the UTC day shown; Days the days kept, newest first.
	Day  string   `json:"day"`
	Days []string `json:"days"`
	// Clients are the day's clients (those matching q), busiest first,
	// at most limit; Matched how many matched.
	Clients []ClientUsage `json:"clients"`
	Matched int           `json:"matched"`
	// Media and Total are the day's figures per medium and in all:
	// sent by the medium messages came from, received by the one they
	// went to.
	Media    map[string]schemas.MediumUsage `json:"media"`
	Total    schemas.MediumUsage            `json:"total"`
	Outcomes map[string]int64               `json:"outcomes"`
	Records  int64                          `json:"records"`
	// Read is how many records the view read from the stream since it
	// started, Last the time of the newest; Error why it cannot read now.
	Read    int64  `json:"read"`
	Last    int64  `json:"last,omitempty"`
	Error   string `json:"error,omitempty"`
	Version uint64 `json:"version"`
}

// view returns the figures of day (empty: today) for the clients whose id
// contains q, at most limit of them.
func (u *usageBook) view(day, q string, limit int) UsageView {
	u.mu.Lock()
	defer u.mu.Unlock()
	today := u.now().UTC().Truncate(24 * time.Hour)
	v := UsageView{Day: day, Media: map[string]schemas.MediumUsage{}, Outcomes: map[string]int64{}, Read: u.records, Last: u.last,
		Error: u.err, Version: u.version, Clients: []ClientUsage{}}
	for i := range UsageDays {
		v.Days = append(v.Days, today.AddDate(0, 0, -i).Format(time.DateOnly))
	}
	if v.Day == "" {
		v.Day = v.Days[0]
	}
	d := u.days[v.Day]
	if d == nil {
		return v
	}
	v.Records = d.records
	for k, n := range d.outcomes {
		v.Outcomes[k] = n
	}
	for m, x := range d.media {
		v.Media[m] = *x
		v.Total = sum(v.Total, *x)
	}
	q = strings.ToLower(q)
	for c, media := range d.clients {
		if q != "" && !strings.Contains(strings.ToLower(c), q) {
			continue
		}
		cu := ClientUsage{Client: c, Media: map[string]schemas.MediumUsage{}}
		for m, x := range media {
			cu.Media[m] = *x
			cu.Total = sum(cu.Total, *x)
		}
		v.Clients = append(v.Clients, cu)
	}
	v.Matched = len(v.Clients)
	sort.Slice(v.Clients, func(i, j int) bool {
		a, b := v.Clients[i].Total, v.Clients[j].Total
		if a.Sent+a.Received != b.Sent+b.Received {
			return a.Sent+a.Received > b.Sent+b.Received
		}
		return v.Clients[i].Client < v.Clients[j].Client
	})
	if len(v.Clients) > limit {
		v.Clients = v.Clients[:limit]
	}
	return v
}

func sum(a, b schemas.MediumUsage) schemas.MediumUsage {
	return schemas.MediumUsage{Sent: a.Sent + b.Sent, SentBytes: a.SentBytes + b.SentBytes, Failed: a.Failed + b.Failed,
		Received: a.Received + b.Received, ReceivedBytes: a.ReceivedBytes + b.ReceivedBytes}
}

func (u *usageBook) setErr(err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if err == nil {
		u.err = ""
	} else {
		u.err = err.Error()
	}
}

// follow reads the stream from the first day kept and follows it until
// ctx is done; a stream that is not there yet (no broker started it) or
// cannot be read is looked for again every few seconds.
func (u *usageBook) follow(ctx context.Context, nc *nats.Conn, log zerolog.Logger) {
	js, err := jetstream.New(nc)
	if err != nil {
		u.setErr(err)
		return
	}
	var seq atomic.Uint64 // the last stream sequence read: a new consumer goes on from there
	for ctx.Err() == nil {
		err := u.consume(ctx, js, &seq)
		if ctx.Err() != nil {
			return
		}
		u.setErr(err)
		log.Debug().Err(err).Msg("usage: accounting stream not readable; trying again")
		select {
		case <-ctx.Done():
			return
		case <-time.After(3 * time.Second):
		}
	}
}

func (u *usageBook) consume(ctx context.Context, js jetstream.JetStream, seq *atomic.Uint64) error {
	s, err := js.Stream(ctx, schemas.AccountingStream)
	if err != nil {
		return err
	}
	cfg := jetstream.OrderedConsumerConfig{}
	if n := seq.Load(); n > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, n+1
	} else {
		start := u.first()
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	cons, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return err
	}
	u.setErr(nil)
	failed := make(chan error, 1)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var r schemas.AccountingRecord
		if json.Unmarshal(m.Data(), &r) == nil && r.MsgID != "" {
			u.add(&r)
		}
		if md, err := m.Metadata(); err == nil {
			seq.Store(md.Sequence.Stream)
		}
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if err != nil && !strings.Contains(err.Error(), "heartbeat") {
			select {
			case failed <- err:
			default:
			}
		}
	}))
	if err != nil {
		return err
	}
	defer cc.Stop()
	var last error
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-cc.Closed():
			return last
		case last = <-failed:
			u.setErr(last) // shown until a record comes: the ordered consumer recovers by itself
		}
	}
}
