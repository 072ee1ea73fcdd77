package resume

import (
	"strconv"
	"testing"
	"time"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
)

// BenchmarkRecover1000 is a client's resubscribe after missing 1,000
// publications of a topic, on loopback: from sending subscribe with its
// last position to having decoded the reply that carries all of them.
// The target is under 100 ms.
func BenchmarkRecover1000(b *testing.B) {
	f := newFixture(b, Options{}, engine.Config{PingInterval: time.Hour}, nil)
	if err := f.rs.Topics("bench", History{Size: 1000}); err != nil {
		b.Fatal(err)
	}
	start, _ := f.hub.Position("bench")
	for i := 1; i <= 1000; i++ {
		if err := f.rs.Publish("bench", []byte(`{"sym":"S0","seq":`+strconv.Itoa(i)+`,"ts":1700000000000000000,"px":101.25}`)); err != nil {
			b.Fatal(err)
		}
	}
	c := f.dial(b)
	since := &broadcast.Position{Epoch: start.Epoch}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := c.subscribe("bench", since)
		if !*r.Recovered || len(r.Pubs) != 1000 {
			b.Fatalf("recovered %v, %d publications", *r.Recovered, len(r.Pubs))
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/recovery")
}
