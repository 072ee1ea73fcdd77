package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/heraldws/herald/pool"
	"github.com/heraldws/herald/upgrade"
)

// Mounting on net/http: a service's own router completes the handshake
// (ServeHTTP, on net/http's goroutine, where Authorize may block), hijacks
// the connection and hands the socket to one of the server's loops with
// gnet's Engine.Register. gnet duplicates the descriptor, closes the
// net.Conn and polls the duplicate like an accepted socket, so from then on
// the connection is an ordinary herald connection: no goroutine, no bufio
// state, the same Conn, timers, hub shard and shutdown as one the server
// accepted itself.

// ErrNotHijackable is what Upgrade returns, after answering 500, when the
// ResponseWriter cannot hand over its connection: a middleware's wrapper
// that implements neither http.Hijacker nor Unwrap, or HTTP/2.
var ErrNotHijackable = errors.New("herald: the ResponseWriter cannot be hijacked")

// mount carries a hijacked connection's handshake to its loop: it is the
// gnet context of the connection until OnOpen replaces it with the Conn.
type mount struct {
	res     upgrade.Result // Upgraded; the loop writes (and pools) res.Response
	pending []byte         // bytes the client sent after the head: frames
	refused bool           // set on the loop: the server was draining, 503 sent
}

// mountState is the server's part for mounted connections.
type mountState struct {
	readyOnce sync.Once
	// inFlight counts Upgrade calls under way, so that Shutdown waits for
	// a connection between its handshake and its loop.
	inFlight atomic.Int64
	mounted  atomic.Uint64
	rejected atomic.Uint64 // answered with an HTTP error by Upgrade
	// connLimit counts the refusals for Config.MaxConns among rejected.
	connLimit atomic.Uint64
	dir       string                      // mounted only: the private directory of the internal listener
	localIP   atomic.Pointer[net.IP]      // compactAddrs's shared local IP
	local     atomic.Pointer[net.TCPAddr] // adoptAddrs's shared local address

	// enrolling bounds the hand-overs under way (see Upgrade).
	enrolling chan struct{}

	// tlsShaken counts the TLS handshakes of the server's own listener
	// that have ended (tls.go): each leaves crypto/tls's garbage behind,
	// as a mount leaves net/http's.
	tlsShaken atomic.Uint64

	// Owned by the timer goroutine (garbageDue).
	seen    uint64 // mounted when last looked at
	seenTLS uint64 // tlsShaken when last looked at
	debt    int64  // garbage left by mounts and TLS handshakes since the last memory return
}

// mountGarbage is about what net/http leaves behind for each connection it
// hands over: its conn, the bufio reader and writer it gives the hijacker
// (4 KiB each) and the one its response used, the request and the
// response. None of it stays reachable, but the collector and the
// scavenger give it back to the OS only slowly.
const mountGarbage = 16 << 10

// tlsGarbage is about what a TLS 1.3 handshake leaves behind on the server
// side: crypto/tls's handshake state, key shares (an X25519MLKEM768 share
// is over 1 KB, and the KEM's state much more), certificate and
// transcript buffers. Measured at 120-136 KB per client and server pair
// in one process, full or resumed; half of that, rounded down.
const tlsGarbage = 48 << 10

// garbageDue decides, on the timer goroutine after each sweep, whether a
// burst of mounted connections has ended and left ReturnMemoryAfter or
// more of net/http's garbage behind: the heap then sits at about twice its
// live size (the collector's goal) until a later collection, and the
// process keeps those pages. A native upgrade leaves no such garbage; a
// TLS handshake does (tlsGarbage), and counts the same way. A burst still
// going on (mounts or handshakes since the last sweep) waits for its end:
// steady traffic never triggers a return. It shares r's cooldown;
// returning says that r decided a return now anyway, which pays the debt.
func (m *mountState) garbageDue(r *memoryReturn, now time.Duration, returning bool) bool {
	n, k := m.mounted.Load(), m.tlsShaken.Load()
	fresh, freshTLS := n-m.seen, k-m.seenTLS
	m.seen, m.seenTLS = n, k
	if r.threshold <= 0 {
		return false
	}
	m.debt += int64(fresh)*mountGarbage + int64(freshTLS)*tlsGarbage
	if returning {
		m.debt = 0
		return false
	}
	if fresh > 0 || freshTLS > 0 || m.debt < r.threshold {
		return false
	}
	if r.returned && now-r.last < returnCooldown {
		return false // the debt stays: it returns after the cooldown
	}
	m.debt, r.last, r.returned = 0, now, true
	return true
}

func (m *mountState) addTo(st *Stats) {
	st.Mounted += m.mounted.Load()
	st.Rejected += m.rejected.Load()
	st.ConnLimitRejected += m.connLimit.Load()
}

// ServeHTTP makes the server an http.Handler: mount it on a router, and
// WebSocket upgrades on that route become herald connections, served by
// the server's event loops. It is Upgrade without its error.
//
//	mux := http.NewServeMux()
//	mux.Handle("GET /ws", srv) // srv started, with or without an Addr of its own
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = s.Upgrade(w, r)
}

// Upgrade completes the WebSocket handshake of r and hands the connection
// to one of the server's loops, for handlers that do something first (or
// after: nothing may be written to w once it returns nil). The policy is
// the native listener's (Origin, subprotocols, permessage-deflate,
// MaxHeaderBytes, Authorize last, run here on the caller's goroutine, where
// it may block), and so are the refusals: the same statuses and bodies,
// written to w. It returns nil once the connection is open and OnOpen has
// run (on the loop, or queued to a worker).
//
// The server must have been started (Start, Serve or Run); before that,
// and once Shutdown has begun, Upgrade answers 503 and returns ErrClosed.
// The ResponseWriter must be able to hijack the connection: a middleware's
// wrapper must implement http.Hijacker or Unwrap (see
// http.ResponseController), else the answer is a 500 and the error
// ErrNotHijackable. TLS connections cannot be handed to a loop: terminate
// TLS in front of the service.
func (s *Server) Upgrade(w http.ResponseWriter, r *http.Request) error {
	s.mnt.inFlight.Add(1)
	defer s.mnt.inFlight.Add(-1)
	select {
	case <-s.ready:
	default:
		s.mnt.rejected.Add(1)
		s.up.WriteError(w, r, http.StatusServiceUnavailable, "server not started")
		return ErrClosed
	}
	if s.draining.Load() {
		return s.refuseMounted(w, r, http.StatusServiceUnavailable, "server shutting down", ErrClosed)
	}
	if r.TLS != nil {
		return s.refuseMounted(w, r, http.StatusInternalServerError, "WebSocket over TLS cannot be mounted: terminate TLS in front",
			errors.New("herald: Upgrade: a TLS connection cannot be handed to an event loop"))
	}
	if max := s.lim.maxConns; max > 0 && s.active.Load() >= max {
		// Config.MaxConns holds for mounted connections too; the
		// per-address limits are the router's (its middleware knows the
		// client's address behind proxies).
		s.mnt.connLimit.Add(1)
		w.Header().Set("Retry-After", strconv.Itoa(s.lim.retryAfter))
		return s.refuseMounted(w, r, http.StatusServiceUnavailable, upgrade.ErrServerBusy.Error(), upgrade.ErrServerBusy)
	}
	if !canHijack(w) {
		return s.refuseMounted(w, r, http.StatusInternalServerError, "the ResponseWriter cannot be hijacked", ErrNotHijackable)
	}
	res := s.up.UpgradeHTTP(w, r)
	if res.Kind != upgrade.Upgraded {
		s.mnt.rejected.Add(1)
		if errors.Is(res.Err, upgrade.ErrPanic) {
			s.reportPanic(nil, handshakePanic(res.Err))
		} else {
			s.log.Debug("herald: handshake rejected", "remote", r.RemoteAddr, "status", res.Status, "err", res.Err)
		}
		return res.Err
	}
	if s.draining.Load() { // Authorize may have taken a while
		pool.Put(res.Response)
		return s.refuseMounted(w, r, http.StatusServiceUnavailable, "server shutting down", ErrClosed)
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		pool.Put(res.Response)
		return s.refuseMounted(w, r, http.StatusInternalServerError, "the ResponseWriter cannot be hijacked",
			fmt.Errorf("%w: %w", ErrNotHijackable, err))
	}
	m := &mount{res: res}
	if n := brw.Reader.Buffered(); n > 0 {
		// The client did not wait for the 101: what net/http read past
		// the head is frames.
		p, _ := brw.Reader.Peek(n)
		m.pending = append([]byte(nil), p...)
	}
	if !addrFieldsOK.Load() {
		s.mnt.compactAddrs(conn) // adoptAddrs cannot replace them
	}
	if s.cfg.SocketSendBuffer > 0 {
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetWriteBuffer(s.cfg.SocketSendBuffer)
		}
	}
	// gnet hands each connection over on a goroutine of its worker pool,
	// which keeps an idle worker and its stack for about ten seconds: a
	// burst of thousands of concurrent mounts would leave as many behind.
	// A few hand-overs at a time keep every loop busy.
	select {
	case s.mnt.enrolling <- struct{}{}:
		defer func() { <-s.mnt.enrolling }()
	case <-s.stopped:
		pool.Put(res.Response)
		_ = conn.Close()
		return ErrClosed
	}
	// gnet's Register needs a load balancer other than RoundRobin, which
	// races with the acceptor (see mountOptions).
	ch, err := s.eng.Register(gnet.NewNetConnContext(gnet.NewContext(context.Background(), m), conn))
	if err != nil {
		pool.Put(res.Response)
		s.mnt.rejected.Add(1)
		b := s.up.ErrorReply(http.StatusServiceUnavailable, "server shutting down", false)
		_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = conn.Write(b.B)
		pool.Put(b)
		_ = conn.Close()
		return fmt.Errorf("herald: Upgrade: %w", err)
	}
	select {
	case rr := <-ch:
		if rr.Err != nil {
			// gnet has closed the connection (it could not take it).
			s.mnt.rejected.Add(1)
			s.log.Warn("herald: a mounted connection could not be handed to a loop", "remote", r.RemoteAddr, "err", rr.Err)
			return fmt.Errorf("herald: Upgrade: %w", rr.Err)
		}
	case <-s.stopped:
		return ErrClosed
	}
	if m.refused {
		s.mnt.rejected.Add(1)
		return ErrClosed
	}
	return nil
}

// compactAddrs trims the addresses of a hijacked connection, which gnet
// keeps for as long as the connection lives (they are its LocalAddr and
// RemoteAddr), when adoptAddrs cannot replace them: before the first
// mounted connection has shown gnet's connection type, or with a gnet
// whose fields it does not know. Go's net package slices each address's IP
// out of the socket address the kernel filled in, so each keeps a 32-byte
// object alive for 4 or 16 bytes: the local IP, the same for every
// connection to one address, is shared, and the remote one copied to its
// own few bytes. The connection is the caller's after the hijack; nothing
// else reads them.
func (m *mountState) compactAddrs(conn net.Conn) {
	if la, ok := conn.LocalAddr().(*net.TCPAddr); ok && la.IP != nil {
		if p := m.localIP.Load(); p != nil && p.Equal(la.IP) && len(*p) == len(la.IP) {
			la.IP = *p
		} else {
			ip := append(net.IP(nil), la.IP...)
			m.localIP.Store(&ip)
			la.IP = ip
		}
	}
	if ra, ok := conn.RemoteAddr().(*net.TCPAddr); ok && ra.IP != nil {
		ra.IP = append(net.IP(nil), ra.IP...)
	}
}

// refuseMounted answers r on w with herald's error reply and counts the
// refusal.
func (s *Server) refuseMounted(w http.ResponseWriter, r *http.Request, status int, reason string, err error) error {
	s.mnt.rejected.Add(1)
	s.log.Debug("herald: mounted handshake refused", "remote", r.RemoteAddr, "status", status, "err", err)
	s.up.WriteError(w, r, status, reason)
	return err
}

// canHijack reports whether w, or a ResponseWriter it wraps (Unwrap, as
// http.ResponseController follows it), can hijack the connection, so that
// a handshake that could never be handed over is refused before Authorize.
func canHijack(w http.ResponseWriter) bool {
	for {
		switch t := w.(type) {
		case http.Hijacker:
			return true
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return false
		}
	}
}

// openMount is OnOpen for a connection ServeHTTP upgraded: c has just been
// accepted on its loop; it becomes open like a native connection whose
// handshake completed, and the frames pipelined behind the head are read.
func (e *events) openMount(c *Conn, m *mount) ([]byte, gnet.Action) {
	c.loop.stats.upgraded.Add(1)
	e.s.mnt.mounted.Add(1)
	if !e.s.becomeOpen(c, &m.res) {
		return nil, gnet.Close
	}
	if len(m.pending) > 0 {
		c.loop.stats.bytesIn.Add(uint64(len(m.pending)))
		action := e.readFrames(c, m.pending)
		if c.state == stateClosed {
			return nil, gnet.Close
		}
		return nil, action
	}
	return nil, gnet.None
}

// refuseMount is OnOpen's answer to a mounted connection that arrives once
// the server is draining: a 503 instead of the 101.
func (e *events) refuseMount(gc gnet.Conn, m *mount) []byte {
	m.refused = true
	pool.Put(m.res.Response)
	gc.SetContext(nil)
	b := e.s.up.ErrorReply(http.StatusServiceUnavailable, "server shutting down", false)
	out := append([]byte(nil), b.B...)
	pool.Put(b)
	return out
}

// OnTick tells Start that the loops run: gnet starts its ticker only once
// every loop is registered, and only then may Register hand them
// connections. It then sleeps; herald's timers are its own (Server.tick).
func (e *events) OnTick() (time.Duration, gnet.Action) {
	e.s.mnt.readyOnce.Do(func() { close(e.s.ready) })
	return time.Hour, gnet.None
}

// mountOptions are the gnet options mounting needs: the ticker (OnTick),
// and a load balancer that Register may call beside the acceptor
// (RoundRobin's counter is not synchronised). SourceAddrHash keeps no
// state: it hashes the peer's address (one small string per connection).
// LeastConnections is safe too, but a loop's count grows only once the
// loop has registered the connection, so a burst of connects accepted
// before the loops catch up can all go to one loop.
func (s *Server) mountOptions() []gnet.Option {
	return []gnet.Option{gnet.WithTicker(true), gnet.WithLoadBalancing(gnet.SourceAddrHash)}
}

// listenTarget is gnet's address for Config.Addr. A server mounted only
// (no Addr) still needs a listener, since gnet runs no engine without one:
// it gets a Unix socket in a directory of its own that only this user can
// enter, which nobody is told about; removeMountDir removes it.
func (s *Server) listenTarget() (string, error) {
	if s.cfg.Addr != "" {
		return "tcp://" + s.cfg.Addr, nil
	}
	dir, err := os.MkdirTemp("", "herald-")
	if err != nil {
		return "", err
	}
	s.mnt.dir = dir
	return "unix://" + filepath.Join(dir, "l"), nil
}

func (s *Server) removeMountDir() {
	if s.mnt.dir != "" {
		_ = os.RemoveAll(s.mnt.dir)
	}
}
