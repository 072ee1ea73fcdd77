package ratelimit

import (
	"math/rand/v2"
	"sync"
)

const connShards = 64

// ConnCounter counts live connections per key against a maximum. A key
// has an entry only while it holds connections: the table is never larger
// than the number of connections counted, and it shrinks as they close.
type ConnCounter struct {
	max    int32
	seed   uint64
	shards [connShards]connShard
}

type connShard struct {
	mu sync.Mutex
	m  map[Key]int32
	_  [40]byte // a cache line each, so that loops on different shards do not contend
}

// NewConnCounter returns a counter that lets a key hold up to max
// connections.
func NewConnCounter(max int) *ConnCounter {
	c := &ConnCounter{max: int32(min(max, 1<<30)), seed: rand.Uint64()}
	for i := range c.shards {
		c.shards[i].m = make(map[Key]int32)
	}
	return c
}

// Acquire counts one more connection for k and reports true, or reports
// false, counting nothing, if k holds the maximum already.
func (c *ConnCounter) Acquire(k Key) bool {
	s := &c.shards[hash(k, c.seed)%connShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.m[k]
	if n >= c.max {
		return false
	}
	s.m[k] = n + 1
	return true
}

// Release forgets one connection of k, which Acquire counted.
func (c *ConnCounter) Release(k Key) {
	s := &c.shards[hash(k, c.seed)%connShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	switch n := s.m[k]; {
	case n > 1:
		s.m[k] = n - 1
	case n == 1:
		delete(s.m, k)
	}
}

// Count returns the connections counted for k.
func (c *ConnCounter) Count(k Key) int {
	s := &c.shards[hash(k, c.seed)%connShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	return int(s.m[k])
}

// Len returns the number of keys holding connections.
func (c *ConnCounter) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
