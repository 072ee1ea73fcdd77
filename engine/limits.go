package engine

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/heraldws/herald/internal/proxyproto"
	"github.com/heraldws/herald/internal/ratelimit"
	"github.com/heraldws/herald/pool"
	"github.com/heraldws/herald/upgrade"
)

// DefaultRetryAfter is Config.RetryAfter when it is left zero.
const DefaultRetryAfter = 5 * time.Second

// ReadRate bounds what a connection may send (Config.ReadRate,
// Conn.SetReadRate). Each rate is a token bucket: it holds Burst's worth
// of the rate, refilled as time passes, and each data message takes one
// message and its payload's bytes (after inflating). A message the
// buckets cannot cover closes the connection with 1008, except that a
// full bucket always covers one message: MaxMessageBytes, not the rate,
// bounds a message's size.
type ReadRate struct {
	Messages float64 // data messages a second; 0: no limit
	Bytes    float64 // message payload bytes a second; 0: no limit
	// Burst is how much a connection that was quiet may send at once,
	// as a time at the rates above: the buckets hold Burst × rate.
	// Default 1 s.
	Burst time.Duration
}

func (r ReadRate) on() bool { return r.Messages > 0 || r.Bytes > 0 }

// Close reasons of ReadRate.
const (
	reasonMessageRate = "message rate limit exceeded"
	reasonByteRate    = "byte rate limit exceeded"
)

// loopBits used by the limits (conn.go owns bits 0 and 1).
const (
	// bitRefuse0 and bitRefuse1 hold a refusal decided before the
	// handshake (refuse*), answered once the head has arrived.
	bitRefuse0 loopBits = 1 << 2
	bitRefuse1 loopBits = 1 << 3
	// bitIPCounted: the connection holds a place in MaxConnsPerIP's count,
	// under the key of c.remote.
	bitIPCounted loopBits = 1 << 4
	// bitAwaitProxy: the PROXY header has not been read yet.
	bitAwaitProxy loopBits = 1 << 5
	// bitReadLimited: the connection has a ReadRate; its buckets, made at
	// its first message, are in loop.readRates.
	bitReadLimited loopBits = 1 << 6
)

// Refusals decided before the handshake, in bitRefuse0|bitRefuse1.
const (
	refuseNone = iota
	refuseBusy
	refusePerIP
	refuseRate
)

func (c *Conn) refusal() int {
	return int(c.bits&(bitRefuse0|bitRefuse1)) >> 2
}

func (c *Conn) setRefusal(r int) {
	c.bits = c.bits&^(bitRefuse0|bitRefuse1) | loopBits(r<<2)&(bitRefuse0|bitRefuse1)
}

// limits is the state of the operational limits, set up by New.
type limits struct {
	maxConns   int64
	perIP      *ratelimit.ConnCounter // nil without MaxConnsPerIP
	handshakes *ratelimit.Buckets     // nil without HandshakeRate
	retryAfter int                    // seconds
	readRate   ReadRate
	proxy      bool // Config.ProxyProtocol
	forwarded  bool // Config.TrustForwarded
	trusted    []netip.Prefix
}

// limitStats are one loop's counters of the limits.
type limitStats struct {
	connLimitRejected, pathRejected, perIPRejected atomic.Uint64
	handshakeRateRejected, readRateClosed          atomic.Uint64
	proxyRefused                                   atomic.Uint64
}

func (s *limitStats) addTo(t *Stats) {
	t.ConnLimitRejected += s.connLimitRejected.Load()
	t.PathRejected += s.pathRejected.Load()
	t.PerIPRejected += s.perIPRejected.Load()
	t.HandshakeRateRejected += s.handshakeRateRejected.Load()
	t.ReadRateClosed += s.readRateClosed.Load()
	t.ProxyRefused += s.proxyRefused.Load()
}

// addTo adds the tables' sizes to t.
func (l *limits) addTo(t *Stats) {
	if l.perIP != nil {
		t.PerIPTable = l.perIP.Len()
	}
	if l.handshakes != nil {
		t.HandshakeRateTable = l.handshakes.Len()
	}
}

func (c Config) checkLimits() error {
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"MaxConns", float64(c.MaxConns)}, {"MaxConnsPerIP", float64(c.MaxConnsPerIP)},
		{"HandshakeRate", c.HandshakeRate}, {"HandshakeBurst", float64(c.HandshakeBurst)},
		{"HandshakeRateTable", float64(c.HandshakeRateTable)}, {"RetryAfter", float64(c.RetryAfter)},
		{"ReadRate.Messages", c.ReadRate.Messages}, {"ReadRate.Bytes", c.ReadRate.Bytes},
		{"ReadRate.Burst", float64(c.ReadRate.Burst)},
	} {
		if f.v < 0 || math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			return fmt.Errorf("herald: Config.%s is %v: use 0 for no limit or the default", f.name, f.v)
		}
	}
	if c.Path != "" && c.Path[0] != '/' {
		return fmt.Errorf("herald: Config.Path %q does not start with '/'", c.Path)
	}
	if (c.ProxyProtocol || c.TrustForwarded) && len(c.TrustedProxies) == 0 {
		return errors.New("herald: Config.ProxyProtocol and Config.TrustForwarded need Config.TrustedProxies: the addresses of the proxies whose word is taken")
	}
	for _, p := range c.TrustedProxies {
		if !p.IsValid() {
			return fmt.Errorf("herald: Config.TrustedProxies holds an invalid prefix %v", p)
		}
	}
	return nil
}

func newLimits(c Config) limits {
	l := limits{
		maxConns:   int64(c.MaxConns),
		retryAfter: int(max(time.Second, c.RetryAfter+time.Second-1) / time.Second),
		readRate:   c.ReadRate,
		proxy:      c.ProxyProtocol,
		forwarded:  c.TrustForwarded,
	}
	if c.RetryAfter == 0 {
		l.retryAfter = int(DefaultRetryAfter / time.Second)
	}
	if c.MaxConnsPerIP > 0 {
		l.perIP = ratelimit.NewConnCounter(c.MaxConnsPerIP)
	}
	if c.HandshakeRate > 0 {
		burst := c.HandshakeBurst
		if burst == 0 {
			burst = int(math.Ceil(c.HandshakeRate))
		}
		l.handshakes = ratelimit.NewBuckets(c.HandshakeRate, burst, c.HandshakeRateTable)
	}
	for _, p := range c.TrustedProxies {
		l.trusted = append(l.trusted, p.Masked())
	}
	return l
}

// isTrusted reports whether a is one of Config.TrustedProxies.
func (l *limits) isTrusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range l.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// addrOf returns a's IP address, without allocating for gnet's addresses.
func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	case nil:
		return netip.Addr{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap()
}

// admitAccepted applies the limits to a connection just accepted. False
// means close it at once (a PROXY header expected from a peer that may not
// send one); a refusal that is answered with an HTTP status waits for the
// request head (see step).
func (s *Server) admitAccepted(c *Conn) bool {
	lim := &s.lim
	if lim.proxy {
		if !lim.isTrusted(addrOf(c.remote)) {
			c.loop.stats.lim.proxyRefused.Add(1)
			s.log.Debug("herald: connection refused: PROXY protocol expected, and the peer is not a trusted proxy", "remote", c.remote)
			c.state = stateClosed
			return false
		}
		c.set(bitAwaitProxy, true)
	}
	if lim.maxConns > 0 && s.active.Load() > lim.maxConns {
		c.setRefusal(refuseBusy)
		return true
	}
	if !lim.proxy {
		s.admitAddr(c)
	}
	return true
}

// admitAddr applies the per-address limits once c.remote is the client's
// address. Behind a trusted HTTP proxy (TrustForwarded) the client is
// known only from the request head: the limits then apply after it is
// parsed (see forwardedClient).
func (s *Server) admitAddr(c *Conn) {
	lim := &s.lim
	if c.refusal() != refuseNone || (lim.perIP == nil && lim.handshakes == nil) {
		return
	}
	a := addrOf(c.remote)
	if lim.forwarded && lim.isTrusted(a) {
		return
	}
	k := ratelimit.KeyOf(a)
	if lim.handshakes != nil {
		if ok, _ := lim.handshakes.Allow(k, c.loop.now); !ok {
			c.setRefusal(refuseRate)
			return
		}
	}
	if lim.perIP != nil {
		if !lim.perIP.Acquire(k) {
			c.setRefusal(refusePerIP)
			return
		}
		c.set(bitIPCounted, true)
	}
}

// step is Upgrader.Step with the limits: a connection refused before its
// handshake gets its answer once its head is in, and a refusal is counted
// under its reason.
func (s *Server) step(c *Conn, buf []byte) upgrade.Result {
	lim := &s.lim
	st := &c.loop.stats.lim
	switch c.refusal() {
	case refuseBusy:
		res := s.up.Refuse(&c.hs, buf, http.StatusServiceUnavailable, upgrade.ErrServerBusy, lim.retryAfter)
		if res.Kind != upgrade.NeedMore {
			st.connLimitRejected.Add(1)
		}
		return res
	case refusePerIP:
		res := s.up.Refuse(&c.hs, buf, http.StatusTooManyRequests, upgrade.ErrTooManyConnections, lim.retryAfter)
		if res.Kind != upgrade.NeedMore {
			st.perIPRejected.Add(1)
		}
		return res
	case refuseRate:
		res := s.up.Refuse(&c.hs, buf, http.StatusTooManyRequests, upgrade.ErrHandshakeRate, s.rateRetryAfter())
		if res.Kind != upgrade.NeedMore {
			st.handshakeRateRejected.Add(1)
		}
		return res
	}
	res := s.up.StepTLS(&c.hs, buf, c.remote, c.requestTLS())
	if res.Kind == upgrade.Rejected && errors.Is(res.Err, upgrade.ErrNotFound) {
		st.pathRejected.Add(1)
	}
	if lim.forwarded && res.Request != nil && res.Request.RemoteAddr != c.remote {
		// A trusted proxy named the client: it is the connection's
		// address from now on, and the per-address limits apply to it.
		c.remote = res.Request.RemoteAddr
		if res.Kind == upgrade.Upgraded || res.Kind == upgrade.Deferred {
			s.admitAddr(c)
			if c.refusal() != refuseNone {
				if res.Kind == upgrade.Upgraded {
					pool.Put(res.Response)
					upgrade.ReleaseRequest(res.Request)
				} // else no hook has seen the Pending: it is dropped
				return s.step(c, buf[:res.Consumed:res.Consumed]) // the refusal, over the same head
			}
		}
	}
	return res
}

// forwardedClient is upgrade.Config.ClientAddr for Config.TrustForwarded:
// the client a trusted peer names in Forwarded or X-Forwarded-For.
func forwardedClient(cfg Config) func(r *upgrade.Request) net.Addr {
	if !cfg.TrustForwarded {
		return nil
	}
	lim := newLimits(Config{TrustedProxies: cfg.TrustedProxies})
	return func(r *upgrade.Request) net.Addr {
		if !lim.isTrusted(addrOf(r.RemoteAddr)) {
			return nil
		}
		a, ok := proxyproto.ClientAddr(r.Header["Forwarded"], r.Header["X-Forwarded-For"], lim.isTrusted)
		if !ok {
			return nil
		}
		return &net.TCPAddr{IP: a.AsSlice()}
	}
}

// rateRetryAfter is the Retry-After of HandshakeRate's 429: the time a
// token takes, in whole seconds.
func (s *Server) rateRetryAfter() int {
	return max(1, int(math.Ceil(1/s.cfg.HandshakeRate)))
}

// limitsClosed gives back what a closing connection held.
func (s *Server) limitsClosed(c *Conn) {
	if c.has(bitIPCounted) {
		c.set(bitIPCounted, false)
		s.lim.perIP.Release(ratelimit.KeyOf(addrOf(c.remote)))
	}
	if c.has(bitReadLimited) {
		c.set(bitReadLimited, false)
		delete(c.loop.readRates, c)
	}
}

// ---- PROXY protocol ----

// proxyHeader reads the PROXY header at the start of buf. It returns the
// bytes after it and true once it is read (and discarded from gnet's
// buffer); false while it is incomplete, or when it is malformed and the
// connection is closed (c.state is then stateClosed).
func (e *events) proxyHeader(c *Conn, buf []byte) ([]byte, bool) {
	s := e.s
	h, n, err := proxyproto.Parse(buf)
	if err != nil {
		c.loop.stats.lim.proxyRefused.Add(1)
		s.log.Warn("herald: connection closed: bad PROXY protocol header", "remote", c.remote, "err", err)
		c.state = stateClosed
		return nil, false
	}
	if n == 0 {
		return nil, false
	}
	_, _ = c.gc.Discard(n)
	c.loop.stats.bytesIn.Add(uint64(n))
	c.set(bitAwaitProxy, false)
	if !h.Local && h.Source.IsValid() {
		c.remote = net.TCPAddrFromAddrPort(h.Source)
	}
	s.admitAddr(c)
	return buf[n:], true
}

// ---- ReadRate ----

// readBuckets is a connection's ReadRate state: a few words, kept in its
// loop's readRates from its first message on, only if it has a ReadRate.
type readBuckets struct {
	rate     ReadRate
	last     time.Duration // when the buckets were last refilled
	messages float64
	bytes    float64
}

func newReadBuckets(r ReadRate, now time.Duration) *readBuckets {
	if r.Burst <= 0 {
		r.Burst = time.Second
	}
	b := &readBuckets{rate: r, last: now}
	b.messages, b.bytes = b.caps()
	return b
}

// caps returns how much each bucket holds when full.
func (b *readBuckets) caps() (messages, bytes float64) {
	sec := b.rate.Burst.Seconds()
	return b.rate.Messages * sec, b.rate.Bytes * sec
}

// take refills the buckets to now and takes one message of n bytes; it
// returns "" or the close reason of the rate the message exceeds.
func (b *readBuckets) take(n int, now time.Duration) string {
	fullM, fullB := b.caps()
	if dt := (now - b.last).Seconds(); dt > 0 {
		b.messages = min(fullM, b.messages+dt*b.rate.Messages)
		b.bytes = min(fullB, b.bytes+dt*b.rate.Bytes)
		b.last = now
	}
	if b.rate.Messages > 0 {
		if b.messages < 1 && b.messages < fullM {
			return reasonMessageRate
		}
		b.messages--
	}
	if b.rate.Bytes > 0 {
		if b.bytes < float64(n) && b.bytes < fullB {
			return reasonByteRate
		}
		b.bytes -= float64(n)
	}
	return ""
}

// limitsOpened gives a connection that has just upgraded the server's
// ReadRate. It costs the connection a bit until its first message.
func (s *Server) limitsOpened(c *Conn) {
	if s.lim.readRate.on() {
		c.set(bitReadLimited, true)
	}
}

// readAllowed charges a data message of n bytes to c's ReadRate, and
// closes c with 1008 when it is over. Loop only; only for connections
// with bitReadLimited.
func (s *Server) readAllowed(c *Conn, n int) bool {
	l := c.loop
	b := l.readRates[c]
	if b == nil {
		if l.readRates == nil {
			l.readRates = make(map[*Conn]*readBuckets)
		}
		b = newReadBuckets(s.lim.readRate, l.now)
		l.readRates[c] = b
	}
	reason := b.take(n, l.now)
	if reason == "" {
		return true
	}
	l.stats.lim.readRateClosed.Add(1)
	s.log.Debug("herald: connection closed", "remote", c.remote, "reason", reason)
	c.startClose(StatusPolicyViolation, reason, false)
	return false
}

// SetReadRate sets the connection's ReadRate in place of
// Config.ReadRate; the zero ReadRate lifts the limit. Call it from OnOpen
// (on a worker too: the change is then posted to the connection's loop,
// and messages that arrive meanwhile count against the server's rate) or
// from a handler later; it starts the connection with full buckets.
func (c *Conn) SetReadRate(r ReadRate) {
	set := func() {
		if c.state == stateClosed {
			return
		}
		l := c.loop
		if !r.on() {
			c.set(bitReadLimited, false)
			delete(l.readRates, c)
			return
		}
		if l.readRates == nil {
			l.readRates = make(map[*Conn]*readBuckets)
		}
		c.set(bitReadLimited, true)
		l.readRates[c] = newReadBuckets(r, l.now)
	}
	if c.loop.onLoop() {
		set()
		return
	}
	_ = c.loop.Post(set)
}

// proxyAction is what OnTraffic returns while the PROXY header is
// incomplete (keep the bytes) or after it failed (close).
func (c *Conn) proxyAction() gnet.Action {
	if c.state == stateClosed {
		return gnet.Close
	}
	return gnet.None
}
