package ratelimit

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// ways is the number of buckets a key may occupy: the table is
// set-associative, each key hashing to one set of this many slots.
const ways = 8

// bucketShards is the number of locks; set i is guarded by lock i%bucketShards.
const bucketShards = 64

// DefaultCapacity is the number of buckets a table holds when none is
// given: 64 Ki of them, 2.5 MiB.
const DefaultCapacity = 1 << 16

// Buckets is a table of token buckets, one per key, of fixed capacity.
// A bucket holds up to burst tokens and gains rate tokens a second; each
// Allow takes one. Nothing runs in the background: a bucket is refilled
// when it is looked at, from the time it was last looked at.
//
// Its memory is fixed when it is made (about 40 bytes a bucket), however
// many distinct keys it sees: an address-spoofing flood cannot grow it.
// Each key maps to one set of 8 buckets; a key without a bucket takes the
// slot in its set whose bucket is the fullest once refilled (the oldest
// among equally full ones). A full bucket is what a key without one
// starts with, so evicting it forgets nothing; only when a set's 8
// buckets are all in use by clients still over their rate does a newcomer
// push out the one closest to being forgiven. Placement is seeded per
// table, so that a client cannot pick addresses that share a set.
type Buckets struct {
	rate  float64 // tokens per nanosecond
	burst float64
	seed  uint64
	mask  uint64
	used  atomic.Int64 // buckets ever filled: they are never emptied
	sets  []set
	locks [bucketShards]struct {
		sync.Mutex
		_ [56]byte
	}
}

type set [ways]bucket

type bucket struct {
	key    Key
	last   int64   // when tokens was computed, ns on the caller's clock
	tokens float64 // at last
	used   bool
}

// NewBuckets returns a table of at least capacity buckets (rounded up to
// a power of two, at least 512; DefaultCapacity if capacity is 0) that
// grants perSecond tokens a second up to burst (at least 1).
func NewBuckets(perSecond float64, burst, capacity int) *Buckets {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	nsets := 64
	for nsets*ways < capacity && nsets < 1<<26 {
		nsets *= 2
	}
	return &Buckets{
		rate:  perSecond / float64(time.Second),
		burst: float64(max(burst, 1)),
		seed:  rand.Uint64(),
		mask:  uint64(nsets - 1),
		sets:  make([]set, nsets),
	}
}

// Cap returns the number of buckets the table holds at most.
func (b *Buckets) Cap() int { return len(b.sets) * ways }

// Allow takes a token from k's bucket at time now (monotonic, from any
// fixed origin) and reports whether there was one. When there was not,
// wait is how long until there will be.
func (b *Buckets) Allow(k Key, now time.Duration) (ok bool, wait time.Duration) {
	i := hash(k, b.seed) & b.mask
	mu := &b.locks[i%bucketShards]
	mu.Lock()
	defer mu.Unlock()
	s := &b.sets[i]
	t := int64(now)
	victim := -1
	best := math.Inf(-1)
	for w := range s {
		e := &s[w]
		if !e.used {
			if victim < 0 || s[victim].used {
				victim, best = w, math.Inf(1)
			}
			continue
		}
		if e.key == k {
			victim = w
			break
		}
		if full := b.refilled(e, t); full > best || full == best && e.last < s[victim].last {
			victim, best = w, full
		}
	}
	e := &s[victim]
	if !e.used {
		b.used.Add(1)
	}
	if !e.used || e.key != k {
		*e = bucket{key: k, last: t, tokens: b.burst, used: true}
	}
	e.tokens, e.last = b.refilled(e, t), max(t, e.last)
	if e.tokens >= 1 {
		e.tokens--
		return true, 0
	}
	if b.rate <= 0 {
		return false, time.Hour
	}
	return false, time.Duration(math.Ceil((1 - e.tokens) / b.rate))
}

// refilled is e's tokens at t.
func (b *Buckets) refilled(e *bucket, t int64) float64 {
	if t <= e.last {
		return e.tokens
	}
	return min(b.burst, e.tokens+float64(t-e.last)*b.rate)
}

// Len returns the number of buckets in use, at most Cap.
func (b *Buckets) Len() int { return int(b.used.Load()) }

// count walks the table for the buckets in use (tests check Len by it).
func (b *Buckets) count() int {
	n := 0
	for i := range b.sets {
		mu := &b.locks[uint64(i)%bucketShards]
		mu.Lock()
		for w := range b.sets[i] {
			if b.sets[i][w].used {
				n++
			}
		}
		mu.Unlock()
	}
	return n
}
