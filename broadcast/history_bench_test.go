package broadcast

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/heraldws/herald/engine"
)

// BenchmarkPublishHistory is BenchmarkPublish's 1k subscribers with and
// without a history of 1,000 messages on the topic: the history's cost on
// a publish (an offset, a copy into the ring, the hub-wide publish order)
// against the fan-out it rides on. subs=0 is the publish call alone, with
// nobody to deliver to: the history's cost against nothing.
//
// Besides wall time per publish it reports cpu-ns/op, the process's CPU
// time (user and system, getrusage) per publish: on a machine shared with
// other work, wall time says more about the neighbours than about the
// publish. The wait for each publish's deliveries sleeps instead of
// spinning, so that the CPU it measures is the hub's and the loops' work.
func BenchmarkPublishHistory(b *testing.B) {
	payload := []byte(`{"sym":"S0","seq":1,"ts":1700000000000000000,"px":101.25}`)
	for _, subs := range []int{0, 1000} {
		for _, history := range []bool{false, true} {
			b.Run(fmt.Sprintf("subs=%d/history=%v", subs, history), func(b *testing.B) {
				h, srv, _ := newHub(b, Options{}, engine.Config{PingInterval: time.Hour})
				if history {
					if err := h.SetHistory("bench", HistoryOptions{Size: 1000}); err != nil {
						b.Fatal(err)
					}
				}
				if subs > 0 {
					defer subscribeClients(b, h, srv, "bench", subs, false)()
				}
				publishWaiting(b, h, payload, subs, 2000) // fills the ring: steady state
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := processCPU()
				publishWaiting(b, h, payload, subs, b.N)
				b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// publishWaiting publishes n messages one by one and waits, sleeping,
// until each has been written to all subs subscribers.
func publishWaiting(b *testing.B, h *Hub, payload []byte, subs, n int) {
	for i := 0; i < n; i++ {
		want := h.Stats().Deliveries + uint64(subs)
		if err := h.Publish("bench", engine.TextMessage, payload); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second) // a hang guard
		for subs > 0 && h.Stats().Deliveries < want {
			if time.Now().After(deadline) {
				b.Fatalf("deliveries stalled: %d subscribers left", h.Subscribers("bench"))
			}
			time.Sleep(20 * time.Microsecond)
		}
	}
}

// processCPU is the process's user and system CPU time so far, in ns.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkRecover reads 1,000 missed messages of a topic from its
// history, as a resubscribe does.
func BenchmarkRecover(b *testing.B) {
	h, _, _ := newHub(b, Options{}, engine.Config{})
	if err := h.SetHistory("bench", HistoryOptions{Size: 1000}); err != nil {
		b.Fatal(err)
	}
	payload := []byte(`{"sym":"S0","seq":1,"ts":1700000000000000000,"px":101.25}`)
	for i := 0; i < 1000; i++ {
		_ = h.Publish("bench", engine.TextMessage, payload)
	}
	cur, _ := h.Position("bench")
	since := Position{Epoch: cur.Epoch}
	var buf []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buf = buf[:0]
		_, ok, _ := h.Recover("bench", &since, 0, func(_ uint64, _ engine.MessageType, p []byte) { buf = append(buf, p...) })
		if !ok {
			b.Fatal("not recovered")
		}
	}
}

// BenchmarkPublishHistoryRatio puts the two sides of
// BenchmarkPublishHistory in one process at once: two servers, each with
// 1,000 subscribers of "bench", one hub with a history of 1,000 messages on
// the topic and one without, published to in alternating blocks of 50, the
// process's CPU time summed per side. Whatever else the machine runs
// weighs on both sides alike. It reports both sides' CPU per publish and
// their ratio (history / plain).
func BenchmarkPublishHistoryRatio(b *testing.B) {
	const subs, block = 1000, 50
	payload := []byte(`{"sym":"S0","seq":1,"ts":1700000000000000000,"px":101.25}`)
	plain, srvPlain, _ := newHub(b, Options{}, engine.Config{PingInterval: time.Hour})
	hist, srvHist, _ := newHub(b, Options{}, engine.Config{PingInterval: time.Hour})
	if err := hist.SetHistory("bench", HistoryOptions{Size: 1000}); err != nil {
		b.Fatal(err)
	}
	defer subscribeClients(b, plain, srvPlain, "bench", subs, false)()
	defer subscribeClients(b, hist, srvHist, "bench", subs, false)()
	publishWaiting(b, plain, payload, subs, 1000)
	publishWaiting(b, hist, payload, subs, 2000) // fills the ring: steady state
	b.ReportAllocs()
	b.ResetTimer()
	var cpuPlain, cpuHist int64
	for done := 0; done < b.N; done += block {
		n := min(block, b.N-done)
		t0 := processCPU()
		publishWaiting(b, plain, payload, subs, n)
		t1 := processCPU()
		publishWaiting(b, hist, payload, subs, n)
		t2 := processCPU()
		cpuPlain += t1 - t0
		cpuHist += t2 - t1
	}
	b.ReportMetric(float64(cpuPlain)/float64(b.N), "plain-cpu-ns/op")
	b.ReportMetric(float64(cpuHist)/float64(b.N), "history-cpu-ns/op")
	b.ReportMetric(float64(cpuHist)/float64(cpuPlain), "ratio")
}
