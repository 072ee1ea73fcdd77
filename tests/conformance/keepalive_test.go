package conformance

import (
	"testing"
	"time"

	"github.com/heraldws/herald/engine"
)

// TestKeepalive checks the suite's clients against the server's keepalive:
// a case that expects the server's ping sees it, and a client waiting for
// anything else answers it with a pong carrying the same payload and reads
// on. The server pings after 50 ms of silence; nothing here waits for a
// duration, only for the ping itself.
func TestKeepalive(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t, func(cfg *engine.Config) { cfg.PingInterval = 50 * time.Millisecond })
	t.Run("a case that expects the ping sees it", func(t *testing.T) {
		t.Parallel()
		c := dialWS(t, addr)
		ev, err := c.nextEvent(true)
		if err != nil {
			t.Fatalf("want the server's ping, got %s", c.describeErr(err))
		}
		if ev.op != opPing {
			t.Fatalf("want the server's ping, got %s", describeEvent(ev))
		}
		c.sendFrames(whole, pongFrame(ev.payload))
		roundTrip(c, "after the keepalive ping")
		c.closeNormally()
	})
	t.Run("a client waiting for an echo answers the ping first", func(t *testing.T) {
		t.Parallel()
		c := dialWS(t, addr)
		// Nothing else is due, so the first byte the server sends is its
		// ping's; it stays unread until the round trip meets it.
		if _, err := c.br.Peek(1); err != nil {
			t.Fatalf("waiting for the server's ping: %s", c.describeErr(err))
		}
		roundTrip(c, "after an unread ping")
		if c.pings == 0 {
			t.Fatal("the client met no ping before the echoes")
		}
		c.closeNormally()
	})
}
