package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/heraldws/herald/upgrade"
)

func TestCloseValidatesCodeAndReason(t *testing.T) {
	r := newRecorder()
	s := startServer(t, Config{}, r)
	conn := dial(t, s, "/", nil)
	c := waitOpen(t, r)
	for _, tc := range []struct {
		code   StatusCode
		reason string
		rule   string
	}{
		{999, "", "may not be sent"},
		{1004, "", "may not be sent"},
		{StatusNoStatusRcvd, "", "may not be sent"},
		{StatusAbnormalClosure, "", "may not be sent"},
		{StatusTLSHandshake, "", "may not be sent"},
		{1016, "", "may not be sent"},
		{2999, "", "may not be sent"},
		{5000, "", "may not be sent"},
		{StatusNormalClosure, strings.Repeat("x", MaxCloseReason+1), "over the 123"},
		{StatusNormalClosure, "bad \xff", "not valid UTF-8"},
	} {
		err := c.Close(tc.code, tc.reason)
		if err == nil || !strings.Contains(err.Error(), tc.rule) {
			t.Errorf("Close(%d, %.10q) = %v, want an error about %q", tc.code, tc.reason, err, tc.rule)
		}
	}
	// Nothing went on the wire and the connection still works.
	if err := c.SendText("still open"); err != nil {
		t.Fatal(err)
	}
	if f := readFrame(t, conn); f.Header.OpCode != ws.OpText {
		t.Fatalf("got %v after refused closes, want the text message", f.Header.OpCode)
	}
	// The longest reason and an application code are fine.
	reason := strings.Repeat("é", MaxCloseReason/2) // 122 bytes
	if err := c.Close(4999, reason); err != nil {
		t.Fatal(err)
	}
	f := readFrame(t, conn)
	code, got := ws.ParseCloseFrameData(f.Payload)
	if f.Header.OpCode != ws.OpClose || code != 4999 || got != reason {
		t.Fatalf("close frame %v %d %q", f.Header.OpCode, code, got)
	}
	if err := c.Close(StatusNormalClosure, ""); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v, want ErrClosed", err)
	}
}

func TestStatusCodeNamesAndCloseStatus(t *testing.T) {
	if got := StatusTryAgainLater.String(); got != "StatusTryAgainLater" {
		t.Errorf("String() = %q", got)
	}
	if got := StatusCode(4001).String(); got != "StatusCode(4001)" {
		t.Errorf("String() = %q", got)
	}
	err := error(&CloseError{Code: StatusGoingAway, Remote: true})
	if got := CloseStatus(errors.Join(errors.New("context"), err)); got != StatusGoingAway {
		t.Errorf("CloseStatus of a wrapped close = %d", got)
	}
	if got := CloseStatus(errors.New("eof")); got != -1 {
		t.Errorf("CloseStatus of another error = %d, want -1", got)
	}
}

func TestSendRefusesInvalidUTF8(t *testing.T) {
	r := newRecorder()
	s := startServer(t, Config{}, r)
	conn := dial(t, s, "/", nil)
	c := waitOpen(t, r)
	for _, bad := range []string{"\xff", "a\xc0\x80", "\xed\xa0\x80", "truncated \xe2\x82"} {
		if err := c.SendText(bad); !errors.Is(err, ErrInvalidUTF8) {
			t.Errorf("SendText(%q) = %v, want ErrInvalidUTF8", bad, err)
		}
	}
	if err := c.Send(MessageType(9), nil); err == nil {
		t.Error("Send accepted message type 9")
	}
	// Binary may hold anything; it is the first frame on the wire.
	if err := c.SendBinary([]byte{0xff}); err != nil {
		t.Fatal(err)
	}
	if f := readFrame(t, conn); f.Header.OpCode != ws.OpBinary {
		t.Fatalf("got %v, want the binary message first", f.Header.OpCode)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{ReusePort: true}, "Config.ReusePort without Config.Addr"},
		{Config{Addr: ":0", Loops: -1}, "Config.Loops is negative"},
		{Config{Addr: ":0", MaxOutboundBytes: -1}, "Config.MaxOutboundBytes is negative"},
		{Config{Addr: ":0", IdleTimeout: -time.Second}, "Config.IdleTimeout is negative"},
		{Config{Addr: ":0", WorkerQueue: -1}, "Config.WorkerQueue is negative"},
		{Config{Addr: ":0", MaxMessageBytes: 10, MaxFrameBytes: 20}, "Config.MaxFrameBytes (20) is larger than Config.MaxMessageBytes (10)"},
		{Config{Addr: ":0", Subprotocols: manyProtocols(256)}, "Config.Subprotocols lists 256 subprotocols"},
	} {
		_, err := New(tc.cfg, BaseHandler{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	s, err := New(Config{Addr: ":0"}, BaseHandler{})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.Loops != runtime.GOMAXPROCS(0) {
		t.Errorf("default Loops = %d, want GOMAXPROCS %d", s.cfg.Loops, runtime.GOMAXPROCS(0))
	}
}

// manyProtocols returns n distinct subprotocol names.
func manyProtocols(n int) []string {
	p := make([]string, n)
	for i := range p {
		p[i] = fmt.Sprintf("p%d", i)
	}
	return p
}

// logBuffer collects a server's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// panicky panics in the callback its connection's path names.
type panicky struct {
	BaseHandler
	closed chan error
}

func (panicky) OnOpen(c *Conn) {
	if c.Request().Path == "/open" {
		panic("boom in OnOpen")
	}
	c.SetSession(c.Request().Path)
}

func (panicky) OnMessage(c *Conn, typ MessageType, data []byte) {
	if c.Session() == "/message" {
		panic("boom in OnMessage")
	}
	_ = c.Send(typ, data)
}

func (p panicky) OnClose(c *Conn, err error) {
	p.closed <- err
	if c.Session() == "/close" {
		panic("boom in OnClose")
	}
}

func TestHandlerPanicCostsOnlyItsConnection(t *testing.T) {
	for _, workers := range []int{0, 2} {
		t.Run(map[int]string{0: "on the loop", 2: "on workers"}[workers], func(t *testing.T) {
			logs := &logBuffer{}
			var hooks sync.Map
			h := panicky{closed: make(chan error, 16)}
			s := startServer(t, Config{
				Workers: workers,
				Logger:  slog.New(slog.NewTextHandler(logs, nil)),
				OnPanic: func(c *Conn, p *PanicError) {
					hooks.Store(p.Hook, p)
					panic("and OnPanic panics too")
				},
			}, h)
			bystander := dial(t, s, "/bystander", nil)

			// OnOpen panics: 1011 for that connection.
			conn := dial(t, s, "/open", nil)
			if code := expectClose(t, conn); code != 1011 {
				t.Fatalf("OnOpen panic: close %d, want 1011", code)
			}
			// OnMessage panics: 1011 for that connection.
			conn = dial(t, s, "/message", nil)
			_ = wsutil.WriteClientText(conn, []byte("hello"))
			if code := expectClose(t, conn); code != 1011 {
				t.Fatalf("OnMessage panic: close %d, want 1011", code)
			}
			// OnClose panics: logged and counted, nothing else to do.
			conn = dial(t, s, "/close", nil)
			conn.Close()
			// Counted first, then handed to OnPanic: wait for the hook.
			waitFor(t, "three panics", func() bool {
				_, closed := hooks.Load("OnClose")
				return closed && s.Stats().Panics == 3
			})

			_ = wsutil.WriteClientText(bystander, []byte("still here"))
			if got, err := wsutil.ReadServerText(bystander); err != nil || string(got) != "still here" {
				t.Fatalf("bystander: %q %v", got, err)
			}
			for _, hook := range []string{"OnOpen", "OnMessage", "OnClose"} {
				v, ok := hooks.Load(hook)
				if !ok {
					t.Errorf("OnPanic not called for %s", hook)
					continue
				}
				p := v.(*PanicError)
				if !strings.Contains(p.Error(), "boom in "+hook) || !bytes.Contains(p.Stack, []byte("panicky."+hook)) {
					t.Errorf("%s: PanicError %v with a stack that does not show the handler:\n%s", hook, p, p.Stack)
				}
			}
			out := logs.String()
			if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "boom in OnMessage") ||
				!strings.Contains(out, "panicky.OnMessage") || !strings.Contains(out, "Config.OnPanic") {
				t.Errorf("log lacks the panic, its stack or the OnPanic panic:\n%s", out)
			}
		})
	}
}

func TestHookPanicAnswers500(t *testing.T) {
	var panics sync.Map
	cfg := Config{
		Authorize: func(r *upgrade.Request) (any, error) {
			if r.Path == "/authorize" {
				panic("boom in Authorize")
			}
			return nil, nil
		},
		CheckOrigin: func(r *upgrade.Request) bool { panic("boom in CheckOrigin") },
		HTTPHandler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom in HTTPHandler") }),
		OnPanic: func(c *Conn, p *PanicError) {
			if c != nil {
				t.Errorf("OnPanic got a connection before the upgrade")
			}
			panics.Store(p.Hook, p)
		},
	}
	s := startServer(t, cfg, newRecorder())
	for _, tc := range []struct{ name, req string }{
		{"Authorize", upgradeRequest("/authorize", "")},
		{"CheckOrigin", upgradeRequest("/", "Origin: http://elsewhere.example\r\n")},
		{"HTTPHandler", "GET /page HTTP/1.1\r\nHost: x\r\n\r\n"},
	} {
		conn, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
		_, _ = conn.Write([]byte(tc.req))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		if err != nil || resp.StatusCode != 500 {
			t.Errorf("%s panic: %v %v, want 500", tc.name, resp, err)
		}
	}
	if n := s.Stats().Panics; n != 3 {
		t.Errorf("Panics = %d, want 3", n)
	}
	for _, hook := range []string{"Authorize", "CheckOrigin", "HTTPHandler"} {
		v, ok := panics.Load(hook)
		if !ok {
			t.Errorf("OnPanic not called for %s", hook)
			continue
		}
		if p := v.(*PanicError); !bytes.Contains(p.Stack, []byte("TestHookPanicAnswers500")) {
			t.Errorf("%s: the stack does not show the hook:\n%s", hook, p.Stack)
		}
	}
	// The server still upgrades.
	_ = dial(t, s, "/", nil)
}

// upgradeRequest is a valid upgrade to path with extra header lines.
func upgradeRequest(path, extra string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + extra + "\r\n"
}

// Timeouts measured on the real clock: a timeout may fire late on a busy
// machine, never before its duration. Only the lower bound is asserted.
func TestTimeoutsNeverFireEarly(t *testing.T) {
	const timeout = time.Second
	const conns = 20
	for _, tc := range []struct {
		name  string
		cfg   Config
		start func(t *testing.T, s *Server) net.Conn
	}{
		{"handshake", Config{HandshakeTimeout: timeout}, func(t *testing.T, s *Server) net.Conn {
			conn, err := net.Dial("tcp", s.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			_, _ = conn.Write([]byte("GET / HTTP/1.1\r\n"))
			return conn
		}},
		{"idle", Config{IdleTimeout: timeout}, func(t *testing.T, s *Server) net.Conn {
			return dial(t, s, "/", nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, tc.cfg, newRecorder())
			var wg sync.WaitGroup
			early := make(chan time.Duration, conns)
			for i := 0; i < conns; i++ {
				start := time.Now()
				conn := tc.start(t, s)
				wg.Add(1)
				go func() {
					defer wg.Done()
					_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
					_, _ = io_ReadAll(conn)
					if el := time.Since(start); el < timeout {
						early <- el
					}
				}()
			}
			wg.Wait()
			close(early)
			for el := range early {
				t.Errorf("closed %v after connecting, before the %v timeout", el, timeout)
			}
		})
	}
}

// io_ReadAll reads until the server closes.
func io_ReadAll(conn net.Conn) (int, error) {
	buf := make([]byte, 512)
	total := 0
	for {
		n, err := conn.Read(buf)
		total += n
		if err != nil {
			return total, err
		}
	}
}

func TestShutdownTwice(t *testing.T) {
	s := startServer(t, Config{}, newRecorder())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Shutdown: %v, want ErrClosed", err)
	}
}

// What OnOpen sends, and a close it starts, follow the 101 in order.
func TestOnOpenWritesFollowThe101(t *testing.T) {
	for _, workers := range []int{0, 2} {
		r := newRecorder()
		r.onOpen = func(c *Conn) {
			_ = c.SendText("welcome")
			if c.Request().Path == "/bye" {
				_ = c.Close(4000, "go away")
			}
		}
		s := startServer(t, Config{Workers: workers}, r)
		conn, br, _, err := ws.Dialer{Timeout: 60 * time.Second}.Dial(context.Background(), "ws://"+s.Addr().String()+"/bye")
		if err != nil {
			t.Fatalf("workers=%d: %v", workers, err)
		}
		var rd = bufio.NewReader(conn)
		if br != nil {
			rd = br
		}
		f, err := ws.ReadFrame(rd)
		if err != nil || string(f.Payload) != "welcome" {
			t.Fatalf("workers=%d: first frame %q %v", workers, f.Payload, err)
		}
		f, err = ws.ReadFrame(rd)
		if code, reason := ws.ParseCloseFrameData(f.Payload); err != nil || code != 4000 || reason != "go away" {
			t.Fatalf("workers=%d: second frame %v %d %q %v", workers, f.Header.OpCode, code, reason, err)
		}
		conn.Close()
	}
}

// TestSubprotocolIndex: a connection keeps its subprotocol as an index into
// the server's list, up to the last one a Config may hold.
func TestSubprotocolIndex(t *testing.T) {
	s, err := New(Config{Addr: ":0", Subprotocols: manyProtocols(maxSubprotocols)}, BaseHandler{})
	if err != nil {
		t.Fatal(err)
	}
	l := &loop{srv: s}
	for _, p := range []string{"", "p0", "p17", fmt.Sprintf("p%d", maxSubprotocols-1)} {
		c := &Conn{loop: l, proto: s.protoIndex(p)}
		if got := c.Subprotocol(); got != p {
			t.Errorf("subprotocol %q comes back as %q", p, got)
		}
	}
}
