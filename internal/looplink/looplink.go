// Package looplink is the private door between package engine and the
// packages that extend it (broadcast). It holds the loop-only operations a
// hub needs — post work to a loop, gather work until the loop's inbox is
// drained, write frames that are already encoded, read a connection's
// backlog — which must never be called from the wrong goroutine, and so have
// no place in engine's public API.
//
// engine implements the interfaces below with types a user cannot name, and
// registers the conversions in Conn and Server when it is initialised.
package looplink

import "time"

// Loop is one event loop of a server.
type Loop interface {
	// Index is the loop's position among the server's loops: 0, 1, 2... in
	// the order they served their first connection. Extensions index
	// per-loop state with it.
	Index() int
	// Post runs fn on the loop after the work posted before it. It is safe
	// from any goroutine and wakes the loop at most once per burst of
	// posts. It returns an error when the server is stopping and fn will
	// not run.
	Post(fn func()) error
	// OnLoop reports whether the caller runs on this loop.
	OnLoop() bool
	// Defer runs fn on the loop once the work being drained from its inbox
	// is done, so that the effects of many posts are acted on once. Loop
	// only.
	Defer(fn func())
	// OverBudget reports whether the loop's share of the server's outbound
	// budget is used up: every connection with a backlog then counts as
	// slow. Safe from any goroutine.
	OverBudget() bool
	// OnSweep registers fn to run on the loop at every timer sweep (at
	// most a second apart), with the sweep's clock. Loop only.
	OnSweep(fn func(now time.Duration))
}

// Conn is the loop side of one WebSocket connection. Every method but Loop
// must be called on the connection's loop.
type Conn interface {
	// ID is the connection's id, unique on its server: extensions key
	// their per-connection state by it (a map keyed by an interface value
	// costs 8 bytes more per entry).
	ID() uint64
	// Loop returns the loop that serves the connection for its whole life.
	Loop() Loop
	// IsOpen reports whether the connection is upgraded and not closing.
	IsOpen() bool
	// Deflate reports whether the connection negotiated permessage-deflate
	// (no context takeover): frames compressed on their own, with RSV1,
	// may be written to it. It never changes; safe from any goroutine.
	Deflate() bool
	// Buffered returns the bytes queued for the peer that it has not read.
	Buffered() int
	// WriteFrames writes bytes that already hold complete, encoded server
	// frames (data messages), so that one encoding serves
	// many connections. now (the loop's clock, read once per flush) marks
	// the connection active for Config.IdleTimeout. The connection's
	// outbound bound applies: a connection whose backlog would pass it is
	// closed, and false is returned.
	WriteFrames(b []byte, now time.Duration) bool
	// Close starts the close handshake with a code of the server's
	// choosing; the connection gets nothing more.
	Close(code uint16, reason string)
}

// Server is the part of a server extensions hook into.
type Server interface {
	// OnConnClose registers fn to run on the loop whenever an upgraded
	// connection closes, before Handler.OnClose. Safe at any time.
	OnConnClose(fn func(c Conn))
	// Closed reports whether Shutdown has begun.
	Closed() bool
	// MaxOutboundBytes is the per-connection outbound bound.
	MaxOutboundBytes() int
	// CompressMinSize is the smallest message compressed for connections
	// that negotiated permessage-deflate (Config.Compression.MinSize).
	CompressMinSize() int
	// Now is the clock of the loops' timers: monotonic, since the server
	// was created.
	Now() time.Duration
}

// Conversions registered by package engine in its init. The arguments are an
// *engine.Conn and an *engine.Server; looplink cannot name those types
// without an import cycle.
var (
	ConnOf   func(c any) Conn
	ServerOf func(s any) Server
)

// Test hooks, registered by package engine, so that the tests of the
// packages that extend it need not depend on the machine's speed.
var (
	// SetClock replaces the server's timer clock.
	SetClock func(s any, now func() time.Duration)
	// Sweep runs a timer sweep on every loop and waits until all are done.
	// s is an *engine.Server or the Server that ServerOf returned. Work
	// posted to the loops before it has run when it returns, but for what
	// that work deferred to the end of the same drain: a second Sweep
	// waits for that too.
	Sweep func(s any)
)
