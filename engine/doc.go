// Package engine is herald's front door: a WebSocket server on gnet event
// loops that holds very many connections without a goroutine per
// connection.
//
// # The handler
//
// A service implements Handler — OnOpen, OnMessage, OnClose; embed
// BaseHandler to write only some — and passes it to New with a Config. The
// optional PingHandler and PongHandler interfaces report control frames.
// Conn is one client: Send, SendText, SendBinary and Close work from any
// goroutine; Session and SetSession carry per-connection state; Request is
// the upgrade request, during OnOpen only.
//
// # Lifecycle
//
// New validates the Config (an error names the field) and returns a Server.
// Start listens in the background; Serve also waits until the server stops;
// Run serves until its context ends and then shuts down, which is what a main
// function wants. Shutdown stops accepting, sends close 1001 to every
// connection, waits for their close frames until its context ends, then cuts
// the rest and stops the loops.
//
// A connection is accepted, its handshake read and checked (the Origin
// policy, then Config.Authorize), OnOpen runs, and only then does the client
// get the 101: subscriptions and sends made in OnOpen are in effect before
// the client can act. OnMessage runs for every complete message, OnClose once
// at the end, with a *CloseError or the network error that ended it.
//
// # Where callbacks run, and what must not block
//
// Handler methods run on the connection's event loop, one at a time per loop:
// they must return quickly and never block, because every other connection
// of the loop waits meanwhile. Send from the loop writes directly. With
// Config.Workers, handlers run instead on a pool of worker goroutines, in
// order per connection, and may block. Config.CheckOrigin and
// Config.Authorize run on the loop during the handshake and must not block
// either, unless Config.HandshakeWorkers runs them on a pool of goroutines
// shared by all connections: they may then block, within the request's
// Context, which ends at Config.HandshakeTimeout, while the connection
// waits on its loop with no goroutine of its own. Config.HTTPHandler always
// runs on the loop.
//
// # Panics
//
// No user callback can take the process down. A panic in a Handler method or
// a handshake hook is recovered, logged through Config.Logger at Error level
// with its stack, counted in Stats.Panics and passed to Config.OnPanic; it
// costs only the connection it happened on, which is closed with 1011
// (internal error), or answered with 500 before the upgrade.
//
// # Timers
//
// Handshake, keepalive, idle and close timeouts are enforced by one sweep per
// loop, never a timer per connection. A timeout never fires before its
// duration, measured from when the loop handled the event that started it;
// it fires at most one sweep period later (a quarter of the shortest
// timeout, at most a second) on a loop that keeps up.
//
// # Limits
//
// Every limit has a defined answer: an HTTP status before the upgrade, a
// close code after it (1002 protocol error, 1007 invalid UTF-8, 1008 policy,
// 1009 too big, 1013 try again later). See Config for each.
//
// The broadcast package adds a sharded publish/subscribe hub on top of a
// Server.
package engine
