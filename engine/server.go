package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/heraldws/herald/codec"
	"github.com/heraldws/herald/internal/looplink"
	"github.com/heraldws/herald/pool"
	"github.com/heraldws/herald/upgrade"
)

// Server is a WebSocket server on gnet event loops. Create it with New,
// start it with Start, Serve or Run, and stop it with Shutdown.
type Server struct {
	cfg     Config
	handler Handler
	pingH   PingHandler
	pongH   PongHandler
	log     *slog.Logger
	up      *upgrade.Upgrader
	decCfg  codec.DecoderConfig
	workers *pool.Workers
	hooks   *hookPool // Config.HandshakeWorkers with a hook to run; nil otherwise
	// subprotocols is Config.Subprotocols, copied: Conn.proto indexes it.
	subprotocols []string

	// epoch starts the timer clock: every timer stamp is the monotonic
	// time since then (see clock).
	epoch    time.Time
	nextID   atomic.Uint64
	active   atomic.Int64
	open     atomic.Int64 // upgraded and not yet closed
	panics   atomic.Uint64
	draining atomic.Bool

	// memReturn is owned by the timer goroutine (tick); returning is set
	// while a return runs; activePeak is the highest active since the
	// return last looked (reclaim.go).
	memReturn     memoryReturn
	burst         arrivalBurst // timer goroutine; nextID counts the arrivals (reclaim_burst.go)
	returning     atomic.Bool
	memoryReturns atomic.Uint64
	activePeak    atomic.Int64

	mu       sync.Mutex
	loops    map[gnet.EventLoop]*loop
	loopList atomic.Pointer[[]*loop]

	startOnce sync.Once
	eng       gnet.Engine
	addr      net.Addr
	booted    chan struct{}
	ready     chan struct{} // closed once the loops run: ServeHTTP may hand them connections
	mnt       mountState
	stopped   chan struct{} // closed when gnet.Run has returned
	runErr    error
	stopTick  chan struct{}
	shutOnce  sync.Once

	// closeHooks run on the loop when an upgraded connection closes;
	// copy-on-write, so they can be added while loops read them.
	closeHooks atomic.Pointer[[]func(looplink.Conn)]
	// testClock, if set by a test, replaces the monotonic clock.
	testClock atomic.Pointer[func() time.Duration]

	lim limits // the operational limits (limits.go)

	// TLS (tls.go): the server's copy of Config.TLS, nil without TLS; the
	// CPU tokens of the handshakes (tlsTokens); the handshakes in flight,
	// bounded by Config.MaxTLSHandshakes.
	tlsCfg      *tls.Config
	tlsTokens   chan struct{}
	tlsInflight atomic.Int64
}

// New validates cfg, applies its defaults and returns a server that is not
// running yet.
func New(cfg Config, h Handler) (*Server, error) {
	if h == nil {
		return nil, errors.New("herald: New: nil Handler")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	up, err := upgrade.New(upgrade.Config{
		MaxHeaderBytes: cfg.MaxHeaderBytes,
		Path:           cfg.Path,
		ClientAddr:     forwardedClient(cfg),
		OriginPatterns: cfg.OriginPatterns,
		CheckOrigin:    cfg.CheckOrigin,
		Authorize:      cfg.Authorize,
		DeferHooks:     cfg.HandshakeWorkers > 0,
		Subprotocols:   cfg.Subprotocols,
		Compression:    cfg.Compression.Enabled,
		HTTPHandler:    cfg.HTTPHandler,
	})
	if err != nil {
		return nil, fmt.Errorf("herald: %w", err)
	}
	s := &Server{
		cfg:      cfg,
		handler:  h,
		log:      cfg.Logger,
		up:       up,
		decCfg:   codec.DecoderConfig{MaxFrameBytes: cfg.MaxFrameBytes, MaxMessageBytes: cfg.MaxMessageBytes},
		loops:    make(map[gnet.EventLoop]*loop),
		epoch:    time.Now(),
		booted:   make(chan struct{}),
		ready:    make(chan struct{}),
		stopped:  make(chan struct{}),
		stopTick: make(chan struct{}),
	}
	if cfg.TLS != nil {
		s.tlsCfg = tlsConfig(cfg.TLS)
		s.tlsTokens = make(chan struct{}, tlsTokens(cfg.Loops))
	}
	s.memReturn.threshold = cfg.ReturnMemoryAfter
	s.lim = newLimits(cfg)
	s.mnt.enrolling = make(chan struct{}, 2*cfg.Loops)
	s.subprotocols = append([]string(nil), cfg.Subprotocols...)
	s.pingH, _ = h.(PingHandler)
	s.pongH, _ = h.(PongHandler)
	if cfg.Workers > 0 {
		s.workers = pool.NewWorkers(cfg.Workers, cfg.WorkerQueue)
	}
	if cfg.HandshakeWorkers > 0 && (cfg.Authorize != nil || cfg.CheckOrigin != nil) {
		s.hooks = newHookPool(s)
	}
	if s.workers != nil {
		// The engine recovers panics in its own tasks; this catches
		// anything else, without printing on its own.
		s.workers.SetPanicHandler(func(_ *pool.Serial, v any) {
			s.reportPanic(nil, &PanicError{Hook: "worker task", Value: v, Stack: debug.Stack()})
		})
	}
	empty := []*loop{}
	s.loopList.Store(&empty)
	noHooks := []func(looplink.Conn){}
	s.closeHooks.Store(&noHooks)
	return s, nil
}

// Start listens and serves in the background. It returns once the server is
// listening (Addr is then valid), or with the error that prevented it.
func (s *Server) Start() error {
	started := false
	s.startOnce.Do(func() {
		started = true
		s.hooks.start()
		go s.run()
	})
	if !started {
		return errors.New("herald: Start: server already started")
	}
	select {
	case <-s.ready:
		go s.tick()
		return nil
	case <-s.stopped:
		return s.runErr
	}
}

func (s *Server) run() {
	opts := []gnet.Option{
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(s.cfg.Loops),
		gnet.WithReusePort(s.cfg.ReusePort),
		gnet.WithReuseAddr(true),
		gnet.WithLogger(gnetLogger{s.log}),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
	}
	if s.cfg.SocketSendBuffer > 0 {
		// Set on the listener: accepted sockets inherit it.
		opts = append(opts, gnet.WithSocketSendBuffer(s.cfg.SocketSendBuffer))
	}
	opts = append(opts, s.mountOptions()...)
	target, err := s.listenTarget()
	if err == nil {
		err = gnet.Run(&events{s: s}, target, opts...)
		s.removeMountDir()
	}
	if err != nil {
		err = fmt.Errorf("herald: serve %s: %w", s.cfg.Addr, err)
	}
	s.runErr = err
	s.hooks.close()
	close(s.stopped)
}

// Serve is Start followed by waiting until the server stops (after Shutdown).
func (s *Server) Serve() error {
	if err := s.Start(); err != nil {
		return err
	}
	<-s.stopped
	return s.runErr
}

// Run serves until ctx is done, then shuts down gracefully within
// Config.ShutdownTimeout. It is what a main function calls, with a context
// from signal.NotifyContext.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-s.stopped:
		return s.runErr
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	return s.Shutdown(sctx)
}

// Addr returns the address the server listens on, or nil until it listens.
// Safe from any goroutine.
func (s *Server) Addr() net.Addr {
	select {
	case <-s.booted:
		return s.addr
	default:
		return nil
	}
}

// Shutdown stops accepting connections, sends close 1001 to every open
// connection and waits for their close handshakes until ctx is done; then it
// closes whatever is left and stops the event loops, and with Config.Workers
// waits for the queued handler calls. Every wait is bounded by ctx: it
// returns ctx's error if connections had to be cut or the loops or workers
// had not finished by then (they finish in the background). Calling it
// again returns ErrClosed.
func (s *Server) Shutdown(ctx context.Context) error {
	select {
	case <-s.booted:
	default:
		return errors.New("herald: Shutdown: server not started")
	}
	result := ErrClosed
	s.shutOnce.Do(func() {
		result = s.shutdown(ctx)
	})
	return result
}

func (s *Server) shutdown(ctx context.Context) error {
	var result error
	s.draining.Store(true)
	for _, l := range *s.loopList.Load() {
		_ = l.post(task{kind: taskShutdown})
	}
	// After the shutdown tasks, so that the loops answer the parked
	// handshakes before their hooks' late answers arrive.
	s.hooks.close()
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
wait:
	for s.active.Load() > 0 || s.mnt.inFlight.Load() > 0 {
		select {
		case <-ctx.Done():
			result = ctx.Err()
			break wait
		case <-poll.C:
		}
	}
	close(s.stopTick)
	// gnet's Stop only starts the shutdown and then polls for its end every
	// half second; gnet.Run returning (s.stopped) tells us sooner.
	go func() { _ = s.eng.Stop(context.Background()) }()
	select {
	case <-s.stopped:
	case <-ctx.Done():
		if result == nil {
			result = fmt.Errorf("herald: stopping event loops: %w", ctx.Err())
		}
	}
	if s.workers != nil {
		if err := s.workers.Close(ctx); err != nil && result == nil {
			result = fmt.Errorf("herald: waiting for handler workers: %w", err)
		}
	}
	return result
}

// protoIndex returns what Conn.proto holds for the subprotocol p chose by
// the upgrader, one of s.subprotocols or "".
func (s *Server) protoIndex(p string) uint8 {
	if p == "" {
		return 0
	}
	for i, q := range s.subprotocols {
		if q == p {
			return uint8(i + 1)
		}
	}
	return 0 // not reached: the upgrader chooses from the same list
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	st := Stats{Active: s.active.Load(), Open: s.open.Load(), Panics: s.panics.Load(), MemoryReturns: s.memoryReturns.Load(),
		TLSHandshakesInFlight: s.tlsInflight.Load()}
	s.mnt.addTo(&st)
	for _, l := range *s.loopList.Load() {
		l.stats.addTo(&st)
		st.OutboundBytes += l.held.Load()
		l.mu.Lock()
		st.InboxDepth += int64(len(l.inbox))
		l.mu.Unlock()
	}
	s.lim.addTo(&st)
	return st
}

// clock is the timer clock: monotonic time since the server was created.
// Loops read it when they begin a piece of work (loop.tick).
func (s *Server) clock() time.Duration {
	if f := s.testClock.Load(); f != nil {
		return (*f)()
	}
	return time.Since(s.epoch)
}

// tick asks every loop to sweep its connections' timers at a steady pace.
// One goroutine per server, not per connection.
func (s *Server) tick() {
	t := time.NewTicker(s.cfg.sweepEvery())
	defer t.Stop()
	for {
		select {
		case <-s.stopTick:
			return
		case <-s.stopped:
			return
		case <-t.C:
			s.sweepAll(false)
			s.maybeReturnMemory()
		}
	}
}

// sweepAll posts a timer sweep to every loop; with wait it returns once all
// of them have swept.
func (s *Server) sweepAll(wait bool) {
	loops := *s.loopList.Load()
	done := make([]chan struct{}, 0, len(loops))
	for _, l := range loops {
		t := task{kind: taskSweep}
		if wait {
			t.done = make(chan struct{})
			done = append(done, t.done)
		}
		_ = l.post(t)
	}
	for _, d := range done {
		<-d
	}
}

// loopOf returns herald's state for a gnet loop, creating it on the loop's
// first connection. It runs on that loop.
func (s *Server) loopOf(el gnet.EventLoop) *loop {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.loops[el]
	if l == nil {
		l = &loop{srv: s, el: el, index: len(*s.loopList.Load()), share: s.cfg.MaxOutboundTotal / int64(s.cfg.Loops)}
		l.g.Store(currentG())
		l.dec.Init(&s.decCfg, false)
		s.loops[el] = l
		list := append(append([]*loop(nil), *s.loopList.Load()...), l)
		s.loopList.Store(&list)
	}
	return l
}

// listenAddr asks the kernel which address the listener got, so that port 0
// works.
func listenAddr(eng gnet.Engine) (net.Addr, error) {
	fd, err := eng.Dup()
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return nil, err
	}
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}, nil
	case *syscall.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}, nil
	}
	return nil, fmt.Errorf("unexpected socket address %T", sa)
}
