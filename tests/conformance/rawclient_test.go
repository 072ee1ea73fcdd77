package conformance

// A raw RFC 6455 client for the conformance suite, built on internal/wsframe.
// It writes frames exactly as a case describes them (any opcode, FIN, RSV
// bits, mask or no mask, any length encoding, a length field that promises
// more than is sent), splits its writes as told, and reads the server's
// frames strictly: a server frame that is masked, carries RSV bits, uses a
// non-minimal length or breaks the fragmentation rules fails the test.
//
// It answers the server's pings as any client would: while it waits for
// what a case expects, a ping is answered with a pong carrying the same
// payload and skipped. Waits are bounded by hangGuard, which is no speed
// requirement: it only turns a server that never answers into a failure
// instead of a hung suite.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/heraldws/herald/internal/wsframe"
)

// Opcodes (RFC 6455 section 5.2).
const (
	opCont   = wsframe.OpContinuation
	opText   = wsframe.OpText
	opBinary = wsframe.OpBinary
	opClose  = wsframe.OpClose
	opPing   = wsframe.OpPing
	opPong   = wsframe.OpPong
)

// RSV bits as they sit in the first header byte.
const (
	rsv1 = wsframe.RSV1
	rsv2 = wsframe.RSV2
	rsv3 = wsframe.RSV3
)

// closeEmpty stands for a close frame without a payload (no status code).
const closeEmpty = -1

const (
	// hangGuard bounds every wait for the server (each read), every client
	// write and every dial. A conforming server answers long before it on
	// any machine, however loaded; the guard only ends the wait for one that
	// never does.
	hangGuard = 60 * time.Second
	// maxServerFrame guards the client against a bogus length from the server.
	maxServerFrame = 80 << 20
)

// frame is one frame the client writes, well-formed or not: wsframe's
// builder (NoFin, WithRSV, Unmasked, LengthField, Declare).
type frame = wsframe.Frame

func dataFrame(op byte, p []byte) frame { return wsframe.New(op, p) }
func textFrame(s string) frame          { return wsframe.New(opText, []byte(s)) }
func textBytes(p []byte) frame          { return wsframe.New(opText, p) }
func binFrame(p []byte) frame           { return wsframe.New(opBinary, p) }
func contFrame(p []byte) frame          { return wsframe.New(opCont, p) }
func contText(s string) frame           { return wsframe.New(opCont, []byte(s)) }
func pingFrame(p []byte) frame          { return wsframe.New(opPing, p) }
func pongFrame(p []byte) frame          { return wsframe.New(opPong, p) }
func closeRaw(p []byte) frame           { return wsframe.New(opClose, p) }

// closeFrame builds a close frame; code closeEmpty gives an empty payload.
func closeFrame(code int, reason string) frame {
	return closeRaw(closePayload(code, reason))
}

func closePayload(code int, reason string) []byte {
	if code == closeEmpty {
		return nil
	}
	return wsframe.AppendClosePayload(nil, uint16(code), reason)
}

// wmode says how bytes go on the wire. Pauses shape how the server receives
// the bytes (in separate reads, most of the time); no case depends on them
// for its outcome.
type wmode struct {
	chunk    int           // write in pieces of this many bytes; 0 = one write
	random   bool          // piece sizes random in [1, chunk]
	pause    time.Duration // sleep between pieces (or between frames with perFrame)
	perFrame bool          // each frame in its own write
}

var (
	whole    = wmode{}
	bytewise = wmode{chunk: 1}
)

func chopped(n int) wmode                    { return wmode{chunk: n} }
func randomChops(max int) wmode              { return wmode{chunk: max, random: true} }
func framewise(pause time.Duration) wmode    { return wmode{perFrame: true, pause: pause} }
func slowChops(n int, p time.Duration) wmode { return wmode{chunk: n, pause: p} }

type writeJob struct {
	data  []byte
	mode  wmode
	sleep time.Duration
	done  chan struct{}
}

// event is what the server delivered: a complete message (text or binary,
// reassembled from its fragments and inflated if it came compressed) or
// one control frame, in the order they completed on the wire.
type event struct {
	op         byte
	payload    []byte
	frames     int
	compressed bool // RSV1 on the message's first frame (permessage-deflate)
}

// wsConn is one client connection. Reads happen on the test goroutine; writes
// go through a writer goroutine, in the order they were queued, so a case can
// read echoes while a large send is still in flight.
type wsConn struct {
	t    testing.TB
	conn net.Conn
	dr   *deadlineReader
	br   *bufio.Reader

	wq    chan writeJob
	wdone chan struct{}
	wrng  *mrand.Rand // writer goroutine only

	sentClose bool // a frame with the close opcode was queued
	// deflate: permessage-deflate was negotiated; server frames may carry
	// RSV1 on a message's first frame, and such messages are inflated.
	deflate bool
	// midFrame: the queued bytes end inside a frame (a length field that
	// promises more than was sent, or raw bytes), so nothing queued after
	// them could be read as a frame of its own: pings go unanswered.
	midFrame bool
	pings    int  // server pings received while waiting
	done     bool // the close handshake finished and TCP is closed
	partial  *event
	stopOnce sync.Once
}

// deadlineReader gives every read its own deadline.
type deadlineReader struct {
	conn    net.Conn
	timeout time.Duration
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if err := d.conn.SetReadDeadline(time.Now().Add(d.timeout)); err != nil {
		return 0, err
	}
	return d.conn.Read(p)
}

// dialTCP opens a TCP connection without a handshake.
func dialTCP(t testing.TB, addr string) *wsConn {
	t.Helper()
	conn, err := dialConn(addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	dr := &deadlineReader{conn: conn, timeout: hangGuard}
	seed := uint64(time.Now().UnixNano())
	c := &wsConn{
		t:     t,
		conn:  conn,
		dr:    dr,
		br:    bufio.NewReaderSize(dr, 64<<10),
		wq:    make(chan writeJob, 1024),
		wdone: make(chan struct{}),
		wrng:  mrand.New(mrand.NewPCG(seed, seed>>7|1)),
	}
	go c.writer()
	t.Cleanup(c.stop)
	return c
}

// stop closes the socket and waits for the writer goroutine.
func (c *wsConn) stop() {
	c.stopOnce.Do(func() {
		c.conn.Close()
		close(c.wq)
		<-c.wdone
	})
}

func (c *wsConn) writer() {
	defer close(c.wdone)
	failed := false
	for job := range c.wq {
		if job.sleep > 0 {
			time.Sleep(job.sleep)
		}
		if !failed && len(job.data) > 0 {
			// Writes fail legitimately once the server has closed a
			// connection it failed: the rest are skipped.
			failed = c.writeChunks(job.data, job.mode) != nil
		}
		if job.done != nil {
			close(job.done)
		}
	}
}

func (c *wsConn) writeChunks(b []byte, m wmode) error {
	for len(b) > 0 {
		n := len(b)
		if m.chunk > 0 {
			n = m.chunk
			if m.random {
				n = 1 + c.wrng.IntN(m.chunk)
			}
			n = min(n, len(b))
		}
		if err := c.conn.SetWriteDeadline(time.Now().Add(hangGuard)); err != nil {
			return err
		}
		if _, err := c.conn.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
		if len(b) > 0 && m.pause > 0 {
			time.Sleep(m.pause)
		}
	}
	return nil
}

// queue hands bytes to the writer without waiting.
func (c *wsConn) queue(b []byte, m wmode) {
	c.wq <- writeJob{data: b, mode: m}
}

// queueSleep makes the writer pause before the next queued write.
func (c *wsConn) queueSleep(d time.Duration) {
	c.wq <- writeJob{sleep: d}
}

// flush waits until everything queued so far was written (or failed).
func (c *wsConn) flush() {
	done := make(chan struct{})
	c.wq <- writeJob{done: done}
	select {
	case <-done:
	case <-time.After(2 * hangGuard):
		c.t.Fatalf("client writes did not complete in %v", 2*hangGuard)
	}
}

// sendFrames queues frames written according to m.
func (c *wsConn) sendFrames(m wmode, frames ...frame) {
	for _, f := range frames {
		if f.Op() == opClose {
			c.sentClose = true
		}
		if !f.Complete() {
			c.midFrame = true
		}
	}
	if m.perFrame {
		inner := wmode{chunk: m.chunk, random: m.random}
		for i, f := range frames {
			if i > 0 && m.pause > 0 {
				c.queueSleep(m.pause)
			}
			c.queue(f.Bytes(), inner)
		}
		return
	}
	var buf []byte
	for _, f := range frames {
		buf = f.Append(buf, wsframe.NewKey())
	}
	c.queue(buf, m)
}

// sendRawBytes queues bytes that need not end on a frame boundary.
func (c *wsConn) sendRawBytes(b []byte, m wmode) {
	c.midFrame = true
	c.queue(b, m)
}

// answerPing answers a server ping the way any client does: a pong with
// the same payload, after whatever the client already queued. A client
// that is inside a frame, or has sent its close, cannot answer.
func (c *wsConn) answerPing(p []byte) {
	c.pings++
	if c.sentClose || c.midFrame {
		c.t.Logf("server ping (%d bytes) left unanswered: the client is past its close or inside a frame", len(p))
		return
	}
	c.queue(wsframe.AppendPong(nil, p, wsframe.NewKey()), whole)
}

// handshake sends an upgrade request and checks the 101 answer.
func (c *wsConn) handshake(path string) {
	c.t.Helper()
	key := wsframe.NewRequestKey()
	c.queue(wsframe.AppendRequest(nil, c.conn.RemoteAddr().String(), path, key), whole)
	c.expectUpgrade(key)
}

// expectUpgrade reads the server's answer to a request with key and checks
// that it is a 101 per RFC 6455 section 4.2.2: status, Upgrade, Connection,
// Sec-WebSocket-Accept, and no extension or subprotocol (none was offered).
func (c *wsConn) expectUpgrade(key string) {
	c.t.Helper()
	head, err := wsframe.ReadHead(c.br)
	if err != nil {
		c.t.Fatalf("reading the handshake response: %s", c.describeErr(err))
	}
	if _, err := wsframe.ParseResponse(head, key); err != nil {
		c.t.Fatalf("handshake: %v\n%s", err, head)
	}
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), token) {
				return true
			}
		}
	}
	return false
}

// readResponse reads an HTTP response head from the connection.
func (c *wsConn) readResponse() *http.Response {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.t.Fatalf("reading HTTP response: %v", err)
	}
	return resp
}

// dialWS connects and completes the opening handshake on path "/".
func dialWS(t testing.TB, addr string) *wsConn {
	t.Helper()
	c := dialTCP(t, addr)
	c.handshake("/")
	return c
}

// readFrame reads one server frame and fails the test on any framing
// violation by the server. I/O errors are returned.
func (c *wsConn) readFrame() (wsframe.Header, []byte, error) {
	c.t.Helper()
	read := wsframe.ReadFrame
	if c.deflate {
		read = wsframe.ReadFrameDeflate
	}
	h, p, err := read(c.br, nil, maxServerFrame)
	if wsframe.IsProtocolError(err) {
		c.t.Fatalf("%v", err)
	}
	return h, p, err
}

// next returns the next complete event from the server, answering and
// skipping its pings.
func (c *wsConn) next() (event, error) {
	c.t.Helper()
	return c.nextEvent(false)
}

// nextEvent is next; with keepPings, a server ping is returned as an event
// (and not answered) for a case that expects it.
func (c *wsConn) nextEvent(keepPings bool) (event, error) {
	c.t.Helper()
	for {
		h, p, err := c.readFrame()
		if err != nil {
			return event{}, err
		}
		switch h.Op {
		case opPing:
			if !keepPings {
				c.answerPing(p)
				continue
			}
			return event{op: h.Op, payload: p, frames: 1}, nil
		case opClose:
			if err := wsframe.CheckClose(p); err != nil {
				c.t.Fatalf("%v", err)
			}
			return event{op: h.Op, payload: p, frames: 1}, nil
		case opPong:
			return event{op: h.Op, payload: p, frames: 1}, nil
		case opText, opBinary:
			if c.partial != nil {
				c.t.Fatalf("server started a new %s message while a fragmented message was in progress", opName(h.Op))
			}
			ev := &event{op: h.Op, payload: p, frames: 1, compressed: h.Compressed}
			if !h.Fin {
				c.partial = ev
				continue
			}
			c.inflate(ev)
			c.checkMessage(*ev)
			return *ev, nil
		case opCont:
			if c.partial == nil {
				c.t.Fatalf("server sent a continuation frame with no message in progress")
			}
			c.partial.payload = append(c.partial.payload, p...)
			c.partial.frames++
			if !h.Fin {
				continue
			}
			ev := *c.partial
			c.partial = nil
			c.inflate(&ev)
			c.checkMessage(ev)
			return ev, nil
		}
	}
}

// inflate inflates a compressed message in place. A server message that
// does not inflate breaks RFC 7692 and fails the test.
func (c *wsConn) inflate(ev *event) {
	c.t.Helper()
	if !ev.compressed {
		return
	}
	p, err := wsframe.Inflate(ev.payload, maxServerFrame)
	if err != nil {
		c.t.Fatalf("server's compressed %s message: %v", opName(ev.op), err)
	}
	ev.payload = p
}

func (c *wsConn) checkMessage(ev event) {
	c.t.Helper()
	if ev.op == opText && !utf8.Valid(ev.payload) {
		c.t.Fatalf("server sent a text message that is not valid UTF-8: %s", describe(ev.op, ev.payload))
	}
}

func closeCode(p []byte) int {
	if len(p) < 2 {
		return closeEmpty
	}
	return int(wsframe.CloseCode(p))
}

func opName(op byte) string {
	switch op {
	case opCont:
		return "continuation"
	case opText:
		return "text"
	case opBinary:
		return "binary"
	case opClose:
		return "close"
	case opPing:
		return "ping"
	case opPong:
		return "pong"
	}
	return fmt.Sprintf("opcode-%#x", op)
}

// describe renders a payload for failure messages without dumping megabytes.
func describe(op byte, p []byte) string {
	if op == opClose {
		if len(p) < 2 {
			return fmt.Sprintf("close(no code, %d bytes)", len(p))
		}
		return fmt.Sprintf("close(%d, reason %q)", closeCode(p), p[2:])
	}
	if len(p) <= 64 {
		return fmt.Sprintf("%s(%d bytes: %q)", opName(op), len(p), p)
	}
	sum := sha256.Sum256(p)
	return fmt.Sprintf("%s(%d bytes, sha256 %x…, starts %q)", opName(op), len(p), sum[:6], p[:24])
}

func describeEvent(ev event) string {
	s := describe(ev.op, ev.payload)
	if ev.frames > 1 {
		s += fmt.Sprintf(" in %d frames", ev.frames)
	}
	return s
}

// describeErr explains why the next event could not be read.
func (c *wsConn) describeErr(err error) string {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Sprintf("nothing within %v (the hang guard: the server never answered)", c.dr.timeout)
	case isClosedErr(err):
		s := fmt.Sprintf("TCP closed by server (%v)", err)
		if c.partial != nil {
			s += fmt.Sprintf(" during a %s message after %d frames", opName(c.partial.op), c.partial.frames)
		}
		return s
	}
	return err.Error()
}

func isClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// expectEvent reads the next event and checks it. Server pings are
// answered and skipped unless op is opPing.
func (c *wsConn) expectEvent(op byte, payload []byte) {
	c.t.Helper()
	ev, err := c.nextEvent(op == opPing)
	if err != nil {
		c.t.Fatalf("want %s, got %s", describe(op, payload), c.describeErr(err))
	}
	if ev.op != op || !bytes.Equal(ev.payload, payload) {
		c.t.Fatalf("want %s, got %s%s", describe(op, payload), describeEvent(ev), firstDiff(payload, ev.payload))
	}
}

func firstDiff(want, got []byte) string {
	if len(want) <= 64 && len(got) <= 64 {
		return ""
	}
	for i := range min(len(want), len(got)) {
		if want[i] != got[i] {
			return fmt.Sprintf(" (first difference at offset %d)", i)
		}
	}
	return fmt.Sprintf(" (lengths differ: want %d, got %d)", len(want), len(got))
}

// expectClose reads the server's close frame, checks its code (one of codes;
// closeEmpty means an empty payload), answers it if the client did not
// start the close, and checks that the server then closes TCP.
func (c *wsConn) expectClose(codes []int, reason *string) {
	c.t.Helper()
	ev, err := c.next()
	if err != nil {
		c.t.Fatalf("want a close frame with code %s, got %s", codesString(codes), c.describeErr(err))
	}
	if ev.op != opClose {
		c.t.Fatalf("want a close frame with code %s, got %s", codesString(codes), describeEvent(ev))
	}
	got := closeCode(ev.payload)
	ok := false
	for _, want := range codes {
		ok = ok || got == want
	}
	if !ok {
		c.t.Fatalf("want close code %s, got %s", codesString(codes), describe(opClose, ev.payload))
	}
	if reason != nil && got != closeEmpty && string(ev.payload[2:]) != *reason {
		c.t.Fatalf("want close reason %q echoed, got %q", *reason, ev.payload[2:])
	}
	if !c.sentClose {
		c.sendFrames(whole, closeRaw(ev.payload))
	}
	c.expectTCPClose()
}

func codesString(codes []int) string {
	parts := make([]string, len(codes))
	for i, code := range codes {
		if code == closeEmpty {
			parts[i] = "(none)"
		} else {
			parts[i] = fmt.Sprint(code)
		}
	}
	return strings.Join(parts, " or ")
}

// expectTCPClose checks that the server closes the connection, and sends
// nothing more, once the close handshake is over. The suite's server has a
// close timeout far beyond the hang guard, so the close can only be the
// server's answer to the handshake (RFC 6455 7.1.1: the server closes TCP
// first), never its timer.
func (c *wsConn) expectTCPClose() {
	c.t.Helper()
	var buf [256]byte
	n, err := c.br.Read(buf[:])
	if n > 0 {
		c.t.Fatalf("server sent %d more bytes after its close frame: %q", n, buf[:n])
	}
	switch {
	case err == nil:
		c.t.Fatalf("empty read while waiting for the TCP close")
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.t.Fatalf("server did not close TCP after the close handshake (waited %v)", c.dr.timeout)
	case !isClosedErr(err):
		c.t.Fatalf("waiting for the TCP close: %v", err)
	}
	c.done = true
}

// expectSilence checks that the server sends nothing for d but its pings
// (answered). It cannot fail because the machine is slow: a slow server
// is only silent longer. Nor can a slow server pass it by sending late what
// it should not have sent: every case reads on after it, and whatever the
// server sent arrives before the answer that case expects next.
func (c *wsConn) expectSilence(d time.Duration) {
	c.t.Helper()
	end := time.Now().Add(d)
	for {
		left := time.Until(end)
		if left <= 0 {
			return
		}
		c.dr.timeout = left
		_, err := c.br.Peek(1)
		c.dr.timeout = hangGuard
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
		if err != nil {
			c.t.Fatalf("want silence for %v, got %s", d, c.describeErr(err))
		}
		h, p, err := c.readFrame()
		if err != nil {
			c.t.Fatalf("want silence for %v, got %s", d, c.describeErr(err))
		}
		if h.Op == opPing {
			c.answerPing(p)
			continue
		}
		c.t.Fatalf("want silence for %v, got %s", d, describe(h.Op, p))
	}
}

// closeNormally runs a client-initiated close handshake with code 1000.
func (c *wsConn) closeNormally() {
	c.t.Helper()
	c.sendFrames(whole, closeFrame(1000, ""))
	c.expectClose([]int{1000}, nil)
}
