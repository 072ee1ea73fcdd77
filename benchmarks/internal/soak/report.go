package soak

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/heraldws/herald/benchmarks/internal/loadgen"
	"github.com/heraldws/herald/benchmarks/internal/report"
)

// policyKeys are the /stats counters that say what the budget and the
// slow-consumer policies did, in report order, with what each means.
var policyKeys = []struct{ key, what string }{
	{"hub.Conflated", "ticks replaced by a newer one for a slow subscriber (conflate policy)"},
	{"hub.Dropped", "ticks not sent to a slow subscriber (drop policy)"},
	{"hub.SlowClosed", "slow subscribers closed by the hub (close policy)"},
	{"server.WriteTimeouts", "connections closed because their backlog made no progress (WriteTimeout)"},
	{"server.BudgetShed", "connections closed because the server-wide budget was used up"},
	{"server.SlowClosed", "connections closed for MaxOutboundBytes"},
	{"server.PongTimeouts", "connections closed by keepalive"},
	{"server.IdleClosed", "connections closed by IdleTimeout"},
	{"server.HandshakeTimeouts", "handshakes that timed out"},
	{"server.ProtocolErrors", "connections closed for a bad frame"},
	{"server.Accepted", "TCP connections accepted"},
	{"server.Upgraded", "upgrades"},
	{"server.MessagesIn", "data messages received"},
	{"hub.Published", "ticks published"},
	{"hub.Deliveries", "ticks written to subscribers"},
}

func mibs(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func ms(us float64) string {
	if us == 0 {
		return "–"
	}
	if us < 1000 {
		return fmt.Sprintf("%.2f ms", us/1000)
	}
	return fmt.Sprintf("%.1f ms", us/1000)
}

// rssRange is the lowest and highest RSS sampled in [from, to].
func (res *Result) rssRange(from, to float64) (lo, hi int64) {
	for _, s := range res.Samples {
		if s.T < from || s.T > to || s.RSS == 0 {
			continue
		}
		if lo == 0 || s.RSS < lo {
			lo = s.RSS
		}
		hi = max(hi, s.RSS)
	}
	return lo, hi
}

// p99Range is the lowest, median and highest interval p99 in [from, to].
func (res *Result) p99Range(from, to float64) (lo, med, hi float64) {
	var v []float64
	for _, iv := range res.Intervals {
		if iv.Start >= from-0.5 && iv.T <= to+0.5 && iv.N > 0 {
			v = append(v, iv.P99)
		}
	}
	if len(v) == 0 {
		return 0, 0, 0
	}
	sort.Float64s(v)
	return v[0], v[len(v)/2], v[len(v)-1]
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// WriteSoak writes soak.json, summary.md and plots/soak.svg into dir.
func WriteSoak(dir string, res *Result) error {
	if err := os.MkdirAll(filepath.Join(dir, "plots"), 0o755); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(dir, "soak.json"), res); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "plots", "soak.svg"), []byte(SoakChart(res)), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "summary.md"), []byte(SoakMarkdown(res)), 0o644)
}

func groupsTable(b *strings.Builder, p Plan) {
	fmt.Fprintf(b, "| group | processes | when | loadgen flags |\n|---|---:|---|---|\n")
	fmt.Fprintf(b, "| readers | 1 | the whole window | `-scenario ticker -path /ws -conns %d` (latency measured) |\n", p.Readers)
	for _, g := range p.Groups {
		when := "connected before the window"
		if !g.Before {
			when = fmt.Sprintf("from %.0f s into the window to its end", g.At.Seconds())
		}
		fmt.Fprintf(b, "| %s | %d | %s | `%s` |\n", g.Name, g.Procs, when, strings.Join(g.Args, " "))
	}
}

func latencyRow(b *strings.Builder, name string, l *Latency) {
	if l == nil {
		return
	}
	fmt.Fprintf(b, "| %s | %d | %d | %s | %s | %s | %s |\n", name, l.Received, l.Gaps, ms(l.P50), ms(l.P99), ms(l.P999), ms(l.Max))
}

func kindsTable(b *strings.Builder, kinds map[string]*loadgen.KindStats) {
	if len(kinds) == 0 {
		return
	}
	fmt.Fprintf(b, "| kind | connections | connects | failed | closed by the server (how) | closed by the client | open at the end | read | drained | sent | frames sent |\n")
	fmt.Fprintf(b, "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|\n")
	for _, k := range loadgen.Kinds {
		s := kinds[k]
		if s == nil {
			continue
		}
		var how []string
		for code, n := range s.Closes {
			how = append(how, fmt.Sprintf("%s × %d", code, n))
		}
		sort.Strings(how)
		closed := fmt.Sprint(s.ServerClosed)
		if len(how) > 0 {
			closed += " (" + strings.Join(how, ", ") + ")"
		}
		fmt.Fprintf(b, "| %s | %d | %d | %d | %s | %d | %d | %s | %s | %s | %d |\n", k, s.Conns, s.Connects, s.ConnectFailures,
			closed, s.ClientClosed, s.Open, report.Human(float64(s.BytesRead))+" B",
			report.Human(float64(s.BytesDrained))+" B", report.Human(float64(s.BytesSent))+" B", s.FramesSent)
	}
}

func policyTable(b *strings.Builder, policy map[string]float64) {
	fmt.Fprintf(b, "| counter | over the window | what it counts |\n|---|---:|---|\n")
	for _, p := range policyKeys {
		if v, ok := policy[p.key]; ok {
			fmt.Fprintf(b, "| %s | %.0f | %s |\n", p.key, v, p.what)
		}
	}
}

// SoakMarkdown is the soak's summary.
func SoakMarkdown(res *Result) string {
	var b strings.Builder
	p := res.Plan
	fmt.Fprintf(&b, "# herald soak\n\n")
	fmt.Fprintf(&b, "%s; a %v window against the ticker example started with `%s`. ", res.Date, p.Duration, strings.Join(p.Ticker.Args(), " "))
	if res.HostileAt > 0 {
		fmt.Fprintf(&b, "The readers run alone for the first %.0f s of the window; then every hostile group starts at once and runs to the end.\n\n",
			res.HostileAt-res.WindowStart)
	} else {
		fmt.Fprintf(&b, "\n\n")
	}
	groupsTable(&b, p)
	fmt.Fprintf(&b, "\nTimes are seconds since the ticker started; the window is %.1f–%.1f s.\n", res.WindowStart, res.WindowEnd)

	fmt.Fprintf(&b, "\n## Memory\n\n| | |\n|---|---:|\n")
	fmt.Fprintf(&b, "| configured budget (`-max-outbound-total`) | %s |\n", mibs(p.Ticker.Budget))
	fmt.Fprintf(&b, "| high-water per subscriber (`-high-water`) | %s |\n", report.Human(float64(p.Ticker.HighWater))+" B")
	fmt.Fprintf(&b, "| RSS before any client | %s |\n", mibs(res.IdleRSS))
	if res.HostileAt > 0 {
		lo, hi := res.rssRange(res.WindowStart, res.HostileAt)
		fmt.Fprintf(&b, "| RSS, readers alone | %s – %s |\n", mibs(lo), mibs(hi))
		lo, hi = res.rssRange(res.HostileAt, res.WindowEnd)
		fmt.Fprintf(&b, "| RSS, under hostile load | %s – %s |\n", mibs(lo), mibs(hi))
	}
	fmt.Fprintf(&b, "| peak RSS | %s at %.0f s |\n", mibs(res.PeakRSS), res.PeakAt)
	growth := res.PeakRSS - res.IdleRSS
	fmt.Fprintf(&b, "| peak − idle | %s (%.2f× the budget) |\n", mibs(growth), float64(growth)/float64(p.Ticker.Budget))

	fmt.Fprintf(&b, "\n## Readers' latency\n\nPublish to receive (the `ts` in each tick against the reader's clock), %d readers (%d connected, %d dropped).\n\n",
		p.Readers, res.Connected, res.Dropped)
	fmt.Fprintf(&b, "| span | received | gaps | p50 | p99 | p99.9 | max |\n|---|---:|---:|---:|---:|---:|---:|\n")
	latencyRow(&b, "the whole window", &res.Readers)
	latencyRow(&b, fmt.Sprintf("readers alone (%.0f–%.0f s)", res.WindowStart, res.HostileAt), res.Baseline)
	latencyRow(&b, fmt.Sprintf("under hostile load (%.0f–%.0f s)", res.HostileAt, res.WindowEnd), res.Hostile)
	if lo, med, hi := res.p99Range(res.WindowStart, res.WindowEnd); hi > 0 {
		fmt.Fprintf(&b, "\np99 of each %v interval: %s – %s (median %s).\n", p.Interval, ms(lo), ms(hi), ms(med))
	}

	fmt.Fprintf(&b, "\n## What the policies did\n\nDifferences of the ticker's `/stats` counters over the window.\n\n")
	policyTable(&b, res.Policy)

	if len(res.Kinds) > 0 || res.Churn != nil {
		fmt.Fprintf(&b, "\n## Hostile connections\n\nOver the whole run. A connection the server closed comes back a second later; \"drained\" is what a never-reading connection read when it checked how it had ended.\n\n")
		kindsTable(&b, res.Kinds)
		if c := res.Churn; c != nil {
			fmt.Fprintf(&b, "\nchurn: %d connect/upgrade/close cycles in flight, %d completed (%.0f/s), %d failed.\n", c.Conc, c.Cycles, c.PerS, c.Failures)
		}
	}

	fmt.Fprintf(&b, "\n## Over time\n\n![RSS, readers' p99 and connections over time](plots/soak.svg)\n\n")
	var kinds []string
	for _, k := range loadgen.Kinds {
		if res.Kinds[k] != nil {
			kinds = append(kinds, k)
		}
	}
	fmt.Fprintf(&b, "| t (s) | RSS | server connections | readers' p50 | p99 | max |")
	for _, k := range kinds {
		fmt.Fprintf(&b, " %s open |", k)
	}
	fmt.Fprintf(&b, "\n|---:|---:|---:|---:|---:|---:|%s\n", strings.Repeat("---:|", len(kinds)))
	step := max(1, len(res.Intervals)/40)
	for i, iv := range res.Intervals {
		if i%step != 0 && i != len(res.Intervals)-1 {
			continue
		}
		s := res.sampleAt(iv.T)
		fmt.Fprintf(&b, "| %.0f | %s | %.0f | %s | %s | %s |", iv.T, mibs(s.RSS), s.Server["Active"], ms(iv.P50), ms(iv.P99), ms(iv.Max))
		for _, k := range kinds {
			fmt.Fprintf(&b, " %d |", iv.Open[k])
		}
		fmt.Fprintf(&b, "\n")
	}
	if len(res.Errors) > 0 {
		fmt.Fprintf(&b, "\n## Errors the load generators noted\n\n")
		for _, e := range res.Errors {
			fmt.Fprintf(&b, "- %s\n", e)
		}
	}
	return b.String()
}

// sampleAt is the last sample at or before t.
func (res *Result) sampleAt(t float64) Sample {
	var out Sample
	for _, s := range res.Samples {
		if s.T > t {
			break
		}
		out = s
	}
	return out
}

// series turns the samples into time lines.
func (res *Result) series(shift float64, get func(Sample) float64) (ts, vs []float64) {
	for _, s := range res.Samples {
		ts = append(ts, s.T-shift)
		vs = append(vs, get(s))
	}
	return ts, vs
}

func (res *Result) latencySeries(shift float64, get func(Interval) float64) (ts, vs []float64) {
	for _, iv := range res.Intervals {
		ts = append(ts, iv.T-shift)
		if iv.N == 0 {
			vs = append(vs, math.NaN())
			continue
		}
		vs = append(vs, get(iv))
	}
	return ts, vs
}

// SoakChart plots RSS against the budget, the readers' latency and the
// connections over time.
func SoakChart(res *Result) string {
	mib := func(n float64) float64 { return n / (1 << 20) }
	rt, rv := res.series(0, func(s Sample) float64 {
		if s.RSS == 0 {
			return math.NaN()
		}
		return mib(float64(s.RSS))
	})
	ot, ov := res.series(0, func(s Sample) float64 {
		if s.Server == nil {
			return math.NaN()
		}
		return mib(s.Server["OutboundBytes"])
	})
	end := 0.0
	if len(rt) > 0 {
		end = rt[len(rt)-1]
	}
	budget := report.TimeLine{Name: "idle RSS + budget", T: []float64{0, end},
		V: []float64{mib(float64(res.IdleRSS + res.Plan.Ticker.Budget)), mib(float64(res.IdleRSS + res.Plan.Ticker.Budget))}, Dashed: true, Color: "#c92a2a"}
	p50t, p50v := res.latencySeries(0, func(iv Interval) float64 { return iv.P50 / 1000 })
	p99t, p99v := res.latencySeries(0, func(iv Interval) float64 { return iv.P99 / 1000 })
	at, av := res.series(0, func(s Sample) float64 {
		if s.Server == nil {
			return math.NaN()
		}
		return s.Server["Active"]
	})
	conns := []report.TimeLine{{Name: "server connections", T: at, V: av, Color: "#495057"}}
	for _, k := range loadgen.Kinds {
		if res.Kinds[k] == nil {
			continue
		}
		kt, kv := res.latencySeries(0, func(iv Interval) float64 { return float64(iv.Open[k]) })
		conns = append(conns, report.TimeLine{Name: k + " open", T: kt, V: kv})
	}
	marks := []report.Mark{{T: res.WindowStart, Label: "window"}}
	if res.HostileAt > 0 {
		marks = append(marks, report.Mark{T: res.HostileAt, Label: "hostile load"})
	}
	return report.TimeChart("herald soak: memory and latency over time",
		fmt.Sprintf("ticker %s; %d readers; %s", strings.Join(res.Plan.Ticker.Args(), " "), res.Plan.Readers, res.Date),
		"seconds since the ticker started", []report.Panel{
			{Title: "Server RSS against the budget", Unit: "MiB", Lines: []report.TimeLine{
				{Name: "RSS", T: rt, V: rv}, {Name: "outbound backlog", T: ot, V: ov, Color: "#1971c2"}, budget}},
			{Title: fmt.Sprintf("Readers' publish-to-receive latency, per %v", res.Plan.Interval), Unit: "ms", Lines: []report.TimeLine{
				{Name: "p99", T: p99t, V: p99v}, {Name: "p50", T: p50t, V: p50v, Color: "#2f9e44"}}},
			{Title: "Connections", Unit: "connections", Lines: conns},
		}, marks)
}

// Stall is the stall experiment's outcome.
type Stall struct {
	Stalls      int     `json:"stalls"`
	Baseline    *Result `json:"baseline"`
	Stalled     *Result `json:"stalled"`
	BaseP99US   float64 `json:"baseline_p99_us"`
	StallP99US  float64 `json:"stalled_p99_us"`
	Ratio       float64 `json:"p99_ratio"`
	TargetUS    float64 `json:"target_p99_us"` // 2 × baseline p99 + 20 ms
	LatencyMet  bool    `json:"latency_target_met"`
	Budget      int64   `json:"budget_bytes"`
	PeakRSS     int64   `json:"stalled_peak_rss_bytes"`
	PeakGrowth  int64   `json:"stalled_peak_growth_bytes"` // peak − idle
	MemoryLimit int64   `json:"memory_limit_bytes"`        // the ticker's -memory-limit
	MemoryMet   bool    `json:"memory_target_met"`         // peak RSS ≤ MemoryLimit, or peak − idle ≤ budget without one
	BasePeakRSS int64   `json:"baseline_peak_rss_bytes"`
}

// NewStall compares the experiment's two runs against the targets.
func NewStall(stalls int, base, stalled *Result) *Stall {
	s := &Stall{Stalls: stalls, Baseline: base, Stalled: stalled, BaseP99US: base.Readers.P99, StallP99US: stalled.Readers.P99,
		Budget: stalled.Plan.Ticker.Budget, PeakRSS: stalled.PeakRSS, PeakGrowth: stalled.PeakRSS - stalled.IdleRSS, BasePeakRSS: base.PeakRSS}
	if s.BaseP99US > 0 {
		s.Ratio = s.StallP99US / s.BaseP99US
	}
	s.TargetUS = 2*s.BaseP99US + 20000
	s.LatencyMet = s.StallP99US > 0 && s.StallP99US <= s.TargetUS
	s.MemoryLimit = stalled.Plan.Ticker.MemoryLimit
	if s.MemoryLimit > 0 {
		s.MemoryMet = s.PeakRSS <= s.MemoryLimit
	} else {
		s.MemoryMet = s.PeakGrowth <= s.Budget
	}
	return s
}

func yes(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

// WriteStall writes stall.json, stall.md and plots/stall.svg into dir.
func WriteStall(dir string, s *Stall) error {
	if err := os.MkdirAll(filepath.Join(dir, "plots"), 0o755); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(dir, "stall.json"), s); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "plots", "stall.svg"), []byte(StallChart(s)), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "stall.md"), []byte(StallMarkdown(s)), 0o644)
}

// StallMarkdown is the experiment's report.
func StallMarkdown(s *Stall) string {
	var b strings.Builder
	p := s.Stalled.Plan
	fmt.Fprintf(&b, "# Stall experiment\n\n%s. The ticker example started with `%s`; %d readers measured for %v, on a fresh ticker each time: ",
		s.Stalled.Date, strings.Join(p.Ticker.Args(), " "), p.Readers, p.Duration)
	fmt.Fprintf(&b, "first alone, then with %d stalled subscribers (upgrade, never read, 4 KB receive buffer) connected before the window opens. ", s.Stalls)
	fmt.Fprintf(&b, "The server closes a stalled subscriber once its backlog has made no progress for its WriteTimeout; it comes back (`%s`), so that thousands stay stalled through the window.\n\n",
		strings.Join(p.Groups[0].Args, " "))
	fmt.Fprintf(&b, "| run | received | gaps | p50 | p99 | p99.9 | max | peak RSS | peak − idle |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range []struct {
		name string
		res  *Result
	}{{"readers alone", s.Baseline}, {fmt.Sprintf("with %d stalled subscribers", s.Stalls), s.Stalled}} {
		l := r.res.Readers
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %s | %s | %s | %s |\n", r.name, l.Received, l.Gaps, ms(l.P50), ms(l.P99), ms(l.P999), ms(l.Max),
			mibs(r.res.PeakRSS), mibs(r.res.PeakRSS-r.res.IdleRSS))
	}
	fmt.Fprintf(&b, "\n- p99 ratio (stalled ÷ alone): **%.2f×**.\n", s.Ratio)
	fmt.Fprintf(&b, "- Latency target, stalled p99 ≤ 2 × %s + 20 ms = %s: %s (%s).\n", ms(s.BaseP99US), ms(s.TargetUS), yes(s.LatencyMet), ms(s.StallP99US))
	if s.MemoryLimit > 0 {
		fmt.Fprintf(&b, "- Memory target, peak RSS within the ticker's memory budget (`-memory-limit` %s): %s (peak RSS %s; %s over the idle ticker, %.1f× the outbound budget of %s).\n",
			mibs(s.MemoryLimit), yes(s.MemoryMet), mibs(s.PeakRSS), mibs(s.PeakGrowth), float64(s.PeakGrowth)/float64(s.Budget), mibs(s.Budget))
	} else {
		fmt.Fprintf(&b, "- Memory target, peak RSS growth over the idle ticker within the configured budget (%s): %s (%s; peak RSS %s).\n",
			mibs(s.Budget), yes(s.MemoryMet), mibs(s.PeakGrowth), mibs(s.PeakRSS))
	}
	fmt.Fprintf(&b, "\n## What the policies did in the stalled run\n\n")
	policyTable(&b, s.Stalled.Policy)
	fmt.Fprintf(&b, "\n")
	kindsTable(&b, s.Stalled.Kinds)
	fmt.Fprintf(&b, "\n![p99 and RSS over the window, both runs](plots/stall.svg)\n")
	return b.String()
}

// StallChart plots both runs over their windows.
func StallChart(s *Stall) string {
	mib := func(n int64) float64 { return float64(n) / (1 << 20) }
	var p99s, rss []report.TimeLine
	for i, r := range []struct {
		name string
		res  *Result
	}{{"alone", s.Baseline}, {fmt.Sprintf("%d stalled", s.Stalls), s.Stalled}} {
		c := []string{"#2f9e44", "#d9480f"}[i]
		t, v := r.res.latencySeries(r.res.WindowStart, func(iv Interval) float64 { return iv.P99 / 1000 })
		p99s = append(p99s, report.TimeLine{Name: "p99, " + r.name, T: t, V: v, Color: c})
		var rt, rv []float64
		for _, x := range r.res.Samples {
			if x.T < r.res.WindowStart-5 || x.RSS == 0 {
				continue
			}
			rt = append(rt, x.T-r.res.WindowStart)
			rv = append(rv, mib(x.RSS))
		}
		rss = append(rss, report.TimeLine{Name: "RSS, " + r.name, T: rt, V: rv, Color: c})
	}
	w := s.Stalled.WindowEnd - s.Stalled.WindowStart
	p99s = append(p99s, report.TimeLine{Name: "target", T: []float64{0, w}, V: []float64{s.TargetUS / 1000, s.TargetUS / 1000}, Dashed: true, Color: "#c92a2a"})
	lim := mib(s.Stalled.IdleRSS + s.Budget)
	rss = append(rss, report.TimeLine{Name: "idle RSS + budget", T: []float64{-5, w}, V: []float64{lim, lim}, Dashed: true, Color: "#c92a2a"})
	return report.TimeChart("Stall experiment: readers' p99 and server RSS",
		fmt.Sprintf("ticker %s; %d readers; %s", strings.Join(s.Stalled.Plan.Ticker.Args(), " "), s.Stalled.Plan.Readers, s.Stalled.Date),
		"seconds since the readers' window opened", []report.Panel{
			{Title: fmt.Sprintf("Readers' p99 per %v", s.Stalled.Plan.Interval), Unit: "ms", Lines: p99s},
			{Title: "Server RSS", Unit: "MiB", Lines: rss},
		}, []report.Mark{{T: 0, Label: "window"}})
}
