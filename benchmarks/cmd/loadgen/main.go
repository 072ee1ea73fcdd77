// Command loadgen is herald's WebSocket load generator. It opens many client
// connections from a few epoll event loops, drives one scenario and prints a
// JSON result whose histograms merge exactly with those of other processes
// and hosts (see "bench merge").
//
//	loadgen -scenario echo -addr 127.0.0.1:9001 -conns 100 -duration 5s
//	loadgen -scenario ticker -addr 10.0.0.1:8080 -path /ws -conns 500000 \
//	        -shard 3 -shards 20 -start 1767225600 -src 10.0.1.1-10.0.1.20
//	loadgen -scenario hold -addr 127.0.0.1:8080 -path /ws -conns 0 -stall 5000 -stall-hold 15s
//	loadgen -scenario ticker -addr 127.0.0.1:8080 -path /ws -conns 10000 -deflate
//	loadgen -scenario hold -addr 127.0.0.1:8443 -conns 15000 -tls -tls-ca ca.pem
//
// Hostile and slow clients (-stall, -slowread, -pongonly, -pingflood,
// -streamer) connect beside the scenario's connections and are counted per
// kind in the result's "kinds"; they are not measured for latency.
//
// Progress events go to stderr as lines starting with "EVENT ", followed by
// a JSON object; the result goes to stdout (or -out). The first SIGINT or
// SIGTERM ends the window early (the result is still written), a second
// one aborts.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/heraldws/herald/benchmarks/internal/loadgen"
)

func main() {
	var cfg loadgen.Config
	flag.StringVar(&cfg.Scenario, "scenario", "echo", "hold, echo, ticker or churn")
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:9001", "server address, IPv4 host:port")
	flag.StringVar(&cfg.Path, "path", "/", "request target of the held connections (ticker: /ws, /ws?symbols=S0,S3)")
	flag.IntVar(&cfg.Conns, "conns", 100, "held connections, over all shards")
	flag.IntVar(&cfg.Shard, "shard", 0, "this process's shard index")
	flag.IntVar(&cfg.Shards, "shards", 1, "number of shards (processes over all load hosts)")
	src := flag.String("src", "auto", `source addresses: "127.0.0.2-127.0.0.9", a list, "none" (kernel picks), or "auto" (127.0.0.2-9 for a loopback server)`)
	flag.IntVar(&cfg.Loops, "loops", 1, "event loops in this process")
	flag.Float64Var(&cfg.ConnectRate, "rate", 0, "new connections per second in this process (0: unlimited)")
	flag.IntVar(&cfg.MaxPending, "pending", 512, "connections in connect/handshake at once in this process")
	flag.IntVar(&cfg.Size, "size", 64, "echo payload bytes (at least 8)")
	flag.IntVar(&cfg.Inflight, "inflight", 1, "echo messages in flight per connection")
	flag.BoolVar(&cfg.Deflate, "deflate", false, "offer permessage-deflate (fail if the server declines), inflate and check what comes compressed; echo sends compressed order-book messages")
	useTLS := flag.Bool("tls", false, "wss://: TLS on every connection (not with the hostile kinds)")
	tlsCA := flag.String("tls-ca", "", "PEM file of the CA that signed the server's certificate (default: the system's roots)")
	tlsInsecure := flag.Bool("tls-insecure", false, "do not verify the server's certificate (a self-signed test certificate)")
	tlsName := flag.String("tls-server-name", "localhost", "server name the certificate must match (SNI)")
	tlsResume := flag.Bool("tls-resume", true, "share one TLS session cache, so that connections after the first resume a session")
	flag.IntVar(&cfg.ChurnConc, "churn-conc", 0, "churn: concurrent connect/upgrade/close cycles, over all shards")
	flag.StringVar(&cfg.ChurnPath, "churn-path", "", "churn: request target of the churning connections (default: -path)")
	h := &cfg.Hostile
	flag.IntVar(&h.Stall, "stall", 0, "stalled subscribers: upgrade, then never read (small SO_RCVBUF), over all shards")
	flag.IntVar(&h.SlowRead, "slowread", 0, "slow readers: read at -slowread-rate bytes/s each, over all shards")
	flag.IntVar(&h.PongOnly, "pongonly", 0, "connections that never read and send one unsolicited pong a second, over all shards")
	flag.IntVar(&h.PingFlood, "pingflood", 0, "connections that send pings as fast as allowed and never read the pongs, over all shards")
	flag.IntVar(&h.Streamer, "streamer", 0, "connections that send binary messages continuously and never read, over all shards")
	flag.StringVar(&h.Path, "hostile-path", "", "request target of the hostile connections (default: -path)")
	flag.IntVar(&h.MSS, "hostile-mss", 1460, "MSS the hostile connections advertise (TCP_MAXSEG before connect; -1: the kernel's, 64 KiB on loopback)")
	flag.IntVar(&h.RcvBuf, "hostile-rcvbuf", 4096, "SO_RCVBUF of the hostile connections, set before connect")
	flag.DurationVar(&h.StallHold, "stall-hold", 0, "a stalled subscriber stalls this long (±25%), then reads to learn whether the server closed it and reconnects (0: stalls until the end)")
	flag.IntVar(&h.SlowReadRate, "slowread-rate", 1024, "bytes per second each slow reader takes")
	flag.Float64Var(&h.PingRate, "ping-rate", 0, "pings per second per flooding connection (0: as fast as the socket takes them)")
	flag.IntVar(&h.PingSize, "ping-size", 16, "ping payload bytes (at most 125)")
	flag.IntVar(&h.StreamRate, "stream-rate", 0, "bytes per second per streamer (0: as fast as the socket takes them)")
	flag.IntVar(&h.StreamSize, "stream-size", 1024, "bytes per streamed binary message")
	flag.BoolVar(&h.Redial, "redial", true, "hostile connections the server closed come back after a second")
	flag.DurationVar(&cfg.Interval, "interval-report", 0, `report the window every D as an "interval" event: latency of the held connections, hostile counters (0: off)`)
	flag.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured window")
	flag.DurationVar(&cfg.Warmup, "warmup", time.Second, "traffic before the window (without -start)")
	flag.DurationVar(&cfg.ConnectTimeout, "connect-timeout", 2*time.Minute, "limit on the connect phase")
	start := flag.String("start", "", `window start shared by all shards: Unix seconds, RFC 3339, or "stdin" (a line with Unix ns, sent once every shard reported "connected")`)
	out := flag.String("out", "-", "result file (- for stdout)")
	cpuProfile := flag.String("cpuprofile", "", "write the load generator's own CPU profile to this file (is the client the bottleneck, and why)")
	flag.Parse()
	if *useTLS {
		c, err := loadgen.ClientTLS(*tlsCA, *tlsName, *tlsInsecure, *tlsResume)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(2)
		}
		cfg.TLS = c
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}

	if err := run(cfg, *src, *start, *out); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(cfg loadgen.Config, src, start, out string) error {
	switch src {
	case "none", "":
	case "auto":
		if ap, err := netip.ParseAddrPort(cfg.Addr); err == nil && ap.Addr().IsLoopback() {
			cfg.Src, _ = loadgen.ParseAddrs("127.0.0.2-127.0.0.9")
		}
	default:
		addrs, err := loadgen.ParseAddrs(src)
		if err != nil {
			return err
		}
		cfg.Src = addrs
	}
	var mu sync.Mutex
	cfg.Event = func(ev map[string]any) {
		b, _ := json.Marshal(ev)
		mu.Lock()
		fmt.Fprintf(os.Stderr, "EVENT %s\n", b)
		mu.Unlock()
	}
	switch {
	case start == "":
	case start == "stdin":
		cfg.StartAt = func() (time.Time, error) {
			line, err := bufio.NewReader(os.Stdin).ReadString('\n')
			if err != nil && line == "" {
				return time.Time{}, fmt.Errorf("reading start time from stdin: %w", err)
			}
			return parseStart(strings.TrimSpace(line))
		}
	default:
		t, err := parseStart(start)
		if err != nil {
			return err
		}
		cfg.StartAt = func() (time.Time, error) { return t, nil }
	}
	// The first SIGINT or SIGTERM ends the window early and the result is
	// still written; a second one aborts.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	windowDone := make(chan struct{})
	cfg.WindowDone = windowDone
	go func() {
		<-sigs
		close(windowDone)
		<-sigs
		cancel()
	}()
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if out == "-" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(out, b, 0o644)
}

// parseStart reads Unix ns (19 digits), Unix seconds (possibly fractional)
// or an RFC 3339 time.
func parseStart(s string) (time.Time, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && len(s) >= 16 {
		return time.Unix(0, n), nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("start time %q: want Unix seconds, Unix ns or RFC 3339", s)
	}
	return t, nil
}
