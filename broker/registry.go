package broker

import (
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uims/uims/schemas"
)

// registry is the brokers' view of live gateways and processors, built from
// their signed heartbeats (PROTOCOL.md §6.12). Every broker instance hears
// every heartbeat, so the view needs no shared store; a broker that starts
// knows the fabric after one heartbeat interval.
type registry struct {
	mu        sync.RWMutex
	instances map[string]map[string]*schemas.Announce // gateway → instance → latest announce
	// born is when the registry started listening and learn how long it
	// listens before it takes a conversion it never heard of for missing
	// (settled).
	born  time.Time
	learn time.Duration
	// version counts the changes to processors' announcements (add,
	// forget); cache holds the live offers for a version and a span of time.
	version atomic.Uint64
	cache   atomic.Pointer[offerCache]
}

// offerCache is what conversions(now, true) returned for a registry
// version, valid for now in [from, until): until the first live processor
// announcement expires.
type offerCache struct {
	version     uint64
	from, until int64
	offers      []offer
}

// learnTime is how long a new registry listens before a conversion it has
// not heard of counts as missing: the default announcement TTL (§6.12).
const learnTime = 3 * time.Second

func newRegistry() *registry {
	return &registry{instances: make(map[string]map[string]*schemas.Announce), born: time.Now(), learn: learnTime}
}

// add records a heartbeat. An announcement older than the one already
// known for the instance is ignored, so a replayed heartbeat extends nothing.
func (r *registry) add(a *schemas.Announce) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.instances[a.Gateway]
	if m == nil {
		m = make(map[string]*schemas.Announce)
		r.instances[a.Gateway] = m
	}
	old := m[a.Instance]
	if old != nil && old.At >= a.At {
		return
	}
	m[a.Instance] = a
	if a.Medium == schemas.MediumProcessor || (old != nil && old.Medium == schemas.MediumProcessor) {
		r.version.Add(1)
	}
}

// forget drops every gateway and processor that keep refuses: parties
// removed from the key registry are no destination from then on.
func (r *registry) forget(keep func(party string) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for gw := range r.instances {
		if !keep(gw) {
			delete(r.instances, gw)
		}
	}
	r.version.Add(1)
}

// live reports whether an announcement is still valid at now (Unix ms).
func (r *registry) live(a *schemas.Announce, now int64) bool { return a.At+a.TTL > now }

// gateways returns, per live gateway party, one representative
// announcement (the latest), for gateways of medium (any medium if "").
func (r *registry) gateways(medium string, now int64) []*schemas.Announce {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []*schemas.Announce
	for _, m := range r.instances {
		var best *schemas.Announce
		for _, a := range m {
			if r.live(a, now) && (medium == "" || a.Medium == medium) && (best == nil || a.At > best.At) {
				best = a
			}
		}
		if best != nil {
			out = append(out, best)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Gateway < out[j].Gateway })
	return out
}

// count returns the number of live instances of a gateway.
func (r *registry) count(gateway string, now int64) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := 0
	for _, a := range r.instances[gateway] {
		if r.live(a, now) {
			n++
		}
	}
	return n
}

// offer is one conversion a processor party offers, as the chain planner
// sees it (chain.go).
type offer struct {
	schemas.Conversion
	proc string
	toMT string // the media type of To
}

// conversions returns what processors offer: a conversion of a party once,
// as its latest announcement says, in the order of conversion name and then
// party (the planner's tie-break). With live false it counts every
// processor instance heard, also those whose announcement expired: what
// the fabric offers when every processor is up.
//
// The live offers are cached until a processor announces or one of their
// announcements expires: routing asks for them with every message that
// needs a conversion. The slice returned is shared: do not modify it.
func (r *registry) conversions(now int64, live bool) []offer {
	if c := r.cache.Load(); live && c != nil && now >= c.from && now < c.until && c.version == r.version.Load() {
		return c.offers
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	version, until := r.version.Load(), int64(math.MaxInt64)
	type pick struct {
		c        schemas.Conversion
		at       int64
		instance string
	}
	var out []offer
	for party, m := range r.instances {
		picks := map[string]pick{}
		for _, a := range m {
			if a.Medium != schemas.MediumProcessor || (live && !r.live(a, now)) {
				continue
			}
			until = min(until, a.At+a.TTL)
			for _, c := range a.Conversions {
				if p, ok := picks[c.Name]; !ok || a.At > p.at || (a.At == p.at && a.Instance < p.instance) {
					picks[c.Name] = pick{c, a.At, a.Instance}
				}
			}
		}
		for _, p := range picks {
			out = append(out, offer{Conversion: p.c, proc: party, toMT: schemas.MediaType(p.c.To)})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].proc < out[j].proc
	})
	if live {
		r.cache.Store(&offerCache{version: version, from: now, until: until, offers: out})
	}
	return out
}

// known returns, per party that fits, its latest announcement, live or
// not, in the order of party ids: the gateways that could take a message
// when they are up.
func (r *registry) known(fits func(*schemas.Announce) bool) []*schemas.Announce {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []*schemas.Announce
	for _, m := range r.instances {
		var best *schemas.Announce
		for _, a := range m {
			if fits(a) && (best == nil || a.At > best.At) {
				best = a
			}
		}
		if best != nil {
			out = append(out, best)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Gateway < out[j].Gateway })
	return out
}

// settled reports whether the registry has listened long enough to know
// every party that is up: each announces at least once within its TTL
// (3 s by default, PROTOCOL.md §6.12). Before, a conversion it does not know
// may just not have been announced yet.
func (r *registry) settled() bool { return time.Since(r.born) >= r.learn }

// snapshot returns every instance, live or not, for status displays.
func (r *registry) snapshot(now int64) []schemas.Announce {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []schemas.Announce
	for _, m := range r.instances {
		for _, a := range m {
			if r.live(a, now) {
				out = append(out, *a)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Gateway != out[j].Gateway {
			return out[i].Gateway < out[j].Gateway
		}
		return out[i].Instance < out[j].Instance
	})
	return out
}

// accepts reports whether a gateway announcing patterns takes content type
// ctype as it is. Patterns are "type/subtype", "type/*" or "*/*".
func accepts(patterns []string, ctype string) bool { return schemas.TypeMatches(patterns, ctype) }

// reaches reports whether a gateway announcing reach can deliver to an
// outside address: "*" reaches any, "@domain" an e-mail domain, "+prefix" a
// phone number prefix.
func reaches(reach []string, addr string) bool {
	for _, r := range reach {
		switch {
		case r == "*":
			return true
		case strings.HasPrefix(r, "@") && strings.HasSuffix(strings.ToLower(addr), strings.ToLower(r)):
			return true
		case strings.HasPrefix(r, "+") && strings.HasPrefix(addr, r):
			return true
		}
	}
	return false
}
