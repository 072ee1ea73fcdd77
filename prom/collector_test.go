package prom_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/prom"
)

// subscriber subscribes every connection to "news" and echoes nothing.
type subscriber struct {
	engine.BaseHandler
	hub    *broadcast.Hub
	opened chan struct{}
}

func (s *subscriber) OnOpen(c *engine.Conn) {
	_ = s.hub.Subscribe(c, "news")
	s.opened <- struct{}{}
}

func start(t *testing.T) (*engine.Server, *broadcast.Hub, *subscriber) {
	t.Helper()
	h := &subscriber{opened: make(chan struct{}, 16)}
	srv, err := engine.New(engine.Config{Addr: "127.0.0.1:0", Loops: 2}, h)
	if err != nil {
		t.Fatal(err)
	}
	if h.hub, err = broadcast.New(srv, broadcast.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // a hang guard
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv, h.hub, h
}

// scrape serves reg as a service would and returns the exposition text.
func scrape(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	ts := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer ts.Close()
	resp, err := http.Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// expect scrapes reg until the exposition holds every line of want.
func expect(t *testing.T, reg *prometheus.Registry, want ...string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second) // a hang guard
	for {
		text, missing := scrape(t, reg), ""
		for _, w := range want {
			if !strings.Contains(text, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("scrape lacks %q; got:\n%s", missing, text)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCollectorExportsServerAndHub(t *testing.T) {
	srv, hub, h := start(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(prom.New(srv, hub))

	// Two subscribers of one topic: one topic, two subscriptions, two
	// deliveries of one publish.
	var conns []net.Conn
	for i := 0; i < 2; i++ {
		conn, _, _, err := ws.Dialer{Timeout: 5 * time.Second}.Dial(context.Background(), "ws://"+srv.Addr().String()+"/")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		select {
		case <-h.opened:
		case <-time.After(60 * time.Second): // a hang guard
			t.Fatal("not opened")
		}
		conns = append(conns, conn)
	}
	if err := hub.Publish("news", engine.TextMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	for _, conn := range conns {
		_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		if msg, err := wsutil.ReadServerText(conn); err != nil || string(msg) != "hello" {
			t.Fatalf("read %q, %v", msg, err)
		}
	}
	// The counters are read when scraped; the hub counts a delivery just
	// after its write, which the client may see first: wait for them.
	expect(t, reg,
		`herald_connections{state="open"} 2`+"\n",
		`herald_connections{state="handshaking"} 0`+"\n",
		`herald_connections_closed_total{code="1000"} 0`+"\n",
		`herald_connections_closed_total{code="application"} 0`+"\n",
		"herald_loop_inbox_tasks 0\n",
		"herald_accepted_total 2\n",
		`herald_handshakes_total{outcome="upgraded"} 2`+"\n",
		`herald_handshakes_total{outcome="rejected"} 0`+"\n",
		"herald_handshake_hooks_pending 0\n",
		`herald_handshake_hook_refusals_total{reason="timeout"} 0`+"\n",
		`herald_closes_total{reason="write_timeout"} 0`+"\n",
		`herald_closes_total{reason="read_rate"} 0`+"\n",
		`herald_handshake_limit_rejections_total{limit="per_ip"} 0`+"\n",
		"herald_proxy_refused_total 0\n",
		`herald_limit_table_entries{table="handshake_rate"} 0`+"\n",
		"herald_hub_topics 1\n",
		"herald_hub_subscriptions 2\n",
		"herald_hub_published_total 1\n",
		"herald_hub_deliveries_total 2\n",
		`herald_hub_slow_total{action="conflated"} 0`+"\n",
	)
	// Bytes and the publish latency: not zero, and the latency counted
	// once per batch and loop (the two subscribers may be on one or two).
	text := scrape(t, reg)
	for _, re := range []string{
		`(?m)^herald_received_bytes_total [1-9]`,
		`(?m)^herald_sent_bytes_total [1-9]`,
		`(?m)^herald_hub_publish_latency_seconds_count [12]$`,
		`(?m)^herald_hub_publish_latency_seconds_bucket\{le="\+Inf"\} [12]$`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("scrape does not match %s; got:\n%s", re, text)
		}
	}
	if problems, err := testutil.CollectAndLint(prom.New(srv, hub)); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// A server without a hub has no hub series, and a second server in the same
// registry is told apart by a constant label.
func TestCollectorWithoutHubAndTwoServers(t *testing.T) {
	a, _, _ := start(t)
	b, _, _ := start(t)
	reg := prometheus.NewRegistry()
	prometheus.WrapRegistererWith(prometheus.Labels{"server": "a"}, reg).MustRegister(prom.New(a, nil))
	prometheus.WrapRegistererWith(prometheus.Labels{"server": "b"}, reg).MustRegister(prom.New(b, nil))
	text := scrape(t, reg)
	if strings.Contains(text, "# TYPE herald_hub_") {
		t.Errorf("hub series without a hub:\n%s", text)
	}
	for _, want := range []string{`herald_connections{server="a",state="open"} 0`, `herald_connections{server="b",state="open"} 0`} {
		if !strings.Contains(text, want) {
			t.Errorf("scrape lacks %q; got:\n%s", want, text)
		}
	}
}
