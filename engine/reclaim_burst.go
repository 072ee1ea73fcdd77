package engine

import "time"

// arrivalGarbage is about what a connection leaves behind as garbage when
// it arrives and stays: its handshake (the request scanned and parsed, the
// reply), gnet's buffers for its first reads and writes, and the slices and
// maps of the loops and the hub that it makes grow (copied on growth, the
// old backing array left to the collector). A ramp of 17,000 subscribed
// connections to one ticker allocated about 2 KB per connection, of which
// about 0.6 KB stayed live; like connFootprint, only its order of
// magnitude matters.
const arrivalGarbage = 1 << 10

// burstEnd is how far arrivals per sweep must fall below the busiest
// sweep since the last return for the burst to count as over: a trickle
// after a ramp (a late reconnect) does not hold the return back, while
// steady arrivals, whose sweeps all look alike, never trigger it. It must
// stay that low for quietSweeps sweeps in a row: on a busy machine a ramp
// can stall for a whole sweep, and a return in its middle would leave the
// rest of it, short of the threshold on its own, with no return at all.
const (
	burstEnd    = 16
	quietSweeps = 2
)

// arrivalBurst decides when a ramp of arrivals that stay has ended and
// left garbage worth giving back. The memory return (memoryReturn) fires
// on a drop from a peak; connections that arrive and stay make no drop,
// yet their arrival allocates about three times what they keep, and the
// heap keeps the freed pages up to the collector's goal (about twice the
// live heap): an idle server that ramped up to thousands of connections
// holds that headroom until a much later collection, and often for good,
// since the goal then doubles what is live again. Counted per arrival and
// decided by the timer goroutine once per sweep, it costs the loops
// nothing beyond the connection id they take anyway.
type arrivalBurst struct {
	seen  uint64 // arrivals counted at the previous sweep
	debt  int64  // their garbage since the last return, in bytes
	busy  uint64 // the most arrivals in one sweep since the last return
	quiet int    // sweeps in a row with few arrivals (see burstEnd)
}

// due reports, after a sweep that saw arrived connections so far (ever,
// monotonic), whether a burst has ended and left r.threshold or more of
// garbage: it then starts r's cooldown. A burst still arriving waits for
// its end, and one that ends inside the cooldown returns after it.
// returning says that r decided a return now anyway, which pays the debt.
func (b *arrivalBurst) due(r *memoryReturn, arrived uint64, now time.Duration, returning bool) bool {
	fresh := arrived - b.seen
	b.seen = arrived
	if r.threshold <= 0 {
		return false
	}
	b.debt += int64(fresh) * arrivalGarbage
	b.busy = max(b.busy, fresh)
	if returning {
		b.debt, b.busy, b.quiet = 0, 0, 0
		return false
	}
	if fresh*burstEnd > b.busy {
		b.quiet = 0
		return false
	}
	b.quiet++
	if b.debt < r.threshold || b.quiet < quietSweeps {
		return false
	}
	if r.returned && now-r.last < returnCooldown {
		return false // the debt stays: it returns after the cooldown
	}
	b.debt, b.busy, b.quiet = 0, 0, 0
	r.last, r.returned = now, true
	return true
}
