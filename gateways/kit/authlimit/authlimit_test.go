package authlimit

import (
	"net"
	"strconv"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock               { return &clock{t: time.Unix(1e9, 0)} }

// fail records one failed attempt for key, if it may be made.
func fail(l *Limiter, key string) {
	if l.Begin(key).OK {
		l.End(key, true)
	}
}

// attempt makes one successful attempt; false when it was refused.
func attempt(l *Limiter, key string) bool {
	if !l.Begin(key).OK {
		return false
	}
	l.End(key, false)
	return true
}

func TestLimiterLocksOutAfterFailures(t *testing.T) {
	c := newClock()
	l := New(Policy{Failures: 3, Window: time.Minute, Lockout: 5 * time.Minute})
	l.Now = c.now
	for i := range 3 {
		v := l.Begin("x")
		if !v.OK {
			t.Fatalf("attempt %d refused", i+1)
		}
		if locked := l.End("x", true); locked != (i == 2) {
			t.Fatalf("failure %d: locked %v", i+1, locked)
		}
	}
	for i := 1; i <= 3; i++ {
		v := l.Begin("x")
		if v.OK || !v.Locked || v.Refused != i || v.Retry != 5*time.Minute {
			t.Fatalf("during lockout: %+v", v)
		}
	}
	if !attempt(l, "y") {
		t.Fatal("another key is refused")
	}
	c.add(5 * time.Minute)
	if !attempt(l, "x") {
		t.Fatal("still refused after the lockout")
	}
}

func TestLimiterWindowSlides(t *testing.T) {
	c := newClock()
	l := New(Policy{Failures: 3, Window: time.Minute})
	l.Now = c.now
	for range 2 {
		fail(l, "x")
		c.add(40 * time.Second)
	}
	// the first failure left the window: two in it, one more allowed
	fail(l, "x")
	if v := l.Begin("x"); !v.OK {
		t.Fatalf("refused with two failures in the window: %+v", v)
	}
	if !l.End("x", true) {
		t.Fatal("the third failure in the window did not lock out")
	}
}

// Attempts in flight count: parallel attempts cannot overrun the budget.
func TestLimiterCountsAttemptsInFlight(t *testing.T) {
	l := New(Policy{Failures: 2})
	a, b := l.Begin("x"), l.Begin("x")
	if !a.OK || !b.OK {
		t.Fatal("two attempts refused")
	}
	if v := l.Begin("x"); v.OK || v.Locked {
		t.Fatalf("third parallel attempt: %+v, want busy", v)
	}
	l.End("x", false)
	if v := l.Begin("x"); !v.OK {
		t.Fatal("refused after an attempt ended")
	}
}

func TestLimiterResetAndBound(t *testing.T) {
	l := New(Policy{Failures: 2, MaxKeys: 10})
	fail(l, "x")
	l.Reset("x")
	fail(l, "x")
	if v := l.Begin("x"); !v.OK {
		t.Fatal("Reset did not forget the failures")
	}
	l.End("x", false)
	for i := range 100 {
		fail(l, strconv.Itoa(i))
	}
	if n := len(l.m); n > 10 {
		t.Fatalf("%d keys kept, want at most 10", n)
	}
}

func TestBeginAllReleases(t *testing.T) {
	id := New(Policy{Failures: 1})
	addr := New(Policy{Failures: 1})
	fail(addr, "a")
	if v, end := BeginAll(Key{id, "x"}, Key{addr, "a"}); v.OK || end != nil {
		t.Fatal("locked address allowed")
	}
	if v := id.Begin("x"); !v.OK {
		t.Fatal("the account's reservation was not released")
	}
}

func TestDelay(t *testing.T) {
	for refused, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 9: 10 * time.Second} {
		if got := Delay(refused, time.Second, 10*time.Second); got != want {
			t.Errorf("Delay(%d) = %v, want %v", refused, got, want)
		}
	}
}

func TestAddrKey(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:2525":              "127.0.0.1",
		"[::ffff:10.0.0.1]:1":         "10.0.0.1",
		"[2001:db8:1:2:3:4:5:6]:25":   "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:9999": "2001:db8:1:2::/64",
		"10.1.2.3":                    "10.1.2.3",
	} {
		if got := HostKey(in); got != want {
			t.Errorf("HostKey(%q) = %q, want %q", in, got, want)
		}
	}
	if got := AddrKey(&net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1}); got != "192.0.2.1" {
		t.Errorf("AddrKey = %q", got)
	}
}

func TestCacheTTLAndSize(t *testing.T) {
	c := newClock()
	ch := NewCache[int](3, 30*time.Second)
	ch.Now = c.now
	ch.Put("a", 1)
	if v, ok := ch.Get("a"); !ok || v != 1 {
		t.Fatal("missing")
	}
	c.add(30 * time.Second)
	if _, ok := ch.Get("a"); ok {
		t.Fatal("expired value returned")
	}
	for i := range 10 {
		ch.Put(strconv.Itoa(i), i)
	}
	if ch.Len() != 3 {
		t.Fatalf("len %d, want 3", ch.Len())
	}
	if _, ok := ch.Get("9"); !ok {
		t.Fatal("most recent value dropped")
	}
}
