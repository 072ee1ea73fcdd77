package engine

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"github.com/heraldws/herald/pool"
	"github.com/heraldws/herald/upgrade"
)

// Handshake hooks off the loop (Config.HandshakeWorkers).
//
// A handshake whose request is valid but for what CheckOrigin or Authorize
// will say is parked: the upgrader returns it as an upgrade.Pending, the
// loop hands it to the handshake workers' bounded queue and goes on with its
// other connections. The parked connection keeps a hookWait in its connAux
// and no goroutine; bytes it sends meanwhile are kept, up to a bound. A
// worker runs the hooks with a context that the loop ends (at the handshake
// deadline, when the connection closes, at shutdown), and posts the Result
// back to the loop, which then goes on exactly as if the hooks had run
// there: the 101 or the refusal, OnOpen, then the kept bytes as frames. A
// result that comes back for a connection that is no longer waiting for it
// (the hookWait identifies the wait) is dropped.

// ErrHandshakeTimeout is the cause (context.Cause) of a hook's context
// (upgrade.Request.Context) that ended because Config.HandshakeTimeout
// passed before the hooks returned; the context's Err is then
// context.DeadlineExceeded. A context that ended because the connection
// closed or the server shut down has the cause ErrClosed.
var ErrHandshakeTimeout = errors.New("herald: handshake timeout")

// earlyAllowance is how many bytes a parked connection may send beyond
// Config.MaxHeaderBytes, its head included, before it is answered: room for
// a first message pipelined behind the request, not for a stream.
const earlyAllowance = 4 << 10

// Refusals of parked handshakes.
var (
	rejectHookTimeout = &upgrade.RejectError{Status: http.StatusServiceUnavailable, Reason: "handshake timed out"}
	rejectQueueFull   = &upgrade.RejectError{
		Status: http.StatusServiceUnavailable,
		Reason: "too many handshakes waiting",
		Header: http.Header{"Retry-After": {"1"}},
	}
	rejectShutdown  = &upgrade.RejectError{Status: http.StatusServiceUnavailable, Reason: "server shutting down"}
	rejectEarlyData = &upgrade.RejectError{Status: http.StatusBadRequest, Reason: "too much data before the handshake completed"}
)

// hookPool is the handshake workers: goroutines shared by all connections,
// fed by a bounded queue.
type hookPool struct {
	ev      *events
	workers int
	jobs    chan hookJob
	stop    chan struct{}
	once    sync.Once
	// base is the parent of every hook's context, ended at shutdown.
	base   context.Context
	cancel context.CancelCauseFunc
}

type hookJob struct {
	c *Conn
	w *hookWait
}

func newHookPool(s *Server) *hookPool {
	base, cancel := context.WithCancelCause(context.Background())
	return &hookPool{
		ev:      &events{s: s},
		workers: s.cfg.HandshakeWorkers,
		jobs:    make(chan hookJob, s.cfg.HandshakeQueue),
		stop:    make(chan struct{}),
		base:    base,
		cancel:  cancel,
	}
}

// start starts the workers. Nil-safe.
func (p *hookPool) start() {
	if p == nil {
		return
	}
	for range p.workers {
		go p.work()
	}
}

// close ends every hook's context and lets the workers go once their
// current hook returns. Nil-safe; idempotent.
func (p *hookPool) close() {
	if p == nil {
		return
	}
	p.once.Do(func() {
		p.cancel(ErrClosed)
		close(p.stop)
	})
}

func (p *hookPool) work() {
	for {
		select {
		case j := <-p.jobs:
			p.ev.s.runHooks(j.c, j.w)
		case <-p.stop:
			return
		}
	}
}

// submit queues j unless the queue is full.
func (p *hookPool) submit(j hookJob) bool {
	select {
	case p.jobs <- j:
		return true
	default:
		return false
	}
}

// hookWait is a parked handshake. The worker touches p, ctx, res and
// reported only; the rest is the loop's.
type hookWait struct {
	p      *upgrade.Pending
	ctx    hookCtx
	cancel context.CancelCauseFunc
	// early holds what the client sent after the head meanwhile; held
	// counts the head and early.
	early *bytebufferpool.ByteBuffer
	held  int
	// res is what the hooks decided, set by the worker before it posts.
	res upgrade.Result
	// reported: the hook panicked and the worker reported it.
	reported bool
}

// hookCtx is a hook's context: canceled by the loop, with the handshake
// deadline as its Deadline (the loop's sweep ends it then: no timer per
// handshake, and a test clock drives it like every other timeout).
type hookCtx struct {
	context.Context
	deadline time.Time
}

func (c *hookCtx) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *hookCtx) Err() error {
	err := c.Context.Err()
	if err != nil && context.Cause(c.Context) == ErrHandshakeTimeout {
		return context.DeadlineExceeded
	}
	return err
}

// waiting returns c's parked handshake, or nil. Loop only.
func (c *Conn) waiting() *hookWait {
	if a := c.aux; a != nil {
		return a.wait
	}
	return nil
}

// park hands a Deferred handshake to the handshake workers. rest is what
// followed the head in the buffer.
func (e *events) park(c *Conn, res upgrade.Result, rest []byte) gnet.Action {
	s, l := e.s, c.loop
	p := res.Pending
	switch {
	case s.draining.Load():
		return s.completeHandshake(c, p.Reject(rejectShutdown), false)
	case res.Consumed+len(rest) > s.cfg.MaxHeaderBytes+earlyAllowance:
		return s.completeHandshake(c, p.Reject(rejectEarlyData), false)
	}
	w := &hookWait{p: p, held: res.Consumed}
	ctx, cancel := context.WithCancelCause(s.hooks.base)
	w.ctx = hookCtx{Context: ctx, deadline: time.Now().Add(c.deadline - l.now)}
	w.cancel = cancel
	if c.aux == nil {
		c.aux = l.newAux()
	}
	c.aux.wait = w
	l.stats.hooksPending.Add(1)
	if len(rest) > 0 {
		w.keep(rest)
	}
	if !s.hooks.submit(hookJob{c: c, w: w}) {
		c.unpark(w, ErrClosed)
		l.stats.hookQueueFull.Add(1)
		return s.completeHandshake(c, p.Reject(rejectQueueFull), false)
	}
	return gnet.None
}

// keep appends what a parked connection sent.
func (w *hookWait) keep(b []byte) {
	if w.early == nil {
		w.early = pool.Get(len(b))
	}
	w.early.B = append(w.early.B, b...)
	w.held += len(b)
}

// parkedRead handles bytes from a parked connection: kept for after the
// 101, unless there are too many.
func (e *events) parkedRead(c *Conn, w *hookWait, buf []byte) gnet.Action {
	if w.held+len(buf) > e.s.cfg.MaxHeaderBytes+earlyAllowance {
		c.unpark(w, ErrClosed)
		return e.s.completeHandshake(c, w.p.Reject(rejectEarlyData), false)
	}
	w.keep(buf)
	return gnet.None
}

// unpark ends c's wait w, ending its context with cause and dropping the
// bytes kept (take them first to use them). Loop only.
func (c *Conn) unpark(w *hookWait, cause error) {
	c.aux.wait = nil
	c.loop.stats.hooksPending.Add(-1)
	w.cancel(cause)
	pool.Put(w.early)
	w.early = nil
}

// abortHandshake ends a connection that is still handshaking: its deadline
// passed, or the server shuts down. A parked one is answered with 503.
// Loop only.
func (c *Conn) abortHandshake(shutdown bool) {
	l := c.loop
	if w := c.waiting(); w != nil {
		cause, why := error(ErrHandshakeTimeout), rejectHookTimeout
		if shutdown {
			cause, why = ErrClosed, rejectShutdown
		} else {
			l.stats.hookTimeouts.Add(1)
		}
		c.unpark(w, cause)
		l.srv.completeHandshake(c, w.p.Reject(why), false)
		_ = c.gc.Close()
		return
	}
	if !shutdown {
		l.stats.handshakeTimeouts.Add(1)
	}
	c.state = stateClosed
	_ = c.gc.Close()
}

// runHooks runs a parked handshake's hooks on a handshake worker and posts
// the result to the connection's loop.
func (s *Server) runHooks(c *Conn, w *hookWait) {
	if w.ctx.Err() == nil { // else the loop has given up on it already
		w.res = w.p.Run(&w.ctx)
		if errors.Is(w.res.Err, upgrade.ErrPanic) {
			s.reportPanic(nil, handshakePanic(w.res.Err))
			w.reported = true
		}
	}
	if err := c.loop.post(task{kind: taskFunc, fn: func() { s.resumeHandshake(c, w) }}); err != nil {
		pool.Put(w.res.Response)
	}
}

// resumeHandshake, on the loop, goes on with a handshake whose hooks have
// returned, as the handshake would have on the loop: the reply, OnOpen, then
// the bytes the client sent meanwhile, as frames.
func (s *Server) resumeHandshake(c *Conn, w *hookWait) {
	res := w.res
	if c.waiting() != w {
		// Answered already (timed out, shut down) or gone.
		pool.Put(res.Response)
		return
	}
	if w.ctx.Err() != nil {
		// Ended at shutdown before the loop had answered it.
		pool.Put(res.Response)
		c.unpark(w, ErrClosed)
		s.completeHandshake(c, w.p.Reject(rejectShutdown), false)
		_ = c.gc.Close()
		return
	}
	early := w.early
	w.early = nil
	c.unpark(w, nil) // the hooks have returned: their context ends
	action := s.completeHandshake(c, res, w.reported)
	if early != nil {
		if action == gnet.None {
			action = s.hooks.ev.readFrames(c, early.B)
		}
		pool.Put(early)
	}
	if action == gnet.Close || c.state == stateClosed {
		_ = c.gc.Close()
	}
}
