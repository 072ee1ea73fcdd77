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
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/heraldws/herald/engine"
)

// hangGuard bounds every wait for the server. It is no speed requirement:
// it only ends the wait for a server that never answers.
const hangGuard = time.Minute

// startChat runs the server in-process on a free port.
func startChat(t *testing.T, tune func(*options)) string {
	t.Helper()
	opts := defaultOptions()
	opts.addr = "127.0.0.1:0"
	if tune != nil {
		tune(&opts)
	}
	ch, err := newChat(opts, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = ch.srv.Shutdown(ctx)
	})
	return ch.srv.Addr().String()
}

// serverMsg is any message the server sends.
type serverMsg struct {
	Type     string      `json:"type"`
	ID       uint64      `json:"id"`
	Room     string      `json:"room"`
	Nick     string      `json:"nick"`
	Text     string      `json:"text"`
	TS       int64       `json:"ts"`
	Members  int         `json:"members"`
	Nicks    []string    `json:"nicks"`
	Messages []serverMsg `json:"messages"`
	Error    string      `json:"error"`
}

type client struct {
	t    *testing.T
	nick string
	conn net.Conn
	rw   io.ReadWriter
}

func wsURL(addr, room, nick string) string {
	return "ws://" + addr + "/ws?" + url.Values{"room": {room}, "nick": {nick}}.Encode()
}

// dialRaw connects to u with the given extra headers.
func dialRaw(u string, header http.Header) (net.Conn, io.ReadWriter, error) {
	d := ws.Dialer{Timeout: hangGuard}
	if header != nil {
		d.Header = ws.HandshakeHeaderHTTP(header)
	}
	conn, br, _, err := d.Dial(context.Background(), u)
	if err != nil {
		return nil, nil, err
	}
	// Frames that came with the 101 wait in the dialer's buffer.
	if br != nil {
		return conn, struct {
			io.Reader
			io.Writer
		}{io.MultiReader(br, conn), conn}, nil
	}
	return conn, conn, nil
}

// join connects as nick to room and reads the history and the member's own
// join notice.
func join(t *testing.T, addr, room, nick string) (*client, serverMsg) {
	t.Helper()
	c := connect(t, addr, room, nick)
	h := c.expect("history")
	if h.Room != room {
		t.Fatalf("%s: history of room %q, want %q", nick, h.Room, room)
	}
	j := c.expect("join")
	if j.Nick != nick || j.Room != room || j.ID <= h.ID {
		t.Fatalf("%s: own join notice %+v after history id %d", nick, j, h.ID)
	}
	return c, h
}

// connect connects without reading anything.
func connect(t *testing.T, addr, room, nick string) *client {
	t.Helper()
	conn, rw, err := dialRaw(wsURL(addr, room, nick), nil)
	if err != nil {
		t.Fatalf("join %s as %s: %v", room, nick, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, nick: nick, conn: conn, rw: rw}
}

func (c *client) read() (serverMsg, error) {
	m, _, err := c.readRaw()
	return m, err
}

// readRaw reads the next message and returns it parsed and as sent.
func (c *client) readRaw() (serverMsg, []byte, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(hangGuard))
	data, op, err := wsutil.ReadServerData(c.rw)
	if err != nil {
		return serverMsg{}, nil, err
	}
	if op != ws.OpText {
		return serverMsg{}, nil, errors.New("server sent a binary message")
	}
	var m serverMsg
	if err := json.Unmarshal(data, &m); err != nil {
		return serverMsg{}, nil, err
	}
	return m, data, nil
}

// expect reads the next message and checks its type.
func (c *client) expect(typ string) serverMsg {
	c.t.Helper()
	m, err := c.read()
	if err != nil {
		c.t.Fatalf("%s: reading a %q message: %v", c.nick, typ, err)
	}
	if m.Type != typ {
		c.t.Fatalf("%s: got %+v, want a %q message", c.nick, m, typ)
	}
	return m
}

// expectMsg reads the next message: a chat message from nick with text.
func (c *client) expectMsg(nick, text string) serverMsg {
	c.t.Helper()
	m := c.expect("msg")
	if m.Nick != nick || m.Text != text {
		c.t.Fatalf("%s: got message %q from %s, want %q from %s", c.nick, m.Text, m.Nick, text, nick)
	}
	return m
}

// expectClose reads until the server's close frame and checks it. It reads
// frames itself: wsutil refuses close codes it does not know, such as 1013.
func (c *client) expectClose(code ws.StatusCode, reason string) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(hangGuard))
	for {
		f, err := ws.ReadFrame(c.rw)
		if err != nil {
			c.t.Fatalf("%s: %v, want close %d %q", c.nick, err, code, reason)
		}
		if f.Header.OpCode == ws.OpPing {
			_ = wsutil.WriteClientMessage(c.conn, ws.OpPong, f.Payload)
		}
		if f.Header.OpCode != ws.OpClose {
			continue
		}
		got, why := ws.ParseCloseFrameData(f.Payload)
		if got != code || !strings.Contains(why, reason) {
			c.t.Fatalf("%s: closed with %d %q, want %d %q", c.nick, got, why, code, reason)
		}
		_ = wsutil.WriteClientMessage(c.conn, ws.OpClose, f.Payload)
		return
	}
}

func (c *client) say(text string) {
	c.t.Helper()
	c.sendRaw(marshal(map[string]string{"type": "msg", "text": text}))
}

func (c *client) sendRaw(b []byte) {
	c.t.Helper()
	if err := wsutil.WriteClientText(c.conn, b); err != nil {
		c.t.Fatalf("%s: send: %v", c.nick, err)
	}
}

// leave closes the connection politely.
func (c *client) leave() {
	_ = wsutil.WriteClientMessage(c.conn, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye"))
	c.conn.Close()
}

func TestHistoryOnJoin(t *testing.T) {
	addr := startChat(t, func(o *options) { o.history = 3 })
	alice, h := join(t, addr, "history", "alice")
	if len(h.Messages) != 0 || h.Members != 1 || strings.Join(h.Nicks, ",") != "alice" {
		t.Fatalf("first member's history: %+v", h)
	}
	texts := []string{"one", "two", "three", "four", "five"}
	for _, s := range texts {
		alice.say(s)
		alice.expectMsg("alice", s)
	}

	bob, h := join(t, addr, "history", "bob")
	if h.Members != 2 || strings.Join(h.Nicks, ",") != "alice,bob" {
		t.Fatalf("history members %d %v, want 2 [alice bob]", h.Members, h.Nicks)
	}
	if len(h.Messages) != 3 {
		t.Fatalf("history has %d messages, want the last 3: %+v", len(h.Messages), h.Messages)
	}
	for i, m := range h.Messages {
		if m.Type != "msg" || m.Nick != "alice" || m.Text != texts[2+i] || m.Room != "history" || m.TS == 0 {
			t.Fatalf("history[%d] = %+v, want alice's %q", i, m, texts[2+i])
		}
		if i > 0 && m.ID <= h.Messages[i-1].ID {
			t.Fatalf("history ids not increasing: %+v", h.Messages)
		}
	}
	if last := h.Messages[2].ID; h.ID < last {
		t.Fatalf("history id %d is below its last message's %d", h.ID, last)
	}
	alice.expect("join")
	bob.say("hi")
	alice.expectMsg("bob", "hi")
	bob.expectMsg("bob", "hi")
}

func TestJoinLeaveNotices(t *testing.T) {
	addr := startChat(t, nil)
	alice, _ := join(t, addr, "notices", "alice")
	bob, _ := join(t, addr, "notices", "bob")
	if j := alice.expect("join"); j.Nick != "bob" || j.Members != 2 || j.Room != "notices" || j.TS == 0 {
		t.Fatalf("alice got %+v, want bob's join with 2 members", j)
	}
	bob.leave()
	if l := alice.expect("leave"); l.Nick != "bob" || l.Members != 1 || l.Room != "notices" {
		t.Fatalf("alice got %+v, want bob's leave with 1 member", l)
	}
	// Dropping the TCP connection without a close frame also leaves.
	carol, _ := join(t, addr, "notices", "carol")
	alice.expect("join")
	carol.conn.Close()
	if l := alice.expect("leave"); l.Nick != "carol" || l.Members != 1 {
		t.Fatalf("alice got %+v, want carol's leave with 1 member", l)
	}
}

func TestFanOutStaysInRoom(t *testing.T) {
	addr := startChat(t, nil)
	alice, _ := join(t, addr, "one", "alice")
	bob, _ := join(t, addr, "one", "bob")
	alice.expect("join") // bob's
	carol, _ := join(t, addr, "two", "carol")

	alice.say("hello one")
	alice.expectMsg("alice", "hello one")
	bob.expectMsg("alice", "hello one")

	// Carol's next message is her own: nothing from room one came first,
	// though it was published before.
	carol.say("hello two")
	carol.expectMsg("carol", "hello two")

	// And room two's traffic did not reach room one.
	bob.say("still one")
	alice.expectMsg("bob", "still one")
	bob.expectMsg("bob", "still one")

	// Many members: everybody gets every message once, in order.
	const n = 12
	members := []*client{alice, bob}
	for i := 2; i < n; i++ {
		c, _ := join(t, addr, "one", "m"+string(rune('a'+i)))
		for _, m := range members {
			m.expect("join")
		}
		members = append(members, c)
	}
	for i := 0; i < 3; i++ {
		text := "round " + string(rune('0'+i))
		alice.say(text)
		for _, m := range members {
			m.expectMsg("alice", text)
		}
	}
}

func TestNickAndRoomRules(t *testing.T) {
	addr := startChat(t, nil)
	refused := []struct{ room, nick string }{
		{"lobby", ""},
		{"lobby", strings.Repeat("n", 25)},
		{"lobby", strings.Repeat("é", 25)},
		{"lobby", "tab\there"},
		{"lobby", "bell\x07"},
		{"lobby", " lead"},
		{"lobby", "trail "},
		{"lobby", "bad\xffutf8"},
		{"", "alice"},
		{"Lobby", "alice"},
		{"under_score", "alice"},
		{"dot.dot", "alice"},
		{strings.Repeat("r", 33), "alice"},
	}
	for _, tc := range refused {
		_, _, err := dialRaw(wsURL(addr, tc.room, tc.nick), nil)
		var se ws.StatusError
		if !errors.As(err, &se) || int(se) != http.StatusBadRequest {
			t.Errorf("room %q nick %q: %v, want a 400 refusal", tc.room, tc.nick, err)
		}
	}
	if _, _, err := dialRaw("ws://"+addr+"/chat?room=lobby&nick=alice", nil); !errors.Is(err, ws.StatusError(http.StatusNotFound)) {
		t.Errorf("wrong path: %v, want 404", err)
	}
	for _, nick := range []string{strings.Repeat("é", 24), "Zoë Ω 🙂", "a", "with space"} {
		c, _ := join(t, addr, strings.Repeat("r", 32), nick)
		c.leave()
	}

	alice, _ := join(t, addr, "lobby", "alice")
	// Taken, ignoring case.
	dup := connect(t, addr, "lobby", "ALICE")
	dup.expectClose(ws.StatusPolicyViolation, "nick taken")
	// Free in another room.
	other, _ := join(t, addr, "other-room", "alice")
	other.leave()
	// Free again once its holder left.
	observer, _ := join(t, addr, "lobby", "observer")
	alice.expect("join")
	alice.leave()
	observer.expect("leave")
	again, _ := join(t, addr, "lobby", "Alice")
	observer.expect("join")
	again.leave()
}

func TestRateLimit(t *testing.T) {
	addr := startChat(t, nil) // 10 at once, 10 per second
	alice, _ := join(t, addr, "rate", "alice")
	bob, _ := join(t, addr, "rate", "bob")
	alice.expect("join")

	// A burst within the budget goes through.
	for i := 0; i < 10; i++ {
		alice.say("burst")
	}
	for i := 0; i < 10; i++ {
		bob.expectMsg("alice", "burst")
	}
	// A flood does not: bob sees at most a few more, then alice leaves.
	for i := 0; i < 40; i++ {
		if err := wsutil.WriteClientText(alice.conn, []byte(`{"type":"msg","text":"flood"}`)); err != nil {
			break // closed under us: fine
		}
	}
	alice.expectClose(ws.StatusPolicyViolation, "rate limit")
	flood := 0
	for {
		m, err := bob.read()
		if err != nil {
			t.Fatalf("bob: %v", err)
		}
		if m.Type == "leave" {
			if m.Nick != "alice" {
				t.Fatalf("bob got %+v, want alice's leave", m)
			}
			break
		}
		if m.Type != "msg" || m.Text != "flood" {
			t.Fatalf("bob got %+v", m)
		}
		flood++
	}
	if flood > 5 {
		t.Fatalf("%d flood messages got through, want at most a few", flood)
	}
	t.Logf("%d flood messages got through before the limit", flood)
}

func TestMessageSizeLimits(t *testing.T) {
	addr := startChat(t, nil)
	alice, _ := join(t, addr, "size", "alice")
	bob, _ := join(t, addr, "size", "bob")
	alice.expect("join")

	full := strings.Repeat("é", maxTextBytes/2) // exactly 2000 bytes
	alice.say(full)
	bob.expectMsg("alice", full)
	alice.expectMsg("alice", full)

	alice.say(full + "x")
	if e := alice.expect("error"); !strings.Contains(e.Error, "too long") {
		t.Fatalf("error %q, want one about the length", e.Error)
	}
	// Still connected, and bob never saw the long one.
	alice.say("short")
	bob.expectMsg("alice", "short")
	alice.expectMsg("alice", "short")

	// Control characters escape to 6 bytes each: 2000 of them still fit.
	ctrl := strings.Repeat("\x01", maxTextBytes)
	alice.say(ctrl)
	bob.expectMsg("alice", ctrl)
	alice.expectMsg("alice", ctrl)

	// Past the frame limit the engine closes with 1009.
	alice.sendRaw([]byte(`{"type":"msg","text":"` + strings.Repeat("x", maxFrameBytes) + `"}`))
	alice.expectClose(ws.StatusMessageTooBig, "")
	// The rest of the oversized frame is still on its way, so the server
	// cannot read a close reply: drop the connection, as the RFC lets a
	// client do after a failure.
	alice.conn.Close()
	if l := bob.expect("leave"); l.Nick != "alice" {
		t.Fatalf("bob got %+v, want alice's leave", l)
	}
}

func TestBadInput(t *testing.T) {
	addr := startChat(t, nil)
	alice, _ := join(t, addr, "bad", "alice")
	for _, raw := range []string{`not json`, `{"type":"shout","text":"x"}`, `{"type":"msg"}`, `{"type":"msg","text":"  \n "}`} {
		alice.sendRaw([]byte(raw))
		if e := alice.expect("error"); e.Error == "" {
			t.Fatalf("%s: empty error", raw)
		}
	}
	if err := wsutil.WriteClientBinary(alice.conn, []byte(`{"type":"msg","text":"x"}`)); err != nil {
		t.Fatal(err)
	}
	alice.expectClose(ws.StatusUnsupportedData, "text")
}

func TestOrigin(t *testing.T) {
	addr := startChat(t, nil)
	_, _, err := dialRaw(wsURL(addr, "lobby", "mallory"), http.Header{"Origin": {"http://evil.example"}})
	if !errors.Is(err, ws.StatusError(http.StatusForbidden)) {
		t.Fatalf("cross-origin: %v, want 403", err)
	}
	conn, _, err := dialRaw(wsURL(addr, "lobby", "alice"), http.Header{"Origin": {"http://" + addr}})
	if err != nil {
		t.Fatalf("same origin: %v", err)
	}
	conn.Close()
}

func TestRoomLimit(t *testing.T) {
	addr := startChat(t, func(o *options) { o.maxRooms = 2 })
	a, _ := join(t, addr, "a", "alice")
	a.say("remember me")
	a.expectMsg("alice", "remember me")
	b, _ := join(t, addr, "b", "bob")
	full := connect(t, addr, "c", "carol")
	full.expectClose(ws.StatusCode(engine.StatusTryAgainLater), "too many rooms")

	// Once a is empty it can be forgotten to make space.
	watcher, _ := join(t, addr, "b", "watcher")
	b.expect("join")
	a.leave()
	waitFor(t, func() bool { return roomMembers(t, addr)["a"] == 0 })
	c, _ := join(t, addr, "c", "carol")
	c.leave()
	watcher.leave()
}

func TestPageAndRooms(t *testing.T) {
	addr := startChat(t, nil)
	res, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), "<title>") {
		t.Fatalf("GET /: %d %.200s", res.StatusCode, body)
	}
	for _, f := range []string{"app.js", "style.css"} {
		res, err := http.Get("http://" + addr + "/" + f)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("GET /%s: %d", f, res.StatusCode)
		}
	}
	join(t, addr, "busy", "a1")
	join(t, addr, "busy", "a2")
	join(t, addr, "quiet", "b1")
	waitFor(t, func() bool {
		r := roomMembers(t, addr)
		return r["busy"] == 2 && r["quiet"] == 1
	})
}

// roomMembers reads GET /rooms.
func roomMembers(t *testing.T, addr string) map[string]int {
	t.Helper()
	res, err := http.Get("http://" + addr + "/rooms")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var list []struct {
		Name    string `json:"name"`
		Members int    `json:"members"`
	}
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range list {
		out[r.Name] = r.Members
	}
	return out
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met (waited %v)", hangGuard)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// '<', '>' and '&' are sent as themselves, not as six-byte escapes: a text
// of them costs its own size on the wire, and reaches members unchanged.
func TestNoHTMLEscaping(t *testing.T) {
	addr := startChat(t, nil)
	alice, _ := join(t, addr, "html", "alice")
	text := strings.Repeat("<b>&amp;</b>", 100)
	alice.say(text)
	_, raw, err := alice.readRaw()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), `\u003c`) || !strings.Contains(string(raw), text) {
		t.Fatalf("message as sent: %.120s, want the text unescaped", raw)
	}
	bob, h := join(t, addr, "html", "bob")
	if len(h.Messages) != 1 || h.Messages[0].Text != text {
		t.Fatalf("history: %+v, want alice's message", h.Messages)
	}
	bob.leave()
}
