package engine

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"github.com/heraldws/herald/codec"
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

	conns connList // Conn.slot indexes it

	// dec decodes every read that starts at rest (at a frame boundary,
	// outside a fragmented message): most reads of most connections. Only
	// a read that ends in the middle of a frame or a message moves the
	// state to a decoder of the connection's own (Conn.dec), taken from
	// spareDecs. decoding is the connection dec serves at the moment.
	dec       codec.Decoder
	decoding  *Conn
	spareDecs []*codec.Decoder
	// spareAux keeps released connAux values for the next connections that
	// open or close.
	spareAux []*connAux

	// scratch assembles small outgoing frames so that each costs one write
	// and no allocation; iov carries large ones to writev.
	scratch []byte
	iov     [2][]byte
	// tlsConns holds the TLS state of the loop's TLS connections
	// (Config.TLS); the loop reads it without a lock, and changes it, and
	// other goroutines read it (Conn.TLS), under tlsMu. tlsIn receives
	// decrypted records; tlsOut collects the records of one write;
	// tlsNonce is the per-record nonce of herald's record layer.
	tlsConns map[*Conn]*tlsConn
	tlsMu    sync.Mutex
	tlsIn    []byte
	tlsOut   []byte
	tlsNonce [tlsNonceLen]byte
	// pongs collects the pongs of one read, and lastPong is where the
	// latest starts (see Conn.sendPongs).
	pongs    []byte
	lastPong int

	mu    sync.Mutex
	inbox []task
	spare []task // the previous inbox, reused to avoid allocating
	woken atomic.Bool

	// deferred runs once the current inbox drain is over (see Defer).
	deferred []func()
	// sweepers run at every sweep (see OnSweep).
	sweepers []func(now time.Duration)

	// held is the sum of the backlogs gnet holds for this loop's
	// connections (Conn.account); peak is the highest held since the
	// memory return last looked (reclaim.go); share is the loop's part of
	// Config.MaxOutboundTotal.
	held  atomic.Int64
	peak  atomic.Int64
	share int64

	stats loopStats

	// readRates holds the ReadRate buckets of the loop's connections that
	// have a ReadRate and have sent a message (limits.go).
	readRates map[*Conn]*readBuckets
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
	resume bool          // taskSweep: continue a sweep from index from
	from   int
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
			if t.buf.B[0]&rsv1 != 0 {
				l.stats.compressedOut.Add(1)
			}
			if c.writeEncoded(t.buf.B) {
				c.checkBudget()
			}
		}
		pool.Put(t.buf)
	case taskClose:
		// Close from off the loop comes after what was queued before it:
		// the broadcast hub defers its flush to the drain's end, and a
		// message published before the Close must not be overtaken by
		// the close frame (the connection would take nothing after it).
		l.runDeferred()
		t.c.startClose(t.code, t.reason, false)
	case taskFunc:
		t.fn()
	case taskShutdown:
		// What this drain queued before (the broadcast hub defers its
		// flush to the drain's end) goes out ahead of the close frames:
		// a message published before Shutdown is delivered.
		l.runDeferred()
		// Iterate backwards: closing a connection may remove it from
		// l.conns by swapping the last one into its slot.
		for i := l.conns.len() - 1; i >= 0; i-- {
			if i >= l.conns.len() {
				continue
			}
			c := l.conns.at(i)
			switch c.state {
			case stateHandshake:
				c.abortHandshake(true)
			case stateOpen:
				c.startClose(StatusGoingAway, "server shutting down", false)
			}
		}
	case taskHello:
		t.c.sendHello()
	case taskSweep:
		from := t.from
		if !t.resume {
			from = l.conns.len() - 1
		}
		if next := l.sweep(l.now, from); next >= 0 {
			// The rest after what queued meanwhile; a waiter waits for it.
			_ = l.post(task{kind: taskSweep, resume: true, from: next, done: t.done})
			return
		}
		if t.done != nil {
			close(t.done)
		}
	}
}

// minKernelProgress is what the peer must acknowledge in half a
// WriteTimeout for a backlog that did not shrink to count as progress: a
// reader at 1 KB/s passes, a peer that takes a few bytes now and then (its
// kernel squeezing its full receive buffer) does not.
const minKernelProgress = 1 << 10

// kernelProgress, for a connection whose backlog has not shrunk for half of
// WriteTimeout, samples what the peer acknowledged, and once the timeout is
// due reports whether that grew by minKernelProgress since the sample; if
// so the period starts again. The engine's backlog alone can look stuck
// for a reader that is only slow: gnet refills a socket once half of its
// buffer is free, which takes a 1 KB/s reader many seconds. One system call
// per backlogged connection per half period, none for the others.
func (c *Conn) kernelProgress(now, timeout time.Duration) bool {
	if c.acked != 0 && now-c.deadline < timeout {
		return false // sampled, and not due yet: no system call
	}
	acked, ok := peerAcked(c.fd)
	if !ok {
		return false
	}
	acked = max(acked, 1) // 0 means not sampled
	if c.acked == 0 {
		c.acked = acked
		return false
	}
	if acked-c.acked < minKernelProgress {
		return false
	}
	c.deadline, c.acked = now, acked // a new period, sampled at its start
	// Alive, too: its answer to a keepalive ping may sit behind the
	// backlog it is still reading.
	c.lastRead = now
	c.set(bitPinged, false)
	return true
}

// maxSweepCloses bounds the connections one sweep pass closes before it
// lets the loop's other work run (a close costs tens of microseconds: its
// socket, its buffers, its OnClose and the hub's bookkeeping).
const maxSweepCloses = 128

// maxSpareDecoders bounds the decoders a loop keeps for reuse after a burst
// of connections that were in the middle of a frame at once.
const maxSpareDecoders = 256

// decoderFor returns the decoder to read c's next bytes with: its own if
// its previous read ended in the middle of a frame or message, else the
// loop's, which is at rest. settleDecoder must follow once the read is
// decoded.
func (l *loop) decoderFor(c *Conn) *codec.Decoder {
	if l.decoding != nil {
		// A read nested in another's callbacks, which gnet does not do:
		// c gets a decoder of its own rather than share the loop's.
		if c.dec == nil {
			c.dec = l.spareDecoder()
			c.dec.SetDeflate(c.deflate != deflateOff)
		}
		return c.dec
	}
	l.decoding = c
	if c.dec != nil {
		return c.dec
	}
	// The loop's decoder is at rest: it takes on c's extension.
	l.dec.SetDeflate(c.deflate != deflateOff)
	return &l.dec
}

// settleDecoder ends a read of c decoded with d. A decoder at rest keeps
// nothing worth keeping: the loop's is released for the next read, and c's
// own goes back to the spares. The loop's decoder in the middle of a frame
// or message moves to c. The decoder of a connection that is gone or whose
// stream failed is released either way.
func (l *loop) settleDecoder(c *Conn, d *codec.Decoder) {
	if l.decoding == c {
		l.decoding = nil
	}
	own := d != &l.dec
	switch {
	case c.state == stateClosed || c.has(bitDecDead) || d.AtRest():
		d.Release()
		if own {
			c.dec = nil
			l.putDecoder(d)
		}
	case !own:
		nd := l.spareDecoder()
		*nd = l.dec // a move: l.dec's buffers are nd's now
		l.dec = codec.Decoder{}
		l.dec.Init(&l.srv.decCfg, false)
		c.dec = nd
	}
}

// dropDecoder releases c's decoder when c closes, unless a read of c is
// being decoded at the moment (gnet closes a connection whose write fails
// from inside its callbacks): settleDecoder then does it.
func (l *loop) dropDecoder(c *Conn) {
	if d := c.dec; d != nil && l.decoding != c {
		c.dec = nil
		d.Release()
		l.putDecoder(d)
	}
}

// spareDecoder returns a decoder, initialised for the server, from the
// spares or new.
func (l *loop) spareDecoder() *codec.Decoder {
	if n := len(l.spareDecs); n > 0 {
		d := l.spareDecs[n-1]
		l.spareDecs[n-1] = nil
		l.spareDecs = l.spareDecs[:n-1]
		return d
	}
	d := new(codec.Decoder)
	d.Init(&l.srv.decCfg, false)
	return d
}

// putDecoder keeps a released decoder for reuse, up to maxSpareDecoders.
func (l *loop) putDecoder(d *codec.Decoder) {
	if len(l.spareDecs) < maxSpareDecoders {
		l.spareDecs = append(l.spareDecs, d)
	}
}

// maxSpareAux bounds the connAux values a loop keeps for reuse.
const maxSpareAux = 256

// newAux returns a zero connAux, reused if one was released.
func (l *loop) newAux() *connAux {
	if n := len(l.spareAux); n > 0 {
		a := l.spareAux[n-1]
		l.spareAux[n-1] = nil
		l.spareAux = l.spareAux[:n-1]
		return a
	}
	return new(connAux)
}

// freeAux keeps a, which no connection refers to any more, for reuse.
func (l *loop) freeAux(a *connAux) {
	*a = connAux{}
	if len(l.spareAux) < maxSpareAux {
		l.spareAux = append(l.spareAux, a)
	}
}

// add registers c for timer sweeps.
func (l *loop) add(c *Conn) { l.conns.add(c) }

// remove unregisters c in O(1).
func (l *loop) remove(c *Conn) { l.conns.remove(c) }

// sweep enforces the handshake, keepalive, idle and close timeouts of every
// connection of the loop. One pass over a list per tick replaces a timer per
// connection.
//
// Every timestamp it compares with was read from the same clock when the
// loop began the work that set it, and now is read when the sweep begins, so
// a timeout never fires before its duration has passed; it fires at most one
// sweep period late on a loop that keeps up.
//
// A sweep that finds many connections due (thousands of stalled
// subscribers timing out together) closes at most maxSweepCloses of them
// and returns the index to resume from: the caller posts the rest behind
// the tasks that queued meanwhile, so one loop turn never spends more than
// a few milliseconds closing while its other connections' messages wait.
// Otherwise it returns -1 after running the sweepers.
func (l *loop) sweep(now time.Duration, from int) (resume int) {
	cfg := &l.srv.cfg
	keepalive := cfg.PingInterval > 0
	ping, dead := cfg.PingInterval, cfg.PingInterval+cfg.PongTimeout
	idle := cfg.IdleTimeout
	write := cfg.WriteTimeout
	closes := 0
	for i := min(from, l.conns.len()-1); i >= 0; i-- {
		if i >= l.conns.len() {
			continue
		}
		if closes >= maxSweepCloses {
			return i
		}
		c := l.conns.at(i)
		switch c.state {
		case stateHandshake:
			if now-c.deadline >= 0 {
				c.abortHandshake(false)
				closes++
			}
		case stateOpen:
			if c.gnetHolds {
				c.backlog() // recount: what the peer read since the last look
			}
			switch {
			case c.hello() != nil:
				// OnOpen still runs on a worker: its timers start after.
			case write > 0 && c.counted > 0 && now-c.deadline >= write/2 && c.kernelProgress(now, write):
				// The peer still reads, slower than the backlog shows.
			case write > 0 && c.counted > 0 && now-c.deadline >= write:
				// Whatever it sends, a peer that does not read is gone:
				// its pongs must not keep its backlog alive.
				l.stats.writeTimeouts.Add(1)
				c.startClose(StatusPolicyViolation, "write timeout", false)
				c.drop(causeWriteTimeout) // for OnClose: clearer than the 1008 it was sent
				closes++
			case idle > 0 && now-c.lastMsg >= idle:
				l.stats.idleClosed.Add(1)
				c.startClose(StatusGoingAway, "idle timeout", false)
				closes++
			case keepalive && now-c.lastRead >= dead && unreadIn(c.fd):
				// The peer did send something, its pong most likely: it
				// waits in the socket for a loop that is behind (busy
				// with a fan-out, or short of CPU). lastRead says when the
				// loop read last, not when the peer last spoke; dropping
				// it would blame the peer for the server's lag. Its bytes
				// are read at the loop's next turn.
				c.lastRead = now
				c.set(bitPinged, false)
			case keepalive && now-c.lastRead >= dead:
				l.stats.pongTimeouts.Add(1)
				c.drop(causePongTimeout)
				closes++
			case keepalive && !c.has(bitPinged) && now-c.lastRead >= ping:
				c.set(bitPinged, true)
				_ = c.writeFrame(opPing, nil)
			}
		case stateClosing:
			if now-c.deadline >= 0 {
				c.drop(causeCloseTimeout)
				closes++
			}
		}
	}
	if len(l.tlsConns) > 0 {
		l.tlsHibernate(now)
	}
	for _, fn := range l.sweepers {
		fn(now)
	}
	return -1
}
