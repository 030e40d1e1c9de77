package ops

import (
	"maps"
	"sort"
	"strings"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go/micro"

	"github.com/uims/uims/schemas"
)

// Gateways in the fabric picture from their nats micro services. Every
// gateway, built-in or a bot on the SDK, serves schemas.GatewayService(party)
// with metadata party, medium, instance, miap_mode and kind=gateway; the
// STATS data of its im endpoint holds its cumulative outcome counters. The
// observer turns the deltas of those counters between polls into rates:
// per instance, summed over the instances of a gateway.

// gatewayStats is the data of a gateway's im endpoint in $SRV.STATS.
// The source of truth is kit.GatewayStats (gateways/kit/service.go): ops
// meets the components only on NATS subjects and schemas types (docs/OPS.md)
// and does not import the kit, so it decodes the same JSON fields here.
type gatewayStats struct {
	Medium      string           `json:"medium"`
	Delivered   int64            `json:"delivered"`
	Transferred int64            `json:"transferred"`
	Failed      int64            `json:"failed"`
	Refused     int64            `json:"refused"`
	Sent        int64            `json:"sent"`
	SendFailed  int64            `json:"send_failed"`
	Acks        int64            `json:"acks"`
	Notified    int64            `json:"notified"`
	Codes       map[string]int64 `json:"codes,omitempty"`
}

// GatewayCounts are a gateway's outcomes over a span of time.
type GatewayCounts struct {
	// Received is the IM transfers that reached the gateway (requests to
	// its im endpoint), whatever became of them.
	Received int64 `json:"received"`
	// Delivered and Transferred are transfers the medium took: delivered
	// to the recipient, or handed on with the outcome to come.
	Delivered   int64 `json:"delivered"`
	Transferred int64 `json:"transferred"`
	// Failed is transfers the medium could not deliver (a bot's Reject
	// among them); Refused is transfers the gateway refused before the
	// medium saw them (ticket, digest, expiry: PROTOCOL.md §6.6).
	Failed  int64 `json:"failed"`
	Refused int64 `json:"refused"`
	// Sent and SendFailed are messages the gateway originated: routed by
	// the brokers, or refused by them or the destination.
	Sent       int64 `json:"sent"`
	SendFailed int64 `json:"send_failed"`
}

// GatewayRates are GatewayCounts per second.
type GatewayRates struct {
	Received    float64 `json:"received"`
	Delivered   float64 `json:"delivered"`
	Transferred float64 `json:"transferred"`
	Failed      float64 `json:"failed"`
	Refused     float64 `json:"refused"`
	Sent        float64 `json:"sent"`
	SendFailed  float64 `json:"send_failed"`
}

// GatewayTraffic is what a gateway's micro service says of its traffic.
type GatewayTraffic struct {
	// Rate is per second over the last 10 s.
	Rate GatewayRates `json:"rate"`
	// Minute is the totals over the last 60 s, and Codes the refusals and
	// failures by MIAP code among them.
	Minute GatewayCounts    `json:"minute"`
	Codes  map[string]int64 `json:"codes,omitempty"`
	// Total is the counters as the live instances report them (each since
	// it started), summed, and TotalCodes their codes.
	Total      GatewayCounts    `json:"total"`
	TotalCodes map[string]int64 `json:"total_codes,omitempty"`
}

// outcomes names the fields of GatewayCounts, as in the JSON and in the
// outcome label of uims_gateway_messages_total.
var outcomes = []string{"received", "delivered", "transferred", "failed", "refused", "sent", "send_failed"}

func (c *GatewayCounts) fields() [7]*int64 {
	return [7]*int64{&c.Received, &c.Delivered, &c.Transferred, &c.Failed, &c.Refused, &c.Sent, &c.SendFailed}
}

func (c *GatewayCounts) add(d GatewayCounts) {
	f, g := c.fields(), d.fields()
	for i := range f {
		*f[i] += *g[i]
	}
}

// since returns the increase from prev to c, field by field. A counter
// that went down was reset (a process that started again under the same
// identity): its increase is what it counted since, never negative.
func (c GatewayCounts) since(prev GatewayCounts) GatewayCounts {
	d := c
	f, p := d.fields(), prev.fields()
	for i := range f {
		*f[i] = increase(*f[i], *p[i])
	}
	return d
}

func increase(cur, prev int64) int64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

// codesSince is since for the counts by code.
func codesSince(cur, prev map[string]int64) map[string]int64 {
	var d map[string]int64
	for c, n := range cur {
		if inc := increase(n, prev[c]); inc > 0 {
			if d == nil {
				d = map[string]int64{}
			}
			d[c] = inc
		}
	}
	return d
}

func (c GatewayCounts) per(seconds float64) GatewayRates {
	r := func(n int64) float64 { return round3(float64(n) / seconds) }
	return GatewayRates{Received: r(c.Received), Delivered: r(c.Delivered), Transferred: r(c.Transferred),
		Failed: r(c.Failed), Refused: r(c.Refused), Sent: r(c.Sent), SendFailed: r(c.SendFailed)}
}

// trafficRing keeps a minute of counter increases, by the second they
// were polled in.
type trafficRing [60]struct {
	sec   int64
	n     GatewayCounts
	codes map[string]int64
}

func (r *trafficRing) add(sec int64, d GatewayCounts, codes map[string]int64) {
	s := &r[sec%60]
	if s.sec != sec {
		s.sec, s.n, s.codes = sec, GatewayCounts{}, nil
	}
	s.n.add(d)
	for c, n := range codes {
		if s.codes == nil {
			s.codes = map[string]int64{}
		}
		s.codes[c] += n
	}
}

// sum returns the increases over the last span seconds up to now.
func (r *trafficRing) sum(now, span int64) (GatewayCounts, map[string]int64) {
	var t GatewayCounts
	var codes map[string]int64
	for i := range r {
		s := &r[i]
		if s.sec <= now-span || s.sec > now {
			continue
		}
		t.add(s.n)
		for c, n := range s.codes {
			if codes == nil {
				codes = map[string]int64{}
			}
			codes[c] += n
		}
	}
	return t, codes
}

// gwTraffic is one gateway's counters as polled.
type gwTraffic struct {
	medium string
	ring   trafficRing            // increases summed over instances
	insts  map[string]*gwInstance // by micro service instance id
}

// gwInstance is one instance's counters at the last poll.
type gwInstance struct {
	last  GatewayCounts // as last reported
	codes map[string]int64
	ring  trafficRing
	seen  time.Time
}

// gatewayParty returns the party of a gateway's micro service instance,
// or "" if the service is not a gateway's.
func gatewayParty(p micro.Ping) string {
	party, ok := strings.CutPrefix(p.Name, "uims-gw-")
	if !ok || (p.Metadata["kind"] != "" && p.Metadata["kind"] != "gateway") {
		return ""
	}
	if mp := p.Metadata["party"]; mp != "" {
		party = mp
	}
	if p.Name != schemas.GatewayService(party) {
		return ""
	}
	return party
}

// gatewayCounts reads a gateway's counters from its STATS: received from
// micro's count of im requests, the rest from the kit's data.
func gatewayCounts(st *micro.Stats) (GatewayCounts, map[string]int64, string, bool) {
	for _, ep := range st.Endpoints {
		if ep == nil || ep.Name != "im" {
			continue
		}
		var d gatewayStats
		if len(ep.Data) > 0 && json.Unmarshal(ep.Data, &d) != nil {
			return GatewayCounts{}, nil, "", false
		}
		return GatewayCounts{Received: int64(ep.NumRequests), Delivered: d.Delivered, Transferred: d.Transferred,
			Failed: d.Failed, Refused: d.Refused, Sent: d.Sent, SendFailed: d.SendFailed}, d.Codes, d.Medium, true
	}
	return GatewayCounts{}, nil, "", false
}

// sampleGateway takes one poll's STATS of a gateway instance: the
// increases since the previous poll go to the instance's and the gateway's
// rings and to the metrics. An instance seen for the first time counts from
// zero if it started after the observer and within the last minute (all
// its counts are recent); otherwise its counters are only the baseline.
// Called with o.mu held.
func (o *Observer) sampleGateway(party string, in *svcInst, now time.Time) {
	if in.stats == nil {
		return
	}
	cur, codes, medium, ok := gatewayCounts(in.stats)
	if !ok {
		return
	}
	if medium == "" {
		medium = in.ping.Metadata["medium"]
	}
	g := o.gateways[party]
	if g == nil {
		g = &gwTraffic{insts: map[string]*gwInstance{}}
		o.gateways[party] = g
	}
	g.medium = medium
	gi := g.insts[in.ping.ID]
	if gi == nil {
		gi = &gwInstance{}
		started := in.stats.Started
		if started.IsZero() || !started.After(o.started) || now.Sub(started) > time.Minute {
			gi.last, gi.codes = cur, maps.Clone(codes)
		}
		g.insts[in.ping.ID] = gi
		o.metrics.gatewaySeen(party, medium)
	}
	d, dc := cur.since(gi.last), codesSince(codes, gi.codes)
	gi.last, gi.codes, gi.seen = cur, maps.Clone(codes), now
	sec := now.Unix()
	gi.ring.add(sec, d, nil)
	g.ring.add(sec, d, dc)
	o.metrics.gatewayCounts(party, medium, d, dc)
}

// pruneGateways forgets the instances no longer polled, and the gateways
// with neither instances nor traffic in the last minute. Called with o.mu held.
func (o *Observer) pruneGateways(now time.Time) {
	for party, g := range o.gateways {
		for id, gi := range g.insts {
			if now.Sub(gi.seen) > 3*o.cfg.Poll {
				delete(g.insts, id)
			}
		}
		if len(g.insts) == 0 {
			if t, _ := g.ring.sum(now.Unix(), 60); t == (GatewayCounts{}) {
				delete(o.gateways, party)
			}
		}
	}
}

// traffic returns a gateway's traffic at now, or nil if its micro service
// was never polled. Called with o.mu held.
func (g *gwTraffic) traffic(now int64) *GatewayTraffic {
	t := &GatewayTraffic{}
	ten, _ := g.ring.sum(now, 10)
	t.Rate = ten.per(10)
	t.Minute, t.Codes = g.ring.sum(now, 60)
	for _, gi := range g.insts {
		t.Total.add(gi.last)
		for c, n := range gi.codes {
			if t.TotalCodes == nil {
				t.TotalCodes = map[string]int64{}
			}
			t.TotalCodes[c] += n
		}
	}
	return t
}

// addGateways completes the picture with the gateways' micro services:
// each instance's version and MIAP mode and its rates, and the gateway's
// traffic. A gateway that answers on its micro service but has no live
// heartbeat still shows, as not routable: the brokers route only to
// gateways they hear announce themselves. Called with o.mu held.
func (o *Observer) addGateways(now time.Time, nodes map[string]*FabricNode, add func(FabricNode) *FabricNode) {
	sec := now.Unix()
	names := make([]string, 0, len(o.services))
	for name := range o.services {
		if strings.HasPrefix(name, "uims-gw-") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		for _, in := range sortedInstances(o.services[name]) {
			party := gatewayParty(in.ping)
			if party == "" {
				continue
			}
			n := nodes[gwNode(party)]
			if n == nil {
				n = add(FabricNode{ID: gwNode(party), Kind: "gateway", Name: party, Medium: in.ping.Metadata["medium"],
					Queue: schemas.GatewayIM(party), NotRoutable: true})
			}
			n.Service = name
			if n.Medium == "" {
				n.Medium = in.ping.Metadata["medium"]
			}
			id := in.ping.Metadata["instance"]
			if id == "" {
				id = in.ping.ID
			}
			i := -1
			for j := range n.Instances {
				if n.Instances[j].ID == id {
					i = j
				}
			}
			if i < 0 {
				n.Instances = append(n.Instances, NodeInstance{ID: id, AgeMs: now.Sub(in.seen).Milliseconds(), Unannounced: true})
				i = len(n.Instances) - 1
			}
			ni := &n.Instances[i]
			ni.Version, ni.MIAPMode = in.ping.Version, in.ping.Metadata["miap_mode"]
			if g := o.gateways[party]; g != nil {
				if gi := g.insts[in.ping.ID]; gi != nil {
					ten, _ := gi.ring.sum(sec, 10)
					r := ten.per(10)
					ni.Rate = &r
				}
			}
		}
	}
	for party, g := range o.gateways {
		n := nodes[gwNode(party)]
		if n == nil { // gone, with traffic in the last minute
			n = add(FabricNode{ID: gwNode(party), Kind: "gateway", Name: party, Medium: g.medium,
				Queue: schemas.GatewayIM(party), Service: schemas.GatewayService(party), NotRoutable: true})
		}
		n.Traffic = g.traffic(sec)
	}
	for _, n := range nodes {
		if n.Kind == "gateway" {
			sort.Slice(n.Instances, func(i, j int) bool { return n.Instances[i].ID < n.Instances[j].ID })
		}
	}
}
