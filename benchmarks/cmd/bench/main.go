// Command bench is herald's benchmark runner. It builds herald's examples,
// the peer servers and the load generator, runs every scenario against
// every server, samples each server from /proc, and writes results.json,
// report.md and SVG plots to results/latest.
//
//	go run ./cmd/bench -quick              # the smaller run (minutes)
//	go run ./cmd/bench                     # the full comparison
//	go run ./cmd/bench -impls herald,nbio -scenarios echo,ticker-20
//	go run ./cmd/bench -scenarios deflate  # echo-z, ticker-1z, ticker-20z, hold-z (results/deflate)
//	go run ./cmd/bench -scenarios tls      # hold-tls, echo-tls, ticker-1-tls, ticker-20-tls (results/tls)
//	go run ./cmd/bench merge shard0.json shard1.json > merged.json
//	go run ./cmd/bench limits -conns 1000000 -server-procs 4 -load-procs 20 -src 20
//	go run ./cmd/bench report results/latest/results.json
//	go run ./cmd/bench soak -duration 10m  # the ticker under slow and hostile clients
//	go run ./cmd/bench stall               # readers' p99 without and with 5,000 stalled subscribers
//	go run ./cmd/bench fleet -conns 1M -tune # N connections over herald processes on one port and NATS (results/fleet)
//	go run ./cmd/bench cluster             # the ticker over 3 processes through NATS against one (results/cluster)
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/heraldws/herald/benchmarks/internal/histo"
	"github.com/heraldws/herald/benchmarks/internal/limits"
	"github.com/heraldws/herald/benchmarks/internal/loadgen"
	"github.com/heraldws/herald/benchmarks/internal/report"
	"github.com/heraldws/herald/benchmarks/internal/runner"
)

func main() {
	var err error
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "merge":
			err = mergeCmd(os.Args[2:])
		case "limits":
			err = limitsCmd(os.Args[2:])
		case "report":
			err = reportCmd(os.Args[2:])
		case "soak":
			err = soakCmd(os.Args[2:])
		case "stall":
			err = stallCmd(os.Args[2:])
		case "fleet":
			err = fleetCmd(os.Args[2:])
		case "cluster":
			err = clusterCmd(os.Args[2:])
		default:
			err = runCmd(os.Args[1:])
		}
	} else {
		err = runCmd(nil)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func runCmd(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	quick := fs.Bool("quick", false, "the smaller run (under 10 minutes on 2 cores)")
	implsFlag := fs.String("impls", strings.Join(runner.AllImpls, ","), "servers to run, in report order")
	scFlag := fs.String("scenarios", "", `scenarios to run (default: every plain one; "deflate": every compressed one, hold-z, echo-z, ticker-1z, ticker-20z; "tls": every wss:// one, hold-tls, echo-tls, ticker-1-tls, ticker-20-tls)`)
	out := fs.String("out", "", "output directory (default: results/latest in the benchmarks module, results/deflate for compressed scenarios only, results/tls for TLS ones only)")
	src := fs.String("src", "127.0.0.2-127.0.0.9", "loadgen source addresses")
	pinCPUs := fs.Bool("pin", true, "pin servers and load generators to separate CPUs (taskset)")
	readme := fs.Bool("readme", true, "update the results table in benchmarks/README.md (only when writing results/latest, results/deflate or results/tls)")
	from := fs.String("from", "", "update the README's table from this results.json (results/latest, results/deflate or results/tls) instead of running")
	_ = fs.Parse(args)

	lay, err := runner.FindLayout()
	if err != nil {
		return err
	}
	if *from != "" {
		return readmeFrom(lay, *from)
	}
	scs, err := pickScenarios(*quick, *scFlag)
	if err != nil {
		return err
	}
	if *out == "" {
		*out = filepath.Join(lay.Bench, "results", "latest")
		if allCompressed(scs) {
			*out = filepath.Join(lay.Bench, "results", "deflate")
		}
		if allTLS(scs) {
			*out = filepath.Join(lay.Bench, "results", "tls")
		}
	}
	names := strings.Split(*implsFlag, ",")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	prog := runner.NewProgress(os.Stderr, len(names)*len(scs))

	// Limits: raise our soft open-files limit (servers and loadgens inherit
	// it), then check the planned run and say what a bigger one needs.
	if _, err := limits.RaiseNofile(); err != nil {
		prog.Log("could not raise the open-files limit: %v", err)
	}
	lim, err := limits.Read("/proc")
	if err != nil {
		return err
	}
	maxConns, maxProcs := 0, 1
	for _, s := range scs {
		maxConns = max(maxConns, s.Conns+s.ChurnConc)
		maxProcs = max(maxProcs, s.Procs)
	}
	srcs, err := loadgen.ParseAddrs(*src)
	if err != nil {
		return err
	}
	plan := limits.Plan{Conns: maxConns, ServerProcs: 1, LoadProcs: maxProcs, SrcAddrs: len(srcs), DstAddrs: 1, Pending: 512, PerConnBytes: 1024}
	var limitLines []string
	failed := false
	prog.Log("limits for this run (%d connections, %d loadgen process(es), %d source addresses):", maxConns, maxProcs, len(srcs))
	for _, f := range limits.Check(lim, plan) {
		limitLines = append(limitLines, f.String())
		prog.Log("  %s", f)
		if !f.OK && strings.HasPrefix(f.What, "open files per process (hard)") {
			failed = true
		}
	}
	if failed {
		return fmt.Errorf("the open-files limit is too low for %d connections per process; lower the counts or split the processes", maxConns)
	}
	c1m := limits.Plan{Conns: 1_000_000, ServerProcs: 1, LoadProcs: 20, SrcAddrs: 20, DstAddrs: 1, Pending: 4096, PerConnBytes: 1024}
	advice := limits.Advice(limits.Check(lim, c1m))

	prog.Step("building the load generator and the servers")
	lgBin, impls, err := runner.Build(ctx, lay, names, prog.Log)
	if err != nil {
		return err
	}
	logDir := filepath.Join(lay.Bench, "results", "tmp", "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	r := &runner.Runner{Loadgen: lgBin, LogDir: logDir, Progress: prog, Src: *src}
	if *pinCPUs {
		r.CPUs = runner.DefaultSplit()
	}
	if anyTLS(scs) {
		dir, err := os.MkdirTemp("", "herald-bench-tls-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if r.TLS, err = runner.MakeTLSFiles(dir); err != nil {
			return fmt.Errorf("make the TLS certificate: %w", err)
		}
	}
	run := &report.Run{Date: time.Now().UTC().Format(time.RFC3339), Quick: *quick, Machine: machine(), Limits: limitLines, Advice: advice, CPUs: r.CPUs.Describe()}
	for _, im := range impls {
		run.Versions = append(run.Versions, im.Label)
	}
	for _, s := range scs {
		run.Scenario = append(run.Scenario, s.Describe())
	}
	for _, sc := range scs {
		for _, im := range impls {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			row := r.Measure(ctx, im, sc)
			prog.Finish()
			prog.Log("%-8s %-10s %s", im.Name, sc.Name, summary(row))
			run.Rows = append(run.Rows, row)
		}
	}
	if err := report.Write(*out, run); err != nil {
		return err
	}
	prog.Log("wrote %s (results.json, report.md, plots/)", *out)
	if dir, ok := readmeDir(lay, *out); *readme && ok {
		if err := updateReadme(filepath.Join(lay.Bench, "README.md"), run, dir); err != nil {
			prog.Log("README not updated: %v", err)
		}
	}
	return nil
}

// readmeDir returns which of the README's tables the results written to
// out feed ("latest", "deflate" or "tls"), however out is spelt
// (relative to the working directory or absolute), and false for any
// other directory.
func readmeDir(lay runner.Layout, out string) (string, bool) {
	abs, err := filepath.Abs(out)
	if err != nil {
		return "", false
	}
	for _, dir := range []string{"latest", "deflate", "tls"} {
		if abs == filepath.Join(lay.Bench, "results", dir) {
			return dir, true
		}
	}
	return "", false
}

// readmeFrom updates the README's table from a saved results.json.
func readmeFrom(lay runner.Layout, path string) error {
	dir, ok := readmeDir(lay, filepath.Dir(path))
	if !ok {
		return fmt.Errorf("%s is not in results/latest, results/deflate or results/tls", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	run, err := report.ReadJSON(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return updateReadme(filepath.Join(lay.Bench, "README.md"), run, dir)
}

// pickScenarios returns the scenarios named in list (comma-separated; ""
// is every plain scenario, "deflate" every compressed one) from the quick
// or the full set.
func pickScenarios(quick bool, list string) ([]runner.Scenario, error) {
	plain, compressed, tls := runner.Scenarios(quick), runner.Compressed(quick), runner.TLSScenarios(quick)
	if list == "" {
		return plain, nil
	}
	var pick []runner.Scenario
	for _, name := range strings.Split(list, ",") {
		if name == "deflate" {
			pick = append(pick, compressed...)
			continue
		}
		if name == "tls" {
			pick = append(pick, tls...)
			continue
		}
		found := false
		for _, s := range append(append(plain, compressed...), tls...) {
			if s.Name == name {
				pick = append(pick, s)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown scenario %q", name)
		}
	}
	return pick, nil
}

func allCompressed(scs []runner.Scenario) bool {
	for _, s := range scs {
		if !s.Deflate {
			return false
		}
	}
	return len(scs) > 0
}

func allTLS(scs []runner.Scenario) bool {
	for _, s := range scs {
		if !s.TLS {
			return false
		}
	}
	return len(scs) > 0
}

func anyTLS(scs []runner.Scenario) bool {
	for _, s := range scs {
		if s.TLS {
			return true
		}
	}
	return false
}

func summary(r report.Row) string {
	if !r.Available {
		return r.Note
	}
	var parts []string
	if r.RSSBytesPerConn != nil {
		parts = append(parts, fmt.Sprintf("RSS/conn %s B", report.Human(*r.RSSBytesPerConn)))
	}
	if r.ConnectPerS != nil && strings.HasPrefix(r.Scenario, "hold") {
		parts = append(parts, fmt.Sprintf("%s conn/s", report.Human(*r.ConnectPerS)))
	}
	if r.TLSHandshakesPerS != nil {
		parts = append(parts, fmt.Sprintf("%s TLS handshakes/s (%.0f%% resumed)", report.Human(*r.TLSHandshakesPerS), 100*report.Val(r.TLSResumedRatio)))
	}
	if r.MsgsPerS != nil {
		parts = append(parts, fmt.Sprintf("%s msg/s", report.Human(*r.MsgsPerS)))
	}
	if r.P99US != nil {
		parts = append(parts, fmt.Sprintf("p50 %s µs p99 %s µs", report.Human(*r.P50US), report.Human(*r.P99US)))
	}
	if r.ServerCPUUSPerMsg != nil {
		parts = append(parts, fmt.Sprintf("CPU %s µs/msg", report.Human(*r.ServerCPUUSPerMsg)))
	}
	if r.WireBytesPerMsg != nil {
		parts = append(parts, fmt.Sprintf("%s B/msg on the wire", report.Human(*r.WireBytesPerMsg)))
	}
	if r.ChurnPerS != nil {
		parts = append(parts, fmt.Sprintf("%s cycles/s", report.Human(*r.ChurnPerS)))
	}
	parts = append(parts, fmt.Sprintf("server %.0f%% loadgen %.0f%% CPU", r.ServerCPUPct, r.ClientCPUPct))
	if r.Note != "" {
		parts = append(parts, "note: "+r.Note)
	}
	return strings.Join(parts, ", ")
}

// updateReadme replaces the results table between the markers of dir:
// "results" for results/latest, "deflate" for results/deflate.
func updateReadme(path string, run *report.Run, dir string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	marker, kind, headline := "results", "`make bench`", report.Headline(run)
	if run.Quick {
		kind = "`make bench-quick`"
	}
	if dir == "deflate" {
		marker, kind, headline = "deflate", "`make bench-deflate`", report.DeflateHeadline(run)
		if run.Quick {
			kind = "`make bench-deflate BENCH_FLAGS=-quick`"
		}
	}
	if dir == "tls" {
		marker, kind, headline = "tls", "`make bench-tls`", report.TLSHeadline(run)
		if run.Quick {
			kind = "`make bench-tls BENCH_FLAGS=-quick`"
		}
	}
	readmeStart, readmeEnd := "<!-- "+marker+":start -->", "<!-- "+marker+":end -->"
	i, j := strings.Index(s, readmeStart), strings.Index(s, readmeEnd)
	if i < 0 || j < i {
		return fmt.Errorf("no %s ... %s markers", readmeStart, readmeEnd)
	}
	table := fmt.Sprintf("%s\nFrom %s on %s (%s, %d cores), generated into results/%s/report.md:\n\n%s", readmeStart, kind, run.Date[:10], run.Machine.CPU, run.Machine.Cores, dir, headline)
	s = s[:i] + table + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}

func machine() report.Machine {
	m := report.Machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if lim, err := limits.Read("/proc"); err == nil && lim.MemTotal > 0 {
		m.Memory = fmt.Sprintf("%.0f GiB", float64(lim.MemTotal)/(1<<30))
	}
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		var sb strings.Builder
		for _, c := range u.Release {
			if c == 0 {
				break
			}
			sb.WriteByte(byte(c))
		}
		m.Kernel = sb.String()
	}
	if b, err := exec.Command("node", "--version").Output(); err == nil {
		m.Node = strings.TrimSpace(string(b))
	}
	return m
}

// mergeCmd merges loadgen results (files, or - for stdin) exactly and
// prints the merged result, with a summary on stderr.
func mergeCmd(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: bench merge result.json... (- reads stdin)")
	}
	var all []*loadgen.Result
	for _, p := range args {
		f := os.Stdin
		if p != "-" {
			var err error
			if f, err = os.Open(p); err != nil {
				return err
			}
		}
		rs, err := loadgen.ReadResults(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		all = append(all, rs...)
	}
	m, err := loadgen.Merge(all...)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	fmt.Fprintf(os.Stderr, "%d results, %s: %d/%d connections, %.0f conn/s, %.0f msg/s, gaps %d, dropped %d, loadgen CPU %.1f s\n",
		m.Parts, m.Scenario, m.Connected, m.Conns, m.ConnectRate(), m.MsgsPerSec(), m.Gaps, m.Dropped, float64(m.ClientCPUNS)/1e9)
	for _, k := range []string{loadgen.HistLatency, loadgen.HistConnect, loadgen.HistChurn} {
		if e, ok := m.Hist[k]; ok {
			h, err := histo.Decode(e)
			if err != nil {
				return err
			}
			s := histo.Summarize(h)
			fmt.Fprintf(os.Stderr, "  %-8s n=%d p50 %.1f µs p99 %.1f µs p99.9 %.1f µs max %.1f µs\n", k, s.Count, s.P50, s.P99, s.P999, s.Max)
		}
	}
	return nil
}

func limitsCmd(args []string) error {
	fs := flag.NewFlagSet("limits", flag.ExitOnError)
	var p limits.Plan
	fs.IntVar(&p.Conns, "conns", 1_000_000, "connections held at once")
	fs.IntVar(&p.ServerProcs, "server-procs", 1, "server processes sharing them")
	fs.IntVar(&p.LoadProcs, "load-procs", 20, "loadgen processes per load host")
	fs.IntVar(&p.LoadHosts, "load-hosts", 1, "load hosts (1: loadgen on the server's host)")
	fs.IntVar(&p.SrcAddrs, "src", 20, "source addresses per load host")
	fs.IntVar(&p.DstAddrs, "dst", 1, "server address:port pairs")
	fs.IntVar(&p.Pending, "pending", 4096, "handshakes in flight")
	per := fs.Int64("server-bytes-per-conn", 1024, "server memory per connection besides the kernel's")
	_ = fs.Parse(args)
	p.PerConnBytes = *per
	lim, err := limits.Read("/proc")
	if err != nil {
		return err
	}
	bad := 0
	for _, f := range limits.Check(lim, p) {
		fmt.Println(f)
		if !f.OK {
			bad++
		}
	}
	if bad > 0 {
		fmt.Printf("\n%d limit(s) too low for %d connections\n", bad, p.Conns)
	}
	return nil
}

func reportCmd(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	out := fs.String("out", "", "output directory (default: the results file's)")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: bench report [-out dir] results.json")
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	run, err := report.ReadJSON(f)
	if err != nil {
		return err
	}
	if *out == "" {
		*out = filepath.Dir(fs.Arg(0))
	}
	return report.Write(*out, run)
}
