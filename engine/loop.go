package engine

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"github.com/heraldws/herald/pool"
)

// loop is herald's state for one gnet event loop. Each connection belongs to
// one loop for its whole life, and everything that touches the connection
// runs there. Everything but the inbox is touched only on the loop's
// goroutine.
//
// Its exported methods implement looplink.Loop, the door through which the
// broadcast hub reaches it; users cannot name the type.
type loop struct {
	srv   *Server
	el    gnet.EventLoop
	index int
	// g identifies the loop's goroutine (see currentG).
	g atomic.Uintptr

	// now is the timer clock, read when the loop begins a piece of work
	// (a read, an inbox drain, a sweep) and used to stamp everything that
	// work does, so that a flush to thousands of subscribers reads the
	// clock once.
	now time.Duration

	conns []*Conn // Conn.slot indexes this slice

	// scratch assembles small outgoing frames so that each costs one write
	// and no allocation; iov carries large ones to writev.
	scratch []byte
	iov     [2][]byte

	mu    sync.Mutex
	inbox []task
	spare []task // the previous inbox, reused to avoid allocating
	woken atomic.Bool

	// deferred runs once the current inbox drain is over (see Defer).
	deferred []func()
	// sweepers run at every sweep (see OnSweep).
	sweepers []func(now time.Duration)

	// held is the sum of the backlogs gnet holds for this loop's
	// connections (Conn.account); share is the loop's part of
	// Config.MaxOutboundTotal.
	held  atomic.Int64
	share int64

	stats loopStats
}

// Index is the loop's position among the server's loops: 0, 1, 2... in the
// order they served their first connection.
func (l *loop) Index() int { return l.index }

// Post runs fn on the loop, after the work posted before it. It is safe
// from any goroutine and wakes the loop at most once per burst of posts. It
// returns ErrClosed when the server is stopping and fn will not run.
func (l *loop) Post(fn func()) error {
	return l.post(task{kind: taskFunc, fn: fn})
}

// OnLoop reports whether the caller is running on this loop.
func (l *loop) OnLoop() bool { return l.onLoop() }

// OverBudget reports whether the loop's share of Config.MaxOutboundTotal is
// used up: the broadcast hub then treats every subscriber with a backlog as
// slow. Safe from any goroutine.
func (l *loop) OverBudget() bool { return l.overBudget(0) }

// overBudget reports whether n more bytes would pass the loop's share.
func (l *loop) overBudget(n int) bool {
	return l.held.Load()+int64(n) > l.share
}

// Defer runs fn on the loop once the work currently being drained from its
// inbox is done, so that the effects of many posts are acted on once (the
// broadcast hub writes each subscriber's frames in one write this way). Loop
// only.
func (l *loop) Defer(fn func()) {
	l.deferred = append(l.deferred, fn)
}

// OnSweep registers fn to run at every timer sweep of the loop. Loop only.
func (l *loop) OnSweep(fn func(now time.Duration)) {
	l.sweepers = append(l.sweepers, fn)
}

type taskKind uint8

const (
	taskFrame    taskKind = iota // write buf (an encoded data frame) to c
	taskClose                    // start the close handshake on c
	taskFunc                     // run fn on the loop
	taskShutdown                 // close every connection of the loop with 1001
	taskSweep                    // run the timer sweep
	taskHello                    // OnOpen ran on a worker: send c's 101
)

// task is one unit of work posted to a loop by another goroutine.
type task struct {
	kind   taskKind
	code   StatusCode
	c      *Conn
	buf    *bytebufferpool.ByteBuffer
	reason string
	fn     func()
	done   chan struct{} // taskSweep: closed once swept, if set
}

// onLoop reports whether the caller runs on this loop's goroutine.
func (l *loop) onLoop() bool {
	return canDetectLoop && l.g.Load() == currentG()
}

// tick reads the timer clock for the work the loop is beginning.
func (l *loop) tick() time.Duration {
	l.now = l.srv.clock()
	return l.now
}

// post queues t and wakes the loop, at most once until it drains: a burst of
// posts from many goroutines costs the loop one wake-up.
func (l *loop) post(t task) error {
	l.mu.Lock()
	l.inbox = append(l.inbox, t)
	l.mu.Unlock()
	if l.woken.CompareAndSwap(false, true) {
		if err := l.el.Execute(context.Background(), l); err != nil {
			// The engine is shutting down: nothing will drain the inbox.
			l.mu.Lock()
			dropped := l.inbox
			l.inbox = nil
			l.mu.Unlock()
			for i := range dropped {
				pool.Put(dropped[i].buf)
				if dropped[i].done != nil {
					close(dropped[i].done)
				}
			}
			return ErrClosed
		}
	}
	return nil
}

// Run drains the inbox. It implements gnet.Runnable so that posting needs no
// closure; users cannot reach it (the type is unexported).
func (l *loop) Run(context.Context) error {
	// Clear the flag first: a post that lands while we drain wakes us again.
	l.woken.Store(false)
	l.mu.Lock()
	tasks := l.inbox
	l.inbox = l.spare[:0]
	l.mu.Unlock()
	l.tick()
	for i := range tasks {
		l.run(&tasks[i])
	}
	clear(tasks)
	l.spare = tasks[:0]
	l.runDeferred()
	return nil
}

func (l *loop) runDeferred() {
	for i := 0; i < len(l.deferred); i++ { // fns may defer more
		l.deferred[i]()
		l.deferred[i] = nil
	}
	l.deferred = l.deferred[:0]
}

func (l *loop) run(t *task) {
	switch t.kind {
	case taskFrame:
		c := t.c
		if c.state == stateOpen {
			c.lastMsg = l.now
			// Counted before the write, so that a client that has read
			// the message also sees it counted.
			l.stats.messagesOut.Add(1)
			if c.writeEncoded(t.buf.B) {
				c.checkBudget()
			}
		}
		pool.Put(t.buf)
	case taskClose:
		t.c.startClose(t.code, t.reason, false)
	case taskFunc:
		t.fn()
	case taskShutdown:
		// Iterate backwards: closing a connection may remove it from
		// l.conns by swapping the last one into its slot.
		for i := len(l.conns) - 1; i >= 0; i-- {
			if i >= len(l.conns) {
				continue
			}
			c := l.conns[i]
			switch c.state {
			case stateHandshake:
				c.state = stateClosed
				_ = c.gc.Close()
			case stateOpen:
				c.startClose(StatusGoingAway, "server shutting down", false)
			}
		}
	case taskHello:
		t.c.sendHello()
	case taskSweep:
		l.sweep(l.now)
		if t.done != nil {
			close(t.done)
		}
	}
}

// add registers c for timer sweeps.
func (l *loop) add(c *Conn) {
	c.slot = int32(len(l.conns))
	l.conns = append(l.conns, c)
}

// remove unregisters c in O(1) by moving the last connection into its slot.
func (l *loop) remove(c *Conn) {
	i := int(c.slot)
	if i < 0 || i >= len(l.conns) || l.conns[i] != c {
		return
	}
	last := len(l.conns) - 1
	l.conns[i] = l.conns[last]
	l.conns[i].slot = int32(i)
	l.conns[last] = nil
	l.conns = l.conns[:last]
	c.slot = -1
	// Give memory back after a large drop in connections.
	if cap(l.conns) > 1024 && len(l.conns) < cap(l.conns)/4 {
		l.conns = append([]*Conn(nil), l.conns...)
	}
}

// sweep enforces the handshake, keepalive, idle and close timeouts of every
// connection of the loop. One pass over a slice per tick replaces a timer per
// connection.
//
// Every timestamp it compares with was read from the same clock when the
// loop began the work that set it, and now is read when the sweep begins, so
// a timeout never fires before its duration has passed; it fires at most one
// sweep period late on a loop that keeps up.
func (l *loop) sweep(now time.Duration) {
	cfg := &l.srv.cfg
	keepalive := cfg.PingInterval > 0
	ping, dead := cfg.PingInterval, cfg.PingInterval+cfg.PongTimeout
	idle := cfg.IdleTimeout
	write := cfg.WriteTimeout
	for i := len(l.conns) - 1; i >= 0; i-- {
		if i >= len(l.conns) {
			continue
		}
		c := l.conns[i]
		switch c.state {
		case stateHandshake:
			if now-c.deadline >= 0 {
				l.stats.handshakeTimeouts.Add(1)
				c.state = stateClosed
				_ = c.gc.Close()
			}
		case stateOpen:
			if c.gnetHolds {
				c.backlog() // recount: what the peer read since the last look
			}
			switch {
			case c.hello != nil:
				// OnOpen still runs on a worker: its timers start after.
			case write > 0 && c.counted > 0 && now-c.deadline >= write:
				// Whatever it sends, a peer that does not read is gone:
				// its pongs must not keep its backlog alive.
				l.stats.writeTimeouts.Add(1)
				c.startClose(StatusPolicyViolation, "write timeout", false)
				c.closeErr = ErrWriteTimeout // for OnClose: clearer than the 1008 it was sent
				c.drop(nil)
			case idle > 0 && now-c.lastMsg >= idle:
				l.stats.idleClosed.Add(1)
				c.startClose(StatusGoingAway, "idle timeout", false)
			case keepalive && now-c.lastRead >= dead:
				l.stats.pongTimeouts.Add(1)
				c.drop(ErrPongTimeout)
			case keepalive && !c.pinged && now-c.lastRead >= ping:
				c.pinged = true
				_ = c.writeFrame(opPing, nil)
			}
		case stateClosing:
			if now-c.deadline >= 0 {
				c.drop(ErrCloseTimeout)
			}
		}
	}
	for _, fn := range l.sweepers {
		fn(now)
	}
}
