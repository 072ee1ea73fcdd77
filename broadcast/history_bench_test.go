package broadcast

import (
	"fmt"
	"testing"
	"time"

	"github.com/heraldws/herald/engine"
)

// BenchmarkPublishHistory is BenchmarkPublish's 1k subscribers with and
// without a history of 1,000 messages on the topic: the history's cost on
// a publish (an offset, a copy into the ring, the hub-wide publish order)
// against the fan-out it rides on. subs=0 is the publish call alone, with
// nobody to deliver to: the history's cost against nothing.
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
				if subs == 0 {
					for i := 0; i < 2000; i++ { // fill the ring: steady state
						_ = h.Publish("bench", engine.TextMessage, payload)
					}
					b.ReportAllocs()
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						if err := h.Publish("bench", engine.TextMessage, payload); err != nil {
							b.Fatal(err)
						}
					}
					return
				}
				defer subscribeClients(b, h, srv, "bench", subs, false)()
				publishAndWait(b, h, payload, subs, 2000)
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				publishAndWait(b, h, payload, subs, b.N)
				b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N*subs), "ns/delivery")
			})
		}
	}
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
