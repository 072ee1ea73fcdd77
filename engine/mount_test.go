package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/heraldws/herald/upgrade"
)

// startMounted starts a server with cfg (mounted only unless cfg.Addr is
// set) and serves it at /ws on an http.ServeMux behind wrap, on a
// loopback httptest server. It returns the server and the HTTP address.
func startMounted(t testing.TB, cfg Config, h Handler, wrap func(http.Handler) http.Handler) (*Server, string) {
	t.Helper()
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
	mux := http.NewServeMux()
	mux.Handle("/ws", s)
	mux.HandleFunc("/plain", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "plain") })
	var root http.Handler = mux
	if wrap != nil {
		root = wrap(mux)
	}
	hs := httptest.NewServer(root)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // a hang guard
		defer cancel()
		_ = s.Shutdown(ctx)
		hs.Close()
	})
	return s, hs.Listener.Addr().String()
}

// dialAddr opens a client WebSocket connection to addr with gobwas/ws.
func dialAddr(t testing.TB, addr, path string, header http.Header) net.Conn {
	t.Helper()
	d := ws.Dialer{Timeout: 60 * time.Second}
	if header != nil {
		d.Header = ws.HandshakeHeaderHTTP(header)
	}
	conn, br, _, err := d.Dial(context.Background(), "ws://"+addr+path)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	if br != nil {
		// Frames OnOpen sent came in the same read as the 101.
		conn = bufferedConn{conn, br}
	}
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second)) // a hang guard
	return conn
}

// logged is a logging middleware: it wraps the ResponseWriter to record
// the status, and still lets the server hijack the connection (Unwrap, as
// http.ResponseController follows it).
type logged struct {
	http.ResponseWriter
	status int
}

func (l *logged) WriteHeader(code int) { l.status = code; l.ResponseWriter.WriteHeader(code) }

func (l *logged) Unwrap() http.ResponseWriter { return l.ResponseWriter }

func logging(log *[]string, mu *sync.Mutex) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			lw := &logged{ResponseWriter: w}
			next.ServeHTTP(lw, r)
			mu.Lock()
			*log = append(*log, fmt.Sprintf("%s %s %d", r.Method, r.URL.Path, lw.status))
			mu.Unlock()
		})
	}
}

// hijackable is an auth middleware's wrapper that implements Hijack itself.
type hijackable struct{ http.ResponseWriter }

func (h hijackable) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(h.ResponseWriter).Hijack()
}

// requireToken refuses requests without ?token=good with 401 before they
// reach the WebSocket route, and wraps the ResponseWriter of the others.
func requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("token") != "good" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(hijackable{w}, r)
	})
}

// opaque is a wrapper that hides the ResponseWriter it wraps: no Hijack,
// no Unwrap.
type opaque struct{ w http.ResponseWriter }

func (o opaque) Header() http.Header         { return o.w.Header() }
func (o opaque) Write(p []byte) (int, error) { return o.w.Write(p) }
func (o opaque) WriteHeader(code int)        { o.w.WriteHeader(code) }

func echoRecorder() *recorder {
	r := newRecorder()
	r.openCh = make(chan *Conn, 1024)
	r.closeCh = make(chan error, 1024)
	r.onMsg = func(c *Conn, typ MessageType, data []byte) { _ = c.Send(typ, data) }
	return r
}

func TestMountEcho(t *testing.T) {
	var (
		mu  sync.Mutex
		log []string
	)
	both := func(h http.Handler) http.Handler { return logging(&log, &mu)(requireToken(h)) }
	for _, tc := range []struct {
		name string
		addr string // the server's own listener, "" for none
		wrap func(http.Handler) http.Handler
		cfg  Config
	}{
		{name: "mux"},
		{name: "mux beside a listener", addr: "127.0.0.1:0"},
		{name: "logging and auth middleware", wrap: both},
		{name: "workers", cfg: Config{Workers: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := echoRecorder()
			cfg := tc.cfg
			cfg.Addr = tc.addr
			s, addr := startMounted(t, cfg, r, tc.wrap)
			conn := dialAddr(t, addr, "/ws?token=good", nil)
			c := waitOpen(t, r)
			for _, msg := range []string{"hello", strings.Repeat("x", 70000)} {
				if err := ws.WriteFrame(conn, ws.MaskFrameInPlace(ws.NewTextFrame([]byte(msg)))); err != nil {
					t.Fatal(err)
				}
				f := readFrame(t, conn)
				if f.Header.OpCode != ws.OpText || string(f.Payload) != msg {
					t.Fatalf("echo: %v %d bytes, want text %d bytes", f.Header.OpCode, len(f.Payload), len(msg))
				}
			}
			st := s.Stats()
			if st.Mounted != 1 || st.Upgraded != 1 || st.Open != 1 || st.Active != 1 {
				t.Fatalf("stats: Mounted %d Upgraded %d Open %d Active %d, want 1 each", st.Mounted, st.Upgraded, st.Open, st.Active)
			}
			if tc.addr == "" && s.Addr() != nil {
				t.Fatalf("Addr() = %v for a server mounted only, want nil", s.Addr())
			}
			if err := c.Close(StatusNormalClosure, "bye"); err != nil {
				t.Fatal(err)
			}
			if code := expectClose(t, conn); code != ws.StatusNormalClosure {
				t.Fatalf("close code %d, want 1000", code)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(log) != 1 || log[0] != "GET /ws 0" {
		// The status is 0: the 101 went out on the hijacked connection,
		// not through the ResponseWriter.
		t.Fatalf("middleware log %q, want one hijacked GET /ws", log)
	}
}

func TestMountNotHijackable(t *testing.T) {
	r := echoRecorder()
	authorized := atomic.Int32{}
	cfg := Config{Authorize: func(*upgrade.Request) (any, error) { authorized.Add(1); return nil, nil }}
	s, addr := startMounted(t, cfg, r, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(opaque{w}, r) })
	})
	status, body := rawHandshake(t, addr, upgradeRequest("/ws", ""))
	if status != http.StatusInternalServerError || !strings.Contains(body, "cannot be hijacked") {
		t.Fatalf("got %d %q, want 500 naming the hijack", status, body)
	}
	if authorized.Load() != 0 {
		t.Fatal("Authorize ran for a connection that could never be handed over")
	}
	if st := s.Stats(); st.Rejected != 1 || st.Open != 0 {
		t.Fatalf("stats: Rejected %d Open %d, want 1 and 0", st.Rejected, st.Open)
	}
}

// rawHandshake sends req on a new connection to addr and returns the
// reply's status and body.
func rawHandshake(t testing.TB, addr, req string) (int, string) {
	t.Helper()
	resp, _ := rawReply(t, addr, req)
	return resp.StatusCode, readBody(t, resp)
}

func rawReply(t testing.TB, addr, req string) (*http.Response, net.Conn) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second)) // a hang guard
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	method, _, _ := strings.Cut(req, " ")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	// After a 101 the reader may hold frames already.
	return resp, bufferedConn{conn, br}
}

func readBody(t testing.TB, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatal(err)
	}
	return string(b)
}

// A mounted idle connection costs no goroutine: net/http's goroutine ends
// once the connection is handed over, and gnet's registration borrows a
// pooled one only for the hand-over.
func TestMountLeavesNoGoroutine(t *testing.T) {
	r := echoRecorder()
	_, addr := startMounted(t, Config{}, r, nil)
	// Warm up: gnet's worker pool, net/http's and the client's.
	dialAddr(t, addr, "/ws", nil)
	waitOpen(t, r)
	base := runtime.NumGoroutine()
	const n = 200
	for i := 0; i < n; i++ {
		conn := dialAddr(t, addr, "/ws", nil)
		waitOpen(t, r)
		_ = conn
	}
	// net/http's connection goroutines end after the hand-over; allow a
	// few that are still on their way out or pooled.
	const slack = 8
	waitFor(t, "goroutines back to the baseline", func() bool {
		return runtime.NumGoroutine() <= base+slack
	})
}

// Mounted and native handshakes get the same replies: the server listens
// itself and is mounted too, and each request goes to both.
func TestMountRepliesAsNative(t *testing.T) {
	r := echoRecorder()
	cfg := Config{
		Addr:           "127.0.0.1:0",
		MaxHeaderBytes: 1024,
		Subprotocols:   []string{"chat", "v2"},
		Compression:    Compression{Enabled: true},
		OriginPatterns: []string{"*.example.com"},
		Authorize: func(r *upgrade.Request) (any, error) {
			switch r.Header.Get("X-Token") {
			case "good":
				return "alice", nil
			case "busy":
				return nil, upgrade.ErrTooManyRequests
			}
			return nil, &upgrade.RejectError{Status: http.StatusUnauthorized, Reason: "who are you",
				Header: http.Header{"Www-Authenticate": {`Bearer realm="ws"`}}}
		},
	}
	s, addr := startMounted(t, cfg, r, nil)
	native := s.Addr().String()
	ok := "X-Token: good\r\n"
	for _, tc := range []struct {
		name   string
		req    string
		status int
	}{
		{"upgrade with subprotocol and deflate", upgradeRequest("/ws", ok+"Sec-WebSocket-Protocol: v2, chat\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"), 101},
		{"allowed origin", upgradeRequest("/ws", ok+"Origin: https://app.example.com\r\n"), 101},
		{"bad origin", upgradeRequest("/ws", ok+"Origin: https://evil.test\r\n"), 403},
		{"bad version", strings.Replace(upgradeRequest("/ws", ok), "Version: 13", "Version: 8", 1), 426},
		{"missing key", strings.Replace(upgradeRequest("/ws", ok), "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "", 1), 400},
		{"bad key", strings.Replace(upgradeRequest("/ws", ok), "dGhlIHNhbXBsZSBub25jZQ==", "short", 1), 400},
		{"missing connection upgrade", strings.Replace(upgradeRequest("/ws", ok), "Connection: Upgrade\r\n", "", 1), 400},
		{"not a GET", strings.Replace(upgradeRequest("/ws", ok), "GET", "PUT", 1), 405},
		{"bad extension", upgradeRequest("/ws", ok+"Sec-WebSocket-Extensions: permessage-deflate; =\r\n"), 400},
		{"authorize refuses", upgradeRequest("/ws", ""), 401},
		{"authorize refuses with a ready-made error", upgradeRequest("/ws", "X-Token: busy\r\n"), 429},
		{"plain GET", "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", 426},
		{"plain POST", "POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405},
		{"head too large", upgradeRequest("/ws", ok+"X-Pad: "+strings.Repeat("p", 1100)+"\r\n"), 431},
		{"body", upgradeRequest("/ws", ok+"Content-Length: 3\r\n") + "abc", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, _ := rawReply(t, native, tc.req)
			got, _ := rawReply(t, addr, tc.req)
			if want.StatusCode != tc.status {
				t.Fatalf("native status %d, want %d", want.StatusCode, tc.status)
			}
			if got.StatusCode != want.StatusCode {
				t.Fatalf("mounted status %d, native %d", got.StatusCode, want.StatusCode)
			}
			for _, k := range []string{"Content-Type", "Connection", "Upgrade", "Allow", "Sec-Websocket-Version",
				"Www-Authenticate", "Sec-Websocket-Accept", "Sec-Websocket-Protocol", "Sec-Websocket-Extensions"} {
				if g, w := got.Header.Values(k), want.Header.Values(k); strings.Join(g, "|") != strings.Join(w, "|") {
					t.Errorf("%s: mounted %q, native %q", k, g, w)
				}
			}
			if tc.status == 101 {
				return
			}
			if g, w := readBody(t, got), readBody(t, want); g != w {
				t.Errorf("body: mounted %q, native %q", g, w)
			}
		})
	}
}

// What the handshake decided reaches the mounted connection: subprotocol,
// permessage-deflate, Authorize's session, the request.
func TestMountOpenSeesTheHandshake(t *testing.T) {
	type seen struct {
		proto, path, query, host, origin string
		deflate                          bool
		session                          any
	}
	got := make(chan seen, 1)
	r := newRecorder()
	r.onOpen = func(c *Conn) {
		q := c.Request()
		got <- seen{c.Subprotocol(), q.Path, q.Query().Get("room"), q.Host, q.Origin(), c.Compression(), c.Session()}
	}
	cfg := Config{
		Subprotocols: []string{"chat"},
		Compression:  Compression{Enabled: true},
		Authorize:    func(r *upgrade.Request) (any, error) { return "alice@" + r.RemoteAddr.Network(), nil },
	}
	_, addr := startMounted(t, cfg, r, nil)
	resp, _ := rawReply(t, addr, upgradeRequest("/ws?room=7",
		"Origin: http://x\r\nSec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"))
	if resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	want := seen{"chat", "/ws", "7", "x", "http://x", true, "alice@tcp"}
	select {
	case g := <-got:
		if g != want {
			t.Fatalf("OnOpen saw %+v, want %+v", g, want)
		}
	case <-time.After(60 * time.Second): // a hang guard
		t.Fatal("OnOpen not called")
	}
}

// Frames the client sends right behind the head, without waiting for the
// 101, reach the connection: net/http has them in its buffer at the
// hijack.
func TestMountPipelinedFrames(t *testing.T) {
	r := echoRecorder()
	_, addr := startMounted(t, Config{}, r, nil)
	req := []byte(upgradeRequest("/ws", ""))
	for _, m := range []string{"one", "two", strings.Repeat("3", 300)} {
		req = append(req, clientFrame(ws.OpText, true, m)...)
	}
	// The last frame is cut: its rest comes in a later read.
	last := clientFrame(ws.OpBinary, true, "four")
	req = append(req, last[:3]...)
	resp, conn := rawReply(t, addr, string(req))
	if resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if _, err := conn.Write(last[3:]); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"one", "two", strings.Repeat("3", 300), "four"} {
		f := readFrame(t, conn)
		if string(f.Payload) != m {
			t.Fatalf("echo %q, want %q", f.Payload, m)
		}
	}
}

// Shutdown closes mounted connections with 1001 like native ones; a
// handshake whose Authorize is still running when Shutdown begins gets
// 503, and so does every handshake after it.
func TestMountShutdown(t *testing.T) {
	r := echoRecorder()
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	cfg := Config{Authorize: func(r *upgrade.Request) (any, error) {
		if r.Path == "/ws" && r.RawQuery == "slow" {
			entered <- struct{}{}
			<-release
		}
		return nil, nil
	}}
	s, addr := startMounted(t, cfg, r, nil)
	conns := []net.Conn{dialAddr(t, addr, "/ws", nil), dialAddr(t, addr, "/ws", nil)}
	waitOpen(t, r)
	waitOpen(t, r)
	slow := make(chan int, 1)
	go func() {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			slow <- -1
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(60 * time.Second)) // a hang guard
		_, _ = io.WriteString(conn, upgradeRequest("/ws?slow", ""))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			slow <- -1
			return
		}
		slow <- resp.StatusCode
	}()
	<-entered
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // a hang guard
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	for _, conn := range conns {
		if code := expectClose(t, conn); code != ws.StatusGoingAway {
			t.Fatalf("close code %d, want 1001", code)
		}
		_ = ws.WriteFrame(conn, ws.MaskFrameInPlace(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusGoingAway, ""))))
	}
	waitFor(t, "draining", s.draining.Load)
	close(release)
	if status := <-slow; status != http.StatusServiceUnavailable {
		t.Fatalf("handshake authorized during Shutdown: status %d, want 503", status)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	status, body := rawHandshake(t, addr, upgradeRequest("/ws", ""))
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
		t.Fatalf("after Shutdown: %d %q, want 503", status, body)
	}
	if st := s.Stats(); st.Mounted != 2 || st.Closes.ByCode[1] != 2 {
		t.Fatalf("stats: Mounted %d, 1001 closes %d, want 2 and 2", st.Mounted, st.Closes.ByCode[1])
	}
}

func TestMountBeforeStart(t *testing.T) {
	s, err := New(Config{Logger: quietLogger}, BaseHandler{})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/ws", nil)
	if err := s.Upgrade(w, req); !errors.Is(err, ErrClosed) {
		t.Fatalf("Upgrade before Start: %v, want ErrClosed", err)
	}
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", w.Code)
	}
}

// A server mounted only listens nowhere a client could find: its internal
// listener's directory is gone once it has stopped.
func TestMountOnlyCleansUp(t *testing.T) {
	s, err := New(Config{Logger: quietLogger, Loops: 1}, BaseHandler{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	dir := s.mnt.dir
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("internal listener's directory: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // a hang guard
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("directory %s still there after Shutdown: %v", dir, err)
	}
}

// A burst of mounted connections returns net/http's garbage to the OS once
// it has ended, once, and not while it goes on.
func TestMountGarbageReturnDecision(t *testing.T) {
	const MiB = 1 << 20
	per := uint64(MiB / mountGarbage) // mounts that leave 1 MiB behind
	type step struct {
		mounted   uint64 // total so far
		at        time.Duration
		returning bool // the footprint's own decision
		want      bool
	}
	for _, tc := range []struct {
		name      string
		threshold int64
		steps     []step
	}{
		{"disabled", -1, []step{{100 * per, 0, false, false}, {100 * per, time.Second, false, false}}},
		{"a burst that ends returns once", 8 * MiB, []step{
			{20 * per, 0, false, false}, {40 * per, time.Second, false, false},
			{40 * per, 2 * time.Second, false, true}, {40 * per, 3 * time.Second, false, false},
		}},
		{"a small burst does not", 8 * MiB, []step{{4 * per, 0, false, false}, {4 * per, time.Second, false, false}}},
		{"steady mounts never do", 8 * MiB, []step{
			{20 * per, 0, false, false}, {40 * per, time.Second, false, false}, {60 * per, 2 * time.Second, false, false},
		}},
		{"a return for the footprint pays the debt", 8 * MiB, []step{
			{40 * per, 0, false, false}, {40 * per, time.Second, true, false}, {40 * per, 2 * time.Second, false, false},
		}},
		{"a second burst waits for the cooldown", 8 * MiB, []step{
			{40 * per, 0, false, false}, {40 * per, time.Second, false, true},
			{80 * per, 2 * time.Second, false, false}, {80 * per, 3 * time.Second, false, false},
			{80 * per, time.Second + returnCooldown, false, true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := memoryReturn{threshold: tc.threshold}
			var m mountState
			for i, s := range tc.steps {
				m.mounted.Store(s.mounted)
				if got := m.garbageDue(&r, s.at, s.returning); got != s.want {
					t.Fatalf("step %d (%d mounted at %v): return = %v, want %v", i, s.mounted, s.at, got, s.want)
				}
			}
		})
	}
}

// The end of a burst of mounted connections gives net/http's garbage back
// to the OS on its own (Stats.MemoryReturns), with nothing closed.
func TestMountBurstReturnsMemory(t *testing.T) {
	r := echoRecorder()
	s, addr := startMounted(t, Config{ReturnMemoryAfter: 1 << 20}, r, nil)
	n := int(1<<20/mountGarbage) + 1
	for i := 0; i < n; i++ {
		dialAddr(t, addr, "/ws", nil)
		waitOpen(t, r)
	}
	waitFor(t, "a memory return", func() bool { return s.Stats().MemoryReturns > 0 })
	if st := s.Stats(); st.Open != int64(n) {
		t.Fatalf("%d open, want %d", st.Open, n)
	}
}

// A burst of connects, native and mounted at once, is shared among the
// loops by the load balancer that mounting needs (gnet's RoundRobin is not
// safe beside Register).
func TestLoopsShareABurst(t *testing.T) {
	r := echoRecorder()
	r.openCh = make(chan *Conn, 4096)
	s, addr := startMounted(t, Config{Addr: "127.0.0.1:0"}, r, nil)
	const n = 400 // half native, half mounted
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			target, path := s.Addr().String(), "/"
			if i%2 == 1 {
				target, path = addr, "/ws"
			}
			conn, _, _, err := ws.Dialer{Timeout: 60 * time.Second}.Dial(context.Background(), "ws://"+target+path)
			if err != nil {
				t.Error(err)
				return
			}
			t.Cleanup(func() { conn.Close() })
		}(i)
	}
	wg.Wait()
	waitFor(t, "every connection open", func() bool { return s.Stats().Open == n })
	loops := *s.loopList.Load()
	if len(loops) != 2 {
		t.Fatalf("%d loops have connections, want 2", len(loops))
	}
	for _, l := range loops {
		got := make(chan int, 1)
		if err := l.post(task{kind: taskFunc, fn: func() { got <- l.conns.len() }}); err != nil {
			t.Fatal(err)
		}
		// A hash of 400 addresses puts 200 ± 10 on each; a burst sent
		// to one loop puts nearly all there.
		if c := <-got; c < n/4 {
			t.Fatalf("a loop has %d of %d connections", c, n)
		}
	}
}

// A mounted connection ends up with a natively accepted one's addresses:
// gnet's local address shared by the server's mounted connections, and a
// remote one whose IP is the socket address gnet keeps, so that none of
// the hijacked net.Conn's address objects stays alive. It fails when a gnet
// version moves the fields adoptAddrs writes.
func TestMountAdoptsNativeAddrs(t *testing.T) {
	for _, tc := range []struct{ name, network, addr string }{
		{"IPv4", "tcp4", "127.0.0.1:0"},
		{"IPv6", "tcp6", "[::1]:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen(tc.network, tc.addr)
			if err != nil {
				t.Skipf("no %s loopback: %v", tc.name, err)
			}
			testMountAdoptsNativeAddrs(t, ln)
		})
	}
}

func testMountAdoptsNativeAddrs(t *testing.T, ln net.Listener) {
	type addrs struct {
		conn          *Conn
		local, remote net.Addr
		peer          unix.Sockaddr
	}
	seen := make(chan addrs, 2)
	r := echoRecorder()
	r.onOpen = func(c *Conn) { // on the loop, where gnet writes them
		var peer unix.Sockaddr
		if addrFieldsOK.Load() {
			peer = *(*unix.Sockaddr)(unsafe.Add(reflect.ValueOf(c.gc).UnsafePointer(), addrFields.peer))
		}
		seen <- addrs{c, c.gc.LocalAddr(), c.gc.RemoteAddr(), peer}
	}
	s, err := New(Config{Logger: quietLogger, Loops: 2}, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", s)
	hs := httptest.NewUnstartedServer(mux)
	hs.Listener.Close()
	hs.Listener = ln
	hs.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // a hang guard
		defer cancel()
		_ = s.Shutdown(ctx)
		hs.Close()
	})
	addr := ln.Addr().String()
	clients := map[string]net.Conn{}
	var got []addrs
	for i := 0; i < 2; i++ {
		conn := dialAddr(t, addr, "/ws", nil)
		clients[conn.LocalAddr().String()] = conn
		select {
		case a := <-seen:
			got = append(got, a)
		case <-time.After(60 * time.Second): // a hang guard
			t.Fatal("OnOpen not called")
		}
	}
	if !addrFieldsOK.Load() {
		t.Fatal("gnet's connection address fields were not found: mounted connections keep net/http's addresses")
	}
	for _, a := range got {
		la, ok := a.local.(*net.TCPAddr)
		if !ok || la.String() != addr {
			t.Fatalf("LocalAddr %v, want %s", a.local, addr)
		}
		if a.local != got[0].local {
			t.Fatal("two mounted connections have local addresses of their own, want one shared")
		}
		ra, ok := a.remote.(*net.TCPAddr)
		if !ok || a.conn.RemoteAddr() != a.remote {
			t.Fatalf("Conn.RemoteAddr %v is not gnet's %v", a.conn.RemoteAddr(), a.remote)
		}
		if clients[ra.String()] == nil {
			t.Fatalf("RemoteAddr %v is no client's address", ra)
		}
		var ip []byte
		switch sa := a.peer.(type) {
		case *unix.SockaddrInet4:
			ip = sa.Addr[:]
		case *unix.SockaddrInet6:
			ip = sa.Addr[:]
		}
		if len(ip) == 0 || len(ip) != len(ra.IP) || &ip[0] != &ra.IP[0] {
			t.Fatalf("the remote address's IP is not the socket address's (%T)", a.peer)
		}
	}
	for _, conn := range clients { // they still work
		if err := ws.WriteFrame(conn, ws.MaskFrameInPlace(ws.NewTextFrame([]byte("hi")))); err != nil {
			t.Fatal(err)
		}
		if f := readFrame(t, conn); string(f.Payload) != "hi" {
			t.Fatalf("echo %q", f.Payload)
		}
	}
}
