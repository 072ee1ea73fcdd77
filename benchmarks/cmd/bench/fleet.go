package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/heraldws/herald/benchmarks/internal/fleet"
	"github.com/heraldws/herald/benchmarks/internal/limits"
	"github.com/heraldws/herald/benchmarks/internal/runner"
)

// fleetCmd runs the fleet benchmark: N connections over herald ticker
// processes sharing a port and a NATS broker, held, then ticked to.
func fleetCmd(args []string) error {
	fs := flag.NewFlagSet("fleet", flag.ExitOnError)
	conns := fs.String("conns", "50000", "connections to hold (50k, 1M, ...)")
	var cfg fleet.Config
	fs.IntVar(&cfg.PerProc, "per-proc", 0, "connections per load generator process and (on average) per server process (0: 90% of the open-files hard limit, rounded down to a thousand)")
	fs.IntVar(&cfg.Servers, "servers", 0, "herald ticker processes (0: enough for -per-proc and the open-files limit)")
	marks := fs.String("marks", "", "connection counts at which to sample memory (default: 10/25/50/100% from 1M on, quarters below)")
	fs.IntVar(&cfg.SrcPerShard, "src-per-shard", 0, "source addresses per load generator (0: enough for half the ephemeral port range each, at least 4)")
	fs.IntVar(&cfg.Pending, "pending", fleet.DefaultPending, "connections in connect or handshake at once, over a wave's load generators")
	fs.DurationVar(&cfg.Settle, "settle", 0, "idle time before each memory sample (default 5s; negative: none)")
	fs.IntVar(&cfg.Ticks, "ticks", 0, "ticks in the ticker phase (0: as many as fit in 5 minutes, 3 to 10)")
	fs.DurationVar(&cfg.TickInterval, "tick-interval", 0, "time between ticks (0: at least 1s and at least 120µs per connection)")
	fs.IntVar(&cfg.Symbols, "symbols", 1, "symbols per tick (each a message to every connection)")
	fs.IntVar(&cfg.MsgSize, "size", 128, "bytes per message")
	fs.IntVar(&cfg.Loops, "loops", 1, "event loops per herald process")
	fs.DurationVar(&cfg.PingInterval, "ping-interval", 0, "the servers' keepalive ping interval (0: at least 30s, and at most 5k pings a second over the fleet)")
	fs.DurationVar(&cfg.PongTimeout, "pong-timeout", 0, "the servers' pong timeout (0: half the ping interval, at least 15s and the tick interval)")
	tune := fs.Bool("tune", false, "raise the kernel settings the run needs (as root), printing each before and after")
	force := fs.Bool("force", false, "run even when a limit the plan needs (files, ports, memory) is too low")
	planOnly := fs.Bool("plan", false, "print the plan and check the limits against it (with -tune, raise them), then exit without running")
	out, pin, from := outputFlags(fs, "fleet", "results.json")
	_ = fs.Parse(args)

	lay, err := outputDir(out, "fleet")
	if err != nil {
		return err
	}
	if *from != "" {
		return rerender(*from, *out, fleet.ReadResults, fleet.Write)
	}
	if cfg.Conns, err = fleet.ParseCount(*conns); err != nil {
		return err
	}
	if *marks != "" {
		if cfg.Marks, err = fleet.ParseMarks(*marks); err != nil {
			return err
		}
	}
	if _, err := limits.RaiseNofile(); err != nil {
		fmt.Fprintf(os.Stderr, "could not raise the open-files limit: %v\n", err)
	}
	lim, err := limits.Read("/proc")
	if err != nil {
		return err
	}
	plan, err := fleet.NewPlan(cfg, lim.NofileHard, lim.Ports())
	if err != nil {
		return err
	}
	if *planOnly {
		return fleet.Preflight(fleet.Env{Tune: *tune, Force: *force}, plan)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	prog := runner.NewProgress(os.Stderr, 1)
	prog.Step("building the load generator, the ticker's cluster build, the tick publisher and nats-server")
	bins, err := fleet.Build(ctx, lay, lay.Bin)
	if err != nil {
		return err
	}
	env := fleet.Env{Bins: bins, LogDir: filepath.Join(lay.Bench, "results", "tmp", "logs", "fleet"), Progress: prog,
		Label: "herald " + runner.GitRev(lay.Root), Machine: machine(), Tune: *tune, Force: *force}
	if *pin {
		env.CPUs = runner.DefaultSplit()
	}
	res, err := fleet.Run(ctx, env, plan)
	if err != nil {
		return fmt.Errorf("%w (logs in %s)", err, env.LogDir)
	}
	prog.Finish()
	if err := fleet.Write(*out, res); err != nil {
		return err
	}
	prog.Log("wrote %s (results.json, report.md, plots/fleet_memory.svg)", *out)
	fl := res.Fleet
	last := fl.Samples[len(fl.Samples)-1]
	prog.Log("%s: %d of %d connections held by %d herald processes; herald %.0f B/conn, kernel %.0f B/conn (both ends), load generators %.0f B/conn; %.0f connects/s",
		fleet.ScenarioHold, fl.Hold.Connected, plan.Conns, plan.Servers, last.HeraldPerConn, last.KernelPerConn, last.LoadgenPerConn, fl.Hold.ConnectPerS)
	if tp := fl.Ticker; tp != nil {
		prog.Log("%s: %d of %d delivered (%.4f), %d gaps; p50 %.1f ms, p99 %.1f ms, p99.9 %.1f ms; servers %.2f µs CPU per delivery, broker %.0f µs per tick",
			fleet.ScenarioTicker, tp.Received, tp.Expected, tp.DeliveredRatio, tp.Gaps, tp.P50US/1e3, tp.P99US/1e3, tp.P999US/1e3, tp.ServerCPUUS, tp.BrokerCPUUS)
	}
	for _, e := range fl.Errors {
		prog.Log("note: %s", e)
	}
	return nil
}

// outputDir finds the benchmarks module and makes *out, if empty,
// results/<name> in it.
func outputDir(out *string, name string) (runner.Layout, error) {
	lay, err := runner.FindLayout()
	if err == nil && *out == "" {
		*out = filepath.Join(lay.Bench, "results", name)
	}
	return lay, err
}

// rerender reads the results saved at from and renders them into out.
func rerender[R any](from, out string, read func(io.Reader) (R, error), write func(string, R) error) error {
	f, err := os.Open(from)
	if err != nil {
		return err
	}
	defer f.Close()
	res, err := read(f)
	if err != nil {
		return err
	}
	return write(out, res)
}
