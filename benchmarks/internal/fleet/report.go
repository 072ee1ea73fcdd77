package fleet

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/heraldws/herald/benchmarks/internal/loadgen"
	"github.com/heraldws/herald/benchmarks/internal/report"
)

// Scenario names of the fleet's rows in results.json.
const (
	ScenarioHold   = "fleet-hold"
	ScenarioTicker = "fleet-ticker"
)

// finish turns the run's measurements into results.
func (r *run) finish() (*Results, error) {
	p := r.plan
	fl := r.fl
	res := &Results{Fleet: fl}
	res.Date = r.t0.UTC().Format(time.RFC3339)
	res.Machine = r.env.Machine
	res.Versions = []string{r.env.Label, "nats-server " + r.brokerVersion}
	res.Limits = fl.Limits
	res.CPUs = r.env.CPUs.Describe()
	for _, c := range fl.Tuning {
		if !fl.Tuned {
			res.Advice = append(res.Advice, fmt.Sprintf("sysctl -w %s=%q", c.Sysctl, c.After))
		}
	}
	res.Scenario = []string{
		fmt.Sprintf("%s: %d idle upgraded connections over %d herald processes on one port; memory sampled %v after each of %d waves", ScenarioHold, p.Conns, p.Servers, p.Settle, len(p.Marks)),
		fmt.Sprintf("%s: %d tick(s) of %d symbol(s) × %d B every %v, published through NATS to every connection", ScenarioTicker, p.Ticks, p.Symbols, p.MsgSize, p.TickInterval),
	}
	last := fl.Samples[len(fl.Samples)-1]
	label := fmt.Sprintf("%s × %d processes", r.env.Label, p.Servers)
	hold := report.Row{Impl: "herald", Label: label, Scenario: ScenarioHold, Conns: p.Conns, Available: true,
		RSSBytesPerConn: report.F(last.HeraldPerConn), ConnectPerS: report.F(fl.Hold.ConnectPerS),
		ServerCPUPct: fl.Hold.IdleCPUPct, ServerRSSBytes: last.ServerRSS, LoadgenProcs: len(p.Shards),
		Connected: fl.Hold.Connected, ConnectFails: fl.Hold.ConnectFailures, WindowS: p.Settle.Seconds()}
	res.Rows = append(res.Rows, hold)
	if tp := fl.Ticker; tp != nil {
		row := report.Row{Impl: "herald", Label: label, Scenario: ScenarioTicker, Conns: p.Conns, Available: true,
			P50US: report.F(tp.P50US), P99US: report.F(tp.P99US), P999US: report.F(tp.P999US),
			ServerCPUUSPerMsg: report.F(tp.ServerCPUUS), DeliveredRatio: report.F(tp.DeliveredRatio),
			ClientCPUUSPerMsg: report.F(tp.LoadgenCPUUS), ServerRSSBytes: tp.PeakServerRSS, WindowS: tp.Seconds,
			LoadgenProcs: len(p.Shards), Connected: fl.Hold.Connected, Gaps: tp.Gaps, Dropped: tp.Dropped,
			ProtocolErrors: tp.ProtocolErrors, LatencyH: tp.latencyH}
		if tp.Seconds > 0 {
			row.MsgsPerS = report.F(float64(tp.Received) / tp.Seconds)
			row.ServerCPUPct = 100 * float64(tp.ServerCPUNS) / 1e9 / tp.Seconds
			row.ClientCPUPct = 100 * float64(tp.LoadgenCPUNS) / 1e9 / tp.Seconds
		}
		if !tp.Complete {
			row.Note = fmt.Sprintf("%d of %d deliveries", tp.Received, tp.Expected)
		}
		res.Rows = append(res.Rows, row)
		fl.Cost = NewCostModel(last.HeraldPerConn, last.KernelPerConn/2, tp.ServerCPUUS)
	} else {
		fl.Cost = NewCostModel(last.HeraldPerConn, last.KernelPerConn/2, math.NaN())
	}
	if r.merged != nil {
		if h, ok := r.merged.Hist[loadgen.HistConnect]; ok {
			res.Rows[0].ConnectH = string(h)
		}
	}
	return res, nil
}

// Write renders res into dir: results.json, report.md and
// plots/fleet_memory.svg.
func Write(dir string, res *Results) error {
	return writeFiles(dir, res, map[string]string{"report.md": Markdown(res), "plots/fleet_memory.svg": MemoryChart(res)})
}

// writeFiles writes res as dir/results.json, and each of files (a path
// under dir and its contents).
func writeFiles(dir string, res any, files map[string]string) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	files["results.json"] = string(b) + "\n"
	for name, text := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// ReadResults parses a fleet results.json.
func ReadResults(rd io.Reader) (*Results, error) {
	var res Results
	if err := json.NewDecoder(rd).Decode(&res); err != nil {
		return nil, fmt.Errorf("parse fleet results: %w", err)
	}
	if res.Fleet == nil || len(res.Fleet.Samples) == 0 {
		return nil, fmt.Errorf("parse fleet results: no fleet samples")
	}
	return &res, nil
}

// MemoryChart plots memory against connections held: per connection
// (herald, kernel, load generators) and in all (herald's growth, the
// kernel's growth, the load generators, the broker).
func MemoryChart(res *Results) string {
	fl := res.Fleet
	var x, herald, kernel, lg, hT, kT, lgT, brT []float64
	// The totals start from nothing held: the baseline.
	x0, hT0, kT0, lgT0, brT0 := []float64{0}, []float64{0}, []float64{0}, []float64{0}, []float64{float64(fl.Base.BrokerRSS) / (1 << 20)}
	for _, s := range fl.Samples {
		x = append(x, float64(s.Conns))
		herald = append(herald, s.HeraldPerConn)
		kernel = append(kernel, s.KernelPerConn)
		lg = append(lg, s.LoadgenPerConn)
		hT = append(hT, float64(s.ServerRSS-fl.Base.ServerRSS)/(1<<20))
		kT = append(kT, s.KernelPerConn*float64(s.Conns)/(1<<20))
		lgT = append(lgT, float64(s.LoadgenRSS)/(1<<20))
		brT = append(brT, float64(s.BrokerRSS)/(1<<20))
	}
	x0, hT, kT, lgT, brT = append(x0, x...), append(hT0, hT...), append(kT0, kT...), append(lgT0, lgT...), append(brT0, brT...)
	var marks []report.Mark
	for _, s := range fl.Samples {
		marks = append(marks, report.Mark{T: float64(s.Conns), Label: report.Human(float64(s.Conns))})
	}
	p := fl.Plan
	return report.TimeChart("herald fleet: memory against connections held",
		fmt.Sprintf("%d herald processes on one port, %d load generators, one nats-server, all on this host (loopback); %s",
			p.Servers, len(p.Shards), res.Date),
		"connections held", []report.Panel{
			{Title: "Per connection", Unit: "bytes per connection", Lines: []report.TimeLine{
				{Name: "herald RSS", T: x, V: herald},
				{Name: "kernel (both ends)", T: x, V: kernel, Color: "#1971c2"},
				{Name: "load generators", T: x, V: lg, Color: "#2f9e44"},
			}},
			{Title: "In all", Unit: "MiB", Lines: []report.TimeLine{
				{Name: "herald growth", T: x0, V: hT},
				{Name: "kernel growth", T: x0, V: kT, Color: "#1971c2"},
				{Name: "load generators", T: x0, V: lgT, Color: "#2f9e44"},
				{Name: "nats-server", T: x0, V: brT, Color: "#7048e8"},
			}},
		}, marks)
}

// Markdown is report.md.
func Markdown(res *Results) string {
	fl := res.Fleet
	p := fl.Plan
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# herald fleet: %s connections\n\n", report.Human(float64(p.Conns)))
	w("%s; %s, %d cores, %s, kernel %s, %s. %s Load average (1, 5, 15 min) at the start and the end: %s.\n\n", res.Date, res.Machine.CPU, res.Machine.Cores, res.Machine.Memory, res.Machine.Kernel, strings.Join(res.Versions, ", "), res.CPUs, strings.Join(fl.LoadAvg, " and "))
	w("## Layout\n\n")
	for _, l := range fl.Layout {
		w("- %s\n", l)
	}
	w("\nEvery server is `nats/cmd/ticker -reuseport -nats URL -publish=false`: the kernel spreads the connections over their listeners, and each delivers what the broker brings it. The ticks come from `nats/cmd/tickpub`, which serves nobody and publishes the ticker's ticks through herald's NATS Bus, started only once every connection is held.\n\n")

	w("## Limits\n\n```\n%s\n```\n\n", strings.Join(fl.Limits, "\n"))
	if len(fl.Tuning) > 0 {
		if fl.Tuned {
			w("Changed by `-tune` for this run (before → after):\n\n")
		} else {
			w("Not changed (run with `-tune` as root to set them; now → would be):\n\n")
		}
		for _, c := range fl.Tuning {
			w("- `%s`: %s → %s%s\n", c.Sysctl, c.Before, c.After, map[bool]string{true: " (failed: " + c.Err + ")", false: ""}[c.Err != ""])
		}
		w("\n")
	}

	w("## %s: memory against connections\n\n", ScenarioHold)
	w("![memory against connections](plots/fleet_memory.svg)\n\n")
	w("| connections | herald RSS / conn | kernel / conn (both ends) | (raw; of it /proc inodes) | load generators / conn | herald RSS, all servers | per server: connections (RSS) | nats-server RSS | TCP sockets in use | slab |\n|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|\n")
	w("| 0 | | | | | %s | (%s–%s) | %s | %d | %s |\n", mibStr(fl.Base.ServerRSS), mibStr(fl.Base.ServerRSSMin), mibStr(fl.Base.ServerRSSMax), mibStr(fl.Base.BrokerRSS), fl.Base.System.TCPInUse, mibStr(fl.Base.System.SlabBytes))
	for _, s := range fl.Samples {
		w("| %s | %s | %s | (%s; %s) | %s | %s | %d–%d (%s–%s) | %s | %d | %s |\n", report.Human(float64(s.Conns)), bytesStr(s.HeraldPerConn), bytesStr(s.KernelPerConn),
			bytesStr(s.KernelRawPerConn), bytesStr(s.ProcPerConn), bytesStr(s.LoadgenPerConn),
			mibStr(s.ServerRSS), s.ServerConnsMin, s.ServerConnsMax, mibStr(s.ServerRSSMin), mibStr(s.ServerRSSMax), mibStr(s.BrokerRSS), s.System.TCPInUse, mibStr(s.System.SlabBytes))
	}
	w("\nherald RSS / conn = (the servers' VmRSS added up − the same before any connection) ÷ connections, sampled %v after each wave connected, without forcing a collection; each process's fixed costs (pools, buffers, the runtime's growth) are in it, so it falls as each process holds more. "+
		"Kernel / conn = (growth of meminfo's `Slab` + growth of sockstat's TCP `mem` pages − proc inodes) ÷ connections: it covers both ends of every connection (client and server sockets are on this host), so a server host alone pays about half; on a shared machine other work moves `Slab` too. "+
		"The proc inodes (`proc_inode_cache` and a dentry each) appear when something lists `/proc/<pid>/fd` of the processes — one per descriptor, whoever lists them (this harness does not: it counts descriptors from the directory's size); they are shown apart and left out. "+
		"Load generators / conn is their whole RSS ÷ connections, each process's baseline included. Per server: the connections each process holds (its open files over its baseline) and its RSS, lowest–highest.\n\n", p.Settle)
	w("| wave | connections | load generators | connect s | connects/s | failures |\n|---:|---:|---:|---:|---:|---:|\n")
	for i, wv := range fl.Waves {
		w("| %d | %s → %s | %d | %.1f | %s | %d |\n", i+1, report.Human(float64(wv.Mark-wv.Conns)), report.Human(float64(wv.Mark)), wv.Shards, wv.Seconds, report.Human(wv.PerS), wv.Failures)
	}
	w("\n%d of %d connections up, %d failed; **%s connects/s** over the waves (at most %d connecting at once, over each wave's load generators); servers' idle CPU with all connections held: %.1f%% of one core (keepalive pings included).\n\n",
		fl.Hold.Connected, p.Conns, fl.Hold.ConnectFailures, report.Human(fl.Hold.ConnectPerS), p.Pending, fl.Hold.IdleCPUPct)
	w("Connections the servers closed on their own by the end of the hold (%d of %d servers' /stats): %s.\n\n",
		fl.Hold.ServersHeard, p.Servers, fl.Hold.ServerCloses)
	if len(fl.Slabs) > 0 {
		w("Slab caches that grew most from 0 to %s connections (`/proc/slabinfo`):\n\n| cache | growth | per connection |\n|---|---:|---:|\n", report.Human(float64(p.Conns)))
		for _, sg := range fl.Slabs {
			w("| %s | %s | %s |\n", sg.Cache, mibStr(sg.Bytes), bytesStr(sg.PerConn))
		}
		w("\n")
	}

	if tp := fl.Ticker; tp != nil {
		w("## %s: a tick to every connection\n\n", ScenarioTicker)
		w("| | |\n|---|---:|\n")
		w("| deliveries | %d of %d (ratio %.4f) |\n", tp.Received, tp.Expected, tp.DeliveredRatio)
		w("| sequence gaps / repeats | %d / %d |\n", tp.Gaps, tp.Reordered)
		w("| connections dropped / protocol errors | %d / %d |\n", tp.Dropped, tp.ProtocolErrors)
		if tp.ServersHeard > 0 {
			w("| closed by the servers during the ticks | %s |\n", tp.ServerCloses)
		}
		w("| publish → receive p50 / p99 / p99.9 / max | %s / %s / %s / %s |\n", usStr(tp.P50US), usStr(tp.P99US), usStr(tp.P999US), usStr(tp.MaxUS))
		w("| servers' CPU per delivery (user+sys, all processes) | %.2f µs |\n", tp.ServerCPUUS)
		w("| the same less their idle CPU (keepalive, timers) over the ticks | %.2f µs |\n", tp.ServerNetCPUUS)
		w("| broker CPU | %.1f ms in all, %.0f µs per tick |\n", float64(tp.BrokerCPUNS)/1e6, tp.BrokerCPUUS)
		w("| load generators' CPU per delivery | %.2f µs |\n", tp.LoadgenCPUUS)
		w("| servers' RSS at its peak while ticking | %s |\n", mibStr(tp.PeakServerRSS))
		w("| first tick to last delivery | %.1f s |\n\n", tp.Seconds)
		w("Latency is from the publisher's clock (`ts`, stamped as the tick is made) to the load generator's, on one host: it includes the broker hop and the whole fan-out, so at this size p99 and max are about the time it takes the servers to write one tick to all their connections on the CPUs they have.\n\n")
	}
	if fl.Cost != nil {
		w("%s\n", fl.Cost.Markdown())
	}
	if len(fl.Stopped) > 0 || len(fl.Errors) > 0 {
		w("## End\n\n")
		for _, s := range fl.Stopped {
			w("- %s\n", s)
		}
		for _, e := range fl.Errors {
			w("- note: %s\n", e)
		}
	}
	return b.String()
}

func bytesStr(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	switch {
	case math.Abs(v) >= 10<<10:
		return fmt.Sprintf("%.1f KB", v/1024)
	default:
		return fmt.Sprintf("%.0f B", v)
	}
}

func mibStr(b int64) string {
	switch {
	case b >= 10<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	default:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	}
}

func usStr(us float64) string {
	switch {
	case math.IsNaN(us) || us == 0:
		return "–"
	case us >= 1e6:
		return fmt.Sprintf("%.2f s", us/1e6)
	case us >= 1e3:
		return fmt.Sprintf("%.1f ms", us/1e3)
	default:
		return fmt.Sprintf("%.0f µs", us)
	}
}
