package loadclient

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/heraldws/herald/internal/wsframe"
)

// fakeServer accepts one connection, answers its upgrade with accept (the
// right key when empty), then runs serve.
func fakeServer(t *testing.T, accept string, serve func(c net.Conn, r *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		req, err := http.ReadRequest(r)
		if err != nil {
			return
		}
		if accept == "" {
			accept = wsframe.Accept(req.Header.Get("Sec-WebSocket-Key"))
		}
		_, _ = c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n"))
		if serve != nil {
			serve(c, r)
		}
	}()
	return ln.Addr().String()
}

// readClientFrame reads one masked client frame and returns its opcode and
// unmasked payload.
func readClientFrame(r *bufio.Reader) (byte, []byte, error) {
	var h [6]byte
	if _, err := io.ReadFull(r, h[:2]); err != nil {
		return 0, nil, err
	}
	if h[1]&0x80 == 0 || h[1]&0x7F > 125 {
		return 0, nil, errors.New("client frame unmasked or not a small control frame")
	}
	n := int(h[1] & 0x7F)
	if _, err := io.ReadFull(r, h[2:6]); err != nil {
		return 0, nil, err
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	for i := range p {
		p[i] ^= h[2+i%4]
	}
	return h[0] & 0x0F, p, nil
}

func serverFrame(op byte, p []byte) []byte {
	f := []byte{0x80 | op}
	if len(p) <= 125 {
		f = append(f, byte(len(p)))
	} else {
		f = append(f, 126, byte(len(p)>>8), byte(len(p)))
	}
	return append(f, p...)
}

// Discard drops data, answers pings with their payload and answers the
// server's close with its code.
func TestDiscardAnswersPingsAndClose(t *testing.T) {
	got := make(chan string, 4)
	addr := fakeServer(t, "", func(c net.Conn, r *bufio.Reader) {
		var out []byte
		out = append(out, serverFrame(wsframe.OpText, bytes.Repeat([]byte("x"), 300))...)
		out = append(out, serverFrame(wsframe.OpPing, []byte("keepalive"))...)
		out = append(out, serverFrame(wsframe.OpBinary, []byte("data"))...)
		// One byte per write: every frame arrives split.
		for i := range out {
			if _, err := c.Write(out[i : i+1]); err != nil {
				return
			}
		}
		op, p, err := readClientFrame(r)
		if err != nil || op != wsframe.OpPong {
			got <- "no pong"
			return
		}
		got <- "pong " + string(p)
		_, _ = c.Write(serverFrame(wsframe.OpClose, wsframe.AppendClosePayload(nil, 1001, "bye")))
		op, p, err = readClientFrame(r)
		if err != nil || op != wsframe.OpClose {
			got <- "no close"
			return
		}
		got <- fmt.Sprintf("close %d", wsframe.CloseCode(p))
	})
	conn, err := Dial(addr, "/", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	done := make(chan struct{})
	go func() { Discard(conn); close(done) }()
	for _, want := range []string{"pong keepalive", "close 1001"} {
		select {
		case g := <-got:
			if g != want {
				t.Fatalf("server saw %q, want %q", g, want)
			}
		case <-time.After(time.Minute):
			t.Fatalf("server saw nothing, want %q", want)
		}
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Discard did not return after the server's close")
	}
}

func TestDialChecksTheAcceptKey(t *testing.T) {
	addr := fakeServer(t, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", nil)
	if c, err := Dial(addr, "/", 0); !errors.Is(err, wsframe.ErrBadHandshake) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("Dial with a wrong accept key: %v", err)
	}
}
