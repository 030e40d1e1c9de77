package broker

import (
	"mime"
	"sort"
	"strings"
	"sync"

	"github.com/uims/uims/schemas"
)

// registry is the brokers' view of live gateways and processors, built from
// their signed heartbeats (PROTOCOL.md §6.12). Every broker instance hears
// every heartbeat, so the view needs no shared store; a broker that starts
// knows the fabric after one heartbeat interval.
type registry struct {
	mu        sync.RWMutex
	instances map[string]map[string]*schemas.Announce // gateway → instance → latest announce
}

func newRegistry() *registry {
	return &registry{instances: make(map[string]map[string]*schemas.Announce)}
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
	if old := m[a.Instance]; old != nil && old.At >= a.At {
		return
	}
	m[a.Instance] = a
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

// conversion returns a live processor's conversion from content type ctype
// to a type that target accepts.
func (r *registry) conversion(ctype string, target []string, now int64) (schemas.Conversion, string, bool) {
	for _, a := range r.gateways("", now) {
		for _, c := range a.Conversions {
			if accepts([]string{c.From}, ctype) && accepts(target, c.To) {
				return c, a.Gateway, true
			}
		}
	}
	return schemas.Conversion{}, "", false
}

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
func accepts(patterns []string, ctype string) bool {
	mt, _, err := mime.ParseMediaType(ctype)
	if err != nil {
		return false
	}
	for _, p := range patterns {
		switch {
		case p == "*/*" || p == mt:
			return true
		case strings.HasSuffix(p, "/*") && strings.HasPrefix(mt, strings.TrimSuffix(p, "*")):
			return true
		}
	}
	return false
}

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
