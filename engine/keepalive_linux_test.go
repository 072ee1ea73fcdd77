package engine

import (
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"
)

// A peer's pong that waits in its socket, unread because the loop is
// behind (a long fan-out, a server short of CPU), keeps the peer: the
// sweep that finds the pong timeout past must not blame the peer for the
// loop's lag. The loop is held by a task of its own while the real client
// (plain and over TLS) answers the ping; the sweep then runs on the loop
// with the clock past PingInterval + PongTimeout and the pong still in the
// socket, as a sweep queued behind a busy drain does.
func TestKeepaliveSparesPeerWhosePongWaitsUnread(t *testing.T) {
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"plain", false}, {"TLS", true}} {
		t.Run(tc.name, func(t *testing.T) {
			r := pongRecorder{newRecorder(), make(chan struct{}, 1)}
			cfg := Config{Loops: 1, PingInterval: 100 * time.Millisecond, PongTimeout: 100 * time.Millisecond}
			var s *Server
			if tc.tls {
				s = startTLS(t, cfg, r)
			} else {
				s = startServer(t, cfg, r)
			}
			clock := fakeClock(s)
			var conn net.Conn
			if tc.tls {
				conn, _ = dialTLS(t, s, "/", nil)
			} else {
				conn = dial(t, s, "/", nil)
			}
			c := waitOpen(t, r.recorder)
			clock.advance(100 * time.Millisecond)
			s.sweepAll(true)
			ping := readFrame(t, conn)
			if ping.Header.OpCode != ws.OpPing {
				t.Fatalf("got %v, want a ping", ping.Header.OpCode)
			}

			held, swept := make(chan struct{}), make(chan struct{})
			if err := c.loop.post(task{kind: taskFunc, fn: func() {
				close(held)
				// Until the pong is in the socket; 60 s is a hang guard.
				deadline := time.Now().Add(60 * time.Second)
				for {
					n, err := unix.IoctlGetInt(int(c.fd), unix.SIOCINQ)
					if err != nil {
						t.Errorf("SIOCINQ: %v", err)
						break
					}
					if n > 0 {
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("the pong never reached the server's socket")
						break
					}
					time.Sleep(time.Millisecond)
				}
				clock.advance(100 * time.Millisecond) // past PingInterval + PongTimeout since the last read
				c.loop.sweep(c.loop.tick(), c.loop.conns.len()-1)
				close(swept)
			}}); err != nil {
				t.Fatal(err)
			}
			<-held
			if err := ws.WriteFrame(conn, ws.MaskFrameInPlace(ws.NewPongFrame(ping.Payload))); err != nil {
				t.Fatal(err)
			}
			<-swept
			select {
			case <-r.pongs: // the loop read the pong once it was free
			case err := <-r.closeCh:
				t.Fatalf("peer dropped with its pong unread in the socket: %v", err)
			case <-time.After(60 * time.Second):
				t.Fatal("the pong was never read")
			}
			if st := s.Stats(); st.PongTimeouts != 0 || st.Open != 1 {
				t.Fatalf("PongTimeouts = %d, Open = %d: want the live peer kept", st.PongTimeouts, st.Open)
			}
			// And the peer is still served: a later ping arrives.
			clock.advance(100 * time.Millisecond)
			s.sweepAll(true)
			if f := readFrame(t, conn); f.Header.OpCode != ws.OpPing {
				t.Fatalf("got %v, want the next ping", f.Header.OpCode)
			}
		})
	}
}
