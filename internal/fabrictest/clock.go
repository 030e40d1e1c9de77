package fabrictest

import (
	"sync/atomic"
	"time"
)

// Clock is a settable clock for every party of a test fabric (broker and
// kits: their Config.Now): it runs with the real one from wherever it was
// set, so that deadlines and retries still pass, and a test can move the
// whole fabric to another time of day (quiet hours, scheduled messages).
type Clock struct{ offset atomic.Int64 }

// NewClock returns a clock that reads t now.
func NewClock(t time.Time) *Clock {
	c := &Clock{}
	c.Set(t)
	return c
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// Set makes the clock read t now.
func (c *Clock) Set(t time.Time) { c.offset.Store(int64(time.Until(t))) }
