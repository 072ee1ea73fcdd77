package engine

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"github.com/heraldws/herald/codec"
	"github.com/heraldws/herald/pool"
	"github.com/heraldws/herald/upgrade"
)

type connState uint8

const (
	stateHandshake connState = iota // reading the HTTP request head
	stateOpen                       // WebSocket open
	stateClosing                    // close frame sent, waiting for the peer's
	stateClosed                     // TCP close requested or done
)

const (
	opPing  = ws.OpPing
	opPong  = ws.OpPong
	opClose = ws.OpClose
)

// smallFrame is the largest frame assembled in the loop's scratch buffer;
// larger payloads go to writev beside their header, uncopied.
const smallFrame = 16 << 10

// rsv1 marks the first frame of a compressed message (RFC 7692).
const rsv1 = 0x40

// Conn is one client connection. Its methods are safe to call from any
// goroutine unless their documentation says otherwise.
//
// A Conn is small on purpose (TestConnSize pins its malloc size class): an
// idle connection costs this struct, its slot in its loop's list and
// gnet's own connection, nothing else. What only a handshake, a partial
// frame or a close needs is kept elsewhere or behind a pointer.
type Conn struct {
	gc   gnet.Conn
	loop *loop
	id   uint64
	// remote is kept because gnet's connection is recycled once closed,
	// and OnClose on a worker may still ask for it.
	remote  net.Addr
	session atomic.Pointer[any]

	// dec holds the decoder's state between two reads while the peer is
	// in the middle of a frame or a fragmented message; nil otherwise: a
	// read that starts at rest is decoded by the loop's decoder (see
	// loop.decoderFor), so an idle connection keeps no decoder.
	dec    *codec.Decoder
	req    *upgrade.Request // during OnOpen only
	serial *pool.Serial     // with Config.Workers: the handler queue
	// aux holds what a connection needs only while its 101 waits for
	// OnOpen or once it is closing; nil the rest of the time (see connAux).
	aux *connAux

	// Timer stamps, on the server's monotonic clock (Server.clock).
	lastRead time.Duration // last bytes received
	lastMsg  time.Duration // last data message in or out
	// deadline is the handshake deadline, then, while open, when the
	// outbound backlog last began or shrank (Config.WriteTimeout), then the
	// close deadline.
	deadline time.Duration

	hs   upgrade.State // handshake scan position (4 bytes)
	slot int32         // index in loop.conns
	// fd is the socket, kept here so that the write path (one per
	// subscriber on a broadcast) need not touch gnet's connection at all.
	fd int32
	// counted is c's backlog when last looked at: its part of loop.held,
	// and what tells a backlog that shrinks from one that makes no
	// progress (Config.WriteTimeout).
	counted int32
	// acked is the peer's acknowledged bytes (low 32 bits, never 0 once
	// sampled), sampled halfway through the current WriteTimeout period;
	// 0 until then. A backlog that keeps its size while the peer's kernel
	// still takes data (gnet refills the socket only once half of it is
	// free) is progress (loop.sweep, Conn.kernelProgress).
	acked  uint32
	closed atomic.Bool

	// proto is the negotiated subprotocol: its index in
	// Server.subprotocols plus one, 0 for none.
	proto uint8
	// deflate is how permessage-deflate was negotiated (deflateOff if
	// not), set before OnOpen runs and never changed: any goroutine may
	// read it.
	deflate deflateMode
	state   connState
	cause   closeCause // why OnClose is told the connection ended, if not aux.closeErr
	opened  bool       // OnOpen was dispatched, so OnClose will be
	bits    loopBits   // flags only the loop touches
	reqSeen bool       // Request was called: req is not reused (see releaseRequest)
	// gnetHolds is set whenever bytes were handed to gnet, which may keep
	// what the socket did not take. While it is clear gnet's outbound buffer
	// is empty and the backlog is 0 without asking gnet (see backlog).
	gnetHolds bool
}

// loopBits are a connection's flags that only its loop reads and writes,
// packed so that Conn stays in its size class.
type loopBits uint8

const (
	bitPinged  loopBits = 1 << iota // a keepalive ping is outstanding
	bitDecDead                      // the decoder failed: discard input until the peer goes
	// 1<<2 to 1<<6: the limits' bits (limits.go)

	// bitTLS: the connection speaks TLS (Config.TLS); its state is in its
	// loop's tlsConns (tls.go).
	bitTLS loopBits = 1 << 7
)

// has reports whether b is set. Loop only.
func (c *Conn) has(b loopBits) bool { return c.bits&b != 0 }

// set sets or clears b. Loop only.
func (c *Conn) set(b loopBits, on bool) {
	if on {
		c.bits |= b
	} else {
		c.bits &^= b
	}
}

// connAux is the part of a connection's state that only a connection being
// opened or closed needs, so that an open connection's Conn stays small.
// The loop keeps released ones for reuse (loop.newAux, loop.freeAux). Loop
// only.
type connAux struct {
	// hello holds the 101 while OnOpen runs, and whatever OnOpen sends
	// behind it, so that subscriptions made in OnOpen are in effect before
	// the client can read the 101. Nil once written.
	hello *bytebufferpool.ByteBuffer
	// closeErr is the close frame that ends the connection (the server's or
	// the peer's), for OnClose; Conn.cause, if set, tells OnClose why
	// instead.
	closeErr *CloseError
	// wait is the handshake parked while its hooks run on a handshake
	// worker (Config.HandshakeWorkers); nil otherwise.
	wait *hookWait
}

// hello returns the 101 waiting for OnOpen to return, or nil.
func (c *Conn) hello() *bytebufferpool.ByteBuffer {
	if a := c.aux; a != nil {
		return a.hello
	}
	return nil
}

// setCloseErr records the close frame that ends c.
func (c *Conn) setCloseErr(ce *CloseError) {
	if c.aux == nil {
		c.aux = c.loop.newAux()
	}
	c.aux.closeErr = ce
}

// closeCause is a reason OnClose gets other than a close frame.
type closeCause uint8

const (
	causeNone         closeCause = iota
	causeWriteTimeout            // ErrWriteTimeout, even after a close frame was sent
	causePongTimeout             // ErrPongTimeout
	causeCloseTimeout            // ErrCloseTimeout, unless a close frame was recorded
)

// closeReason is what OnClose receives: a write timeout, else the close
// frame that ended the connection, else the timeout that dropped it, else
// gnet's error, else io.EOF.
func (c *Conn) closeReason(netErr error) error {
	switch {
	case c.cause == causeWriteTimeout:
		return ErrWriteTimeout
	case c.aux != nil && c.aux.closeErr != nil:
		return c.aux.closeErr
	case c.cause == causePongTimeout:
		return ErrPongTimeout
	case c.cause == causeCloseTimeout:
		return ErrCloseTimeout
	case netErr != nil:
		return netErr
	}
	return io.EOF
}

// ID is unique among the server's connections.
func (c *Conn) ID() uint64 { return c.id }

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// Session returns the connection's session value: what Config.Authorize
// returned, or what SetSession stored last. Nil if neither.
func (c *Conn) Session() any {
	if p := c.session.Load(); p != nil {
		return *p
	}
	return nil
}

// SetSession stores per-connection state for the handlers (a user, a room,
// a rate limiter), replacing what Authorize returned. Safe from any
// goroutine.
func (c *Conn) SetSession(v any) { c.session.Store(&v) }

// Compression reports whether permessage-deflate was negotiated with the
// client (Config.Compression): its compressed messages are inflated for
// OnMessage, and Send compresses messages of at least
// Config.Compression.MinSize.
func (c *Conn) Compression() bool { return c.deflate != deflateOff }

// Subprotocol returns the negotiated subprotocol, or "".
func (c *Conn) Subprotocol() string {
	if c.proto == 0 {
		return ""
	}
	return c.loop.srv.subprotocols[c.proto-1]
}

// Request returns the upgrade request. It is available during OnOpen only
// (nil afterwards), so that an open connection does not keep its headers.
// What OnOpen takes from it (the path, a header value, a query parameter)
// stays valid after OnOpen.
func (c *Conn) Request() *upgrade.Request {
	// A request no handler looked at is reused by a later handshake (see
	// releaseRequest); one handed out is left to the collector, since the
	// handler may keep strings that point into it.
	c.reqSeen = true
	return c.req
}

// releaseRequest drops the upgrade request once OnOpen has returned, and
// lets a later handshake reuse its memory if no handler asked for it:
// tens of thousands of connects then leave no garbage behind, which
// otherwise lets the heap grow by up to a kilobyte per connection until the
// collector runs. It runs where OnOpen ran (the loop or a worker).
func (c *Conn) releaseRequest() {
	if !c.reqSeen {
		upgrade.ReleaseRequest(c.req)
	}
	c.req = nil
}

// Send sends one message. From the connection's event loop (a handler
// running there) it writes directly; from any other goroutine it copies data
// and queues it to the loop. A text message must be valid UTF-8
// (ErrInvalidUTF8 otherwise: browsers fail the connection on such a
// message). It returns ErrClosed once the connection is closing.
//
// With permessage-deflate negotiated (Compression), a message of at least
// Config.Compression.MinSize is compressed, on the caller's goroutine when
// that is not the loop, with a compressor from a pool.
func (c *Conn) Send(typ MessageType, data []byte) error {
	switch typ {
	case TextMessage:
		if !utf8.Valid(data) {
			return ErrInvalidUTF8
		}
	case BinaryMessage:
	default:
		return fmt.Errorf("herald: Send: message type %d is neither TextMessage nor BinaryMessage", typ)
	}
	if c.loop.onLoop() {
		if c.state != stateOpen {
			return ErrClosed
		}
		c.lastMsg = c.loop.now
		c.loop.stats.messagesOut.Add(1)
		if err := c.writeMessage(ws.OpCode(typ), data); err != nil {
			return err
		}
		if !c.checkBudget() {
			return ErrClosed
		}
		return nil
	}
	if c.closed.Load() {
		return ErrClosed
	}
	var buf *bytebufferpool.ByteBuffer
	if c.compresses(data) {
		buf = pool.Get(codec.CompressedFrameBound(len(data)))
		buf.B = c.deflate.appendFrame(buf.B, ws.OpCode(typ), data)
	} else {
		buf = pool.Get(codec.HeaderLen(len(data)) + len(data))
		buf.B = codec.AppendFrame(buf.B, ws.OpCode(typ), data)
	}
	return c.loop.post(task{kind: taskFrame, c: c, buf: buf})
}

// compresses reports whether a message with payload p goes out compressed:
// permessage-deflate was negotiated and p is at least MinSize. Safe from
// any goroutine.
func (c *Conn) compresses(p []byte) bool {
	return c.deflate != deflateOff && len(p) >= c.loop.srv.cfg.Compression.MinSize
}

// deflateMode is how a connection negotiated permessage-deflate.
type deflateMode uint8

const (
	deflateOff deflateMode = iota
	// deflateFull: the client allows the server's whole 32 KiB window.
	deflateFull
	// deflateHuffman: the client limited the server's window
	// (server_max_window_bits below 15), so the connection's messages are
	// compressed with Huffman codes only, which never refer back; the
	// hub's compressed frames, made with the whole window, are not for it.
	deflateHuffman
)

// appendFrame appends payload's frame compressed as m allows.
func (m deflateMode) appendFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	if m == deflateHuffman {
		return codec.AppendHuffmanFrame(dst, op, payload)
	}
	return codec.AppendCompressedFrame(dst, op, payload)
}

// SendText sends a text message. s must be valid UTF-8 (ErrInvalidUTF8
// otherwise).
func (c *Conn) SendText(s string) error {
	return c.Send(TextMessage, []byte(s))
}

// SendBinary sends a binary message.
func (c *Conn) SendBinary(b []byte) error {
	return c.Send(BinaryMessage, b)
}

// Close starts the close handshake with code and reason. code must be one a
// close frame may carry (StatusCode.Sendable: 1000-1003, 1007-1014,
// 3000-4999) and reason valid UTF-8 of at most MaxCloseReason (123) bytes;
// otherwise Close returns an error naming the rule and the connection stays
// open. The connection is dropped if the peer does not answer within
// Config.CloseTimeout. Closing a closing or closed connection returns
// ErrClosed.
func (c *Conn) Close(code StatusCode, reason string) error {
	if err := checkClose(code, reason); err != nil {
		return err
	}
	if c.loop.onLoop() {
		if c.state != stateOpen {
			return ErrClosed
		}
		c.startClose(code, reason, false)
		return nil
	}
	if c.closed.Load() {
		return ErrClosed
	}
	return c.loop.post(task{kind: taskClose, c: c, code: code, reason: reason})
}

// checkClose validates what Close would put on the wire.
func checkClose(code StatusCode, reason string) error {
	switch {
	case !code.Sendable():
		return fmt.Errorf("herald: Close: code %d may not be sent in a close frame (RFC 6455 section 7.4: use 1000-1003, 1007-1014 or 3000-4999)", int(code))
	case len(reason) > MaxCloseReason:
		return fmt.Errorf("herald: Close: reason is %d bytes, over the %d that fit in a close frame", len(reason), MaxCloseReason)
	case !utf8.ValidString(reason):
		return errors.New("herald: Close: reason is not valid UTF-8")
	}
	return nil
}

// ---- loop-only methods below ----

// writeMessage sends one data message as one frame, compressed if it
// should be (compresses), respecting MaxOutboundBytes.
func (c *Conn) writeMessage(op ws.OpCode, payload []byte) error {
	if !c.compresses(payload) {
		return c.writeFrame(op, payload)
	}
	// A small frame is compressed into the loop's scratch buffer, a large
	// one into a pooled buffer that goes back once gnet has what the socket
	// did not take (it copies it).
	l := c.loop
	var big *bytebufferpool.ByteBuffer
	var frame []byte
	if len(payload) <= smallFrame {
		l.scratch = c.deflate.appendFrame(l.scratch[:0], op, payload)
		frame = l.scratch
	} else {
		big = pool.Get(codec.CompressedFrameBound(len(payload)))
		big.B = c.deflate.appendFrame(big.B, op, payload)
		frame = big.B
	}
	if frame[0]&rsv1 != 0 {
		l.stats.compressedOut.Add(1)
	}
	err := ErrClosed
	if c.admit(len(frame)) {
		err = c.write(frame)
	}
	pool.Put(big)
	return err
}

// writeFrame sends one unfragmented frame, respecting MaxOutboundBytes.
func (c *Conn) writeFrame(op ws.OpCode, payload []byte) error {
	n := codec.HeaderLen(len(payload)) + len(payload)
	if !c.admit(n) {
		return ErrClosed
	}
	l := c.loop
	if n <= smallFrame || c.hello() != nil {
		l.scratch = codec.AppendFrame(l.scratch[:0], op, payload)
		return c.write(l.scratch)
	}
	if c.has(bitTLS) {
		// Encrypted as one piece: header and payload in one record stream.
		big := pool.Get(n)
		big.B = codec.AppendFrame(big.B, op, payload)
		err := c.write(big.B)
		pool.Put(big)
		return err
	}
	var hdr [codec.MaxHeaderLen]byte
	k := codec.PutHeader(hdr[:], op, true, false, len(payload))
	l.iov[0], l.iov[1] = hdr[:k], payload
	c.gnetHolds = true
	l.stats.bytesOut.Add(uint64(n))
	_, err := c.gc.Writev(l.iov[:])
	l.iov[0], l.iov[1] = nil, nil
	c.account(c.gc.OutboundBuffered())
	return err
}

// sendPongs answers the pings of the read being decoded since the last data
// message (so the order of pongs and replies is kept), in one write. While
// the peer keeps up every ping gets its pong. When unsent bytes wait for it
// only the latest ping is answered, which RFC 6455 (5.5.3) allows for pings
// not yet answered: a peer that floods pings and reads nothing then adds
// one pong per read to its backlog, not one per ping.
func (c *Conn) sendPongs() {
	l := c.loop
	if len(l.pongs) == 0 {
		return
	}
	b := l.pongs
	if c.state == stateOpen {
		if c.backlog() > 0 {
			b = b[l.lastPong:]
		}
		c.writeEncoded(b)
	}
	l.pongs = l.pongs[:0]
}

// writeEncoded sends bytes that already hold complete frames.
func (c *Conn) writeEncoded(b []byte) bool {
	if c.state != stateOpen {
		return false
	}
	queued := c.backlog()
	if !c.admitQueued(queued, len(b)) {
		return false
	}
	return c.writeQueued(queued, b) == nil
}

// write sends b.
func (c *Conn) write(b []byte) error {
	return c.writeQueued(c.backlog(), b)
}

// writeQueued sends b given the bytes already queued. When nothing is
// queued it tries a raw send first; what the socket does not take (or an
// error) goes to gnet, which buffers the rest, waits for the socket to be
// writable, or closes the connection. While the 101 waits for OnOpen, b
// joins it instead.
func (c *Conn) writeQueued(queued int, b []byte) error {
	if h := c.hello(); h != nil {
		h.B = append(h.B, b...)
		return nil
	}
	c.loop.stats.bytesOut.Add(uint64(len(b)))
	if c.has(bitTLS) {
		return c.tlsWrite(queued, b)
	}
	return c.wireWrite(queued, b)
}

// wireWrite puts b on the socket as it is (for a TLS connection: records
// already encrypted), given the bytes already queued. When nothing is
// queued it tries a raw send first; what the socket does not take (or an
// error) goes to gnet.
func (c *Conn) wireWrite(queued int, b []byte) error {
	if queued == 0 {
		n, errno := rawSend(int(c.fd), b)
		if errno == 0 && n == len(b) {
			return nil
		}
		b = b[n:]
	}
	return c.gnetWire(b)
}

// gnetWrite hands b to gnet, which writes what the socket takes and keeps
// the rest until the socket is writable; a TLS connection's b is encrypted
// first.
func (c *Conn) gnetWrite(b []byte) error {
	if c.has(bitTLS) {
		return c.tlsWrite(c.backlog(), b)
	}
	return c.gnetWire(b)
}

// gnetWire hands b to gnet as it is.
func (c *Conn) gnetWire(b []byte) error {
	c.gnetHolds = true
	_, err := c.gc.Write(b)
	c.account(c.gc.OutboundBuffered())
	return err
}

// sendHello writes the 101 and everything OnOpen queued behind it, in one
// write.
func (c *Conn) sendHello() {
	h := c.hello()
	if h == nil {
		return
	}
	c.aux.hello = nil
	if c.aux.closeErr == nil {
		c.loop.freeAux(c.aux)
		c.aux = nil
	}
	if c.state != stateClosed {
		_ = c.writeQueued(c.backlog(), h.B)
	}
	pool.Put(h)
}

// backlog returns the bytes queued for c that the peer has not read, asking
// gnet only when it may hold some: most connections never have a backlog,
// and reading gnet's connection for each of them would cost a cache miss per
// subscriber.
func (c *Conn) backlog() int {
	if h := c.hello(); h != nil {
		return len(h.B)
	}
	if !c.gnetHolds {
		return 0
	}
	n := c.gc.OutboundBuffered()
	c.account(n)
	if n == 0 {
		c.gnetHolds = false
	}
	return n
}

// account records that gnet holds n bytes for c, so that the loop's total
// (loop.held, bounded by Config.MaxOutboundTotal) is exact as of the last
// look at each connection. A backlog that drained unseen is counted until
// the next look: the total errs on the high side.
//
// While c is open, a backlog that begins, or one seen smaller than at the
// previous look (the peer read some of it), restarts the WriteTimeout
// clock, which Conn.deadline holds while open.
func (c *Conn) account(n int) {
	n32 := int32(min(n, math.MaxInt32))
	if n32 == c.counted {
		return
	}
	if c.state == stateOpen && (c.counted == 0 || n32 < c.counted) {
		c.deadline = c.loop.now
		c.acked = 0
	}
	if held := c.loop.held.Add(int64(n32 - c.counted)); n32 > c.counted {
		notePeak(&c.loop.peak, held)
	}
	c.counted = n32
}

// admit reports whether n more bytes may be queued; if not, the connection
// is a slow consumer and is closed with 1008. A lone message larger than the
// bound is admitted when nothing is queued, so MaxOutboundBytes bounds the
// backlog, not the message size.
func (c *Conn) admit(n int) bool {
	if c.state != stateOpen {
		return false
	}
	return c.admitQueued(c.backlog(), n)
}

func (c *Conn) admitQueued(queued, n int) bool {
	if queued == 0 || queued+n <= c.loop.srv.cfg.MaxOutboundBytes {
		return true
	}
	c.loop.stats.slowClosed.Add(1)
	c.shed("outbound buffer limit exceeded")
	return false
}

// checkBudget sheds c if a direct send left it a backlog while its loop is
// over its share of Config.MaxOutboundTotal: what the socket did not take
// must not stay in memory past the budget. It reports whether c is still
// open. (The hub's writes skip it: the hub applies the topic's policy.)
func (c *Conn) checkBudget() bool {
	if c.counted > 0 && c.state == stateOpen && c.loop.overBudget(0) {
		c.loop.stats.budgetShed.Add(1)
		c.shed("server outbound budget exceeded")
	}
	return c.state == stateOpen
}

// shed closes a connection that is not reading with 1008: waiting for its
// close frame is pointless.
func (c *Conn) shed(reason string) {
	c.startClose(StatusPolicyViolation, reason, false)
	c.drop(causeNone)
}

// startClose sends a close frame and waits for the peer's (stateClosing).
// halfClose also shuts down our sending side, used after a protocol error:
// the peer sees the close frame and then EOF at once, and the bytes it still
// sends are read and discarded instead of turning our close into a reset.
func (c *Conn) startClose(code StatusCode, reason string, halfClose bool) {
	if c.state != stateOpen {
		return
	}
	c.state = stateClosing
	c.closed.Store(true)
	c.setCloseErr(&CloseError{Code: code, Reason: reason})
	c.deadline = c.loop.now + c.loop.srv.cfg.CloseTimeout
	c.writeClose(code, reason)
	if halfClose && c.state == stateClosing && c.backlog() == 0 {
		_ = syscall.Shutdown(int(c.fd), syscall.SHUT_WR)
	}
}

// writeClose sends a close frame. It bypasses MaxOutboundBytes: it is tiny
// and needed to end the connection properly.
func (c *Conn) writeClose(code StatusCode, reason string) {
	l := c.loop
	l.scratch = codec.AppendClose(l.scratch[:0], ws.StatusCode(code), reason)
	if h := c.hello(); h != nil {
		h.B = append(h.B, l.scratch...)
		return
	}
	l.stats.bytesOut.Add(uint64(len(l.scratch)))
	_ = c.gnetWrite(l.scratch)
}

// drop closes the TCP connection now. cause, unless a close frame was
// recorded, is what OnClose will be told (see closeReason).
func (c *Conn) drop(cause closeCause) {
	if c.state == stateClosed {
		return
	}
	if c.cause == causeNone {
		c.cause = cause
	}
	if c.has(bitTLS) {
		c.loop.tlsCloseNotify(c)
	}
	c.state = stateClosed
	c.closed.Store(true)
	_ = c.gc.Close()
}
