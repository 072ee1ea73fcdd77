// Package ratelimit holds the per-address tables behind the server's
// operational limits: a count of live connections per address and a
// fixed-capacity table of token buckets for handshakes per second. Both
// are safe for concurrent use by many event loops (a mutex per shard),
// keep no goroutine or timer, and bound their memory.
package ratelimit

import "net/netip"

// Key is an address as the limits count it: an IPv4 address, or the /64
// prefix of an IPv6 address. A host is routinely given a whole /64 (SLAAC,
// privacy addresses rotate inside it), so counting IPv6 addresses one by
// one would let one client look like 2^64 of them. IPv4-mapped IPv6
// addresses count as their IPv4 address.
type Key [16]byte

// KeyOf returns a's key. The zero Addr has the zero key.
func KeyOf(a netip.Addr) Key {
	a = a.Unmap()
	k := Key(a.As16())
	if a.Is6() {
		clear(k[8:])
	}
	return k
}

// hash spreads k over the shards (FNV-1a, seeded so that the placement
// differs between tables and processes).
func hash(k Key, seed uint64) uint64 {
	h := seed ^ 14695981039346656037
	for _, b := range k {
		h ^= uint64(b)
		h *= 1099511628211
	}
	return h ^ h>>29
}
