package ops

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/uims/uims/schemas"
)

// gwInst is a gateway instance's answers to $SRV.PING and $SRV.STATS, as
// the kit serves them (gateways/kit/service.go).
type gwInst struct {
	party, medium, id, instance, version string
	started                              time.Time
	received                             int
	stats                                gatewayStats
}

func (g gwInst) svc(now time.Time) *svcInst {
	ident := micro.ServiceIdentity{Name: schemas.GatewayService(g.party), ID: g.id, Version: g.version,
		Metadata: map[string]string{"party": g.party, "medium": g.medium, "instance": g.instance, "miap_mode": "fast", "kind": "gateway"}}
	g.stats.Medium = g.medium
	data, _ := json.Marshal(g.stats)
	return &svcInst{ping: micro.Ping{ServiceIdentity: ident, Type: micro.PingResponseType}, seen: now,
		stats: &micro.Stats{ServiceIdentity: ident, Type: micro.StatsResponseType, Started: g.started, Endpoints: []*micro.EndpointStats{
			{Name: "im", Subject: schemas.GatewayIM(g.party), QueueGroup: schemas.GatewayQueue(g.party), NumRequests: g.received, Data: data},
			{Name: "login", Subject: schemas.GatewayLogin(g.party), QueueGroup: schemas.GatewayQueue(g.party)},
		}}}
}

// poll has the observer take one poll's answers from these instances.
func poll(o *Observer, now time.Time, insts ...gwInst) {
	seen := map[string]map[string]*svcInst{}
	for _, g := range insts {
		name := schemas.GatewayService(g.party)
		if seen[name] == nil {
			seen[name] = map[string]*svcInst{}
		}
		seen[name][g.id] = g.svc(now)
	}
	o.recordServices(seen, now)
}

func node(f Fabric, id string) *FabricNode {
	for i := range f.Nodes {
		if f.Nodes[i].ID == id {
			return &f.Nodes[i]
		}
	}
	return nil
}

func negative(t *testing.T, what string, c GatewayCounts) {
	t.Helper()
	for i, n := range c.fields() {
		if *n < 0 {
			t.Errorf("%s: %s = %d", what, outcomes[i], *n)
		}
	}
}

// Rates from the deltas of the cumulative counters between polls: an
// instance older than the observer is a baseline, one started since counts
// from zero, a counter that went down counts from zero again, and instances
// add up. A gateway without a heartbeat shows, not routable.
func TestObserverGatewayRatesFromMicroStats(t *testing.T) {
	o, clock, reg := newTestObserver(t, ObserverConfig{})
	t0 := clock.Now()
	// web announces itself; mybot only answers its micro service
	ann, _ := json.Marshal(schemas.Announce{V: schemas.Version, Gateway: "web", Medium: "web", Instance: "web-1", TTL: 3000, At: t0.UnixMilli()})
	o.onAnnounce(&nats.Msg{Data: ann})

	web := gwInst{party: "web", medium: "web", id: "W1", instance: "web-1", version: "0.4.0", started: t0.Add(-time.Hour), received: 50,
		stats: gatewayStats{Delivered: 50, Sent: 70}}
	a := gwInst{party: "mybot", medium: "bot", id: "A", instance: "mybot-a", version: "1.2.3", started: t0.Add(-10 * time.Minute), received: 110,
		stats: gatewayStats{Delivered: 100, Failed: 10, Codes: map[string]int64{"REJECTED": 5, "BUSY": 5}}}
	clock.add(time.Second)
	poll(o, clock.Now(), web, a)
	f := o.Fabric()
	bot := node(f, "gw:mybot")
	if bot == nil || bot.Traffic == nil {
		t.Fatalf("no gw:mybot with traffic: %+v", f.Nodes)
	}
	if bot.Traffic.Minute != (GatewayCounts{}) || bot.Traffic.Total.Delivered != 100 || bot.Traffic.TotalCodes["REJECTED"] != 5 {
		t.Fatalf("an instance older than the observer is a baseline: %+v", bot.Traffic)
	}

	// 2 s later: a counted 12 IMs more; b started after the observer
	clock.add(2 * time.Second)
	a.received, a.stats.Delivered, a.stats.Failed, a.stats.Codes = 122, 110, 11, map[string]int64{"REJECTED": 6, "BUSY": 5}
	b := gwInst{party: "mybot", medium: "bot", id: "B", instance: "mybot-b", version: "1.2.4", started: clock.Now().Add(-time.Second), received: 4,
		stats: gatewayStats{Delivered: 4, Sent: 3}}
	web.received, web.stats.Delivered = 60, 60
	poll(o, clock.Now(), web, a, b)
	f = o.Fabric()
	bot = node(f, "gw:mybot")
	tr := bot.Traffic
	if want := (GatewayCounts{Received: 16, Delivered: 14, Failed: 1, Sent: 3}); tr.Minute != want {
		t.Fatalf("minute %+v, want %+v", tr.Minute, want)
	}
	if tr.Rate.Received != 1.6 || tr.Rate.Delivered != 1.4 || tr.Rate.Failed != 0.1 {
		t.Fatalf("rates over 10 s %+v", tr.Rate)
	}
	if len(tr.Codes) != 1 || tr.Codes["REJECTED"] != 1 {
		t.Fatalf("codes of the last minute %v", tr.Codes)
	}
	if !bot.NotRoutable || bot.Kind != "gateway" || bot.Medium != "bot" || bot.Service != "uims-gw-mybot" || len(bot.Instances) != 2 {
		t.Fatalf("a gateway without heartbeat: %+v", bot)
	}
	ia, ib := bot.Instances[0], bot.Instances[1]
	if ia.ID != "mybot-a" || ia.Version != "1.2.3" || ia.MIAPMode != "fast" || !ia.Unannounced || ia.Rate == nil || ia.Rate.Received != 1.2 {
		t.Fatalf("instance a %+v %+v", ia, ia.Rate)
	}
	if ib.ID != "mybot-b" || ib.Version != "1.2.4" || ib.Rate == nil || ib.Rate.Delivered != 0.4 {
		t.Fatalf("instance b %+v %+v", ib, ib.Rate)
	}
	w := node(f, "gw:web")
	if w == nil || w.NotRoutable || len(w.Instances) != 1 || w.Instances[0].Unannounced || w.Instances[0].Version != "0.4.0" ||
		w.Traffic == nil || w.Traffic.Minute.Delivered != 10 || w.Traffic.Minute.Sent != 0 {
		t.Fatalf("web: announced, its version from $SRV.PING, its rates: %+v %+v", w, w.Traffic)
	}

	// b restarted under the same identity: its counters went down
	clock.add(2 * time.Second)
	b.received, b.stats.Delivered, b.stats.Sent = 1, 1, 0
	poll(o, clock.Now(), web, a, b)
	tr = node(o.Fabric(), "gw:mybot").Traffic
	negative(t, "minute", tr.Minute)
	if tr.Minute.Received != 17 || tr.Minute.Delivered != 15 || tr.Minute.Sent != 3 {
		t.Fatalf("after a counter reset: %+v", tr.Minute)
	}

	// 11 s without news: no rate, the minute's totals still there
	clock.add(11 * time.Second)
	tr = node(o.Fabric(), "gw:mybot").Traffic
	if tr.Rate != (GatewayRates{}) || tr.Minute.Delivered != 15 {
		t.Fatalf("11 s later: rate %+v minute %+v", tr.Rate, tr.Minute)
	}

	got := counters(t, reg)
	for oc, want := range map[string]float64{"received": 17, "delivered": 15, "failed": 1, "sent": 3, "refused": 0} {
		k := `uims_gateway_messages_total{gateway="mybot",medium="bot",outcome="` + oc + `"}`
		if v, ok := got[k]; !ok || v != want {
			t.Errorf("%s = %v (%v), want %v", k, v, ok, want)
		}
	}
	if k := `uims_gateway_codes_total{code="REJECTED",gateway="mybot",medium="bot"}`; got[k] != 1 {
		t.Errorf("%s = %v, want 1", k, got[k])
	}

	// gone: forgotten once not polled and a minute without traffic
	clock.add(time.Minute)
	o.recordServices(nil, clock.Now())
	if n := node(o.Fabric(), "gw:mybot"); n != nil {
		t.Fatalf("a gateway gone a minute ago: %+v", n)
	}
}

// counters gathers the counters of reg by name and labels, as /metrics
// writes them.
func counters(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.GetCounter() == nil {
				continue
			}
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			out[mf.GetName()+"{"+strings.Join(ls, ",")+"}"] = m.GetCounter().GetValue()
		}
	}
	return out
}
