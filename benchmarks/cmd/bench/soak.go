package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/heraldws/herald/benchmarks/internal/limits"
	"github.com/heraldws/herald/benchmarks/internal/runner"
	"github.com/heraldws/herald/benchmarks/internal/soak"
)

// soakEnv builds the ticker and the load generator and returns where the
// plans run.
func soakEnv(ctx context.Context, pin bool) (*soak.Env, runner.Layout, error) {
	lay, err := runner.FindLayout()
	if err != nil {
		return nil, lay, err
	}
	if _, err := limits.RaiseNofile(); err != nil {
		fmt.Fprintf(os.Stderr, "could not raise the open-files limit: %v\n", err)
	}
	env := &soak.Env{Loadgen: filepath.Join(lay.Bin, "loadgen"), Ticker: filepath.Join(lay.Bin, "herald-ticker"),
		LogDir: filepath.Join(lay.Bench, "results", "tmp", "logs"),
		Log: func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
		}}
	if pin {
		env.CPUs = runner.DefaultSplit()
	}
	for _, d := range []string{lay.Bin, env.LogDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, lay, err
		}
	}
	env.Log("building the load generator and the ticker example")
	if err := runner.GoBuild(ctx, lay.Bench, env.Loadgen, "./cmd/loadgen"); err != nil {
		return nil, lay, fmt.Errorf("build loadgen: %w", err)
	}
	if err := runner.GoBuild(ctx, lay.Root, env.Ticker, "./examples/ticker"); err != nil {
		return nil, lay, fmt.Errorf("build examples/ticker: %w", err)
	}
	return env, lay, nil
}

func tickerFlags(fs *flag.FlagSet, o *soak.TickerOpts) {
	fs.DurationVar(&o.Interval, "interval", o.Interval, "ticker -interval")
	fs.IntVar(&o.Symbols, "symbols", o.Symbols, "ticker -symbols")
	fs.IntVar(&o.Size, "size", o.Size, "ticker -size")
	fs.Int64Var(&o.Budget, "max-outbound-total", o.Budget, "ticker -max-outbound-total: the server's outbound budget, bytes")
	fs.IntVar(&o.HighWater, "high-water", o.HighWater, "ticker -high-water, bytes")
	fs.Int64Var(&o.MemoryLimit, "memory-limit", o.MemoryLimit, "ticker -memory-limit: the process's memory budget, bytes (at least 4 × -max-outbound-total; 0: the ticker's default)")
}

// populationFlags declares the clients that the soak and the stall
// experiment share: the measured readers and the stalled subscribers.
func populationFlags(fs *flag.FlagSet, readers, stalls, stallProcs *int, stallHold *time.Duration) {
	fs.IntVar(readers, "readers", *readers, "healthy readers (latency measured)")
	fs.IntVar(stalls, "stalls", *stalls, "stalled subscribers")
	fs.IntVar(stallProcs, "stall-procs", *stallProcs, "load generator processes for the stalled subscribers")
	fs.DurationVar(stallHold, "stall-hold", *stallHold, "a stalled subscriber checks whether the server closed it after this long (±25%), then comes back")
}

// outputFlags declares where an experiment writes (results/name by
// default), whether it pins CPUs, and -from, which renders its report
// again from a saved file instead of running.
func outputFlags(fs *flag.FlagSet, name, saved string) (out *string, pin *bool, from *string) {
	out = fs.String("out", "", "results directory (default: results/"+name+" in the benchmarks module)")
	pin = fs.Bool("pin", true, "pin the ticker and the load generators to separate CPUs (taskset)")
	from = fs.String("from", "", "render the report again from this "+saved+" instead of running")
	return out, pin, from
}

// soakCmd runs the ticker for a long time under slow and hostile clients.
func soakCmd(args []string) error {
	o := soak.DefaultSoak()
	fs := flag.NewFlagSet("soak", flag.ExitOnError)
	fs.DurationVar(&o.Duration, "duration", o.Duration, "the readers' window")
	fs.DurationVar(&o.Baseline, "baseline", 0, "readers alone before the hostile load starts (default: a tenth of -duration, 10 s to 1 min)")
	tickerFlags(fs, &o.Ticker)
	populationFlags(fs, &o.Readers, &o.Stalls, &o.StallProcs, &o.StallHold)
	fs.IntVar(&o.SlowReads, "slowread", o.SlowReads, "slow readers")
	fs.IntVar(&o.SlowRate, "slowread-rate", o.SlowRate, "bytes per second per slow reader")
	fs.IntVar(&o.PongOnly, "pongonly", o.PongOnly, "connections that never read and send a pong a second")
	fs.IntVar(&o.PingFlood, "pingflood", o.PingFlood, "connections that flood pings and never read")
	fs.Float64Var(&o.PingRate, "ping-rate", o.PingRate, "pings per second per flooding connection (0: as fast as the socket takes them)")
	fs.IntVar(&o.Streamers, "streamer", o.Streamers, "connections that stream binary messages and never read")
	fs.IntVar(&o.StreamRate, "stream-rate", o.StreamRate, "bytes per second per streamer (0: as fast as the socket takes them)")
	fs.IntVar(&o.ChurnConc, "churn-conc", o.ChurnConc, "connect/upgrade/close cycles in flight")
	fs.IntVar(&o.ChurnRate, "churn-rate", o.ChurnRate, "connect/upgrade/close cycles started per second at most (0: as fast as they complete)")
	out, pin, from := outputFlags(fs, "soak", "soak.json")
	_ = fs.Parse(args)
	if *from != "" {
		var res soak.Result
		if err := readJSON(*from, &res); err != nil {
			return err
		}
		return soak.WriteSoak(dirOr(*out, *from), &res)
	}
	if o.Baseline <= 0 {
		o.Baseline = min(time.Minute, max(10*time.Second, o.Duration/10))
	}
	if o.Baseline >= o.Duration {
		return fmt.Errorf("-baseline %v leaves nothing of -duration %v for the hostile load", o.Baseline, o.Duration)
	}
	if per := (o.Stalls + o.StallProcs - 1) / max(1, o.StallProcs); per > 10000 {
		return fmt.Errorf("%d stalled subscribers per process: keep it under 10,000 (raise -stall-procs)", per)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env, lay, err := soakEnv(ctx, *pin)
	if err != nil {
		return err
	}
	if *out == "" {
		*out = filepath.Join(lay.Bench, "results", "soak")
	}
	res, err := soak.Run(ctx, env, soak.SoakPlan(o))
	if err != nil {
		return fmt.Errorf("soak: %w (logs in %s)", err, env.LogDir)
	}
	if err := soak.WriteSoak(*out, res); err != nil {
		return err
	}
	env.Log("wrote %s (soak.json, summary.md, plots/soak.svg)", *out)
	env.Log("peak RSS %.1f MiB (idle %.1f MiB, budget %.0f MiB); readers' p99 %.2f ms over the window",
		float64(res.PeakRSS)/(1<<20), float64(res.IdleRSS)/(1<<20), float64(o.Ticker.Budget)/(1<<20), res.Readers.P99/1000)
	return nil
}

// stallCmd runs the stall experiment.
func stallCmd(args []string) error {
	o := soak.DefaultStall()
	fs := flag.NewFlagSet("stall", flag.ExitOnError)
	fs.DurationVar(&o.Duration, "duration", o.Duration, "each run's window")
	tickerFlags(fs, &o.Ticker)
	populationFlags(fs, &o.Readers, &o.Stalls, &o.StallProcs, &o.StallHold)
	out, pin, from := outputFlags(fs, "stall", "stall.json")
	_ = fs.Parse(args)
	if *from != "" {
		var s soak.Stall
		if err := readJSON(*from, &s); err != nil {
			return err
		}
		return soak.WriteStall(dirOr(*out, *from), &s)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env, lay, err := soakEnv(ctx, *pin)
	if err != nil {
		return err
	}
	if *out == "" {
		*out = filepath.Join(lay.Bench, "results", "stall")
	}
	basePlan, stallPlan := soak.StallPlans(o)
	base, err := soak.Run(ctx, env, basePlan)
	if err != nil {
		return fmt.Errorf("stall, readers alone: %w (logs in %s)", err, env.LogDir)
	}
	stalled, err := soak.Run(ctx, env, stallPlan)
	if err != nil {
		return fmt.Errorf("stall, with stalled subscribers: %w (logs in %s)", err, env.LogDir)
	}
	s := soak.NewStall(o.Stalls, base, stalled)
	if err := soak.WriteStall(*out, s); err != nil {
		return err
	}
	env.Log("wrote %s (stall.json, stall.md, plots/stall.svg)", *out)
	env.Log("readers' p99: %.2f ms alone, %.2f ms with %d stalled subscribers (%.2f×; target ≤ %.2f ms: %v)",
		s.BaseP99US/1000, s.StallP99US/1000, o.Stalls, s.Ratio, s.TargetUS/1000, s.LatencyMet)
	env.Log("peak RSS %.1f MiB, %.1f MiB over the idle ticker; outbound budget %.0f MiB, memory limit %.0f MiB (within: %v)",
		float64(s.PeakRSS)/(1<<20), float64(s.PeakGrowth)/(1<<20), float64(s.Budget)/(1<<20), float64(s.MemoryLimit)/(1<<20), s.MemoryMet)
	return nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// dirOr is out, or the directory of the file the report is read from.
func dirOr(out, from string) string {
	if out != "" {
		return out
	}
	return filepath.Dir(from)
}
