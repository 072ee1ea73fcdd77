package loadgen

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// TLS (Config.TLS): wss:// on the same epoll loops, with crypto/tls doing
// the cryptography over a net.Conn made of buffers (tlsPipe).
//
//   - The handshake runs on a goroutine that lives for the handshake only:
//     crypto/tls cannot resume a handshake after a read error, so it must
//     block in Read until the server's next flight arrives. The loop feeds
//     it what it reads from the socket; the goroutine writes its own
//     flights to the socket. Handshakes in flight are connections in
//     connect, so Config.MaxPending bounds them. When it ends, the
//     goroutine queues the result for its loop and wakes it (an eventfd).
//   - Once open, everything runs on the loop: the ciphertext of a read is
//     offered to tls.Conn.Read, which decrypts every complete record; when
//     the bytes run out the pipe says "would block", an error crypto/tls
//     treats as temporary (it keeps a partial record and its state). Writes
//     are sealed into the loop's buffer and leave through the plain write
//     path (and its queue for what the socket did not take).
//
// The tls.Config's ClientSessionCache, shared by every connection of the
// process, lets a connection resume the session of an earlier one (a TLS
// 1.3 ticket or a 1.2 session), as browsers do when they reconnect: the
// connect phase then measures what a server spends on returning clients
// too, not only on full handshakes.

// wakeFd is the epoll event data of a loop's eventfd (no connection index
// is negative).
const wakeFd = -1

// wouldBlock is what the pipe's Read returns on the loop once the bytes of
// the read being handled are used up.
type wouldBlock struct{}

func (wouldBlock) Error() string   { return "loadgen: no more TLS bytes in this read" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

var errWouldBlock net.Error = wouldBlock{}

// tlsClient is a connection's TLS state.
type tlsClient struct {
	conn *tls.Conn
	pipe *tlsPipe
}

// tlsPipe is the net.Conn beneath a connection's tls.Conn.
type tlsPipe struct {
	fd      int
	mu      sync.Mutex
	cond    sync.Cond
	in      []byte // ciphertext read from the socket, not yet taken by crypto/tls
	off     int
	readErr error // the socket's end, seen by the loop during the handshake
	closed  bool  // the loop closed the socket: nothing may touch fd any more
	open    bool  // handshake over: reads do not block, writes go to out
	out     []byte
}

func newTLSPipe(fd int) *tlsPipe {
	p := &tlsPipe{fd: fd}
	p.cond.L = &p.mu
	return p
}

// feed hands the pipe bytes the loop read from the socket.
func (p *tlsPipe) feed(b []byte) {
	p.mu.Lock()
	p.in = append(p.in, b...)
	p.mu.Unlock()
	p.cond.Signal()
}

// close marks the socket closed; a handshake waiting in Read or Write gives up.
func (p *tlsPipe) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cond.Broadcast()
}

func (p *tlsPipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if p.off < len(p.in) {
			n := copy(b, p.in[p.off:])
			p.off += n
			if p.off == len(p.in) {
				p.in, p.off = p.in[:0], 0
				if cap(p.in) > 64<<10 {
					p.in = nil
				}
			}
			return n, nil
		}
		switch {
		case p.closed:
			return 0, net.ErrClosed
		case p.readErr != nil:
			return 0, p.readErr
		case p.open:
			return 0, errWouldBlock
		}
		p.cond.Wait()
	}
}

// Write seals nothing itself: it is crypto/tls's output. Open, it is
// appended to out for the loop to send; during the handshake the goroutine
// writes it to the socket, waiting for room if there is none.
func (p *tlsPipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open {
		p.out = append(p.out, b...)
		return len(b), nil
	}
	for off := 0; off < len(b); {
		if p.closed {
			return off, net.ErrClosed
		}
		n, err := unix.Write(p.fd, b[off:])
		switch {
		case err == nil:
			off += n
		case errors.Is(err, unix.EINTR):
		case errors.Is(err, unix.EAGAIN):
			// Wait for room without holding the lock, so the loop can
			// still feed or close the pipe.
			p.mu.Unlock()
			fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLOUT}}
			_, _ = unix.Poll(fds, 100)
			p.mu.Lock()
		default:
			return off, err
		}
	}
	return len(b), nil
}

func (p *tlsPipe) Close() error                     { p.close(); return nil }
func (p *tlsPipe) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (p *tlsPipe) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (p *tlsPipe) SetDeadline(time.Time) error      { return nil }
func (p *tlsPipe) SetReadDeadline(time.Time) error  { return nil }
func (p *tlsPipe) SetWriteDeadline(time.Time) error { return nil }

// tlsResult is a handshake's outcome, queued for the connection's loop.
type tlsResult struct {
	idx  int32
	pipe *tlsPipe
	err  error
}

// tlsWakeup makes the loop's eventfd (TLS runs only).
func (l *loop) tlsWakeup() error {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeFd}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		return err
	}
	l.wakefd = fd
	return nil
}

// startTLS begins c's handshake once TCP is connected.
func (l *loop) startTLS(c *conn, idx int32) {
	p := newTLSPipe(int(c.fd))
	c.tls = &tlsClient{conn: tls.Client(p, l.e.cfg.TLS), pipe: p}
	c.state = stTLS
	l.watchOut(c, idx, false)
	tc := c.tls.conn
	go func() {
		err := tc.Handshake()
		l.doneMu.Lock()
		defer l.doneMu.Unlock()
		if l.wakefd < 0 {
			return // the loop has exited (closeWakeup)
		}
		l.done = append(l.done, tlsResult{idx: idx, pipe: p, err: err})
		var one = [8]byte{1}
		_, _ = unix.Write(l.wakefd, one[:])
	}()
}

// closeWakeup closes the loop's eventfd once no handshake may write to it
// any more: a late one finds it gone instead of writing to whatever
// descriptor reused its number.
func (l *loop) closeWakeup() {
	l.doneMu.Lock()
	defer l.doneMu.Unlock()
	if l.wakefd >= 0 {
		unix.Close(l.wakefd)
		l.wakefd = -1
	}
}

// tlsFinished handles the handshakes that ended since the last wakeup.
func (l *loop) tlsFinished(now int64, traffic bool) {
	var b [8]byte
	_, _ = unix.Read(l.wakefd, b[:])
	l.doneMu.Lock()
	done := l.done
	l.done = l.spare[:0]
	l.doneMu.Unlock()
	for _, r := range done {
		c := &l.conns[r.idx]
		if c.tls == nil || c.tls.pipe != r.pipe || c.state != stTLS {
			continue // failed or timed out meanwhile
		}
		if r.err != nil {
			l.e.noteError("TLS handshake failed: "+r.err.Error(), "connection %d: TLS handshake failed: %v", c.id, r.err)
			l.fail(c, r.idx, true)
			continue
		}
		r.pipe.mu.Lock()
		r.pipe.open = true
		r.pipe.mu.Unlock()
		l.tlsHandshakes.Add(1)
		if c.tls.conn.ConnectionState().DidResume {
			l.tlsResumed.Add(1)
		}
		if !l.upgrade(c, r.idx) {
			continue
		}
		// Bytes the server sent after its last flight (a session ticket)
		// may wait in the pipe already.
		l.tlsInput(c, r.idx, nil, now, traffic)
	}
	l.spare = done[:0]
}

// tlsInput decrypts what was read from c and hands the plaintext on.
func (l *loop) tlsInput(c *conn, idx int32, data []byte, now int64, traffic bool) {
	t := c.tls
	if len(data) > 0 {
		t.pipe.feed(data)
	}
	for c.fd >= 0 && c.tls == t {
		n, err := t.conn.Read(l.pb)
		if n > 0 {
			l.input(c, idx, l.pb[:n], now, traffic)
		}
		if err != nil {
			if errors.Is(err, errWouldBlock) {
				return
			}
			if c.fd >= 0 && c.tls == t {
				l.eof(c, idx, now, "tls: "+err.Error())
			}
			return
		}
	}
}

// seal encrypts b for c into the loop's buffer; nil when crypto/tls
// refused (the connection is then ended).
func (l *loop) seal(c *conn, b []byte) []byte {
	p := c.tls.pipe
	p.out = l.tb[:0]
	_, err := c.tls.conn.Write(b)
	l.tb, p.out = p.out, nil
	if err != nil {
		return nil
	}
	return l.tb
}

// closeTLS makes c's pipe unusable before its socket is closed, so that a
// handshake still running never writes to a reused descriptor.
func closeTLS(c *conn) {
	if c.tls != nil {
		c.tls.pipe.close()
		c.tls = nil
	}
}

// ClientTLS is the loadgen's client config for wss://: it trusts the PEM
// certificates in caFile (none: the system's roots), or nothing when
// insecure (a test certificate nobody signed), for serverName; with resume,
// all connections share one session cache, so that each one after the
// first few resumes a session instead of a full handshake.
func ClientTLS(caFile, serverName string, insecure, resume bool) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: serverName, InsecureSkipVerify: insecure, NextProtos: []string{"http/1.1"}}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate", caFile)
		}
	}
	if resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	}
	return cfg, nil
}

// TLSHandshakesPerSec is the TLS handshakes completed per second of the
// connect phase (0 without TLS).
func (r *Result) TLSHandshakesPerSec() float64 {
	if r.ConnectNS <= 0 {
		return 0
	}
	return float64(r.TLSHandshakes) / (float64(r.ConnectNS) / 1e9)
}
