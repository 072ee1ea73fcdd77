package main

import (
	"bytes"
	"cmp"
	"crypto/subtle"
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
	heraldjs "github.com/heraldws/herald/clients/js"
	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/resume"
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
	maxNicksSent  = 200      // nicknames listed in a hello message, at most
	topicPrefix   = "room."
	minSeatKey    = 16 // a seat key's length, in bytes of [A-Za-z0-9_-]
	maxSeatKey    = 64

	// maxEscape is the most bytes JSON needs for one byte of text: a
	// control character other than \n, \r and \t becomes \u00XX. (HTML
	// characters are not escaped, see marshal; U+2028 and U+2029 grow from
	// 3 bytes to 6.)
	maxEscape = 6
	// maxNickJSON bounds a nickname as sent, quotes included: a printable
	// rune is at most 4 bytes, and the only printable characters JSON
	// escapes, '"' and '\', grow from 1 byte to 2.
	maxNickJSON = maxNickRunes*utf8.UTFMax + 2
	// maxEventBytes bounds a room event as sent: the text escaped at
	// worst, the nickname and room at their longest, and 128 bytes for the
	// field names and the numbers.
	maxEventBytes = 128 + maxRoomLen + maxNickJSON + maxTextBytes*maxEscape
	// maxPubBytes bounds an event in its publication envelope
	// ({"type":"pub","topic":…,"epoch":…,"offset":…,"data":<event>}): 256
	// bytes around it hold the topic, an epoch of resume.MaxEpoch bytes and
	// an offset of 20 digits.
	maxPubBytes = maxEventBytes + 256
	// maxNickListBytes bounds the "nicks" array of a hello message.
	maxNickListBytes = 2 + maxNicksSent*(maxNickJSON+1)
	// maxReplyBytes is what a connection may be sent at once: a recovery
	// reply goes out in one message, and must stay within a connection's
	// outbound bound (engine MaxOutboundBytes, left at its default), or
	// the member would be closed as a slow consumer.
	maxReplyBytes = engine.DefaultMaxOutboundBytes - 64<<10
	// maxHistory is the largest -history: a reply that recovers all of it
	// (256 bytes of its own, and the publications with commas) fits in
	// maxReplyBytes.
	maxHistory = (maxReplyBytes - 256) / (maxPubBytes + 1)
)

// options are the server's settings; the command line sets them.
type options struct {
	addr             string
	history          int     // events kept per room, and recovered at most
	historyRate      int     // recovered bytes per second, server-wide
	historyBacklog   int64   // no recovery while the server holds more unread bytes than this
	historyMemory    int64   // bytes all rooms' histories hold, at most (as counted by pubCost)
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
		history:          100,
		historyRate:      2 << 20,
		historyBacklog:   8 << 20,
		historyMemory:    64 << 20,
		maxOutboundTotal: 64 << 20,
		rate:             10,
		burst:            10,
		maxRooms:         1024,
	}
}

// check refuses settings that contradict each other, naming the flags.
func (o options) check() error {
	switch {
	case o.history < 0 || o.history > maxHistory:
		return fmt.Errorf("-history must be from 0 to %d (a recovery of that many of the largest events is what a connection may be sent at once), not %d",
			maxHistory, o.history)
	case o.historyRate < o.minHistoryRate():
		return fmt.Errorf("-history-rate must be at least %d, a whole recovery of -history of the largest events and the longest nick list (%d bytes): it must fit in one second's worth; not %d",
			o.minHistoryRate(), maxNickListBytes, o.historyRate)
	case o.history > 0 && o.historyMemory < int64(o.history*pubCost(maxEventBytes)):
		return fmt.Errorf("-history-memory must be at least %d, one room's whole history of the largest events, not %d",
			o.history*pubCost(maxEventBytes), o.historyMemory)
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

// pubCost is what an event of n bytes counts against -history-memory: its
// publication envelope at the most (see maxPubBytes).
func pubCost(n int) int { return n + maxPubBytes - maxEventBytes }

// minHistoryRate is the smallest -history-rate: one second's worth must hold
// a whole recovery of the largest events and the longest nick list.
func (o options) minHistoryRate() int {
	return o.history*(maxPubBytes+1) + maxNickListBytes
}

// closeReplaced closes a member's connection when a newer one of the same
// seat (nickname and seat key) joins: an application code that tells the
// client not to reconnect, so that two tabs sharing a seat do not take it
// from each other in turn.
const closeReplaced engine.StatusCode = 4501

// chat is the server: the engine handler, the hub that carries each room's
// traffic, the subscribe protocol that recovers it, and the rooms'
// memberships.
//
// Each room is a hub topic with a history (resume.Server.Topics): every
// event gets a position, and a member's page subscribes to its room from
// the start of the kept history when it joins, and from the last event it
// saw when it reconnects, so it shows the room's recent events, and after
// a lost connection exactly the ones it missed, once each, in order.
//
// Handlers run on the event loops, so every lock below is held only for a
// few map operations and, to keep a room's events and its membership in one
// order, for the Publish that hands an event to the hub (which queues it to
// the loops and returns).
type chat struct {
	opts  options
	srv   *engine.Server
	hub   *broadcast.Hub
	rs    *resume.Server
	log   *slog.Logger
	now   func() time.Time // the rate limits' clock
	held  func() int64     // bytes the server holds that its clients have not read
	quota historyQuota

	// Counted for the tests: bytes of recoveries and nick lists granted
	// (what the quota charged), and recoveries refused by the quota or
	// the backlog bound.
	historySent       atomic.Int64
	historyResets     atomic.Int64 // room histories forgotten for -history-memory
	historyHeld       atomic.Int64 // bytes the rooms' histories hold (pubCost of their events)
	recoveriesRefused atomic.Int64
	recoveriesAsked   atomic.Int64 // subscribes with a position in the member's room, once granted or refused

	mu    sync.Mutex // guards rooms
	rooms map[string]*room
}

// room is one chat room: hub topic "room.<name>".
type room struct {
	name  string
	topic string

	mu      sync.Mutex         // guards the fields below
	members map[string]*member // by lower-cased nickname
	gone    bool               // forgotten by chat.rooms: join another
	kept    window             // the sizes of the events the room's history keeps
}

// window mirrors what a room's history holds: the pubCost of its newest
// events, at most -history of them, as the hub keeps them (the chat is the
// only publisher on a room's topic, under the room's lock).
type window struct {
	sizes []int32 // a ring
	head  int
	n     int
	bytes int64
}

// add records an event of cost bytes and returns the change in bytes held:
// the oldest one goes when the window is full, as in the hub.
func (w *window) add(cost, max int) int64 {
	if max < 1 {
		return 0
	}
	if w.sizes == nil {
		w.sizes = make([]int32, max)
	}
	delta := int64(cost)
	if w.n == max {
		delta -= int64(w.sizes[w.head])
		w.sizes[w.head] = int32(cost)
		w.head = (w.head + 1) % max
	} else {
		w.sizes[(w.head+w.n)%max] = int32(cost)
		w.n++
	}
	w.bytes += delta
	return delta
}

// reset empties the window and returns the bytes it held.
func (w *window) reset() int64 {
	b := w.bytes
	*w = window{}
	return b
}

// member is a connection's session (Config.Authorize returns it): who it is,
// where, and its rate budget. After OnOpen only the connection's loop touches
// it, except that room.members points to it.
type member struct {
	roomName string
	nick     string
	key      string // lower-cased nick, unique in the room
	seat     string // the seat key a reconnect proves itself with; "" for none
	nickJSON []byte // nick as a JSON string, for hello messages
	conn     *engine.Conn
	room     *room // set once joined
	// helloSince is the position the hello offered (where the room's kept
	// history started then), until the member's first subscribe.
	helloSince *broadcast.Position
	tokens     float64
	last       time.Time
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
	mux.Handle("GET /herald-client.js", heraldjs.Handler())
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
	ch.rs = resume.New(ch.hub, resume.Options{
		Authorize:        ch.authorizeTopic,
		MaxSubscriptions: 1,
		MaxRecover:       opts.history,
	})
	// With -history 0 rooms are still protocol topics, without positions:
	// their events reach the members, and nothing is recovered.
	if err := ch.rs.Topics(topicPrefix+"*", resume.History{Size: opts.history}); err != nil {
		return nil, err
	}
	return ch, nil
}

// authorize checks the path and the query before the upgrade: a bad room,
// nickname or seat key gets a 400 with the rule in its body. It returns the
// connection's session.
func (ch *chat) authorize(r *upgrade.Request) (any, error) {
	if r.Path != "/ws" {
		return nil, upgrade.Reject(http.StatusNotFound, "the chat socket is at /ws")
	}
	q := r.Query()
	roomName, nick, seat := q.Get("room"), q.Get("nick"), q.Get("key")
	if !validRoom(roomName) {
		return nil, upgrade.Reject(http.StatusBadRequest, "room must be 1 to 32 characters a-z, 0-9 or -")
	}
	if !validNick(nick) {
		return nil, upgrade.Reject(http.StatusBadRequest, "nick must be 1 to 24 printable characters, no leading or trailing space")
	}
	if seat != "" && !validSeat(seat) {
		return nil, upgrade.Reject(http.StatusBadRequest, "key must be 16 to 64 characters A-Z, a-z, 0-9, - or _")
	}
	return &member{roomName: roomName, nick: nick, key: strings.ToLower(nick), seat: seat, nickJSON: marshal(nick)}, nil
}

// authorizeTopic lets a connection subscribe to its own room only.
func (ch *chat) authorizeTopic(c *engine.Conn, topic string) error {
	m, _ := c.Session().(*member)
	if m == nil || m.room == nil || topic != m.room.topic {
		return errors.New("a connection subscribes to its own room only")
	}
	return nil
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

// validSeat reports whether a seat key is 16 to 64 characters A-Z, a-z,
// 0-9, '-' or '_' (a page makes one from 16 random bytes).
func validSeat(seat string) bool {
	if len(seat) < minSeatKey || len(seat) > maxSeatKey {
		return false
	}
	for i := 0; i < len(seat); i++ {
		b := seat[i]
		if (b < 'a' || b > 'z') && (b < 'A' || b > 'Z') && (b < '0' || b > '9') && b != '-' && b != '_' {
			return false
		}
	}
	return true
}

// sameSeat reports whether m may take old's place: both carry the same
// seat key. A connection whose link died silently stays a member until
// the server notices (pings, up to 45 s); its page's reconnect proves it is
// the same seat and takes over at once instead of finding its nick taken.
func sameSeat(old, m *member) bool {
	return old.seat != "" && len(old.seat) == len(m.seat) &&
		subtle.ConstantTimeCompare([]byte(old.seat), []byte(m.seat)) == 1
}

// OnOpen joins the room: the nickname must be free there, or held by an
// older connection of the same seat, which it replaces without a leave or
// join notice. A new member's join notice goes to the room. The member
// then gets a hello: the room's members, and where the room's kept history
// starts, to subscribe from.
func (ch *chat) OnOpen(c *engine.Conn) {
	m, _ := c.Session().(*member)
	if m == nil {
		_ = c.Close(engine.StatusInternalError, "no session")
		return
	}
	m.conn = c
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
	old, taken := r.members[m.key]
	if taken && !sameSeat(old, m) {
		r.mu.Unlock()
		_ = c.Close(engine.StatusPolicyViolation, "nick taken in this room")
		return
	}
	r.members[m.key] = m
	m.room = r
	count := len(r.members)
	others := make([]*member, 0, min(count, maxNicksSent))
	for _, other := range r.members {
		if len(others) == maxNicksSent {
			break
		}
		others = append(others, other)
	}
	if !taken {
		ch.publishLocked(r, event{Type: "join", Room: r.name, Nick: m.nick, TS: nowMillis(), Members: count})
	}
	// The kept history, the join included, starts after since: what a
	// fresh page subscribes from to show the room's recent events.
	cur, posErr := ch.hub.Position(r.topic)
	r.mu.Unlock()
	ch.boundHistories()
	if taken {
		_ = old.conn.Close(closeReplaced, "replaced by a newer connection of the same seat")
	}

	slices.SortFunc(others, func(a, b *member) int { return cmp.Compare(a.key, b.key) })
	nicks := make([][]byte, len(others))
	for i, other := range others {
		nicks[i] = other.nickJSON
	}
	var since *broadcast.Position
	if posErr == nil {
		since = &broadcast.Position{Epoch: cur.Epoch, Offset: cur.Offset - min(cur.Offset, uint64(ch.opts.history))}
	}
	m.helloSince = since
	_ = ch.rs.Welcome(c)
	_ = c.Send(engine.TextMessage, encodeHello(r.name, r.topic, count, ch.grantNicks(nicks), since))
}

// grantNicks decides how many nicknames a hello lists: the first ones
// (alphabetically) that the history quota has bytes for, and none while the
// server already holds more than -history-backlog bytes that its clients
// have not read.
func (ch *chat) grantNicks(nicks [][]byte) [][]byte {
	if ch.held() > ch.opts.historyBacklog {
		return nil
	}
	var sent [][]byte
	used := ch.quota.spend(ch.now(), func(avail int) int {
		j, used := fitOldest(nicks, avail)
		sent = nicks[:j]
		return used
	})
	ch.historySent.Add(int64(used))
	return sent
}

// joinSince is where a member's subscribe recovers from. A fresh join
// subscribes from the position its hello offered, the start of the room's
// kept history then; once the history is full, any event published in the
// round trip between the hello and the subscribe pushes that position out
// of it, and the join would get recovered: false in a busy room. It never
// saw those oldest events, so it recovers from where the kept history
// starts now instead. Any other position (a reconnect's) is kept as it is.
// Loop only, like OnOpen and OnMessage.
func (ch *chat) joinSince(m *member, since broadcast.Position) broadcast.Position {
	if m.helloSince == nil || since != *m.helloSince {
		return since
	}
	cur, err := ch.hub.Position(m.room.topic)
	if err != nil || cur.Epoch != since.Epoch {
		return since
	}
	if start := cur.Offset - min(cur.Offset, uint64(ch.opts.history)); start > since.Offset {
		since.Offset = start
	}
	return since
}

// grantRecovery decides whether a subscribe from since may recover what the
// room's history holds after it: the whole of it, charged to the history
// quota, or nothing (the reply then says recovered: false) when the quota
// lacks the bytes or the server already holds more than -history-backlog
// bytes that its clients have not read. A subscribe the history cannot
// serve anyway costs nothing. The charge is what the history holds after
// since now; the reply, read on the member's loop an instant later, may
// carry the few events published in between as well.
func (ch *chat) grantRecovery(topic string, since *broadcast.Position) bool {
	// Counted once decided, so that a test that waits for the count finds
	// the quota already charged.
	defer ch.recoveriesAsked.Add(1)
	size := 0 // the reply's "pubs" array, without its brackets
	_, ok, err := ch.hub.Recover(topic, since, ch.opts.history, func(_ uint64, _ engine.MessageType, p []byte) {
		size += len(p) + min(size, 1)
	})
	if err != nil || !ok || size == 0 {
		return true
	}
	if ch.held() > ch.opts.historyBacklog {
		ch.recoveriesRefused.Add(1)
		return false
	}
	used := ch.quota.spend(ch.now(), func(avail int) int {
		if size <= avail {
			return size
		}
		return 0
	})
	if used == 0 {
		ch.recoveriesRefused.Add(1)
		return false
	}
	ch.historySent.Add(int64(used))
	return true
}

// fitOldest returns how many of the first items fit in avail bytes as the
// contents of a JSON array (commas between them), and their bytes.
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

// OnMessage takes the subscribe protocol's messages (subscribe, ping) and
// chat messages: {"type":"msg","text":"..."}. Both count against the
// connection's rate.
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
	// The protocol's messages (subscribe, unsubscribe, ping, and malformed
	// ones, which get an error reply) go to the resume server; a subscribe
	// that asks to recover is charged to the history quota first.
	if req, err := resume.DecodeRequest(data); !errors.Is(err, resume.ErrNotProtocol) {
		if err == nil && req.Type == resume.TypeSubscribe && req.Since != nil && req.Topic == m.room.topic {
			if since := ch.joinSince(m, *req.Since); since != *req.Since {
				req.Since = &since
				data = resume.AppendRequest(nil, req)
			}
			if !ch.grantRecovery(req.Topic, req.Since) {
				// Subscribed from a position no history has: the reply
				// says recovered: false, and the member goes on live
				// from there.
				req.Since = &broadcast.Position{Epoch: withheldEpoch}
				data = resume.AppendRequest(nil, req)
			}
		}
		m.helloSince = nil
		ch.rs.Handle(c, typ, data)
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
	// Encode outside the lock.
	body := marshal(event{Type: "msg", Room: m.room.name, Nick: m.nick, Text: in.Text, TS: nowMillis()})
	r := m.room
	r.mu.Lock()
	ch.publishBodyLocked(r, body)
	r.mu.Unlock()
	ch.boundHistories()
}

// OnClose leaves the room and tells the others, unless a newer connection
// of the same seat took the member's place.
func (ch *chat) OnClose(c *engine.Conn, _ error) {
	m, _ := c.Session().(*member)
	if m == nil || m.room == nil {
		return
	}
	r := m.room
	r.mu.Lock()
	if r.members[m.key] == m {
		delete(r.members, m.key)
		ch.publishLocked(r, event{Type: "leave", Room: r.name, Nick: m.nick, TS: nowMillis(), Members: len(r.members)})
	}
	r.mu.Unlock()
	ch.boundHistories()
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

// forgetEmptyLocked drops one room without members, and its history: a
// page that comes back to it later learns that it cannot recover (a new
// epoch). ch.mu must be held.
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
			r.mu.Lock()
			ch.forgetHistoryLocked(r)
			r.mu.Unlock()
			return true
		}
	}
	return false
}

// historyQuota is the server-wide budget of history bytes: a token bucket
// that refills at rate bytes per second and holds at most one second's worth.
// Every recovery takes from it the publications it sends, and every hello
// its nick list, so a flood of joins and resubscribes makes the server
// emit at most rate bytes of history per second (plus the one-second
// burst), however long the rooms' histories are.
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

// event is what the server publishes about a room, as a publication's
// "data". Fields a type does not use are left out.
type event struct {
	Type    string `json:"type"`
	Room    string `json:"room"`
	Nick    string `json:"nick,omitempty"`
	Text    string `json:"text,omitempty"`
	TS      int64  `json:"ts"`                // Unix milliseconds
	Members int    `json:"members,omitempty"` // members after a join or leave
}

// publishLocked publishes ev to the room's topic. r.mu must be held.
func (ch *chat) publishLocked(r *room, ev event) {
	ch.publishBodyLocked(r, marshal(ev))
}

// publishBodyLocked publishes an encoded event to the room's topic, where
// the hub gives it its position and keeps it in the history. r.mu must be
// held: membership changes and the events that announce them keep one
// order.
func (ch *chat) publishBodyLocked(r *room, body []byte) {
	if err := ch.hub.Publish(r.topic, engine.TextMessage, body); err != nil {
		if !errors.Is(err, engine.ErrClosed) {
			ch.log.Warn("publish", "room", r.name, "err", err)
		}
		return
	}
	ch.historyHeld.Add(r.kept.add(pubCost(len(body)), ch.opts.history))
}

// boundHistories keeps the rooms' histories within -history-memory: while
// they hold more, it forgets the history of a room without members, else
// of the room whose history is the largest. Its members lose nothing live;
// a page of theirs that reconnects later, and a join, recover nothing
// older (a new epoch). So a flood of large messages costs history, never
// memory beyond the bound and an event per publisher at a time.
func (ch *chat) boundHistories() {
	if ch.historyHeld.Load() <= ch.opts.historyMemory {
		return
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for ch.historyHeld.Load() > ch.opts.historyMemory {
		var victim *room
		var victimEmpty bool
		var victimBytes int64
		for _, r := range ch.rooms {
			r.mu.Lock()
			empty, b := len(r.members) == 0, r.kept.bytes
			r.mu.Unlock()
			if b == 0 {
				continue
			}
			if victim == nil || empty && !victimEmpty || empty == victimEmpty && b > victimBytes {
				victim, victimEmpty, victimBytes = r, empty, b
			}
		}
		if victim == nil {
			return
		}
		victim.mu.Lock()
		ch.forgetHistoryLocked(victim)
		victim.mu.Unlock()
		ch.historyResets.Add(1)
	}
}

// forgetHistoryLocked forgets a room's history. r.mu must be held, so that
// no event of the room comes between the hub's history and its window.
func (ch *chat) forgetHistoryLocked(r *room) {
	ch.hub.ResetHistory(r.topic)
	ch.historyHeld.Add(-r.kept.reset())
}

// encodeHello builds the message a member gets on joining:
// {"type":"hello","room":..,"topic":..,"members":..,"nicks":[..],"since":{"epoch":..,"offset":..}}
// where nicks are JSON strings, and since (absent without history) is the
// position the room's kept history starts after.
func encodeHello(roomName, topic string, members int, nicks [][]byte, since *broadcast.Position) []byte {
	n := helloFixedBytes
	for _, s := range nicks {
		n += len(s) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, `{"type":"hello","room":`...)
	b = strconv.AppendQuote(b, roomName) // room names are [a-z0-9-]
	b = append(b, `,"topic":`...)
	b = strconv.AppendQuote(b, topic)
	b = append(b, `,"members":`...)
	b = strconv.AppendInt(b, int64(members), 10)
	b = append(b, `,"nicks":`...)
	b = appendArray(b, nicks)
	if since != nil {
		b = append(b, `,"since":{"epoch":`...)
		b = strconv.AppendQuote(b, since.Epoch) // hex
		b = append(b, `,"offset":`...)
		b = strconv.AppendUint(b, since.Offset, 10)
		b = append(b, '}')
	}
	return append(b, '}')
}

// withheldEpoch is the position a withheld recovery subscribes from: the
// hub's epochs are hex digits, so none is ever this one.
const withheldEpoch = "withheld"

// helloFixedBytes bounds a hello message without its "nicks" array's
// contents: what any join gets, whatever the history quota says.
const helloFixedBytes = 320

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
