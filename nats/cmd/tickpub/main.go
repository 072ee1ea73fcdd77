// Command tickpub publishes the ticker's ticks to a herald cluster through
// its NATS broker, and serves nobody: a backend that publishes through
// herald's Bus. Every node of the cluster (nats/cmd/ticker, usually with
// -publish=false) delivers them to its subscribers as if it had published
// them itself. The ticks are the ticker's (examples/ticker/app.Ticks): one
// message per symbol with "sym", a "seq" that goes up by one each tick and
// "ts", the Unix ns at which the tick was made.
//
//	tickpub -nats nats://127.0.0.1:4222 -interval 1s -symbols 1 -size 128 -ticks 10
//
// The first tick goes out at once, the others every -interval. With
// -ticks N it stops after N ticks, once the broker has everything, prints
// "tickpub published N ticks" and exits; without, it runs until SIGINT or
// SIGTERM. The fleet benchmark (benchmarks, "bench fleet") uses it to tick
// to every connection of nodes that publish nothing themselves.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/heraldws/herald/examples/ticker/app"
	heraldnats "github.com/heraldws/herald/nats"
)

// options are tickpub's flags.
type options struct {
	url      string
	interval time.Duration
	symbols  int
	size     int
	ticks    int
}

func main() {
	var o options
	flag.StringVar(&o.url, "nats", "nats://127.0.0.1:4222", "the cluster's NATS broker")
	flag.DurationVar(&o.interval, "interval", 100*time.Millisecond, "time between ticks")
	flag.IntVar(&o.symbols, "symbols", 20, "number of symbols, S0 to S<n-1> (as the nodes' -symbols)")
	flag.IntVar(&o.size, "size", 128, "approximate size of each message in bytes")
	flag.IntVar(&o.ticks, "ticks", 0, "ticks to publish before exiting (0: until SIGINT or SIGTERM)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, o, os.Stdout, logger); err != nil {
		fmt.Fprintln(os.Stderr, "tickpub:", err)
		os.Exit(1)
	}
}

// run connects to the broker, publishes the ticks and waits until the
// broker has them all.
func run(ctx context.Context, o options, out io.Writer, logger *slog.Logger) error {
	switch {
	case o.symbols < 1 || o.symbols > 100000:
		return fmt.Errorf("-symbols must be between 1 and 100000, not %d", o.symbols)
	case o.interval <= 0:
		return fmt.Errorf("-interval must be positive, not %v", o.interval)
	case o.ticks < 0:
		return fmt.Errorf("-ticks must not be negative, not %d", o.ticks)
	}
	bus, err := heraldnats.Connect(heraldnats.Options{URL: o.url, Logger: logger})
	if err != nil {
		return err
	}
	defer bus.Close()
	fmt.Fprintf(out, "tickpub connected to %s\n", o.url)
	ticks := app.NewTicks(o.symbols, o.size)
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	n := 0
	for o.ticks == 0 || n < o.ticks {
		if n > 0 {
			select {
			case <-ctx.Done():
				return finish(bus, out, n)
			case <-tick.C:
			}
		}
		if err := bus.Publish(ticks.Next(time.Now().UnixNano())); err != nil {
			return fmt.Errorf("tick %d: %w", n+1, err)
		}
		n++
	}
	return finish(bus, out, n)
}

// finish waits until the broker has what was published and says how many
// ticks went out.
func finish(bus *heraldnats.Bus, out io.Writer, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), heraldnats.DefaultSyncTimeout)
	defer cancel()
	if err := bus.Sync(ctx); err != nil && !errors.Is(err, heraldnats.ErrClosed) {
		return fmt.Errorf("after %d ticks: the broker did not confirm them: %w", n, err)
	}
	fmt.Fprintf(out, "tickpub published %d ticks\n", n)
	return nil
}
