package soak

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldws/herald/benchmarks/internal/loadgen"
	"github.com/heraldws/herald/benchmarks/internal/runner"
	"github.com/heraldws/herald/internal/wsframe"
)

// hangGuard bounds every wait for the server. It is no speed requirement:
// it only ends the wait for a server that never gets there.
const hangGuard = time.Minute

// buildTicker builds the ticker example into the test's temporary directory.
func buildTicker(t *testing.T) string {
	t.Helper()
	lay, err := runner.FindLayout()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "ticker")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := runner.GoBuild(ctx, lay.Root, bin, "./examples/ticker"); err != nil {
		t.Fatalf("build examples/ticker: %v", err)
	}
	return bin
}

// reader is a healthy subscriber: it reads every tick and counts them.
type reader struct {
	ticks atomic.Int64
	err   atomic.Value // the error that ended it
}

func startReader(t *testing.T, addr string, i int) *reader {
	t.Helper()
	d := net.Dialer{Timeout: hangGuard, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(10+i))}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	key := wsframe.NewRequestKey()
	if _, err := c.Write(wsframe.AppendRequest(nil, addr, "/ws", key)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	head, err := wsframe.ReadHead(br)
	if err == nil {
		_, err = wsframe.ParseResponse(head, key)
	}
	if err != nil {
		t.Fatalf("reader %d: upgrade: %v", i, err)
	}
	r := &reader{}
	go func() {
		buf := make([]byte, 4096)
		for {
			h, p, err := wsframe.ReadFrame(br, buf, 1<<20)
			if err != nil {
				r.err.Store(err)
				return
			}
			switch h.Op {
			case wsframe.OpText:
				if _, _, _, ok := loadgen.TickerFields(p); ok {
					r.ticks.Add(1)
				}
			case wsframe.OpPing:
				_, _ = c.Write(wsframe.AppendPong(nil, p, wsframe.NewKey()))
			case wsframe.OpClose:
				r.err.Store(fmt.Errorf("server closed the reader (%d)", wsframe.CloseCode(p)))
				return
			}
		}
	}()
	return r
}

// waitUntil polls cond every 50 ms until it holds, or fails the test after
// the hang guard. fail, if it returns an error, ends the wait as a failure.
func waitUntil(t *testing.T, what string, cond func() bool, fail func() error) {
	t.Helper()
	guard := time.Now().Add(hangGuard)
	for !cond() {
		if err := fail(); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(guard) {
			t.Fatalf("hang guard: waited %v for %s", hangGuard, what)
		}
		time.Sleep(50 * time.Millisecond) // polling an outside process: the event has no other signal
	}
	if err := fail(); err != nil {
		t.Fatal(err)
	}
}

// TestStalledSubscribersStayWithinTheBudget is the short soak: a few
// hundred subscribers that never read, beside a few healthy readers,
// against the ticker started with a small outbound budget. It fails if the
// server's RSS grows past the budget plus an allowance, if a reader stops
// receiving ticks, or if the server never closes the stalled subscribers
// (WriteTimeout: a backlog that makes no progress ends). Memory and
// liveness only: nothing here depends on the machine's speed; a slow
// machine publishes fewer ticks, which only makes the backlog smaller.
//
// HERALD_SOAK_TEST_TICKER_FLAGS adds flags to the ticker's command line
// (after the test's own, so they win) without changing what the test
// asserts: "-max-outbound-total 4294967296 -high-water 4000000
// -memory-limit 0" shows it
// failing against a server whose budget is effectively unbounded.
func TestStalledSubscribersStayWithinTheBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the ticker example")
	}
	const (
		readers = 3
		stalls  = 300
		budget  = 8 << 20
		// The allowance over the budget:
		//  - one more budget: the backlog lives in buffers allocated in
		//    chunks larger than what they hold, and the Go heap may grow
		//    to twice its live size before a collection;
		//  - 32 KiB per stalled subscriber: its connection state and
		//    read buffer, and the one batch a subscriber without a
		//    backlog may still queue past the budget;
		//  - 16 MiB for the rest of the runtime (stacks, the /stats
		//    handler, the allocator's own slack).
		// Measured on a 2-core machine: about 24 MiB of growth against
		// this 41 MiB limit; without a budget the same load grows the
		// server by hundreds of MiB.
		allowance = budget + stalls*32<<10 + 16<<20
	)
	// 20 symbols × 256 B every 50 ms: 100 KB/s to each subscriber, so a
	// server that did not bound its backlogs would hold ~1 MB per stalled
	// subscriber by the time WriteTimeout (10 s) closed it: 300 MB.
	opts := TickerOpts{Interval: 50 * time.Millisecond, Symbols: 20, Size: 256, Budget: budget, HighWater: 64 << 10}
	bin := buildTicker(t)
	args := opts.Args()
	if extra := os.Getenv("HERALD_SOAK_TEST_TICKER_FLAGS"); extra != "" {
		t.Logf("ticker flags added: %s", extra)
		args = append(args, strings.Fields(extra)...)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "ticker.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	ctx := context.Background()
	tk, err := startTickerArgs(ctx, bin, args, "", logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tk.Stop)

	rs := make([]*reader, readers)
	for i := range rs {
		rs[i] = startReader(t, tk.Addr(), i)
	}
	readerErr := func() error {
		for i, r := range rs {
			if err, ok := r.err.Load().(error); ok {
				return fmt.Errorf("reader %d stopped: %v", i, err)
			}
		}
		select {
		case <-tk.Done():
			return fmt.Errorf("the ticker exited")
		default:
		}
		return nil
	}
	waitUntil(t, "every reader's first tick", func() bool {
		for _, r := range rs {
			if r.ticks.Load() == 0 {
				return false
			}
		}
		return true
	}, readerErr)
	base, err := tk.RSS()
	if err != nil {
		t.Fatal(err)
	}

	// RSS, sampled every 50 ms until the end: the peak, and a failure as
	// soon as the growth passes the limit.
	var (
		mu   sync.Mutex
		peak = base
		over error
	)
	limit := int64(budget + allowance)
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
			rss, err := tk.RSS()
			if err != nil {
				continue
			}
			mu.Lock()
			peak = max(peak, rss)
			if rss-base > limit && over == nil {
				over = fmt.Errorf("the ticker's RSS grew by %.1f MiB (from %.1f to %.1f MiB), past the budget (%.0f MiB) + allowance (%.1f MiB) = %.1f MiB",
					mib(rss-base), mib(base), mib(rss), mib(budget), mib(allowance), mib(limit))
			}
			mu.Unlock()
		}
	}()
	defer func() {
		close(stopSampling)
		<-sampled
	}()
	failed := func() error {
		mu.Lock()
		defer mu.Unlock()
		if over != nil {
			return over
		}
		return readerErr()
	}

	// The stalled subscribers: upgrade, never read, 4 KB receive buffer.
	var connected atomic.Bool
	done := make(chan struct{})
	type result struct {
		res *loadgen.Result
		err error
	}
	lgDone := make(chan result, 1)
	src, _ := loadgen.ParseAddrs("127.0.0.2-127.0.0.9")
	go func() {
		res, err := loadgen.Run(ctx, loadgen.Config{Scenario: loadgen.Hold, Addr: tk.Addr(), Path: "/ws", Src: src,
			Hostile:  loadgen.Hostile{Stall: stalls},
			Duration: 10 * time.Minute, WindowDone: done, // ended by the test; only a bound
			ConnectTimeout: hangGuard,
			Event: func(ev map[string]any) {
				if ev["event"] == "connected" {
					connected.Store(true)
				}
			}})
		lgDone <- result{res, err}
	}()
	var (
		endOnce sync.Once
		ended   result
	)
	endStalls := func() *loadgen.Result {
		endOnce.Do(func() {
			close(done)
			select {
			case ended = <-lgDone:
			case <-time.After(hangGuard):
				ended.err = fmt.Errorf("hang guard: the load generator did not stop")
			}
		})
		if ended.err != nil {
			t.Fatalf("stalled subscribers: %v", ended.err)
		}
		return ended.res
	}
	defer endStalls()
	waitUntil(t, "the stalled subscribers to connect", connected.Load, failed)
	before := make([]int64, readers)
	for i, r := range rs {
		before[i] = r.ticks.Load()
	}

	// Their backlogs grow until the budget makes the hub conflate them and
	// WriteTimeout closes them: wait until the hub holds the readers'
	// subscriptions only.
	var last Stats
	waitUntil(t, "the server to close every stalled subscriber", func() bool {
		st, err := tk.Stats(ctx)
		if err != nil {
			return false
		}
		last = st
		return st.Hub["Subscriptions"] <= float64(readers*opts.Symbols)
	}, failed)
	for i, r := range rs {
		if r.ticks.Load() == before[i] {
			t.Fatalf("reader %d received nothing while the stalled subscribers were connected", i)
		}
		before[i] = r.ticks.Load()
	}
	// And the readers go on receiving.
	waitUntil(t, "every reader to receive another round of ticks", func() bool {
		for i, r := range rs {
			if r.ticks.Load() < before[i]+int64(opts.Symbols) {
				return false
			}
		}
		return true
	}, failed)

	res := endStalls()
	mu.Lock()
	growth := peak - base
	mu.Unlock()
	t.Logf("RSS %.1f MiB before the stalled subscribers, peak %.1f MiB: growth %.1f MiB, limit %.1f MiB (budget %.0f + allowance %.1f)",
		mib(base), mib(peak), mib(growth), mib(limit), mib(budget), mib(allowance))
	t.Logf("server: %d write timeouts, %d budget sheds, %d slow closed; hub: %d conflated, %d dropped",
		int64(last.Server["WriteTimeouts"]), int64(last.Server["BudgetShed"]), int64(last.Server["SlowClosed"]), int64(last.Hub["Conflated"]), int64(last.Hub["Dropped"]))
	if k := res.Kinds[loadgen.KindStall]; k != nil {
		t.Logf("stalled subscribers: %s", k)
		if k.Connects != stalls {
			t.Fatalf("%d of %d stalled subscribers connected", k.Connects, stalls)
		}
	}
	if err := failed(); err != nil {
		t.Fatal(err)
	}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
