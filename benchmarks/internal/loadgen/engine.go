package loadgen

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"

	"github.com/heraldws/herald/benchmarks/internal/histo"
	"github.com/heraldws/herald/examples/ticker/book"
	"github.com/heraldws/herald/internal/wsframe"
)

// Connection states.
const (
	stIdle uint8 = iota
	stConnecting
	stHandshake
	stOpen
	stClosing // churn: close sent, waiting for the server's close and EOF
	stDone
	stTLS // TCP connected, the TLS handshake running (Config.TLS)
)

// Run phases (engine.phase).
const (
	phConnect int32 = iota // connecting the held and hostile connections
	phTraffic              // the warmup and the window
	phStop                 // the loops exit
	phCheck                // after the window: hostile connections check how they ended
)

// maxMessage bounds what a server may send in one message.
const maxMessage = 64 << 20

// errContinuation is a server that broke the fragmentation rules.
const errContinuation = "continuation without a message, or a new message inside one"

// maxSymbols bounds the ticker symbols tracked per connection.
const maxSymbols = 4096

// stateName says where a connection that failed was, for the error kinds.
func stateName(st uint8) string {
	switch st {
	case stConnecting:
		return "in the TCP connect"
	case stTLS:
		return "in the TLS handshake"
	case stHandshake:
		return "waiting for the upgrade response"
	case stOpen:
		return "open"
	case stClosing:
		return "closing"
	}
	return "idle"
}

// conn is the whole per-connection state of the load generator.
type conn struct {
	fd       int32
	id       int32 // global connection number (held) or churn slot
	state    uint8
	churn    bool
	attempt  uint8
	fragOp   uint8
	outWatch bool  // EPOLLOUT registered
	kind     uint8 // 0: the scenario's; else a hostile kind (kStall...)
	flags    uint8 // hostile: fEverUp, fChecking...
	z        uint8 // permessage-deflate: zOn, zHuffman, zFrag
	inflight int32 // echo: messages in flight; flooding kinds: offset in the flood buffer
	t0       int64 // connect start, Unix ns; hostile: when it opened (or its pacing base)
	moved    int64 // hostile: bytes read or sent since t0, for pacing
	next     int64 // hostile: next pong, end of hold or check, or redial time
	rbuf     []byte
	wbuf     []byte
	frag     []byte
	seq      []int64    // ticker: last sequence number + 1 per symbol
	hist     *history   // permessage-deflate with server context takeover only
	tls      *tlsClient // Config.TLS only
}

// engine runs the loops of one process.
type engine struct {
	cfg    Config
	sa     unix.SockaddrInet4
	host   string
	origin string // the upgrade request's Origin header line
	loops  []*loop
	start  time.Time
	phase  atomic.Int32 // phConnect, phTraffic, phCheck, phStop
	winLo  atomic.Int64
	winHi  atomic.Int64
	errMu  sync.Mutex
	errors []string         // the first maxErrors, in full
	kinds  map[string]int64 // every error, counted by kind
	// declined counts connections whose server answered a deflate offer
	// without the extension.
	declined atomic.Int64
}

// maxErrors is how many errors a process keeps in full; maxErrorKinds
// bounds the kinds it counts (a kind past it counts as "other"), so that
// an error text with a number in it cannot grow the map without bound.
const (
	maxErrors     = 10
	maxErrorKinds = 64
)

// noteError counts an error under kind, a short text without connection
// numbers that says what failed and how, and keeps the first few in full:
// when thousands of connections fail, the report must say why each did,
// not only why the first ten did.
func (e *engine) noteError(kind, format string, args ...any) {
	e.errMu.Lock()
	if e.kinds == nil {
		e.kinds = map[string]int64{}
	}
	if _, ok := e.kinds[kind]; !ok && len(e.kinds) >= maxErrorKinds {
		kind = "other"
	}
	e.kinds[kind]++
	if len(e.errors) < maxErrors {
		e.errors = append(e.errors, fmt.Sprintf(format, args...))
	}
	e.errMu.Unlock()
}

// errorKinds is a copy of the counts by kind.
func (e *engine) errorKinds() map[string]int64 {
	e.errMu.Lock()
	defer e.errMu.Unlock()
	if len(e.kinds) == 0 {
		return nil
	}
	out := make(map[string]int64, len(e.kinds))
	for k, v := range e.kinds {
		out[k] = v
	}
	return out
}

type loop struct {
	e      *engine
	id     int
	epfd   int
	conns  []conn
	dialQ  []int32 // indexes into conns
	events []unix.EpollEvent
	rb     []byte
	wb     []byte
	msg    []byte // echo payload template
	fl     flater // permessage-deflate
	rng    uint64
	src    int
	sa     unix.SockaddrInet4 // per loop: Connect writes into it

	pending     int
	tokens      float64
	lastRefill  int64
	lastScan    int64
	connectDone int64

	connected atomic.Int64 // held connections upgraded
	hostileUp atomic.Int64 // hostile connections upgraded at least once
	failed    atomic.Int64
	// lost counts the held connections dropped since they came up (the
	// window's dropped, but at any time), for the "dropped" events.
	lost   atomic.Int64
	exited chan struct{}

	// TLS (Config.TLS): handshakes end on their own goroutines, queue
	// their result in done and wake the loop through wakefd.
	wakefd        int
	doneMu        sync.Mutex
	done, spare   []tlsResult
	pb, tb        []byte // plaintext read, ciphertext to send
	tlsHandshakes atomic.Int64
	tlsResumed    atomic.Int64

	// hostile kinds
	hostile      bool        // the loop has hostile connections
	checked      atomic.Bool // phCheck: no hostile connection is open any more
	lastPace     int64
	pingBuf      []byte
	streamBuf    []byte
	streamFrames int

	// mu guards what Run reads while the loop runs: the hostile kinds'
	// counters and the current interval's histogram.
	mu     sync.Mutex
	kinds  [nKinds]KindStats
	hIv    *hdr.Histogram // messages received in the current interval (Config.Interval)
	ivGaps int64

	// window counters, owned by the loop
	sent, received, bytes, gaps, reordered int64
	wire, compressed                       int64 // bytes read from held sockets; messages that came compressed
	dropped, protoErrs                     int64
	churnCycles, churnFail                 int64
	hLat, hConn, hChurn                    *hdr.Histogram
}

// Run executes cfg and returns this process's result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ap, err := netip.ParseAddrPort(cfg.Addr)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("server address %q: want IPv4 host:port", cfg.Addr)
	}
	e := &engine{cfg: cfg, host: cfg.Addr, origin: "Origin: http://" + cfg.Addr}
	if cfg.TLS != nil {
		e.origin = "Origin: https://" + cfg.Addr
	}
	e.sa.Addr = ap.Addr().As4()
	e.sa.Port = int(ap.Port())

	lo, hi := shardRange(cfg.Conns, cfg.Shard, cfg.Shards)
	clo, chi := 0, 0
	if cfg.Scenario == Churn {
		clo, chi = shardRange(cfg.ChurnConc, cfg.Shard, cfg.Shards)
	}
	for i := 0; i < cfg.Loops; i++ {
		l := &loop{e: e, id: i, events: make([]unix.EpollEvent, 1024), rb: make([]byte, 256<<10),
			rng: uint64(time.Now().UnixNano()) ^ uint64(i+1)*0x9E3779B97F4A7C15, src: i,
			hLat: histo.New(), hConn: histo.New(), hChurn: histo.New(), hIv: histo.New(), exited: make(chan struct{})}
		l.sa = unix.SockaddrInet4{Addr: e.sa.Addr, Port: e.sa.Port}
		l.msg = make([]byte, cfg.Size)
		for j := range l.msg {
			l.msg[j] = 'a' + byte(j%26)
		}
		if cfg.Deflate {
			l.msg = book.Append(l.msg[:8], 0, 1, 0, cfg.Size-8)
		}
		l.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			return nil, fmt.Errorf("epoll: %w", err)
		}
		l.wakefd = -1
		if cfg.TLS != nil {
			if err := l.tlsWakeup(); err != nil {
				return nil, fmt.Errorf("eventfd: %w", err)
			}
			l.pb = make([]byte, 64<<10)
		}
		e.loops = append(e.loops, l)
	}
	for g := lo; g < hi; g++ {
		l := e.loops[(g-lo)%cfg.Loops]
		l.conns = append(l.conns, conn{fd: -1, id: int32(g)})
	}
	for s := clo; s < chi; s++ {
		l := e.loops[(s-clo)%cfg.Loops]
		l.conns = append(l.conns, conn{fd: -1, id: int32(s), churn: true})
	}
	hostile := 0
	for k := uint8(1); k <= nKinds; k++ {
		klo, khi := shardRange(cfg.Hostile.count(k), cfg.Shard, cfg.Shards)
		for g := klo; g < khi; g++ {
			l := e.loops[hostile%cfg.Loops]
			l.conns = append(l.conns, conn{fd: -1, id: int32(g), kind: k})
			l.kinds[k-1].Conns++
			l.hostile = true
			hostile++
		}
	}
	for _, l := range e.loops {
		for i := range l.conns {
			if !l.conns[i].churn {
				l.dialQ = append(l.dialQ, int32(i))
			}
		}
	}
	held := hi - lo
	e.start = time.Now()
	var wg sync.WaitGroup
	for _, l := range e.loops {
		wg.Add(1)
		go func() { defer wg.Done(); l.run() }()
	}
	stop := func() {
		e.phase.Store(phStop)
		wg.Wait()
	}

	// Connect phase.
	deadline := time.Now().Add(cfg.ConnectTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	lastEvent := time.Now()
	for {
		var up, failed int64
		for _, l := range e.loops {
			up += l.connected.Load() + l.hostileUp.Load()
			failed += l.failed.Load()
		}
		if up+failed >= int64(held+hostile) {
			break
		}
		if time.Now().After(deadline) {
			stop()
			why := ""
			if top := (&Result{ErrorKinds: e.errorKinds()}).TopErrorKinds(4); len(top) > 0 {
				why = "; errors: " + strings.Join(top, ", ")
			}
			return nil, fmt.Errorf("connect phase timed out: %d of %d up, %d failed%s", up, held+hostile, failed, why)
		}
		if cfg.Event != nil && time.Since(lastEvent) > time.Second {
			lastEvent = time.Now()
			cfg.Event(map[string]any{"event": "connecting", "shard": cfg.Shard, "connected": up, "failed": failed, "target": held + hostile})
		}
		select {
		case <-ctx.Done():
			stop()
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
	connectNS := time.Since(e.start).Nanoseconds()
	var handshakes, resumed int64
	for _, l := range e.loops {
		handshakes += l.tlsHandshakes.Load()
		resumed += l.tlsResumed.Load()
	}
	if n := e.declined.Load(); n > 0 {
		stop()
		return nil, fmt.Errorf("%w: %d of %d connections", errDeclined, n, held)
	}
	var up, hup, failed int64
	for _, l := range e.loops {
		up += l.connected.Load()
		hup += l.hostileUp.Load()
		failed += l.failed.Load()
	}
	if cfg.Event != nil {
		ev := map[string]any{"event": "connected", "shard": cfg.Shard, "connected": up, "failed": failed, "target": held, "connect_ms": connectNS / 1e6}
		if hostile > 0 {
			ev["hostile_connected"], ev["hostile_target"] = hup, hostile
		}
		cfg.Event(ev)
	}

	// Window.
	var winStart time.Time
	var late time.Duration
	if cfg.StartAt != nil {
		stopWatch := e.watchDrops(ctx)
		t, err := cfg.StartAt()
		stopWatch()
		if err != nil {
			stop()
			return nil, fmt.Errorf("start time: %w", err)
		}
		winStart = t
		if now := time.Now(); now.After(t) {
			late = now.Sub(t)
			winStart = now
		}
	} else {
		winStart = time.Now().Add(cfg.Warmup)
	}
	winEnd := winStart.Add(cfg.Duration)
	e.winLo.Store(winStart.UnixNano())
	e.winHi.Store(winEnd.UnixNano())
	e.phase.Store(phTraffic)
	if !sleepUntil(ctx, winStart) {
		stop()
		return nil, ctx.Err()
	}
	ru0 := rusage()
	if cfg.Event != nil {
		cfg.Event(map[string]any{"event": "window", "shard": cfg.Shard, "start_ns": winStart.UnixNano(), "end_ns": winEnd.UnixNano()})
	}
	ok := e.window(ctx, winStart, winEnd)
	if now := time.Now(); ok && now.Before(winEnd) {
		winEnd = now // ended early by WindowDone
		e.winHi.Store(winEnd.UnixNano())
	}
	ru1 := rusage()
	// Let replies to messages sent inside the window arrive before stopping.
	if ok {
		sleepUntil(ctx, winEnd.Add(200*time.Millisecond))
	}
	// The hostile connections read what is queued for them, to tell the
	// ones the server closed from those still open.
	if ok && hostile > 0 {
		e.phase.Store(phCheck)
		e.awaitChecks(ctx, time.Now().Add(cfg.Hostile.CheckTimeout+time.Duration(4*paceEvery)))
	}
	stop()
	if !ok {
		return nil, ctx.Err()
	}

	res := &Result{Version: ResultVersion, Scenario: cfg.Scenario, Target: cfg.Addr, Shard: cfg.Shard, Shards: cfg.Shards, Parts: 1,
		Conns: held, Connected: int(up), ConnectFailures: failed, ConnectNS: connectNS,
		WindowStartNS: winStart.UnixNano(), WindowNS: winEnd.Sub(winStart).Nanoseconds(), LateNS: late.Nanoseconds(),
		TLSHandshakes: handshakes, TLSResumed: resumed,
		ChurnConc: chi - clo, ClientCPUNS: ru1.cpu - ru0.cpu, ClientMaxRSS: ru1.maxRSS, Hist: map[string]histo.Encoded{}}
	lat, conn, churn := histo.New(), histo.New(), histo.New()
	for _, l := range e.loops {
		res.Sent += l.sent
		res.Received += l.received
		res.BytesReceived += l.bytes
		res.WireBytes += l.wire
		res.Compressed += l.compressed
		res.Gaps += l.gaps
		res.Reordered += l.reordered
		res.Dropped += l.dropped
		res.ProtocolErrors += l.protoErrs
		res.ChurnCycles += l.churnCycles
		res.ChurnFailures += l.churnFail
		lat.Merge(l.hLat)
		conn.Merge(l.hConn)
		churn.Merge(l.hChurn)
		if l.hostile {
			if res.Kinds == nil {
				res.Kinds = map[string]*KindStats{}
			}
			for k := range l.kinds {
				if cfg.Hostile.count(uint8(k+1)) == 0 {
					continue
				}
				name := Kinds[k]
				if res.Kinds[name] == nil {
					res.Kinds[name] = &KindStats{}
				}
				res.Kinds[name].Add(&l.kinds[k])
			}
		}
	}
	for name, h := range map[string]*hdr.Histogram{HistLatency: lat, HistConnect: conn, HistChurn: churn} {
		if h.TotalCount() == 0 {
			continue
		}
		enc, err := histo.Encode(h)
		if err != nil {
			return nil, err
		}
		res.Hist[name] = enc
	}
	res.Errors = e.errors
	res.ErrorKinds = e.errorKinds()
	return res, nil
}

// window waits for the measured window to end, or for WindowDone, and
// reports each Config.Interval of it as an event. It returns false if ctx
// ended first.
func (e *engine) window(ctx context.Context, start, end time.Time) bool {
	cfg := &e.cfg
	if cfg.Interval <= 0 || cfg.Event == nil {
		return sleepUntil(ctx, end, cfg.WindowDone)
	}
	from := start
	for {
		to := from.Add(cfg.Interval)
		last := !to.Before(end)
		if last {
			to = end
		}
		if !sleepUntil(ctx, to, cfg.WindowDone) {
			return false
		}
		// Asked, not inferred from waking before to: a loop that lags
		// behind its intervals (a busy machine) finds every to already
		// past and would otherwise run to the window's end.
		if closed(cfg.WindowDone) {
			if now := time.Now(); now.Before(to) {
				to = now
			}
			last = true // ended early by WindowDone
		}
		e.reportInterval(from, to)
		if last {
			return true
		}
		from = to
	}
}

// watchDrops sends a "dropped" event each second in which held
// connections went away while the load generator waits for its window,
// which may be minutes in a large run: a fleet that loses connections
// while it ramps learns it then, with why (the first errors), not only
// from a smaller count at the end. The returned function stops it and
// waits for it to end.
func (e *engine) watchDrops(ctx context.Context) (stop func()) {
	if e.cfg.Event == nil {
		return func() {}
	}
	done, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var reported int64
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			var lost int64
			for _, l := range e.loops {
				lost += l.lost.Load()
			}
			if lost == reported {
				continue
			}
			reported = lost
			e.errMu.Lock()
			first := append([]string(nil), e.errors...)
			e.errMu.Unlock()
			e.cfg.Event(map[string]any{"event": "dropped", "shard": e.cfg.Shard, "dropped": lost, "errors": first, "error_kinds": e.errorKinds()})
		}
	}()
	return func() {
		close(done)
		<-ended
	}
}

// reportInterval sends the "interval" event for [from, to): the latency of
// the messages the held connections received in it, and the hostile
// kinds' counters so far.
func (e *engine) reportInterval(from, to time.Time) {
	h := histo.New()
	var gaps int64
	kinds := map[string]*KindStats{}
	for _, l := range e.loops {
		l.mu.Lock()
		h.Merge(l.hIv)
		l.hIv.Reset()
		gaps += l.ivGaps
		l.ivGaps = 0
		for k := range l.kinds {
			if l.hostile && e.cfg.Hostile.count(uint8(k+1)) > 0 {
				if kinds[Kinds[k]] == nil {
					kinds[Kinds[k]] = &KindStats{}
				}
				kinds[Kinds[k]].Add(&l.kinds[k])
			}
		}
		l.mu.Unlock()
	}
	ev := map[string]any{"event": "interval", "shard": e.cfg.Shard, "start_ns": from.UnixNano(), "end_ns": to.UnixNano(),
		"received": h.TotalCount(), "gaps": gaps}
	if h.TotalCount() > 0 {
		if enc, err := histo.Encode(h); err == nil {
			ev["latency"] = enc
		}
		s := histo.Summarize(h)
		ev["p50_us"], ev["p99_us"], ev["max_us"] = s.P50, s.P99, s.Max
	}
	if len(kinds) > 0 {
		ev["kinds"] = kinds
	}
	e.cfg.Event(ev)
}

// awaitChecks waits until every loop's final checks have ended, or until
// deadline.
func (e *engine) awaitChecks(ctx context.Context, deadline time.Time) {
	tick := time.NewTicker(time.Duration(paceEvery))
	defer tick.Stop()
	for time.Now().Before(deadline) {
		done := true
		for _, l := range e.loops {
			done = done && (!l.hostile || l.checked.Load())
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// closed reports whether done is closed; a nil done never is.
func closed(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// sleepUntil waits until t, or until early is closed (a nil early never
// is); it returns false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time, early ...<-chan struct{}) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	var stop <-chan struct{}
	if len(early) > 0 {
		stop = early[0]
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	case <-stop:
		return true
	}
}

type usage struct{ cpu, maxRSS int64 }

func rusage() usage {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return usage{}
	}
	return usage{cpu: ru.Utime.Nano() + ru.Stime.Nano(), maxRSS: ru.Maxrss * 1024}
}

func (l *loop) rand32() uint32 {
	l.rng ^= l.rng << 13
	l.rng ^= l.rng >> 7
	l.rng ^= l.rng << 17
	return uint32(l.rng >> 11)
}

func (l *loop) inWindow(now int64) bool {
	return now >= l.e.winLo.Load() && now < l.e.winHi.Load() && l.e.winLo.Load() != 0
}

func (l *loop) run() {
	defer close(l.exited)
	defer unix.Close(l.epfd)
	defer l.closeWakeup()
	cfg := &l.e.cfg
	traffic := false
	for {
		phase := l.e.phase.Load()
		if phase == phStop {
			break
		}
		if phase == phTraffic && !traffic {
			traffic = true
			now := time.Now().UnixNano()
			for i := range l.conns {
				c := &l.conns[i]
				switch {
				case c.churn:
					l.dialQ = append(l.dialQ, int32(i))
				case c.state == stOpen && cfg.Scenario == Echo:
					l.sendEcho(c, int32(i), cfg.Inflight, now)
				}
			}
		}
		timeout := 100
		if len(l.dialQ) > 0 || l.pending > 0 {
			timeout = 5
		} else if l.hostile {
			timeout = int(paceEvery / int64(time.Millisecond))
		}
		n, err := unix.EpollWait(l.epfd, l.events, timeout)
		if err != nil && !errors.Is(err, unix.EINTR) {
			l.e.noteError("epoll_wait: "+err.Error(), "epoll_wait: %v", err)
			break
		}
		now := time.Now().UnixNano()
		for i := 0; i < n; i++ {
			ev := l.events[i]
			if ev.Fd == wakeFd {
				l.tlsFinished(now, traffic)
				continue
			}
			c := &l.conns[ev.Fd]
			if c.fd < 0 {
				continue
			}
			l.handle(c, ev.Fd, ev.Events, now, traffic)
		}
		l.dial(now, traffic)
		if l.hostile && now-l.lastPace >= paceEvery {
			l.lastPace = now
			l.pace(now)
		}
		if now-l.lastScan > int64(200*time.Millisecond) {
			l.lastScan = now
			l.scan(now)
		}
	}
	for i := range l.conns {
		if c := &l.conns[i]; c.fd >= 0 {
			closeTLS(c)
			unix.Close(int(c.fd))
			c.fd = -1
		}
	}
}

// dial starts connections from the queue within the rate and pending limits.
func (l *loop) dial(now int64, traffic bool) {
	if len(l.dialQ) == 0 {
		return
	}
	cfg := &l.e.cfg
	maxPending := max(1, cfg.MaxPending/cfg.Loops)
	budget := maxPending - l.pending
	if cfg.ConnectRate > 0 {
		rate := cfg.ConnectRate / float64(cfg.Loops)
		if l.lastRefill == 0 {
			l.lastRefill = now
			l.tokens = 1
		}
		l.tokens += rate * float64(now-l.lastRefill) / 1e9
		l.tokens = min(l.tokens, max(1, rate/20))
		l.lastRefill = now
		budget = min(budget, int(l.tokens))
	}
	for budget > 0 && len(l.dialQ) > 0 {
		idx := l.dialQ[0]
		l.dialQ = l.dialQ[1:]
		c := &l.conns[idx]
		if c.churn && (!traffic || l.e.phase.Load() == phStop) {
			continue
		}
		if c.kind != 0 && l.e.phase.Load() >= phStop {
			continue
		}
		budget--
		if cfg.ConnectRate > 0 {
			l.tokens--
		}
		l.connect(c, idx, now)
	}
	if len(l.dialQ) == 0 {
		l.dialQ = nil
	}
}

func (l *loop) connect(c *conn, idx int32, now int64) {
	cfg := &l.e.cfg
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		l.e.noteError("socket: "+err.Error(), "socket: %v", err)
		l.fail(c, idx, false)
		return
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if c.kind != 0 && cfg.Hostile.MSS > 0 {
		// Before connect: the SYN advertises it, as a client across a
		// real network would, instead of loopback's 64 KiB.
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_MAXSEG, cfg.Hostile.MSS)
	}
	if c.kind != 0 {
		// Before connect, so that the window the server sees stays small.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, cfg.Hostile.RcvBuf)
	}
	if len(cfg.Src) > 0 {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		src := cfg.Src[l.src%len(cfg.Src)]
		l.src++
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
			unix.Close(fd)
			l.e.noteError("bind: "+err.Error(), "bind %s: %v", src, err)
			l.fail(c, idx, true)
			return
		}
	}
	c.fd = int32(fd)
	c.t0 = now
	c.state = stConnecting
	c.rbuf, c.wbuf, c.frag = c.rbuf[:0], c.wbuf[:0], c.frag[:0]
	c.inflight, c.fragOp = 0, 0
	c.flags &= fEverUp
	l.pending++
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP, Fd: idx}
	c.outWatch = true
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.e.noteError("epoll_ctl: "+err.Error(), "epoll_ctl: %v", err)
		l.fail(c, idx, false)
		return
	}
	if err := unix.Connect(fd, &l.sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		l.e.noteError("connect: "+err.Error(), "connect: %v", err)
		l.fail(c, idx, true)
	}
}

// closeFD releases c's socket and its pending-connection slot.
func (l *loop) closeFD(c *conn) {
	if c.fd >= 0 {
		closeTLS(c)
		unix.Close(int(c.fd))
		c.fd = -1
	}
	if c.state == stConnecting || c.state == stTLS || c.state == stHandshake {
		l.pending--
	}
	c.outWatch = false
	c.rbuf, c.wbuf, c.frag, c.seq = nil, nil, nil, nil
	c.z, c.hist = 0, nil
}

// fail handles a connection that did not come up: retried, or counted.
func (l *loop) fail(c *conn, idx int32, retry bool) {
	l.closeFD(c)
	c.state = stIdle
	if c.churn {
		if l.inWindow(time.Now().UnixNano()) {
			l.churnFail++
		}
		l.dialQ = append(l.dialQ, idx)
		return
	}
	if c.kind != 0 {
		l.mu.Lock()
		l.kindStats(c).ConnectFailures++
		l.mu.Unlock()
		if c.flags&fEverUp != 0 {
			// A reconnection failed: try again later, as long as the run goes on.
			l.redial(c, time.Now().UnixNano(), false)
			return
		}
	}
	c.attempt++
	if retry && int(c.attempt) < l.e.cfg.Retries {
		l.dialQ = append(l.dialQ, idx)
		return
	}
	c.state = stDone
	l.failed.Add(1)
}

// drop handles an established connection that went away.
func (l *loop) drop(c *conn, idx int32, why string) {
	if c.churn {
		l.fail(c, idx, true)
		return
	}
	if c.state == stOpen && l.e.phase.Load() != phStop {
		l.dropped++
		l.lost.Add(1)
		when := "dropped: "
		if l.e.phase.Load() == phConnect {
			when = "dropped before the window: "
		}
		l.e.noteError(when+why, "connection %d dropped: %s", c.id, why)
	}
	l.closeFD(c)
	c.state = stDone
}

func (l *loop) handle(c *conn, idx int32, events uint32, now int64, traffic bool) {
	switch c.state {
	case stConnecting:
		if events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		soErr, err := unix.GetsockoptInt(int(c.fd), unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil || soErr != 0 {
			l.e.noteError("connect: "+unix.Errno(soErr).Error(), "connect: %v", unix.Errno(soErr))
			l.fail(c, idx, true)
			return
		}
		if l.e.cfg.TLS != nil {
			l.startTLS(c, idx)
			return
		}
		l.upgrade(c, idx)
		return
	case stTLS:
		// The handshake's goroutine reads what the loop feeds it.
		if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) == 0 {
			return
		}
		n, err := unix.Read(int(c.fd), l.rb)
		if l.readOK(c, idx, now, n, err) {
			c.tls.pipe.feed(l.rb[:n])
		}
		return
	case stIdle, stDone:
		return
	}
	if events&unix.EPOLLOUT != 0 && len(c.wbuf) > 0 {
		if !l.write(c, idx, nil) {
			return
		}
		if len(c.wbuf) == 0 {
			l.watchOut(c, idx, false)
		}
	}
	if c.kind != 0 && c.state == stOpen {
		l.hostileEvent(c, idx, events, now)
		return
	}
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) == 0 {
		return
	}
	if c.kind != 0 {
		l.hostileHandshake(c, idx, now)
		return
	}
	n, err := unix.Read(int(c.fd), l.rb)
	if !l.readOK(c, idx, now, n, err) {
		return
	}
	if !c.churn && l.inWindow(now) {
		l.wire += int64(n) // what the server put on the wire, frame headers and all
	}
	if c.tls != nil {
		l.tlsInput(c, idx, l.rb[:n], now, traffic)
		return
	}
	l.input(c, idx, l.rb[:n], now, traffic)
}

// upgrade sends c's upgrade request. It returns false when the connection
// was closed.
func (l *loop) upgrade(c *conn, idx int32) bool {
	path := l.e.cfg.Path
	if c.churn {
		path = l.e.cfg.ChurnPath
	} else if c.kind != 0 {
		path = l.e.cfg.Hostile.Path
	}
	key := l.key(c)
	if l.offersDeflate(c) {
		l.wb = wsframe.AppendRequest(l.wb[:0], l.e.host, path, key, l.e.origin, deflateHeader)
	} else {
		l.wb = wsframe.AppendRequest(l.wb[:0], l.e.host, path, key, l.e.origin)
	}
	c.state = stHandshake
	if !l.write(c, idx, l.wb) {
		return false
	}
	l.watchOut(c, idx, len(c.wbuf) > 0)
	return true
}

func (l *loop) key(c *conn) string {
	id := uint64(c.id)
	if c.churn {
		id |= 1 << 40
	}
	id |= uint64(c.kind) << 41
	return wsframe.Key(id, uint32(c.attempt))
}

func (l *loop) eof(c *conn, idx int32, now int64, why string) {
	if c.kind != 0 && c.state == stOpen {
		l.hostileGone(c, idx, now, closeHow(why), true)
		return
	}
	if c.churn && c.state == stClosing {
		if l.inWindow(now) {
			l.churnCycles++
			histo.Record(l.hChurn, now-c.t0)
		}
		l.closeFD(c)
		c.state = stIdle
		c.attempt++
		l.dialQ = append(l.dialQ, idx)
		return
	}
	if c.state == stHandshake || c.state == stTLS {
		l.e.noteError("closed "+stateName(c.state)+": "+why, "connection %d closed %s: %s", c.id, stateName(c.state), why)
		l.fail(c, idx, true)
		return
	}
	l.drop(c, idx, why)
}

// input consumes bytes read from c.
func (l *loop) input(c *conn, idx int32, data []byte, now int64, traffic bool) {
	own := false
	if len(c.rbuf) > 0 {
		c.rbuf = append(c.rbuf, data...)
		data = c.rbuf
		own = true
	}
	if c.state == stHandshake {
		key := l.key(c)
		var n int
		var err error
		if l.offersDeflate(c) {
			var ext []byte
			if n, ext, err = wsframe.ParseResponseExtensions(data, key); err == nil && n > 0 {
				err = l.negotiated(c, ext)
			}
		} else {
			n, err = wsframe.ParseResponse(data, key)
		}
		if err != nil {
			l.protoErrs++
			end := min(len(data), 80)
			l.e.noteError("bad upgrade response: "+err.Error(), "handshake from %s: %v: %q", l.e.host, err, data[:end])
			l.fail(c, idx, false)
			return
		}
		if n == 0 {
			if !own {
				c.rbuf = append(c.rbuf[:0], data...)
			}
			return
		}
		data = data[n:]
		c.state = stOpen
		l.pending--
		histo.Record(l.hConn, now-c.t0)
		if c.churn {
			key := l.rand32()
			l.wb = wsframe.AppendClose(l.wb[:0], 1000, key)
			c.state = stClosing
			if !l.write(c, idx, l.wb) {
				return
			}
		} else {
			l.connected.Add(1)
			if traffic && l.e.cfg.Scenario == Echo {
				l.sendEcho(c, idx, l.e.cfg.Inflight, now)
			}
		}
	}
	consumed := l.frames(c, idx, data, now)
	if consumed < 0 || c.fd < 0 {
		return
	}
	rest := data[consumed:]
	if own {
		c.rbuf = data[:copy(data, rest)]
		if len(c.rbuf) == 0 && cap(c.rbuf) > 64<<10 {
			c.rbuf = nil
		}
	} else if len(rest) > 0 {
		c.rbuf = append(c.rbuf[:0], rest...)
	}
}

// frames decodes whole frames from data and returns the bytes consumed, or
// -1 when the connection was closed.
func (l *loop) frames(c *conn, idx int32, data []byte, now int64) int {
	off := 0
	for off < len(data) {
		var h wsframe.Header
		var ok bool
		var err error
		if c.z&zOn != 0 {
			h, ok, err = wsframe.ParseHeaderDeflate(data[off:])
		} else {
			h, ok, err = wsframe.ParseHeader(data[off:])
		}
		if err != nil {
			l.protocolError(c, idx, err.Error())
			return -1
		}
		if !ok {
			break
		}
		if h.Length > maxMessage {
			l.protocolError(c, idx, "frame too large")
			return -1
		}
		end := off + h.Size + int(h.Length)
		if end > len(data) {
			break
		}
		p := data[off+h.Size : end]
		off = end
		switch h.Op {
		case wsframe.OpText, wsframe.OpBinary:
			if c.fragOp != 0 {
				l.protocolError(c, idx, errContinuation)
				return -1
			}
			if !h.Fin {
				c.fragOp = h.Op
				c.frag = append(c.frag[:0], p...)
				if h.Compressed {
					c.z |= zFrag
				}
				continue
			}
			if h.Compressed {
				if p = l.inflate(c, idx, p, now); p == nil {
					return -1
				}
			}
			l.message(c, idx, h.Op, p, now)
		case wsframe.OpContinuation:
			if c.fragOp == 0 {
				l.protocolError(c, idx, errContinuation)
				return -1
			}
			if len(c.frag)+len(p) > maxMessage {
				l.protocolError(c, idx, "message too large")
				return -1
			}
			c.frag = append(c.frag, p...)
			if h.Fin {
				op := c.fragOp
				c.fragOp = 0
				msg := c.frag
				if c.z&zFrag != 0 {
					c.z &^= zFrag
					if msg = l.inflate(c, idx, msg, now); msg == nil {
						return -1
					}
				}
				l.message(c, idx, op, msg, now)
				c.frag = c.frag[:0]
				if cap(c.frag) > 64<<10 {
					c.frag = nil
				}
			}
		case wsframe.OpPing:
			l.wb = wsframe.AppendPong(l.wb[:0], p, l.rand32())
			if !l.write(c, idx, l.wb) {
				return -1
			}
		case wsframe.OpPong:
		case wsframe.OpClose:
			if c.churn && c.state == stClosing {
				// Wait for the server to close TCP (EOF); scan() bounds the wait.
				continue
			}
			code := wsframe.CloseCode(p)
			l.wb = wsframe.AppendCloseReply(l.wb[:0], p, l.rand32())
			if b := l.wb; c.tls == nil {
				_, _ = unix.Write(int(c.fd), b)
			} else if b = l.seal(c, b); b != nil {
				_, _ = unix.Write(int(c.fd), b)
			}
			if c.kind != 0 {
				l.hostileGone(c, idx, now, strconv.Itoa(int(code)), true)
				return -1
			}
			l.drop(c, idx, fmt.Sprintf("server sent close %d", code))
			return -1
		}
		if c.fd < 0 {
			return -1
		}
	}
	return off
}

func (l *loop) protocolError(c *conn, idx int32, why string) {
	if c.kind != 0 {
		l.mu.Lock()
		l.kindStats(c).ProtocolErrors++
		l.mu.Unlock()
		l.e.noteError("protocol error ("+Kinds[c.kind-1]+"): "+why, "protocol error on %s connection %d: %s", Kinds[c.kind-1], c.id, why)
		l.hostileGone(c, idx, time.Now().UnixNano(), "", false)
		return
	}
	l.protoErrs++
	l.e.noteError("protocol error: "+why, "protocol error on connection %d: %s", c.id, why)
	if c.churn {
		l.fail(c, idx, true)
		return
	}
	l.drop(c, idx, why)
}

// message handles one complete data message.
func (l *loop) message(c *conn, idx int32, op byte, p []byte, now int64) {
	if c.churn || c.kind != 0 {
		return
	}
	in := l.inWindow(now)
	switch l.e.cfg.Scenario {
	case Echo:
		if len(p) != len(l.msg) || !bytes.Equal(p[8:], l.msg[8:]) {
			l.protocolError(c, idx, "echo payload differs from what was sent")
			return
		}
		ts := int64(binary.LittleEndian.Uint64(p))
		c.inflight--
		if in {
			l.received++
			l.bytes += int64(len(p))
			histo.Record(l.hLat, now-ts)
			if l.e.cfg.Interval > 0 {
				l.mu.Lock()
				histo.Record(l.hIv, now-ts)
				l.mu.Unlock()
			}
		}
		if l.e.phase.Load() == phTraffic {
			l.sendEcho(c, idx, 1, now)
		}
	case Ticker, Churn:
		sym, seq, ts, ok := TickerFields(p)
		if !ok || op != wsframe.OpText || sym >= maxSymbols {
			l.protocolError(c, idx, "ticker message without sym/seq/ts")
			return
		}
		if sym >= len(c.seq) {
			c.seq = append(c.seq, make([]int64, sym+1-len(c.seq))...)
		}
		var gap int64
		if last := c.seq[sym]; last != 0 {
			switch {
			case seq+1 > last+1:
				gap = seq - last
				l.gaps += gap
			case seq+1 <= last:
				l.reordered++
			}
		}
		c.seq[sym] = seq + 1
		if in {
			l.received++
			l.bytes += int64(len(p))
			histo.Record(l.hLat, now-ts)
			if l.e.cfg.Interval > 0 {
				l.mu.Lock()
				histo.Record(l.hIv, now-ts)
				l.ivGaps += gap
				l.mu.Unlock()
			}
		}
	default:
		if in {
			l.received++
			l.bytes += int64(len(p))
		}
	}
}

// offersDeflate reports whether c offers permessage-deflate: the
// scenario's connections do with Config.Deflate, the hostile ones never.
func (l *loop) offersDeflate(c *conn) bool { return l.e.cfg.Deflate && c.kind == 0 }

// negotiated records the server's answer to c's deflate offer.
func (l *loop) negotiated(c *conn, ext []byte) error {
	a, err := parseDeflateAnswer(ext)
	if err != nil {
		if errors.Is(err, errDeclined) {
			l.e.declined.Add(1)
		}
		return err
	}
	c.z, c.hist = zOn, nil
	if a.clientBits < 15 {
		c.z |= zHuffman
	}
	if a.serverTakeover {
		c.hist = &history{window: 1 << a.serverBits}
	}
	return nil
}

// inflate returns the message whose compressed payload is p, or nil when
// it is not valid DEFLATE (c is then closed as a protocol error).
func (l *loop) inflate(c *conn, idx int32, p []byte, now int64) []byte {
	out, err := l.fl.inflate(p, c.hist)
	if err != nil {
		l.protocolError(c, idx, err.Error())
		return nil
	}
	if l.inWindow(now) && !c.churn {
		l.compressed++
	}
	return out
}

// sendEcho sends n echo messages stamped with now.
func (l *loop) sendEcho(c *conn, idx int32, n int, now int64) {
	binary.LittleEndian.PutUint64(l.msg, uint64(now))
	const op = wsframe.OpBinary
	l.wb = l.wb[:0]
	p := l.msg
	if c.z&zOn != 0 {
		p = l.fl.echoMessage(l.msg, c.z&zHuffman != 0)
	}
	for i := 0; i < n; i++ {
		start := len(l.wb)
		l.wb = wsframe.AppendFrame(l.wb, op, p, l.rand32())
		if c.z&zOn != 0 {
			l.wb[start] |= wsframe.RSV1
		}
	}
	c.inflight += int32(n)
	if l.inWindow(now) {
		l.sent += int64(n)
	}
	l.write(c, idx, l.wb)
}

// write sends b (nil: flushes c.wbuf) and queues what the socket did not
// take. It returns false when the connection was closed.
func (l *loop) write(c *conn, idx int32, b []byte) bool {
	if b != nil && c.tls != nil {
		if b = l.seal(c, b); b == nil {
			l.eof(c, idx, time.Now().UnixNano(), "tls: write refused")
			return false
		}
	}
	if b != nil && len(c.wbuf) > 0 {
		c.wbuf = append(c.wbuf, b...)
		return true
	}
	if b == nil {
		b = c.wbuf
	}
	for len(b) > 0 {
		n, err := unix.Write(int(c.fd), b)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if errors.Is(err, unix.EAGAIN) {
				break
			}
			l.eof(c, idx, time.Now().UnixNano(), "write: "+err.Error())
			return false
		}
		b = b[n:]
	}
	if len(b) == 0 {
		c.wbuf = c.wbuf[:0]
		return true
	}
	if &b[len(b)-1] != lastByte(c.wbuf) {
		c.wbuf = append(c.wbuf[:0], b...)
	} else {
		c.wbuf = c.wbuf[:copy(c.wbuf, b)]
	}
	l.watchOut(c, idx, true)
	return true
}

func lastByte(b []byte) *byte {
	if len(b) == 0 {
		return nil
	}
	return &b[len(b)-1]
}

func (l *loop) watchOut(c *conn, idx int32, on bool) {
	if c.outWatch == on || c.fd < 0 {
		return
	}
	c.outWatch = on
	ev := unix.EpollEvent{Events: l.interest(c), Fd: idx}
	if on {
		ev.Events |= unix.EPOLLOUT
	}
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, int(c.fd), &ev)
}

// scan enforces the handshake and close timeouts.
func (l *loop) scan(now int64) {
	const handshakeTimeout = int64(10 * time.Second)
	const closeTimeout = int64(3 * time.Second)
	for i := range l.conns {
		c := &l.conns[i]
		switch c.state {
		case stConnecting, stTLS, stHandshake:
			if now-c.t0 > handshakeTimeout {
				l.e.noteError("timed out "+stateName(c.state), "connection %d: timed out %s", c.id, stateName(c.state))
				l.fail(c, int32(i), true)
			}
		case stClosing:
			if now-c.t0 > closeTimeout {
				l.e.noteError("churn: server did not close TCP after the close handshake", "churn: server did not close TCP after the close handshake")
				l.fail(c, int32(i), true)
			}
		}
	}
}

// readOK reports whether a read of c returned bytes; a connection the peer
// closed or that failed is ended (eof), one with nothing yet is left alone.
func (l *loop) readOK(c *conn, idx int32, now int64, n int, err error) bool {
	if err != nil {
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
			l.eof(c, idx, now, err.Error())
		}
		return false
	}
	if n == 0 {
		l.eof(c, idx, now, "EOF")
		return false
	}
	return true
}
