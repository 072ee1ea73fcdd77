package engine

import (
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/heraldws/herald/internal/loadclient"
)

func TestMain(m *testing.M) {
	loadclient.RunIfChild()
	runFloodIfChild()
	os.Exit(m.Run())
}

// BenchmarkIdleConnMemory measures what an idle upgraded connection costs
// the server: RSS, the heap's spans in use (heap-B/conn) and its live
// objects (live-B/conn, after a full collection) divided by the number of
// connections. heap minus live is what the connections' objects leave
// unused in the spans they occupy: the garbage of a burst of handshakes
// allocated amid them.
// The clients run in a child process. Set HERALD_MEMORY_CONNS to change the
// default of 15000. "deflate" is the same with permessage-deflate
// negotiated on every connection, which must cost nothing more: no
// connection keeps a compressor, a decompressor or a window. "mounted" is
// "plain" through ServeHTTP, which must cost the same once handed over.
// "tls" is "plain" over TLS 1.3 (Config.TLS), handshakes resumed from
// session tickets after the first ones.
func BenchmarkIdleConnMemory(b *testing.B) {
	conns := 15000
	if v := os.Getenv("HERALD_MEMORY_CONNS"); v != "" {
		conns, _ = strconv.Atoi(v)
	}
	for _, tc := range []struct {
		name                string
		deflate, mount, tls bool
	}{{"plain", false, false, false}, {"deflate", true, false, false}, {"mounted", false, true, false}, {"tls", false, false, true}} {
		b.Run(tc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				m := measureIdle(b, conns, tc.deflate, tc.mount, tc.tls)
				b.ReportMetric(m.rss, "rss-B/conn")
				b.ReportMetric(m.heap, "heap-B/conn")
				b.ReportMetric(m.live, "live-B/conn")
			}
		})
	}
}

// measureIdle connects conns idle clients and returns what each costs.
// With mount the server has no listener of its own: the clients connect
// to an http.Server that hands them over (ServeHTTP), and net/http's own
// per-connection state, garbage once the connection is handed over, is
// collected before the second sample as the first's is.
func measureIdle(b *testing.B, conns int, deflate, mount, useTLS bool) idleCost {
	cfg := Config{Loops: 2, PingInterval: time.Hour, Compression: Compression{Enabled: deflate}}
	if useTLS {
		cfg.TLS = loopbackPKI.ServerConfig()
	}
	var s *Server
	var addr string
	if mount {
		s, addr = startMounted(b, cfg, BaseHandler{}, nil)
	} else {
		s = startServer(b, cfg, BaseHandler{})
		addr = s.Addr().String()
	}
	loadclient.SettleMemory()
	rss0, ms0 := loadclient.RSS(), heapStats()
	start := loadclient.Start
	switch {
	case deflate:
		start = loadclient.StartDeflate
	case useTLS:
		start = loadclient.StartTLS
	}
	path := "/"
	if mount {
		path = "/ws"
	}
	stop := start(b, addr, path, conns, false)
	defer stop()
	deadline := time.Now().Add(time.Minute)
	for s.Stats().Upgraded < uint64(conns) {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d connections upgraded", s.Stats().Upgraded, conns)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if useTLS {
		// An idle TLS connection drops its ciphers once idle for
		// tlsIdleCipher (at a sweep): measure it idle.
		waitFor(b, "the idle TLS connections to drop their ciphers", func() bool { return tlsCiphersHeld(s) == 0 })
	}
	if deflate && s.Stats().DeflateNegotiated != uint64(conns) {
		b.Fatalf("%d of %d connections negotiated permessage-deflate", s.Stats().DeflateNegotiated, conns)
	}
	loadclient.SettleMemory()
	rss1, ms1 := loadclient.RSS(), heapStats()
	heap := int64(ms1.HeapInuse) - int64(ms0.HeapInuse)
	live := int64(ms1.HeapAlloc) - int64(ms0.HeapAlloc)
	b.Logf("%d idle connections: RSS %+d B, heap %+d B, live %+d B, stacks %+d B", conns, rss1-rss0, heap, live,
		int64(ms1.StackInuse)-int64(ms0.StackInuse))
	n := float64(conns)
	return idleCost{rss: float64(rss1-rss0) / n, heap: float64(heap) / n, live: float64(live) / n}
}

// idleCost is what one idle connection costs, in bytes.
type idleCost struct{ rss, heap, live float64 }

func heapStats() runtime.MemStats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms
}

// tlsCiphersHeld counts the AEADs that s's connections hold.
func tlsCiphersHeld(s *Server) int {
	n := 0
	for _, l := range *s.loopList.Load() {
		got := make(chan int, 1)
		if l.Post(func() {
			k := 0
			for _, t := range l.tlsConns {
				if r := t.rec; r != nil {
					k += btoi(r.rd.aead != nil) + btoi(r.wr.aead != nil)
				}
			}
			got <- k
		}) == nil {
			n += <-got
		}
	}
	return n
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
