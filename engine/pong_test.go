package engine

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// Pings that arrive together are answered together. A peer that reads gets
// a pong for every ping, in order; one that has unsent bytes waiting gets a
// pong for the latest only (RFC 6455 5.5.3), so a ping flood from a client
// that reads nothing does not grow its backlog by a pong per ping.
func TestPingsOfOneReadAndTheirPongs(t *testing.T) {
	const pings = 1000
	for _, tc := range []struct {
		name    string
		backlog bool // the server holds unsent bytes for the client
	}{
		{"peer keeps up: every ping answered", false},
		{"peer behind: the latest ping answered", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := floodOnRequest()
			s := startServer(t, Config{WriteTimeout: -1, MaxOutboundBytes: 64 << 20}, r)
			conn := dial(t, s, "/", nil)
			c := waitOpen(t, r)
			if tc.backlog {
				_ = wsutil.WriteClientText(conn, []byte("flood me"))
				waitFor(t, "a backlog", func() bool { return backlogOf(t, c) > 0 })
			}
			var all bytes.Buffer // one write: the server reads the pings at once
			for i := 0; i < pings; i++ {
				f := ws.MaskFrame(ws.NewPingFrame([]byte(fmt.Sprintf("p%03d", i))))
				if err := ws.WriteFrame(&all, f); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := conn.Write(all.Bytes()); err != nil {
				t.Fatal(err)
			}
			var got []string
			for len(got) == 0 || got[len(got)-1] != fmt.Sprintf("p%03d", pings-1) {
				f := readFrame(t, conn)
				switch f.Header.OpCode {
				case ws.OpPong:
					got = append(got, string(f.Payload))
				case ws.OpBinary: // the backlog
				default:
					t.Fatalf("unexpected %v frame", f.Header.OpCode)
				}
			}
			if !tc.backlog {
				if len(got) != pings {
					t.Fatalf("%d pongs for %d pings, want one each", len(got), pings)
				}
				for i, p := range got {
					if want := fmt.Sprintf("p%03d", i); p != want {
						t.Fatalf("pong %d carries %q, want %q", i, p, want)
					}
				}
				return
			}
			// One read of the pings gives one pong; a read split by the
			// kernel gives a few.
			if len(got) > pings/10 {
				t.Fatalf("%d pongs for %d pings behind a backlog, want the latest of each read", len(got), pings)
			}
		})
	}
}
