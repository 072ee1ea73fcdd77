package engine

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

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

// Conn is one client connection. Its methods are safe to call from any
// goroutine unless their documentation says otherwise.
//
// A Conn is small on purpose: an idle connection costs this struct, the
// decoder embedded in it and gnet's own connection, nothing else.
type Conn struct {
	gc   gnet.Conn
	loop *Loop
	id   uint64

	hs          upgrade.State    // handshake scan position (8 bytes)
	req         *upgrade.Request // during OnOpen only
	session     any
	subprotocol string
	serial      *pool.Serial // with Config.Workers: the handler queue
	closeErr    error        // why the server closed, for OnClose

	dec codec.Decoder

	lastRead int64 // coarse clock: last bytes received
	lastMsg  int64 // coarse clock: last data message in or out
	deadline int64 // handshake or close deadline
	slot     int32 // index in loop.conns
	// fd is the socket, kept here so that the write path (one per
	// subscriber on a broadcast) need not touch gnet's connection at all.
	fd int32

	state   connState
	opened  bool // OnOpen was dispatched, so OnClose will be
	pinged  bool // a keepalive ping is outstanding
	decDead bool // the decoder failed: discard input until the peer goes
	// gnetHolds is set whenever bytes were handed to gnet, which may keep
	// what the socket did not take. While it is clear gnet's outbound buffer
	// is empty and the backlog is 0 without asking gnet (see backlog).
	gnetHolds bool
	closed    atomic.Bool
}

// ID is unique among the server's connections.
func (c *Conn) ID() uint64 { return c.id }

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.gc.RemoteAddr() }

// LocalAddr is the server's address of this connection.
func (c *Conn) LocalAddr() net.Addr { return c.gc.LocalAddr() }

// Session returns what Config.Authorize returned for this connection.
func (c *Conn) Session() any { return c.session }

// Subprotocol returns the negotiated subprotocol, or "".
func (c *Conn) Subprotocol() string { return c.subprotocol }

// Request returns the upgrade request. It is available during OnOpen only
// (nil afterwards), so that an open connection does not keep its headers.
func (c *Conn) Request() *upgrade.Request { return c.req }

// Send sends one message. From the connection's event loop (a handler
// running there) it writes directly; from any other goroutine it copies data
// and queues it to the loop. It returns ErrClosed once the connection is
// closing.
func (c *Conn) Send(typ MessageType, data []byte) error {
	if typ != TextMessage && typ != BinaryMessage {
		return errors.New("herald: Send: message type must be TextMessage or BinaryMessage")
	}
	if c.loop.onLoop() {
		if c.state != stateOpen {
			return ErrClosed
		}
		c.lastMsg = c.loop.srv.now()
		c.loop.stats.messagesOut.Add(1)
		return c.writeFrame(ws.OpCode(typ), data)
	}
	if c.closed.Load() {
		return ErrClosed
	}
	buf := pool.Get(codec.HeaderLen(len(data)) + len(data))
	buf.B = codec.AppendFrame(buf.B, ws.OpCode(typ), data)
	return c.loop.post(task{kind: taskFrame, c: c, buf: buf})
}

// SendText sends a text message. s must be valid UTF-8.
func (c *Conn) SendText(s string) error {
	return c.Send(TextMessage, []byte(s))
}

// SendBinary sends a binary message.
func (c *Conn) SendBinary(b []byte) error {
	return c.Send(BinaryMessage, b)
}

// Close starts the close handshake with code and reason (at most 123 bytes
// are sent). The connection is dropped if the peer does not answer within
// Config.CloseTimeout. Closing a closed connection returns ErrClosed.
func (c *Conn) Close(code StatusCode, reason string) error {
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

// Loop returns the event loop that serves c.
func (c *Conn) Loop() *Loop { return c.loop }

// WriteFrames writes bytes that already hold complete, encoded server frames
// (codec.AppendFrame), so that one encoding can serve many connections. It
// must be called on c's loop. MaxOutboundBytes applies as for Send: a
// connection whose backlog would pass it is closed with 1008.
func (c *Conn) WriteFrames(frames []byte) error {
	if c.state != stateOpen {
		return ErrClosed
	}
	if !c.writeEncoded(frames) {
		return ErrClosed
	}
	return nil
}

// Buffered returns the bytes queued for c that the peer has not read yet.
// It must be called on c's loop.
func (c *Conn) Buffered() int {
	if c.state == stateClosed {
		return 0
	}
	return c.backlog()
}

// IsOpen reports whether c is open: upgraded and not closing. It must be
// called on c's loop.
func (c *Conn) IsOpen() bool { return c.state == stateOpen }

// ---- loop-only methods below ----

// writeFrame sends one unfragmented frame, respecting MaxOutboundBytes.
func (c *Conn) writeFrame(op ws.OpCode, payload []byte) error {
	n := codec.HeaderLen(len(payload)) + len(payload)
	if !c.admit(n) {
		return ErrClosed
	}
	l := c.loop
	var err error
	if n <= smallFrame {
		l.scratch = codec.AppendFrame(l.scratch[:0], op, payload)
		err = c.write(l.scratch)
	} else {
		var hdr [codec.MaxHeaderLen]byte
		k := codec.PutHeader(hdr[:], op, true, false, len(payload))
		l.iov[0], l.iov[1] = hdr[:k], payload
		c.gnetHolds = true
		_, err = c.gc.Writev(l.iov[:])
		l.iov[0], l.iov[1] = nil, nil
	}
	return err
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
// writable, or closes the connection.
func (c *Conn) writeQueued(queued int, b []byte) error {
	if queued == 0 {
		n, errno := rawSend(int(c.fd), b)
		if errno == 0 && n == len(b) {
			return nil
		}
		b = b[n:]
	}
	return c.gnetWrite(b)
}

// gnetWrite hands b to gnet, which writes what the socket takes and keeps
// the rest until the socket is writable.
func (c *Conn) gnetWrite(b []byte) error {
	c.gnetHolds = true
	_, err := c.gc.Write(b)
	return err
}

// backlog returns the bytes gnet holds for c, asking gnet only when it may
// hold some: most connections never have a backlog, and reading gnet's
// connection for each of them would cost a cache miss per subscriber.
func (c *Conn) backlog() int {
	if !c.gnetHolds {
		return 0
	}
	n := c.gc.OutboundBuffered()
	if n == 0 {
		c.gnetHolds = false
	}
	return n
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
	c.startClose(StatusPolicyViolation, "outbound buffer limit exceeded", false)
	// The peer is not reading: waiting for its close frame is pointless.
	c.drop(nil)
	return false
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
	c.closeErr = &CloseError{Code: code, Reason: reason}
	c.deadline = c.loop.srv.now() + int64(c.loop.srv.cfg.CloseTimeout)
	c.writeClose(code, reason)
	if halfClose && c.state == stateClosing && c.backlog() == 0 {
		_ = syscall.Shutdown(int(c.fd), syscall.SHUT_WR)
	}
}

// writeClose sends a close frame. It bypasses MaxOutboundBytes: it is tiny
// and needed to end the connection properly.
func (c *Conn) writeClose(code StatusCode, reason string) {
	l := c.loop
	l.scratch = codec.AppendClose(l.scratch[:0], code, reason)
	_ = c.gnetWrite(l.scratch)
}

// drop closes the TCP connection now. err, if the server has not already
// recorded a reason, is what OnClose will receive.
func (c *Conn) drop(err error) {
	if c.state == stateClosed {
		return
	}
	if c.closeErr == nil {
		c.closeErr = err
	}
	c.state = stateClosed
	c.closed.Store(true)
	_ = c.gc.Close()
}
