package engine

import (
	"net"
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

// Many connections due at once are all closed by one sweep, in passes of
// maxSweepCloses that let the loop's other work run between them; a
// waiter on the sweep waits for every pass.
func TestSweepClosesManyInPasses(t *testing.T) {
	const n = 3*maxSweepCloses + 17
	r := newRecorder()
	r.openCh = make(chan *Conn, n)
	r.closeCh = make(chan error, n)
	s := startServer(t, Config{Loops: 1, IdleTimeout: time.Second, PingInterval: -1}, r)
	clock := fakeClock(s)
	conns := make([]net.Conn, 0, n)
	for range n {
		conns = append(conns, dial(t, s, "/", nil))
		waitOpen(t, r)
	}
	clock.advance(time.Second)
	s.sweepAll(true)
	if got := s.Stats().IdleClosed; got != n {
		t.Fatalf("IdleClosed = %d after one sweep, want all %d", got, n)
	}
	for _, c := range conns {
		if code := expectClose(t, c); code != 1001 {
			t.Fatalf("close code %d, want 1001", code)
		}
	}
}
