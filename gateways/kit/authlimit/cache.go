package authlimit

import (
	"container/list"
	"sync"
	"time"
)

// Cache remembers up to a fixed number of values for a time to live,
// dropping the least recently used first. It is safe for concurrent use.
type Cache[V any] struct {
	max int
	ttl time.Duration
	// Now is the clock; tests may replace it before first use.
	Now func() time.Time

	mu  sync.Mutex
	lru *list.List // of *cacheEntry[V], most recent first
	m   map[string]*list.Element
}

type cacheEntry[V any] struct {
	key string
	v   V
	at  time.Time
}

// NewCache returns a cache of at most max values, each kept for ttl.
func NewCache[V any](max int, ttl time.Duration) *Cache[V] {
	return &Cache[V]{max: max, ttl: ttl, Now: time.Now, lru: list.New(), m: make(map[string]*list.Element)}
}

// Get returns the value for key unless it is missing or older than the
// time to live.
func (c *Cache[V]) Get(key string) (V, bool) {
	var zero V
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[key]
	if !ok {
		return zero, false
	}
	e := el.Value.(*cacheEntry[V])
	if c.Now().Sub(e.at) >= c.ttl {
		c.lru.Remove(el)
		delete(c.m, key)
		return zero, false
	}
	c.lru.MoveToFront(el)
	return e.v, true
}

// Put stores v for key.
func (c *Cache[V]) Put(key string, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[key]; ok {
		e := el.Value.(*cacheEntry[V])
		e.v, e.at = v, c.Now()
		c.lru.MoveToFront(el)
		return
	}
	c.m[key] = c.lru.PushFront(&cacheEntry[V]{key: key, v: v, at: c.Now()})
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.m, old.Value.(*cacheEntry[V]).key)
	}
}

// Delete forgets key.
func (c *Cache[V]) Delete(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[key]; ok {
		c.lru.Remove(el)
		delete(c.m, key)
	}
}

// Len is the number of values held (expired ones included until touched).
func (c *Cache[V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
