package broadcast

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/internal/looplink"
)

func TestNewRefusesOptionsThePolicyCannotHonour(t *testing.T) {
	srv, err := engine.New(engine.Config{Addr: "127.0.0.1:0", MaxOutboundBytes: 1 << 20, Logger: quiet}, engine.BaseHandler{})
	small, err2 := engine.New(engine.Config{Addr: "127.0.0.1:0", MaxOutboundBytes: 64 << 10, Logger: quiet}, engine.BaseHandler{})
	if err != nil || err2 != nil {
		t.Fatal(err, err2)
	}
	if h, err := New(small, Options{}); err != nil || h.opts.HighWater != 32<<10 {
		t.Errorf("default HighWater under a 64 KiB MaxOutboundBytes: %v %v, want half of it", h.opts.HighWater, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{HighWater: 1 << 20}, "Options.HighWater (1048576) must be below the server's MaxOutboundBytes (1048576)"},
		{Options{HighWater: 2 << 20}, "must be below the server's MaxOutboundBytes"},
		{Options{HighWater: -1}, "Options.HighWater is negative"},
		{Options{LowWater: -1}, "Options.LowWater is negative"},
		{Options{HighWater: 1000, LowWater: 2000}, "Options.LowWater (2000) is above Options.HighWater (1000)"},
		{Options{Policy: Policy(9)}, "is not a policy"},
	} {
		if _, err := New(srv, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want %q", tc.opts, err, tc.want)
		}
	}
	h, err := New(srv, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if h.opts.HighWater != DefaultHighWater || h.opts.LowWater != DefaultHighWater/4 {
		t.Errorf("defaults: HighWater %d, LowWater %d", h.opts.HighWater, h.opts.LowWater)
	}
}

func TestPublishAfterShutdownIsRefused(t *testing.T) {
	h, srv, _ := newHub(t, Options{}, engine.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	before := h.Stats().Published
	if err := h.Publish("t", engine.TextMessage, []byte("late")); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("Publish after Shutdown = %v, want ErrClosed", err)
	}
	if err := h.Deliver([]Message{{Topic: "t", Type: engine.TextMessage}}); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("Deliver after Shutdown = %v, want ErrClosed", err)
	}
	if after := h.Stats().Published; after != before {
		t.Fatalf("Published went from %d to %d for refused messages", before, after)
	}
}

// A client that has read the 101 triggers a publish at once: subscriptions
// made in OnOpen must already be in effect, with handlers on the loop and
// on workers.
func TestConnectThenPublishLosesNothing(t *testing.T) {
	const rounds = 1000
	for _, workers := range []int{0, 4} {
		t.Run("workers="+strconv.Itoa(workers), func(t *testing.T) {
			h, srv, _ := newHub(t, Options{}, engine.Config{Workers: workers})
			for i := 0; i < rounds; i++ {
				conn, br, _, err := ws.Dialer{Timeout: 60 * time.Second}.Dial(context.Background(), "ws://"+srv.Addr().String()+"/round")
				if err != nil {
					t.Fatal(err)
				}
				if br != nil {
					t.Fatal("unexpected frames with the 101")
				}
				want := strconv.Itoa(i)
				if err := h.Publish("round", engine.TextMessage, []byte(want)); err != nil {
					t.Fatal(err)
				}
				if got := readText(t, conn); got != want {
					t.Fatalf("round %d: got %q", i, got)
				}
				conn.Close()
			}
		})
	}
}

// A subscriber that only receives broadcasts is active: IdleTimeout must not
// close it while messages flow, and must once they stop. The clock is the
// test's, so the outcome does not depend on the machine's speed.
func TestIdleTimeoutCountsBroadcasts(t *testing.T) {
	var now atomic.Int64
	now.Store(int64(time.Hour))
	h, srv, sub := newHubWithClock(t, Options{}, engine.Config{IdleTimeout: 300 * time.Millisecond}, func() time.Duration {
		return time.Duration(now.Load())
	})
	conn := connect(t, srv, sub, "ticks")
	waitSubs(t, h, "ticks", 1)
	for i := 0; i < 20; i++ { // 1 s of 50 ms ticks: over three idle timeouts
		now.Add(int64(50 * time.Millisecond))
		looplink.Sweep(srv)
		if err := h.Publish("ticks", engine.TextMessage, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		if got := readText(t, conn); got != strconv.Itoa(i) {
			t.Fatalf("tick %d: got %q", i, got)
		}
	}
	now.Add(int64(299 * time.Millisecond))
	looplink.Sweep(srv)
	if n := srv.Stats().IdleClosed; n != 0 {
		t.Fatalf("IdleClosed = %d while the subscriber was receiving", n)
	}
	now.Add(int64(time.Millisecond))
	looplink.Sweep(srv)
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	f, err := ws.ReadFrame(conn)
	if code, reason := ws.ParseCloseFrameData(f.Payload); err != nil || code != 1001 || reason != "idle timeout" {
		t.Fatalf("after the ticks stopped: %v %d %q %v, want close 1001", f.Header.OpCode, code, reason, err)
	}
}

// With many stalled subscribers, the server's outbound budget binds before
// their HighWater marks add up: past it, every subscriber with a backlog
// gets its topic's policy (here: conflation), none is closed, and the total
// held stays within the budget plus one message per subscriber.
func TestOutboundBudgetMakesSubscribersSlow(t *testing.T) {
	const budget, stalled, size = 2 << 20, 8, 16 << 10
	h, srv, sub := newHub(t, Options{HighWater: 512 << 10, Policy: Conflate},
		engine.Config{MaxOutboundBytes: 1 << 20, MaxOutboundTotal: budget, WriteTimeout: -1})
	for i := 0; i < stalled; i++ {
		connect(t, srv, sub, "tick") // never read
	}
	reader := connect(t, srv, sub, "tick")
	waitSubs(t, h, "tick", stalled+1)
	payload := strings.Repeat("p", size)
	maxHeld := int64(0)
	for i := 0; i < 1000; i++ { // 16 MiB to each stalled subscriber
		if err := h.Publish("tick", engine.TextMessage, []byte(payload)); err != nil {
			t.Fatal(err)
		}
		if got := readText(t, reader); len(got) != size {
			t.Fatalf("reader got %d bytes", len(got))
		}
		// Let every loop flush this batch on its own: a loop that lags
		// would cork several into one write, which a subscriber without a
		// backlog may take whole, and the bound below is per message.
		looplink.Sweep(srv)
		looplink.Sweep(srv)
		maxHeld = max(maxHeld, srv.Stats().OutboundBytes)
	}
	looplink.Sweep(srv) // every loop has delivered, and counted, every batch
	looplink.Sweep(srv)
	st, est := h.Stats(), srv.Stats()
	if bound := int64(budget + stalled*(size+16)); maxHeld > bound {
		t.Fatalf("the server held up to %d bytes, over the budget and one message per subscriber (%d)", maxHeld, bound)
	}
	if st.Conflated == 0 || st.SlowClosed != 0 || est.BudgetShed != 0 || est.SlowClosed != 0 {
		t.Fatalf("hub %+v, server %+v: want conflation and no close", st, est)
	}
}

// When closes free part of the server's outbound budget, the stalled
// subscribers that the budget made slow stay slow: they have read nothing,
// so they get conflated values, not fresh copies that refill the budget.
func TestFreedBudgetIsNotRefilledByStalledSubscribers(t *testing.T) {
	const budget, stalled, size = 2 << 20, 16, 8 << 10
	// LowWater as high as HighWater: every stalled backlog is below it, so
	// only the rule for subscribers made slow by the budget keeps them slow.
	h, srv, sub := newHub(t, Options{HighWater: 1 << 20, LowWater: 1 << 20, Policy: Conflate},
		engine.Config{MaxOutboundBytes: budget, MaxOutboundTotal: budget, SocketSendBuffer: 16 << 10, WriteTimeout: -1})
	conns := make([]net.Conn, stalled)
	for i := range conns {
		conns[i] = connect(t, srv, sub, "tick") // never read
	}
	reader := connect(t, srv, sub, "tick")
	waitSubs(t, h, "tick", stalled+1)
	payload := []byte(strings.Repeat("p", size))
	publish := func() int64 {
		t.Helper()
		if err := h.Publish("tick", engine.TextMessage, payload); err != nil {
			t.Fatal(err)
		}
		if got := readText(t, reader); len(got) != size {
			t.Fatalf("reader got %d bytes", len(got))
		}
		looplink.Sweep(srv) // each loop flushes this batch on its own
		looplink.Sweep(srv)
		return srv.Stats().OutboundBytes
	}
	// Fill the budget: the kernel takes the first part of each backlog.
	for i := 0; publish() < budget*9/10; i++ {
		if i == 5000 {
			t.Fatalf("the server holds %d bytes after 40 MB published, want the budget filled", srv.Stats().OutboundBytes)
		}
	}
	for i := 0; i < 20; i++ { // every stalled subscriber is now slow
		publish()
	}
	// Half of the stalled subscribers go away; their backlogs are freed.
	for _, c := range conns[:stalled/2] {
		c.Close()
	}
	waitSubs(t, h, "tick", stalled/2+1)
	var held int64
	for deadline := time.Now().Add(60 * time.Second); ; { // a hang guard
		if held = publish(); held < budget*3/4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server still holds %d bytes after closes", held)
		}
	}
	conflated := h.Stats().Conflated
	maxHeld := held
	for i := 0; i < 200; i++ { // 1.6 MB to each remaining stalled subscriber
		maxHeld = max(maxHeld, publish())
	}
	if bound := held + stalled/2*(size+16); maxHeld > bound {
		t.Fatalf("after closes freed the budget down to %d bytes, the stalled subscribers took it up to %d (bound %d): they were written to again", held, maxHeld, bound)
	}
	if h.Stats().Conflated == conflated {
		t.Fatal("no value conflated for the stalled subscribers after the closes")
	}
}
