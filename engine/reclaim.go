package engine

import (
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// connFootprint is about what an open connection costs the process (its
// Conn, gnet's connection and their share of the loops' tables); the memory
// return below only needs its order of magnitude.
const connFootprint = 1 << 10

// returnCooldown spaces memory returns: each costs two garbage collections.
const returnCooldown = 10 * time.Second

// memoryReturn decides when the server gives freed memory back to the OS.
//
// Go does that on its own only slowly: after a burst (thousands of stalled
// subscribers' backlogs, a wave of connections) the heap goal stays at its
// peak until the next collection, which an idle server may not run for two
// minutes, and gnet's buffer pools keep the freed backlogs alive through
// one more collection. So the server watches what it holds for connections
// (their backlogs plus an estimate per connection) and, once that has
// fallen by at least ReturnMemoryAfter from its peak and to half of it or
// less, collects twice and returns the free pages. Steady traffic, however
// heavy, never triggers it: only a drop from a peak does.
//
// The peak is not sampled: the timer looks once per sweep, and a burst that
// rises and ends between two looks (a second apart, or more on a busy
// machine) would never be seen. The loops record it where backlogs grow
// (Conn.account) and connections arrive, and the timer takes it at each
// look. Summed over loops whose peaks need not coincide, it errs high: at
// worst a return comes sooner, and the cooldown bounds what that costs.
type memoryReturn struct {
	threshold int64         // Config.ReturnMemoryAfter; <= 0 disables
	peak      int64         // highest footprint since the last return
	last      time.Duration // clock time of the last return
	returned  bool          // whether last is set
}

// observe records the footprint at clock time now, and the highest it
// reached since the previous observation, and reports whether the memory
// should be returned now.
func (m *memoryReturn) observe(footprint, peak int64, now time.Duration) bool {
	if m.threshold <= 0 {
		return false
	}
	m.peak = max(m.peak, peak, footprint)
	if m.peak-footprint < m.threshold || footprint > m.peak/2 {
		return false
	}
	if m.returned && now-m.last < returnCooldown {
		return false // the peak stays: it returns after the cooldown
	}
	m.peak, m.last, m.returned = footprint, now, true
	return true
}

// footprint is what the server holds for its connections now, and the
// highest it has been since the previous call (timer goroutine only),
// which starts the next period's peak from now.
func (s *Server) footprint() (now, peak int64) {
	active := s.active.Load()
	now = active * connFootprint
	peak = max(active, s.activePeak.Swap(active)) * connFootprint
	for _, l := range *s.loopList.Load() {
		held := l.held.Load()
		now += held
		peak += max(held, l.peak.Swap(held))
	}
	return now, peak
}

// notePeak raises p to v if v is higher. Safe from any goroutine.
func notePeak(p *atomic.Int64, v int64) {
	for {
		old := p.Load()
		if v <= old || p.CompareAndSwap(old, v) {
			return
		}
	}
}

// maybeReturnMemory runs on the timer goroutine after each sweep.
func (s *Server) maybeReturnMemory() {
	if s.returning.Load() {
		return
	}
	now := s.clock()
	footprint, peak := s.footprint()
	drop := s.memReturn.observe(footprint, peak, now)
	due := s.mnt.garbageDue(&s.memReturn, now, drop)
	if ramp := s.burst.due(&s.memReturn, s.nextID.Load(), now, drop || due); !drop && !due && !ramp {
		return
	}
	s.returning.Store(true)
	go func() {
		defer s.returning.Store(false)
		// The first collection moves sync.Pool contents (gnet's buffers)
		// to the pools' victim caches; FreeOSMemory's own collection frees
		// them and then returns every free page.
		runtime.GC()
		debug.FreeOSMemory()
		s.memoryReturns.Add(1)
	}()
}
