package broadcast

import (
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/internal/looplink"
)

// What is queued for a connection before Conn.Close, called off the loop,
// reaches the client before the close frame: a published message (the
// hub's flush waits for the end of the loop's inbox drain, and the close
// may be queued in the same drain) as well as a message sent with
// Conn.Send.
func TestQueuedThenCloseDeliversFirst(t *testing.T) {
	for _, tc := range []struct {
		name  string
		queue func(h *Hub, c *engine.Conn) error
		want  []string // the messages, in order, before the close
	}{
		{"publish", func(h *Hub, _ *engine.Conn) error {
			return h.Publish("t", engine.TextMessage, []byte("last"))
		}, []string{"last"}},
		{"send", func(_ *Hub, c *engine.Conn) error { return c.SendText("last") }, []string{"last"}},
		{"send then publish", func(h *Hub, c *engine.Conn) error {
			if err := c.SendText("first"); err != nil {
				return err
			}
			return h.Publish("t", engine.TextMessage, []byte("last"))
		}, []string{"first", "last"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, srv, sub := newHub(t, Options{}, engine.Config{})
			conn, c := connectBoth(t, srv, sub, "t")
			waitSubs(t, h, "t", 1)
			// Hold the loop until both are queued, so that they land in
			// one inbox drain (where the close used to overtake the
			// publish) whatever the scheduler does.
			release := make(chan struct{})
			if err := looplink.ConnOf(c).Loop().Post(func() { <-release }); err != nil {
				t.Fatal(err)
			}
			queued := make(chan error, 1)
			go func() { // from a goroutine of the application's, not the loop
				if err := tc.queue(h, c); err != nil {
					queued <- err
					return
				}
				queued <- c.Close(engine.StatusNormalClosure, "bye")
			}()
			err := <-queued
			close(release)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range tc.want {
				expectText(t, conn, want)
			}
			f := readFrame(t, conn)
			if code, reason := ws.ParseCloseFrameData(f.Payload); f.Header.OpCode != ws.OpClose || code != ws.StatusNormalClosure {
				t.Fatalf("got opcode %v (%d %s), want close 1000 after the message", f.Header.OpCode, code, reason)
			}
		})
	}
}

// expectText reads the next frame and fails unless it is the text want.
func expectText(t *testing.T, conn net.Conn, want string) {
	t.Helper()
	f := readFrame(t, conn)
	if f.Header.OpCode != ws.OpText || string(f.Payload) != want {
		code, reason := ws.ParseCloseFrameData(f.Payload)
		t.Fatalf("got opcode %v (%d %s), want the text %q first", f.Header.OpCode, code, reason, want)
	}
}

func readFrame(t *testing.T, conn net.Conn) ws.Frame {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second)) // a hang guard
	f, err := ws.ReadFrame(conn)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return f
}
