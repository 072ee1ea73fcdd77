package pool

import (
	"context"
	"sync"
	"sync/atomic"
)

// Workers is a fixed pool of goroutines that runs tasks in order per Serial.
//
// Every task is submitted behind a Serial, the per-connection queue that the
// engine embeds in each connection. Tasks of one Serial run one at a time, in
// the order they were submitted; tasks of different Serials run in parallel on
// up to n goroutines. There is no goroutine per Serial: a Serial that has work
// is put once on the pool's ready queue, a worker takes it, runs its tasks and
// lets go of it when it is empty.
//
// Fairness: a worker runs at most BatchSize tasks of one Serial in a row, then
// puts the Serial back at the end of the ready queue, so one busy connection
// cannot starve the others.
//
// Backpressure: Submit never blocks. It is called from the event loop, which
// must not stall (every connection on that loop, and its broadcast delivery,
// would stall with it), and it may be called from inside a task, where
// blocking on a full queue could deadlock the pool. The ready queue holds each
// Serial at most once, so it is bounded by the number of connections; what can
// grow is the backlog of one Serial whose handler is slower than its client.
// The engine bounds that with Serial.Len: before submitting, it compares the
// backlog with its limit and stops reading the connection, or closes it, when
// the limit is reached. Pending reports the pool-wide total for metrics.
//
// A panic in a task is recovered: the task counts as done, the Serial goes on
// with its next task, and the handler set with SetPanicHandler is called. A
// library must not print on its own: without a handler the panic is only
// counted (Panics).
type Workers struct {
	mu      sync.Mutex
	cond    sync.Cond // signalled when ready gains a Serial or the pool closes
	ready   ring      // Serials with work that no worker holds; guarded by mu
	closed  atomic.Bool
	alive   int // workers not yet exited; guarded by mu
	done    chan struct{}
	pending atomic.Int64
	onPanic atomic.Pointer[func(*Serial, any)]
	panics  atomic.Uint64
}

// BatchSize is the largest number of tasks of one Serial that a worker runs
// before it lets other Serials go first.
const BatchSize = 16

// Serial is the queue of one connection's tasks. Its zero value is an empty
// queue, ready to use. A Serial must not be copied after first use and must
// only be submitted to one Workers.
//
// Size: 24 bytes on 64-bit platforms (a mutex, one pointer and a counter), and
// it holds no other memory while it is empty: queued tasks live in pooled list
// nodes that go back to their pool as they run. An engine that wants no cost at
// all when workers are off can hold a *Serial and allocate it only when
// Config.Workers > 0 (8 bytes per connection otherwise).
type Serial struct {
	mu sync.Mutex
	// tail is the newest node of a circular singly linked list; tail.next is
	// the oldest. The oldest node stays in the list while its task runs, so
	// "the list is not empty" means "a worker holds this Serial or it is on
	// the ready queue": Submit schedules the Serial only when it finds the
	// list empty.
	tail *node
	n    int32 // tasks in the list, the running one included
}

type node struct {
	task func()
	next *node
}

var nodePool = sync.Pool{New: func() any { return new(node) }}

// NewWorkers starts n worker goroutines (at least 1). queueLen presizes the
// ready queue: it is the number of connections expected to have work at the
// same time. The queue grows past it rather than block (see Workers).
func NewWorkers(n int, queueLen int) *Workers {
	if n < 1 {
		n = 1
	}
	if queueLen < 1 {
		queueLen = 64
	}
	w := &Workers{done: make(chan struct{}), alive: n}
	w.cond.L = &w.mu
	w.ready.buf = make([]*Serial, queueLen)
	for range n {
		go w.work()
	}
	return w
}

// Submit queues task behind the earlier tasks of s and returns true, or
// returns false, without queueing it, if the pool is closed. It never blocks
// and may be called from any goroutine, including from inside a task (of s or
// of any other Serial). A task accepted by Submit always runs, even if Close
// starts right after.
func (w *Workers) Submit(s *Serial, task func()) bool {
	if task == nil {
		panic("pool: Submit with a nil task")
	}
	s.mu.Lock()
	if w.closed.Load() {
		s.mu.Unlock()
		return false
	}
	nd := nodePool.Get().(*node)
	nd.task = task
	wasEmpty := s.tail == nil
	if wasEmpty {
		nd.next = nd
	} else {
		nd.next = s.tail.next
		s.tail.next = nd
	}
	s.tail = nd
	s.n++
	w.pending.Add(1)
	if wasEmpty {
		w.mu.Lock()
		if w.closed.Load() {
			// Close ran between the check above and here, and the workers
			// may already be gone. s was empty and s.mu is still held, so
			// nobody else has seen this node: take it back.
			w.mu.Unlock()
			s.tail, s.n = nil, 0
			w.pending.Add(-1)
			s.mu.Unlock()
			nd.task, nd.next = nil, nil
			nodePool.Put(nd)
			return false
		}
		w.ready.push(s)
		w.mu.Unlock()
		w.cond.Signal()
	}
	// A non-empty s is held by a worker or sits on the ready queue; that
	// worker runs this task too, closed pool or not, before it exits.
	s.mu.Unlock()
	return true
}

// Len returns the number of tasks of s that have not finished: queued ones and
// the one running, if any.
func (s *Serial) Len() int {
	s.mu.Lock()
	n := s.n
	s.mu.Unlock()
	return int(n)
}

// Pending returns the number of submitted tasks that have not finished,
// running ones included, over all Serials.
func (w *Workers) Pending() int { return int(w.pending.Load()) }

// Panics returns how many tasks have panicked.
func (w *Workers) Panics() uint64 { return w.panics.Load() }

// Closed reports whether Close has been called.
func (w *Workers) Closed() bool { return w.closed.Load() }

// SetPanicHandler sets the function called, on the worker goroutine, when a
// task panics; v is the value passed to panic. Called from inside the deferred
// recover, so runtime/debug.Stack still shows where the panic happened. A nil
// f restores the default: the panic is counted, nothing else.
func (w *Workers) SetPanicHandler(f func(s *Serial, v any)) {
	if f == nil {
		w.onPanic.Store(nil)
		return
	}
	w.onPanic.Store(&f)
}

// Close stops accepting tasks (Submit returns false from now on), lets the
// workers run every task already accepted, and waits until all of them have
// exited or ctx is done, whichever comes first; in the latter case it returns
// ctx.Err() and the workers go on draining in the background. Close may be
// called more than once and from several goroutines; each call waits. It must
// not be called, with a ctx that never ends, from inside a task: the task's
// worker would wait for itself.
func (w *Workers) Close(ctx context.Context) error {
	w.mu.Lock()
	w.closed.Store(true)
	w.mu.Unlock()
	w.cond.Broadcast()
	select {
	case <-w.done:
		return nil
	default:
	}
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// work is the loop of one worker goroutine.
func (w *Workers) work() {
	for {
		w.mu.Lock()
		for w.ready.len == 0 && !w.closed.Load() {
			w.cond.Wait()
		}
		if w.ready.len == 0 {
			// Closed and nothing left: no Serial can become ready again,
			// since Submit refuses new work once closed and a held Serial
			// is requeued only by the worker holding it.
			w.alive--
			if w.alive == 0 {
				close(w.done)
			}
			w.mu.Unlock()
			return
		}
		s := w.ready.pop()
		w.mu.Unlock()
		w.runSerial(s)
	}
}

// runSerial runs up to BatchSize tasks of s, then requeues s if it still has
// work.
func (w *Workers) runSerial(s *Serial) {
	for i := 0; ; i++ {
		s.mu.Lock()
		head := s.tail.next
		task := head.task
		s.mu.Unlock()

		w.run(s, task)

		s.mu.Lock()
		if head == s.tail {
			s.tail = nil
		} else {
			s.tail.next = head.next
		}
		s.n--
		w.pending.Add(-1)
		if s.tail == nil {
			s.mu.Unlock()
			head.task, head.next = nil, nil
			nodePool.Put(head)
			return
		}
		if i+1 >= BatchSize {
			// Give other Serials a turn. Lock order is always s.mu, then
			// w.mu, as in Submit.
			w.mu.Lock()
			w.ready.push(s)
			w.mu.Unlock()
			w.cond.Signal()
			s.mu.Unlock()
			head.task, head.next = nil, nil
			nodePool.Put(head)
			return
		}
		s.mu.Unlock()
		head.task, head.next = nil, nil
		nodePool.Put(head)
	}
}

// run calls task and recovers a panic in it.
func (w *Workers) run(s *Serial, task func()) {
	defer func() {
		if v := recover(); v != nil {
			w.panics.Add(1)
			if f := w.onPanic.Load(); f != nil {
				(*f)(s, v)
			}
		}
	}()
	task()
}

// ring is a growable FIFO of Serials.
type ring struct {
	buf  []*Serial
	head int
	len  int
}

func (r *ring) push(s *Serial) {
	if r.len == len(r.buf) {
		nb := make([]*Serial, 2*len(r.buf)+1)
		n := copy(nb, r.buf[r.head:])
		copy(nb[n:], r.buf[:r.head])
		r.buf, r.head = nb, 0
	}
	r.buf[(r.head+r.len)%len(r.buf)] = s
	r.len++
}

func (r *ring) pop() *Serial {
	s := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) % len(r.buf)
	r.len--
	return s
}
