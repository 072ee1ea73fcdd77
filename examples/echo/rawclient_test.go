package main

// A raw RFC 6455 client for the conformance suite. It writes frames byte by
// byte exactly as a case describes them (any opcode, FIN, RSV bits, mask or no
// mask, any length encoding, a length field that promises more than is sent),
// splits its writes as told, and reads the server's frames strictly: a server
// frame that is masked, carries RSV bits, uses a non-minimal length or breaks
// the fragmentation rules fails the test. Every read has a deadline, so a
// server that stops answering fails a case instead of hanging the suite.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
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
)

// Opcodes (RFC 6455 section 5.2).
const (
	opCont   byte = 0x0
	opText   byte = 0x1
	opBinary byte = 0x2
	opClose  byte = 0x8
	opPing   byte = 0x9
	opPong   byte = 0xA
)

// RSV bits as they sit in the first header byte.
const (
	rsv1 byte = 0x40
	rsv2 byte = 0x20
	rsv3 byte = 0x10
)

// closeEmpty stands for a close frame without a payload (no status code).
const closeEmpty = -1

const (
	// defaultReadTimeout bounds every wait for the server's next bytes.
	defaultReadTimeout = 5 * time.Second
	// failFastTimeout bounds the wait for the answer to bytes that are
	// already invalid while the rest of the message is never sent.
	failFastTimeout = 2 * time.Second
	// tcpCloseTimeout is how long the server has to close TCP once the close
	// handshake is over.
	tcpCloseTimeout = time.Second
	// writeTimeout bounds one write call of the client.
	writeTimeout = 20 * time.Second
	// maxServerFrame guards the client against a bogus length from the server.
	maxServerFrame = 80 << 20
)

const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// frame is one frame the client writes. The zero value of every modifier is
// the well-formed choice: FIN set, no RSV bits, masked, minimal length.
type frame struct {
	op        byte
	more      bool // FIN clear
	rsv       byte // any of rsv1|rsv2|rsv3
	payload   []byte
	unmasked  bool
	lenSize   int // 0: minimal; 1: 7-bit; 2: 16-bit; 8: 64-bit length field
	announce  uint64
	announced bool // length field says announce instead of len(payload)
}

func dataFrame(op byte, p []byte) frame { return frame{op: op, payload: p} }
func textFrame(s string) frame          { return frame{op: opText, payload: []byte(s)} }
func textBytes(p []byte) frame          { return frame{op: opText, payload: p} }
func binFrame(p []byte) frame           { return frame{op: opBinary, payload: p} }
func contFrame(p []byte) frame          { return frame{op: opCont, payload: p} }
func contText(s string) frame           { return frame{op: opCont, payload: []byte(s)} }
func pingFrame(p []byte) frame          { return frame{op: opPing, payload: p} }
func pongFrame(p []byte) frame          { return frame{op: opPong, payload: p} }
func closeRaw(p []byte) frame           { return frame{op: opClose, payload: p} }

// closeFrame builds a close frame; code closeEmpty gives an empty payload.
func closeFrame(code int, reason string) frame {
	return closeRaw(closePayload(code, reason))
}

func closePayload(code int, reason string) []byte {
	if code == closeEmpty {
		return nil
	}
	p := binary.BigEndian.AppendUint16(nil, uint16(code))
	return append(p, reason...)
}

func (f frame) nofin() frame               { f.more = true; return f }
func (f frame) withRSV(bits byte) frame    { f.rsv = bits; return f }
func (f frame) unmask() frame              { f.unmasked = true; return f }
func (f frame) lengthField(size int) frame { f.lenSize = size; return f }

// declare makes the length field say n whatever the payload really is, for
// frames whose payload is sent only in part (or not at all).
func (f frame) declare(n uint64) frame { f.announce, f.announced = n, true; return f }

// bytes encodes the frame with a fresh non-zero masking key.
func (f frame) bytes() []byte {
	n := uint64(len(f.payload))
	if f.announced {
		n = f.announce
	}
	size := f.lenSize
	if size == 0 {
		switch {
		case n <= 125:
			size = 1
		case n <= 0xffff:
			size = 2
		default:
			size = 8
		}
	}
	b0 := f.op&0x0f | f.rsv&0x70
	if !f.more {
		b0 |= 0x80
	}
	var maskBit byte = 0x80
	if f.unmasked {
		maskBit = 0
	}
	out := make([]byte, 0, 14+len(f.payload))
	switch size {
	case 1:
		if n > 125 {
			panic(fmt.Sprintf("frame: length %d does not fit a 7-bit length field", n))
		}
		out = append(out, b0, maskBit|byte(n))
	case 2:
		if n > 0xffff {
			panic(fmt.Sprintf("frame: length %d does not fit a 16-bit length field", n))
		}
		out = append(out, b0, maskBit|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	case 8:
		out = append(out, b0, maskBit|127)
		out = binary.BigEndian.AppendUint64(out, n)
	default:
		panic(fmt.Sprintf("frame: bad length field size %d", size))
	}
	if f.unmasked {
		return append(out, f.payload...)
	}
	var key [4]byte
	for key == [4]byte{} {
		if _, err := rand.Read(key[:]); err != nil {
			panic(err)
		}
	}
	out = append(out, key[:]...)
	start := len(out)
	out = append(out, f.payload...)
	maskBytes(out[start:], key)
	return out
}

// maskBytes XORs b with the masking key, eight bytes at a time.
func maskBytes(b []byte, key [4]byte) {
	k4 := uint64(binary.LittleEndian.Uint32(key[:]))
	k8 := k4 | k4<<32
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^k8)
	}
	for ; i < len(b); i++ {
		b[i] ^= key[i&3]
	}
}

// wmode says how bytes go on the wire.
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
// reassembled from its fragments) or one control frame, in the order they
// completed on the wire.
type event struct {
	op      byte
	payload []byte
	frames  int
}

// wsConn is one client connection. Reads happen on the test goroutine; writes
// go through a writer goroutine so a case can read echoes while a large send
// is still in flight.
type wsConn struct {
	t    testing.TB
	name string
	conn net.Conn
	dr   *deadlineReader
	br   *bufio.Reader

	wq    chan writeJob
	wdone chan struct{}
	wmu   sync.Mutex
	werr  error
	wrng  *mrand.Rand // writer goroutine only

	readTimeout time.Duration // per-read timeout outside close checks

	sentClose bool // a frame with the close opcode was queued
	done      bool // the close handshake finished and TCP is closed
	partial   *event
	stopOnce  sync.Once
}

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
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	dr := &deadlineReader{conn: conn, timeout: defaultReadTimeout}
	seed := uint64(time.Now().UnixNano())
	c := &wsConn{
		t:     t,
		name:  t.Name(),
		conn:  conn,
		dr:    dr,
		br:    bufio.NewReaderSize(dr, 64<<10),
		wq:    make(chan writeJob, 1024),
		wdone: make(chan struct{}),
		wrng:  mrand.New(mrand.NewPCG(seed, seed>>7|1)),

		readTimeout: defaultReadTimeout,
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
			if err := c.writeChunks(job.data, job.mode); err != nil {
				failed = true
				c.wmu.Lock()
				c.werr = err
				c.wmu.Unlock()
			}
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
		if err := c.conn.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
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

// writeErr reports the first failed write, if any. Writes fail legitimately
// once the server has closed a connection it failed.
func (c *wsConn) writeErr() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.werr
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
	case <-time.After(2 * writeTimeout):
		c.t.Fatalf("client writes did not complete in %v", 2*writeTimeout)
	}
}

// sendFrames queues frames written according to m.
func (c *wsConn) sendFrames(m wmode, frames ...frame) {
	for _, f := range frames {
		if f.op == opClose {
			c.sentClose = true
		}
	}
	if m.perFrame {
		inner := wmode{chunk: m.chunk, random: m.random}
		for i, f := range frames {
			if i > 0 && m.pause > 0 {
				c.queueSleep(m.pause)
			}
			c.queue(f.bytes(), inner)
		}
		return
	}
	var buf []byte
	for _, f := range frames {
		buf = append(buf, f.bytes()...)
	}
	c.queue(buf, m)
}

// handshake sends an upgrade request and checks the 101 answer.
func (c *wsConn) handshake(path string, extra ...string) {
	c.t.Helper()
	keyRaw := make([]byte, 16)
	if _, err := rand.Read(keyRaw); err != nil {
		c.t.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString(keyRaw)
	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", path, c.conn.RemoteAddr(), key)
	for _, h := range extra {
		req.WriteString(h + "\r\n")
	}
	req.WriteString("\r\n")
	c.queue([]byte(req.String()), whole)
	resp := c.readResponse()
	checkUpgradeResponse(c.t, resp, key)
}

// checkUpgradeResponse verifies a 101 answer per RFC 6455 section 4.2.2.
func checkUpgradeResponse(t testing.TB, resp *http.Response, key string) {
	t.Helper()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: status %q, want 101", resp.Status)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		t.Fatalf("handshake: Upgrade header %q, want websocket", resp.Header.Get("Upgrade"))
	}
	if !headerHasToken(resp.Header, "Connection", "upgrade") {
		t.Fatalf("handshake: Connection header %q lacks the upgrade token", resp.Header.Values("Connection"))
	}
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), acceptKey(key); got != want {
		t.Fatalf("handshake: Sec-WebSocket-Accept %q, want %q", got, want)
	}
	if v := resp.Header.Values("Sec-WebSocket-Extensions"); len(v) > 0 {
		t.Fatalf("handshake: server answered extensions %q that were not offered", v)
	}
	if v := resp.Header.Values("Sec-WebSocket-Protocol"); len(v) > 0 {
		t.Fatalf("handshake: server answered subprotocol %q that was not offered", v)
	}
}

func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + websocketGUID))
	return base64.StdEncoding.EncodeToString(h[:])
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

type serverFrame struct {
	fin     bool
	op      byte
	payload []byte
}

// readFrame reads one server frame and fails the test on any framing
// violation by the server. I/O errors are returned.
func (c *wsConn) readFrame() (serverFrame, error) {
	c.t.Helper()
	var h [8]byte
	if _, err := io.ReadFull(c.br, h[:2]); err != nil {
		return serverFrame{}, err
	}
	f := serverFrame{fin: h[0]&0x80 != 0, op: h[0] & 0x0f}
	if rsv := h[0] & 0x70; rsv != 0 {
		c.t.Fatalf("server frame (opcode %#x) has RSV bits %#02x set; no extension was negotiated", f.op, rsv)
	}
	if h[1]&0x80 != 0 {
		c.t.Fatalf("server frame (opcode %#x) is masked; a server must never mask (RFC 6455 5.1)", f.op)
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(c.br, h[:2]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(h[:2]))
		if n < 126 {
			c.t.Fatalf("server frame uses a 16-bit length for %d bytes; the minimal encoding is required (RFC 6455 5.2)", n)
		}
	case 127:
		if _, err := io.ReadFull(c.br, h[:8]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(h[:8])
		if n>>63 != 0 {
			c.t.Fatalf("server frame has the most significant bit of its 64-bit length set")
		}
		if n <= 0xffff {
			c.t.Fatalf("server frame uses a 64-bit length for %d bytes; the minimal encoding is required (RFC 6455 5.2)", n)
		}
	}
	if n > maxServerFrame {
		c.t.Fatalf("server frame announces %d bytes, more than any case can produce", n)
	}
	if f.op >= 0x8 {
		if !f.fin {
			c.t.Fatalf("server sent a fragmented control frame (opcode %#x)", f.op)
		}
		if n > 125 {
			c.t.Fatalf("server sent a control frame (opcode %#x) of %d bytes (max 125)", f.op, n)
		}
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, f.payload); err != nil {
		return f, fmt.Errorf("reading %d-byte payload of a frame with opcode %#x: %w", n, f.op, err)
	}
	return f, nil
}

// next returns the next complete event from the server.
func (c *wsConn) next() (event, error) {
	c.t.Helper()
	for {
		f, err := c.readFrame()
		if err != nil {
			return event{}, err
		}
		switch f.op {
		case opClose, opPing, opPong:
			if f.op == opClose {
				checkServerClose(c.t, f.payload)
			}
			return event{op: f.op, payload: f.payload, frames: 1}, nil
		case opText, opBinary:
			if c.partial != nil {
				c.t.Fatalf("server started a new %s message while a fragmented message was in progress", opName(f.op))
			}
			ev := &event{op: f.op, payload: f.payload, frames: 1}
			if !f.fin {
				c.partial = ev
				continue
			}
			c.checkMessage(*ev)
			return *ev, nil
		case opCont:
			if c.partial == nil {
				c.t.Fatalf("server sent a continuation frame with no message in progress")
			}
			c.partial.payload = append(c.partial.payload, f.payload...)
			c.partial.frames++
			if !f.fin {
				continue
			}
			ev := *c.partial
			c.partial = nil
			c.checkMessage(ev)
			return ev, nil
		default:
			c.t.Fatalf("server sent a frame with reserved opcode %#x", f.op)
		}
	}
}

func (c *wsConn) checkMessage(ev event) {
	c.t.Helper()
	if ev.op == opText && !utf8.Valid(ev.payload) {
		c.t.Fatalf("server sent a text message that is not valid UTF-8: %s", describe(ev.op, ev.payload))
	}
}

// checkServerClose validates the payload of a close frame sent by the server.
func checkServerClose(t testing.TB, p []byte) {
	t.Helper()
	if len(p) == 0 {
		return
	}
	if len(p) == 1 {
		t.Fatalf("server sent a close frame with a 1-byte payload")
	}
	if code := int(binary.BigEndian.Uint16(p)); !validWireCode(code) {
		t.Fatalf("server sent close code %d, which must not appear on the wire", code)
	}
	if !utf8.Valid(p[2:]) {
		t.Fatalf("server sent a close reason that is not valid UTF-8: %q", p[2:])
	}
}

// validWireCode reports whether a close code may be sent in a close frame
// (RFC 6455 7.4 and the IANA registry: 1000-1003, 1007-1014, 3000-4999).
func validWireCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

func closeCode(p []byte) int {
	if len(p) < 2 {
		return closeEmpty
	}
	return int(binary.BigEndian.Uint16(p))
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
		return fmt.Sprintf("nothing within %v (timeout)", c.dr.timeout)
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

// expectEvent reads the next event and checks it.
func (c *wsConn) expectEvent(op byte, payload []byte) {
	c.t.Helper()
	ev, err := c.next()
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

// setTimeout changes how long each read waits for the server.
func (c *wsConn) setTimeout(d time.Duration) {
	c.readTimeout = d
	c.dr.timeout = d
}

// expectTCPClose checks that the server closes the connection within
// tcpCloseTimeout and sends nothing more.
func (c *wsConn) expectTCPClose() {
	c.t.Helper()
	c.expectTCPCloseWithin(tcpCloseTimeout)
}

// expectTCPCloseWithin checks that the server closes the connection within
// limit and sends nothing more.
func (c *wsConn) expectTCPCloseWithin(limit time.Duration) {
	c.t.Helper()
	c.dr.timeout = limit
	defer func() { c.dr.timeout = c.readTimeout }()
	start := time.Now()
	var buf [256]byte
	n, err := c.br.Read(buf[:])
	if n > 0 {
		c.t.Fatalf("server sent %d more bytes after its close frame: %q", n, buf[:n])
	}
	switch {
	case err == nil:
		c.t.Fatalf("empty read while waiting for the TCP close")
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.t.Fatalf("server did not close TCP within %v after the close handshake", limit)
	case !isClosedErr(err):
		c.t.Fatalf("waiting for the TCP close: %v", err)
	}
	if d := time.Since(start); d > limit+100*time.Millisecond {
		c.t.Fatalf("server closed TCP only after %v", d)
	}
	c.done = true
}

// expectSilence checks that the server sends nothing for d.
func (c *wsConn) expectSilence(d time.Duration) {
	c.t.Helper()
	c.dr.timeout = d
	defer func() { c.dr.timeout = c.readTimeout }()
	if _, err := c.br.Peek(1); err == nil {
		ev, err := c.next()
		if err != nil {
			c.t.Fatalf("want silence for %v, got %s", d, c.describeErr(err))
		}
		c.t.Fatalf("want silence for %v, got %s", d, describeEvent(ev))
	} else if !errors.Is(err, os.ErrDeadlineExceeded) {
		c.t.Fatalf("want silence for %v, got %s", d, c.describeErr(err))
	}
}

// closeNormally runs a client-initiated close handshake with code 1000.
func (c *wsConn) closeNormally() {
	c.t.Helper()
	c.sendFrames(whole, closeFrame(1000, ""))
	c.expectClose([]int{1000}, nil)
}
