package engine

import (
	"errors"
	"sync/atomic"
)

// Stats counts what the server has done since it started. Read it with
// Server.Stats; it is a snapshot, cheap enough for a metrics endpoint.
type Stats struct {
	Active              int64  // connections open or handshaking now
	Open                int64  // upgraded connections not yet closed, now (Active − Open are handshaking)
	Accepted            uint64 // TCP connections accepted
	Upgraded            uint64 // successful WebSocket handshakes
	Rejected            uint64 // handshakes answered with an HTTP error
	Mounted             uint64 // connections upgraded by ServeHTTP and handed to a loop (counted in Accepted and Upgraded too)
	HTTPServed          uint64 // plain HTTP requests served by Config.HTTPHandler
	HandshakeTimeouts   uint64 // connections dropped for a slow handshake
	HandshakesPending   int64  // handshakes waiting for CheckOrigin or Authorize on the handshake workers, now
	HookTimeouts        uint64 // handshakes answered 503 because their hooks had not returned within HandshakeTimeout (in Rejected too)
	HookQueueFull       uint64 // handshakes answered 503 because the handshake workers' queue was full (in Rejected too)
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
	BytesIn             uint64 // bytes read from clients, handshakes included
	BytesOut            uint64 // bytes written to clients (handed to the socket or to gnet's buffer), Send and the broadcast hub included
	InboxDepth          int64  // tasks queued to the loops from other goroutines and not yet run, now

	// TLS (Config.TLS).
	TLSHandshakes         uint64 // TLS handshakes completed
	TLSErrors             uint64 // TLS connections closed for a failed handshake, a bad record, garbage or plain HTTP instead of TLS
	TLSRefused            uint64 // TLS connections closed because MaxTLSHandshakes handshakes were in flight
	TLSHandshakesInFlight int64  // TLS handshakes running now

	// The operational limits' answers (see Config.MaxConns and below).
	// The four handshake refusals count in Rejected too.
	ConnLimitRejected     uint64 // handshakes answered 503 for MaxConns
	PathRejected          uint64 // upgrades answered 404 for Path
	PerIPRejected         uint64 // handshakes answered 429 for MaxConnsPerIP
	HandshakeRateRejected uint64 // handshakes answered 429 for HandshakeRate
	ReadRateClosed        uint64 // connections closed (1008) for ReadRate
	ProxyRefused          uint64 // connections closed for a missing, untrusted or malformed PROXY header
	PerIPTable            int    // client addresses with live connections in MaxConnsPerIP's table, now
	HandshakeRateTable    int    // buckets in use in HandshakeRate's table (at most its capacity), now
	// Closes counts upgraded connections by the code of the close frame
	// that ended them, whoever sent it (see CloseCounts).
	Closes CloseCounts
}

// CloseCounts counts closed connections by close code.
type CloseCounts struct {
	// ByCode[i] counts code 1000+i (1000 normal, 1001 going away, 1002
	// protocol error, ..., 1006 closed without a close frame, 1008 policy,
	// 1009 too big, 1011 internal error, 1013 try again later).
	ByCode [16]uint64
	// Application counts codes 3000–4999 (and any other valid code).
	Application uint64
}

// closeSlot is where code is counted in CloseCounts: 0–15 for 1000–1015,
// 16 for the rest.
func closeSlot(code StatusCode) int {
	if code >= 1000 && code <= 1015 {
		return int(code - 1000)
	}
	return 16
}

// closeCode is the code a close with err (what OnClose is told) counts
// under: the close frame's, or 1006 when the connection ended without one.
func closeCode(err error) StatusCode {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return StatusAbnormalClosure
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
	bytesIn, bytesOut                              atomic.Uint64
	hookTimeouts, hookQueueFull                    atomic.Uint64
	hooksPending                                   atomic.Int64
	tlsHandshakes, tlsErrors, tlsRefused           atomic.Uint64
	closes                                         [17]atomic.Uint64 // by closeSlot
	lim                                            limitStats
}

func (s *loopStats) addTo(t *Stats) {
	t.Accepted += s.accepted.Load()
	t.Upgraded += s.upgraded.Load()
	t.Rejected += s.rejected.Load()
	t.HTTPServed += s.httpServed.Load()
	t.HandshakeTimeouts += s.handshakeTimeouts.Load()
	t.HandshakesPending += s.hooksPending.Load()
	t.HookTimeouts += s.hookTimeouts.Load()
	t.HookQueueFull += s.hookQueueFull.Load()
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
	t.BytesIn += s.bytesIn.Load()
	t.BytesOut += s.bytesOut.Load()
	t.TLSHandshakes += s.tlsHandshakes.Load()
	t.TLSErrors += s.tlsErrors.Load()
	t.TLSRefused += s.tlsRefused.Load()
	for i := range t.Closes.ByCode {
		t.Closes.ByCode[i] += s.closes[i].Load()
	}
	t.Closes.Application += s.closes[16].Load()
	s.lim.addTo(t)
}
