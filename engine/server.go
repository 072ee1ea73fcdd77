package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/heraldws/herald/codec"
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

	clock    atomic.Int64 // coarse time in Unix ns, advanced by the ticker
	nextID   atomic.Uint64
	active   atomic.Int64
	draining atomic.Bool

	mu       sync.Mutex
	loops    map[gnet.EventLoop]*Loop
	loopList atomic.Pointer[[]*Loop]

	startOnce sync.Once
	eng       gnet.Engine
	addr      net.Addr
	booted    chan struct{}
	stopped   chan struct{} // closed when gnet.Run has returned
	runErr    error
	stopTick  chan struct{}
	shutOnce  sync.Once

	closeHooks []func(*Conn)
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
		OriginPatterns: cfg.OriginPatterns,
		CheckOrigin:    cfg.CheckOrigin,
		Authorize:      cfg.Authorize,
		Subprotocols:   cfg.Subprotocols,
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
		loops:    make(map[gnet.EventLoop]*Loop),
		booted:   make(chan struct{}),
		stopped:  make(chan struct{}),
		stopTick: make(chan struct{}),
	}
	s.pingH, _ = h.(PingHandler)
	s.pongH, _ = h.(PongHandler)
	if cfg.Workers > 0 {
		s.workers = pool.NewWorkers(cfg.Workers, cfg.WorkerQueue)
	}
	s.clock.Store(time.Now().UnixNano())
	empty := []*Loop{}
	s.loopList.Store(&empty)
	return s, nil
}

// Start listens and serves in the background. It returns once the server is
// listening (Addr is then valid), or with the error that prevented it.
func (s *Server) Start() error {
	started := false
	s.startOnce.Do(func() {
		started = true
		go s.run()
	})
	if !started {
		return errors.New("herald: Start: server already started")
	}
	select {
	case <-s.booted:
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
	err := gnet.Run(&events{s: s}, "tcp://"+s.cfg.Addr, opts...)
	if err != nil {
		err = fmt.Errorf("herald: serve %s: %w", s.cfg.Addr, err)
	}
	s.runErr = err
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

// Addr returns the address the server listens on, once started.
func (s *Server) Addr() net.Addr { return s.addr }

// Shutdown stops accepting connections, sends close 1001 to every open
// connection and waits for their close handshakes until ctx is done; then it
// closes whatever is left and stops the event loops. It returns ctx's error
// if connections had to be cut.
func (s *Server) Shutdown(ctx context.Context) error {
	select {
	case <-s.booted:
	default:
		return errors.New("herald: Shutdown: server not started")
	}
	var result error
	s.shutOnce.Do(func() {
		s.draining.Store(true)
		for _, l := range *s.loopList.Load() {
			_ = l.post(task{kind: taskShutdown})
		}
		poll := time.NewTicker(5 * time.Millisecond)
		defer poll.Stop()
	wait:
		for s.active.Load() > 0 {
			select {
			case <-ctx.Done():
				result = ctx.Err()
				break wait
			case <-poll.C:
			}
		}
		close(s.stopTick)
		stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// gnet's Stop polls for the end every half second; gnet.Run
		// returning (s.stopped) tells us sooner.
		stopErr := make(chan error, 1)
		go func() { stopErr <- s.eng.Stop(stopCtx) }()
		select {
		case <-s.stopped:
		case err := <-stopErr:
			if err != nil && result == nil {
				result = fmt.Errorf("herald: stopping event loops: %w", err)
			}
		}
		if s.workers != nil {
			_ = s.workers.Close(stopCtx)
		}
	})
	return result
}

// Loops returns the loops that have served a connection so far, indexed by
// Loop.Index. A loop joins the list when its first connection arrives.
func (s *Server) Loops() []*Loop { return *s.loopList.Load() }

// OnConnClose registers fn to run on the loop whenever an upgraded
// connection closes, before Handler.OnClose. Extensions use it to forget the
// connection (the broadcast hub drops its subscriptions). Register hooks
// before Start.
func (s *Server) OnConnClose(fn func(c *Conn)) {
	s.closeHooks = append(s.closeHooks, fn)
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	st := Stats{Active: s.active.Load()}
	for _, l := range *s.loopList.Load() {
		l.stats.addTo(&st)
	}
	return st
}

// now is the coarse clock used for all connection timers.
func (s *Server) now() int64 { return s.clock.Load() }

// tick advances the coarse clock and asks every loop to sweep its
// connections' timers. One goroutine per server, not per connection.
func (s *Server) tick() {
	t := time.NewTicker(s.cfg.sweepEvery())
	defer t.Stop()
	for {
		select {
		case <-s.stopTick:
			return
		case <-s.stopped:
			return
		case now := <-t.C:
			s.clock.Store(now.UnixNano())
			for _, l := range *s.loopList.Load() {
				_ = l.el.Execute(context.Background(), sweeper{l})
			}
		}
	}
}

// loopOf returns herald's state for a gnet loop, creating it on the loop's
// first connection. It runs on that loop.
func (s *Server) loopOf(el gnet.EventLoop) *Loop {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.loops[el]
	if l == nil {
		l = &Loop{srv: s, el: el, index: len(*s.loopList.Load())}
		l.g.Store(currentG())
		s.loops[el] = l
		list := append(append([]*Loop(nil), *s.loopList.Load()...), l)
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
