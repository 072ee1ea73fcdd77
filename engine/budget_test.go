package engine

import (
	"testing"

	"github.com/gobwas/ws/wsutil"
)

// Clients that never read, each allowed a backlog of MaxOutboundBytes: the
// server's total stays within MaxOutboundTotal (plus what one send can
// leave), whatever their number, and the connections that would pass it are
// closed with 1008.
func TestOutboundBudgetBoundsTheTotal(t *testing.T) {
	const perConn, total, chunk = 16 << 20, 16 << 20, 64 << 10
	floods := make(chan struct{}, 16)
	r := newRecorder()
	r.onMsg = func(c *Conn, _ MessageType, _ []byte) {
		payload := make([]byte, chunk)
		for i := 0; i < perConn/chunk; i++ {
			if c.SendBinary(payload) != nil {
				break
			}
		}
		floods <- struct{}{}
	}
	s := startServer(t, Config{Loops: 1, MaxOutboundBytes: perConn, MaxOutboundTotal: total, WriteTimeout: -1}, r)
	const clients = 8 // 16 MiB allowed each: eight times the budget in all
	maxHeld := int64(0)
	for i := 0; i < clients; i++ {
		conn := dial(t, s, "/", nil)
		waitOpen(t, r)
		_ = wsutil.WriteClientText(conn, []byte("flood me"))
		<-floods
		maxHeld = max(maxHeld, s.Stats().OutboundBytes)
	}
	st := s.Stats()
	if maxHeld > total+chunk+16 {
		t.Fatalf("the server held %d bytes for non-readers, over the %d budget and one send", maxHeld, total)
	}
	if st.BudgetShed == 0 {
		t.Fatalf("no connection was shed, yet %d × %d bytes were sent to non-readers: %+v", clients, perConn, st)
	}
	if st.SlowClosed != 0 {
		t.Fatalf("SlowClosed = %d: the per-connection bound was never reached, the budget was", st.SlowClosed)
	}
}
