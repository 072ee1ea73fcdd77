package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/resume"
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

// serverMsg is any message the server sends; a publication is read as the
// room event it carries, with its position.
type serverMsg struct {
	Type      string            `json:"type"`
	Room      string            `json:"room"`
	Nick      string            `json:"nick"`
	Text      string            `json:"text"`
	TS        int64             `json:"ts"`
	Members   int               `json:"members"`
	Nicks     []string          `json:"nicks"`
	Error     string            `json:"error"`
	Topic     string            `json:"topic"`
	Epoch     string            `json:"epoch"`
	Offset    uint64            `json:"offset"`
	Since     *position         `json:"since"`
	Recovered *bool             `json:"recovered"`
	Pubs      []json.RawMessage `json:"pubs"`
	Data      json.RawMessage   `json:"data"`
	Code      string            `json:"code"`
	Message   string            `json:"message"`
	Events    []serverMsg       `json:"-"` // a subscribed reply's pubs, as events
}

type position struct {
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
}

// messages returns the "msg" events of events.
func messages(events []serverMsg) []serverMsg {
	var out []serverMsg
	for _, e := range events {
		if e.Type == "msg" {
			out = append(out, e)
		}
	}
	return out
}

type client struct {
	t    *testing.T
	nick string
	conn net.Conn
	rw   io.ReadWriter
	// The position of the last event read: a publication at or below it
	// is a repeat (docs/PROTOCOL.md) and is skipped, as a client must.
	pos position
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

// join connects as nick to room, reads the hello and subscribes from its
// "since": the reply recovers the room's recent events, the member's own
// join among them. It returns the hello, with the reply's events.
func join(t *testing.T, addr, room, nick string) (*client, serverMsg) {
	t.Helper()
	return joinURL(t, wsURL(addr, room, nick), room, nick)
}

// joinURL is join with a URL of the caller's (a seat key in it).
func joinURL(t *testing.T, u, room, nick string) (*client, serverMsg) {
	t.Helper()
	c := connectURL(t, u, nick)
	h := c.expect("hello")
	if h.Room != room || h.Topic != "room."+room {
		t.Fatalf("%s: hello of room %q topic %q, want %q", nick, h.Room, h.Topic, room)
	}
	rep := c.subscribe(h.Topic, h.Since)
	if rep.Recovered == nil || !*rep.Recovered {
		t.Fatalf("%s: subscribing from the hello's position did not recover: %+v", nick, rep)
	}
	own := false
	for _, e := range rep.Events {
		own = own || e.Type == "join" && e.Nick == nick
	}
	if !own {
		t.Fatalf("%s: its own join is not among the recovered events %+v", nick, rep.Events)
	}
	h.Events = rep.Events
	return c, h
}

// connect connects without reading anything.
func connect(t *testing.T, addr, room, nick string) *client {
	t.Helper()
	return connectURL(t, wsURL(addr, room, nick), nick)
}

func connectURL(t *testing.T, u, nick string) *client {
	t.Helper()
	conn, rw, err := dialRaw(u, nil)
	if err != nil {
		t.Fatalf("join %s as %s: %v", u, nick, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, nick: nick, conn: conn, rw: rw}
}

// subscribe sends a subscribe to topic from since (nil: none) and reads
// the reply; its publications are in Events and the client's position
// moves past them.
func (c *client) subscribe(topic string, since *position) serverMsg {
	c.t.Helper()
	req := map[string]any{"type": "subscribe", "id": 1, "topic": topic}
	if since != nil {
		req["since"] = since
	}
	c.sendRaw(marshal(req))
	rep, _ := c.expectRaw("subscribed")
	return rep
}

func (c *client) read() (serverMsg, error) {
	m, _, err := c.readRaw()
	return m, err
}

// readRaw reads the next message and returns it parsed and as sent. It
// skips the welcome, and publications at or below the client's position.
func (c *client) readRaw() (serverMsg, []byte, error) {
	for {
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
		switch m.Type {
		case "welcome":
			continue
		case "pub":
			ev, fresh, err := c.event(data)
			if err != nil {
				return serverMsg{}, nil, err
			}
			if !fresh {
				continue
			}
			return ev, data, nil
		case "subscribed":
			if m.Recovered != nil && *m.Recovered {
				for _, p := range m.Pubs {
					ev, fresh, err := c.event(p)
					if err != nil {
						return serverMsg{}, nil, err
					}
					if fresh {
						m.Events = append(m.Events, ev)
					}
				}
			}
			if m.Epoch != c.pos.Epoch || m.Offset > c.pos.Offset {
				c.pos = position{m.Epoch, m.Offset}
			}
		}
		return m, data, nil
	}
}

// event decodes a publication into its event and reports whether it is
// new to the client (above its position), moving the position past it.
func (c *client) event(pub []byte) (serverMsg, bool, error) {
	var p serverMsg
	if err := json.Unmarshal(pub, &p); err != nil || p.Type != "pub" {
		return serverMsg{}, false, fmt.Errorf("not a publication: %.200s (%v)", pub, err)
	}
	if p.Epoch != "" {
		if p.Epoch == c.pos.Epoch && p.Offset <= c.pos.Offset {
			return serverMsg{}, false, nil
		}
		c.pos = position{p.Epoch, p.Offset}
	}
	var ev serverMsg
	if err := json.Unmarshal(p.Data, &ev); err != nil {
		return serverMsg{}, false, fmt.Errorf("publication data %.200s: %v", p.Data, err)
	}
	ev.Topic, ev.Epoch, ev.Offset = p.Topic, p.Epoch, p.Offset
	return ev, true, nil
}

// expect reads the next message and checks its type.
func (c *client) expect(typ string) serverMsg {
	c.t.Helper()
	m, _ := c.expectRaw(typ)
	return m
}

func (c *client) expectRaw(typ string) (serverMsg, []byte) {
	c.t.Helper()
	m, raw, err := c.readRaw()
	if err != nil {
		c.t.Fatalf("%s: reading a %q message: %v", c.nick, typ, err)
	}
	if m.Type != typ {
		c.t.Fatalf("%s: got %+v, want a %q message", c.nick, m, typ)
	}
	return m, raw
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

// A join shows the room's recent events: up to -history of them, the
// newest, oldest first, the member's own join last.
func TestHistoryOnJoin(t *testing.T) {
	addr := startChat(t, func(o *options) { o.history = 4 })
	alice, h := join(t, addr, "history", "alice")
	if len(h.Events) != 1 || h.Members != 1 || strings.Join(h.Nicks, ",") != "alice" {
		t.Fatalf("first member's hello: %+v", h)
	}
	texts := []string{"one", "two", "three", "four", "five"}
	for _, s := range texts {
		alice.say(s)
		alice.expectMsg("alice", s)
	}

	bob, h := join(t, addr, "history", "bob")
	if h.Members != 2 || strings.Join(h.Nicks, ",") != "alice,bob" {
		t.Fatalf("hello members %d %v, want 2 [alice bob]", h.Members, h.Nicks)
	}
	// The last 4 events: three of alice's messages and bob's join.
	if len(h.Events) != 4 || h.Events[3].Type != "join" || h.Events[3].Nick != "bob" || h.Events[3].Members != 2 {
		t.Fatalf("recovered %+v, want the last 3 messages and bob's join", h.Events)
	}
	for i, m := range h.Events[:3] {
		if m.Type != "msg" || m.Nick != "alice" || m.Text != texts[2+i] || m.Room != "history" || m.TS == 0 {
			t.Fatalf("history[%d] = %+v, want alice's %q", i, m, texts[2+i])
		}
	}
	for i := 1; i < len(h.Events); i++ {
		if h.Events[i].Offset != h.Events[i-1].Offset+1 || h.Events[i].Epoch != h.Events[0].Epoch {
			t.Fatalf("history positions not consecutive: %+v", h.Events)
		}
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
	// 10 at once, 10 per second, on a clock that stands still: however
	// slowly a busy machine runs the test, no token comes back during it.
	clock := newFakeClock()
	addr := startChat(t, func(o *options) { o.clock = clock.Now })
	alice, _ := join(t, addr, "rate", "alice")
	bob, _ := join(t, addr, "rate", "bob")
	alice.expect("join")

	// A burst within the budget goes through: 9 messages, as the
	// subscribe took one.
	for i := 0; i < 9; i++ {
		alice.say("burst")
	}
	for i := 0; i < 9; i++ {
		bob.expectMsg("alice", "burst")
	}
	// A flood does not: bob sees none of it, then alice leaves.
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
	if flood != 0 {
		t.Fatalf("%d flood messages got through, want none: the burst spent every token", flood)
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
	for _, f := range []string{"app.js", "style.css", "herald-client.js"} {
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

// preload publishes n messages with text to the room, as a member would,
// without a connection or its rate limit. It returns the room.
func preload(t *testing.T, ch *chat, roomName, text string, n int) *room {
	t.Helper()
	r, err := ch.room(roomName)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		body := marshal(event{Type: "msg", Room: roomName, Nick: "filler", Text: text, TS: nowMillis()})
		r.mu.Lock()
		ch.publishBodyLocked(r, body)
		r.mu.Unlock()
	}
	return r
}

// charged is what the history quota takes for a subscribed reply and a
// hello as sent: the contents of the reply's "pubs" and the hello's
// "nicks" arrays.
func charged(t *testing.T, reply, hello []byte) int {
	t.Helper()
	var r struct {
		Pubs json.RawMessage `json:"pubs"`
	}
	var h struct {
		Nicks json.RawMessage `json:"nicks"`
	}
	if err := json.Unmarshal(reply, &r); err != nil {
		t.Fatalf("reply %.200s: %v", reply, err)
	}
	if err := json.Unmarshal(hello, &h); err != nil {
		t.Fatalf("hello %.200s: %v", hello, err)
	}
	return max(len(r.Pubs)-2, 0) + len(h.Nicks) - 2
}

// joinRaw connects, reads the hello and subscribes from its "since"; it
// returns the reply, recovered or not, and both as sent.
func joinRaw(t *testing.T, addr, room, nick string) (c *client, rep serverMsg, rawReply, rawHello []byte) {
	t.Helper()
	c = connect(t, addr, room, nick)
	h, rawHello := c.expectRaw("hello")
	c.sendRaw(marshal(map[string]any{"type": "subscribe", "topic": h.Topic, "since": h.Since}))
	rep, rawReply = c.expectRaw("subscribed")
	return c, rep, rawReply, rawHello
}

// The reconnect this example is for: a member whose connection dies
// silently (the server does not notice) comes back with the same nick and
// seat key, takes the place of its dead connection without the room seeing
// it leave or join, and recovers every event of the gap once, in order.
func TestReconnectRecoversGap(t *testing.T) {
	addr := startChat(t, nil)
	const seat = "0123456789abcdef-_SEAT"
	aliceURL := wsURL(addr, "gap", "alice") + "&key=" + seat
	alice, _ := joinURL(t, aliceURL, "gap", "alice")
	bob, _ := join(t, addr, "gap", "bob")
	alice.expect("join") // bob's
	last := alice.pos

	// Alice's link dies: she reads nothing more. Bob talks meanwhile.
	var gap []string
	// Six: with the subscribe and what bob sends below, within his burst.
	for i := 0; i < 6; i++ {
		text := "while alice is away " + strconv.Itoa(i)
		gap = append(gap, text)
		bob.say(text)
		bob.expectMsg("bob", text)
	}

	// Someone else cannot take alice's nick, with or without a key.
	for _, u := range []string{wsURL(addr, "gap", "Alice"), wsURL(addr, "gap", "alice") + "&key=another-key-of-16"} {
		c := connectURL(t, u, "mallory")
		c.expectClose(ws.StatusPolicyViolation, "nick taken")
	}
	// A bad key is refused before the upgrade.
	if _, _, err := dialRaw(wsURL(addr, "gap", "alice")+"&key=short", nil); !errors.Is(err, ws.StatusError(http.StatusBadRequest)) {
		t.Fatalf("short key: %v, want 400", err)
	}

	// Alice comes back with her seat key: her dead connection is closed
	// with 4501 (not to reconnect), and she recovers the gap.
	back := connectURL(t, aliceURL, "alice")
	h := back.expect("hello")
	if h.Members != 2 || strings.Join(h.Nicks, ",") != "alice,bob" {
		t.Fatalf("hello after the takeover: %+v", h)
	}
	alice.expectClose(ws.StatusCode(closeReplaced), "replaced")
	rep := back.subscribe(h.Topic, &last)
	if rep.Recovered == nil || !*rep.Recovered {
		t.Fatalf("resubscribe from %+v: %+v, want recovered", last, rep)
	}
	var got []string
	for _, e := range rep.Events {
		if e.Type != "msg" || e.Nick != "bob" {
			t.Fatalf("recovered %+v: only bob's messages happened in the gap", e)
		}
		got = append(got, e.Text)
	}
	if strings.Join(got, "|") != strings.Join(gap, "|") {
		t.Fatalf("recovered %q, want %q: every message of the gap once, in order", got, gap)
	}

	// Live again, exactly once; bob saw no leave or join of alice's.
	bob.say("welcome back")
	back.expectMsg("bob", "welcome back")
	bob.expectMsg("bob", "welcome back")
	back.say("thanks")
	bob.expectMsg("alice", "thanks")
	back.expectMsg("alice", "thanks")
	if r := roomMembers(t, addr); r["gap"] != 2 {
		t.Fatalf("room gap has %d members, want 2", r["gap"])
	}

	// A connection that closes leaves, and its return is a join: the
	// recovery carries both, in order.
	last = back.pos
	back.leave()
	if l := bob.expect("leave"); l.Nick != "alice" || l.Members != 1 {
		t.Fatalf("bob got %+v, want alice's leave", l)
	}
	bob.say("gone")
	bob.expectMsg("bob", "gone")
	again := connectURL(t, aliceURL, "alice")
	h = again.expect("hello")
	rep = again.subscribe(h.Topic, &last)
	var kinds []string
	for _, e := range rep.Events {
		kinds = append(kinds, e.Type+":"+e.Nick)
	}
	if rep.Recovered == nil || !*rep.Recovered || strings.Join(kinds, ",") != "leave:alice,msg:bob,join:alice" {
		t.Fatalf("recovered %v (%v), want alice's leave, bob's message, alice's join", kinds, rep.Recovered)
	}

	// A connection subscribes to its own room only.
	again.sendRaw([]byte(`{"type":"subscribe","id":7,"topic":"room.other"}`))
	if e := again.expect("error"); e.Code != "forbidden" {
		t.Fatalf("subscribe to another room: %+v, want forbidden", e)
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
	epoch := strings.Repeat("e", resume.MaxEpoch)
	biggest := 0
	for tn, text := range texts {
		for nn, nick := range nicks {
			if !validNick(nick) {
				t.Fatalf("nick %s is refused: the case is not a worst case", nn)
			}
			ev := marshal(event{Type: "leave", Room: room, Nick: nick, Text: text, TS: math.MinInt64, Members: math.MinInt})
			biggest = max(biggest, len(ev))
			if len(ev) > maxEventBytes {
				t.Errorf("text %s, nick %s: event of %d bytes, over maxEventBytes %d", tn, nn, len(ev), maxEventBytes)
			}
			pub := resume.Envelope(nil, &broadcast.Message{Topic: topicPrefix + room, Type: engine.TextMessage, Data: ev},
				broadcast.Position{Epoch: epoch, Offset: resume.MaxID})
			if len(pub) > maxPubBytes {
				t.Errorf("text %s, nick %s: publication of %d bytes, over maxPubBytes %d", tn, nn, len(pub), maxPubBytes)
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
	list := make([][]byte, maxNicksSent)
	for i := range list {
		list[i] = marshal(nicks["emoji"])
	}
	if n := len(appendArray(nil, list)); n > maxNickListBytes {
		t.Errorf("nick list of %d bytes, over maxNickListBytes %d", n, maxNickListBytes)
	}
	if n := len(encodeHello(room, topicPrefix+room, math.MaxInt, nil, &broadcast.Position{Epoch: epoch, Offset: math.MaxUint64})) - 2; n > helloFixedBytes {
		t.Errorf("hello without its nicks is %d bytes, over helloFixedBytes %d", n, helloFixedBytes)
	}
	// The largest recovery, behind its frame header, is within a
	// connection's outbound bound.
	if n := 256 + maxHistory*(maxPubBytes+1) + 16; n > maxReplyBytes || maxReplyBytes > engine.DefaultMaxOutboundBytes {
		t.Errorf("the largest recovery takes %d bytes, over %d", n, maxReplyBytes)
	}
	// The package documentation, the flags' help and README quote these.
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"maxEventBytes", maxEventBytes, 12258},
		{"maxPubBytes", maxPubBytes, 12514},
		{"maxHistory", maxHistory, 329},
		{"maxNickListBytes", maxNickListBytes, 19802},
		{"helloFixedBytes", helloFixedBytes, 320},
	} {
		if c.got != c.want {
			t.Errorf("%s is %d, the documentation says %d: update both", c.name, c.got, c.want)
		}
	}
}

func TestOptionsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		tune func(*options)
		want string // the flag the error names
	}{
		{"negative history", func(o *options) { o.history = -1 }, "-history "},
		{"history over a connection's bound", func(o *options) { o.history, o.historyRate = maxHistory+1, 8<<20 }, "-history "},
		{"history rate below a whole recovery", func(o *options) { o.historyRate = o.history * (maxPubBytes + 1) }, "-history-rate"},
		{"history rate without room for the nicks", func(o *options) { o.historyRate = o.history*(maxPubBytes+1) + maxNickListBytes - 1 }, "-history-rate"},
		{"no history, no room for the nicks", func(o *options) { o.history, o.historyRate = 0, maxNickListBytes-1 }, "-history-rate"},
		{"history memory below one room's history", func(o *options) { o.historyMemory = int64(o.history*pubCost(maxEventBytes)) - 1 }, "-history-memory"},
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
}

// Without history, rooms still work: events reach the members live, and a
// subscribe recovers nothing.
func TestNoHistory(t *testing.T) {
	addr := startChat(t, func(o *options) { o.history, o.historyRate = 0, maxNickListBytes })
	alice := connect(t, addr, "plain", "alice")
	h := alice.expect("hello")
	if h.Since != nil {
		t.Fatalf("hello without history: %+v, want no since", h)
	}
	if rep := alice.subscribe(h.Topic, nil); rep.Recovered != nil || rep.Epoch != "" {
		t.Fatalf("subscribed %+v, want no position", rep)
	}
	bob := connect(t, addr, "plain", "bob")
	bob.subscribe(bob.expect("hello").Topic, nil)
	if j := alice.expect("join"); j.Nick != "bob" {
		t.Fatalf("alice got %+v, want bob's join", j)
	}
	bob.say("no history here")
	alice.expectMsg("bob", "no history here")
}

// The server sends at most -history-rate bytes of history per second of its
// clock, in total, whatever joins: a recovery that finds the quota short is
// refused whole (recovered: false), and the member goes on live.
func TestRecoveryRate(t *testing.T) {
	const history = 50
	clock := newFakeClock()
	rate := history*(maxPubBytes+1) + maxNickListBytes // one whole recovery of the largest events
	ch := startServer(t, func(o *options) {
		o.history = history
		o.historyRate = rate
		o.clock = clock.Now
		o.held = func() int64 { return 0 }
	})
	addr := ch.srv.Addr().String()
	preload(t, ch, "busy", strings.Repeat("\x01", maxTextBytes), history)

	joins := 0
	avail := rate
	for _, step := range []struct {
		name    string
		advance time.Duration // on the clock before the step's joins
		want    []bool        // each join's recovered
	}{
		{"a burst: one whole recovery", 0, []bool{true, false, false}},
		{"a second later, one more", time.Second, []bool{true, false}},
		{"no time, none", 0, []bool{false}},
		{"half a second: not enough", time.Second / 2, []bool{false}},
		{"another half: enough again", time.Second / 2, []bool{true}},
		{"an idle minute still holds one second's worth", time.Minute, []bool{true, false}},
	} {
		clock.Advance(step.advance)
		avail = min(rate, avail+int(step.advance.Seconds()*float64(rate)))
		before := ch.historySent.Load()
		took := 0
		for i, want := range step.want {
			joins++
			c, rep, rawReply, rawHello := joinRaw(t, addr, "busy", "j"+strconv.Itoa(joins))
			t.Cleanup(c.leave)
			if rep.Recovered == nil || *rep.Recovered != want {
				t.Fatalf("%s: join %d recovered %v, want %v", step.name, i+1, rep.Recovered, want)
			}
			if want && len(rep.Events) != history {
				t.Fatalf("%s: join %d recovered %d events, want %d", step.name, i+1, len(rep.Events), history)
			}
			took += charged(t, rawReply, rawHello)
		}
		if took > avail {
			t.Fatalf("%s: joins took %d history bytes, over the %d available", step.name, took, avail)
		}
		if got := ch.historySent.Load() - before; got != int64(took) {
			t.Fatalf("%s: the server counted %d history bytes, the clients got %d", step.name, got, took)
		}
		t.Logf("%s: %d joins took %d of %d bytes", step.name, len(step.want), took, avail)
		avail -= took
	}
	if n := ch.recoveriesRefused.Load(); n != 6 {
		t.Fatalf("%d recoveries refused, want 6", n)
	}
}

// While the server holds more than -history-backlog unread bytes, a join
// recovers nothing and its hello lists no nicknames; once below, the
// whole again.
func TestRecoveryWithheldWhileBacklogged(t *testing.T) {
	var held atomic.Int64
	ch := startServer(t, func(o *options) { o.held = held.Load })
	addr := ch.srv.Addr().String()
	preload(t, ch, "backlog", "hello", 5)
	for i, tc := range []struct {
		held int64
		want bool
	}{
		{0, true},
		{defaultOptions().historyBacklog, true},
		{defaultOptions().historyBacklog + 1, false},
		{0, true},
	} {
		held.Store(tc.held)
		c := connect(t, addr, "backlog", "j"+strconv.Itoa(i))
		h := c.expect("hello")
		rep := c.subscribe(h.Topic, h.Since)
		c.leave()
		if rep.Recovered == nil || *rep.Recovered != tc.want || tc.want && len(messages(rep.Events)) != 5 {
			t.Fatalf("held %d: recovered %v with %d messages; want %v", tc.held, rep.Recovered, len(messages(rep.Events)), tc.want)
		}
		if !tc.want && len(h.Nicks) != 0 {
			t.Fatalf("held %d: nicks %v, want none", tc.held, h.Nicks)
		}
	}
}

// dialSmallWindow connects as nick to room with a small receive buffer, as a
// client that never reads would look to the server after its first packets,
// reads the hello and asks for the whole history, then reads nothing more.
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
	conn, br, _, err := d.Dial(context.Background(), wsURL(addr, room, nick))
	if err != nil {
		return nil, err
	}
	var rd io.Reader = conn
	if br != nil {
		rd = io.MultiReader(br, conn)
	}
	_ = conn.SetReadDeadline(time.Now().Add(hangGuard))
	for {
		data, _, err := wsutil.ReadServerData(struct {
			io.Reader
			io.Writer
		}{rd, conn})
		if err != nil {
			conn.Close()
			return nil, err
		}
		var h serverMsg
		if json.Unmarshal(data, &h) == nil && h.Type == "hello" {
			req := marshal(map[string]any{"type": "subscribe", "topic": h.Topic, "since": h.Since})
			if err := wsutil.WriteClientText(conn, req); err != nil {
				conn.Close()
				return nil, err
			}
			return conn, nil
		}
	}
}

// A burst of joiners that ask for a long history of escaping-heavy events
// and never read leaves the server holding a bounded amount, whichever of
// the two history bounds acts first: the quota (bytes sent per second of
// the clock, which stands still here) or the backlog (no recovery while
// the server holds more than -history-backlog). The recoveries are so
// large that the sockets' buffers cannot take them: what is not sent stays
// in the server's memory.
func TestJoinFloodStaysBounded(t *testing.T) {
	const (
		joiners = 100
		loops   = 2
		history = maxHistory
		backlog = 8 << 20
		// The 101, the welcome and hello, the subscribed reply without
		// its pubs, and the join notices of the joiners after it.
		perJoin = 1<<10 + joiners*160
		// One recovery being sent per loop as the backlog bound is
		// crossed.
		inFlight = loops * maxReplyBytes
		minRate  = history*(maxPubBytes+1) + maxNickListBytes
	)
	for _, tc := range []struct {
		name     string
		rate     int
		maxSent  int64 // history bytes sent at most (0: not bounded by the quota)
		maxHistH int64 // history bytes held at most
	}{
		{"quota", minRate, minRate, minRate},
		{"backlog", 1 << 40, 0, backlog + inFlight},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			ch := startServer(t, func(o *options) {
				o.loops = loops
				o.history = history
				o.historyRate = tc.rate
				o.historyBacklog = backlog
				o.clock = clock.Now
				// However slow the machine, the joiners stay: the
				// backlog bound is what limits the server, not
				// WriteTimeout closing them.
				o.writeTimeout = -1
			})
			addr := ch.srv.Addr().String()
			preload(t, ch, "flood", strings.Repeat("<", maxTextBytes), history)
			var held int64 // the most the server held at any look
			for i := 0; i < joiners; i++ {
				conn, err := dialSmallWindow(addr, "flood", "silent"+strconv.Itoa(i))
				if err != nil {
					t.Fatalf("joiner %d: %v", i, err)
				}
				t.Cleanup(func() { conn.Close() })
				held = max(held, ch.srv.Stats().OutboundBytes)
			}
			// Every joiner's subscribe taken, granted or refused.
			waitFor(t, func() bool { return ch.recoveriesAsked.Load() == joiners })
			held = max(held, ch.srv.Stats().OutboundBytes)
			sent := ch.historySent.Load()
			t.Logf("%d joiners asking for %d events each: %d history bytes sent (%d recoveries refused), at most %d bytes held; without the bounds about %d sent",
				joiners, history, sent, ch.recoveriesRefused.Load(), held, joiners*history*(2<<10))
			if tc.maxSent > 0 && sent > tc.maxSent {
				t.Fatalf("%d history bytes sent, over the quota of %d", sent, tc.maxSent)
			}
			if limit := tc.maxHistH + joiners*perJoin; held > limit {
				t.Fatalf("the server held %d unread bytes, over %d (%d of history, %d per join)", held, limit, tc.maxHistH, perJoin)
			}
		})
	}
}

// Once the flood is over, the quota refills and a member who reads
// recovers the whole history again.
func TestRecoveryAfterFlood(t *testing.T) {
	clock := newFakeClock()
	ch := startServer(t, func(o *options) {
		o.historyRate = o.history*(maxPubBytes+1) + maxNickListBytes
		o.clock = clock.Now
		o.held = func() int64 { return 0 }
	})
	addr := ch.srv.Addr().String()
	r := preload(t, ch, "refill", strings.Repeat("<", maxTextBytes), 200)
	for i := 0; i < 20; i++ {
		conn, err := dialSmallWindow(addr, "refill", "j"+strconv.Itoa(i))
		if err != nil {
			t.Fatalf("joiner %d: %v", i, err)
		}
		t.Cleanup(func() { conn.Close() })
	}
	// Every joiner's subscribe taken before the clock moves: one still on
	// its way would spend the refill meant for the reader below.
	waitFor(t, func() bool { return ch.recoveriesAsked.Load() == 20 })
	c, rep, _, _ := joinRaw(t, addr, "refill", "late")
	if rep.Recovered == nil || *rep.Recovered {
		t.Fatalf("quota spent by the flood, yet recovered %s", fmtRecovered(rep.Recovered))
	}
	c.leave()
	// Its leave in the history before the reader's hello: published
	// between the hello and the subscribe, it would push the hello's
	// position out of the history, and the reply would be recovered:
	// false for that reason instead of the quota's.
	waitFor(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.members["late"] == nil
	})
	clock.Advance(time.Second)
	c, rep, _, _ = joinRaw(t, addr, "refill", "reader")
	defer c.leave()
	if rep.Recovered == nil || !*rep.Recovered || len(rep.Events) != ch.opts.history {
		t.Fatalf("a second later: recovered %s with %d events; want the whole history of %d", fmtRecovered(rep.Recovered), len(rep.Events), ch.opts.history)
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
	if m := messages(h.Events); len(m) != 1 || m[0].Text != text {
		t.Fatalf("history: %+v, want alice's message", h.Events)
	}
	bob.leave()
}

// The rooms' histories together stay within -history-memory: past it, the
// history of a room without members goes first, then the largest room's;
// the others keep theirs, and the chat's count agrees with the hub's.
func TestHistoryMemoryBounded(t *testing.T) {
	const history = 20
	budget := int64(3 * history * pubCost(maxEventBytes)) // three rooms' worth of the largest events
	ch := startServer(t, func(o *options) {
		o.history = history
		o.historyMemory = budget
		o.held = func() int64 { return 0 }
		o.rate, o.burst = 1000, 1000 // the talkers' pace is not what this tests
	})
	addr := ch.srv.Addr().String()
	big := strings.Repeat("\x01", maxTextBytes)

	// A room whose members left, and a small one with a member.
	preload(t, ch, "deserted", big, history)
	quiet, _ := join(t, addr, "quiet", "qm")
	quiet.say("a short line")
	quiet.expectMsg("qm", "a short line")

	// Two busy rooms fill up with the largest messages, through members.
	var busy []*client
	for _, name := range []string{"busy-a", "busy-b", "busy-c"} {
		c, _ := join(t, addr, name, "talker")
		busy = append(busy, c)
	}
	clock := 0
	for i := 0; i < history; i++ {
		for _, c := range busy {
			c.say(big)
			c.expectMsg("talker", big)
			clock++
		}
		if held := ch.historyHeld.Load(); held > budget {
			t.Fatalf("after %d messages the histories hold %d bytes, over %d", clock, held, budget)
		}
	}
	t.Logf("%d histories forgotten; held %d of %d bytes (the hub counts %d)",
		ch.historyResets.Load(), ch.historyHeld.Load(), budget, ch.hub.Stats().HistoryBytes)
	if ch.historyResets.Load() == 0 {
		t.Fatal("no history forgotten, yet the rooms hold more than the budget")
	}
	if hub := ch.hub.Stats().HistoryBytes; hub > budget {
		t.Fatalf("the hub holds %d bytes of history, over %d", hub, budget)
	}
	// The deserted room went first: a join there recovers only its own join.
	_, h := join(t, addr, "deserted", "late")
	if len(messages(h.Events)) != 0 {
		t.Fatalf("the deserted room still has %d messages", len(messages(h.Events)))
	}
	// The small room kept its history.
	_, h = join(t, addr, "quiet", "late")
	if m := messages(h.Events); len(m) != 1 || m[0].Text != "a short line" {
		t.Fatalf("the quiet room's history: %+v", h.Events)
	}
}

// fmtRecovered shows a reply's recovered flag, which may be absent.
func fmtRecovered(r *bool) string {
	if r == nil {
		return "(absent)"
	}
	return strconv.FormatBool(*r)
}

// A fresh join in a busy room: once the history is full, an event
// published between the hello and the subscribe pushes the hello's
// position out of the history. The join still recovers the room's recent
// events, from where the kept history starts now, that event included.
func TestJoinRecoversWhenTheHistoryMovedAfterTheHello(t *testing.T) {
	const history = 4
	addr := startChat(t, func(o *options) { o.history = history })
	alice, _ := join(t, addr, "busy", "alice")
	for _, s := range []string{"one", "two", "three", "four", "five"} {
		alice.say(s)
		alice.expectMsg("alice", s)
	}
	bob := connect(t, addr, "busy", "bob")
	h := bob.expect("hello")
	alice.expect("join") // bob's: in the history before his hello
	alice.say("between the hello and the subscribe")
	alice.expectMsg("alice", "between the hello and the subscribe")

	bob.sendRaw(marshal(map[string]any{"type": "subscribe", "topic": h.Topic, "since": h.Since}))
	rep := bob.expect("subscribed")
	if rep.Recovered == nil || !*rep.Recovered {
		t.Fatalf("recovered %s, want true", fmtRecovered(rep.Recovered))
	}
	var got []string
	for _, e := range rep.Events {
		got = append(got, e.Type+":"+e.Text)
	}
	if want := "msg:four msg:five join: msg:between the hello and the subscribe"; strings.Join(got, " ") != want {
		t.Fatalf("recovered %q, want %q", got, want)
	}
}
