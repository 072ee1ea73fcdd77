// Command chat is a small multi-room chat server built on herald: one
// broadcast topic per room, a short history per room, join and leave notices,
// and a browser page. Every resource an anonymous client can make it spend
// has a bound, listed under Limits.
//
//	go run ./examples/chat -addr 127.0.0.1:8081
//
// then open the printed address in two browser windows.
//
// # Protocol
//
// A client connects to /ws?room=R&nick=N. A room name is 1 to 32 characters
// a-z, 0-9 or '-'; a nickname is 1 to 24 printable characters without
// leading or trailing space. A request that breaks these rules is refused
// before the upgrade with 400 and the rule in the body. Nicknames are unique
// per room, ignoring case: joining with a taken one is closed with 1008
// "nick taken in this room" (pick another; there are no automatic suffixes).
//
// On joining, the client first gets the room's history, then the notices and
// messages of the room as they happen. Every server message is a JSON text:
//
//	{"type":"history","room":"lobby","id":41,"members":2,"nicks":["ann","bob"],"messages":[...]}
//	{"type":"history","room":"lobby","id":97,"members":3,"omitted":50,"nicks":[],"messages":[]}
//	{"id":42,"type":"join","room":"lobby","nick":"bob","ts":1700000000000,"members":2}
//	{"id":43,"type":"msg","room":"lobby","nick":"ann","text":"hi","ts":1700000000000}
//	{"id":44,"type":"leave","room":"lobby","nick":"bob","ts":1700000000000,"members":1}
//	{"type":"error","error":"message too long: 2400 bytes, the limit is 2000"}
//
// "messages" holds the room's latest "msg" events, oldest first: at most
// -history of them, in at most -history-bytes as sent (see Limits). While
// the server limits history (see below), it sends only the newest messages
// that fit, or none, and "omitted" counts those it left out; they stay in
// the room's history for later joins. "nicks" lists up to 200 members,
// alphabetically, or fewer when history is limited; "members" is always the
// room's full count. Every room event carries an id, +1 per event in the
// room; the history's id is the latest event it accounts for, so a client
// skips live events with an id not above it (a member joining while others
// talk may get an event both ways). "ts" is Unix milliseconds; "members"
// counts the room's members after the join or leave.
//
// A client sends {"type":"msg","text":"..."} as a text message. The limits:
//
//   - text of at most 2000 bytes: a longer one is refused with an "error"
//     message and the connection stays open. A WebSocket message over 16 KiB
//     (room for 2000 bytes however JSON escapes them) is closed by the
//     engine with 1009;
//   - at most -burst (10) messages at once and -rate (10) per second
//     sustained, a token bucket per connection: the message that exceeds it
//     is dropped and the connection closed with 1008 "rate limit";
//   - binary messages are closed with 1003; malformed JSON, another type or
//     an empty text get an "error" message.
//
// Origins follow herald's default: only pages from the server's own origin
// may open the socket. GET /rooms lists the rooms that have members, busiest
// first: [{"name":"lobby","members":2}]. The server keeps at most -rooms
// rooms (1024), forgetting empty ones (and their history) when it needs
// space; past that, joining a new room is closed with 1013.
//
// Strings are JSON-escaped without HTML escaping: '<', '>' and '&' are sent
// as themselves (the page renders every string as text, never as markup).
// What JSON still escapes costs more than the text: '"' and '\' 2 bytes,
// U+2028 and U+2029 6 bytes for 3, and a control character other than
// newline, return and tab 6 bytes for 1. So a 2000-byte text is at most
// 12,000 bytes as sent, and a whole "msg" event at most 12,258 bytes.
//
// # Compression
//
// With -compression the server negotiates permessage-deflate with clients
// that offer it (browsers do), without context takeover on either side:
// events and histories of -compression-min-size bytes (512) and more go
// out compressed, each compressed once for all the room's members. Off by
// default, as in herald (see its README). The limits below count bytes
// before compression.
//
// # Limits
//
// A join is a request of a few hundred bytes; what it can make the server
// send and hold is bounded, whatever the rooms hold and however many join:
//
//   - -history-bytes (64 KiB): a room's history, as sent, JSON escaping
//     included: its "messages" array is at most this many bytes. Adding a
//     message drops the oldest ones until it fits (and -history, 50, bounds
//     their count). It must be at least 12,260 bytes, the largest message
//     in the array's brackets, so that any message the server accepts fits,
//     and at most 4,128,768 (4 MiB less 64 KiB), so that a history message
//     with its nick list stays within what the engine lets a connection be
//     sent at once. A history message is then at most -history-bytes plus
//     19,802 bytes of nicknames plus 256 (about 84 KiB at the defaults).
//     Rooms hold at most -rooms times -history-bytes (64 MiB at the
//     defaults).
//   - -history-rate (1 MiB/s): history bytes the whole server sends, a
//     token bucket that refills at this rate and holds one second's worth:
//     in any t seconds, at most (t+1) times this. A history message takes
//     from it what its "messages" and "nicks" arrays hold; a join that
//     finds less gets the newest messages and the first nicknames that fit,
//     possibly none, and "omitted" says how many messages it did not get.
//     So a flood of joins costs bandwidth and copying at this rate at most,
//     however long the histories, and the server's other clients do not
//     wait behind it. The rest of a history message (at most 256 bytes) is
//     not counted: every join gets it. It must be at least -history-bytes
//     plus 19,802, so that a whole history message fits in the bucket.
//   - -history-backlog (8 MiB): while the server holds more than this many
//     bytes its clients have not read (engine Stats.OutboundBytes), joins
//     get no messages and no nicknames at all. Joiners that never read
//     therefore make the server hold at most this much history, plus one
//     history message per event loop being sent as the bound is crossed
//     (about 84 KiB each at the defaults). What the kernel's socket
//     buffers take is on top: it grows no faster than -history-rate, and
//     the kernel's own limits apply. It must be below -max-outbound-total.
//   - -max-outbound-total (64 MiB): all the bytes the server holds for
//     clients that have not read them, history and live events together.
//     A client more than 64 KiB behind on its room's events is closed with
//     1013 (broadcast.CloseSlow), a client whose backlog makes no progress
//     for 10 s is closed with 1008 (engine WriteTimeout), and while the
//     total is used up a client that falls behind at all is closed.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/heraldws/herald/engine"
)

func main() {
	opts := defaultOptions()
	flag.StringVar(&opts.addr, "addr", opts.addr, "address to listen on (host:port; port 0 picks one)")
	flag.IntVar(&opts.history, "history", opts.history, "messages of history kept per room and sent on join (0: no history)")
	flag.IntVar(&opts.historyBytes, "history-bytes", opts.historyBytes,
		fmt.Sprintf("bytes of history kept per room, as sent (JSON escaping included); the oldest messages are dropped first; from %d (the largest message) to %d", minHistoryBytes, maxHistoryBytes))
	flag.IntVar(&opts.historyRate, "history-rate", opts.historyRate,
		fmt.Sprintf("history bytes the server sends per second, all joins together (a bucket of one second's worth); a join that finds less gets only the newest messages and nicknames that fit, or none, and \"omitted\" says how many messages it missed; at least -history-bytes + %d (the longest nick list)", maxNickListBytes))
	flag.Int64Var(&opts.historyBacklog, "history-backlog", opts.historyBacklog,
		"while the server holds more than this many bytes its clients have not read, joins get no history (no messages, no nicknames): bounds the history that joiners that never read make the server hold; below -max-outbound-total")
	flag.Int64Var(&opts.maxOutboundTotal, "max-outbound-total", opts.maxOutboundTotal,
		"bytes the server holds for all clients together that they have not read (history and live events); past it, a client that falls behind is closed")
	flag.Float64Var(&opts.rate, "rate", opts.rate, "messages per second a connection may send, sustained")
	flag.IntVar(&opts.burst, "burst", opts.burst, "messages a connection may send in a burst")
	flag.IntVar(&opts.maxRooms, "rooms", opts.maxRooms, "rooms kept at most (empty ones are forgotten first)")
	flag.IntVar(&opts.loops, "loops", opts.loops, "event loops (default: one per core)")
	flag.BoolVar(&opts.compression, "compression", false,
		"negotiate permessage-deflate with clients that offer it (browsers do): room events and histories of -compression-min-size bytes and more go out compressed, once for all the room's members")
	flag.IntVar(&opts.compressionMinSize, "compression-min-size", engine.DefaultCompressionMinSize, "with -compression, the smallest message sent compressed, in bytes")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	ch, err := newChat(opts, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chat:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := ch.srv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "chat:", err)
		os.Exit(1)
	}
	fmt.Printf("herald chat listening on %s\n", ch.srv.Addr())
	logger.Info("open the chat page", "url", "http://"+ch.srv.Addr().String()+"/")

	<-ctx.Done()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ch.srv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("shutdown", "err", err)
	}
}
