package engine

import (
	"sync/atomic"
	"testing"
	"time"
)

// testClock is a timer clock a test moves by hand, so that timeout tests
// decide by the clock they set, never by how fast the machine runs. The
// server's own ticker still triggers sweeps; they read this clock too.
type testClock struct{ now atomic.Int64 }

func (c *testClock) advance(d time.Duration) { c.now.Add(int64(d)) }

// fakeClock makes s use a clock that stands still until advanced. Call it
// before any connection is made: stamps from the real clock would not
// compare with it.
func fakeClock(s *Server) *testClock {
	c := &testClock{}
	c.now.Store(int64(time.Hour)) // any start will do; not zero, to catch unset stamps
	f := func() time.Duration { return time.Duration(c.now.Load()) }
	s.testClock.Store(&f)
	return c
}

// waitFor polls cond until it holds. The deadline is a hang guard only.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
