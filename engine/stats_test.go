package engine

import (
	"net"
	"testing"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// TestStatsGaugesBytesAndCloses: Open counts upgraded connections and
// Active those handshaking too; BytesIn and BytesOut count what crossed
// the sockets, handshakes included; Closes counts each ended connection
// under the code of the close frame that ended it, whoever sent it, and
// 1006 for one that ended without.
func TestStatsGaugesBytesAndCloses(t *testing.T) {
	r := newRecorder()
	r.onMsg = func(c *Conn, typ MessageType, data []byte) {
		if string(data) == "bye" {
			_ = c.Close(StatusPolicyViolation, "bye")
			return
		}
		_ = c.Send(typ, data)
	}
	s := startServer(t, Config{}, r)

	a, b := dial(t, s, "/", nil), dial(t, s, "/", nil)
	waitOpen(t, r)
	waitOpen(t, r)
	// A connection that has not finished its handshake is active, not open.
	half, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	if _, err := half.Write([]byte("GET / HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 active, 2 open", func() bool { st := s.Stats(); return st.Active == 3 && st.Open == 2 })

	// 100 bytes each way plus the frames' headers, on top of the handshakes.
	before := s.Stats()
	msg := make([]byte, 100)
	if err := wsutil.WriteClientBinary(a, msg); err != nil {
		t.Fatal(err)
	}
	if f := readFrame(t, a); len(f.Payload) != 100 {
		t.Fatalf("echo of %d bytes", len(f.Payload))
	}
	// The read is counted when the loop is done with it, after the echo.
	waitFor(t, "the message and its echo counted", func() bool {
		st := s.Stats()
		return st.BytesIn >= before.BytesIn+106 && st.BytesOut >= before.BytesOut+102
	})
	if st := s.Stats(); st.BytesIn != before.BytesIn+100+6 || st.BytesOut != before.BytesOut+100+2 {
		t.Fatalf("bytes in +%d, out +%d; want +106 (a masked frame) and +102", st.BytesIn-before.BytesIn, st.BytesOut-before.BytesOut)
	}

	// a closes with 1000; the server closes b with 1008; half's
	// handshake is dropped, which is no close of an open connection.
	if err := ws.WriteFrame(a, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))); err != nil {
		t.Fatal(err)
	}
	waitClose(t, r)
	if err := wsutil.WriteClientText(b, []byte("bye")); err != nil {
		t.Fatal(err)
	}
	if code := expectClose(t, b); code != ws.StatusPolicyViolation {
		t.Fatalf("close %d", code)
	}
	_ = ws.WriteFrame(b, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusPolicyViolation, ""))))
	waitClose(t, r)
	half.Close()
	waitFor(t, "no connection left", func() bool { return s.Stats().Active == 0 })
	st := s.Stats()
	want := CloseCounts{}
	want.ByCode[0], want.ByCode[8] = 1, 1
	if st.Open != 0 || st.Closes != want {
		t.Fatalf("open %d, closes %+v; want 0 open and one 1000, one 1008", st.Open, st.Closes)
	}

	// A connection that ends without a close frame counts as 1006.
	c := dial(t, s, "/", nil)
	waitOpen(t, r)
	c.Close()
	waitClose(t, r)
	want.ByCode[6] = 1
	waitFor(t, "a 1006 counted", func() bool { return s.Stats().Closes == want })
}
