package engine

import "sync/atomic"

// Stats counts what the server has done since it started. Read it with
// Server.Stats; it is a snapshot, cheap enough for a metrics endpoint.
type Stats struct {
	Active              int64  // connections open or handshaking now
	Accepted            uint64 // TCP connections accepted
	Upgraded            uint64 // successful WebSocket handshakes
	Rejected            uint64 // handshakes answered with an HTTP error
	HTTPServed          uint64 // plain HTTP requests served by Config.HTTPHandler
	HandshakeTimeouts   uint64 // connections dropped for a slow handshake
	ProtocolErrors      uint64 // connections closed for a bad frame (1002, 1007, 1009)
	SlowClosed          uint64 // connections closed for MaxOutboundBytes (1008)
	BudgetShed          uint64 // connections closed for MaxOutboundTotal (1008)
	OutboundBytes       int64  // bytes written and not yet taken by the peers' sockets, now
	WorkerBacklogClosed uint64 // connections closed for WorkerQueue (1013)
	Panics              uint64 // panics recovered from handlers and hooks
	PongTimeouts        uint64 // connections dropped by keepalive
	WriteTimeouts       uint64 // connections dropped for a backlog that made no progress (WriteTimeout)
	IdleClosed          uint64 // connections closed by IdleTimeout
	MessagesIn          uint64 // data messages received
	MessagesOut         uint64 // data messages sent with Conn.Send
	DeflateNegotiated   uint64 // upgrades that negotiated permessage-deflate
	CompressedIn        uint64 // compressed messages received (and inflated)
	CompressedOut       uint64 // messages Conn.Send sent compressed
	MemoryReturns       uint64 // times freed memory was given back to the OS (Config.ReturnMemoryAfter)
}

// loopStats are one loop's counters. Each is written by its loop only, so
// the atomics are uncontended; they are atomic so Stats can read them.
type loopStats struct {
	accepted, upgraded, rejected, httpServed       atomic.Uint64
	handshakeTimeouts, protocolErrors, slowClosed  atomic.Uint64
	workerBacklogClosed, budgetShed                atomic.Uint64
	pongTimeouts, idleClosed, writeTimeouts        atomic.Uint64
	messagesIn, messagesOut                        atomic.Uint64
	deflateNegotiated, compressedIn, compressedOut atomic.Uint64
}

func (s *loopStats) addTo(t *Stats) {
	t.Accepted += s.accepted.Load()
	t.Upgraded += s.upgraded.Load()
	t.Rejected += s.rejected.Load()
	t.HTTPServed += s.httpServed.Load()
	t.HandshakeTimeouts += s.handshakeTimeouts.Load()
	t.ProtocolErrors += s.protocolErrors.Load()
	t.SlowClosed += s.slowClosed.Load()
	t.BudgetShed += s.budgetShed.Load()
	t.WorkerBacklogClosed += s.workerBacklogClosed.Load()
	t.PongTimeouts += s.pongTimeouts.Load()
	t.WriteTimeouts += s.writeTimeouts.Load()
	t.IdleClosed += s.idleClosed.Load()
	t.MessagesIn += s.messagesIn.Load()
	t.MessagesOut += s.messagesOut.Load()
	t.DeflateNegotiated += s.deflateNegotiated.Load()
	t.CompressedIn += s.compressedIn.Load()
	t.CompressedOut += s.compressedOut.Load()
}
