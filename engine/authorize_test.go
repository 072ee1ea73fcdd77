package engine

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
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

// gate is an Authorize hook that holds the requests to /wait until the test
// releases them, and tells the test when each has arrived and why its
// context ended, if it ended first. Other paths are accepted at once.
type gate struct {
	entered chan *upgrade.Request
	ended   chan hookEnd
	release chan struct{}
}

// hookEnd is how a held hook's context ended.
type hookEnd struct{ cause, err error }

func newGate() *gate {
	return &gate{
		entered: make(chan *upgrade.Request, 16),
		ended:   make(chan hookEnd, 16),
		release: make(chan struct{}),
	}
}

func (g *gate) authorize(r *upgrade.Request) (any, error) {
	if !strings.HasPrefix(r.Path, "/wait") {
		return "fast", nil
	}
	g.entered <- r
	select {
	case <-g.release:
		return "user:" + r.Query().Get("u"), nil
	case <-r.Context().Done():
		ctx := r.Context()
		g.ended <- hookEnd{cause: context.Cause(ctx), err: ctx.Err()}
		return "late", nil // must be ignored: the client has been answered
	}
}

// waitEntered returns the next request held by the gate.
func (g *gate) waitEntered(t testing.TB) *upgrade.Request {
	t.Helper()
	select {
	case r := <-g.entered:
		return r
	case <-time.After(60 * time.Second): // a hang guard
		t.Fatal("Authorize was not called")
	}
	return nil
}

// waitEnded returns how the next held hook's context ended.
func (g *gate) waitEnded(t testing.TB) hookEnd {
	t.Helper()
	select {
	case e := <-g.ended:
		return e
	case <-time.After(60 * time.Second): // a hang guard
		t.Fatal("the hook's context did not end")
	}
	return hookEnd{}
}

// rawUpgrade sends an upgrade request for path with extra header lines,
// followed by after, and returns the connection and its reader.
func rawUpgrade(t testing.TB, s *Server, path, extra string, after []byte) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second)) // a hang guard
	if _, err := conn.Write(append([]byte(upgradeRequest(path, extra)), after...)); err != nil {
		t.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

// readReply reads the server's HTTP reply and its body.
func readReply(t testing.TB, br *bufio.Reader) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the reply: %v", err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp, ""
	}
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// A blocking Authorize with HandshakeWorkers does not stall its loop: while
// the hook is provably still blocked (it waits for the test), connections on
// the same loop keep exchanging messages. The hook sees the request as
// net/http code would, and its session reaches OnOpen.
func TestHandshakeHookOffLoopKeepsTheLoopRunning(t *testing.T) {
	g := newGate()
	r := newRecorder()
	r.onMsg = func(c *Conn, typ MessageType, data []byte) { _ = c.Send(typ, data) }
	var srv atomic.Pointer[Server] // the hook runs once s is stored
	onLoop := make(chan bool, 16)
	s := startServer(t, Config{
		Loops:            1,
		HandshakeWorkers: 2,
		Authorize: func(req *upgrade.Request) (any, error) {
			onLoop <- (*srv.Load().loopList.Load())[0].onLoop()
			return g.authorize(req)
		},
	}, r)
	srv.Store(s)
	const bystanders, trips = 3, 20
	conns := make([]net.Conn, bystanders)
	for i := range conns {
		conns[i] = dial(t, s, "/bystander", nil)
		waitOpen(t, r)
	}
	_, br := rawUpgrade(t, s, "/wait?u=ann", "Cookie: sid=s3cr3t; theme=dark\r\n", nil)
	req := g.waitEntered(t)

	for i := range trips {
		for _, conn := range conns {
			msg := []byte{'m', byte('a' + i%26)}
			if err := wsutil.WriteClientText(conn, msg); err != nil {
				t.Fatal(err)
			}
			got, _, err := wsutil.ReadServerData(conn)
			if err != nil || string(got) != string(msg) {
				t.Fatalf("echo %d: %q, %v", i, got, err)
			}
		}
	}
	// The gate is still closed: every round trip happened while Authorize
	// was blocked.
	if n := s.Stats().HandshakesPending; n != 1 {
		t.Fatalf("HandshakesPending = %d while the hook blocks, want 1", n)
	}

	hr := req.HTTP()
	if ck, err := hr.Cookie("sid"); err != nil || ck.Value != "s3cr3t" {
		t.Errorf("HTTP().Cookie(sid) = %v, %v", ck, err)
	}
	if hr.Method != "GET" || hr.URL.Path != "/wait" || hr.URL.Query().Get("u") != "ann" || hr.Host != "x" || hr.RemoteAddr == "" {
		t.Errorf("HTTP() = %s %v host %q remote %q", hr.Method, hr.URL, hr.Host, hr.RemoteAddr)
	}
	if hr.Context() != req.Context() {
		t.Error("HTTP() does not carry the request's context")
	}
	if _, ok := req.Context().Deadline(); !ok {
		t.Error("the hook's context has no deadline")
	}

	close(g.release)
	if resp, body := readReply(t, br); resp.StatusCode != 101 {
		t.Fatalf("reply %d %q, want 101", resp.StatusCode, body)
	}
	if c := waitOpen(t, r); c.Session() != "user:ann" {
		t.Errorf("Session() = %v in OnOpen, want the one Authorize returned", c.Session())
	}
	for range bystanders + 1 {
		if <-onLoop {
			t.Error("Authorize ran on the event loop")
		}
	}
	waitFor(t, "no handshake pending", func() bool { return s.Stats().HandshakesPending == 0 })
}

// Every answer a hook can give off the loop gets the reply it gets on the
// loop: the session, a *upgrade.RejectError's status and header, a generic
// 403, a recovered panic's 500.
func TestHandshakeHookOutcomesOffLoop(t *testing.T) {
	cases := []struct {
		name        string
		authorize   func(*upgrade.Request) (any, error)
		checkOrigin func(*upgrade.Request) bool
		origin      string
		status      int
		body        string
		header      [2]string
		panics      string // the hook whose panic must be reported
	}{
		{name: "session", authorize: func(*upgrade.Request) (any, error) { return "s1", nil }, status: 101},
		{
			name: "RejectError",
			authorize: func(*upgrade.Request) (any, error) {
				return nil, &upgrade.RejectError{Status: 401, Reason: "token expired", Header: http.Header{"Www-Authenticate": {"Bearer"}}}
			},
			status: 401, body: "herald: token expired", header: [2]string{"Www-Authenticate", "Bearer"},
		},
		{
			name: "wrapped ErrTooManyRequests",
			authorize: func(*upgrade.Request) (any, error) {
				return nil, errors.Join(errors.New("quota"), upgrade.ErrTooManyRequests)
			},
			status: 429, body: "herald: too many requests",
		},
		{
			name:      "plain error",
			authorize: func(*upgrade.Request) (any, error) { return nil, errors.New("db password hunter2") },
			status:    403, body: "herald: forbidden",
		},
		{
			name:      "Authorize panics",
			authorize: func(*upgrade.Request) (any, error) { panic("boom") },
			status:    500, body: "herald: internal error", panics: "Authorize",
		},
		{
			name:        "CheckOrigin refuses",
			checkOrigin: func(*upgrade.Request) bool { return false },
			origin:      "http://elsewhere.example",
			status:      403, body: "herald: origin not allowed",
		},
		{
			name:        "CheckOrigin accepts",
			checkOrigin: func(r *upgrade.Request) bool { return r.Origin() == "http://elsewhere.example" },
			authorize:   func(*upgrade.Request) (any, error) { return "s2", nil },
			origin:      "http://elsewhere.example",
			status:      101,
		},
		{
			name:        "CheckOrigin panics",
			checkOrigin: func(*upgrade.Request) bool { panic("boom") },
			origin:      "http://elsewhere.example",
			status:      500, body: "herald: internal error", panics: "CheckOrigin",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var reported []*PanicError
			r := newRecorder()
			s := startServer(t, Config{
				Loops:            1,
				HandshakeWorkers: 1,
				Authorize:        tc.authorize,
				CheckOrigin:      tc.checkOrigin,
				OnPanic: func(c *Conn, p *PanicError) {
					if c != nil {
						t.Error("OnPanic got a connection before the upgrade")
					}
					mu.Lock()
					reported = append(reported, p)
					mu.Unlock()
				},
			}, r)
			extra := ""
			if tc.origin != "" {
				extra = "Origin: " + tc.origin + "\r\n"
			}
			_, br := rawUpgrade(t, s, "/", extra, nil)
			resp, body := readReply(t, br)
			if resp.StatusCode != tc.status || body != tc.body {
				t.Fatalf("reply %d %q, want %d %q", resp.StatusCode, body, tc.status, tc.body)
			}
			if tc.header[0] != "" && resp.Header.Get(tc.header[0]) != tc.header[1] {
				t.Errorf("%s: %q, want %q", tc.header[0], resp.Header.Get(tc.header[0]), tc.header[1])
			}
			if tc.status == 101 {
				c := waitOpen(t, r)
				if tc.authorize != nil {
					want, _ := tc.authorize(nil)
					if c.Session() != want {
						t.Errorf("Session() = %v, want %v", c.Session(), want)
					}
				}
				return
			}
			if got := s.Stats().Rejected; got != 1 {
				t.Errorf("Rejected = %d, want 1", got)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case tc.panics == "" && len(reported) > 0:
				t.Errorf("a panic was reported: %v", reported[0])
			case tc.panics != "" && (len(reported) != 1 || reported[0].Hook != tc.panics || s.Stats().Panics != 1):
				t.Errorf("reported %v (Panics %d), want one panic in %s", reported, s.Stats().Panics, tc.panics)
			}
		})
	}
}

// A hook still running at the handshake timeout: its context ends with
// ErrHandshakeTimeout (Err: context.DeadlineExceeded), the client gets 503,
// and the hook's late answer is ignored. The server's clock is the test's.
func TestHandshakeHookTimeout(t *testing.T) {
	g := newGate()
	r := newRecorder()
	// One worker: it answers the handshakes in turn, so the late answer has
	// reached the loop before the next handshake's.
	s := startServer(t, Config{Loops: 1, HandshakeWorkers: 1, HandshakeTimeout: 10 * time.Second, Authorize: g.authorize}, r)
	clock := fakeClock(s)
	_, br := rawUpgrade(t, s, "/wait", "", nil)
	g.waitEntered(t)

	clock.advance(10*time.Second - time.Nanosecond)
	s.sweepAll(true)
	if n := s.Stats().HandshakesPending; n != 1 {
		t.Fatalf("HandshakesPending = %d before the timeout, want 1", n)
	}
	clock.advance(time.Nanosecond)
	s.sweepAll(true)
	resp, body := readReply(t, br)
	if resp.StatusCode != 503 || body != "herald: handshake timed out" {
		t.Fatalf("reply %d %q, want 503", resp.StatusCode, body)
	}
	end := g.waitEnded(t)
	if end.cause != ErrHandshakeTimeout || end.err != context.DeadlineExceeded {
		t.Errorf("context ended with %v (cause %v), want DeadlineExceeded (ErrHandshakeTimeout)", end.err, end.cause)
	}
	_ = dial(t, s, "/next", nil)
	waitOpen(t, r)
	st := s.Stats()
	if st.HookTimeouts != 1 || st.HandshakesPending != 0 || st.Upgraded != 1 || st.Rejected != 1 || st.HandshakeTimeouts != 0 {
		t.Errorf("HookTimeouts %d, HandshakesPending %d, Upgraded %d, Rejected %d, HandshakeTimeouts %d; want 1, 0, 1, 1, 0",
			st.HookTimeouts, st.HandshakesPending, st.Upgraded, st.Rejected, st.HandshakeTimeouts)
	}
}

// A client that goes away while its hook runs: the hook's context ends with
// ErrClosed, nothing is left behind (connections, goroutines), and the
// hook's late answer opens nothing.
func TestHandshakeHookClientGoesAway(t *testing.T) {
	g := newGate()
	r := newRecorder()
	s := startServer(t, Config{Loops: 1, HandshakeWorkers: 1, Authorize: g.authorize}, r)
	baseline := runtime.NumGoroutine()
	conn, _ := rawUpgrade(t, s, "/wait", "", nil)
	g.waitEntered(t)
	conn.Close()
	if end := g.waitEnded(t); end.cause != ErrClosed || end.err != context.Canceled {
		t.Errorf("context ended with %v (cause %v), want Canceled (ErrClosed)", end.err, end.cause)
	}
	waitFor(t, "the connection to go", func() bool {
		st := s.Stats()
		return st.Active == 0 && st.HandshakesPending == 0
	})
	waitFor(t, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= baseline })
	_ = dial(t, s, "/next", nil)
	waitOpen(t, r)
	r.mu.Lock()
	opened := len(r.opened)
	r.mu.Unlock()
	if st := s.Stats(); opened != 1 || st.Upgraded != 1 {
		t.Errorf("%d opened, Upgraded %d: the late answer opened the gone connection", opened, st.Upgraded)
	}
}

// With the workers busy and their queue full, one more handshake gets 503
// with Retry-After at once; the queued ones go on.
func TestHandshakeHookQueueFull(t *testing.T) {
	g := newGate()
	r := newRecorder()
	s := startServer(t, Config{Loops: 1, HandshakeWorkers: 1, HandshakeQueue: 1, Authorize: g.authorize}, r)
	_, br1 := rawUpgrade(t, s, "/wait?u=1", "", nil)
	g.waitEntered(t) // the worker is busy
	_, br2 := rawUpgrade(t, s, "/wait?u=2", "", nil)
	waitFor(t, "the second handshake to queue", func() bool { return s.Stats().HandshakesPending == 2 })
	_, br3 := rawUpgrade(t, s, "/wait?u=3", "", nil)
	resp, body := readReply(t, br3)
	if resp.StatusCode != 503 || body != "herald: too many handshakes waiting" || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("reply %d %q Retry-After %q, want 503 with Retry-After: 1", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if n := s.Stats().HookQueueFull; n != 1 {
		t.Errorf("HookQueueFull = %d, want 1", n)
	}
	close(g.release)
	for _, br := range []*bufio.Reader{br1, br2} {
		if resp, body := readReply(t, br); resp.StatusCode != 101 {
			t.Fatalf("queued handshake: %d %q, want 101", resp.StatusCode, body)
		}
	}
}

// Frames a client sends behind its request, in the same write and while
// the hook runs, are kept and arrive, in order, after OnOpen, whether the
// handlers run on the loop or on workers.
func TestHandshakeHookKeepsPipelinedFrames(t *testing.T) {
	for _, workers := range []int{0, 2} {
		t.Run("Workers="+strconv.Itoa(workers), func(t *testing.T) { testPipelinedFrames(t, workers) })
	}
}

func testPipelinedFrames(t *testing.T, workers int) {
	g := newGate()
	r := newRecorder()
	var mu sync.Mutex
	var events []string
	r.onOpen = func(*Conn) {
		mu.Lock()
		events = append(events, "open")
		mu.Unlock()
	}
	r.onMsg = func(c *Conn, typ MessageType, data []byte) {
		mu.Lock()
		events = append(events, string(data))
		mu.Unlock()
		_ = c.Send(typ, data)
	}
	s := startServer(t, Config{Loops: 1, Workers: workers, HandshakeWorkers: 1, Authorize: g.authorize}, r)
	first := clientFrame(ws.OpText, true, "one")
	conn, br := rawUpgrade(t, s, "/wait", "", first)
	g.waitEntered(t)
	second := append(clientFrame(ws.OpText, false, "tw"), clientFrame(ws.OpContinuation, true, "o")...)
	if _, err := conn.Write(second); err != nil {
		t.Fatal(err)
	}
	sent := uint64(len(upgradeRequest("/wait", "")) + len(first) + len(second))
	waitFor(t, "the server to read everything", func() bool { return s.Stats().BytesIn >= sent })
	if n := s.Stats().HandshakesPending; n != 1 {
		t.Fatalf("HandshakesPending = %d, want 1: the bytes must arrive while the hook runs", n)
	}
	close(g.release)
	if resp, body := readReply(t, br); resp.StatusCode != 101 {
		t.Fatalf("reply %d %q, want 101", resp.StatusCode, body)
	}
	for _, want := range []string{"one", "two"} {
		got, _, err := wsutil.ReadServerData(struct {
			io.Reader
			io.Writer
		}{br, conn})
		if err != nil || string(got) != want {
			t.Fatalf("echo %q, %v; want %q", got, err, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(events, ",") != "open,one,two" {
		t.Errorf("events %q, want open, one, two", events)
	}
}

// A parked client may send MaxHeaderBytes plus a little before its 101;
// more is refused with 400, whether it came with the request or after.
func TestHandshakeHookBoundsWhatWaits(t *testing.T) {
	for _, tc := range []struct {
		name           string
		with, meantime int
	}{
		{"with the request", 6000, 0},
		{"while the hook runs", 0, 6000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGate()
			s := startServer(t, Config{Loops: 1, HandshakeWorkers: 1, MaxHeaderBytes: 1024, Authorize: g.authorize}, newRecorder())
			conn, br := rawUpgrade(t, s, "/wait", "", make([]byte, tc.with))
			if tc.meantime > 0 {
				g.waitEntered(t)
				if _, err := conn.Write(make([]byte, tc.meantime)); err != nil {
					t.Fatal(err)
				}
			}
			resp, body := readReply(t, br)
			if resp.StatusCode != 400 || body != "herald: too much data before the handshake completed" {
				t.Fatalf("reply %d %q, want 400", resp.StatusCode, body)
			}
			waitFor(t, "the connection to go", func() bool {
				st := s.Stats()
				return st.Active == 0 && st.HandshakesPending == 0
			})
		})
	}
}

// Shutdown answers a parked handshake with 503 and ends its hook's context.
func TestHandshakeHookShutdown(t *testing.T) {
	g := newGate()
	s := startServer(t, Config{Loops: 1, HandshakeWorkers: 1, Authorize: g.authorize}, newRecorder())
	_, br := rawUpgrade(t, s, "/wait", "", nil)
	g.waitEntered(t)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	resp, body := readReply(t, br)
	if resp.StatusCode != 503 || body != "herald: server shutting down" {
		t.Fatalf("reply %d %q, want 503", resp.StatusCode, body)
	}
	if end := g.waitEnded(t); end.cause != ErrClosed {
		t.Errorf("context ended with cause %v, want ErrClosed", end.cause)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// BenchmarkHandshakeHooks is a whole handshake over loopback (connect, the
// request, the 101, close) with a trivial Authorize, run on the loop and on
// a handshake worker: the hand-over's cost per handshake.
func BenchmarkHandshakeHooks(b *testing.B) {
	for _, workers := range []int{0, 2} {
		name := "loop"
		if workers > 0 {
			name = "workers"
		}
		b.Run(name, func(b *testing.B) {
			s := startServer(b, Config{
				Loops:            1,
				HandshakeWorkers: workers,
				Authorize:        func(*upgrade.Request) (any, error) { return "s", nil },
			}, BaseHandler{})
			req := []byte(upgradeRequest("/", ""))
			buf := make([]byte, 512)
			b.ReportAllocs()
			for b.Loop() {
				conn, err := net.Dial("tcp", s.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				if _, err := conn.Write(req); err != nil {
					b.Fatal(err)
				}
				n := 0
				for !strings.HasSuffix(string(buf[:n]), "\r\n\r\n") {
					m, err := conn.Read(buf[n:])
					if err != nil {
						b.Fatal(err)
					}
					n += m
				}
				if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 101 ") {
					b.Fatalf("reply %q", buf[:n])
				}
				conn.Close()
			}
		})
	}
}

// HandshakeWorkers and HandshakeQueue are checked like every other field;
// the workers start only when there is a hook for them to run.
func TestHandshakeWorkersConfig(t *testing.T) {
	auth := func(*upgrade.Request) (any, error) { return nil, nil }
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Addr: ":0", HandshakeWorkers: -1}, "Config.HandshakeWorkers is negative"},
		{Config{Addr: ":0", HandshakeQueue: -1}, "Config.HandshakeQueue is negative"},
		{Config{Addr: ":0", HandshakeWorkers: 1, HandshakeQueue: maxHandshakeQueue + 1}, "Config.HandshakeQueue (1048577) is over"},
	} {
		if _, err := New(tc.cfg, BaseHandler{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	for _, tc := range []struct {
		cfg   Config
		hooks bool
	}{
		{Config{Addr: ":0", Authorize: auth}, false},
		{Config{Addr: ":0", HandshakeWorkers: 4}, false},
		{Config{Addr: ":0", HandshakeWorkers: 4, Authorize: auth}, true},
		{Config{Addr: ":0", HandshakeWorkers: 4, CheckOrigin: func(*upgrade.Request) bool { return true }}, true},
	} {
		s, err := New(tc.cfg, BaseHandler{})
		if err != nil {
			t.Fatal(err)
		}
		if (s.hooks != nil) != tc.hooks {
			t.Errorf("New(%+v): handshake workers %v, want %v", tc.cfg, s.hooks != nil, tc.hooks)
		}
		if tc.hooks && cap(s.hooks.jobs) != DefaultHandshakeQueue {
			t.Errorf("queue of %d, want the default %d", cap(s.hooks.jobs), DefaultHandshakeQueue)
		}
	}
}
