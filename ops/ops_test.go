package ops

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/uims/uims/schemas"
)

// fakeClock is a settable clock for the observer.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const (
	msgA = "0123456789abcdef0123456789abcdef"
	msgB = "fedcba9876543210fedcba9876543210"
)

// ev is a trace event as the observer hears it from source.
func ev(source string, e schemas.TraceEvent) Event { return Event{TraceEvent: e, Source: source} }

// webToWeb is the trace of one message from alice to bob on the web
// gateway, in the order a real fabric publishes it, then bob reading it.
func webToWeb(id string) []Event {
	return []Event{
		ev("web", schemas.TraceEvent{Step: "accepted", MsgID: id, Party: "web", By: "web-1", Result: "ok"}),
		ev("broker", schemas.TraceEvent{Step: "imi", MsgID: id, Tx: "tx-" + id[:6], Party: "web", By: "broker-1", Result: "routed", Dest: "web", ID: "AbCdEf12"}),
		ev("web", schemas.TraceEvent{Step: "route", MsgID: id, Tx: "tx-" + id[:6], Party: "web", By: "web-1", Result: "verified", Dest: "web"}),
		ev("web", schemas.TraceEvent{Step: "deliver", MsgID: id, Tx: "tx-" + id[:6], Party: "web", By: "web-1", Result: "delivered"}),
		ev("broker", schemas.TraceEvent{Step: "ack", MsgID: id, Tx: "tx-" + id[:6], Party: "web", By: "broker-1", Result: "applied", Status: "delivered", IDMatch: true}),
		ev("web", schemas.TraceEvent{Step: "ack", MsgID: id, Tx: "tx-" + id[:6], Party: "web", By: "web-1", Result: "delivered"}),
		ev("web", schemas.TraceEvent{Step: "transfer", MsgID: id, Tx: "tx-" + id[:6], Party: "web", By: "web-1", Result: "delivered"}),
		ev("broker", schemas.TraceEvent{Step: "notify", MsgID: id, Tx: "tx-" + id[:6], Party: "web", By: "broker-1", Result: "delivered"}),
		ev("web", schemas.TraceEvent{Step: "notified", MsgID: id, Tx: "tx-" + id[:6], Party: "web", By: "web-1", Result: "delivered"}),
		ev("broker", schemas.TraceEvent{Step: "ack", MsgID: id, Tx: "tx-" + id[:6], Party: "web", By: "broker-1", Result: "applied", Status: "read", IDMatch: true}),
		ev("web", schemas.TraceEvent{Step: "ack", MsgID: id, Tx: "tx-" + id[:6], Party: "web", By: "web-1", Result: "read"}),
		ev("broker", schemas.TraceEvent{Step: "notify", MsgID: id, Tx: "tx-" + id[:6], Party: "web", By: "broker-1", Result: "read"}),
		ev("web", schemas.TraceEvent{Step: "notified", MsgID: id, Tx: "tx-" + id[:6], Party: "web", By: "web-1", Result: "read"}),
	}
}

func newTestObserver(t *testing.T, cfg ObserverConfig) (*Observer, *fakeClock, *prometheus.Registry) {
	t.Helper()
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	cfg.Now = clock.Now
	reg := prometheus.NewRegistry()
	o := NewObserver(nil, newFabricMetrics(reg), cfg, zerolog.Nop())
	return o, clock, reg
}

func TestObserverFollowsOneMessage(t *testing.T) {
	o, clock, _ := newTestObserver(t, ObserverConfig{})
	for _, ev := range webToWeb(msgA) {
		clock.add(700 * time.Microsecond)
		ev.At = clock.Now().UnixMilli()
		o.Ingest(ev)
	}
	tl, ok := o.Timeline(context.Background(), msgA)
	if !ok {
		t.Fatal("no timeline")
	}
	if tl.State != "read" || tl.Origin != "web" || tl.Dest != "web" || tl.Tx != "tx-012345" || tl.Source != "trace" {
		t.Fatalf("timeline summary %+v", tl.TxSummary)
	}
	if len(tl.Events) != 13 || !tl.Events[4].IDMatch {
		t.Fatalf("events %+v", tl.Events)
	}
	// accepted → delivered: three steps of 700 µs
	if tl.LatencyMs < 2.0 || tl.LatencyMs > 2.2 {
		t.Fatalf("latency %v ms", tl.LatencyMs)
	}
	// found by the transaction id too
	if tl2, ok := o.Timeline(context.Background(), "tx-012345"); !ok || tl2.MsgID != msgA {
		t.Fatalf("by tx: %v %+v", ok, tl2)
	}
	st := o.Stats(10)
	if st.Accepted != 1 || st.Delivered != 1 || st.Read != 1 || st.Failed != 0 || st.P50 < 2.0 || st.P99 < 2.0 {
		t.Fatalf("stats %+v", st)
	}
	f := o.Fabric()
	edges := map[string]int{}
	for _, e := range f.Edges {
		edges[e.From+">"+e.To+":"+e.Kind] = e.Count
	}
	want := map[string]int{"gw:web>broker:imi": 1, "gw:web>broker:ack": 2, "broker>gw:web:status": 2, "gw:web>gw:web:im": 1}
	for k, n := range want {
		if edges[k] != n {
			t.Errorf("edge %s = %d, want %d (all %v)", k, edges[k], n, edges)
		}
	}
	// the broker instance is known from its trace events
	if f.Nodes[0].Kind != "broker" || len(f.Nodes[0].Instances) != 1 || f.Nodes[0].Instances[0].ID != "broker-1" {
		t.Fatalf("nodes %+v", f.Nodes)
	}
}

func TestObserverRejectedAndSearch(t *testing.T) {
	o, _, _ := newTestObserver(t, ObserverConfig{})
	for _, ev := range webToWeb(msgA) {
		o.Ingest(ev)
	}
	o.Ingest(ev("web", schemas.TraceEvent{Step: "accepted", MsgID: msgB, Party: "web", Result: "ok"}))
	o.Ingest(ev("web", schemas.TraceEvent{Step: "imi", MsgID: msgB, Party: "web", Result: "UNKNOWN_RECIPIENT"}))
	tl, ok := o.Timeline(context.Background(), msgB)
	if !ok || tl.State != stateRejected || tl.Code != "UNKNOWN_RECIPIENT" {
		t.Fatalf("rejected: %+v", tl)
	}
	if st := o.Stats(10); st.Rejected != 1 || st.Delivered != 1 {
		t.Fatalf("stats %+v", st)
	}
	all := o.Transactions("", 10)
	if len(all) != 2 || all[0].MsgID != msgB || all[1].MsgID != msgA {
		t.Fatalf("newest first: %+v", all)
	}
	if got := o.Transactions("fedcba", 10); len(got) != 1 || got[0].MsgID != msgB {
		t.Fatalf("by id prefix: %+v", got)
	}
	if got := o.Transactions("nobody", 10); len(got) != 0 {
		t.Fatalf("no match: %+v", got)
	}
	// a client search uses the sender the brokers named
	o.Ingest(ev("broker", schemas.TraceEvent{Step: "imi", MsgID: msgA, Party: "web", Result: "routed", Sender: "alice", Recipient: "bob"}))
	if got := o.Transactions("ALICE", 10); len(got) != 1 || got[0].MsgID != msgA {
		t.Fatalf("by client: %+v", got)
	}
}

func TestObserverIsBounded(t *testing.T) {
	o, _, _ := newTestObserver(t, ObserverConfig{Messages: 3, EventsPerMessage: 4, Recent: 5})
	ids := []string{
		"00000000000000000000000000000001", "00000000000000000000000000000002", "00000000000000000000000000000003",
		"00000000000000000000000000000004", "00000000000000000000000000000005",
	}
	for _, id := range ids {
		for _, ev := range webToWeb(id) {
			o.Ingest(ev)
		}
	}
	got := o.Transactions("", 100)
	if len(got) != 3 || got[0].MsgID != ids[4] || got[2].MsgID != ids[2] {
		t.Fatalf("ring: %+v", got)
	}
	if _, ok := o.Timeline(context.Background(), ids[0]); ok {
		t.Fatal("evicted message still known (and no history to fall back on)")
	}
	tl, _ := o.Timeline(context.Background(), ids[4])
	if len(tl.Events) != 4 || tl.Steps != 4 || tl.State != "read" {
		t.Fatalf("events per message bound: %d events, state %s", len(tl.Events), tl.State)
	}
	if r := o.Recent(100); len(r) != 5 || r[4].Step != "notified" {
		t.Fatalf("recent: %+v", r)
	}
}

func TestPercentiles(t *testing.T) {
	var s []float64
	for i := 1; i <= 100; i++ {
		s = append(s, float64(101-i))
	}
	p50, p99 := percentiles(s)
	if p50 != 50 || p99 != 99 {
		t.Fatalf("p50 %v p99 %v", p50, p99)
	}
	if a, b := percentiles(nil); a != 0 || b != 0 {
		t.Fatal("empty")
	}
}

// opsServer serves the operator API and /metrics of an observer with no
// fabric behind it.
func opsServer(t *testing.T, token string) (*httptest.Server, *Observer) {
	t.Helper()
	o, _, reg := newTestObserver(t, ObserverConfig{})
	o.cfg.Now = time.Now
	s := &Server{cfg: Config{Token: token}, obs: o, gatherer: reg, httpm: newHTTPMetrics(reg)}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv, o
}

func get(t *testing.T, url, token string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func TestOpsAPIWantsTheOperatorToken(t *testing.T) {
	srv, o := opsServer(t, "op-secret")
	for _, ev := range webToWeb(msgA) {
		o.Ingest(ev)
	}
	for _, path := range []string{"/ops/api/fabric", "/ops/api/stats", "/ops/api/transactions", "/ops/api/messages/" + msgA, "/ops/api/events", "/ops/api/stream"} {
		if res, _ := get(t, srv.URL+path, ""); res.StatusCode != 401 || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s without token: %d", path, res.StatusCode)
		}
		if res, _ := get(t, srv.URL+path, "op-secreT"); res.StatusCode != 401 {
			t.Errorf("%s with a wrong token: %d", path, res.StatusCode)
		}
		if res, _ := get(t, srv.URL+path, "alice-token"); res.StatusCode != 401 {
			t.Errorf("%s with a client token: %d", path, res.StatusCode)
		}
	}
	res, body := get(t, srv.URL+"/ops/api/messages/"+msgA, "op-secret")
	var tl Timeline
	if res.StatusCode != 200 || json.Unmarshal([]byte(body), &tl) != nil || tl.State != "read" || len(tl.Events) != 13 {
		t.Fatalf("timeline: %d %s", res.StatusCode, body)
	}
	if res, _ := get(t, srv.URL+"/ops/api/messages/"+msgB, "op-secret"); res.StatusCode != 404 {
		t.Fatalf("unknown message: %d", res.StatusCode)
	}
	res, body = get(t, srv.URL+"/ops/api/transactions?q=0123", "op-secret")
	if res.StatusCode != 200 || !strings.Contains(body, msgA) {
		t.Fatalf("transactions: %d %s", res.StatusCode, body)
	}
	// A token in the URL only for the event stream (EventSource).
	res, body = get(t, srv.URL+"/ops/api/fabric?access_token=op-secret", "")
	if res.StatusCode != 401 || !strings.Contains(body, "in the URL refused") {
		t.Fatalf("fabric by access_token: %d %s, want 401", res.StatusCode, body)
	}
	res, body = get(t, srv.URL+"/ops/api/fabric?access_token=op-secret", "op-secret")
	if res.StatusCode != 401 {
		t.Fatalf("fabric by header and access_token: %d %s, want 401", res.StatusCode, body)
	}
}

func TestOpsOffWithoutToken(t *testing.T) {
	srv, _ := opsServer(t, "")
	if res, _ := get(t, srv.URL+"/ops/api/fabric", "anything"); res.StatusCode != 404 {
		t.Fatalf("no operator token configured: %d", res.StatusCode)
	}
	if res, _ := get(t, srv.URL+"/ops/api/fabric", ""); res.StatusCode != 404 {
		t.Fatalf("no operator token configured, none sent: %d", res.StatusCode)
	}
}

func TestOpsStreamSendsSnapshots(t *testing.T) {
	srv, o := opsServer(t, "op")
	for _, ev := range webToWeb(msgA) {
		o.Ingest(ev)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/ops/api/stream?access_token=op", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(nil, 1<<20)
	var event string
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "event: "); ok {
			event = v
		}
		if v, ok := strings.CutPrefix(line, "data: "); ok && event == "snapshot" {
			var snap snapshot
			if err := json.Unmarshal([]byte(v), &snap); err != nil {
				t.Fatal(err)
			}
			if snap.Stats.Delivered != 1 || len(snap.Fabric.Edges) == 0 || snap.Version == 0 {
				t.Fatalf("snapshot %+v", snap)
			}
			return
		}
	}
	t.Fatalf("no snapshot: %v", sc.Err())
}

func TestMetricsFromTraceEvents(t *testing.T) {
	srv, o := opsServer(t, "op")
	for _, ev := range webToWeb(msgA) {
		o.Ingest(ev)
	}
	o.Ingest(ev("web", schemas.TraceEvent{Step: "accepted", MsgID: msgB, Party: "web", Result: "ok"}))
	o.Ingest(ev("web", schemas.TraceEvent{Step: "imi", MsgID: msgB, Party: "web", Result: "UNKNOWN_RECIPIENT"}))
	get(t, srv.URL+"/ops/api/fabric", "")   // a 401, counted by route
	get(t, srv.URL+"/ops/api/fabric", "op") // a 200
	res, body := get(t, srv.URL+"/metrics", "")
	if res.StatusCode != 200 {
		t.Fatalf("metrics: %d", res.StatusCode)
	}
	for _, want := range []string{
		`uims_fabric_messages_total{dest_medium="web",origin_medium="web",outcome="delivered"} 1`,
		`uims_fabric_messages_total{dest_medium="web",origin_medium="web",outcome="read"} 1`,
		`uims_fabric_messages_total{dest_medium="",origin_medium="web",outcome="rejected"} 1`,
		`uims_fabric_rejections_total{code="UNKNOWN_RECIPIENT",source="web",step="imi"} 1`,
		`uims_fabric_trace_events_total{result="applied",source="broker",step="ack"} 2`,
		`uims_fabric_step_latency_seconds_count{step="broker.imi"} 1`,
		`uims_fabric_delivery_latency_seconds_count{dest_medium="web"} 1`,
		`uims_fabric_instances{kind="broker",medium="",name="uims-broker"} 1`,
		`uims_ops_http_requests_total{code="401",route="GET /ops/api/fabric"} 1`,
		`uims_ops_http_requests_total{code="200",route="GET /ops/api/fabric"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
}

// In strict mode the gateway traces its TSCS login, and the broker's
// routeack event names the transaction where the message id should be.
func TestObserverStrictModeSteps(t *testing.T) {
	o, _, _ := newTestObserver(t, ObserverConfig{})
	tx := "tx-strict"
	for _, ev := range []Event{
		ev("web", schemas.TraceEvent{Step: "accepted", MsgID: msgA, Party: "web", Result: "ok"}),
		ev("web", schemas.TraceEvent{Step: "login", MsgID: msgA, Party: "web", Result: "ok"}),
		ev("broker", schemas.TraceEvent{Step: "login", Party: "web", By: "broker-1", Result: "ok"}),
		ev("broker", schemas.TraceEvent{Step: "imi", MsgID: msgA, Tx: tx, Party: "web", By: "broker-1", Result: "routed", Dest: "web"}),
		ev("web", schemas.TraceEvent{Step: "route", MsgID: msgA, Tx: tx, Party: "web", Result: "verified", Dest: "web"}),
		ev("broker", schemas.TraceEvent{Step: "routeack", MsgID: tx, Tx: tx, Party: "web", By: "broker-1", Result: "ok"}),
	} {
		o.Ingest(ev)
	}
	tl, ok := o.Timeline(context.Background(), msgA)
	if !ok || len(tl.Events) != 5 || tl.Events[4].Step != "routeack" || tl.State != "routed" {
		t.Fatalf("strict timeline %+v", tl)
	}
	if r := o.Recent(10); len(r) != 6 {
		t.Fatalf("the broker's login (no message id) is in the feed: %d events", len(r))
	}
}

// Parties publish their events in batches, so the observer hears the
// broker's events and the gateway's in either order: the timeline, the
// state, the outcome counts and the delivery latency come out the same.
func TestObserverEventsFromBatchesInAnyOrder(t *testing.T) {
	o, clock, _ := newTestObserver(t, ObserverConfig{})
	start := clock.Now()
	evs := webToWeb(msgA)
	for i := range evs {
		evs[i].Seen = start.Add(time.Duration(i+1) * 700 * time.Microsecond).UnixMicro() // as dated from the batches' ages
	}
	// the broker's batch first, then the web gateway's
	var broker, gw []Event
	for _, ev := range evs {
		if ev.Source == "broker" {
			broker = append(broker, ev)
		} else {
			gw = append(gw, ev)
		}
	}
	clock.add(50 * time.Millisecond)
	for _, ev := range append(broker, gw...) {
		o.Ingest(ev)
	}
	tl, ok := o.Timeline(context.Background(), msgA)
	if !ok {
		t.Fatal("no timeline")
	}
	if tl.State != "read" {
		t.Fatalf("state %s", tl.State)
	}
	for i, ev := range tl.Events {
		if ev.Step != evs[i].Step || ev.Source != evs[i].Source {
			t.Fatalf("timeline event %d is %s/%s, want %s/%s (in the order they happened)", i, ev.Source, ev.Step, evs[i].Source, evs[i].Step)
		}
	}
	// accepted (1st) → delivered by the broker's ack (5th): 4 × 700 µs
	if tl.LatencyMs < 2.7 || tl.LatencyMs > 2.9 {
		t.Fatalf("latency %v ms, want 2.8", tl.LatencyMs)
	}
	if st := o.Stats(10); st.Delivered != 1 || st.Read != 1 || st.P50 < 2.7 {
		t.Fatalf("stats %+v", st)
	}
}
