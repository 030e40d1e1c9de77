// Package authlimit bounds what failed credential checks may cost: a
// gateway asks the brokers for every credential it does not know
// (kit.Client), and every such query is a MIAP frame whose nonce the
// brokers keep in the store for its lifetime (../../../miap/PROTOCOL.md
// §7). Without a bound, wrong passwords or random tokens cost a store key
// each and can be tried at network speed.
//
//   - Limiter counts failures per key (an account, a remote address) in a
//     sliding window; a key with too many is locked out for a while, and
//     attempts in flight count against the budget, so parallel connections
//     cannot overrun it.
//   - Cache is a size-bounded LRU with a time to live, for answers a
//     gateway may reuse (a known token, an unknown token).
//
// The docs of each gateway (docs/EMAIL.md, docs/SMS.md, docs/WEB.md) give
// the policies they use and what a client sees. Everything is in memory and
// per gateway instance.
package authlimit

import (
	"container/list"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Policy says when a key is locked out.
type Policy struct {
	// Failures within Window that lock the key out; 0 disables the
	// limiter (every attempt is allowed).
	Failures int
	// Window is the sliding window failures are counted in; default 1 min.
	Window time.Duration
	// Lockout is how long a locked-out key is refused; default 5 min.
	Lockout time.Duration
	// MaxKeys bounds the keys remembered (least recently used go first);
	// default 10,000.
	MaxKeys int
}

// Verdict is the answer to Begin.
type Verdict struct {
	// OK: the attempt may go ahead; the caller must call End for it.
	OK bool
	// Locked: the key is locked out (not only busy with attempts in
	// flight).
	Locked bool
	// Retry is how long the refusal will last at most.
	Retry time.Duration
	// Refused counts the attempts refused in the current lockout,
	// this one included; callers grow their delay with it.
	Refused int
}

// Limiter counts failed attempts per key. It is safe for concurrent use.
type Limiter struct {
	p Policy
	// Now is the clock; tests may replace it before first use.
	Now func() time.Time

	mu  sync.Mutex
	lru *list.List // of *entry, most recent first
	m   map[string]*list.Element
}

type entry struct {
	key     string
	fails   []time.Time // within the window, oldest first
	pending int         // attempts in flight
	until   time.Time   // end of the lockout; zero: none
	refused int
}

// New returns a limiter with policy p.
func New(p Policy) *Limiter {
	if p.Window <= 0 {
		p.Window = time.Minute
	}
	if p.Lockout <= 0 {
		p.Lockout = 5 * time.Minute
	}
	if p.MaxKeys <= 0 {
		p.MaxKeys = 10000
	}
	return &Limiter{p: p, Now: time.Now, lru: list.New(), m: make(map[string]*list.Element)}
}

// Policy returns the limiter's policy with its defaults.
func (l *Limiter) Policy() Policy { return l.p }

// get returns key's entry, made and moved to the front; l.mu is held.
func (l *Limiter) get(key string, now time.Time) *entry {
	if el, ok := l.m[key]; ok {
		l.lru.MoveToFront(el)
		e := el.Value.(*entry)
		e.prune(now, l.p.Window)
		return e
	}
	e := &entry{key: key}
	l.m[key] = l.lru.PushFront(e)
	for l.lru.Len() > l.p.MaxKeys {
		old := l.lru.Back()
		if old.Value.(*entry).pending > 0 {
			break // an attempt in flight will End it
		}
		l.lru.Remove(old)
		delete(l.m, old.Value.(*entry).key)
	}
	return e
}

func (e *entry) prune(now time.Time, window time.Duration) {
	if !e.until.IsZero() && !now.Before(e.until) {
		e.until, e.refused, e.fails = time.Time{}, 0, nil // the lockout ended: a clean slate
	}
	i := 0
	for i < len(e.fails) && now.Sub(e.fails[i]) >= window {
		i++
	}
	e.fails = e.fails[i:]
}

// Begin asks whether an attempt for key may go ahead. With OK the attempt
// is reserved and the caller must call End. Otherwise the key is locked
// out, or its failures plus the attempts in flight have reached the
// budget.
func (l *Limiter) Begin(key string) Verdict {
	if l == nil || l.p.Failures <= 0 {
		return Verdict{OK: true}
	}
	now := l.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.get(key, now)
	if !e.until.IsZero() {
		e.refused++
		return Verdict{Locked: true, Retry: e.until.Sub(now), Refused: e.refused}
	}
	if len(e.fails)+e.pending >= l.p.Failures {
		retry := l.p.Window
		if len(e.fails) > 0 {
			retry = l.p.Window - now.Sub(e.fails[0])
		}
		return Verdict{Retry: retry, Refused: 1}
	}
	e.pending++
	return Verdict{OK: true}
}

// End finishes an attempt Begin allowed. A failure is counted; End reports
// whether it locked the key out.
func (l *Limiter) End(key string, failed bool) (locked bool) {
	if l == nil || l.p.Failures <= 0 {
		return false
	}
	now := l.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.get(key, now)
	if e.pending > 0 {
		e.pending--
	}
	if !failed || !e.until.IsZero() {
		return false
	}
	e.fails = append(e.fails, now)
	if len(e.fails) >= l.p.Failures {
		e.until, e.refused = now.Add(l.p.Lockout), 0
		return true
	}
	return false
}

// Reset forgets key's failures (its owner just got in). A lockout in
// force stays until it ends.
func (l *Limiter) Reset(key string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.m[key]; ok {
		el.Value.(*entry).fails = nil
	}
}

// Key names one key of one limiter, for BeginAll.
type Key struct {
	L   *Limiter
	Key string
}

// BeginAll begins an attempt on every key (an account and an address,
// say). When one refuses, the reservations already made are released and
// its verdict is returned with a nil end. Otherwise end finishes the
// attempt on every key and returns the keys the failure locked out.
func BeginAll(keys ...Key) (v Verdict, end func(failed bool) (locked []Key)) {
	for i, k := range keys {
		if v = k.L.Begin(k.Key); !v.OK {
			for _, b := range keys[:i] {
				b.L.End(b.Key, false)
			}
			return v, nil
		}
	}
	return Verdict{OK: true}, func(failed bool) []Key {
		var locked []Key
		for _, k := range keys {
			if k.L.End(k.Key, failed) {
				locked = append(locked, k)
			}
		}
		return locked
	}
}

// Delay is base doubled for every attempt refused before this one, at
// most max: the wait before a refusal is answered.
func Delay(refused int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < refused && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// AddrKey is the limiter key of a remote address: the IP without the port;
// an IPv6 address counts by its /64, which one host usually has whole.
func AddrKey(a net.Addr) string {
	if a == nil {
		return ""
	}
	return HostKey(a.String())
}

// HostKey is AddrKey for "host:port" or a bare host.
func HostKey(hostport string) string {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
