package main

import (
	"bytes"
	"cmp"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/upgrade"
)

//go:embed web
var webFiles embed.FS

// Limits of the protocol (see the package documentation).
const (
	maxRoomLen    = 32
	maxNickRunes  = 24
	maxTextBytes  = 2000
	maxFrameBytes = 16 << 10 // room for 2000 bytes of text however JSON escapes it
	maxNicksSent  = 200      // nicknames listed in a history message, at most
	topicPrefix   = "room."

	// maxEscape is the most bytes JSON needs for one byte of text: a
	// control character other than \n, \r and \t becomes \u00XX. (HTML
	// characters are not escaped, see marshal; U+2028 and U+2029 grow from
	// 3 bytes to 6.)
	maxEscape = 6
	// maxNickJSON bounds a nickname as sent, quotes included: a printable
	// rune is at most 4 bytes, and the only printable characters JSON
	// escapes, '"' and '\', grow from 1 byte to 2.
	maxNickJSON = maxNickRunes*utf8.UTFMax + 2
	// maxEventBytes bounds a "msg" event as sent: the text escaped at
	// worst, the nickname and room at their longest, and 128 bytes for the
	// field names and the two numbers (20 digits each at most). Every
	// history bound (-history-bytes, -history-rate) must leave room for
	// it, so that any message the server accepts fits in the history.
	maxEventBytes = 128 + maxRoomLen + maxNickJSON + maxTextBytes*maxEscape
	// minHistoryBytes is the smallest -history-bytes: the largest event in
	// its array's brackets.
	minHistoryBytes = maxEventBytes + 2
	// maxNickListBytes bounds the "nicks" array of a history message.
	maxNickListBytes = 2 + maxNicksSent*(maxNickJSON+1)
	// historyFixedBytes bounds a history message without its "nicks" and
	// "messages" arrays' contents: what any join gets, whatever the
	// history budget says.
	historyFixedBytes = 256
	// maxHistoryBytes is the largest -history-bytes: a history message is
	// sent behind the 101 in one go, and with its nick list it must stay
	// within a connection's outbound bound (engine MaxOutboundBytes, left
	// at its default), or the joiner would be closed as a slow consumer.
	maxHistoryBytes = engine.DefaultMaxOutboundBytes - 64<<10
)

// options are the server's settings; the command line sets them.
type options struct {
	addr             string
	history          int     // messages kept per room
	historyBytes     int     // bytes of "messages", as sent, per room
	historyRate      int     // history bytes per second, server-wide
	historyBacklog   int64   // no history while the server holds more unread bytes than this
	maxOutboundTotal int64   // unread bytes the server holds for all clients, at most
	rate             float64 // messages per second per connection, sustained
	burst            int     // messages per connection in a burst
	maxRooms         int     // rooms kept at most
	loops            int
	// compression negotiates permessage-deflate; events of
	// compressionMinSize bytes and more go out compressed.
	compression        bool
	compressionMinSize int

	// Test hooks, zero in the command: the clock of the rate limits, the
	// server's unread outbound bytes (engine Stats.OutboundBytes) and the
	// engine's WriteTimeout.
	clock        func() time.Time
	held         func() int64
	writeTimeout time.Duration
}

func defaultOptions() options {
	return options{
		addr:             "127.0.0.1:8081",
		history:          50,
		historyBytes:     64 << 10,
		historyRate:      1 << 20,
		historyBacklog:   8 << 20,
		maxOutboundTotal: 64 << 20,
		rate:             10,
		burst:            10,
		maxRooms:         1024,
	}
}

// check refuses settings that contradict each other, naming the flags.
func (o options) check() error {
	switch {
	case o.history < 0:
		return fmt.Errorf("-history must not be negative, not %d", o.history)
	case o.history > 0 && (o.historyBytes < minHistoryBytes || o.historyBytes > maxHistoryBytes):
		return fmt.Errorf("-history-bytes must be from %d, room for the largest message as sent (%d bytes of text, JSON-escaped), to %d, what a connection may be sent at once, not %d",
			minHistoryBytes, maxTextBytes, maxHistoryBytes, o.historyBytes)
	case o.historyRate < o.minHistoryRate():
		return fmt.Errorf("-history-rate must be at least %d, -history-bytes and the longest nick list (%d bytes): a whole history message must fit in one second's worth; not %d",
			o.minHistoryRate(), maxNickListBytes, o.historyRate)
	case o.maxOutboundTotal < engine.DefaultMaxOutboundBytes:
		return fmt.Errorf("-max-outbound-total must be at least %d (one connection's outbound bound), not %d",
			engine.DefaultMaxOutboundBytes, o.maxOutboundTotal)
	case o.historyBacklog < 1 || o.historyBacklog >= o.maxOutboundTotal:
		return fmt.Errorf("-history-backlog must be positive and below -max-outbound-total (%d), not %d",
			o.maxOutboundTotal, o.historyBacklog)
	case o.rate <= 0 || o.burst < 1:
		return fmt.Errorf("-rate must be positive and -burst at least 1, not %v and %d", o.rate, o.burst)
	case o.maxRooms < 1:
		return fmt.Errorf("-rooms must be at least 1, not %d", o.maxRooms)
	}
	return nil
}

// minHistoryRate is the smallest -history-rate: one second's worth must hold
// a room's whole history and the longest nick list.
func (o options) minHistoryRate() int {
	if o.history == 0 {
		return maxNickListBytes
	}
	return o.historyBytes + maxNickListBytes
}

// chat is the server: the engine handler, the hub that carries each room's
// traffic, and the rooms' memberships and histories.
//
// Handlers run on the event loops, so every lock below is held only for a
// few map operations and, to keep a room's events in one order for
// everybody, for the Publish that hands an event to the hub (which queues it
// to the loops and returns).
type chat struct {
	engine.BaseHandler
	opts  options
	srv   *engine.Server
	hub   *broadcast.Hub
	log   *slog.Logger
	now   func() time.Time // the rate limits' clock
	held  func() int64     // bytes the server holds that its clients have not read
	quota historyQuota

	// Counted for the tests: history bytes sent (what the quota charged)
	// and joins that got less than the room's whole history.
	historySent    atomic.Int64
	historyTrimmed atomic.Int64

	mu    sync.Mutex // guards rooms
	rooms map[string]*room
}

// room is one chat room: hub topic "room.<name>".
type room struct {
	name  string
	topic string

	mu      sync.Mutex         // guards the fields below
	members map[string]*member // by lower-cased nickname
	seq     uint64             // id of the room's latest event
	history history            // the latest "msg" events, as sent
	gone    bool               // forgotten by chat.rooms: join another
}

// member is a connection's session (Config.Authorize returns it): who it is,
// where, and its rate budget. After OnOpen only the connection's loop touches
// it, except that room.members points to it.
type member struct {
	roomName string
	nick     string
	key      string // lower-cased nick, unique in the room
	nickJSON []byte // nick as a JSON string, for history messages
	room     *room  // set once joined
	tokens   float64
	last     time.Time
}

func newChat(opts options, logger *slog.Logger) (*chat, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	ch := &chat{opts: opts, log: logger, now: opts.clock, rooms: make(map[string]*room)}
	if ch.now == nil {
		ch.now = time.Now
	}
	ch.quota.rate = float64(opts.historyRate)
	mux := http.NewServeMux()
	web, _ := fs.Sub(webFiles, "web")
	mux.Handle("GET /", http.FileServerFS(web))
	mux.HandleFunc("GET /rooms", ch.serveRooms)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	srv, err := engine.New(engine.Config{
		Addr:             opts.addr,
		Loops:            opts.loops,
		MaxMessageBytes:  maxFrameBytes,
		MaxOutboundTotal: opts.maxOutboundTotal,
		WriteTimeout:     opts.writeTimeout,
		Compression:      engine.Compression{Enabled: opts.compression, MinSize: opts.compressionMinSize},
		HTTPHandler:      mux,
		Authorize:        ch.authorize,
		Logger:           logger,
		// OriginPatterns stays empty: only pages from this server's own
		// origin may open a chat socket with the user's cookies.
	}, ch)
	if err != nil {
		return nil, err
	}
	ch.srv = srv
	ch.held = opts.held
	if ch.held == nil {
		ch.held = func() int64 { return srv.Stats().OutboundBytes }
	}
	if ch.hub, err = broadcast.New(srv, broadcast.Options{}); err != nil {
		return nil, err
	}
	return ch, nil
}

// authorize checks the path and the query before the upgrade: a bad room or
// nickname gets a 400 with the rule in its body. It returns the connection's
// session.
func (ch *chat) authorize(r *upgrade.Request) (any, error) {
	if r.Path != "/ws" {
		return nil, upgrade.Reject(http.StatusNotFound, "the chat socket is at /ws")
	}
	q := r.Query()
	roomName, nick := q.Get("room"), q.Get("nick")
	if !validRoom(roomName) {
		return nil, upgrade.Reject(http.StatusBadRequest, "room must be 1 to 32 characters a-z, 0-9 or -")
	}
	if !validNick(nick) {
		return nil, upgrade.Reject(http.StatusBadRequest, "nick must be 1 to 24 printable characters, no leading or trailing space")
	}
	return &member{roomName: roomName, nick: nick, key: strings.ToLower(nick), nickJSON: marshal(nick)}, nil
}

// validRoom reports whether name is 1 to 32 characters a-z, 0-9 or '-'.
func validRoom(name string) bool {
	if len(name) < 1 || len(name) > maxRoomLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if (b < 'a' || b > 'z') && (b < '0' || b > '9') && b != '-' {
			return false
		}
	}
	return true
}

// validNick reports whether nick is 1 to 24 printable characters (letters,
// marks, numbers, punctuation, symbols and ASCII space), without leading or
// trailing space.
func validNick(nick string) bool {
	if nick == "" || len(nick) > maxNickRunes*utf8.UTFMax || !utf8.ValidString(nick) {
		return false
	}
	if strings.TrimSpace(nick) != nick {
		return false
	}
	n := 0
	for _, r := range nick {
		if !unicode.IsPrint(r) {
			return false
		}
		n++
	}
	return n <= maxNickRunes
}

// OnOpen joins the room: the nickname must be free there. The new member
// gets the history, as much of it as the history quota allows, then
// everybody in the room (the new member included) gets the join notice.
func (ch *chat) OnOpen(c *engine.Conn) {
	m, _ := c.Session().(*member)
	if m == nil {
		_ = c.Close(engine.StatusInternalError, "no session")
		return
	}
	var r *room
	for {
		var err error
		if r, err = ch.room(m.roomName); err != nil {
			_ = c.Close(engine.StatusTryAgainLater, err.Error())
			return
		}
		r.mu.Lock()
		if !r.gone {
			break
		}
		r.mu.Unlock() // forgotten between the lookup and the lock: look again
	}
	if _, taken := r.members[m.key]; taken {
		r.mu.Unlock()
		_ = c.Close(engine.StatusPolicyViolation, "nick taken in this room")
		return
	}
	// Subscribing and copying the history under the same lock that orders
	// the room's events: each event is in the history, or delivered live, or
	// both (the history's id tells the client which live events to skip).
	if err := ch.hub.Subscribe(c, r.topic); err != nil {
		r.mu.Unlock()
		_ = c.Close(engine.StatusInternalError, "subscribe failed")
		return
	}
	r.members[m.key] = m
	m.room = r
	msgs := r.history.snapshot()
	count := len(r.members)
	others := make([]*member, 0, min(count, maxNicksSent))
	for _, other := range r.members {
		if len(others) == maxNicksSent {
			break
		}
		others = append(others, other)
	}
	lastID := r.seq
	ch.publishLocked(r, event{Type: "join", Room: r.name, Nick: m.nick, TS: nowMillis(), Members: count}, false)
	r.mu.Unlock()

	slices.SortFunc(others, func(a, b *member) int { return cmp.Compare(a.key, b.key) })
	nicks := make([][]byte, len(others))
	for i, other := range others {
		nicks[i] = other.nickJSON
	}
	sentMsgs, sentNicks := ch.grantHistory(msgs, nicks)
	_ = c.Send(engine.TextMessage, encodeHistory(r.name, lastID, count, len(msgs)-len(sentMsgs), sentNicks, sentMsgs))
}

// grantHistory decides how much of a history message a join gets: the
// newest messages, then the nicknames (alphabetically), as many as the
// history quota has bytes for, and nothing while the server already holds
// more than -history-backlog bytes that its clients have not read. It
// returns the messages and nicknames to send.
func (ch *chat) grantHistory(msgs, nicks [][]byte) (sentMsgs, sentNicks [][]byte) {
	if ch.held() > ch.opts.historyBacklog {
		if len(msgs) > 0 {
			ch.historyTrimmed.Add(1)
		}
		return nil, nil
	}
	used := ch.quota.spend(ch.now(), func(avail int) int {
		k, used := fitNewest(msgs, avail)
		sentMsgs = msgs[len(msgs)-k:]
		j, more := fitOldest(nicks, avail-used)
		sentNicks = nicks[:j]
		return used + more
	})
	ch.historySent.Add(int64(used))
	if len(sentMsgs) < len(msgs) {
		ch.historyTrimmed.Add(1)
	}
	return sentMsgs, sentNicks
}

// fitNewest returns how many of the newest items fit in avail bytes as the
// contents of a JSON array (commas between them), and their bytes.
func fitNewest(items [][]byte, avail int) (n, used int) {
	for i := len(items) - 1; i >= 0; i-- {
		cost := len(items[i]) + min(n, 1)
		if used+cost > avail {
			break
		}
		used += cost
		n++
	}
	return n, used
}

// fitOldest is fitNewest from the other end.
func fitOldest(items [][]byte, avail int) (n, used int) {
	for _, it := range items {
		cost := len(it) + min(n, 1)
		if used+cost > avail {
			break
		}
		used += cost
		n++
	}
	return n, used
}

// OnMessage takes one chat message: {"type":"msg","text":"..."}.
func (ch *chat) OnMessage(c *engine.Conn, typ engine.MessageType, data []byte) {
	m, _ := c.Session().(*member)
	if m == nil || m.room == nil {
		return
	}
	if typ != engine.TextMessage {
		_ = c.Close(engine.StatusUnsupportedData, "text messages only")
		return
	}
	if !m.allow(ch.now(), ch.opts.rate, float64(ch.opts.burst)) {
		_ = c.Close(engine.StatusPolicyViolation, "rate limit")
		return
	}
	var in struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(data, &in); err != nil || in.Type != "msg" {
		sendError(c, `send {"type":"msg","text":"..."}`)
		return
	}
	if len(in.Text) > maxTextBytes {
		sendError(c, fmt.Sprintf("message too long: %d bytes, the limit is %d", len(in.Text), maxTextBytes))
		return
	}
	if strings.TrimSpace(in.Text) == "" {
		sendError(c, "empty message")
		return
	}
	// Encode outside the lock; only the id is added under it.
	body := marshal(event{Type: "msg", Room: m.room.name, Nick: m.nick, Text: in.Text, TS: nowMillis()})
	r := m.room
	r.mu.Lock()
	ch.publishBodyLocked(r, body, true)
	r.mu.Unlock()
}

// OnClose leaves the room and tells the others.
func (ch *chat) OnClose(c *engine.Conn, _ error) {
	m, _ := c.Session().(*member)
	if m == nil || m.room == nil {
		return
	}
	r := m.room
	r.mu.Lock()
	if r.members[m.key] == m {
		delete(r.members, m.key)
	}
	ch.publishLocked(r, event{Type: "leave", Room: r.name, Nick: m.nick, TS: nowMillis(), Members: len(r.members)}, false)
	r.mu.Unlock()
}

// allow takes one message from the connection's token bucket.
func (m *member) allow(now time.Time, rate, burst float64) bool {
	if m.last.IsZero() {
		m.tokens = burst
	} else {
		m.tokens = min(burst, m.tokens+now.Sub(m.last).Seconds()*rate)
	}
	m.last = now
	if m.tokens < 1 {
		return false
	}
	m.tokens--
	return true
}

var errTooManyRooms = errors.New("too many rooms, try again later")

// room returns the room called name, creating it if needed. At the room
// limit it forgets an empty room (and its history) to make space.
func (ch *chat) room(name string) (*room, error) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if r := ch.rooms[name]; r != nil {
		return r, nil
	}
	if len(ch.rooms) >= ch.opts.maxRooms && !ch.forgetEmptyLocked() {
		return nil, errTooManyRooms
	}
	r := &room{name: name, topic: topicPrefix + name, members: make(map[string]*member)}
	ch.rooms[name] = r
	return r, nil
}

// forgetEmptyLocked drops one room without members. ch.mu must be held.
func (ch *chat) forgetEmptyLocked() bool {
	for name, r := range ch.rooms {
		r.mu.Lock()
		empty := len(r.members) == 0
		if empty {
			r.gone = true
		}
		r.mu.Unlock()
		if empty {
			delete(ch.rooms, name)
			return true
		}
	}
	return false
}

// history holds a room's latest "msg" events as sent, oldest first, within
// two bounds: at most maxEvents events, and at most maxBytes bytes for the
// JSON array that lists them (brackets and commas included). Adding an
// event drops the oldest ones until it fits. The room's lock guards it.
type history struct {
	events [][]byte
	size   int // bytes of the events and the commas between them
}

// add appends ev, dropping the oldest events as the bounds require. An event
// that could never fit is not kept (option checks make that impossible:
// -history-bytes is at least minHistoryBytes); the history is then unchanged.
func (h *history) add(ev []byte, maxEvents, maxBytes int) {
	if maxEvents < 1 || 2+len(ev) > maxBytes {
		return
	}
	for len(h.events) > 0 && (len(h.events) >= maxEvents || 2+h.size+1+len(ev) > maxBytes) {
		h.size -= len(h.events[0]) + min(len(h.events)-1, 1)
		// Cleared so that the dropped event is garbage now, not when
		// append next moves the slice.
		h.events[0] = nil
		h.events = h.events[1:]
	}
	if len(h.events) > 0 {
		h.size++
	}
	h.size += len(ev)
	h.events = append(h.events, ev)
}

// bytes returns the size of the JSON array that lists the events.
func (h *history) bytes() int { return 2 + h.size }

// snapshot returns the events, oldest first. The events themselves are never
// modified, so sharing them is safe; the slice is a copy because add
// clears the entries it drops.
func (h *history) snapshot() [][]byte { return slices.Clone(h.events) }

// historyQuota is the server-wide budget of history bytes: a token bucket
// that refills at rate bytes per second and holds at most one second's worth.
// Every history message takes from it what its "messages" and "nicks"
// arrays hold, so a flood of joins makes the server emit at most rate bytes
// of history per second (plus the one-second burst), however large the
// rooms' histories are.
type historyQuota struct {
	mu     sync.Mutex
	rate   float64 // bytes per second, and the bucket's capacity
	tokens float64
	last   time.Time
}

// spend refills the bucket as of now and lets pick choose what to send
// within the whole bytes available; what pick returns is taken from the
// bucket and returned. pick runs under the bucket's lock: it must be quick.
func (q *historyQuota) spend(now time.Time, pick func(avail int) int) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.last.IsZero() {
		q.tokens = q.rate
	} else if elapsed := now.Sub(q.last); elapsed > 0 {
		q.tokens = min(q.rate, q.tokens+elapsed.Seconds()*q.rate)
	}
	if now.After(q.last) {
		q.last = now // a clock that steps back does not refill twice
	}
	used := max(pick(int(q.tokens)), 0)
	q.tokens -= float64(used)
	return used
}

// event is what the server sends about a room. Fields a type does not use
// are left out.
type event struct {
	Type    string `json:"type"`
	Room    string `json:"room"`
	Nick    string `json:"nick,omitempty"`
	Text    string `json:"text,omitempty"`
	TS      int64  `json:"ts"`                // Unix milliseconds
	Members int    `json:"members,omitempty"` // members after a join or leave
}

// publishLocked publishes ev with the room's next id. r.mu must be held.
func (ch *chat) publishLocked(r *room, ev event, keep bool) {
	ch.publishBodyLocked(r, marshal(ev), keep)
}

// publishBodyLocked gives an encoded event (a JSON object without "id") the
// room's next id, publishes it to the room's topic and, if keep, adds it to
// the history. r.mu must be held: ids, history and publish order agree.
func (ch *chat) publishBodyLocked(r *room, body []byte, keep bool) {
	r.seq++
	msg := withID(r.seq, body)
	if keep {
		r.history.add(msg, ch.opts.history, ch.opts.historyBytes)
	}
	if err := ch.hub.Publish(r.topic, engine.TextMessage, msg); err != nil && !errors.Is(err, engine.ErrClosed) {
		ch.log.Warn("publish", "room", r.name, "err", err)
	}
}

// withID returns the encoded event body (a JSON object without "id") with
// "id" first.
func withID(id uint64, body []byte) []byte {
	msg := make([]byte, 0, len(body)+28)
	msg = append(msg, `{"id":`...)
	msg = strconv.AppendUint(msg, id, 10)
	msg = append(msg, ',')
	return append(msg, body[1:]...)
}

// encodeHistory builds the message a member gets on joining:
// {"type":"history","room":..,"id":..,"members":..,"omitted":..,"nicks":[..],"messages":[..]}
// where id is the room's latest event included (live events up to it are
// repeats), omitted counts the older messages of the history left out (only
// when there are some), nicks are JSON strings and messages are "msg"
// events, oldest first. Everything but the two arrays' contents is at most
// historyFixedBytes.
func encodeHistory(roomName string, lastID uint64, members, omitted int, nicks, msgs [][]byte) []byte {
	n := historyFixedBytes
	for _, m := range msgs {
		n += len(m) + 1
	}
	for _, s := range nicks {
		n += len(s) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, `{"type":"history","room":`...)
	b = strconv.AppendQuote(b, roomName) // room names are [a-z0-9-]
	b = append(b, `,"id":`...)
	b = strconv.AppendUint(b, lastID, 10)
	b = append(b, `,"members":`...)
	b = strconv.AppendInt(b, int64(members), 10)
	if omitted > 0 {
		b = append(b, `,"omitted":`...)
		b = strconv.AppendInt(b, int64(omitted), 10)
	}
	b = append(b, `,"nicks":`...)
	b = appendArray(b, nicks)
	b = append(b, `,"messages":`...)
	b = appendArray(b, msgs)
	return append(b, '}')
}

// appendArray appends a JSON array of already encoded values.
func appendArray(b []byte, items [][]byte) []byte {
	b = append(b, '[')
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, it...)
	}
	return append(b, ']')
}

// sendError tells the connection what was wrong with its last message.
func sendError(c *engine.Conn, text string) {
	_ = c.Send(engine.TextMessage, marshal(struct {
		Type  string `json:"type"`
		Error string `json:"error"`
	}{"error", text}))
}

// marshal encodes v as compact JSON without HTML escaping: '<', '>' and '&'
// cost one byte each instead of six ("\u003c"). That is safe because the
// page puts every server string into the document with textContent, never as
// markup, and JSON over a WebSocket is never parsed as HTML.
func marshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err) // only strings, numbers and slices of them
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func nowMillis() int64 { return time.Now().UnixMilli() }

// serveRooms lists the rooms that have members, busiest first (at most 50):
// [{"name":"lobby","members":3}].
func (ch *chat) serveRooms(w http.ResponseWriter, _ *http.Request) {
	type roomInfo struct {
		Name    string `json:"name"`
		Members int    `json:"members"`
	}
	list := []roomInfo{}
	ch.mu.Lock()
	for _, r := range ch.rooms {
		r.mu.Lock()
		n := len(r.members)
		r.mu.Unlock()
		if n > 0 {
			list = append(list, roomInfo{r.name, n})
		}
	}
	ch.mu.Unlock()
	slices.SortFunc(list, func(a, b roomInfo) int {
		return cmp.Or(cmp.Compare(b.Members, a.Members), cmp.Compare(a.Name, b.Name))
	})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(list[:min(len(list), 50)])
}
