package app

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/examples/ticker/book"
)

// Join connects to the cluster whose broker is at opts.NATS, for -nats.
// A Cluster that is a StreamCluster keeps the ticks' history (opts.History
// per symbol) in the broker.
type Join func(opts Options, logger *slog.Logger) (Cluster, error)

// Flags defines the ticker's flags on fs and returns the options they set.
func Flags(fs *flag.FlagSet) *Options {
	o := &Options{}
	fs.StringVar(&o.Addr, "addr", "127.0.0.1:8080", "address to listen on (host:port; port 0 picks one)")
	fs.DurationVar(&o.Interval, "interval", 100*time.Millisecond, "time between ticks")
	fs.IntVar(&o.Symbols, "symbols", 20, "number of symbols, S0 to S<n-1>")
	fs.IntVar(&o.Size, "size", 128, "approximate size of each message in bytes")
	fs.StringVar(&o.Payload, "payload", book.Pad,
		`what fills each message to -size: "pad" (a run of x, the plain tick) or "book" (an order book whose numbers change every tick; it compresses like real market data)`)
	fs.IntVar(&o.Loops, "loops", 0, "event loops (default: one per core)")
	fs.Int64Var(&o.Budget, "max-outbound-total", 64<<20,
		"bytes of unsent ticks the server holds for all clients together; past it, every client with a backlog gets only the latest price per symbol")
	fs.IntVar(&o.HighWater, "high-water", 64<<10,
		"bytes of unsent ticks one client may have before it gets only the latest price per symbol")
	fs.IntVar(&o.SendBuffer, "send-buffer", 64<<10,
		"the kernel's send buffer per client in bytes (SO_SNDBUF; 0: the kernel's autotuning, up to MiBs per client that does not read)")
	fs.Int64Var(&o.MemoryLimit, "memory-limit", 256<<20,
		"the process's memory budget in bytes: the Go runtime's soft memory limit, at least 4 × -max-outbound-total (0 leaves the runtime's default; GOMEMLIMIT, if set, wins)")
	fs.BoolVar(&o.ReusePort, "reuseport", false, "share -addr with other processes (SO_REUSEPORT), e.g. other nodes of a cluster")
	fs.DurationVar(&o.PingInterval, "ping-interval", engine.DefaultPingInterval,
		"ping a client that has sent nothing for this long (keepalive; each ping costs a write and a read per client: a node of many clients may ping less often)")
	fs.DurationVar(&o.PongTimeout, "pong-timeout", engine.DefaultPongTimeout, "drop a pinged client that sends nothing for this long after the ping")
	fs.BoolVar(&o.Compression, "compression", false,
		"negotiate permessage-deflate with clients that offer it (browsers do): ticks of -compression-min-size bytes and more go out compressed, compressed once per tick for all clients")
	fs.IntVar(&o.CompressionMinSize, "compression-min-size", engine.DefaultCompressionMinSize, "with -compression, the smallest tick sent compressed, in bytes")
	fs.StringVar(&o.NATS, "nats", "", "join a cluster through the NATS broker at this URL (nats://host:4222); without it, one process and no broker")
	fs.IntVar(&o.History, "history", 1000,
		"ticks kept per symbol for clients of the subscribe protocol (the page) that reconnect: in memory alone, in JetStream with -nats (0: none)")
	fs.StringVar(&o.TLSCert, "tls-cert", "", "PEM certificate (chain) file: serve the page over https and the ticks over wss:// (with -tls-key); read again when the file changes")
	fs.StringVar(&o.TLSKey, "tls-key", "", "PEM private key file of -tls-cert")
	fs.BoolVar(&o.Publish, "publish", true, "publish ticks; -publish=false makes a node of a cluster only deliver what the others publish")
	return o
}

// Main is the ticker command: it parses the flags, joins the cluster with
// join if -nats is set (join is nil in a build without a broker client),
// serves until SIGINT or SIGTERM, then closes every client with 1001.
func Main(join Join) {
	opts := Flags(flag.CommandLine)
	flag.Parse()
	if err := applyMemoryLimit(opts.MemoryLimit, opts.Budget); err != nil {
		fail(2, err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	var cluster Cluster
	if opts.NATS != "" {
		if join == nil {
			fail(2, fmt.Errorf("-nats needs the NATS build of the ticker, which lives in the nats module so that the core module carries no broker client: cd nats && go run ./cmd/ticker -nats %s", opts.NATS))
		}
		var err error
		if cluster, err = join(*opts, logger); err != nil {
			fail(1, err)
		}
	}
	t, err := New(*opts, logger, cluster)
	if err != nil {
		fail(2, err)
	}
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	if err := t.Start(); err != nil {
		fail(1, err)
	}
	fmt.Printf("herald ticker listening on %s\n", t.Addr())
	scheme := "http://"
	if opts.TLSCert != "" {
		scheme = "https://"
	}
	logger.Info("open the live page", "url", scheme+t.Addr().String()+"/", "nats", opts.NATS, "publish", opts.Publish)

	<-ctx.Done()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.Shutdown(shutdownCtx); err != nil {
		logger.Warn("shutdown", "err", err)
	}
}

func fail(code int, err error) {
	fmt.Fprintln(os.Stderr, "ticker:", err)
	os.Exit(code)
}

// applyMemoryLimit sets the Go runtime's soft memory limit to limit, unless
// limit is 0 or the operator set GOMEMLIMIT. A limit that backlogs alone
// could fill is refused: the collector would run without pause.
func applyMemoryLimit(limit, outboundTotal int64) error {
	switch {
	case limit == 0:
		return nil
	case limit < 0:
		return fmt.Errorf("-memory-limit is negative (%d): give bytes, or 0 for the runtime's default", limit)
	case outboundTotal > 0 && limit < 4*outboundTotal:
		return fmt.Errorf("-memory-limit (%d) is below 4 × -max-outbound-total (%d): backlogs alone could fill it", limit, outboundTotal)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(limit)
	}
	return nil
}
