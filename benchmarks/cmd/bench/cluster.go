package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/heraldws/herald/benchmarks/internal/fleet"
	"github.com/heraldws/herald/benchmarks/internal/limits"
	"github.com/heraldws/herald/benchmarks/internal/runner"
)

// clusterCmd compares the ticker spread over processes through NATS with
// the single process, in one run, against the scale-out target.
func clusterCmd(args []string) error {
	fs := flag.NewFlagSet("cluster", flag.ExitOnError)
	scFlag := fs.String("scenarios", "ticker-1,ticker-20", "the runner's ticker scenarios to compare")
	quick := fs.Bool("quick", false, "the runner's quick counts (5,000 and 2,000 subscribers, 5 s windows)")
	var cfg fleet.CompareConfig
	fs.IntVar(&cfg.Pairs, "pairs", 3, "single/cluster pairs per scenario, alternating")
	fs.IntVar(&cfg.Nodes, "nodes", 3, "herald processes of the cluster, on one port")
	fs.StringVar(&cfg.Src, "src", "127.0.0.2-127.0.0.9", "the load generators' source addresses")
	maxLoad := fs.Float64("max-load", 2, "wait while the 1-minute load average is above this before starting (0: do not wait)")
	loadWait := fs.Duration("load-wait", 20*time.Minute, "wait at most this long for the load to fall, then run anyway")
	out, pin, from := outputFlags(fs, "cluster", "results.json")
	_ = fs.Parse(args)

	lay, err := outputDir(out, "cluster")
	if err != nil {
		return err
	}
	if *from != "" {
		return rerender(*from, *out, fleet.ReadCompare, fleet.WriteCompare)
	}
	all := runner.Scenarios(*quick)
	for _, name := range strings.Split(*scFlag, ",") {
		found := false
		for _, s := range all {
			if s.Name == name && s.Kind == "ticker" {
				cfg.Scenarios = append(cfg.Scenarios, s)
				found = true
			}
		}
		if !found {
			return fmt.Errorf("unknown ticker scenario %q", name)
		}
	}
	if _, err := limits.RaiseNofile(); err != nil {
		fmt.Fprintf(os.Stderr, "could not raise the open-files limit: %v\n", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	prog := runner.NewProgress(os.Stderr, 2*cfg.Pairs*len(cfg.Scenarios))
	prog.Step("building the load generator, the ticker alone and its cluster build, the tick publisher and nats-server")
	bins, err := fleet.Build(ctx, lay, lay.Bin)
	if err != nil {
		return err
	}
	waited, err := waitForLoad(ctx, *maxLoad, *loadWait, prog)
	if err != nil {
		return err
	}
	env := fleet.Env{Bins: bins, LogDir: filepath.Join(lay.Bench, "results", "tmp", "logs", "cluster"), Progress: prog,
		Label: "herald " + runner.GitRev(lay.Root), Machine: machine()}
	if *pin {
		env.CPUs = runner.DefaultSplit()
	}
	res, err := fleet.Compare(ctx, env, cfg)
	if err != nil {
		return fmt.Errorf("%w (logs in %s)", err, env.LogDir)
	}
	res.Cluster.LoadWait = waited
	if err := fleet.WriteCompare(*out, res); err != nil {
		return err
	}
	prog.Log("wrote %s (results.json, report.md)", *out)
	invalid := 0
	for _, wl := range res.Cluster.Workloads {
		var rs []string
		for _, p := range wl.Pairs {
			rs = append(rs, strconv.FormatFloat(p.Ratio, 'f', 3, 64))
			for _, m := range []fleet.Measurement{p.Single, p.Cluster} {
				if !m.Valid {
					invalid++
				}
			}
		}
		prog.Log("%s: cluster ÷ single server CPU per delivery, median %.3f× of %d valid pair(s) (%s): %s", wl.Scenario, wl.Median, wl.Valid, strings.Join(rs, ", "), wl.Verdict())
	}
	if invalid > 0 {
		return fmt.Errorf("%d measurement(s) invalid: deliveries missing or a process failed (see %s)", invalid, filepath.Join(*out, "report.md"))
	}
	return nil
}

// waitForLoad waits, polling every minute, while the 1-minute load
// average is above maxLoad, for at most within; then the run goes on
// whatever the load. It says what it did, for the report.
func waitForLoad(ctx context.Context, maxLoad float64, within time.Duration, prog *runner.Progress) (string, error) {
	load := func() float64 {
		b, err := os.ReadFile("/proc/loadavg")
		if err != nil {
			return 0
		}
		v, _ := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
		return v
	}
	l := load()
	switch {
	case maxLoad <= 0:
		return fmt.Sprintf("The 1-minute load average was %.2f when it started (not waited for).", l), nil
	case l <= maxLoad:
		return fmt.Sprintf("The 1-minute load average was %.2f when it started (at most %.2f asked).", l, maxLoad), nil
	}
	t0 := time.Now()
	deadline := t0.Add(within)
	for l > maxLoad && time.Now().Before(deadline) {
		prog.Step(fmt.Sprintf("waiting for the 1-minute load average (%.2f) to fall to %.2f, %v more at most", l, maxLoad, time.Until(deadline).Round(time.Second)))
		if !runner.SleepFor(ctx, time.Minute) {
			return "", ctx.Err()
		}
		l = load()
	}
	waited := time.Since(t0).Round(time.Second)
	if l > maxLoad {
		return fmt.Sprintf("The 1-minute load average stayed above %.2f for %v; it ran anyway at %.2f.", maxLoad, waited, l), nil
	}
	return fmt.Sprintf("It waited %v for the 1-minute load average to fall to %.2f; it started at %.2f.", waited, maxLoad, l), nil
}
