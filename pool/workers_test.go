package pool

import (
	"context"
	"errors"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

func closeNow(t testing.TB, w *Workers) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestSerialSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("size documented for 64-bit platforms")
	}
	if got := unsafe.Sizeof(Serial{}); got != 24 {
		t.Fatalf("Serial is %d bytes, documented as 24", got)
	}
}

// Many producers submit to many serials at once; each serial must see its own
// tasks in submission order, one at a time.
func TestOrderPerSerial(t *testing.T) {
	const (
		serials   = 64
		producers = 8
		perProd   = 500
	)
	w := NewWorkers(8, 4)
	ss := make([]Serial, serials)
	// next[i][p] is the next sequence number expected from producer p on
	// serial i. Tasks of one serial never overlap, so plain ints suffice, and
	// the race detector checks that claim.
	next := make([][producers]int, serials)
	running := make([]atomic.Int32, serials)
	var bad atomic.Int64
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range perProd {
				for i := range serials {
					if !w.Submit(&ss[i], func() {
						if running[i].Add(1) != 1 {
							bad.Add(1)
						}
						if next[i][p] != seq {
							bad.Add(1)
						}
						next[i][p] = seq + 1
						if seq%97 == 0 {
							runtime.Gosched()
						}
						running[i].Add(-1)
					}) {
						t.Error("Submit refused before Close")
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	closeNow(t, w)
	if n := bad.Load(); n != 0 {
		t.Fatalf("%d tasks ran out of order or overlapped", n)
	}
	for i := range serials {
		for p := range producers {
			if next[i][p] != perProd {
				t.Fatalf("serial %d producer %d: ran %d of %d tasks", i, p, next[i][p], perProd)
			}
		}
		if ss[i].Len() != 0 {
			t.Fatalf("serial %d: Len %d after Close", i, ss[i].Len())
		}
	}
	if w.Pending() != 0 {
		t.Fatalf("Pending %d after Close", w.Pending())
	}
}

// Tasks of different serials run at the same time: n tasks that each wait for
// all n to have started can only finish if they run in parallel.
func TestParallelAcrossSerials(t *testing.T) {
	const n = 4
	w := NewWorkers(n, 0)
	defer closeNow(t, w)
	ss := make([]Serial, n)
	var started sync.WaitGroup
	started.Add(n)
	all := make(chan struct{})
	finished := make(chan struct{}, n)
	for i := range ss {
		w.Submit(&ss[i], func() {
			started.Done()
			<-all
			finished <- struct{}{}
		})
	}
	go func() { started.Wait(); close(all) }()
	deadline := time.After(5 * time.Second)
	for range n {
		select {
		case <-finished:
		case <-deadline:
			t.Fatal("tasks of different serials did not run in parallel")
		}
	}
}

// A serial's second task does not start while its first one blocks, even
// with idle workers around; other serials are not held up by it.
func TestSerialRunsOneAtATime(t *testing.T) {
	w := NewWorkers(4, 0)
	defer closeNow(t, w)
	var a, b Serial
	release := make(chan struct{})
	secondRan := make(chan struct{})
	otherRan := make(chan struct{})
	w.Submit(&a, func() { <-release })
	w.Submit(&a, func() { close(secondRan) })
	w.Submit(&b, func() { close(otherRan) })
	select {
	case <-otherRan:
	case <-time.After(5 * time.Second):
		t.Fatal("another serial was held up by a blocked one")
	}
	select {
	case <-secondRan:
		t.Fatal("second task of a serial ran while the first was still running")
	case <-time.After(50 * time.Millisecond):
	}
	if got := a.Len(); got != 2 {
		t.Fatalf("Len = %d, want 2 (one running, one queued)", got)
	}
	close(release)
	select {
	case <-secondRan:
	case <-time.After(5 * time.Second):
		t.Fatal("second task never ran")
	}
}

// Submitting from inside a task, to the same serial or to others, with a
// single worker and a tiny queue, must neither deadlock nor reorder.
func TestSubmitFromTask(t *testing.T) {
	w := NewWorkers(1, 1)
	var s Serial
	others := make([]Serial, 100)
	var order []int
	var otherRuns atomic.Int32
	done := make(chan struct{})
	var step func(i int) func()
	step = func(i int) func() {
		return func() {
			order = append(order, i)
			for j := range others {
				if !w.Submit(&others[j], func() { otherRuns.Add(1) }) {
					t.Error("Submit to another serial from a task refused")
				}
			}
			if i == 999 {
				close(done)
				return
			}
			if !w.Submit(&s, step(i+1)) {
				t.Error("Submit to own serial from a task refused")
			}
		}
	}
	w.Submit(&s, step(0))
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("deadlock: chain of self-submitting tasks stopped")
	}
	closeNow(t, w)
	for i, v := range order {
		if v != i {
			t.Fatalf("order[%d] = %d", i, v)
		}
	}
	if len(order) != 1000 {
		t.Fatalf("ran %d of 1000 chained tasks", len(order))
	}
	if got := otherRuns.Load(); got != 1000*100 {
		t.Fatalf("ran %d of %d tasks submitted from tasks", got, 1000*100)
	}
}

// Close runs everything already accepted, refuses new work, and waits.
func TestCloseDrains(t *testing.T) {
	w := NewWorkers(2, 0)
	ss := make([]Serial, 10)
	var ran atomic.Int32
	gate := make(chan struct{})
	for i := range ss {
		for range 100 {
			w.Submit(&ss[i], func() { <-gate; ran.Add(1) })
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- w.Close(context.Background()) }()
	// Close must wait for queued work.
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) with work still queued", err)
	case <-time.After(50 * time.Millisecond):
	}
	for !w.Closed() {
		runtime.Gosched()
	}
	if w.Submit(&ss[0], func() { t.Error("task accepted after Close ran") }) {
		t.Fatal("Submit accepted a task after Close")
	}
	close(gate)
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return after the work drained")
	}
	if got := ran.Load(); got != 1000 {
		t.Fatalf("ran %d of 1000 accepted tasks", got)
	}
	if w.Pending() != 0 {
		t.Fatalf("Pending = %d after Close", w.Pending())
	}
	// A second Close returns at once.
	closeNow(t, w)
}

// A task submitted from inside a running task after Close started is refused;
// the Close still completes.
func TestSubmitFromTaskDuringClose(t *testing.T) {
	w := NewWorkers(1, 0)
	var s Serial
	inTask := make(chan struct{})
	proceed := make(chan struct{})
	result := make(chan bool, 1)
	w.Submit(&s, func() {
		close(inTask)
		<-proceed
		result <- w.Submit(&s, func() {})
	})
	<-inTask
	closed := make(chan error, 1)
	go func() { closed <- w.Close(context.Background()) }()
	for !w.Closed() {
		runtime.Gosched()
	}
	close(proceed)
	if <-result {
		t.Fatal("Submit from a task after Close was accepted")
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

// Close honours its context, and the workers still drain afterwards.
func TestCloseContext(t *testing.T) {
	w := NewWorkers(1, 0)
	var s Serial
	gate := make(chan struct{})
	var ran atomic.Bool
	w.Submit(&s, func() { <-gate })
	w.Submit(&s, func() { ran.Store(true) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := w.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want deadline exceeded", err)
	}
	close(gate)
	closeNow(t, w)
	if !ran.Load() {
		t.Fatal("task accepted before Close did not run")
	}
}

// Submit racing with Close either runs the task or refuses it; never loses it.
func TestSubmitRacingClose(t *testing.T) {
	for range 50 {
		w := NewWorkers(2, 1)
		ss := make([]Serial, 4)
		var accepted, ran atomic.Int64
		var wg sync.WaitGroup
		for i := range ss {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 200 {
					if w.Submit(&ss[i], func() { ran.Add(1) }) {
						accepted.Add(1)
					}
				}
			}()
		}
		closeNow(t, w)
		wg.Wait()
		if a, r := accepted.Load(), ran.Load(); a != r {
			t.Fatalf("accepted %d tasks, ran %d", a, r)
		}
	}
}

// One busy serial does not starve another: with one worker, a serial that
// keeps resubmitting itself still lets a second serial's task through.
func TestFairness(t *testing.T) {
	w := NewWorkers(1, 0)
	defer closeNow(t, w)
	var busy, other Serial
	stop := make(chan struct{})
	var loop func()
	loop = func() {
		select {
		case <-stop:
		default:
			w.Submit(&busy, loop)
		}
	}
	w.Submit(&busy, loop)
	otherRan := make(chan struct{})
	w.Submit(&other, func() { close(otherRan) })
	select {
	case <-otherRan:
	case <-time.After(5 * time.Second):
		t.Fatal("a self-resubmitting serial starved another serial")
	}
	close(stop)
}

// A panicking task is reported and does not stop its serial or the worker.
func TestPanicRecovered(t *testing.T) {
	w := NewWorkers(1, 0)
	var s Serial
	got := make(chan any, 1)
	w.SetPanicHandler(func(ps *Serial, v any) {
		if ps != &s {
			t.Error("panic handler got the wrong serial")
		}
		got <- v
	})
	var after atomic.Bool
	w.Submit(&s, func() { panic("boom") })
	w.Submit(&s, func() { after.Store(true) })
	closeNow(t, w)
	if v := <-got; v != "boom" {
		t.Fatalf("panic handler got %v", v)
	}
	if !after.Load() {
		t.Fatal("the task after a panic did not run")
	}
	if n := w.Panics(); n != 1 {
		t.Fatalf("Panics = %d", n)
	}
}

// Without a handler a panic is counted and nothing is printed: a library
// must not write to the process's standard error on its own.
func TestPanicWithoutHandlerIsSilent(t *testing.T) {
	r, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = wr
	w := NewWorkers(1, 0)
	var s Serial
	w.Submit(&s, func() { panic("boom") })
	closeNow(t, w)
	os.Stderr = stderr
	wr.Close()
	out, _ := io.ReadAll(r)
	if len(out) != 0 {
		t.Fatalf("printed %q", out)
	}
	if n := w.Panics(); n != 1 {
		t.Fatalf("Panics = %d", n)
	}
}

func TestSubmitNilPanics(t *testing.T) {
	w := NewWorkers(1, 0)
	defer closeNow(t, w)
	defer func() {
		if recover() == nil {
			t.Fatal("Submit(nil) did not panic")
		}
	}()
	var s Serial
	w.Submit(&s, nil)
}

// BenchmarkSubmit measures one Submit plus running the task, spread over many
// serials as the engine would with many connections.
func BenchmarkSubmit(b *testing.B) {
	w := NewWorkers(runtime.GOMAXPROCS(0), 1024)
	ss := make([]Serial, 1024)
	var ran atomic.Int64
	task := func() { ran.Add(1) }
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		w.Submit(&ss[i&1023], task)
	}
	closeNow(b, w)
	if ran.Load() != int64(b.N) {
		b.Fatalf("ran %d of %d", ran.Load(), b.N)
	}
}

// BenchmarkSubmitOneSerial is the worst case for a single connection: every
// task goes through the same queue.
func BenchmarkSubmitOneSerial(b *testing.B) {
	w := NewWorkers(runtime.GOMAXPROCS(0), 0)
	var s Serial
	task := func() {}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		w.Submit(&s, task)
	}
	closeNow(b, w)
}

// BenchmarkSubmitParallel submits from several goroutines at once, as several
// event loops would.
func BenchmarkSubmitParallel(b *testing.B) {
	w := NewWorkers(runtime.GOMAXPROCS(0), 1024)
	task := func() {}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ss := make([]Serial, 64)
		i := 0
		for pb.Next() {
			w.Submit(&ss[i&63], task)
			i++
		}
	})
	closeNow(b, w)
}
