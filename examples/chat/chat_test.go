package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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
	return startServer(t, tune).srv.Addr().String()
}

// startServer runs the server in-process on a free port and returns it, for
// tests that look inside. tune runs before the server starts, so test hooks
// it sets (options.clock, options.held) are seen by every loop.
func startServer(t *testing.T, tune func(*options)) *chat {
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
	return ch
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
	Omitted  int         `json:"omitted"`
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
	j := c.expectOwnJoin()
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

// expectOwnJoin reads the notice of c's own join. The server handles
// connections independently, so the leave notice of a member that left just
// before c joined may come first; it is skipped.
func (c *client) expectOwnJoin() serverMsg {
	c.t.Helper()
	for {
		m, err := c.read()
		if err != nil {
			c.t.Fatalf("%s: reading its join: %v", c.nick, err)
		}
		if m.Type == "join" && m.Nick == c.nick {
			return m
		}
		if m.Type != "leave" {
			c.t.Fatalf("%s: got %+v, want its own join", c.nick, m)
		}
	}
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

// fakeClock is the rate limits' clock in tests: it moves only when told, so
// what a budget allows is decided by counts, not by the machine's speed.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// preload puts n messages with text into the room's history (and publishes
// them to its members), as a member would, without a connection or its rate
// limit. It returns the room.
func preload(t *testing.T, ch *chat, roomName, text string, n int) *room {
	t.Helper()
	r, err := ch.room(roomName)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		body := marshal(event{Type: "msg", Room: roomName, Nick: "filler", Text: text, TS: nowMillis()})
		r.mu.Lock()
		ch.publishBodyLocked(r, body, true)
		r.mu.Unlock()
	}
	return r
}

// historyParts splits a history message as sent into its "messages" and
// "nicks" arrays, as sent.
func historyParts(t *testing.T, payload []byte) (msgs, nicks []byte) {
	t.Helper()
	var h struct {
		Messages json.RawMessage `json:"messages"`
		Nicks    json.RawMessage `json:"nicks"`
	}
	if err := json.Unmarshal(payload, &h); err != nil {
		t.Fatalf("history %.200s: %v", payload, err)
	}
	return h.Messages, h.Nicks
}

// charged is what the history quota takes for a history message as sent:
// its two arrays' contents.
func charged(t *testing.T, payload []byte) int {
	msgs, nicks := historyParts(t, payload)
	return len(msgs) - 2 + len(nicks) - 2
}

// joinRaw joins and returns the history as sent; the join notice is read too.
func joinRaw(t *testing.T, addr, room, nick string) (*client, serverMsg, []byte) {
	t.Helper()
	c := connect(t, addr, room, nick)
	h, raw, err := c.readRaw()
	if err != nil || h.Type != "history" {
		t.Fatalf("%s: %+v %v, want the history", nick, h, err)
	}
	c.expectOwnJoin()
	return c, h, raw
}

// checkNewest checks that msgs are the newest messages of a room whose
// latest message has id last, oldest first, all with text.
func checkNewest(t *testing.T, msgs []serverMsg, last uint64, text string) {
	t.Helper()
	for i, m := range msgs {
		want := last - uint64(len(msgs)-1-i)
		if m.Type != "msg" || m.ID != want || m.Text != text {
			t.Fatalf("history[%d] = id %d type %q text %.20q, want id %d with the text sent", i, m.ID, m.Type, m.Text, want)
		}
	}
}

// Every bound derived from the protocol's limits holds for the worst input
// those limits let in, and the defaults agree with one another.
func TestLimitsAgree(t *testing.T) {
	if err := defaultOptions().check(); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	texts := map[string]string{
		"control":   strings.Repeat("\x01", maxTextBytes),
		"quotes":    strings.Repeat(`"`, maxTextBytes),
		"backslash": strings.Repeat(`\`, maxTextBytes),
		"u2028":     strings.Repeat("\u2028", maxTextBytes/3),
		"html":      strings.Repeat("<", maxTextBytes),
		"emoji":     strings.Repeat("🙂", maxTextBytes/4),
	}
	nicks := map[string]string{
		"quotes":    strings.Repeat(`"`, maxNickRunes),
		"backslash": strings.Repeat(`\`, maxNickRunes),
		"emoji":     strings.Repeat("🙂", maxNickRunes),
	}
	room := strings.Repeat("r", maxRoomLen)
	biggest := 0
	for tn, text := range texts {
		for nn, nick := range nicks {
			if !validNick(nick) {
				t.Fatalf("nick %s is refused: the case is not a worst case", nn)
			}
			ev := withID(math.MaxUint64, marshal(event{Type: "msg", Room: room, Nick: nick, Text: text, TS: math.MinInt64}))
			biggest = max(biggest, len(ev))
			if len(ev) > maxEventBytes {
				t.Errorf("text %s, nick %s: event of %d bytes, over maxEventBytes %d", tn, nn, len(ev), maxEventBytes)
			}
			if n := len(marshal(nick)); n > maxNickJSON {
				t.Errorf("nick %s: %d bytes as sent, over maxNickJSON %d", nn, n, maxNickJSON)
			}
			// What a client sends for it, escaped the same way, passes the
			// engine's message limit.
			if in := marshal(map[string]string{"type": "msg", "text": text}); len(in) > maxFrameBytes {
				t.Errorf("text %s: the client's message is %d bytes, over maxFrameBytes %d", tn, len(in), maxFrameBytes)
			}
		}
	}
	t.Logf("largest event: %d bytes (bound %d)", biggest, maxEventBytes)
	if d := defaultOptions(); d.historyBytes < minHistoryBytes || d.historyRate < d.historyBytes+maxNickListBytes {
		t.Errorf("default -history-bytes %d or -history-rate %d cannot hold the largest event or a whole history", d.historyBytes, d.historyRate)
	}
	list := make([][]byte, maxNicksSent)
	for i := range list {
		list[i] = marshal(nicks["emoji"])
	}
	if n := len(appendArray(nil, list)); n > maxNickListBytes {
		t.Errorf("nick list of %d bytes, over maxNickListBytes %d", n, maxNickListBytes)
	}
	// The largest history message, behind the 101 (a few hundred bytes)
	// and its frame header, is within a connection's outbound bound.
	if n := maxHistoryBytes + maxNickListBytes + historyFixedBytes + 1<<10; n > engine.DefaultMaxOutboundBytes {
		t.Errorf("the largest history message and the 101 take %d bytes, over a connection's %d", n, engine.DefaultMaxOutboundBytes)
	}
	// The package documentation, the flags' help and README quote these.
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"maxEventBytes", maxEventBytes, 12258},
		{"minHistoryBytes", minHistoryBytes, 12260},
		{"maxHistoryBytes", maxHistoryBytes, 4128768},
		{"maxNickListBytes", maxNickListBytes, 19802},
		{"historyFixedBytes", historyFixedBytes, 256},
	} {
		if c.got != c.want {
			t.Errorf("%s is %d, the documentation says %d: update both", c.name, c.got, c.want)
		}
	}
	fixed := encodeHistory(room, math.MaxUint64, math.MaxInt, math.MaxInt, nil, nil)
	if len(fixed)-4 > historyFixedBytes { // less the two empty arrays' brackets
		t.Errorf("history message without its arrays is %d bytes, over historyFixedBytes %d", len(fixed)-4, historyFixedBytes)
	}
}

func TestOptionsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		tune func(*options)
		want string // the flag the error names
	}{
		{"negative history", func(o *options) { o.history = -1 }, "-history "},
		{"history bytes below the largest event", func(o *options) { o.historyBytes = minHistoryBytes - 1 }, "-history-bytes"},
		{"history bytes over a connection's bound", func(o *options) { o.historyBytes, o.historyRate = maxHistoryBytes+1, 8<<20 }, "-history-bytes"},
		{"history rate below history bytes", func(o *options) { o.historyRate = o.historyBytes - 1 }, "-history-rate"},
		{"history rate without room for the nicks", func(o *options) { o.historyRate = o.historyBytes + maxNickListBytes - 1 }, "-history-rate"},
		{"no history, no room for the nicks", func(o *options) { o.history, o.historyRate = 0, maxNickListBytes-1 }, "-history-rate"},
		{"zero history backlog", func(o *options) { o.historyBacklog = 0 }, "-history-backlog"},
		{"history backlog at the total", func(o *options) { o.historyBacklog = o.maxOutboundTotal }, "-history-backlog"},
		{"tiny outbound total", func(o *options) { o.maxOutboundTotal = 1 << 10 }, "-max-outbound-total"},
		{"zero rate", func(o *options) { o.rate = 0 }, "-rate"},
		{"zero rooms", func(o *options) { o.maxRooms = 0 }, "-rooms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := defaultOptions()
			opts.addr = "127.0.0.1:0"
			tc.tune(&opts)
			_, err := newChat(opts, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("newChat: %v, want an error naming %s", err, tc.want)
			}
		})
	}
	// Without history its size does not matter.
	opts := defaultOptions()
	opts.addr, opts.history, opts.historyBytes, opts.historyRate = "127.0.0.1:0", 0, 0, maxNickListBytes
	if _, err := newChat(opts, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatalf("-history 0: %v", err)
	}
}

// The history keeps the newest events that fit both bounds, oldest dropped
// first, and its array never passes maxBytes.
func TestHistoryAdd(t *testing.T) {
	for _, tc := range []struct {
		name      string
		maxEvents int
		maxBytes  int
		sizes     []int // events added, in order
		wantKept  int   // events kept at the end (the newest)
	}{
		{"count bound", 3, 1000, []int{10, 10, 10, 10, 10}, 3},
		{"byte bound", 100, 2 + 10 + 1 + 10, []int{10, 10, 10, 10}, 2},
		{"exactly full", 100, 2 + 3*10 + 2, []int{10, 10, 10}, 3},
		{"one byte short", 100, 2 + 3*10 + 1, []int{10, 10, 10}, 2},
		{"big one evicts many", 100, 100, []int{10, 10, 10, 10, 10, 10, 90}, 1},
		{"small ones after a big one", 100, 100, []int{90, 10, 10}, 2},
		{"too big is not kept", 100, 50, []int{10, 10, 49}, 2},
		{"no history", 0, 1000, []int{10}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h history
			var added [][]byte
			for i, n := range tc.sizes {
				ev := []byte(strings.Repeat(string(rune('a'+i)), n))
				added = append(added, ev)
				h.add(ev, tc.maxEvents, tc.maxBytes)
				got := h.snapshot()
				if b := len(appendArray(nil, got)); b != h.bytes() || (len(got) > 0 && b > tc.maxBytes) {
					t.Fatalf("after %d adds: array of %d bytes, accounted %d, bound %d", i+1, b, h.bytes(), tc.maxBytes)
				}
				if len(got) > tc.maxEvents {
					t.Fatalf("after %d adds: %d events, bound %d", i+1, len(got), tc.maxEvents)
				}
			}
			got := h.snapshot()
			if len(got) != tc.wantKept {
				t.Fatalf("kept %d events, want %d", len(got), tc.wantKept)
			}
			// The newest that fit, in order: the last ones added, less an
			// event that never fit.
			want := added
			if n := len(want); n > 0 && 2+len(want[n-1]) > tc.maxBytes {
				want = want[:n-1]
			}
			want = want[len(want)-len(got):]
			for i := range got {
				if string(got[i]) != string(want[i]) {
					t.Fatalf("kept[%d] = %.5q, want %.5q", i, got[i], want[i])
				}
			}
		})
	}
}

// Through the server: a joiner's "messages" never pass -history-bytes as
// sent, whatever JSON makes of the text, and hold as many of the newest
// messages as fit.
func TestHistoryBytesBound(t *testing.T) {
	const bound = 16 << 10
	ch := startServer(t, func(o *options) {
		o.history = 1000
		o.historyBytes = bound
		o.held = func() int64 { return 0 }
	})
	addr := ch.srv.Addr().String()
	for _, tc := range []struct {
		name string
		text string
	}{
		{"ascii", strings.Repeat("a", maxTextBytes)},
		{"html", strings.Repeat("<", maxTextBytes)},
		{"quotes", strings.Repeat(`"`, maxTextBytes)},
		{"control", strings.Repeat("\x01", maxTextBytes)},
		{"u2028", strings.Repeat("\u2028", maxTextBytes/3)},
		{"short", "hi <b>&amp;</b>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const sent = 40
			r := preload(t, ch, tc.name, tc.text, sent)
			c, h, raw := joinRaw(t, addr, tc.name, "reader")
			defer c.leave()
			msgs, _ := historyParts(t, raw)
			if len(msgs) > bound {
				t.Fatalf("messages array of %d bytes, over -history-bytes %d", len(msgs), bound)
			}
			if len(h.Messages) == 0 || h.Omitted != 0 {
				t.Fatalf("%d messages, %d omitted: want the whole history", len(h.Messages), h.Omitted)
			}
			r.mu.Lock()
			last := r.seq - 1 // the reader's own join came after
			r.mu.Unlock()
			checkNewest(t, h.Messages, last, tc.text)
			if len(h.Messages) < sent {
				// The one before the oldest kept (same text, an id as
				// long or one digit shorter) would not have fit.
				var events []json.RawMessage
				_ = json.Unmarshal(msgs, &events)
				if len(msgs)+1+len(events[0])-1 <= bound {
					t.Fatalf("%d messages in %d bytes: another of %d would have fit in %d", len(h.Messages), len(msgs), len(events[0]), bound)
				}
			}
			if tc.name == "html" && strings.Contains(string(raw), `\u003c`) {
				t.Fatalf("'<' is HTML-escaped: 6 bytes instead of 1")
			}
			t.Logf("%s: %d of %d messages in %d bytes", tc.name, len(h.Messages), sent, len(msgs))
		})
	}
}

// The server sends at most -history-rate bytes of history per second of its
// clock, in total, whatever joins: a join that finds the quota short gets
// the newest messages that fit (or none) and the count of the others.
func TestHistoryRate(t *testing.T) {
	const (
		histBytes = 16 << 10
		rate      = 40 << 10 // two whole histories and a half, the nick lists aside
	)
	clock := newFakeClock()
	ch := startServer(t, func(o *options) {
		o.historyBytes = histBytes
		o.historyRate = rate
		o.clock = clock.Now
		o.held = func() int64 { return 0 }
	})
	addr := ch.srv.Addr().String()
	text := strings.Repeat("<", maxTextBytes)
	r := preload(t, ch, "busy", text, 50)
	r.mu.Lock()
	whole, lastMsg := len(r.history.snapshot()), r.seq
	r.mu.Unlock()

	joins := 0
	joinBusy := func() (serverMsg, []byte) {
		joins++
		c, h, raw := joinRaw(t, addr, "busy", "j"+strconv.Itoa(joins))
		t.Cleanup(c.leave)
		if len(h.Messages)+h.Omitted != whole {
			t.Fatalf("join %d: %d messages + %d omitted, want the history's %d", joins, len(h.Messages), h.Omitted, whole)
		}
		checkNewest(t, h.Messages, lastMsg, text)
		return h, raw
	}
	// The quota as specified: one second's worth at most, refilled at rate
	// by the clock. Every step's joins together take no more than it holds.
	avail := float64(rate)
	for _, step := range []struct {
		name    string
		advance time.Duration // on the clock before the step's joins
		joins   int
		full    int // of them, this many first get the whole history
	}{
		{"a burst takes one second's worth", 0, 6, 2},
		{"a second later, one more second's worth", time.Second, 4, 1},
		{"no time, no history", 0, 3, 0},
		{"half a second, half the quota", time.Second / 2, 3, 1},
		{"an idle minute still holds one second's worth", time.Minute, 6, 2},
	} {
		clock.Advance(step.advance)
		avail = min(rate, avail+step.advance.Seconds()*rate)
		before := ch.historySent.Load()
		took := 0
		for i := 0; i < step.joins; i++ {
			h, raw := joinBusy()
			took += charged(t, raw)
			if i < step.full && h.Omitted != 0 {
				t.Fatalf("%s: join %d of the step got %d of %d messages, want all", step.name, i+1, len(h.Messages), whole)
			}
		}
		if float64(took) > avail {
			t.Fatalf("%s: %d joins took %d history bytes, over the %.0f available", step.name, step.joins, took, avail)
		}
		if got := ch.historySent.Load() - before; got != int64(took) {
			t.Fatalf("%s: the server counted %d history bytes, the clients got %d", step.name, got, took)
		}
		t.Logf("%s: %d joins took %d of %.0f bytes", step.name, step.joins, took, avail)
		avail -= float64(took)
	}
	// What the last step left is less than a message: the next join gets
	// none, and learns how many it missed.
	h, raw := joinBusy()
	if len(h.Messages) != 0 || h.Omitted != whole || h.Members != joins || float64(charged(t, raw)) > avail {
		t.Fatalf("join with the quota spent: %d messages, %d omitted, %d members, %d bytes; want none, %d, %d, at most %.0f",
			len(h.Messages), h.Omitted, h.Members, charged(t, raw), whole, joins, avail)
	}
}

// While the server holds more than -history-backlog unread bytes, a join
// gets no history at all; once below, the whole of it again.
func TestHistoryWithheldWhileBacklogged(t *testing.T) {
	var held atomic.Int64
	ch := startServer(t, func(o *options) { o.held = held.Load })
	addr := ch.srv.Addr().String()
	preload(t, ch, "backlog", "hello", 5)
	for i, tc := range []struct {
		held     int64
		wantMsgs int
	}{
		{0, 5},
		{defaultOptions().historyBacklog, 5},
		{defaultOptions().historyBacklog + 1, 0},
		{0, 5},
	} {
		held.Store(tc.held)
		c, h, _ := joinRaw(t, addr, "backlog", "j"+strconv.Itoa(i))
		c.leave()
		if len(h.Messages) != tc.wantMsgs || h.Omitted != 5-tc.wantMsgs {
			t.Fatalf("held %d: %d messages, %d omitted; want %d and %d", tc.held, len(h.Messages), h.Omitted, tc.wantMsgs, 5-tc.wantMsgs)
		}
		if tc.wantMsgs == 0 && len(h.Nicks) != 0 {
			t.Fatalf("held %d: nicks %v, want none", tc.held, h.Nicks)
		}
	}
}

// dialSmallWindow connects as nick to room with a small receive buffer, as a
// client that never reads would look to the server after its first packets,
// and reads nothing but the 101.
func dialSmallWindow(addr, room, nick string) (net.Conn, error) {
	d := ws.Dialer{
		Timeout: hangGuard,
		NetDial: func(ctx context.Context, network, address string) (net.Conn, error) {
			nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
				var serr error
				err := rc.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10)
				})
				return cmp.Or(err, serr)
			}}
			return nd.DialContext(ctx, network, address)
		},
	}
	conn, _, _, err := d.Dial(context.Background(), wsURL(addr, room, nick))
	return conn, err
}

// A burst of joiners that never read, each to a room with a long history
// of escaping-heavy messages, leaves the server holding a bounded amount,
// whichever of the two history bounds acts first: the quota (bytes sent per
// second of the clock, which stands still here) or the backlog (no history
// while the server holds more than -history-backlog). The histories are so
// long that the sockets' buffers cannot take them: what is not sent stays
// in the server's memory.
func TestJoinFloodStaysBounded(t *testing.T) {
	const (
		joiners   = 200
		loops     = 2
		histBytes = maxHistoryBytes
		backlog   = 8 << 20
		perJoin   = 1 << 10 // the 101, the history without its arrays, the join notice
		// One history message being sent per loop as the backlog bound is
		// crossed.
		inFlight = loops * (histBytes + maxNickListBytes + historyFixedBytes)
	)
	for _, tc := range []struct {
		name     string
		rate     int
		maxSent  int64 // history bytes sent at most (0: not bounded by the quota)
		maxHistH int64 // history bytes held at most
	}{
		{"quota", histBytes + maxNickListBytes, histBytes + maxNickListBytes, histBytes + maxNickListBytes},
		{"backlog", 1 << 40, 0, backlog + inFlight},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			ch := startServer(t, func(o *options) {
				o.loops = loops
				o.history = 10000
				o.historyBytes = histBytes
				o.historyRate = tc.rate
				o.historyBacklog = backlog
				o.clock = clock.Now
				// However slow the machine, the joiners stay: the
				// backlog bound is what limits the server, not
				// WriteTimeout closing them.
				o.writeTimeout = -1
			})
			addr := ch.srv.Addr().String()
			src := preload(t, ch, "r0", strings.Repeat("<", maxTextBytes), histBytes/maxTextBytes+10)
			src.mu.Lock()
			whole, events := src.history.bytes(), src.history.snapshot()
			src.mu.Unlock()
			for i := 1; i < joiners; i++ {
				// The same history in every room: events are never
				// modified, so the rooms may share them.
				r, err := ch.room("r" + strconv.Itoa(i))
				if err != nil {
					t.Fatal(err)
				}
				r.mu.Lock()
				for _, ev := range events {
					r.history.add(ev, ch.opts.history, ch.opts.historyBytes)
				}
				r.mu.Unlock()
			}
			var held int64 // the most the server held at any look
			for i := 0; i < joiners; i++ {
				conn, err := dialSmallWindow(addr, "r"+strconv.Itoa(i), "silent")
				if err != nil {
					t.Fatalf("joiner %d: %v", i, err)
				}
				t.Cleanup(func() { conn.Close() })
				held = max(held, ch.srv.Stats().OutboundBytes)
			}
			sent := ch.historySent.Load()
			t.Logf("%d joiners, histories of %d bytes: %d history bytes sent (%d joins trimmed), at most %d bytes held; without the bounds %d sent",
				joiners, whole, sent, ch.historyTrimmed.Load(), held, joiners*whole)
			if tc.maxSent > 0 && sent > tc.maxSent {
				t.Fatalf("%d history bytes sent, over the quota of %d", sent, tc.maxSent)
			}
			if limit := tc.maxHistH + joiners*perJoin; held > limit {
				t.Fatalf("the server held %d unread bytes, over %d (%d of history, %d per join)", held, limit, tc.maxHistH, perJoin)
			}
		})
	}
}

// Once the flood is over, the quota refills and a member who reads gets the
// whole history again.
func TestHistoryAfterFlood(t *testing.T) {
	clock := newFakeClock()
	ch := startServer(t, func(o *options) {
		o.historyRate = o.historyBytes + maxNickListBytes
		o.clock = clock.Now
		o.held = func() int64 { return 0 }
	})
	addr := ch.srv.Addr().String()
	r := preload(t, ch, "refill", strings.Repeat("<", maxTextBytes), 100)
	r.mu.Lock()
	whole := r.history.bytes()
	r.mu.Unlock()
	for i := 0; i < 20; i++ {
		conn, err := dialSmallWindow(addr, "refill", "j"+strconv.Itoa(i))
		if err != nil {
			t.Fatalf("joiner %d: %v", i, err)
		}
		t.Cleanup(func() { conn.Close() })
	}
	c, h, _ := joinRaw(t, addr, "refill", "late")
	if len(h.Messages) != 0 {
		t.Fatalf("quota spent by the flood, yet %d messages", len(h.Messages))
	}
	c.leave()
	clock.Advance(time.Second)
	c, h, raw := joinRaw(t, addr, "refill", "reader")
	defer c.leave()
	if msgs, _ := historyParts(t, raw); h.Omitted != 0 || len(msgs) != whole {
		t.Fatalf("a second later: %d messages (%d bytes), %d omitted; want the whole history of %d bytes", len(h.Messages), len(msgs), h.Omitted, whole)
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
