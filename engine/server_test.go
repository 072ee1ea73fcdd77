package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/heraldws/herald/upgrade"
)

// quietLogger drops everything: tests assert on behaviour, not logs.
var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// startServer runs a server on a free loopback port until the test ends.
func startServer(t testing.TB, cfg Config, h Handler) *Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger
	}
	if cfg.Loops == 0 {
		cfg.Loops = 2
	}
	s, err := New(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

// dial opens a client WebSocket connection to s's listener (see dialAddr).
func dial(t testing.TB, s *Server, path string, header http.Header) net.Conn {
	t.Helper()
	return dialAddr(t, s.Addr().String(), path, header)
}

// bufferedConn reads first what the dialer's reader already holds.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// readFrame reads one server frame, failing the test on masking or errors.
func readFrame(t testing.TB, conn net.Conn) ws.Frame {
	t.Helper()
	f, err := ws.ReadFrame(conn)
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	if f.Header.Masked {
		t.Fatal("server frame is masked")
	}
	return f
}

// expectClose reads frames until a close frame and returns its code.
func expectClose(t testing.TB, conn net.Conn) ws.StatusCode {
	t.Helper()
	for {
		f := readFrame(t, conn)
		if f.Header.OpCode == ws.OpClose {
			code, _ := ws.ParseCloseFrameData(f.Payload)
			return code
		}
	}
}

// recorder is a Handler that records what happens to its connections.
type recorder struct {
	BaseHandler
	mu       sync.Mutex
	opened   []*Conn
	messages []string
	openCh   chan *Conn
	closeCh  chan error
	onOpen   func(c *Conn)
	onMsg    func(c *Conn, typ MessageType, data []byte)
}

func newRecorder() *recorder {
	return &recorder{openCh: make(chan *Conn, 64), closeCh: make(chan error, 64)}
}

func (r *recorder) OnOpen(c *Conn) {
	if r.onOpen != nil {
		r.onOpen(c)
	}
	r.mu.Lock()
	r.opened = append(r.opened, c)
	r.mu.Unlock()
	r.openCh <- c
}

func (r *recorder) OnMessage(c *Conn, typ MessageType, data []byte) {
	r.mu.Lock()
	r.messages = append(r.messages, string(data))
	r.mu.Unlock()
	if r.onMsg != nil {
		r.onMsg(c, typ, data)
	}
}

func (r *recorder) OnClose(c *Conn, err error) { r.closeCh <- err }

func waitOpen(t testing.TB, r *recorder) *Conn {
	t.Helper()
	select {
	case c := <-r.openCh:
		return c
	case <-time.After(60 * time.Second): // a hang guard
		t.Fatal("OnOpen not called")
	}
	return nil
}

func waitClose(t testing.TB, r *recorder) error {
	t.Helper()
	select {
	case err := <-r.closeCh:
		return err
	case <-time.After(60 * time.Second): // a hang guard
		t.Fatal("OnClose not called")
	}
	return nil
}

func TestEchoOnLoop(t *testing.T) {
	r := newRecorder()
	r.onMsg = func(c *Conn, typ MessageType, data []byte) { _ = c.Send(typ, data) }
	s := startServer(t, Config{}, r)
	conn := dial(t, s, "/", nil)
	for _, msg := range []string{"", "hello", strings.Repeat("x", 125), strings.Repeat("y", 70000)} {
		if err := wsutil.WriteClientText(conn, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		got, op, err := wsutil.ReadServerData(conn)
		if err != nil {
			t.Fatal(err)
		}
		if op != ws.OpText || string(got) != msg {
			t.Fatalf("echo of %d bytes: got op %v, %d bytes", len(msg), op, len(got))
		}
	}
}

func TestSendFromOtherGoroutinesKeepsOrder(t *testing.T) {
	r := newRecorder()
	s := startServer(t, Config{}, r)
	conn := dial(t, s, "/", nil)
	c := waitOpen(t, r)
	const n = 2000
	go func() {
		for i := 0; i < n; i++ {
			if err := c.SendText(fmt.Sprint(i)); err != nil {
				t.Errorf("send %d: %v", i, err)
				return
			}
		}
	}()
	for i := 0; i < n; i++ {
		got, _, err := wsutil.ReadServerData(conn)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != fmt.Sprint(i) {
			t.Fatalf("message %d: got %q", i, got)
		}
	}
	if st := s.Stats(); st.MessagesOut != n {
		t.Fatalf("MessagesOut = %d, want %d", st.MessagesOut, n)
	}
}

func TestServerCloseHandshake(t *testing.T) {
	r := newRecorder()
	s := startServer(t, Config{}, r)
	conn := dial(t, s, "/", nil)
	c := waitOpen(t, r)
	go func() { _ = c.Close(4000, "bye") }()
	f := readFrame(t, conn)
	code, reason := ws.ParseCloseFrameData(f.Payload)
	if f.Header.OpCode != ws.OpClose || code != 4000 || reason != "bye" {
		t.Fatalf("got %v %d %q", f.Header.OpCode, code, reason)
	}
	if err := c.SendText("late"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close: %v, want ErrClosed", err)
	}
	// Answer the close: the server must then close TCP.
	_ = ws.WriteFrame(conn, ws.MaskFrameInPlace(ws.NewCloseFrame(ws.NewCloseFrameBody(4000, ""))))
	if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after close handshake: %v, want EOF", err)
	}
	var ce *CloseError
	if err := waitClose(t, r); !errors.As(err, &ce) || ce.Code != 4000 || ce.Remote {
		t.Fatalf("OnClose err = %v", err)
	}
}

func TestPeerCloseIsEchoed(t *testing.T) {
	r := newRecorder()
	s := startServer(t, Config{}, r)
	conn := dial(t, s, "/", nil)
	waitOpen(t, r)
	_ = ws.WriteFrame(conn, ws.MaskFrameInPlace(ws.NewCloseFrame(ws.NewCloseFrameBody(1000, "done"))))
	if code := expectClose(t, conn); code != 1000 {
		t.Fatalf("echoed code %d", code)
	}
	var ce *CloseError
	if err := waitClose(t, r); !errors.As(err, &ce) || ce.Code != 1000 || ce.Reason != "done" || !ce.Remote {
		t.Fatalf("OnClose err = %v", err)
	}
}

func TestProtocolErrorCloses1002(t *testing.T) {
	r := newRecorder()
	s := startServer(t, Config{}, r)
	conn := dial(t, s, "/", nil)
	waitOpen(t, r)
	// An unmasked client frame breaks RFC 6455 section 5.1.
	_ = ws.WriteFrame(conn, ws.NewTextFrame([]byte("unmasked")))
	if code := expectClose(t, conn); code != 1002 {
		t.Fatalf("close code %d, want 1002", code)
	}
	if s.Stats().ProtocolErrors != 1 {
		t.Fatalf("ProtocolErrors = %d", s.Stats().ProtocolErrors)
	}
}

func TestShutdownSendsGoingAway(t *testing.T) {
	r := newRecorder()
	s, err := New(Config{Addr: "127.0.0.1:0", Logger: quietLogger}, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	conn := dial(t, s, "/", nil)
	waitOpen(t, r)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // a hang guard
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	if code := expectClose(t, conn); code != 1001 {
		t.Fatalf("close code %d, want 1001", code)
	}
	_ = ws.WriteFrame(conn, ws.MaskFrameInPlace(ws.NewCloseFrame(ws.NewCloseFrameBody(1001, ""))))
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	var ce *CloseError
	if err := waitClose(t, r); !errors.As(err, &ce) || ce.Code != StatusGoingAway || ce.Remote {
		t.Fatalf("OnClose err = %v, want the server's 1001", err)
	}
	if _, err := net.DialTimeout("tcp", s.Addr().String(), time.Second); err == nil {
		t.Fatal("server still accepting after Shutdown")
	}
}

func TestShutdownCutsUnresponsivePeers(t *testing.T) {
	r := newRecorder()
	s, err := New(Config{Addr: "127.0.0.1:0", Logger: quietLogger}, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	dial(t, s, "/", nil) // never answers the close frame
	waitOpen(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want deadline exceeded", err)
	}
	waitClose(t, r)
}

func TestKeepalivePingsAndDropsDeadPeers(t *testing.T) {
	r := newRecorder()
	s := startServer(t, Config{PingInterval: 100 * time.Millisecond, PongTimeout: 100 * time.Millisecond}, r)
	clock := fakeClock(s)
	conn := dial(t, s, "/", nil)
	waitOpen(t, r)
	clock.advance(99 * time.Millisecond)
	s.sweepAll(true)
	clock.advance(time.Millisecond)
	s.sweepAll(true)
	f := readFrame(t, conn)
	if f.Header.OpCode != ws.OpPing {
		t.Fatalf("got %v, want a ping", f.Header.OpCode)
	}
	// Stay silent: the server must give up on us once the pong timeout
	// has passed, not before.
	clock.advance(99 * time.Millisecond)
	s.sweepAll(true)
	if n := s.Stats().PongTimeouts; n != 0 {
		t.Fatalf("PongTimeouts = %d before the pong timeout", n)
	}
	clock.advance(time.Millisecond)
	s.sweepAll(true)
	if err := waitClose(t, r); !errors.Is(err, ErrPongTimeout) {
		t.Fatalf("OnClose err = %v, want ErrPongTimeout", err)
	}
	if s.Stats().PongTimeouts != 1 {
		t.Fatalf("PongTimeouts = %d", s.Stats().PongTimeouts)
	}
}

// pongRecorder also reports every pong the server reads.
type pongRecorder struct {
	*recorder
	pongs chan struct{}
}

func (p pongRecorder) OnPong(*Conn, []byte) { p.pongs <- struct{}{} }

func TestKeepaliveSparesLivePeers(t *testing.T) {
	r := pongRecorder{newRecorder(), make(chan struct{}, 1)}
	s := startServer(t, Config{PingInterval: 50 * time.Millisecond, PongTimeout: 500 * time.Millisecond}, r)
	clock := fakeClock(s)
	conn := dial(t, s, "/", nil)
	waitOpen(t, r.recorder)
	// Ten ping intervals, each answered: far past PingInterval+PongTimeout
	// in all, and the live peer stays.
	for i := 0; i < 10; i++ {
		clock.advance(100 * time.Millisecond)
		s.sweepAll(true)
		f := readFrame(t, conn)
		if f.Header.OpCode != ws.OpPing {
			t.Fatalf("got %v, want a ping", f.Header.OpCode)
		}
		_ = ws.WriteFrame(conn, ws.MaskFrameInPlace(ws.NewPongFrame(f.Payload)))
		<-r.pongs
	}
	if st := s.Stats(); st.PongTimeouts != 0 || st.Active != 1 {
		t.Fatalf("live peer dropped: %+v", st)
	}
}

func TestIdleTimeout(t *testing.T) {
	r := newRecorder()
	r.onMsg = func(c *Conn, typ MessageType, data []byte) { _ = c.Send(typ, data) }
	s := startServer(t, Config{IdleTimeout: 100 * time.Millisecond}, r)
	clock := fakeClock(s)
	conn := dial(t, s, "/", nil)
	c := waitOpen(t, r)
	// Messages either way keep it: a client message (echoed), then a
	// server Send from another goroutine, each within the timeout.
	clock.advance(80 * time.Millisecond)
	_ = wsutil.WriteClientText(conn, []byte("ping-pong"))
	if f := readFrame(t, conn); string(f.Payload) != "ping-pong" {
		t.Fatalf("echo %q", f.Payload)
	}
	clock.advance(80 * time.Millisecond)
	s.sweepAll(true)
	if err := c.SendText("from elsewhere"); err != nil {
		t.Fatal(err)
	}
	if f := readFrame(t, conn); string(f.Payload) != "from elsewhere" {
		t.Fatalf("send %q", f.Payload)
	}
	clock.advance(99 * time.Millisecond)
	s.sweepAll(true)
	if n := s.Stats().IdleClosed; n != 0 {
		t.Fatalf("IdleClosed = %d before the idle timeout", n)
	}
	clock.advance(time.Millisecond)
	s.sweepAll(true)
	if code := expectClose(t, conn); code != 1001 {
		t.Fatalf("close code %d, want 1001", code)
	}
	if s.Stats().IdleClosed != 1 {
		t.Fatalf("IdleClosed = %d", s.Stats().IdleClosed)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	s := startServer(t, Config{HandshakeTimeout: 100 * time.Millisecond}, newRecorder())
	clock := fakeClock(s)
	conn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Slowloris: a request head that never ends.
	_, _ = conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n"))
	waitFor(t, "the connection to be accepted", func() bool { return s.Stats().Accepted == 1 })
	clock.advance(99 * time.Millisecond)
	s.sweepAll(true)
	if n := s.Stats().HandshakeTimeouts; n != 0 {
		t.Fatalf("HandshakeTimeouts = %d before the timeout", n)
	}
	clock.advance(time.Millisecond)
	s.sweepAll(true)
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second)) // a hang guard
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("server answered an incomplete head")
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("server kept a slowloris connection open")
	}
	if s.Stats().HandshakeTimeouts != 1 {
		t.Fatalf("HandshakeTimeouts = %d", s.Stats().HandshakeTimeouts)
	}
}

func TestSlowConsumerIsClosed(t *testing.T) {
	r := newRecorder()
	sent := make(chan error, 1)
	// On the loop, the handler sends far more than the socket buffers and
	// the bound can hold to a client that reads nothing.
	r.onMsg = func(c *Conn, _ MessageType, _ []byte) {
		payload := make([]byte, 64<<10)
		var err error
		for i := 0; i < 4096 && err == nil; i++ {
			err = c.SendBinary(payload)
		}
		sent <- err
	}
	s := startServer(t, Config{MaxOutboundBytes: 256 << 10}, r)
	conn := dial(t, s, "/", nil)
	waitOpen(t, r)
	_ = wsutil.WriteClientText(conn, []byte("flood me"))
	if err := <-sent; !errors.Is(err, ErrClosed) {
		t.Fatalf("the flood ended with %v, want ErrClosed", err)
	}
	var ce *CloseError
	if err := waitClose(t, r); !errors.As(err, &ce) || ce.Code != StatusPolicyViolation {
		t.Fatalf("OnClose err = %v, want 1008", err)
	}
	if s.Stats().SlowClosed != 1 {
		t.Fatalf("SlowClosed = %d", s.Stats().SlowClosed)
	}
}

func TestAuthorizeSessionRequestAndSubprotocol(t *testing.T) {
	r := newRecorder()
	var path, query atomic.Value
	r.onOpen = func(c *Conn) {
		path.Store(c.Request().Path)
		query.Store(c.Request().Query().Get("room"))
	}
	kept := make(chan bool, 1)
	r.onMsg = func(c *Conn, _ MessageType, _ []byte) { kept <- c.Request() != nil }
	s := startServer(t, Config{
		Subprotocols: []string{"v2.herald", "v1.herald"},
		Authorize: func(req *upgrade.Request) (any, error) {
			if req.Header.Get("Authorization") != "Bearer good" {
				return nil, upgrade.ErrUnauthorized
			}
			return "alice", nil
		},
	}, r)

	// Refused: 401.
	d := ws.Dialer{Timeout: 5 * time.Second}
	_, _, _, err := d.Dial(context.Background(), "ws://"+s.Addr().String()+"/chat")
	var se ws.StatusError
	if !errors.As(err, &se) || int(se) != 401 {
		t.Fatalf("unauthorized dial: %v, want 401", err)
	}

	// Accepted: session, request and subprotocol reach the handler.
	d.Header = ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer good"}})
	d.Protocols = []string{"v1.herald", "v2.herald"}
	conn, _, hs, err := d.Dial(context.Background(), "ws://"+s.Addr().String()+"/chat?room=go")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := waitOpen(t, r)
	if c.Session() != "alice" || hs.Protocol != "v2.herald" || c.Subprotocol() != "v2.herald" {
		t.Fatalf("session %v, protocol %q/%q", c.Session(), hs.Protocol, c.Subprotocol())
	}
	if path.Load() != "/chat" || query.Load() != "go" {
		t.Fatalf("request path %v query %v", path.Load(), query.Load())
	}
	// After OnOpen the request is gone: ask from a later callback.
	_ = wsutil.WriteClientText(conn, []byte("x"))
	if <-kept {
		t.Fatal("Request kept after OnOpen")
	}
}

func TestCrossOriginRefusedByDefault(t *testing.T) {
	s := startServer(t, Config{}, newRecorder())
	for _, tc := range []struct {
		origin string
		status int
	}{
		{"http://" + s.Addr().String(), 101},
		{"http://evil.example", 403},
	} {
		d := ws.Dialer{Timeout: 5 * time.Second, Header: ws.HandshakeHeaderHTTP(http.Header{"Origin": {tc.origin}})}
		conn, _, _, err := d.Dial(context.Background(), "ws://"+s.Addr().String()+"/")
		if tc.status == 101 {
			if err != nil {
				t.Fatalf("same origin refused: %v", err)
			}
			conn.Close()
			continue
		}
		var se ws.StatusError
		if !errors.As(err, &se) || int(se) != tc.status {
			t.Fatalf("origin %s: %v, want %d", tc.origin, err, tc.status)
		}
	}
}

func TestPlainHTTP(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	s := startServer(t, Config{HTTPHandler: mux}, newRecorder())
	resp, err := http.Get("http://" + s.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("GET /healthz: %d %q", resp.StatusCode, body)
	}
	if s.Stats().HTTPServed != 1 {
		t.Fatalf("HTTPServed = %d", s.Stats().HTTPServed)
	}

	// Without a handler: 426.
	s2 := startServer(t, Config{}, newRecorder())
	resp, err = http.Get("http://" + s2.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("plain GET without handler: %d, want 426", resp.StatusCode)
	}
}

func TestBadHandshakeAnswers(t *testing.T) {
	s := startServer(t, Config{MaxHeaderBytes: 1024}, newRecorder())
	cases := []struct {
		name, request string
		status        int
	}{
		{"garbage", "\x16\x03\x01\x02\x00garbage\r\n\r\n", 400},
		{"post", "POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 405},
		{"no key", "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", 400},
		{"version", "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n", 426},
		{"huge head", "GET / HTTP/1.1\r\nHost: x\r\nX-Fill: " + strings.Repeat("a", 2000) + "\r\n\r\n", 431},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", s.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = conn.Write([]byte(tc.request))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
	// The server is undisturbed.
	conn := dial(t, s, "/", nil)
	_ = wsutil.WriteClientText(conn, []byte("still here"))
	_ = conn
}

func TestWorkersKeepOrderPerConnection(t *testing.T) {
	r := newRecorder()
	r.onMsg = func(c *Conn, typ MessageType, data []byte) {
		_ = c.Send(typ, data) // from a worker: goes through the loop inbox
	}
	s := startServer(t, Config{Workers: 4}, r)
	const conns, msgs = 4, 300
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		conn := dial(t, s, "/", nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			go func() {
				for j := 0; j < msgs; j++ {
					_ = wsutil.WriteClientText(conn, []byte(fmt.Sprint(j)))
				}
			}()
			for j := 0; j < msgs; j++ {
				got, _, err := wsutil.ReadServerData(conn)
				if err != nil {
					t.Error(err)
					return
				}
				if string(got) != fmt.Sprint(j) {
					t.Errorf("message %d: got %q", j, got)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestPipelinedFramesAfterHandshake(t *testing.T) {
	r := newRecorder()
	r.onMsg = func(c *Conn, typ MessageType, data []byte) { _ = c.Send(typ, data) }
	s := startServer(t, Config{}, r)
	conn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var req strings.Builder
	req.WriteString("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
	req.WriteString("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	frame := ws.MaskFrameInPlace(ws.NewTextFrame([]byte("pipelined")))
	var b strings.Builder
	_ = ws.WriteFrame(&b, frame)
	// Head and frame in one write, then sent one byte at a time too.
	if _, err := conn.Write([]byte(req.String() + b.String())); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	f, err := ws.ReadFrame(br)
	if err != nil || string(f.Payload) != "pipelined" {
		t.Fatalf("echo: %q %v", f.Payload, err)
	}
}

func TestWorkerBacklogIsBounded(t *testing.T) {
	r := newRecorder()
	release := make(chan struct{})
	r.onMsg = func(*Conn, MessageType, []byte) { <-release }
	s := startServer(t, Config{Workers: 1, WorkerQueue: 4}, r)
	defer close(release)
	conn := dial(t, s, "/", nil)
	waitOpen(t, r)
	for i := 0; i < 20; i++ {
		_ = wsutil.WriteClientText(conn, []byte("work"))
	}
	if code := expectClose(t, conn); code != 1013 {
		t.Fatalf("close code %d, want 1013", code)
	}
	if st := s.Stats(); st.WorkerBacklogClosed != 1 || st.SlowClosed != 0 {
		t.Fatalf("WorkerBacklogClosed = %d, SlowClosed = %d: want the worker backlog counted on its own", st.WorkerBacklogClosed, st.SlowClosed)
	}
}

// TestRequestKeptByOnOpenSurvivesLaterHandshakes: the engine lets later
// handshakes reuse the memory of a request no handler looked at; what a
// handler took from one it did look at must never change.
func TestRequestKeptByOnOpenSurvivesLaterHandshakes(t *testing.T) {
	for _, workers := range []int{0, 2} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			const n = 40
			type kept struct{ path, hdr, query string }
			var mu sync.Mutex
			got := map[int]kept{}
			r := newRecorder()
			r.onOpen = func(c *Conn) {
				if c.ID()%2 == 1 {
					return // this one's request is released for reuse
				}
				req := c.Request()
				k := kept{req.Path, req.Header.Get("X-N"), req.Query().Get("q")}
				i, _ := strconv.Atoi(k.hdr)
				mu.Lock()
				got[i] = k
				mu.Unlock()
			}
			s := startServer(t, Config{Workers: workers}, r)
			var want []int
			for i := 0; i < n; i++ {
				conn := dial(t, s, fmt.Sprintf("/p%d?q=v%d", i, i), http.Header{"X-N": {strconv.Itoa(i)}})
				if c := waitOpen(t, r); c.ID()%2 == 0 {
					want = append(want, i)
				}
				conn.Close()
			}
			mu.Lock()
			defer mu.Unlock()
			for _, i := range want {
				k := got[i]
				if k.path != fmt.Sprintf("/p%d", i) || k.hdr != strconv.Itoa(i) || k.query != fmt.Sprintf("v%d", i) {
					t.Fatalf("connection %d: OnOpen kept %+v, which changed after later handshakes", i, k)
				}
			}
		})
	}
}
