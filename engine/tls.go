package engine

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"github.com/heraldws/herald/pool"
)

// TLS on the loop (Config.TLS). crypto/tls does the cryptography; herald
// drives it. Each TLS connection's tls.Conn sits on a tlsConn, a net.Conn
// made of buffers instead of a socket (the record pipe):
//
//   - The handshake runs on a goroutine that lives for the handshake only,
//     because crypto/tls cannot resume a handshake after a read error: it
//     must block in Read until the client's next flight arrives. The loop
//     hands it the bytes gnet read (tlsShake.feed); what it writes goes back
//     to the loop as a task, in order. Handshakes in flight are bounded per
//     server (Config.MaxTLSHandshakes) and their CPU by a token pool (half
//     the loops' CPUs, tlsTokens), which a handshake gives back while it
//     waits for the client: a slow client holds no token, and a flood of
//     handshakes queues instead of taking the CPU from open connections.
//   - Once the handshake is over, everything runs on the loop. After TLS
//     1.3 with AES-GCM herald's own record layer replaces the tls.Conn
//     (tls_record.go). Otherwise the bytes of a read are offered to
//     tls.Conn.Read, which decrypts every complete record; when they run
//     out the pipe says "would block", an error crypto/tls treats as
//     temporary (it keeps a partial record and its state). Either way the
//     plaintext goes where a plain connection's bytes go (the upgrade,
//     then the frame decoder), and writes encrypt into the loop's buffer
//     and leave through the same socket writes as plain ones.
//
// See docs/ARCHITECTURE.md, "TLS", for the trade-offs.

// DefaultMaxTLSHandshakes is Config.MaxTLSHandshakes' default.
const DefaultMaxTLSHandshakes = 1024

// maxTLSPending bounds what a client may send while its handshake waits for
// the CPU or for its goroutine to read: the largest handshake message
// crypto/tls accepts (a certificate chain, 256 KiB) and a record.
const maxTLSPending = 256<<10 + 1<<14

// tlsRecordHeader is a TLS record header's length.
const tlsRecordHeader = 5

// tlsPhase is where a TLS connection is. Loop only.
type tlsPhase uint8

const (
	tlsHello   tlsPhase = iota // waiting for the first record header
	tlsShaking                 // the handshake runs on its goroutine
	tlsOpen                    // records are read and written on the loop
)

// tlsConn is a connection's TLS state and the net.Conn beneath its
// tls.Conn. Its loop keeps it in loop.tlsConns, so that a Conn without TLS
// pays nothing for it.
type tlsConn struct {
	// conn is crypto/tls's connection: for the handshake, and after it
	// unless herald's record layer took over (rec; see tls_record.go),
	// which drops it.
	conn *tls.Conn
	rec  *tlsRec
	// cs is the handshake's state once conn is dropped.
	cs *tls.ConnectionState
	c  *Conn
	// shake is the handshake's side of the pipe while it runs off the
	// loop; nil before and after.
	shake *tlsShake
	// src is what the loop offers conn.Read: the ciphertext of the read
	// being handled. Loop only.
	src []byte
	// head holds the decrypted bytes of an HTTP request head that is not
	// complete yet; nil otherwise. Loop only.
	head *bytebufferpool.ByteBuffer
	// state is the TLS state a request sees, while the request head is
	// being read; nil otherwise. Loop only.
	state *tls.ConnectionState
	// done is set once the handshake has succeeded: Conn.TLS may then ask
	// conn for its state without waiting for a handshake in progress.
	done  atomic.Bool
	phase tlsPhase
	// trimmed: the read buffers the handshake left were dropped.
	trimmed bool
	nhdr    uint8                 // bytes of hdr received (phase tlsHello)
	hdr     [tlsRecordHeader]byte // the first record header (phase tlsHello)
}

// tlsShake is the part of the pipe that a handshake running off the loop
// needs.
type tlsShake struct {
	srv    *Server
	remote net.Addr
	local  net.Addr
	mu     sync.Mutex
	in     *bytebufferpool.ByteBuffer // bytes from the client not read yet
	wake   chan struct{}              // a byte arrived (capacity 1)
	done   chan struct{}              // closed when the connection ends
	closed bool                       // done is closed; under mu
	token  bool                       // the goroutine holds a CPU token; its own
}

// wouldBlock is what the pipe's Read returns on the loop once the read's
// bytes are used up. crypto/tls keeps its state after a temporary
// net.Error (readRecordOrCCS), so the next read carries on.
type wouldBlock struct{}

func (wouldBlock) Error() string   { return "herald: no more TLS bytes in this read" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

var errWouldBlock net.Error = wouldBlock{}

// Read gives crypto/tls the client's bytes: on the loop, those of the read
// being handled; during the handshake, those the loop fed.
func (t *tlsConn) Read(b []byte) (int, error) {
	if sh := t.shake; sh != nil {
		return sh.read(b)
	}
	if len(t.src) == 0 {
		return 0, errWouldBlock
	}
	n := copy(b, t.src)
	t.src = t.src[n:]
	return n, nil
}

// Write takes the records crypto/tls writes: on the loop into the loop's
// buffer, which the caller flushes (Conn.flushTLS); during the handshake
// they are posted to the loop, which writes them in order.
func (t *tlsConn) Write(b []byte) (int, error) {
	if sh := t.shake; sh != nil {
		return sh.write(t.c, b)
	}
	l := t.c.loop
	l.tlsOut = append(l.tlsOut, b...)
	return len(b), nil
}

// Close is never called: the connection's socket belongs to gnet.
func (t *tlsConn) Close() error { return nil }

func (t *tlsConn) LocalAddr() net.Addr {
	if sh := t.shake; sh != nil {
		return sh.local
	}
	return nil
}

func (t *tlsConn) RemoteAddr() net.Addr {
	if sh := t.shake; sh != nil {
		return sh.remote
	}
	return t.c.remote
}

// Deadlines are the loop's business (Config.HandshakeTimeout).
func (t *tlsConn) SetDeadline(time.Time) error      { return nil }
func (t *tlsConn) SetReadDeadline(time.Time) error  { return nil }
func (t *tlsConn) SetWriteDeadline(time.Time) error { return nil }

// feed hands the handshake bytes from the client. It reports false if the
// client sent more than a handshake may hold unread. Loop only.
func (sh *tlsShake) feed(b []byte) bool {
	if len(b) == 0 {
		return true
	}
	sh.mu.Lock()
	if sh.in == nil {
		sh.in = pool.Get(len(b))
	}
	ok := len(sh.in.B)+len(b) <= maxTLSPending
	if ok {
		sh.in.B = append(sh.in.B, b...)
	}
	sh.mu.Unlock()
	select {
	case sh.wake <- struct{}{}:
	default:
	}
	return ok
}

// close ends the handshake's reads with io.EOF. Loop only.
func (sh *tlsShake) close() {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.closed {
		return
	}
	sh.closed = true
	pool.Put(sh.in)
	sh.in = nil
	close(sh.done)
}

// take returns the bytes fed and not read, for the loop to carry on with.
// Loop only.
func (sh *tlsShake) take() *bytebufferpool.ByteBuffer {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	in := sh.in
	sh.in = nil
	return in
}

// read blocks until the loop has fed bytes, with no CPU token held while it
// waits.
func (sh *tlsShake) read(b []byte) (int, error) {
	for {
		sh.mu.Lock()
		has, closed := sh.in != nil && len(sh.in.B) > 0, sh.closed
		sh.mu.Unlock()
		if closed {
			return 0, io.EOF
		}
		if has {
			if !sh.acquire() {
				return 0, io.EOF
			}
			sh.mu.Lock()
			if sh.in == nil { // closed meanwhile
				sh.mu.Unlock()
				return 0, io.EOF
			}
			n := copy(b, sh.in.B)
			rest := copy(sh.in.B, sh.in.B[n:])
			sh.in.B = sh.in.B[:rest]
			if rest == 0 {
				pool.Put(sh.in)
				sh.in = nil
			}
			sh.mu.Unlock()
			return n, nil
		}
		sh.release()
		select {
		case <-sh.wake:
		case <-sh.done:
		}
	}
}

// write posts b to the loop, which writes it if the connection is still
// there. Tasks run in order, so the handshake's flights and the
// connection's first records leave in order.
func (sh *tlsShake) write(c *Conn, b []byte) (int, error) {
	buf := pool.Get(len(b))
	buf.B = append(buf.B, b...)
	err := c.loop.post(task{kind: taskFunc, fn: func() {
		if c.state != stateClosed {
			c.loop.stats.bytesOut.Add(uint64(len(buf.B)))
			_ = c.wireWrite(c.backlog(), buf.B)
		}
		pool.Put(buf)
	}})
	if err != nil {
		pool.Put(buf)
		return 0, err
	}
	return len(b), nil
}

// acquire takes a CPU token, or reports false if the connection ended
// while it waited.
func (sh *tlsShake) acquire() bool {
	if sh.token {
		return true
	}
	select {
	case sh.srv.tlsTokens <- struct{}{}:
		sh.token = true
		return true
	case <-sh.done:
		return false
	}
}

// release gives the CPU token back.
func (sh *tlsShake) release() {
	if sh.token {
		sh.token = false
		<-sh.srv.tlsTokens
	}
}

// requestTLS is the TLS state the request read from c carries, or nil.
// Loop only.
func (c *Conn) requestTLS() *tls.ConnectionState {
	if !c.has(bitTLS) {
		return nil
	}
	if t := c.loop.tlsConns[c]; t != nil {
		return t.state
	}
	return nil
}

// tlsTokens is how many handshakes may compute at once: half the CPUs the
// loops can use (at least one), so that a flood of handshakes leaves the
// other half to the loops' open connections. With every CPU computing
// handshakes, a loop woken by a read waits for the Go scheduler to preempt
// one (up to 10 ms): on 2 CPUs, one token instead of two halves an open
// connection's 99th percentile round trip under a flood, for a fifth
// fewer handshakes a second (BenchmarkTLSFloodBystander).
func tlsTokens(loops int) int {
	return max(1, min(loops, runtime.GOMAXPROCS(0))/2)
}

// tlsConfig is the server's copy of cfg: ALPN http/1.1 unless the user
// named protocols, and TLS 1.2 at least.
func tlsConfig(cfg *tls.Config) *tls.Config {
	if cfg == nil {
		return nil
	}
	c := cfg.Clone()
	if len(c.NextProtos) == 0 {
		c.NextProtos = []string{"http/1.1"}
	}
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	return c
}

// tlsOf returns c's TLS state, making it on c's first bytes. Loop only.
func (l *loop) tlsOf(c *Conn) *tlsConn {
	t := l.tlsConns[c]
	if t == nil {
		t = &tlsConn{c: c} // its tls.Conn comes with the handshake (tlsHello)
		l.tlsMu.Lock()
		if l.tlsConns == nil {
			l.tlsConns = make(map[*Conn]*tlsConn)
		}
		l.tlsConns[c] = t
		l.tlsMu.Unlock()
	}
	return t
}

// closeTLS forgets c's TLS state as c closes, ending a handshake in
// progress. Loop only.
func (l *loop) closeTLS(c *Conn) {
	t := l.tlsConns[c]
	if t == nil {
		return
	}
	l.tlsMu.Lock()
	delete(l.tlsConns, c)
	l.tlsMu.Unlock()
	if sh := t.shake; sh != nil {
		sh.close()
	}
	pool.Put(t.head)
	t.head, t.src, t.state = nil, nil, nil
	t.dropRec()
}

// tlsTraffic is OnTraffic for a TLS connection: a PROXY header (before
// TLS, as a proxy sends it), then TLS. Every byte is consumed: a partial
// record is crypto/tls's to keep, or the handshake's.
func (e *events) tlsTraffic(c *Conn, gc gnet.Conn, buf []byte) gnet.Action {
	if c.state == stateHandshake && c.has(bitAwaitProxy) {
		var ok bool
		if buf, ok = e.proxyHeader(c, buf); !ok {
			return c.proxyAction()
		}
	}
	action := e.tlsBytes(c, buf)
	_, _ = gc.Discard(len(buf))
	c.loop.stats.bytesIn.Add(uint64(len(buf)))
	if c.state == stateClosed {
		return gnet.Close
	}
	return action
}

// tlsBytes hands the bytes of a read to c's TLS layer. Loop only.
func (e *events) tlsBytes(c *Conn, buf []byte) gnet.Action {
	if c.state == stateClosed {
		return gnet.Close
	}
	t := c.loop.tlsOf(c)
	switch t.phase {
	case tlsHello:
		return e.tlsHello(c, t, buf)
	case tlsShaking:
		if !t.shake.feed(buf) {
			c.loop.stats.tlsErrors.Add(1)
			c.state = stateClosed
			return gnet.Close
		}
		return gnet.None
	}
	return e.tlsRecords(c, t, buf)
}

// httpOverTLS is what Go's net/http answers a plain HTTP request sent to
// its TLS port with.
const httpOverTLS = "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"

// tlsHello reads the first record header on the loop and starts the
// handshake only if it is a TLS handshake record: garbage and plain HTTP
// are turned away without a goroutine.
func (e *events) tlsHello(c *Conn, t *tlsConn, buf []byte) gnet.Action {
	l, s := c.loop, e.s
	n := copy(t.hdr[t.nhdr:], buf)
	t.nhdr += uint8(n)
	buf = buf[n:]
	if t.nhdr < tlsRecordHeader {
		return gnet.None
	}
	hdr := t.hdr
	switch {
	case looksLikeHTTP(hdr):
		l.stats.tlsErrors.Add(1)
		l.stats.bytesOut.Add(uint64(len(httpOverTLS)))
		_ = c.wireWrite(c.backlog(), []byte(httpOverTLS))
		c.state = stateClosed
		return gnet.Close
	case !looksLikeClientHello(hdr):
		l.stats.tlsErrors.Add(1)
		s.log.Debug("herald: connection closed: not a TLS handshake", "remote", addrString(c.remote))
		c.state = stateClosed
		return gnet.Close
	}
	if s.tlsInflight.Add(1) > int64(s.cfg.MaxTLSHandshakes) {
		s.tlsInflight.Add(-1)
		l.stats.tlsRefused.Add(1)
		c.state = stateClosed
		return gnet.Close
	}
	t.conn = tls.Server(t, s.tlsCfg)
	sh := &tlsShake{srv: s, remote: c.remote, local: c.gc.LocalAddr(), wake: make(chan struct{}, 1), done: make(chan struct{})}
	t.shake = sh
	t.phase = tlsShaking
	sh.feed(hdr[:])
	sh.feed(buf)
	go s.tlsHandshake(c, t, sh)
	return gnet.None
}

// looksLikeClientHello reports whether hdr can begin a TLS handshake: a
// handshake record of TLS 1.x (SSL 3.0's version number included, which
// hellos use for compatibility), not empty and not over a record's size.
func looksLikeClientHello(hdr [tlsRecordHeader]byte) bool {
	n := int(hdr[3])<<8 | int(hdr[4])
	return hdr[0] == 22 && hdr[1] == 3 && hdr[2] <= 4 && n > 0 && n <= 1<<14+2048
}

// looksLikeHTTP is net/http's test for a plain HTTP request sent to its TLS
// port.
func looksLikeHTTP(hdr [tlsRecordHeader]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// tlsHandshake runs c's handshake off the loop, then hands c back to it.
func (s *Server) tlsHandshake(c *Conn, t *tlsConn, sh *tlsShake) {
	var err error
	if !sh.acquire() {
		err = io.EOF
	} else {
		err = s.runHandshake(t)
	}
	sh.release()
	s.tlsInflight.Add(-1)
	s.mnt.tlsShaken.Add(1) // its garbage counts toward a memory return
	_ = c.loop.post(task{kind: taskFunc, fn: func() { s.tlsReady(c, t, err) }})
}

// runHandshake runs the handshake, turning a panic in the user's callbacks
// (GetCertificate, VerifyPeerCertificate...) into a failed handshake.
func (s *Server) runHandshake(t *tlsConn) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.reportPanic(nil, &PanicError{Hook: "TLS handshake", Value: p, Stack: debug.Stack()})
			err = errors.New("herald: panic in a TLS handshake callback")
		}
	}()
	return t.conn.HandshakeContext(context.Background())
}

// tlsReady, on the loop, carries on with a connection whose handshake has
// ended: the records the client sent meanwhile are read on the loop.
func (s *Server) tlsReady(c *Conn, t *tlsConn, err error) {
	l := c.loop
	sh := t.shake
	if err != nil && !errors.Is(err, io.EOF) {
		// Counted even if the client has gone meanwhile (it may close
		// as soon as it reads the alert); EOF is a client that left or
		// a connection the loop closed, not a failed handshake.
		l.stats.tlsErrors.Add(1)
	}
	if c.state == stateClosed || l.tlsConns[c] != t {
		sh.close()
		return
	}
	early := sh.take()
	sh.close()
	t.shake = nil
	if err != nil {
		s.log.Debug("herald: TLS handshake failed", "remote", addrString(c.remote), "err", err)
		pool.Put(early)
		c.state = stateClosed
		_ = c.gc.Close()
		return
	}
	l.stats.tlsHandshakes.Add(1)
	t.phase = tlsOpen
	raw, _ := t.takeOver()
	t.done.Store(true)
	var rest []byte
	if early != nil {
		rest = early.B
	}
	e := events{s: s}
	action := e.tlsRecords(c, t, raw)
	if action == gnet.None && c.state != stateClosed {
		action = e.tlsRecords(c, t, rest)
	}
	pool.Put(early)
	if action == gnet.Close || c.state == stateClosed {
		c.state = stateClosed
		_ = c.gc.Close()
	}
}

// tlsRecords decrypts every complete record of src (and of what crypto/tls
// kept from before) and hands the plaintext on. Loop only.
func (e *events) tlsRecords(c *Conn, t *tlsConn, src []byte) gnet.Action {
	if t.rec != nil {
		return e.recRecords(c, t, src)
	}
	l := c.loop
	if l.tlsIn == nil {
		l.tlsIn = make([]byte, 1<<14+1024)
	}
	t.src = src
	action := gnet.None
	for action == gnet.None && c.state != stateClosed {
		n, err := t.conn.Read(l.tlsIn)
		// What crypto/tls wrote while reading (an alert, a KeyUpdate's
		// answer) goes out before anything the plaintext causes; a read
		// that wrote nothing, the usual one, asks gnet for nothing.
		if len(l.tlsOut) > 0 {
			_ = c.flushTLS(c.backlog())
		}
		if n > 0 {
			action = e.plaintext(c, t, l.tlsIn[:n])
		}
		if err != nil {
			if !errors.Is(err, errWouldBlock) {
				// close_notify, a bad record, a failed decryption: the
				// connection cannot go on.
				if !errors.Is(err, io.EOF) {
					l.stats.tlsErrors.Add(1)
				}
				c.state = stateClosed
				action = gnet.Close
			}
			break
		}
	}
	t.src = nil
	if c.state != stateClosed {
		// What the handshake left goes at the first chance; after that,
		// only a large record's buffer (see tls_trim.go).
		if !t.trimmed {
			t.trimmed = trimTLS(t.conn, 0)
		} else {
			trimTLS(t.conn, maxIdleTLSRead)
		}
	}
	if cap(l.tlsOut) > maxLoopTLSOut {
		l.tlsOut = nil
	}
	return action
}

// plaintext hands decrypted bytes to the upgrade or the frame decoder, as
// OnTraffic hands a plain connection's bytes.
func (e *events) plaintext(c *Conn, t *tlsConn, p []byte) gnet.Action {
	switch c.state {
	case stateOpen, stateClosing:
		return e.readFrames(c, p)
	case stateHandshake:
	default:
		return gnet.None
	}
	if w := c.waiting(); w != nil {
		return e.parkedRead(c, w, p)
	}
	buf := p
	if t.head != nil {
		t.head.B = append(t.head.B, p...)
		buf = t.head.B
	}
	if t.state == nil {
		t.state = t.connState()
	}
	consumed, action := e.handshake(c, buf)
	if consumed < 0 {
		if t.head == nil {
			t.head = pool.Get(len(p))
			t.head.B = append(t.head.B, p...)
		}
		return gnet.None
	}
	if action == gnet.None && consumed < len(buf) {
		action = e.readFrames(c, buf[consumed:])
	}
	pool.Put(t.head)
	t.head, t.state = nil, nil
	return action
}

// maxLoopTLSOut is the most the loop's TLS output buffer keeps between
// writes; a larger one (a big message) goes back to the collector.
const maxLoopTLSOut = 256 << 10

// tlsWrite encrypts b for c and writes it, given the bytes already queued
// for c. Loop only.
func (c *Conn) tlsWrite(queued int, b []byte) error {
	l := c.loop
	t := l.tlsConns[c]
	if t == nil || t.phase != tlsOpen {
		return ErrClosed
	}
	if t.rec != nil {
		return c.recWrite(t.rec, queued, recAppData, b)
	}
	l.tlsOut = l.tlsOut[:0]
	if _, err := t.conn.Write(b); err != nil {
		l.tlsOut = l.tlsOut[:0]
		return err
	}
	return c.flushTLS(queued)
}

// flushTLS writes the records crypto/tls left in the loop's buffer.
func (c *Conn) flushTLS(queued int) error {
	l := c.loop
	out := l.tlsOut
	if len(out) == 0 {
		return nil
	}
	l.tlsOut = out[:0]
	return c.wireWrite(queued, out)
}

// TLS returns the connection's TLS state: the version, the cipher suite,
// the server name the client asked for (SNI), the negotiated protocol
// (ALPN), and the client's certificates with their verified chains when
// the server asked for them (tls.Config.ClientAuth). Nil for a connection
// without TLS, or whose TLS handshake is not over. Safe from any goroutine;
// each call builds a new value.
func (c *Conn) TLS() *tls.ConnectionState {
	l := c.loop
	if l.srv.tlsCfg == nil {
		return nil
	}
	l.tlsMu.Lock()
	t := l.tlsConns[c]
	l.tlsMu.Unlock()
	if t == nil || !t.done.Load() {
		return nil
	}
	return t.connState()
}

// connState returns a copy of t's TLS state, once the handshake is over.
func (t *tlsConn) connState() *tls.ConnectionState {
	if t.cs != nil {
		cs := *t.cs
		return &cs
	}
	cs := t.conn.ConnectionState()
	return &cs
}

// PeerCertificates returns the client's certificate chain as it sent it
// (leaf first), or nil: a shorthand for TLS().PeerCertificates. With
// tls.Config.ClientAuth set to verify, TLS().VerifiedChains holds the
// chains that were verified.
func (c *Conn) PeerCertificates() []*x509.Certificate {
	if cs := c.TLS(); cs != nil {
		return cs.PeerCertificates
	}
	return nil
}
