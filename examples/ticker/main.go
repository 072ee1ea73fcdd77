// Command ticker is herald's main example: a market-data ticker pushing
// price updates to every connected client, with a live browser page.
//
//	go run ./examples/ticker
//
// then open the printed address. The WebSocket is at /ws: a connection
// subscribes to every symbol unless ?symbols=S0,S3 narrows it. Each tick
// publishes one JSON text message per symbol with "sym", "seq" (+1 per tick)
// and "ts" (Unix ns at publish), padded to about -size bytes.
//
// Memory is bounded by its flags: a client that falls more than -high-water
// behind gets only the latest price per symbol until it catches up, all
// clients together hold at most -max-outbound-total, the kernel holds at
// most about twice -send-buffer per client, a client that reads nothing for
// 10 s is closed, and -memory-limit is the process's budget:
// the Go runtime's soft memory limit (what GOMEMLIMIT sets), which keeps
// the garbage collector's headroom inside it. Backlogs cost about 2.5 times
// their bytes in RSS under the default garbage collector settings (buffers
// rounded up to powers of two, the collector's headroom), so the limit is
// at least four times -max-outbound-total.
package main

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
)

func main() {
	var opts options
	flag.StringVar(&opts.addr, "addr", "127.0.0.1:8080", "address to listen on (host:port; port 0 picks one)")
	flag.DurationVar(&opts.interval, "interval", 100*time.Millisecond, "time between ticks")
	flag.IntVar(&opts.symbols, "symbols", 20, "number of symbols, S0 to S<n-1>")
	flag.IntVar(&opts.size, "size", 128, "approximate size of each message in bytes")
	flag.IntVar(&opts.loops, "loops", 0, "event loops (default: one per core)")
	flag.Int64Var(&opts.budget, "max-outbound-total", 64<<20,
		"bytes of unsent ticks the server holds for all clients together; past it, every client with a backlog gets only the latest price per symbol")
	flag.IntVar(&opts.highWater, "high-water", 64<<10,
		"bytes of unsent ticks one client may have before it gets only the latest price per symbol")
	flag.IntVar(&opts.sendBuffer, "send-buffer", 64<<10,
		"the kernel's send buffer per client in bytes (SO_SNDBUF; 0: the kernel's autotuning, up to MiBs per client that does not read)")
	memoryLimit := flag.Int64("memory-limit", 256<<20,
		"the process's memory budget in bytes: the Go runtime's soft memory limit, at least 4 × -max-outbound-total (0 leaves the runtime's default; GOMEMLIMIT, if set, wins)")
	flag.Parse()
	if err := applyMemoryLimit(*memoryLimit, opts.budget); err != nil {
		fmt.Fprintln(os.Stderr, "ticker:", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	t, err := newTicker(opts, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ticker:", err)
		os.Exit(2)
	}
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	if err := t.srv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "ticker:", err)
		os.Exit(1)
	}
	fmt.Printf("herald ticker listening on %s\n", t.srv.Addr())
	logger.Info("open the live page", "url", "http://"+t.srv.Addr().String()+"/")

	stop := make(chan struct{})
	go t.publish(stop)
	<-ctx.Done()
	close(stop)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.srv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("shutdown", "err", err)
	}
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
