package fleet

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/heraldws/herald/benchmarks/internal/report"
)

// medianPair is the pair whose ratio is the workload's median (with an
// even number of valid pairs, the lower of the two middle ones), or the
// first pair when none is valid.
func (wl *Workload) medianPair() *Pair {
	var best *Pair
	for i := range wl.Pairs {
		p := &wl.Pairs[i]
		if p.Ratio > 0 && p.Ratio <= wl.Median && (best == nil || p.Ratio > best.Ratio) {
			best = p
		}
	}
	if best == nil {
		return &wl.Pairs[0]
	}
	return best
}

// rows are the workload's rows in the harness's format: the single
// process and the cluster of the median pair, the cluster's with its
// ratio to the single process under vs_herald.
func (wl *Workload) rows(label string, nodes int) []report.Row {
	p := wl.medianPair()
	single := p.Single.row("herald", label, wl.Scenario)
	cluster := p.Cluster.row("herald-cluster", fmt.Sprintf("%s × %d processes through NATS", label, nodes), wl.Scenario)
	if p.Ratio > 0 {
		cluster.VsHerald = map[string]float64{"server_cpu_us_per_msg": p.Ratio}
	}
	return []report.Row{single, cluster}
}

func (m *Measurement) row(impl, label, scenario string) report.Row {
	r := report.Row{Impl: impl, Label: label, Scenario: scenario, Conns: m.Conns, Available: m.Valid, WindowS: m.WindowS,
		ServerCPUPct: m.ServerCPUPct, ServerRSSBytes: m.ServerRSS, LoadgenProcs: m.Loadgens, Connected: m.Connected,
		Gaps: m.Gaps, Dropped: m.Dropped, ProtocolErrors: m.ProtocolErrors, ConnectFails: m.ConnectFailures,
		Note: m.Invalid, LatencyH: m.latencyH}
	if m.Received > 0 {
		r.MsgsPerS = report.F(float64(m.Received) / m.WindowS)
		r.ServerCPUUSPerMsg = report.F(m.ServerCPUUS)
		r.ClientCPUUSPerMsg = report.F(m.LoadgenCPUUS)
		r.DeliveredRatio = report.F(m.Ratio)
		r.P50US, r.P99US, r.P999US = report.F(m.P50US), report.F(m.P99US), report.F(m.P999US)
	}
	return r
}

// WriteCompare renders res into dir: results.json and report.md.
func WriteCompare(dir string, res *CompareResults) error {
	return writeFiles(dir, res, map[string]string{"report.md": CompareMarkdown(res)})
}

// ReadCompare parses a comparison's results.json.
func ReadCompare(rd io.Reader) (*CompareResults, error) {
	var res CompareResults
	if err := json.NewDecoder(rd).Decode(&res); err != nil {
		return nil, fmt.Errorf("parse cluster results: %w", err)
	}
	if res.Cluster == nil || len(res.Cluster.Workloads) == 0 {
		return nil, fmt.Errorf("parse cluster results: no workloads")
	}
	for _, wl := range res.Cluster.Workloads {
		if len(wl.Pairs) == 0 {
			return nil, fmt.Errorf("parse cluster results: %s has no pairs", wl.Scenario)
		}
	}
	return &res, nil
}

// Verdict says how a workload's median compares with the target, or that
// it has no valid pair.
func (wl *Workload) Verdict() string {
	switch {
	case wl.Valid == 0:
		return "no valid pair: invalid run"
	case wl.Met:
		return fmt.Sprintf("met (≤ %.2f×)", CompareTarget)
	default:
		return fmt.Sprintf("missed (> %.2f×)", CompareTarget)
	}
}

// CompareMarkdown is report.md of a comparison.
func CompareMarkdown(res *CompareResults) string {
	c := res.Cluster
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# herald cluster: %d processes through NATS against one\n\n", c.Nodes)
	w("%s; %s, %d cores, %s, kernel %s, %s. %s Load average (1, 5, 15 min) at the start and the end: %s.",
		res.Date, res.Machine.CPU, res.Machine.Cores, res.Machine.Memory, res.Machine.Kernel, strings.Join(res.Versions, ", "), res.CPUs, strings.Join(c.LoadAvg, " and "))
	if c.LoadWait != "" {
		w(" %s", c.LoadWait)
	}
	w("\n\nTarget: the cluster's server CPU per delivered message at most **%.2f×** the single process's, measured in the same run. Each workload ran %d pair(s): the single process, then the cluster, alternating, so that both see the machine's load as it drifts; the ratio is the median of the pairs' ratios.\n\n", c.Target, c.Pairs)
	w("| workload | single µs/delivery | cluster µs/delivery | ratio (median) | pairs' ratios | valid pairs | target |\n|---|---:|---:|---:|---|---:|---|\n")
	for i := range c.Workloads {
		wl := &c.Workloads[i]
		p := wl.medianPair()
		var rs []string
		for _, q := range wl.Pairs {
			rs = append(rs, ratioStr(q.Ratio))
		}
		w("| %s | %.2f | %.2f | **%s** | %s | %d of %d | %s |\n", wl.Scenario, p.Single.ServerCPUUS, p.Cluster.ServerCPUUS, ratioStr(wl.Median), strings.Join(rs, ", "), wl.Valid, len(wl.Pairs), wl.Verdict())
	}
	w("\nThe CPU columns are the median pair's. ")
	w("Single: `examples/ticker` alone, publishing its own ticks, no broker. Cluster: nats-server, %d processes of `nats/cmd/ticker -reuseport -nats URL -publish=false` on one port (the kernel spreads the subscribers over them), the ticks published by %s.\n\n", c.Nodes, c.Publisher)
	w("Server CPU per delivery = the herald processes' user + system time over the window (`/proc/<pid>/stat`, all of them added up in the cluster) ÷ the messages the load generators received in it. The broker's and the publisher's are beside it, not in it. A measurement counts only if every connection was up, no sequence number was missing or repeated over the whole run, no connection dropped, and the delivered ratio (received ÷ subscribers × symbols × ticks in the window) is within one tick's share of the window (+2%%) of 1.\n\n")
	for i := range c.Workloads {
		wl := &c.Workloads[i]
		w("## %s\n\n%s\n\n", wl.Scenario, wl.Describe)
		w("| pair | mode | server µs/delivery | %% of a core | per process ms | connections per process | delivered ratio | gaps | broker CPU | publisher CPU | loadgen µs/delivery | p50 / p99 | load average (start → end) | valid |\n|---:|---|---:|---:|---|---|---:|---:|---|---|---:|---|---|---|\n")
		for j, p := range wl.Pairs {
			for _, m := range []*Measurement{&p.Single, &p.Cluster} {
				w("| %d | %s | %.2f | %.0f%% | %s | %s | %.4f | %d | %s | %s | %.2f | %s / %s | %s | %s |\n", j+1, m.Mode, m.ServerCPUUS, m.ServerCPUPct,
					msList(m.NodeCPUNS), intList(m.NodeConns), m.Ratio, m.Gaps, otherCPU(m.Mode, m.BrokerCPUNS, m.BrokerCPUUS), otherCPU(m.Mode, m.PublisherCPUNS, m.PublisherCPUUS),
					m.LoadgenCPUUS, usStr(m.P50US), usStr(m.P99US), strings.Join(m.LoadAvg, " → "), validStr(m))
			}
			w("| %d | ratio | %s | | | | | | | | | | | |\n", j+1, ratioStr(p.Ratio))
		}
		w("\n")
		for j, p := range wl.Pairs {
			for _, m := range []*Measurement{&p.Single, &p.Cluster} {
				for _, s := range m.Stopped {
					if !strings.HasSuffix(s, "exited cleanly") {
						w("- pair %d, %s: %s\n", j+1, m.Mode, s)
					}
				}
			}
		}
	}
	return b.String()
}

func ratioStr(r float64) string {
	if r <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f×", r)
}

func msList(ns []int64) string {
	var s []string
	for _, v := range ns {
		s = append(s, fmt.Sprintf("%.0f", float64(v)/1e6))
	}
	return strings.Join(s, " + ")
}

func intList(v []int) string {
	var s []string
	for _, x := range v {
		s = append(s, fmt.Sprint(x))
	}
	return strings.Join(s, " + ")
}

// otherCPU is the broker's or the publisher's CPU: none in the single
// process's measurement.
func otherCPU(mode string, ns int64, us float64) string {
	if mode != ModeCluster {
		return "–"
	}
	return fmt.Sprintf("%.0f ms (%.3f µs/delivery)", float64(ns)/1e6, us)
}

func validStr(m *Measurement) string {
	if m.Valid {
		return "yes"
	}
	return "**no**: " + m.Invalid
}
