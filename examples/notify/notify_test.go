package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// hangGuard bounds every wait for the service. It is no speed requirement:
// it only ends the wait for a service that never answers.
const hangGuard = time.Minute

// testService is the whole command, run in-process on a free port.
type testService struct {
	base string // http://127.0.0.1:PORT
	stop func() error
}

// startService runs the service as main does, with the real user store
// latency, and stops it at the end of the test.
func startService(t *testing.T) *testService {
	return startServiceWith(t, nil)
}

// startServiceWith is startService with tune applied to the service
// before it serves.
func startServiceWith(t *testing.T, tune func(*service)) *testService {
	t.Helper()
	opts := defaultOptions()
	opts.addr = "127.0.0.1:0"
	opts.loops = 2
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, opts, slog.New(slog.NewTextHandler(io.Discard, nil)), tune, func(a net.Addr) { addrs <- a })
	}()
	var addr net.Addr
	select {
	case addr = <-addrs:
	case err := <-done:
		t.Fatalf("the service ended before listening: %v", err)
	case <-time.After(hangGuard):
		t.Fatal("the service did not listen")
	}
	var once sync.Once
	var result error
	ts := &testService{base: "http://" + addr.String()}
	ts.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case result = <-done:
			case <-time.After(hangGuard):
				result = errors.New("the service did not stop")
			}
		})
		return result
	}
	t.Cleanup(func() {
		if err := ts.stop(); err != nil {
			t.Errorf("stopping the service: %v", err)
		}
	})
	return ts
}

var client = &http.Client{Timeout: hangGuard}

// login logs user in and returns the session cookie.
func (ts *testService) login(t *testing.T, user string) *http.Cookie {
	t.Helper()
	res, err := client.PostForm(ts.base+"/login", url.Values{"user": {user}})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("login %s: %d %s", user, res.StatusCode, b)
	}
	for _, c := range res.Cookies() {
		if c.Name == cookieName {
			return c
		}
	}
	t.Fatalf("login %s: no %s cookie", user, cookieName)
	return nil
}

// dial opens the WebSocket with cookie (nil: none) and returns it with the
// handshake's response.
func (ts *testService) dial(cookie *http.Cookie) (*websocket.Conn, *http.Response, error) {
	h := http.Header{}
	if cookie != nil {
		h.Set("Cookie", cookie.String())
	}
	d := websocket.Dialer{HandshakeTimeout: hangGuard}
	return d.Dial(strings.Replace(ts.base, "http://", "ws://", 1)+"/ws", h)
}

// connect logs user in, opens a socket and reads its hello.
func (ts *testService) connect(t *testing.T, user string) *websocket.Conn {
	t.Helper()
	c, _, err := ts.dial(ts.login(t, user))
	if err != nil {
		t.Fatalf("dial as %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	if ev := readEvent(t, c); ev.Type != "hello" || ev.User != user {
		t.Fatalf("first message %+v, want hello to %s", ev, user)
	}
	return c
}

// readEvent reads the next message (the dialer answers pings meanwhile).
func readEvent(t *testing.T, c *websocket.Conn) event {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(hangGuard))
	typ, b, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if typ != websocket.TextMessage {
		t.Fatalf("message type %d, want text", typ)
	}
	var ev event
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatalf("message %q: %v", b, err)
	}
	return ev
}

// post sends body to path with a JSON content type and returns the status
// and the decoded JSON answer.
func (ts *testService) post(t *testing.T, path, contentType, body string) (int, map[string]any) {
	t.Helper()
	res, err := client.Post(ts.base+path, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var v map[string]any
	b, _ := io.ReadAll(res.Body)
	if ct := res.Header.Get("Content-Type"); ct == "application/json" {
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: answer %q: %v", path, b, err)
		}
	}
	return res.StatusCode, v
}

func TestLogin(t *testing.T) {
	ts := startService(t)
	c := ts.login(t, "alice")
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || len(c.Value) < 40 {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Lax, Path=/ and a long random token", c)
	}
	req, _ := http.NewRequest("GET", ts.base+"/me", nil)
	req.AddCookie(c)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var me map[string]string
	_ = json.NewDecoder(res.Body).Decode(&me)
	res.Body.Close()
	if res.StatusCode != 200 || me["user"] != "alice" {
		t.Errorf("/me: %d %v, want 200 alice", res.StatusCode, me)
	}

	for _, bad := range []string{"", "Alice", "a b", strings.Repeat("a", 33), "<b>"} {
		if st, v := ts.post(t, "/login", "application/x-www-form-urlencoded", url.Values{"user": {bad}}.Encode()); st != 400 || v["error"] == "" {
			t.Errorf("login %q: %d %v, want 400 with a reason", bad, st, v)
		}
	}
	res, err = client.Get(ts.base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /login: %d, want 405", res.StatusCode)
	}
}

func TestUpgradeWithoutSessionIs401(t *testing.T) {
	ts := startService(t)
	forged := &http.Cookie{Name: cookieName, Value: "not-a-session"}
	loggedOut := ts.login(t, "carol")
	req, _ := http.NewRequest("POST", ts.base+"/logout", nil)
	req.AddCookie(loggedOut)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	for name, cookie := range map[string]*http.Cookie{"no cookie": nil, "unknown session": forged, "logged out": loggedOut} {
		c, res, err := ts.dial(cookie)
		if err == nil {
			c.Close()
			t.Errorf("%s: upgraded, want 401", name)
			continue
		}
		if res == nil || res.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: %v (response %v), want 401", name, err, res)
		}
	}
	// The same cookie as a live session is accepted.
	ts.connect(t, "carol")
}

func TestLogoutClosesTheSessionsSockets(t *testing.T) {
	ts := startService(t)
	cookie := ts.login(t, "alice")
	var tabs []*websocket.Conn
	for range 2 {
		c, _, err := ts.dial(cookie)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if ev := readEvent(t, c); ev.Type != "hello" {
			t.Fatalf("first message %+v, want hello", ev)
		}
		tabs = append(tabs, c)
	}
	other := ts.connect(t, "alice") // another login of the same user

	req, _ := http.NewRequest("POST", ts.base+"/logout", nil)
	req.AddCookie(cookie)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("logout: %d", res.StatusCode)
	}
	for i, c := range tabs {
		_ = c.SetReadDeadline(time.Now().Add(hangGuard))
		if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, int(closeLoggedOut)) {
			t.Errorf("tab %d: %v, want close %d", i, err, closeLoggedOut)
		}
	}
	// (The closed tabs may still count as subscribers until their close
	// handshake ends: "connections" is not checked here.)
	if st, v := ts.post(t, "/notify?user=alice", "application/json", `{"text":"still here"}`); st != 202 {
		t.Errorf("notify: %d %v, want 202", st, v)
	}
	if ev := readEvent(t, other); ev.Text != "still here" {
		t.Errorf("the other login got %+v", ev)
	}
}

// Authorize blocks in the user store on net/http's goroutine: meanwhile
// the event loops go on delivering to the connections they have.
func TestBlockingAuthorizeLeavesTheLoopsFree(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	var holding atomic.Bool
	ts := startServiceWith(t, func(s *service) {
		s.users.hold = func(ctx context.Context) error {
			if !holding.Load() {
				return nil
			}
			entered <- struct{}{}
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	})
	alice := ts.connect(t, "alice")
	bobCookie := ts.login(t, "bob")

	holding.Store(true)
	dialed := make(chan error, 1)
	go func() {
		c, _, err := ts.dial(bobCookie)
		if err == nil {
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(hangGuard))
			_, _, err = c.ReadMessage() // the hello
		}
		dialed <- err
	}()
	select {
	case <-entered: // bob's upgrade waits in the store
	case <-time.After(hangGuard):
		t.Fatal("bob's upgrade never reached the user store")
	}
	for i := range 3 {
		if st, _ := ts.post(t, "/notify?user=alice", "application/json", `{"text":"while bob waits"}`); st != 202 {
			t.Fatalf("notify %d: %d", i, st)
		}
		if ev := readEvent(t, alice); ev.Text != "while bob waits" {
			t.Fatalf("alice got %+v", ev)
		}
	}
	holding.Store(false)
	close(release)
	if err := <-dialed; err != nil {
		t.Fatalf("bob, once the store answered: %v", err)
	}
}

func TestNotifyReachesOnlyThatUser(t *testing.T) {
	ts := startService(t)
	alice1, alice2 := ts.connect(t, "alice"), ts.connect(t, "alice")
	bob := ts.connect(t, "bob")

	st, v := ts.post(t, "/notify?user=alice", "application/json", `{"text":"for alice"}`)
	if st != http.StatusAccepted || v["delivered_to"] != "user:alice" || v["connections"] != 2.0 {
		t.Fatalf("notify alice: %d %v, want 202 to user:alice with 2 connections", st, v)
	}
	if st, v := ts.post(t, "/notify?user=bob", "application/json", `{"text":"for bob"}`); st != http.StatusAccepted || v["connections"] != 1.0 {
		t.Fatalf("notify bob: %d %v", st, v)
	}
	if st, _ := ts.post(t, "/announce", "application/json", `{"text":"for all"}`); st != http.StatusAccepted {
		t.Fatalf("announce: %d", st)
	}
	// Each connection gets what it is owed, in publish order: the
	// announcement, published last, proves that nothing else came first.
	for _, c := range []*websocket.Conn{alice1, alice2} {
		if ev := readEvent(t, c); ev.Type != "notify" || ev.User != "alice" || ev.Text != "for alice" {
			t.Errorf("alice got %+v, want her notification", ev)
		}
		if ev := readEvent(t, c); ev.Type != "announce" || ev.Text != "for all" {
			t.Errorf("alice got %+v, want the announcement", ev)
		}
	}
	if ev := readEvent(t, bob); ev.Type != "notify" || ev.User != "bob" || ev.Text != "for bob" {
		t.Errorf("bob got %+v, want his own notification (not alice's)", ev)
	}
	if ev := readEvent(t, bob); ev.Type != "announce" {
		t.Errorf("bob got %+v, want the announcement", ev)
	}
}

func TestAnnounceReachesEveryone(t *testing.T) {
	ts := startService(t)
	users := []string{"ann", "ben", "cy", "dee"}
	conns := make([]*websocket.Conn, len(users))
	for i, u := range users {
		conns[i] = ts.connect(t, u)
	}
	st, v := ts.post(t, "/announce", "application/json; charset=utf-8", `{"text":"deploy at 5 ✓"}`)
	if st != http.StatusAccepted || v["delivered_to"] != announceTopic || v["connections"] != float64(len(users)) {
		t.Fatalf("announce: %d %v", st, v)
	}
	for i, c := range conns {
		if ev := readEvent(t, c); ev.Type != "announce" || ev.Text != "deploy at 5 ✓" || ev.ID == 0 || ev.TS == 0 {
			t.Errorf("%s got %+v", users[i], ev)
		}
	}
}

func TestNotifyOfflineUserIsAccepted(t *testing.T) {
	ts := startService(t)
	st, v := ts.post(t, "/notify?user=nobody", "application/json", `{"text":"hi"}`)
	if st != http.StatusAccepted || v["delivered_to"] != "user:nobody" || v["connections"] != 0.0 {
		t.Errorf("%d %v, want 202 with 0 connections", st, v)
	}
}

func TestBadRequests(t *testing.T) {
	ts := startService(t)
	big := `{"text":"` + strings.Repeat("x", maxBodyBytes) + `"}`
	for _, tc := range []struct {
		name, path, ct, body string
		status               int
		reason               string
	}{
		{"malformed JSON", "/notify?user=alice", "application/json", `{"text":`, 400, "ends inside"},
		{"not JSON", "/announce", "application/json", `hello`, 400, "invalid character"},
		{"empty body", "/announce", "application/json", ``, 400, "empty"},
		{"wrong type", "/announce", "application/json", `{"text":5}`, 400, "string"},
		{"unknown field", "/announce", "application/json", `{"text":"hi","to":"x"}`, 400, "unknown field"},
		{"two values", "/announce", "application/json", `{"text":"a"}{"text":"b"}`, 400, "more than one"},
		{"no text", "/announce", "application/json", `{}`, 400, "missing"},
		{"text too long", "/announce", "application/json", `{"text":"` + strings.Repeat("x", maxTextBytes+1) + `"}`, 400, "limit"},
		{"body too large", "/notify?user=alice", "application/json", big, 413, "over"},
		{"not JSON content", "/announce", "text/plain", `{"text":"hi"}`, 415, "application/json"},
		{"no user", "/notify", "application/json", `{"text":"hi"}`, 400, "user"},
		{"bad user", "/notify?user=Bob!", "application/json", `{"text":"hi"}`, 400, "user"},
	} {
		st, v := ts.post(t, tc.path, tc.ct, tc.body)
		reason, _ := v["error"].(string)
		if st != tc.status || !strings.Contains(reason, tc.reason) {
			t.Errorf("%s: %d %q, want %d with %q", tc.name, st, reason, tc.status, tc.reason)
		}
	}
	for _, m := range []struct{ method, path string }{{"GET", "/notify?user=alice"}, {"PUT", "/announce"}, {"DELETE", "/notify"}} {
		req, _ := http.NewRequest(m.method, ts.base+m.path, nil)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(res.Header.Get("Allow"), "POST") {
			t.Errorf("%s %s: %d Allow %q, want 405 allowing POST", m.method, m.path, res.StatusCode, res.Header.Get("Allow"))
		}
	}
}

func TestClientMessageCloses(t *testing.T) {
	ts := startService(t)
	c := ts.connect(t, "eve")
	if err := c.WriteMessage(websocket.TextMessage, []byte("hello?")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(hangGuard))
	_, _, err := c.ReadMessage()
	if !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
		t.Errorf("read: %v, want close 1008", err)
	}
}

func TestPageAndMetrics(t *testing.T) {
	ts := startService(t)
	ts.connect(t, "alice")
	if st, _ := ts.post(t, "/announce", "application/json", `{"text":"x"}`); st != 202 {
		t.Fatalf("announce: %d", st)
	}
	for path, want := range map[string][]string{
		"/":        {"herald <span>notify</span>", "app.js"},
		"/app.js":  {"new WebSocket(wsURL)", "notifyStats"},
		"/healthz": {"ok"},
		"/metrics": {`herald_connections{state="open"} 1`, `notify_published_total{kind="announce"} 1`, "herald_hub_published_total 1", "go_goroutines"},
	} {
		res, err := client.Get(ts.base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("%s: %d", path, res.StatusCode)
		}
		for _, w := range want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s lacks %q", path, w)
			}
		}
	}
}

// TestShutdownOrder: what the service accepted before the signal is
// delivered, then every client gets 1001, and run returns cleanly.
func TestShutdownOrder(t *testing.T) {
	ts := startService(t)
	c := ts.connect(t, "alice")
	if st, _ := ts.post(t, "/notify?user=alice", "application/json", `{"text":"last words"}`); st != 202 {
		t.Fatalf("notify: %d", st)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- ts.stop() }()
	if ev := readEvent(t, c); ev.Text != "last words" {
		t.Errorf("got %+v before the close, want the notification", ev)
	}
	_ = c.SetReadDeadline(time.Now().Add(hangGuard))
	if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Errorf("read: %v, want close 1001", err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("run: %v", err)
	}
	if _, err := client.Get(ts.base + "/healthz"); err == nil {
		t.Error("the HTTP server still answers after shutdown")
	}
}

func TestUserStore(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := newUserStore(time.Millisecond, time.Hour, 2)
	s.now = func() time.Time { return now }
	ctx := context.Background()
	a, err := s.Login(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if u, err := s.Lookup(ctx, a); err != nil || u != "alice" {
		t.Errorf("lookup: %q %v", u, err)
	}
	if _, err := s.Login(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Login(ctx, "carol"); !errors.Is(err, errTooManyUsers) {
		t.Errorf("third login: %v, want errTooManyUsers", err)
	}
	now = now.Add(time.Hour)
	if _, err := s.Lookup(ctx, a); !errors.Is(err, errNoSession) {
		t.Errorf("expired lookup: %v, want errNoSession", err)
	}
	if _, err := s.Login(ctx, "carol"); err != nil {
		t.Errorf("login once the others expired: %v", err)
	}

	// The store's wait ends with its context.
	slow := newUserStore(time.Hour, time.Hour, 2)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := slow.Lookup(cctx, a); !errors.Is(err, context.Canceled) {
		t.Errorf("lookup with a canceled context: %v", err)
	}
	if _, err := slow.Login(cctx, "x"); !errors.Is(err, context.Canceled) {
		t.Errorf("login with a canceled context: %v", err)
	}
}
