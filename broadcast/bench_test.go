package broadcast

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
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
// task per loop), whatever the number of subscribers; the same with
// subscribers that negotiated permessage-deflate, whose compressed twin
// costs no allocation either.
func TestFanOutDoesNotAllocatePerSubscriber(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	perPublish := func(subs int, deflate bool) float64 {
		cfg := engine.Config{}
		payload := []byte(`{"sym":"S0","seq":1,"px":101.25}`)
		if deflate {
			cfg.Compression = engine.Compression{Enabled: true}
			payload = []byte(strings.Repeat(`{"sym":"S0","seq":1,"px":101.25},`, 30))
		}
		h, srv, _ := newHub(t, Options{}, cfg)
		stop := drainInProcess(t, srv, subs, deflate)
		defer stop()
		waitSubs(t, h, "bench", subs)
		publishAndWait(t, h, payload, subs, 100) // warm up pools
		allocs := testing.AllocsPerRun(200, func() { publishAndWait(t, h, payload, subs, 1) })
		if deflate && h.Stats().Compressed == 0 {
			t.Fatal("nothing was compressed")
		}
		return allocs
	}
	for _, deflate := range []bool{false, true} {
		few, many := perPublish(10, deflate), perPublish(1000, deflate)
		t.Logf("deflate %v: allocations per publish: %.1f with 10 subscribers, %.1f with 1000", deflate, few, many)
		if many > few+2 || many > 10 {
			t.Fatalf("deflate %v: allocations grow with subscribers: %.1f for 10, %.1f for 1000", deflate, few, many)
		}
	}
}

// publishAndWait publishes n messages one by one and waits until each has
// been written to every subscriber. It fails tb if deliveries stall.
func publishAndWait(tb testing.TB, h *Hub, payload []byte, subs, n int) {
	batch := []Message{{Topic: "bench", Type: engine.TextMessage, Data: payload}}
	publishBatchAndWait(tb, h, batch, subs, n)
}

// publishBatchAndWait publishes batch n times and waits each time until all
// its messages have been written to all subs subscribers of every topic in
// it. It fails tb if deliveries stall.
func publishBatchAndWait(tb testing.TB, h *Hub, batch []Message, subs, n int) {
	for i := 0; i < n; i++ {
		want := h.Stats().Deliveries + uint64(subs*len(batch))
		_ = h.PublishBatch(batch)
		for spins := 0; h.Stats().Deliveries < want; spins++ {
			runtime.Gosched()
			if spins&0xffff == 0xffff && h.Subscribers(batch[0].Topic) < subs {
				tb.Fatalf("a subscriber left during the benchmark: %d of %d remain", h.Subscribers(batch[0].Topic), subs)
			}
		}
	}
}

// drainInProcess opens subs WebSocket clients subscribed to "bench" that
// read and discard everything, without allocating per read; with deflate
// they negotiate permessage-deflate.
func drainInProcess(t testing.TB, srv *engine.Server, subs int, deflate bool) func() {
	var conns []net.Conn
	dial, discard := loadclient.Dial, loadclient.Discard
	if deflate {
		dial, discard = loadclient.DialDeflate, loadclient.DiscardDeflate
	}
	for i := 0; i < subs; i++ {
		conn, err := dial(srv.Addr().String(), "/bench", i)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		go discard(conn)
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
			defer subscribeClients(b, h, srv, "bench", subs, false)()
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

// BenchmarkPublishCompressed publishes a 2 KB JSON message to 1000
// subscribers that negotiated permessage-deflate, and to 1000 that did not:
// the message is compressed once per publish, so the cost per delivery
// moves by the compression divided among the subscribers, and each
// subscriber is written a quarter of the bytes.
func BenchmarkPublishCompressed(b *testing.B) {
	const subs = 1000
	payload := jsonOf(2000, 7)
	for _, deflate := range []bool{false, true} {
		name := "plain"
		if deflate {
			name = "deflate"
		}
		b.Run(name, func(b *testing.B) {
			h, srv, _ := newHub(b, Options{}, engine.Config{PingInterval: time.Hour, Compression: engine.Compression{Enabled: deflate}})
			defer subscribeClients(b, h, srv, "bench", subs, deflate)()
			publishAndWait(b, h, payload, subs, 10)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			publishAndWait(b, h, payload, subs, b.N)
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N*subs), "ns/delivery")
		})
	}
}

// BenchmarkPublishBatch is the ticker's shape: a batch of 20 messages, one
// per topic, to subscribers of all 20 topics, so each subscriber gets the
// batch in one write. It reports the cost per delivered message.
func BenchmarkPublishBatch(b *testing.B) {
	const topics = 20
	names := make([]string, topics)
	for i := range names {
		names[i] = fmt.Sprintf("S%d", i)
	}
	for _, subs := range []int{1000, 4000} {
		b.Run(fmt.Sprintf("subs=%d/topics=%d", subs, topics), func(b *testing.B) {
			h, srv, _ := newHub(b, Options{}, engine.Config{PingInterval: time.Hour})
			defer subscribeClients(b, h, srv, strings.Join(names, ","), subs, false)()
			batch := make([]Message, topics)
			for i, name := range names {
				batch[i] = Message{Topic: name, Type: engine.TextMessage,
					Data: []byte(fmt.Sprintf(`{"sym":"%s","seq":1,"ts":1700000000000000000,"px":101.25}`, name))}
			}
			publishBatchAndWait(b, h, batch, subs, 10)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			publishBatchAndWait(b, h, batch, subs, b.N)
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N*subs*topics), "ns/delivery")
		})
	}
}

// subscribeClients starts subs draining clients in a child process, each
// subscribed to the comma-separated topics (negotiating permessage-deflate
// if deflate), and waits until the hub has
// them all. The returned stop, deferred by the benchmark, stops the timer
// (a deferred call still runs inside it, and closing thousands of
// connections allocates), closes the clients and waits until the hub has let
// them go, so that they are not still closing during the next call.
func subscribeClients(b *testing.B, h *Hub, srv *engine.Server, topics string, subs int, deflate bool) (stop func()) {
	last := topics[strings.LastIndexByte(topics, ',')+1:]
	start := loadclient.Start
	if deflate {
		start = loadclient.StartDeflate
	}
	stopClients := start(b, srv.Addr().String(), "/"+topics, subs, true)
	waitSubs(b, h, last, subs)
	return func() {
		b.StopTimer()
		stopClients()
		waitSubs(b, h, last, 0)
	}
}

// BenchmarkSubscriberMemory measures what an idle connection subscribed to
// one topic costs the server, engine and hub together: heap in use and RSS
// after a collection, divided by the connections (clients in a child
// process). Against engine's BenchmarkIdleConnMemory (the same without the
// hub), the difference is a hub member's cost. HERALD_MEMORY_CONNS changes
// the default of 15000.
func BenchmarkSubscriberMemory(b *testing.B) {
	conns := 15000
	if v := os.Getenv("HERALD_MEMORY_CONNS"); v != "" {
		conns, _ = strconv.Atoi(v)
	}
	for i := 0; i < b.N; i++ {
		h, srv, sub := newHub(b, Options{}, engine.Config{PingInterval: time.Hour})
		sub.opened = nil // nobody waits for each one; set before any connects
		loadclient.SettleMemory()
		rss0, heap0 := loadclient.RSS(), liveHeap()
		stop := loadclient.Start(b, srv.Addr().String(), "/bench", conns, false)
		waitSubs(b, h, "bench", conns)
		loadclient.SettleMemory()
		rss1, heap1 := loadclient.RSS(), liveHeap()
		stop()
		b.ReportMetric(float64(rss1-rss0)/float64(conns), "rss-B/conn")
		b.ReportMetric(float64(int64(heap1)-int64(heap0))/float64(conns), "heap-B/conn")
	}
}
