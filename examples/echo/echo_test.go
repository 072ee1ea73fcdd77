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
	"runtime"
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
	t.Run("listener", func(t *testing.T) { echoRoundTripAndShutdown(t) })
	t.Run("mounted on net/http", func(t *testing.T) { echoRoundTripAndShutdown(t, "-mount") })
}

func echoRoundTripAndShutdown(t *testing.T, args ...string) {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	out, outW := io.Pipe()
	stderr := &syncBuffer{}
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), outW, stderr)
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

// startRun runs the command in-process with args and returns the address
// it printed; the command stops when the test ends.
func startRun(t *testing.T, args ...string) (addr string, stderr *syncBuffer) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	out, outW := io.Pipe()
	stderr = &syncBuffer{}
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), outW, stderr)
		outW.Close()
	}()
	t.Cleanup(func() {
		stop()
		_, _ = io.Copy(io.Discard, out)
		select {
		case <-exit:
		case <-time.After(hangGuard):
			t.Errorf("run did not return after its context ended")
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	const prefix = "herald echo listening on "
	if err != nil || !strings.HasPrefix(line, prefix) {
		t.Fatalf("first line %q (%v), want %q<addr>; stderr:\n%s", line, err, prefix, stderr)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return strings.TrimSpace(strings.TrimPrefix(line, prefix)), stderr
}

// dialDeflate is dial offering permessage-deflate as browsers do; it
// returns the server's answer.
func dialDeflate(t *testing.T, addr string) (*client, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, hangGuard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(hangGuard))
	c := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
	key := wsframe.NewRequestKey()
	c.write(wsframe.AppendRequest(nil, addr, "/", key, "Sec-WebSocket-Extensions: "+wsframe.DeflateOffer))
	head, err := wsframe.ReadHead(c.r)
	var ext []byte
	if err == nil {
		_, ext, err = wsframe.ParseResponseExtensions(head, key)
	}
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return c, string(ext)
}

// TestEchoDeflateBomb: the echo negotiates permessage-deflate by default
// (and -v says so), echoes compressed messages compressed, and answers a
// deflate bomb (4 MB that inflate to 4 GiB) with 1009 as soon as it passes
// the 64 MiB limit: the server allocates about the limit on the way, never
// the gigabytes, and its heap is back where it was afterwards.
func TestEchoDeflateBomb(t *testing.T) {
	addr, stderr := startRun(t, "-v")
	c, ext := dialDeflate(t, addr)
	if ext != "permessage-deflate; server_no_context_takeover; client_no_context_takeover" {
		t.Fatalf("answer %q", ext)
	}
	msg := bytes.Repeat([]byte(`{"sym":"S1","px":101.25},`), 100)
	c.write(wsframe.New(wsframe.OpText, wsframe.Deflate(msg, 6)).WithRSV(wsframe.RSV1).Bytes())
	h, p, err := wsframe.ReadFrameDeflate(c.r, nil, 1<<20)
	if err != nil || !h.Compressed {
		t.Fatalf("echo of a compressed message: %+v %v, want it compressed", h, err)
	}
	if p, err = wsframe.Inflate(p, 1<<20); err != nil || !bytes.Equal(p, msg) {
		t.Fatalf("echo inflates to %d bytes (%v), want the message", len(p), err)
	}
	if !strings.Contains(stderr.String(), "deflate=true") {
		t.Fatalf("-v did not log the negotiation; stderr:\n%s", stderr)
	}

	seg := append(wsframe.Deflate(make([]byte, 1<<20), 9), 0, 0, 0xff, 0xff)
	bomb := bytes.Repeat(seg, 4096)
	bomb = bomb[:len(bomb)-4]
	frame := wsframe.New(wsframe.OpBinary, bomb).WithRSV(wsframe.RSV1).Bytes()
	heapBefore := liveHeap()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	c.write(frame)
	op, body := c.next()
	runtime.ReadMemStats(&after)
	if op != wsframe.OpClose || wsframe.CloseCode(body) != 1009 {
		t.Fatalf("after the bomb: opcode %#x %q, want close 1009", op, body)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	heapAfter := liveHeap()
	t.Logf("%d KiB that inflate to 4 GiB: 1009 (%q) after %d MiB allocated; live heap %d MiB before, %d MiB after",
		len(bomb)>>10, body[2:], alloc>>20, heapBefore>>20, heapAfter>>20)
	// The output up to the 64 MiB limit and its growth, and the frame's
	// copies: a few times the limit at most.
	if alloc > 4*64<<20 {
		t.Fatalf("the server allocated %d MiB for a bomb against a 64 MiB limit", alloc>>20)
	}
	if heapAfter > heapBefore+16<<20 {
		t.Fatalf("live heap grew from %d to %d MiB", heapBefore>>20, heapAfter>>20)
	}
	// The server still echoes.
	other, _ := dialDeflate(t, addr)
	other.write(wsframe.AppendFrame(nil, wsframe.OpText, []byte("still here"), wsframe.NewKey()))
	if op, p := other.next(); op != wsframe.OpText || string(p) != "still here" {
		t.Fatalf("after the bomb: %#x %q", op, p)
	}
}

// liveHeap is the heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
