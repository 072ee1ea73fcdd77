package engine

import (
	"errors"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// backlogOf reads, on c's loop, what the server holds for c.
func backlogOf(t testing.TB, c *Conn) int {
	t.Helper()
	n := make(chan int, 1)
	if err := c.loop.Post(func() { n <- c.backlog() }); err != nil {
		t.Fatal(err)
	}
	return <-n
}

// floodOnRequest sends, on the loop, 8 MiB to the client that asks: far
// more than the socket buffers take, so the server holds a backlog.
func floodOnRequest() *recorder {
	r := newRecorder()
	r.onMsg = func(c *Conn, _ MessageType, _ []byte) {
		payload := make([]byte, 64<<10)
		for i := 0; i < 128; i++ {
			_ = c.SendBinary(payload)
		}
	}
	return r
}

// flooded starts a server with a 10 s WriteTimeout on a test clock, and a
// client whose connection has a backlog.
func flooded(t *testing.T) (s *Server, clock *testClock, r *recorder, conn net.Conn, c *Conn) {
	r = floodOnRequest()
	s = startServer(t, Config{WriteTimeout: 10 * time.Second, MaxOutboundBytes: 64 << 20}, r)
	clock = fakeClock(s)
	conn = dial(t, s, "/", nil)
	c = waitOpen(t, r)
	_ = wsutil.WriteClientText(conn, []byte("flood me"))
	waitFor(t, "a backlog", func() bool { return backlogOf(t, c) > 0 })
	waitKernelStill(t, c)
	return s, clock, r, conn, c
}

// ackedOf reads, on c's loop, what c's peer has acknowledged.
func ackedOf(t testing.TB, c *Conn) uint32 {
	t.Helper()
	n := make(chan uint32, 1)
	if err := c.loop.Post(func() { a, _ := peerAcked(c.fd); n <- a }); err != nil {
		t.Fatal(err)
	}
	return <-n
}

// waitKernelStill waits until the client's kernel has stopped taking data
// (its receive window is full), so that what a test sees next is what the
// client does, not what was still in flight.
func waitKernelStill(t testing.TB, c *Conn) {
	t.Helper()
	last, still := ackedOf(t, c), 0
	waitFor(t, "the client's kernel to stop taking data", func() bool {
		time.Sleep(5 * time.Millisecond)
		a := ackedOf(t, c)
		if a == last {
			still++
		} else {
			last, still = a, 0
		}
		return still >= 10
	})
}

// A client that never reads is closed after WriteTimeout, however busily it
// sends pongs; not a moment before.
func TestWriteTimeoutClosesNonReaders(t *testing.T) {
	s, clock, r, conn, _ := flooded(t)
	for elapsed := time.Duration(0); elapsed < 10*time.Second-time.Second; elapsed += time.Second {
		clock.advance(time.Second)
		// A pong a second: it must not count as life.
		_ = ws.WriteFrame(conn, ws.MaskFrameInPlace(ws.NewPongFrame(nil)))
		s.sweepAll(true)
	}
	clock.advance(999 * time.Millisecond)
	s.sweepAll(true)
	if n := s.Stats().WriteTimeouts; n != 0 {
		t.Fatalf("WriteTimeouts = %d before the write timeout", n)
	}
	clock.advance(time.Millisecond)
	s.sweepAll(true)
	if err := waitClose(t, r); !errors.Is(err, ErrWriteTimeout) {
		t.Fatalf("OnClose err = %v, want ErrWriteTimeout", err)
	}
	if n := s.Stats().WriteTimeouts; n != 1 {
		t.Fatalf("WriteTimeouts = %d", n)
	}
}

// A client that reads slowly makes progress, and stays, for much longer than
// the write timeout in all.
func TestWriteTimeoutSparesSlowReaders(t *testing.T) {
	s, clock, _, conn, c := flooded(t)
	for i := 0; i < 5; i++ { // 30 s in all
		before := backlogOf(t, c)
		if before == 0 {
			break
		}
		// Read until the server's backlog has shrunk: the peer reads.
		buf := make([]byte, 256<<10)
		for backlogOf(t, c) >= before {
			if _, err := io.ReadFull(conn, buf); err != nil {
				t.Fatal(err)
			}
		}
		clock.advance(6 * time.Second)
		s.sweepAll(true)
	}
	if st := s.Stats(); st.WriteTimeouts != 0 || st.Active != 1 {
		t.Fatalf("a reading client was dropped: %+v", st)
	}
}

// SocketSendBuffer bounds the kernel's send buffer of every connection, so
// a peer that does not read leaves a backlog to the engine (and its
// WriteTimeout) within seconds, not after MiBs of kernel memory.
func TestSocketSendBufferIsSet(t *testing.T) {
	const want = 32 << 10
	r := newRecorder()
	s := startServer(t, Config{SocketSendBuffer: want}, r)
	dial(t, s, "/", nil)
	c := waitOpen(t, r)
	got := make(chan int, 1)
	if err := c.loop.Post(func() {
		n, err := syscall.GetsockoptInt(int(c.fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
		if err != nil {
			n = -1
		}
		got <- n
	}); err != nil {
		t.Fatal(err)
	}
	// Linux reports twice the value set (its own bookkeeping).
	if n := <-got; n != want && n != 2*want {
		t.Fatalf("SO_SNDBUF = %d, want %d (or %d)", n, want, 2*want)
	}
}

// A reader too slow to shrink the engine's backlog within WriteTimeout —
// gnet refills a socket only once half of its buffer is free — still makes
// progress in its kernel, and stays, keepalive included.
func TestWriteTimeoutSeesKernelProgress(t *testing.T) {
	if _, ok := peerAcked(0); !ok && runtime.GOOS != "linux" {
		t.Skip("no TCP_INFO here")
	}
	r := floodOnRequest()
	// A large kernel buffer: reading a little never wakes gnet to refill it.
	// Keepalive too: the client answers no ping (they sit behind its
	// backlog), so only its reading keeps it alive.
	s := startServer(t, Config{WriteTimeout: 10 * time.Second, MaxOutboundBytes: 64 << 20, SocketSendBuffer: 4 << 20,
		PingInterval: 8 * time.Second, PongTimeout: 4 * time.Second}, r)
	clock := fakeClock(s)
	conn := dial(t, s, "/", nil)
	c := waitOpen(t, r)
	_ = wsutil.WriteClientText(conn, []byte("flood me"))
	waitFor(t, "a backlog", func() bool { return backlogOf(t, c) > 0 })
	waitKernelStill(t, c)
	backlog := backlogOf(t, c)
	// Enough to reopen the window on loopback, whose segments are 64 KiB.
	buf := make([]byte, 256<<10)
	for period := 0; period < 3; period++ { // 30 s in all
		clock.advance(5 * time.Second)
		s.sweepAll(true) // samples what the peer acknowledged
		before := ackedOf(t, c)
		if _, err := io.ReadFull(conn, buf); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the client's kernel to acknowledge more", func() bool { return ackedOf(t, c)-before >= minKernelProgress })
		clock.advance(5 * time.Second)
		s.sweepAll(true)
	}
	if got := backlogOf(t, c); got != backlog {
		t.Logf("the engine's backlog moved (%d → %d): the test did not isolate kernel progress", backlog, got)
	}
	if st := s.Stats(); st.WriteTimeouts != 0 || st.Active != 1 {
		t.Fatalf("a reading client was dropped: %+v", st)
	}
	// Once it stops reading, the timeout applies again: within a period
	// or two (what was in flight at the last sample may count once more).
	waitKernelStill(t, c)
	for i := 0; i < 6 && s.Stats().WriteTimeouts == 0; i++ {
		clock.advance(5 * time.Second)
		s.sweepAll(true)
	}
	if err := waitClose(t, r); !errors.Is(err, ErrWriteTimeout) {
		t.Fatalf("OnClose err = %v, want ErrWriteTimeout once it stopped reading", err)
	}
}
