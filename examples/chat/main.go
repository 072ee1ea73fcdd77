// Command chat is a small multi-room chat server built on herald: one
// broadcast topic per room with a history, served through herald's subscribe
// protocol (package resume, docs/PROTOCOL.md), join and leave notices, and
// a browser page that uses herald's JavaScript client (clients/js). A page
// that joins shows the room's recent events; one whose connection drops
// reconnects by itself and shows every event of the gap once, in order.
// Every resource an anonymous client can make it spend has a bound, listed
// under Limits.
//
//	go run ./examples/chat -addr 127.0.0.1:8081
//
// then open the printed address in two browser windows.
//
// # Protocol
//
// A client connects to /ws?room=R&nick=N[&key=K]. A room name is 1 to 32
// characters a-z, 0-9 or '-'; a nickname is 1 to 24 printable characters
// without leading or trailing space; the optional seat key is 16 to 64
// characters A-Z, a-z, 0-9, '-' or '_', a secret the page draws at random
// when it joins. A request that breaks these rules is refused before the
// upgrade with 400 and the rule in the body. Nicknames are unique per room,
// ignoring case: joining with a taken one is closed with 1008 "nick taken
// in this room" (pick another; there are no automatic suffixes), unless the
// connection holding it has the same seat key: the new connection then
// takes its place (a page reconnecting after a network drop, before the
// server noticed the old connection was dead), the old one is closed with
// 4501 (do not reconnect) and the room sees no leave or join.
//
// On joining, the client gets the subscribe protocol's welcome (its
// heartbeat) and a hello:
//
//	{"type":"welcome","v":1,"ping":25000,"pong":10000}
//	{"type":"hello","room":"lobby","topic":"room.lobby","members":2,"nicks":["ann","bob"],"since":{"epoch":"9f2c…","offset":41}}
//
// "members" is the room's member count and "nicks" lists up to 200 of them
// alphabetically (fewer when history is limited, see below). The room's
// events are publications of topic "room.<room>": the client subscribes
// to it, with the protocol's subscribe, from "since" (where the room's kept
// history starts) to get the recent events, and after a reconnect from the
// last position it processed to get exactly the ones it missed:
//
//	{"type":"subscribe","id":1,"topic":"room.lobby","since":{"epoch":"9f2c…","offset":41}}
//	{"type":"subscribed","id":1,"topic":"room.lobby","epoch":"9f2c…","offset":44,"recovered":true,"pubs":[…]}
//	{"type":"pub","topic":"room.lobby","epoch":"9f2c…","offset":45,"data":{"type":"msg","room":"lobby","nick":"ann","text":"hi","ts":1700000000000}}
//
// An event ("data") is a join, a message or a leave:
//
//	{"type":"join","room":"lobby","nick":"bob","ts":1700000000000,"members":2}
//	{"type":"msg","room":"lobby","nick":"ann","text":"hi","ts":1700000000000}
//	{"type":"leave","room":"lobby","nick":"bob","ts":1700000000000,"members":1}
//
// "ts" is Unix milliseconds; "members" counts the room's members after the
// join or leave. A connection may subscribe to its own room only. The reply
// says "recovered": false, without the events, when the history no longer
// holds all of them (more than -history events since, or the room was
// forgotten: another epoch), or while the server limits history (see
// Limits); the client then shows the live events from there on.
//
// A client sends {"type":"msg","text":"..."} as a text message; every
// message it sends, the protocol's included, counts against its rate:
//
//   - text of at most 2000 bytes: a longer one is refused with
//     {"type":"error","error":"message too long: 2400 bytes, the limit is 2000"}
//     and the connection stays open. A WebSocket message over 16 KiB
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
// first: [{"name":"lobby","members":2}]; GET /herald-client.js serves the
// JavaScript client the page imports. The server keeps at most -rooms rooms
// (1024), forgetting empty ones (and their history) when it needs space;
// past that, joining a new room is closed with 1013.
//
// Strings are JSON-escaped without HTML escaping: '<', '>' and '&' are sent
// as themselves (the page renders every string as text, never as markup).
// What JSON still escapes costs more than the text: '"' and '\' 2 bytes,
// U+2028 and U+2029 6 bytes for 3, and a control character other than
// newline, return and tab 6 bytes for 1. So a 2000-byte text is at most
// 12,000 bytes as sent, a whole event at most 12,258 bytes, and in its
// publication envelope at most 12,514.
//
// # Compression
//
// With -compression the server negotiates permessage-deflate with clients
// that offer it (browsers do), without context takeover on either side:
// events and recoveries of -compression-min-size bytes (512) and more go
// out compressed, each event compressed once for all the room's members.
// Off by default, as in herald (see its README). The limits below count
// bytes before compression.
//
// # Limits
//
// A join is a request of a few hundred bytes; what it can make the server
// send and hold is bounded, whatever the rooms hold and however many join:
//
//   - -history (100): events a room's history keeps, the newest, and so
//     what one subscribe recovers at most. At most 329, so that a recovery
//     of that many of the largest events fits in what the engine lets a
//     connection be sent at once. Rooms hold at most -rooms times -history
//     events (12,514 bytes each at worst; a chat line of 100 characters
//     takes about 350); an empty room's history goes with the room.
//   - -history-memory (64 MiB): the bytes all rooms' histories hold
//     together, each event counted with 256 bytes for its envelope. When
//     a message takes them past it, the history of a room without members
//     is forgotten, else the largest room's, until they are within it
//     again: the room's members lose nothing live, but a page of theirs
//     that reconnects later, and a join, recover nothing older (the
//     history starts over, in a new epoch). So a flood of large messages
//     costs history, never memory beyond this and an event per event loop.
//     It must be
//     at least -history times 12,514, one room's whole history.
//   - -history-rate (2 MiB/s): history bytes the whole server sends, a
//     token bucket that refills at this rate and holds one second's worth:
//     in any t seconds, at most (t+1) times this. A recovery takes from it
//     the publications it sends, whole or not at all (recovered: false),
//     and a hello its nick list, as many nicknames as fit. So a flood of
//     joins and resubscribes costs bandwidth and copying at this rate at
//     most, however long the histories, and the server's other clients do
//     not wait behind it. It must be at least -history times 12,515 plus
//     19,802 (the longest nick list), so that a whole recovery fits.
//   - -history-backlog (8 MiB): while the server holds more than this many
//     bytes its clients have not read (engine Stats.OutboundBytes),
//     subscribes recover nothing and hellos list no nicknames. Clients
//     that never read therefore make the server hold at most this much
//     history, plus one recovery per event loop being sent as the bound is
//     crossed. What the kernel's socket buffers take is on top: it grows
//     no faster than -history-rate, and the kernel's own limits apply. It
//     must be below -max-outbound-total.
//   - -max-outbound-total (64 MiB): all the bytes the server holds for
//     clients that have not read them, history and live events together.
//     A client more than 64 KiB behind on its room's events is closed with
//     1013 (broadcast.CloseSlow; the page reconnects and recovers), a client
//     whose backlog makes no progress for 10 s is closed with 1008 (engine
//     WriteTimeout), and while the total is used up a client that falls
//     behind at all is closed.
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
	flag.IntVar(&opts.history, "history", opts.history,
		fmt.Sprintf("events kept per room, the newest, for pages to show on joining and to recover after a reconnect (0: none); at most %d", maxHistory))
	flag.IntVar(&opts.historyRate, "history-rate", opts.historyRate,
		fmt.Sprintf("history bytes the server sends per second, all recoveries and nick lists together (a bucket of one second's worth); a recovery that finds less gets none (recovered: false); at least -history × %d + %d (the longest nick list)", maxPubBytes+1, maxNickListBytes))
	flag.Int64Var(&opts.historyBacklog, "history-backlog", opts.historyBacklog,
		"while the server holds more than this many bytes its clients have not read, subscribes recover nothing and joins get no nicknames: bounds the history that clients that never read make the server hold; below -max-outbound-total")
	flag.Int64Var(&opts.historyMemory, "history-memory", opts.historyMemory,
		fmt.Sprintf("bytes all rooms' histories hold together (each event counted with its envelope's %d bytes at most); past it, the history of an empty room, else of the largest, is forgotten; at least -history × %d", maxPubBytes-maxEventBytes, pubCost(maxEventBytes)))
	flag.Int64Var(&opts.maxOutboundTotal, "max-outbound-total", opts.maxOutboundTotal,
		"bytes the server holds for all clients together that they have not read (history and live events); past it, a client that falls behind is closed")
	flag.Float64Var(&opts.rate, "rate", opts.rate, "messages per second a connection may send, sustained")
	flag.IntVar(&opts.burst, "burst", opts.burst, "messages a connection may send in a burst")
	flag.IntVar(&opts.maxRooms, "rooms", opts.maxRooms, "rooms kept at most (empty ones are forgotten first)")
	flag.IntVar(&opts.loops, "loops", opts.loops, "event loops (default: one per core)")
	flag.BoolVar(&opts.compression, "compression", false,
		"negotiate permessage-deflate with clients that offer it (browsers do): room events and recoveries of -compression-min-size bytes and more go out compressed, once for all the room's members")
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
