package broadcast

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/heraldws/herald/engine"
)

// A message published before Shutdown reaches every subscriber before its
// close 1001, although the hub's flush waits for the end of the loop's
// inbox drain and the shutdown may be queued in the same drain.
func TestPublishThenShutdownDeliversFirst(t *testing.T) {
	for round := range 20 {
		h, srv, sub := newHub(t, Options{}, engine.Config{})
		a, b := connect(t, srv, sub, "t"), connect(t, srv, sub, "t")
		if err := h.Publish("t", engine.TextMessage, []byte("last")); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // a hang guard
			defer cancel()
			done <- srv.Shutdown(ctx)
		}()
		for _, conn := range []net.Conn{a, b} {
			_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
			f, err := ws.ReadFrame(conn)
			if err != nil {
				t.Fatalf("round %d: read: %v", round, err)
			}
			if f.Header.OpCode != ws.OpText || string(f.Payload) != "last" {
				code, reason := ws.ParseCloseFrameData(f.Payload)
				t.Fatalf("round %d: got opcode %v (%d %s), want the message before the close", round, f.Header.OpCode, code, reason)
			}
			f, err = ws.ReadFrame(conn)
			if err != nil {
				t.Fatalf("round %d: read: %v", round, err)
			}
			if code, _ := ws.ParseCloseFrameData(f.Payload); f.Header.OpCode != ws.OpClose || code != ws.StatusGoingAway {
				t.Fatalf("round %d: got opcode %v code %d, want close 1001", round, f.Header.OpCode, code)
			}
			_ = ws.WriteFrame(conn, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusGoingAway, ""))))
		}
		if err := <-done; err != nil {
			t.Fatalf("round %d: Shutdown: %v", round, err)
		}
	}
}
