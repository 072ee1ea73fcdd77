package broadcast

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/internal/loadclient"
)

func TestMain(m *testing.M) {
	loadclient.RunIfChild()
	os.Exit(m.Run())
}

// TestFanOutDoesNotAllocatePerSubscriber publishes to 1000 subscribers and
// to 10 and checks that a publish costs the same few allocations (the batch
// task per loop), whatever the number of subscribers.
func TestFanOutDoesNotAllocatePerSubscriber(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	perPublish := func(subs int) float64 {
		h, srv, _ := newHub(t, Options{}, engine.Config{})
		stop := drainInProcess(t, srv, subs)
		defer stop()
		waitSubs(t, h, "bench", subs)
		payload := []byte(`{"sym":"S0","seq":1,"px":101.25}`)
		publishAndWait(t, h, payload, subs, 100) // warm up pools
		return testing.AllocsPerRun(200, func() { publishAndWait(t, h, payload, subs, 1) })
	}
	few, many := perPublish(10), perPublish(1000)
	t.Logf("allocations per publish: %.1f with 10 subscribers, %.1f with 1000", few, many)
	if many > few+2 || many > 10 {
		t.Fatalf("allocations grow with subscribers: %.1f for 10, %.1f for 1000", few, many)
	}
}

// publishAndWait publishes n messages one by one and waits until each has
// been written to every subscriber. It fails tb if deliveries stall.
func publishAndWait(tb testing.TB, h *Hub, payload []byte, subs, n int) {
	for i := 0; i < n; i++ {
		want := h.Stats().Deliveries + uint64(subs)
		_ = h.Publish("bench", engine.TextMessage, payload)
		for spins := 0; h.Stats().Deliveries < want; spins++ {
			runtime.Gosched()
			if spins&0xffff == 0xffff && h.Subscribers("bench") < subs {
				tb.Fatalf("a subscriber left during the benchmark: %d of %d remain", h.Subscribers("bench"), subs)
			}
		}
	}
}

// drainInProcess opens subs WebSocket clients subscribed to "bench" that
// read and discard everything, without allocating per read.
func drainInProcess(t testing.TB, srv *engine.Server, subs int) func() {
	var conns []net.Conn
	for i := 0; i < subs; i++ {
		conn, err := loadclient.Dial(srv.Addr().String(), "/bench", i)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		go loadclient.Discard(conn)
	}
	return func() {
		for _, c := range conns {
			c.Close()
		}
	}
}

// BenchmarkPublish measures publish → written to every subscriber, per
// delivery, for 1k and 10k subscribers on one topic, with the subscribers'
// clients in a child process.
func BenchmarkPublish(b *testing.B) {
	for _, subs := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("subs=%d", subs), func(b *testing.B) {
			// The drain clients never write, so no keepalive during the run.
			h, srv, _ := newHub(b, Options{}, engine.Config{PingInterval: time.Hour})
			stop := loadclient.Start(b, srv.Addr().String(), "/bench", subs, true)
			defer stop()
			waitSubs(b, h, "bench", subs)
			payload := []byte(`{"sym":"S0","seq":1,"ts":1700000000000000000,"px":101.25}`)
			publishAndWait(b, h, payload, subs, 10)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			publishAndWait(b, h, payload, subs, b.N)
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N*subs), "ns/delivery")
		})
	}
}
