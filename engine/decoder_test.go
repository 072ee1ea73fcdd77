package engine

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

// clientFrame encodes one masked client frame.
func clientFrame(op ws.OpCode, fin bool, payload string) []byte {
	var b bytes.Buffer
	_ = ws.WriteFrame(&b, ws.MaskFrameInPlace(ws.NewFrame(op, fin, []byte(payload))))
	return b.Bytes()
}

// TestPartialFramesAcrossConnections: a loop decodes the reads of its
// connections at rest with one decoder, and gives a connection left in the
// middle of a frame or of a fragmented message a decoder of its own until
// it is at rest again. Connections written to a few bytes at a time, in
// turn, on one loop, must each get exactly their own messages back, and
// none may keep a decoder once its messages are complete.
func TestPartialFramesAcrossConnections(t *testing.T) {
	r := newRecorder()
	r.onMsg = func(c *Conn, typ MessageType, data []byte) { _ = c.Send(typ, data) }
	s := startServer(t, Config{Loops: 1}, r)
	const n = 6
	conns := make([]net.Conn, n)
	streams := make([][]byte, n)
	for i := range conns {
		conns[i] = dial(t, s, "/", nil)
		waitOpen(t, r)
		text := fmt.Sprintf("text %d: %s", i, strings.Repeat(string(rune('a'+i)), 200+i))
		var st []byte
		st = append(st, clientFrame(ws.OpText, false, text[:50])...)
		st = append(st, clientFrame(ws.OpPing, true, fmt.Sprint("ping ", i))...)
		st = append(st, clientFrame(ws.OpContinuation, false, text[50:120])...)
		st = append(st, clientFrame(ws.OpContinuation, true, text[120:])...)
		st = append(st, clientFrame(ws.OpBinary, true, fmt.Sprint("binary ", i))...)
		streams[i] = st
	}
	for off := 0; ; off += 3 {
		more := false
		for i, c := range conns {
			if off < len(streams[i]) {
				more = true
				if _, err := c.Write(streams[i][off:min(off+3, len(streams[i]))]); err != nil {
					t.Fatal(err)
				}
			}
		}
		if !more {
			break
		}
	}
	for i, c := range conns {
		want := []string{fmt.Sprint("ping ", i), fmt.Sprintf("text %d: %s", i, strings.Repeat(string(rune('a'+i)), 200+i)), fmt.Sprint("binary ", i)}
		for _, w := range want {
			if f := readFrame(t, c); string(f.Payload) != w {
				t.Fatalf("connection %d: got %v %q, want %q", i, f.Header.OpCode, f.Payload, w)
			}
		}
	}
	// Every message is complete and every 101 out: no connection keeps a
	// decoder, nor the state of an opening or closing connection.
	l := (*s.loopList.Load())[0]
	held := make(chan [2]int)
	if err := l.Post(func() {
		var k [2]int
		for i := range l.conns.len() {
			c := l.conns.at(i)
			if c.dec != nil {
				k[0]++
			}
			if c.aux != nil {
				k[1]++
			}
		}
		held <- k
	}); err != nil {
		t.Fatal(err)
	}
	if k := <-held; k != [2]int{} {
		t.Fatalf("of %d open connections at rest, %d keep a decoder and %d a connAux", n, k[0], k[1])
	}
}
