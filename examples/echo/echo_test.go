package main

// The example's own server, as its command runs it: one echo round trip and
// a clean shutdown. The RFC 6455 conformance suite, which drives the engine
// configured like this example, is in tests/conformance.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldws/herald/internal/wsframe"
)

// hangGuard bounds every wait; it is not a speed requirement.
const hangGuard = time.Minute

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// client is a minimal blocking client on wsframe that answers pings.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, hangGuard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(hangGuard))
	c := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
	key := wsframe.NewRequestKey()
	c.write(wsframe.AppendRequest(nil, addr, "/any/path", key, "Origin: http://elsewhere.example"))
	head, err := wsframe.ReadHead(c.r)
	if err == nil {
		_, err = wsframe.ParseResponse(head, key)
	}
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return c
}

func (c *client) write(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next returns the next frame that is not a ping; pings are answered.
func (c *client) next() (byte, []byte) {
	c.t.Helper()
	for {
		h, p, err := wsframe.ReadFrame(c.r, nil, 1<<20)
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if h.Op != wsframe.OpPing {
			if !h.Fin {
				c.t.Fatalf("unexpected fragment (opcode %#x)", h.Op)
			}
			return h.Op, p
		}
		c.write(wsframe.AppendPong(nil, p, wsframe.NewKey()))
	}
}

func TestEchoRoundTripAndShutdown(t *testing.T) {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	out, outW := io.Pipe()
	stderr := &syncBuffer{}
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, []string{"-addr", "127.0.0.1:0"}, outW, stderr)
		outW.Close()
	}()
	go func() { // unblock run's prints after the first line if the test fails
		<-ctx.Done()
		_, _ = io.Copy(io.Discard, out)
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	const prefix = "herald echo listening on "
	if err != nil || !strings.HasPrefix(line, prefix) {
		t.Fatalf("first line %q (%v), want %q<addr>; stderr:\n%s", line, err, prefix, stderr)
	}
	addr := strings.TrimSpace(strings.TrimPrefix(line, prefix))

	c := dial(t, addr)
	msgs := []struct {
		op byte
		p  []byte
	}{{wsframe.OpText, []byte("hello, herald")}, {wsframe.OpBinary, []byte{0, 1, 0xfe, 0xff}}}
	var b []byte
	for _, m := range msgs {
		b = wsframe.AppendFrame(b, m.op, m.p, wsframe.NewKey())
	}
	c.write(b)
	for _, m := range msgs {
		if op, p := c.next(); op != m.op || !bytes.Equal(p, m.p) {
			t.Fatalf("echo: opcode %#x %q, want %#x %q", op, p, m.op, m.p)
		}
	}

	// What SIGINT or SIGTERM does: the client gets 1001, answers, and the
	// command exits with status 0.
	stop()
	op, p := c.next()
	if op != wsframe.OpClose || wsframe.CloseCode(p) != 1001 {
		t.Fatalf("after the stop: opcode %#x %q, want close 1001", op, p)
	}
	c.write(wsframe.AppendCloseReply(nil, p, wsframe.NewKey()))
	if n, err := c.r.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after the close handshake: %d bytes, %v; want the TCP close", n, err)
	}
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("exit status %d, want 0; stderr:\n%s", code, stderr)
		}
	case <-time.After(hangGuard):
		t.Fatalf("run did not return after its context ended; stderr:\n%s", stderr)
	}
}
