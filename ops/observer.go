package ops

import (
	"cmp"
	"context"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/uims/uims/internal/tracing"
	"github.com/uims/uims/schemas"
)

// The observer is the operator's view of the whole fabric, behind the
// operator view and the fabric-wide metrics. It only listens: the trace
// events that brokers and gateway kits publish on uims.trace.<party>.batch,
// the signed heartbeats on uims.broker.announce (read, not verified: they
// are only displayed), and the nats micro services' $SRV.PING and
// $SRV.STATS answers. It keeps a bounded in-memory record of recent
// messages with their protocol steps; older messages come from the brokers'
// transaction history (kit.Query).

// ObserverConfig bounds the observer's memory and sets its clock.
type ObserverConfig struct {
	// Messages bounds the messages whose trace events are kept; default 2000.
	Messages int
	// EventsPerMessage bounds the events kept per message; default 48.
	EventsPerMessage int
	// Recent bounds the feed of the latest events of any message; default 500.
	Recent int
	// Poll is how often the micro services are pinged; default 2 s.
	Poll time.Duration
	// Window is how far back throughput and latency go; default 5 min.
	Window time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Query, if set, asks the brokers for a transaction's history: the
	// sender and recipient when no event named them, and the steps of a
	// message the observer never heard of. The observer's identity has no
	// MIAP key; uims run passes its web gateway's kit.Query, which the
	// brokers answer for the messages that gateway originated or received.
	Query func(ctx context.Context, msgID string) (*schemas.TxStatus, error)
	// Bucket is the key-value bucket the timelines are shared in by every
	// instance (store.go); default DefaultBucket.
	Bucket string
	// TTL is how long a timeline stays in the bucket after its last
	// change; default DefaultTTL.
	TTL time.Duration
	// Flush is how often the timelines that changed are written to the
	// bucket; default 1 s.
	Flush time.Duration
	// NoStore keeps the timelines in this instance's memory only.
	NoStore bool
}

func (c *ObserverConfig) setDefaults() {
	if c.Messages <= 0 {
		c.Messages = 2000
	}
	if c.EventsPerMessage <= 0 {
		c.EventsPerMessage = 48
	}
	if c.Recent <= 0 {
		c.Recent = 500
	}
	if c.Poll <= 0 {
		c.Poll = 2 * time.Second
	}
	if c.Window <= 0 {
		c.Window = 5 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	if c.TTL <= 0 {
		c.TTL = DefaultTTL
	}
	if c.Flush <= 0 {
		c.Flush = time.Second
	}
}

// Event is one protocol step as the observer heard it: the trace event a
// broker, gateway kit or processor published (schemas.TraceEvent: broker
// events name the peer gateway in Party and the broker instance in By;
// gateway events name the gateway itself in Party and its instance in By),
// who published it and when the observer heard it.
type Event struct {
	schemas.TraceEvent
	// Source is who published the event: "broker" or a gateway id
	// (the <party> token of uims.trace.<party>.batch).
	Source string `json:"source"`
	// Seen is when the observer received the event, Unix µs on the
	// observer's clock; latencies are differences of Seen, so they do not
	// depend on the publishers' clocks agreeing.
	Seen int64 `json:"seen"`
	// Attempt is the attempt of the message the step belongs to, 0 for
	// the steps before a hold's release (attempts.go); set in a Timeline
	// of a message routed more than once or held.
	Attempt int `json:"attempt,omitempty"`
}

// broker reports whether a broker published the event.
func (e *Event) broker() bool { return e.Source == "broker" }

// isCode reports whether a trace result is an error code rather than a status.
func isCode(result string) bool {
	if result == "" || result == "OK" || strings.ToUpper(result) != result {
		return false
	}
	_, ok := schemas.ParseCode(result)
	return ok
}

// States of a transaction as the observer sees it, by progress.
var stateRank = map[string]int{
	schemas.StatusAccepted: 1, schemas.StatusRouted: 2, schemas.StatusTransferred: 3,
	schemas.StatusDelivered: 4, schemas.StatusRead: 5, schemas.StatusFailed: 6, stateRejected: 6,
}

// stateRejected is a message the brokers refused to route (it never got a
// transaction); the sender was told at once.
const stateRejected = "rejected"

// txRec is what the observer knows about one message.
type txRec struct {
	TxSummary
	events    []Event
	accepted  int64 // Seen of the accepted step
	delivered int64 // Seen of the event that made it delivered
	prev      int64 // Seen of the latest step
	counted   uint8 // outcomes already counted
	enrich    int8  // 0 not asked, 1 asked, 2 done, -1 unknown to the brokers
	history   []schemas.HistoryEntry
	histState string // the state when history was fetched
	originMed string
	moved     bool   // rerouted or released: the destination is the latest reroute's or release's
	rev       uint64 // revision of its entry in the bucket, as last written or read
}

const (
	countedDelivered uint8 = 1 << iota
	countedRead
	countedFailed
	countedRejected
)

// TxSummary is one recent transaction in the operator view.
type TxSummary struct {
	MsgID     string `json:"msg_id"`
	Tx        string `json:"tx,omitempty"`
	Origin    string `json:"origin,omitempty"` // originating gateway
	Dest      string `json:"dest,omitempty"`   // destination gateway
	Sender    string `json:"sender,omitempty"`
	Recipient string `json:"recipient,omitempty"`
	To        string `json:"to,omitempty"`
	State     string `json:"state"`
	Code      string `json:"code,omitempty"`
	First     int64  `json:"first"` // Unix ms
	Last      int64  `json:"last"`  // Unix ms
	// LatencyMs is accepted → delivered, when both were seen.
	LatencyMs float64 `json:"latency_ms,omitempty"`
	Steps     int     `json:"steps"`
	// Attempts are the routes of a message routed more than once or held,
	// oldest first (attempts.go); absent for a message routed once.
	Attempts []Attempt `json:"attempts,omitempty"`
	// Hold is the time the brokers held the message before its first
	// route, if they did.
	Hold *Hold `json:"hold,omitempty"`
}

// secBucket holds one second of throughput and latency samples.
type secBucket struct {
	sec                                         int64
	accepted, delivered, read, failed, rejected int
	lat                                         []float64 // ms, a reservoir
	seenLat                                     int
}

const latReservoir = 256

// rateRing counts events per second over the last minute.
type rateRing struct {
	sec [60]int64
	n   [60]int
}

func (r *rateRing) add(sec int64) {
	i := sec % 60
	if r.sec[i] != sec {
		r.sec[i], r.n[i] = sec, 0
	}
	r.n[i]++
}

// sum returns the count over the last span seconds up to now.
func (r *rateRing) sum(now int64, span int64) int {
	t := 0
	for i := range r.sec {
		if r.sec[i] > now-span && r.sec[i] <= now {
			t += r.n[i]
		}
	}
	return t
}

type edgeKey struct{ from, to, kind string }

// partyRec is a gateway or processor party known from its heartbeats.
type partyRec struct {
	medium    string
	instances map[string]*instRec
}

type instRec struct {
	seen    time.Time
	ttl     time.Duration
	version string
	convs   []schemas.Conversion
}

// Observer watches the fabric. Create it with NewObserver, feed it with Run.
type Observer struct {
	cfg     ObserverConfig
	nc      *nats.Conn
	query   func(ctx context.Context, msgID string) (*schemas.TxStatus, error)
	log     zerolog.Logger
	metrics *fabricMetrics

	mu       sync.Mutex
	txs      map[string]*txRec
	order    []string // ring of message ids, oldest at head once full
	head     int
	byTx     map[string]string
	recent   []Event
	rhead    int
	secs     []secBucket
	edges    map[edgeKey]*rateRing
	parties  map[string]*partyRec
	services map[string]map[string]*svcInst // service name → instance id
	gateways map[string]*gwTraffic          // party → counters from its micro service
	started  time.Time                      // when the observer was made
	brokers  map[string]time.Time           // broker instances seen in trace events
	version  uint64                         // bumped on every change, for pollers
	enrichCh chan enrichReq
	store    *store              // nil: memory only
	dirty    map[string]struct{} // timelines changed since the last flush
}

// svcInst is one nats micro service instance from $SRV.PING and $SRV.STATS.
type svcInst struct {
	ping  micro.Ping
	stats *micro.Stats
	seen  time.Time
}

// NewObserver returns an observer that listens on nc; m, if not nil, gets
// the fabric-wide metrics.
func NewObserver(nc *nats.Conn, m *fabricMetrics, cfg ObserverConfig, log zerolog.Logger) *Observer {
	cfg.setDefaults()
	o := &Observer{cfg: cfg, nc: nc, query: cfg.Query, metrics: m, log: log.With().Str("role", "observer").Logger(),
		txs: map[string]*txRec{}, byTx: map[string]string{}, edges: map[edgeKey]*rateRing{},
		parties: map[string]*partyRec{}, services: map[string]map[string]*svcInst{}, brokers: map[string]time.Time{},
		gateways: map[string]*gwTraffic{}, started: cfg.Now(),
		secs: make([]secBucket, int(cfg.Window/time.Second)+1), enrichCh: make(chan enrichReq, 1024)}
	if m != nil {
		m.obs = o
	}
	return o
}

// Run subscribes to the trace events and heartbeats and polls the micro
// services until ctx is done. Unless NoStore, it opens the bucket, loads the
// newest timelines from it, and writes the ones that change back. ready,
// if not nil, is called once subscribed and loaded.
func (o *Observer) Run(ctx context.Context, ready func()) error {
	if !o.cfg.NoStore {
		st, err := openStore(ctx, o.nc, o.cfg.Bucket, o.cfg.TTL, o.cfg.EventsPerMessage)
		if err != nil {
			// an identity issued before the observer had its bucket
			// (uims party add NAME --role observer issues a new one)
			o.log.Warn().Err(err).Msg("timelines kept in this instance's memory only: the shared bucket is not usable")
		} else {
			o.mu.Lock()
			o.store, o.dirty = st, map[string]struct{}{}
			o.mu.Unlock()
		}
	}
	trace, err := o.nc.Subscribe(schemas.SubjectTrace+".>", o.onTrace)
	if err != nil {
		return err
	}
	defer trace.Unsubscribe()
	trace.SetPendingLimits(1<<16, 64<<20)
	ann, err := o.nc.Subscribe(schemas.SubjectBrokerAnnounce, o.onAnnounce)
	if err != nil {
		return err
	}
	defer ann.Unsubscribe()
	if err := o.nc.Flush(); err != nil {
		return err
	}
	if o.store != nil {
		if err := o.store.recent(ctx, o.cfg.Messages, o.load); err != nil {
			o.log.Warn().Err(err).Msg("timelines in the bucket not loaded")
		}
		flushed := make(chan struct{})
		defer func() { <-flushed }()
		go func() { defer close(flushed); o.flusher(ctx) }()
	}
	if ready != nil {
		ready()
	}
	go o.enricher(ctx)
	t := time.NewTicker(o.cfg.Poll)
	defer t.Stop()
	for {
		o.pollServices(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (o *Observer) onTrace(m *nats.Msg) {
	var evs []Event
	ages, err := tracing.Decode(m.Data, &evs)
	if err != nil || len(ages) != len(evs) {
		return
	}
	// uims.trace.<source>.batch
	var source string
	if rest, ok := strings.CutPrefix(m.Subject, schemas.SubjectTrace+"."); ok {
		if i := strings.IndexByte(rest, '.'); i > 0 {
			source = rest[:i]
		}
	}
	now := o.cfg.Now()
	for i := range evs {
		if evs[i].Step == "" {
			continue
		}
		evs[i].Source = source
		evs[i].Seen = now.Add(-ages[i]).UnixMicro()
		o.Ingest(evs[i])
	}
}

func (o *Observer) onAnnounce(m *nats.Msg) {
	var a schemas.Announce
	if json.Unmarshal(m.Data, &a) != nil || a.Gateway == "" || a.Instance == "" {
		return
	}
	now := o.cfg.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.parties[a.Gateway]
	if p == nil {
		p = &partyRec{instances: map[string]*instRec{}}
		o.parties[a.Gateway] = p
	}
	p.medium = a.Medium
	if a.TTL <= 0 { // goodbye
		delete(p.instances, a.Instance)
	} else {
		p.instances[a.Instance] = &instRec{seen: now, ttl: time.Duration(a.TTL) * time.Millisecond, convs: a.Conversions}
	}
}

// Ingest records one trace event. Run calls it for every event on
// uims.trace.>; tests call it directly.
func (o *Observer) Ingest(ev Event) {
	now := o.cfg.Now()
	if ev.Seen == 0 {
		ev.Seen = now.UnixMicro()
	}
	sec := ev.Seen / 1e6
	o.mu.Lock()
	defer o.mu.Unlock()
	o.version++
	if o.recent == nil {
		o.recent = make([]Event, 0, o.cfg.Recent)
	}
	if len(o.recent) < o.cfg.Recent {
		o.recent = append(o.recent, ev)
	} else {
		o.recent[o.rhead] = ev
		o.rhead = (o.rhead + 1) % o.cfg.Recent
	}
	if ev.broker() && ev.By != "" {
		o.brokers[ev.By] = now
	}
	o.edge(ev, sec)
	if isCode(ev.Result) {
		o.metrics.rejection(ev.Source, ev.Step, ev.Result)
	}
	o.metrics.event(ev)

	rec := o.record(ev)
	if rec == nil {
		return
	}
	if rec.prev > 0 && ev.Seen >= rec.prev {
		o.metrics.stepLatency(stepName(ev), float64(ev.Seen-rec.prev)/1e6)
	}
	if ev.Seen > rec.prev { // a step that came late, in another party's batch, keeps its place
		rec.prev = ev.Seen
	}
	if len(rec.events) < o.cfg.EventsPerMessage {
		rec.events = append(rec.events, ev)
	}
	rec.Steps = len(rec.events)
	rec.Last = ev.Seen / 1000
	if ev.Tx != "" && rec.Tx == "" && ev.Tx != rec.MsgID {
		rec.Tx = ev.Tx
		o.byTx[ev.Tx] = rec.MsgID
	}
	if ev.Sender != "" {
		rec.Sender = ev.Sender
	}
	if ev.Recipient != "" {
		rec.Recipient = ev.Recipient
	}
	if ev.To != "" {
		rec.To = ev.To
	}
	o.apply(rec, ev, sec)
	o.changed(rec)
}

// changed marks a timeline for the next write to the bucket.
func (o *Observer) changed(rec *txRec) {
	if o.dirty != nil {
		o.dirty[rec.MsgID] = struct{}{}
	}
}

// record returns the transaction an event belongs to, creating it.
func (o *Observer) record(ev Event) *txRec {
	id := ev.MsgID
	if id == "" {
		id = o.byTx[ev.Tx]
	}
	if id == "" {
		return nil
	}
	if rec := o.txs[id]; rec != nil {
		return rec
	}
	if mid, ok := o.byTx[id]; ok { // an event that names the transaction for the message
		return o.txs[mid]
	}
	if !schemas.ValidMsgID(id) {
		return nil
	}
	return o.insert(&txRec{TxSummary: TxSummary{MsgID: id, First: ev.Seen / 1000}})
}

// insert adds a new transaction, evicting the oldest when full.
func (o *Observer) insert(rec *txRec) *txRec {
	id := rec.MsgID
	if len(o.order) < o.cfg.Messages {
		o.order = append(o.order, id)
	} else {
		old := o.order[o.head]
		if r := o.txs[old]; r != nil {
			delete(o.byTx, r.Tx)
		}
		delete(o.txs, old)
		o.order[o.head] = id
		o.head = (o.head + 1) % o.cfg.Messages
	}
	o.txs[id] = rec
	return rec
}

// stepName names a step for the per-step metrics: broker steps carry a
// "broker." prefix, gateway steps are bare.
func stepName(ev Event) string {
	if ev.broker() {
		return "broker." + ev.Step
	}
	return ev.Step
}

func gwNode(party string) string { return "gw:" + party }

const brokerNode = "broker"

// edge counts the message flow between parties that an event stands for.
func (o *Observer) edge(ev Event, sec int64) {
	var k edgeKey
	switch {
	case ev.broker() && ev.Step == "imi":
		k = edgeKey{gwNode(ev.Party), brokerNode, "imi"}
	case ev.broker() && ev.Step == "ack":
		k = edgeKey{gwNode(ev.Party), brokerNode, "ack"}
	case ev.broker() && ev.Step == "notify":
		k = edgeKey{brokerNode, gwNode(ev.Party), "status"}
	case ev.broker() && ev.Step == "conv":
		k = edgeKey{o.procNode(ev.Party), brokerNode, "conv"}
	case ev.broker() && (ev.Step == "login" || ev.Step == "routeack"):
		k = edgeKey{gwNode(ev.Party), brokerNode, ev.Step}
	case !ev.broker() && ev.Step == "imi": // the gateway's report of a refused IMI
		k = edgeKey{gwNode(ev.Source), brokerNode, "imi"}
	case !ev.broker() && ev.Step == "transfer":
		dest := ev.Dest
		if dest == "" {
			if rec := o.txs[ev.MsgID]; rec != nil {
				dest = rec.Dest
			}
		}
		if dest == "" {
			return
		}
		k = edgeKey{gwNode(ev.Source), gwNode(dest), "im"}
	default:
		return
	}
	r := o.edges[k]
	if r == nil {
		r = &rateRing{}
		o.edges[k] = r
	}
	r.add(sec)
}

func (o *Observer) procNode(party string) string {
	if p := o.parties[party]; p != nil && p.medium != "processor" {
		return gwNode(party)
	}
	return "proc:" + party
}

// latency records accepted → delivered once both were seen, whichever came
// first: events come in batches per party, so a broker's or destination's
// event may arrive before the originator's.
func (o *Observer) latency(rec *txRec) {
	if rec.accepted == 0 || rec.delivered == 0 || rec.LatencyMs != 0 || rec.delivered < rec.accepted {
		return
	}
	ms := float64(rec.delivered-rec.accepted) / 1e3
	rec.LatencyMs = ms
	o.metrics.delivery(o.mediumOf(rec.Dest), ms/1e3)
	if b := o.bucket(rec.delivered / 1e6); b != nil {
		b.seenLat++
		if len(b.lat) < latReservoir {
			b.lat = append(b.lat, ms)
		} else if j := int(uint64(rec.delivered) % uint64(b.seenLat)); j < latReservoir {
			b.lat[j] = ms
		}
	}
}

// apply moves a transaction's state on and counts outcomes once.
func (o *Observer) apply(rec *txRec, ev Event, sec int64) {
	b := o.bucket(sec)
	switch {
	case !ev.broker() && ev.Step == "accepted":
		rec.Origin = ev.Source
		rec.accepted = ev.Seen
		rec.originMed = o.mediumOf(ev.Source)
		o.advance(rec, schemas.StatusAccepted)
		if b != nil {
			b.accepted++
		}
		// Events come in batches per party: the delivery may have been
		// seen first.
		o.latency(rec)
	case ev.broker() && ev.Step == "imi":
		if rec.Origin == "" {
			rec.Origin = ev.Party
		}
		if ev.Dest != "" && !rec.moved {
			rec.Dest = ev.Dest
		}
		if ev.Result == schemas.StatusRouted {
			o.advance(rec, schemas.StatusRouted)
		}
	case !ev.broker() && ev.Step == "imi" && isCode(ev.Result):
		rec.Code = ev.Result
		if c, _ := schemas.ParseCode(ev.Result); !c.Retryable() {
			o.advance(rec, stateRejected)
		}
	case !ev.broker() && ev.Step == "route":
		if ev.Dest != "" && !rec.moved {
			rec.Dest = ev.Dest
		}
		o.advance(rec, schemas.StatusRouted)
	case ev.broker() && (ev.Step == "reroute" || ev.Step == "release"):
		// attempts.go: the next attempt's destination
		rec.moved = true
		if ev.Dest != "" {
			rec.Dest = ev.Dest
		}
		o.advance(rec, schemas.StatusRouted)
	case ev.broker() && ev.Step == "cancel":
		rec.Code = codeCancelled
		o.advance(rec, schemas.StatusFailed)
	case ev.broker() && ev.Step == "ack":
		if rec.Dest == "" {
			rec.Dest = ev.Party
		}
		if ev.Result == "applied" || ev.Result == "late" {
			o.advance(rec, ev.Status)
		}
	case isCode(ev.Result):
		rec.Code = ev.Result
	case !ev.broker() && ev.Result == schemas.StatusFailed && (ev.Step == "transfer" || ev.Step == "deliver" || ev.Step == "ack"):
		// the destination's failure: the brokers decide whether it is the
		// outcome or moves the message on (docs/ROUTING.md, "Fallback"),
		// and say so in their notify step
	case ev.Step == "transfer" || ev.Step == "deliver" || ev.Step == "ack" || ev.Step == "notify" || ev.Step == "notified":
		o.advance(rec, ev.Result)
	}
	// outcomes, each counted once per message
	count := func(flag uint8, outcome string) bool {
		if rec.counted&flag != 0 {
			return false
		}
		rec.counted |= flag
		o.metrics.outcome(rec.originMed, o.mediumOf(rec.Dest), outcome)
		return true
	}
	switch rec.State {
	case schemas.StatusDelivered, schemas.StatusRead:
		if count(countedDelivered, schemas.StatusDelivered) {
			if b != nil {
				b.delivered++
			}
			rec.delivered = ev.Seen
			o.latency(rec)
			o.queueEnrich(rec)
		}
		if rec.State == schemas.StatusRead && count(countedRead, schemas.StatusRead) && b != nil {
			b.read++
		}
	case schemas.StatusFailed:
		if count(countedFailed, schemas.StatusFailed) {
			if b != nil {
				b.failed++
			}
			o.queueEnrich(rec)
		}
	case stateRejected:
		if count(countedRejected, stateRejected) && b != nil {
			b.rejected++
		}
	}
}

func (o *Observer) advance(rec *txRec, state string) {
	if r, ok := stateRank[state]; ok && r > stateRank[rec.State] {
		rec.State = state
	}
}

// mediumOf returns the medium a party announced, or the party itself.
func (o *Observer) mediumOf(party string) string {
	if p := o.parties[party]; p != nil && p.medium != "" {
		return p.medium
	}
	return party
}

func (o *Observer) bucket(sec int64) *secBucket {
	if len(o.secs) == 0 {
		return nil
	}
	b := &o.secs[sec%int64(len(o.secs))]
	if b.sec != sec {
		*b = secBucket{sec: sec, lat: b.lat[:0]}
	}
	return b
}

// queueEnrich asks, in the background, the brokers for the sender and the
// recipient of a message the trace events did not name. It drops the
// request when the queue is full: enrichment is best effort.
func (o *Observer) queueEnrich(rec *txRec) {
	if o.query == nil || rec.enrich != 0 || (rec.Sender != "" && rec.To != "") {
		return
	}
	select {
	case o.enrichCh <- enrichReq{id: rec.MsgID, at: o.cfg.Now()}:
		rec.enrich = 1
	default:
	}
}

type enrichReq struct {
	id string
	at time.Time
}

// enrichWait is how long a request waits before it is asked: the events
// naming sender and recipient may come in another party's batch.
const enrichWait = 5 * tracing.DefaultDelay

// known reports whether the events named the message's sender and
// recipient after all.
func (o *Observer) known(id string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	rec := o.txs[id]
	if rec != nil && rec.Sender != "" && rec.To != "" {
		rec.enrich = 2
		return true
	}
	return false
}

// enricher works the enrichment queue at a bounded rate.
func (o *Observer) enricher(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond) // at most 50 queries a second
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-o.enrichCh:
			if d := enrichWait - o.cfg.Now().Sub(r.at); d > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
			}
			if o.known(r.id) {
				continue
			}
			o.enrichNow(ctx, r.id)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}
}

func (o *Observer) enrichNow(ctx context.Context, id string) *schemas.TxStatus {
	if o.query == nil {
		return nil
	}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	st, err := o.query(qctx, id)
	cancel()
	o.mu.Lock()
	defer o.mu.Unlock()
	rec := o.txs[id]
	if err != nil {
		if rec != nil {
			rec.enrich = -1
		}
		return nil
	}
	if rec != nil {
		rec.enrich = 2
		if rec.Sender == "" {
			rec.Sender = st.Sender
		}
		if rec.To == "" {
			rec.To = st.To
		}
		if rec.Recipient == "" && st.Dest.Address != "" {
			rec.Recipient = st.Dest.Address
		}
		if rec.Dest == "" {
			rec.Dest = st.Dest.Gateway
		}
		if rec.Tx == "" && st.Tx != "" {
			rec.Tx = st.Tx
			o.byTx[st.Tx] = id
		}
		rec.history = st.History
		rec.histState = rec.State
		o.changed(rec)
		o.version++
	}
	return st
}

// Version is a counter bumped by every change the observer sees; pollers
// compare it to skip unchanged snapshots.
func (o *Observer) Version() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.version
}

// Transactions returns the latest transactions, newest first, that match
// q (a message id, a transaction id or its prefix, a client id or address,
// a gateway), at most limit.
func (o *Observer) Transactions(q string, limit int) []TxSummary {
	q = strings.ToLower(strings.TrimSpace(q))
	o.mu.Lock()
	defer o.mu.Unlock()
	out := []TxSummary{}
	n := len(o.order)
	for i := 0; i < n && len(out) < limit; i++ {
		idx := (o.head - 1 - i + 2*n) % n // newest first: the slot before head, going back
		rec := o.txs[o.order[idx]]
		if rec == nil || !rec.matches(q) {
			continue
		}
		sum := rec.TxSummary
		if len(rec.events) > 0 || len(rec.history) > 0 {
			evs := slices.Clone(rec.events)
			slices.SortStableFunc(evs, func(a, b Event) int { return cmp.Compare(a.Seen, b.Seen) })
			sum = withAttempts(sum, evs, rec.history, o.mediumOf)
		}
		out = append(out, sum)
	}
	return out
}

func (r *txRec) matches(q string) bool {
	if q == "" {
		return true
	}
	if strings.HasPrefix(r.MsgID, q) || (r.Tx != "" && strings.HasPrefix(strings.ToLower(r.Tx), q)) {
		return true
	}
	for _, s := range []string{r.Sender, r.Recipient, r.To, r.Origin, r.Dest} {
		if s != "" && strings.EqualFold(s, q) {
			return true
		}
	}
	return len(q) >= 3 && (strings.Contains(strings.ToLower(r.To), q) || strings.Contains(strings.ToLower(r.Sender), q) ||
		strings.Contains(strings.ToLower(r.Recipient), q))
}

// Timeline is one message's protocol steps (patent figure 5 for a real message).
type Timeline struct {
	TxSummary
	Events []Event `json:"events"`
	// History is the brokers' record of the transaction, when they answered.
	History []schemas.HistoryEntry `json:"history,omitempty"`
	// Source says where the steps come from: "trace" (this instance heard
	// them, or loaded them from the bucket when it started), "store" (the
	// bucket: another instance heard them), "history" (the brokers' record
	// only).
	Source string `json:"source"`
	// Audit is the verified state of the message's audit chain
	// (PROTOCOL.md §15), when the view knows the brokers' audit keys.
	Audit *AuditState `json:"audit,omitempty"`
}

// Timeline returns the steps of one message: from the trace events kept in
// memory, completed by the brokers' history; for a message no longer in
// memory, from the brokers' history alone. ok is false when neither knows it.
func (o *Observer) Timeline(ctx context.Context, msgID string) (*Timeline, bool) {
	o.mu.Lock()
	rec := o.txs[msgID]
	if rec == nil {
		if id, found := o.byTx[msgID]; found {
			rec = o.txs[id]
		}
	}
	var tl *Timeline
	needHistory := true
	if rec != nil {
		tl = &Timeline{TxSummary: rec.TxSummary, Events: slices.Clone(rec.events), History: slices.Clone(rec.history), Source: "trace"}
		// in the order they happened: parties' batches arrive in any order
		slices.SortStableFunc(tl.Events, func(a, b Event) int { return cmp.Compare(a.Seen, b.Seen) })
		needHistory = rec.enrich == 0 || rec.enrich == 1 || (rec.enrich == 2 && rec.histState != rec.State)
		msgID = rec.MsgID
	}
	o.mu.Unlock()
	if !needHistory {
		return o.withAttempts(tl), true
	}
	if tl == nil && o.store != nil && schemas.ValidMsgID(msgID) {
		// another instance's, or from before this one started
		if doc, _, err := o.store.get(ctx, msgID); err == nil && doc != nil {
			return o.withAttempts(&Timeline{TxSummary: doc.TxSummary, Events: doc.Events, History: doc.History, Source: "store"}), true
		}
	}
	st := o.enrichNow(ctx, msgID)
	if tl == nil {
		if st == nil {
			return nil, false
		}
		tl = &Timeline{TxSummary: TxSummary{MsgID: st.MsgID, Tx: st.Tx, Dest: st.Dest.Gateway, Sender: st.Sender,
			Recipient: st.Dest.Address, To: st.To, State: st.State}, Events: []Event{}, Source: "history"}
		if len(st.History) > 0 {
			tl.First, tl.Last = st.History[0].At, st.History[len(st.History)-1].At
		}
		tl.History = st.History
		return o.withAttempts(tl), true
	}
	o.mu.Lock()
	if rec := o.txs[msgID]; rec != nil {
		tl.TxSummary = rec.TxSummary
		tl.History = slices.Clone(rec.history)
	}
	o.mu.Unlock()
	return o.withAttempts(tl), true
}

// withAttempts sorts a timeline's steps in the order they happened (the
// parties' batches arrive in any order) and completes it with the
// message's attempts and hold (attempts.go).
func (o *Observer) withAttempts(tl *Timeline) *Timeline {
	slices.SortStableFunc(tl.Events, func(a, b Event) int { return cmp.Compare(a.Seen, b.Seen) })
	o.mu.Lock()
	media := make(map[string]string, len(o.parties))
	for party, p := range o.parties {
		media[party] = p.medium
	}
	o.mu.Unlock()
	tl.TxSummary = withAttempts(tl.TxSummary, tl.Events, tl.History, func(g string) string { return cmp.Or(media[g], g) })
	return tl
}

// Recent returns the latest trace events of any message, oldest first, at most limit.
func (o *Observer) Recent(limit int) []Event {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]Event, 0, len(o.recent))
	out = append(out, o.recent[o.rhead:]...)
	out = append(out, o.recent[:o.rhead]...)
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

// StatsPoint is throughput and latency over one step of time.
type StatsPoint struct {
	T         int64   `json:"t"` // start, Unix ms
	Accepted  int     `json:"accepted"`
	Delivered int     `json:"delivered"`
	Read      int     `json:"read"`
	Failed    int     `json:"failed"`
	Rejected  int     `json:"rejected"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
}

// Stats is throughput and accepted → delivered latency over the window,
// in steps, with a summary of the last minute.
type Stats struct {
	Window int          `json:"window_s"`
	Step   int          `json:"step_s"`
	Points []StatsPoint `json:"points"`
	// Last minute.
	Rate      float64 `json:"rate"` // delivered messages per second
	Accepted  int     `json:"accepted"`
	Delivered int     `json:"delivered"`
	Read      int     `json:"read"`
	Failed    int     `json:"failed"`
	Rejected  int     `json:"rejected"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
}

// Stats returns throughput and latency over the window in steps of step seconds.
func (o *Observer) Stats(step int) Stats {
	if step <= 0 {
		step = 10
	}
	now := o.cfg.Now().Unix()
	win := len(o.secs) - 1
	st := Stats{Window: win, Step: step}
	o.mu.Lock()
	defer o.mu.Unlock()
	start := now - int64(win) + 1
	start -= ((start % int64(step)) + int64(step)) % int64(step) // align to step
	var minute []float64
	for t := start; t <= now; t += int64(step) {
		p := StatsPoint{T: t * 1000}
		var lat []float64
		for s := t; s < t+int64(step) && s <= now; s++ {
			b := &o.secs[s%int64(len(o.secs))]
			if b.sec != s {
				continue
			}
			p.Accepted += b.accepted
			p.Delivered += b.delivered
			p.Read += b.read
			p.Failed += b.failed
			p.Rejected += b.rejected
			lat = append(lat, b.lat...)
			if s > now-60 {
				st.Accepted += b.accepted
				st.Delivered += b.delivered
				st.Read += b.read
				st.Failed += b.failed
				st.Rejected += b.rejected
				minute = append(minute, b.lat...)
			}
		}
		p.P50, p.P99 = percentiles(lat)
		st.Points = append(st.Points, p)
	}
	st.Rate = float64(st.Delivered) / 60
	st.P50, st.P99 = percentiles(minute)
	return st
}

// percentiles returns the 50th and 99th percentile of samples (nearest rank).
func percentiles(s []float64) (p50, p99 float64) {
	if len(s) == 0 {
		return 0, 0
	}
	sort.Float64s(s)
	at := func(q float64) float64 {
		i := int(q*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return round3(at(0.50)), round3(at(0.99))
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

// FabricNode is a gateway, broker or processor group in the fabric picture.
type FabricNode struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"` // gateway, broker, processor
	Name   string `json:"name"`
	Medium string `json:"medium,omitempty"`
	// Queue is the queue group (or subject) the instances share.
	Queue string `json:"queue,omitempty"`
	// Service is the nats micro service the instances serve (`nats micro
	// info <service>`), when they answered $SRV.PING.
	Service   string         `json:"service,omitempty"`
	Instances []NodeInstance `json:"instances"`
	// NotRoutable marks a gateway with no live heartbeat: its micro service
	// answers (or it had traffic in the last minute), but the brokers route
	// no message to it.
	NotRoutable bool `json:"not_routable,omitempty"`
	// Traffic is a gateway's rates and totals, from the counters of its
	// micro service (gateways.go).
	Traffic *GatewayTraffic `json:"traffic,omitempty"`
	// Endpoints are the micro service endpoints' counters, summed over instances.
	Endpoints []EndpointSummary `json:"endpoints,omitempty"`
	// Rejections are MIAP refusals by code, summed over instances.
	Rejections  map[string]int64 `json:"rejections,omitempty"`
	Conversions []string         `json:"conversions,omitempty"`
}

// NodeInstance is one process of a node.
type NodeInstance struct {
	ID      string `json:"id"`
	Version string `json:"version,omitempty"`
	AgeMs   int64  `json:"age_ms"` // since last heard of
	// MIAPMode is a gateway instance's MIAP mode (fast or strict).
	MIAPMode string `json:"miap_mode,omitempty"`
	// Unannounced marks a gateway instance that answers its micro service
	// (and takes transfers in the queue group) without a live heartbeat.
	Unannounced bool `json:"unannounced,omitempty"`
	// Rate is a gateway instance's rates over the last 10 s.
	Rate *GatewayRates `json:"rate,omitempty"`
}

// EndpointSummary is one micro service endpoint over all instances.
type EndpointSummary struct {
	Name     string  `json:"name"`
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	AvgMs    float64 `json:"avg_ms"`
}

// FabricEdge is the message flow between two nodes.
type FabricEdge struct {
	From  string  `json:"from"`
	To    string  `json:"to"`
	Kind  string  `json:"kind"` // imi, im, ack, status, conv, login, routeack
	Rate  float64 `json:"rate"` // per second over the last 10 s
	Count int     `json:"count"`
}

// Fabric is the live picture of the fabric.
type Fabric struct {
	At    int64        `json:"at"`
	Nodes []FabricNode `json:"nodes"`
	Edges []FabricEdge `json:"edges"`
}

// Fabric returns the live picture: nodes from heartbeats, micro service
// pings and recent trace events; edges with rates from trace events.
func (o *Observer) Fabric() Fabric {
	now := o.cfg.Now()
	sec := now.Unix()
	o.mu.Lock()
	defer o.mu.Unlock()
	f := Fabric{At: now.UnixMilli(), Nodes: []FabricNode{}, Edges: []FabricEdge{}}
	nodes := map[string]*FabricNode{}
	add := func(n FabricNode) *FabricNode {
		if old := nodes[n.ID]; old != nil {
			return old
		}
		n.Instances = []NodeInstance{}
		nodes[n.ID] = &n
		return &n
	}
	// brokers: micro service pings, then instances seen in trace events
	b := add(FabricNode{ID: brokerNode, Kind: "broker", Name: schemas.BrokerService, Queue: schemas.BrokerQueue, Service: schemas.BrokerService})
	seenInst := map[string]bool{}
	endpoints := map[string]*EndpointSummary{}
	var epNames []string
	for _, in := range sortedInstances(o.services[schemas.BrokerService]) {
		id := in.ping.Metadata["instance"]
		if id == "" {
			id = in.ping.ID
		}
		seenInst[id] = true
		b.Instances = append(b.Instances, NodeInstance{ID: id, Version: in.ping.Version, AgeMs: now.Sub(in.seen).Milliseconds()})
		if in.stats == nil {
			continue
		}
		for _, ep := range in.stats.Endpoints {
			s := endpoints[ep.Name]
			if s == nil {
				s = &EndpointSummary{Name: ep.Name}
				endpoints[ep.Name] = s
				epNames = append(epNames, ep.Name)
			}
			total := s.AvgMs*float64(s.Requests) + float64(ep.ProcessingTime)/1e6
			s.Requests += ep.NumRequests
			if s.Requests > 0 {
				s.AvgMs = round3(total / float64(s.Requests))
			}
			var data struct {
				Rejections map[string]int64 `json:"rejections"`
			}
			if json.Unmarshal(ep.Data, &data) == nil {
				for c, n := range data.Rejections {
					if b.Rejections == nil {
						b.Rejections = map[string]int64{}
					}
					b.Rejections[c] += n
					// the brokers answer errors from their workers, after
					// micro's handler returned: they count them by code
					s.Errors += int(n)
				}
			}
		}
	}
	for id, t := range o.brokers {
		if now.Sub(t) > time.Minute {
			delete(o.brokers, id)
			continue
		}
		if !seenInst[id] {
			b.Instances = append(b.Instances, NodeInstance{ID: id, AgeMs: now.Sub(t).Milliseconds()})
		}
	}
	sort.Strings(epNames)
	for _, n := range epNames {
		b.Endpoints = append(b.Endpoints, *endpoints[n])
	}
	// gateways and processors from their heartbeats
	for party, p := range o.parties {
		var insts []NodeInstance
		var convs []string
		for id, in := range p.instances {
			if now.Sub(in.seen) > in.ttl {
				if now.Sub(in.seen) > time.Minute {
					delete(p.instances, id)
				}
				continue
			}
			insts = append(insts, NodeInstance{ID: id, AgeMs: now.Sub(in.seen).Milliseconds()})
			for _, c := range in.convs {
				if !slices.Contains(convs, c.Name) {
					convs = append(convs, c.Name)
				}
			}
		}
		if len(insts) == 0 {
			continue
		}
		sort.Slice(insts, func(i, j int) bool { return insts[i].ID < insts[j].ID })
		var n *FabricNode
		if p.medium == "processor" {
			n = add(FabricNode{ID: "proc:" + party, Kind: "processor", Name: party, Medium: "processor", Queue: "uims-proc"})
		} else {
			n = add(FabricNode{ID: gwNode(party), Kind: "gateway", Name: party, Medium: p.medium, Queue: schemas.GatewayIM(party)})
		}
		n.Instances = insts
		sort.Strings(convs)
		n.Conversions = convs
	}
	o.addGateways(now, nodes, add)
	// edges, and nodes that appear only in trace events
	for k, r := range o.edges {
		count := r.sum(sec, 60)
		if count == 0 {
			delete(o.edges, k)
			continue
		}
		for _, id := range []string{k.from, k.to} {
			if nodes[id] == nil {
				kind, name, _ := strings.Cut(id, ":")
				if kind == "gw" {
					kind = "gateway"
				} else if kind == "proc" {
					kind = "processor"
				}
				add(FabricNode{ID: id, Kind: kind, Name: name, Medium: o.mediumOf(name)})
			}
		}
		f.Edges = append(f.Edges, FabricEdge{From: k.from, To: k.to, Kind: k.kind, Count: count,
			Rate: round3(float64(r.sum(sec, 10)) / 10)})
	}
	sort.Slice(f.Edges, func(i, j int) bool {
		a, c := f.Edges[i], f.Edges[j]
		if a.From != c.From {
			return a.From < c.From
		}
		if a.To != c.To {
			return a.To < c.To
		}
		return a.Kind < c.Kind
	})
	// processors' micro service instances (versions)
	for _, in := range sortedInstances(o.services["uims-processor"]) {
		party := in.ping.Metadata["party"]
		if n := nodes["proc:"+party]; n != nil {
			for i := range n.Instances {
				if n.Instances[i].ID == in.ping.Metadata["instance"] {
					n.Instances[i].Version = in.ping.Version
				}
			}
		}
	}
	for _, n := range nodes {
		f.Nodes = append(f.Nodes, *n)
	}
	kindOrder := map[string]int{"broker": 0, "gateway": 1, "processor": 2}
	sort.Slice(f.Nodes, func(i, j int) bool {
		a, c := f.Nodes[i], f.Nodes[j]
		if kindOrder[a.Kind] != kindOrder[c.Kind] {
			return kindOrder[a.Kind] < kindOrder[c.Kind]
		}
		return a.ID < c.ID
	})
	return f
}

func sortedInstances(m map[string]*svcInst) []*svcInst {
	out := make([]*svcInst, 0, len(m))
	for _, in := range m {
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ping.ID < out[j].ping.ID })
	return out
}

// pollServices asks every nats micro service for PING and the UIMS ones for STATS.
func (o *Observer) pollServices(ctx context.Context) {
	now := o.cfg.Now()
	pings := o.collect(ctx, "$SRV.PING")
	seen := map[string]map[string]*svcInst{}
	for _, data := range pings {
		var p micro.Ping
		if json.Unmarshal(data, &p) != nil || p.Name == "" || p.ID == "" {
			continue
		}
		if seen[p.Name] == nil {
			seen[p.Name] = map[string]*svcInst{}
		}
		seen[p.Name][p.ID] = &svcInst{ping: p, seen: now}
	}
	for name, insts := range seen {
		if !strings.HasPrefix(name, "uims-") {
			continue
		}
		for _, data := range o.collect(ctx, "$SRV.STATS."+name) {
			var st micro.Stats
			if json.Unmarshal(data, &st) == nil {
				if in := insts[st.ID]; in != nil {
					in.stats = &st
				}
			}
		}
	}
	o.recordServices(seen, now)
}

// recordServices takes one poll's answers: instances not heard for three
// polls are forgotten, gateways' counters sampled (gateways.go).
func (o *Observer) recordServices(seen map[string]map[string]*svcInst, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for name, old := range o.services {
		for id, in := range old {
			if now.Sub(in.seen) > 3*o.cfg.Poll {
				delete(old, id)
			}
		}
		if len(old) == 0 {
			delete(o.services, name)
		}
	}
	for name, insts := range seen {
		if o.services[name] == nil {
			o.services[name] = map[string]*svcInst{}
		}
		for id, in := range insts {
			o.services[name][id] = in
			if party := gatewayParty(in.ping); party != "" {
				o.sampleGateway(party, in, now)
			}
		}
	}
	o.pruneGateways(now)
	o.version++
}

// collect publishes a request and gathers every answer that arrives
// within a short time: the nats micro discovery pattern.
func (o *Observer) collect(ctx context.Context, subject string) [][]byte {
	inbox := o.nc.NewRespInbox()
	sub, err := o.nc.SubscribeSync(inbox)
	if err != nil {
		return nil
	}
	defer sub.Unsubscribe()
	if err := o.nc.PublishRequest(subject, inbox, nil); err != nil {
		return nil
	}
	var out [][]byte
	wait := 500 * time.Millisecond // for the first answer
	for {
		if ctx.Err() != nil {
			return out
		}
		m, err := sub.NextMsg(wait)
		if err != nil {
			return out
		}
		out = append(out, m.Data)
		wait = 100 * time.Millisecond // for the stragglers
	}
}

// instanceCounts returns the live instances per kind and name, for metrics.
func (o *Observer) instanceCounts() map[[3]string]int {
	f := o.Fabric()
	out := map[[3]string]int{}
	for _, n := range f.Nodes {
		out[[3]string{n.Kind, n.Name, n.Medium}] = len(n.Instances)
	}
	return out
}

// brokerRejections returns the brokers' refusals by endpoint and code,
// summed over live instances, from $SRV.STATS.
func (o *Observer) brokerRejections() map[[2]string]int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[[2]string]int64{}
	for _, in := range o.services[schemas.BrokerService] {
		if in.stats == nil {
			continue
		}
		for _, ep := range in.stats.Endpoints {
			var data struct {
				Rejections map[string]int64 `json:"rejections"`
			}
			if json.Unmarshal(ep.Data, &data) == nil {
				for c, n := range data.Rejections {
					out[[2]string{ep.Name, c}] += n
				}
			}
		}
	}
	return out
}

// load takes a timeline from the bucket: a new one joins the recent
// transactions, a known one gets the events it lacked.
func (o *Observer) load(doc *storedTimeline, rev uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.adopt(doc, rev)
	o.version++
}

// adopt merges a timeline from the bucket into memory.
func (o *Observer) adopt(doc *storedTimeline, rev uint64) {
	rec := o.txs[doc.MsgID]
	if rec == nil {
		rec = o.insert(&txRec{TxSummary: doc.TxSummary})
		// outcomes were counted by the instance that heard them
		switch rec.State {
		case schemas.StatusRead:
			rec.counted = countedDelivered | countedRead
		case schemas.StatusDelivered:
			rec.counted = countedDelivered
		case schemas.StatusFailed:
			rec.counted = countedFailed
		case stateRejected:
			rec.counted = countedRejected
		}
		if len(doc.History) > 0 {
			rec.history, rec.histState, rec.enrich = doc.History, rec.State, 2
		}
	} else {
		rec.TxSummary = mergeSummary(rec.TxSummary, doc.TxSummary)
		if len(doc.History) > len(rec.history) {
			rec.history = doc.History
		}
	}
	rec.events = mergeEvents(rec.events, doc.Events, o.cfg.EventsPerMessage)
	rec.Steps = len(rec.events)
	for _, ev := range rec.events {
		rec.prev = max(rec.prev, ev.Seen)
	}
	if rec.Tx != "" && rec.Tx != rec.MsgID {
		o.byTx[rec.Tx] = rec.MsgID
	}
	rec.rev = rev
}

// flusher writes the timelines that changed to the bucket every Flush, and
// once more when ctx is done.
func (o *Observer) flusher(ctx context.Context) {
	t := time.NewTicker(o.cfg.Flush)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			o.Flush(fctx)
			cancel()
			return
		case <-t.C:
			o.Flush(ctx)
		}
	}
}

// Flush writes the timelines that changed since the last flush to the
// bucket, merging what other instances wrote (store.go), and takes the
// merged timelines into memory. Run calls it every ObserverConfig.Flush;
// tests call it directly.
func (o *Observer) Flush(ctx context.Context) {
	o.mu.Lock()
	if o.store == nil || len(o.dirty) == 0 {
		o.mu.Unlock()
		return
	}
	type job struct {
		doc *storedTimeline
		rev uint64
	}
	jobs := make([]job, 0, len(o.dirty))
	for id := range o.dirty {
		if rec := o.txs[id]; rec != nil {
			jobs = append(jobs, job{&storedTimeline{TxSummary: rec.TxSummary, Events: slices.Clone(rec.events), History: rec.history}, rec.rev})
		}
	}
	clear(o.dirty)
	o.mu.Unlock()
	failed := 0
	var lastErr error
	for _, j := range jobs {
		doc, rev, err := o.store.write(ctx, j.doc, j.rev)
		if err != nil {
			failed, lastErr = failed+1, err
			continue
		}
		o.mu.Lock()
		if rec := o.txs[doc.MsgID]; rec != nil {
			o.adopt(doc, rev)
		}
		o.mu.Unlock()
	}
	if failed > 0 {
		o.log.Warn().Err(lastErr).Int("timelines", failed).Msg("timelines not written to the bucket")
	}
}
