package ratelimit

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestKeyOf(t *testing.T) {
	a := KeyOf(netip.MustParseAddr("2001:db8:1:2:aaaa::1"))
	b := KeyOf(netip.MustParseAddr("2001:db8:1:2:bbbb::2"))
	c := KeyOf(netip.MustParseAddr("2001:db8:1:3::1"))
	if a != b || a == c {
		t.Fatal("IPv6 addresses are not counted per /64")
	}
	if KeyOf(netip.MustParseAddr("::ffff:192.0.2.1")) != KeyOf(netip.MustParseAddr("192.0.2.1")) {
		t.Fatal("an IPv4-mapped address is not its IPv4 address")
	}
	if KeyOf(netip.MustParseAddr("192.0.2.1")) == KeyOf(netip.MustParseAddr("192.0.2.2")) {
		t.Fatal("IPv4 addresses share a key")
	}
}

func TestConnCounter(t *testing.T) {
	c := NewConnCounter(2)
	k := KeyOf(netip.MustParseAddr("192.0.2.1"))
	if !c.Acquire(k) || !c.Acquire(k) || c.Acquire(k) {
		t.Fatal("the limit of 2 does not hold")
	}
	c.Release(k)
	if !c.Acquire(k) {
		t.Fatal("a released connection does not free a place")
	}
	c.Release(k)
	c.Release(k)
	if c.Len() != 0 || c.Count(k) != 0 {
		t.Fatalf("%d keys left after every connection closed", c.Len())
	}
	c.Release(k) // one too many is harmless
	if c.Len() != 0 {
		t.Fatal("a stray release made an entry")
	}
}

func TestConnCounterConcurrent(t *testing.T) {
	c := NewConnCounter(1 << 20)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10000 {
				k := key(uint32(i%97 + g))
				c.Acquire(k)
				c.Release(k)
			}
		}()
	}
	wg.Wait()
	if c.Len() != 0 {
		t.Fatalf("%d keys left", c.Len())
	}
}

func key(i uint32) Key {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], i)
	return KeyOf(netip.AddrFrom4(b))
}

func TestBucketsRate(t *testing.T) {
	b := NewBuckets(2, 3, 0) // 2 a second, bursts of 3
	k := key(1)
	now := time.Hour
	for i := range 3 {
		if ok, _ := b.Allow(k, now); !ok {
			t.Fatalf("burst: handshake %d refused", i)
		}
	}
	ok, wait := b.Allow(k, now)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("over the burst: ok %v, wait %v; want refused, 500ms", ok, wait)
	}
	if ok, _ := b.Allow(key(2), now); !ok {
		t.Fatal("another address is refused")
	}
	now += 499 * time.Millisecond
	if ok, _ := b.Allow(k, now); ok {
		t.Fatal("allowed before a token was due")
	}
	now += time.Millisecond
	if ok, _ := b.Allow(k, now); !ok {
		t.Fatal("refused once a token was due")
	}
	// A long pause refills to the burst, no further.
	now += time.Hour
	for i := range 3 {
		if ok, _ := b.Allow(k, now); !ok {
			t.Fatalf("after a pause: handshake %d refused", i)
		}
	}
	if ok, _ := b.Allow(k, now); ok {
		t.Fatal("the bucket filled past its burst")
	}
}

// A flood of a million distinct (spoofed) addresses fills the table to its
// capacity and no further, and an address that keeps over its rate during
// the flood stays limited: the buckets evicted are the fullest.
func TestBucketsBoundedUnderSpoofing(t *testing.T) {
	const capacity = 4096
	b := NewBuckets(1, 5, capacity)
	if b.Cap() != capacity {
		t.Fatalf("Cap %d, want %d", b.Cap(), capacity)
	}
	abuser := KeyOf(netip.MustParseAddr("198.51.100.1"))
	now := time.Hour
	for range 5 {
		b.Allow(abuser, now)
	}
	refusedAbuser := 0
	for i := range 1_000_000 {
		b.Allow(key(uint32(i)+1<<24), now) // every one new, each left with burst-1 tokens
		if i%1000 == 0 {
			if ok, _ := b.Allow(abuser, now); !ok {
				refusedAbuser++
			}
		}
		if i%100_000 == 0 {
			if n := b.Len(); n > b.Cap() {
				t.Fatalf("%d buckets after %d addresses, over the capacity %d", n, i, b.Cap())
			}
		}
	}
	if n := b.Len(); n != b.Cap() || b.count() != n {
		t.Fatalf("%d buckets in use (%d counted) after a million addresses, want the capacity %d", n, b.count(), b.Cap())
	}
	if refusedAbuser != 1000 {
		t.Fatalf("the abuser was refused %d of 1000 times during the flood: its empty bucket was evicted", refusedAbuser)
	}
}

func TestBucketsConcurrent(t *testing.T) {
	b := NewBuckets(1000, 10, 1024)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20000 {
				b.Allow(key(uint32(i*4+g)), time.Duration(i)*time.Microsecond)
			}
		}()
	}
	wg.Wait()
	if b.Len() > b.Cap() || b.Len() != b.count() {
		t.Fatalf("%d buckets (%d counted), capacity %d", b.Len(), b.count(), b.Cap())
	}
}
