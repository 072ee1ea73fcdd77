package engine

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"github.com/heraldws/herald/pool"
)

// Loop is one of the server's event loops. Each connection belongs to one
// loop for its whole life, and everything that touches the connection runs
// there. Extensions such as the broadcast hub keep per-loop state indexed by
// Index and run work on a loop with Post.
//
// Internally a Loop holds the connections it serves (for timer sweeps) and
// an inbox through which other goroutines hand it work. Everything but the
// inbox is touched only on the loop's goroutine.
type Loop struct {
	srv   *Server
	el    gnet.EventLoop
	index int
	// g identifies the loop's goroutine (see currentG).
	g atomic.Uintptr

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

	stats loopStats
}

// Index is the loop's position among the server's loops: 0, 1, 2... in the
// order they served their first connection. Use it to index per-loop state.
func (l *Loop) Index() int { return l.index }

// Post runs fn on the loop, after the work posted before it. It is safe
// from any goroutine and wakes the loop at most once per burst of posts. It
// returns ErrClosed when the server is stopping and fn will not run.
func (l *Loop) Post(fn func()) error {
	return l.post(task{kind: taskFunc, fn: fn})
}

// OnLoop reports whether the caller is running on this loop.
func (l *Loop) OnLoop() bool { return l.onLoop() }

// Defer runs fn on the loop once the work currently being drained from its
// inbox is done, so that an extension can gather the effects of many posts
// and act once (the broadcast hub writes each subscriber's frames in one
// write this way). It must be called on the loop.
func (l *Loop) Defer(fn func()) {
	l.deferred = append(l.deferred, fn)
}

type taskKind uint8

const (
	taskFrame    taskKind = iota // write buf (an encoded data frame) to c
	taskClose                    // start the close handshake on c
	taskFunc                     // run fn on the loop
	taskShutdown                 // close every connection of the loop with 1001
)

// task is one unit of work posted to a loop by another goroutine.
type task struct {
	kind   taskKind
	code   StatusCode
	c      *Conn
	buf    *bytebufferpool.ByteBuffer
	reason string
	fn     func()
}

// onLoop reports whether the caller runs on this loop's goroutine.
func (l *Loop) onLoop() bool {
	return canDetectLoop && l.g.Load() == currentG()
}

// post queues t and wakes the loop, at most once until it drains: a burst of
// posts from many goroutines costs the loop one wake-up.
func (l *Loop) post(t task) error {
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
			}
			return ErrClosed
		}
	}
	return nil
}

// Run drains the inbox. It implements gnet.Runnable so that posting needs no
// closure.
func (l *Loop) Run(context.Context) error {
	// Clear the flag first: a post that lands while we drain wakes us again.
	l.woken.Store(false)
	l.mu.Lock()
	tasks := l.inbox
	l.inbox = l.spare[:0]
	l.mu.Unlock()
	for i := range tasks {
		l.run(&tasks[i])
	}
	clear(tasks)
	l.spare = tasks[:0]
	l.runDeferred()
	return nil
}

func (l *Loop) runDeferred() {
	for i := 0; i < len(l.deferred); i++ { // fns may defer more
		l.deferred[i]()
		l.deferred[i] = nil
	}
	l.deferred = l.deferred[:0]
}

func (l *Loop) run(t *task) {
	switch t.kind {
	case taskFrame:
		if t.c.state == stateOpen {
			t.c.lastMsg = l.srv.now()
			t.c.writeEncoded(t.buf.B)
			l.stats.messagesOut.Add(1)
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
				_ = c.gc.Close()
			case stateOpen:
				c.startClose(StatusGoingAway, "server shutting down", false)
			}
		}
	}
}

// add registers c for timer sweeps.
func (l *Loop) add(c *Conn) {
	c.slot = int32(len(l.conns))
	l.conns = append(l.conns, c)
}

// remove unregisters c in O(1) by moving the last connection into its slot.
func (l *Loop) remove(c *Conn) {
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

// sweeper runs a loop's timer sweep as a gnet.Runnable.
type sweeper struct{ l *Loop }

func (s sweeper) Run(context.Context) error {
	s.l.sweep(s.l.srv.now())
	return nil
}

// sweep enforces the handshake, keepalive, idle and close timeouts of every
// connection of the loop. One pass over a slice per tick replaces a timer per
// connection.
func (l *Loop) sweep(now int64) {
	cfg := &l.srv.cfg
	keepalive := cfg.PingInterval > 0
	ping, dead := int64(cfg.PingInterval), int64(cfg.PingInterval+cfg.PongTimeout)
	idle := int64(cfg.IdleTimeout)
	for i := len(l.conns) - 1; i >= 0; i-- {
		if i >= len(l.conns) {
			continue
		}
		c := l.conns[i]
		switch c.state {
		case stateHandshake:
			if now > c.deadline {
				l.stats.handshakeTimeouts.Add(1)
				c.state = stateClosed
				_ = c.gc.Close()
			}
		case stateOpen:
			switch {
			case idle > 0 && now-c.lastMsg > idle:
				l.stats.idleClosed.Add(1)
				c.startClose(StatusGoingAway, "idle timeout", false)
			case keepalive && now-c.lastRead > dead:
				l.stats.pongTimeouts.Add(1)
				c.drop(ErrPongTimeout)
			case keepalive && !c.pinged && now-c.lastRead >= ping:
				c.pinged = true
				_ = c.writeFrame(opPing, nil)
			}
		case stateClosing:
			if now > c.deadline {
				c.drop(ErrCloseTimeout)
			}
		}
	}
}
