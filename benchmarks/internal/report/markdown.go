package report

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/heraldws/herald/benchmarks/internal/histo"
)

// Write renders run into dir: results.json, report.md and plots/*.svg.
func Write(dir string, run *Run) error {
	if err := os.MkdirAll(filepath.Join(dir, "plots"), 0o755); err != nil {
		return err
	}
	Compare(run.Rows)
	if err := WriteJSON(filepath.Join(dir, "results.json"), run); err != nil {
		return err
	}
	plots, err := WritePlots(filepath.Join(dir, "plots"), run)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(Markdown(run, plots)), 0o644)
}

func impls(rows []Row) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range rows {
		if !seen[r.Impl] {
			seen[r.Impl] = true
			out = append(out, r.Impl)
		}
	}
	return out
}

func scenarios(rows []Row) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range rows {
		if !seen[r.Scenario] {
			seen[r.Scenario] = true
			out = append(out, r.Scenario)
		}
	}
	return out
}

func find(rows []Row, impl, scenario string) *Row {
	for i := range rows {
		if rows[i].Impl == impl && rows[i].Scenario == scenario {
			return &rows[i]
		}
	}
	return nil
}

// WritePlots writes the SVG plots and returns their file names.
func WritePlots(dir string, run *Run) ([]string, error) {
	var names []string
	put := func(name, svg string) error {
		names = append(names, name)
		return os.WriteFile(filepath.Join(dir, name), []byte(svg), 0o644)
	}
	ims := impls(run.Rows)
	scs := scenarios(run.Rows)
	metric := func(groups []string, get func(*Row) *float64) []Series {
		var ss []Series
		for _, im := range ims {
			s := Series{Name: im}
			for _, g := range groups {
				r := find(run.Rows, im, g)
				v, note := math.NaN(), ""
				if r != nil {
					v = Val(get(r))
					if !r.Available {
						note = r.Note
					}
				}
				s.Values = append(s.Values, v)
				s.Notes = append(s.Notes, note)
			}
			ss = append(ss, s)
		}
		return ss
	}
	var msgScs, latScs, holdScs []string
	for _, sc := range scs {
		if isHold(sc) {
			holdScs = append(holdScs, sc)
		} else {
			msgScs = append(msgScs, sc)
			latScs = append(latScs, sc)
		}
	}
	if len(holdScs) > 0 {
		conns := 0
		for _, r := range run.Rows {
			if isHold(r.Scenario) {
				conns = r.Conns
			}
		}
		svg := BarChart("Server memory per idle connection (lower is better)",
			fmt.Sprintf("RSS growth over %d upgraded idle connections ÷ connections; kernel socket memory not included", conns),
			"bytes per connection", holdScs, metric(holdScs, func(r *Row) *float64 { return r.RSSBytesPerConn }))
		if err := put("rss_per_conn.svg", svg); err != nil {
			return nil, err
		}
	}
	if len(msgScs) > 0 {
		var cpuScs []string
		for _, sc := range msgScs {
			if sc != "churn" {
				cpuScs = append(cpuScs, sc)
			}
		}
		svg := BarChart("Server CPU per delivered message (lower is better)",
			"server user+sys time during the window ÷ messages the clients received",
			"µs of CPU per message", cpuScs, metric(cpuScs, func(r *Row) *float64 { return r.ServerCPUUSPerMsg }))
		if err := put("cpu_per_msg.svg", svg); err != nil {
			return nil, err
		}
		svg = BarChart("Bytes on the wire per delivered message (lower is better)",
			"what the clients read from their sockets ÷ messages received: frames with their headers, compressed where negotiated",
			"bytes per message", cpuScs, metric(cpuScs, func(r *Row) *float64 { return r.WireBytesPerMsg }))
		if err := put("wire_bytes_per_msg.svg", svg); err != nil {
			return nil, err
		}
		svg = BarChart("Messages delivered per second (higher is better)",
			"echo: closed loop round trips; ticker, churn: fan-out deliveries (capped by the publish rate)",
			"messages per second", msgScs, metric(msgScs, func(r *Row) *float64 { return r.MsgsPerS }))
		if err := put("throughput.svg", svg); err != nil {
			return nil, err
		}
	}
	if contains(scs, "churn") {
		svg := BarChart("Connection churn while a ticker runs (higher is better)",
			"connect + upgrade + close handshake cycles completed per second",
			"cycles per second", []string{"churn"}, metric([]string{"churn"}, func(r *Row) *float64 { return r.ChurnPerS }))
		if err := put("churn.svg", svg); err != nil {
			return nil, err
		}
	}
	for _, sc := range latScs {
		var lines []Line
		what := "publish to receive"
		for _, im := range ims {
			r := find(run.Rows, im, sc)
			if r == nil || r.LatencyH == "" {
				continue
			}
			if strings.HasPrefix(sc, "echo") {
				what = "round trip"
			}
			h, err := histo.Decode(histo.Encoded(r.LatencyH))
			if err != nil {
				return nil, err
			}
			lines = append(lines, Line{Name: im, CDF: histo.CDF(h, 60)})
		}
		if len(lines) == 0 {
			continue
		}
		svg := CDFChart(fmt.Sprintf("Latency distribution: %s (left and up is better)", sc),
			fmt.Sprintf("%s latency of every message in the window, HDR histograms", what), lines)
		if err := put("latency_"+sc+".svg", svg); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// isHold reports whether scenario sc is hold or its compressed variant.
func isHold(sc string) bool { return sc == "hold" || sc == "hold-z" || sc == "hold-tls" }

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func num(p *float64) string {
	if p == nil {
		return "–"
	}
	return Human(*p)
}

// ratioUWS is r's ratio to uWebSockets.js in key (TLS scenarios).
func ratioUWS(r *Row, key string) string {
	if r.Impl == "uws" {
		if r.Available {
			return "1"
		}
		return "–"
	}
	if v, ok := r.VsUWS[key]; ok {
		return fmt.Sprintf("%.2f×", v)
	}
	return "–"
}

func ratio(r *Row, key string) string {
	if r.Impl == "herald" {
		if r.Available {
			return "1"
		}
		return "–"
	}
	v, ok := r.VsHerald[key]
	if !ok {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v)
}

// Headline is the summary table (the one the README carries).
func Headline(run *Run) string {
	var b strings.Builder
	b.WriteString("| server | RSS / idle conn | connects/s | echo msgs/s (p99 µs) | ticker-1 CPU µs/msg | ticker-20 CPU µs/msg | ticker-20 p99 µs | churn cycles/s |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, im := range impls(run.Rows) {
		cell := func(sc, key string, get func(*Row) string) string { return summaryCell(run.Rows, im, sc, key, get) }
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", implLabel(run.Rows, im),
			cell("hold", "rss_bytes_per_conn", func(r *Row) string {
				if r.RSSBytesPerConn == nil {
					return "–"
				}
				return num(r.RSSBytesPerConn) + " B"
			}),
			cell("hold", "", func(r *Row) string { return num(r.ConnectPerS) }),
			cell("echo", "", func(r *Row) string { return num(r.MsgsPerS) + " (" + num(r.P99US) + ")" }),
			cell("ticker-1", "server_cpu_us_per_msg", func(r *Row) string { return num(r.ServerCPUUSPerMsg) }),
			cell("ticker-20", "server_cpu_us_per_msg", func(r *Row) string { return num(r.ServerCPUUSPerMsg) }),
			cell("ticker-20", "", func(r *Row) string { return num(r.P99US) }),
			cell("churn", "", func(r *Row) string { return num(r.ChurnPerS) }),
		)
	}
	b.WriteString("\n(×: ratio to herald in the same run; for RSS and CPU above 1 means more than herald.)\n")
	return b.String()
}

// TLSHeadline is the summary of the wss:// scenarios (the table the
// README carries for them), with ratios to herald and to uWebSockets.js.
func TLSHeadline(run *Run) string {
	var b strings.Builder
	b.WriteString("| server | RSS / idle TLS conn (hold-tls) | × uWS | TLS handshakes/s (resumed) | echo-tls msgs/s (p99 µs) | echo-tls CPU µs/msg | × uWS | ticker-1-tls CPU µs/msg | × uWS | ticker-20-tls CPU µs/msg | × uWS |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, im := range impls(run.Rows) {
		cell := func(sc, key string, get func(*Row) string) string { return summaryCell(run.Rows, im, sc, key, get) }
		vsUWS := func(sc, key string) string {
			r := find(run.Rows, im, sc)
			switch {
			case r == nil || !r.Available:
				return "–"
			case r.Impl == "uws":
				return "1"
			}
			if v, ok := r.VsUWS[key]; ok {
				return fmt.Sprintf("%.2f×", v)
			}
			return "–"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", implLabel(run.Rows, im),
			cell("hold-tls", "rss_bytes_per_conn", func(r *Row) string { return num(r.RSSBytesPerConn) + " B" }),
			vsUWS("hold-tls", "rss_bytes_per_conn"),
			cell("hold-tls", "", func(r *Row) string { return num(r.TLSHandshakesPerS) + " (" + pct(r.TLSResumedRatio) + ")" }),
			cell("echo-tls", "", func(r *Row) string { return num(r.MsgsPerS) + " (" + num(r.P99US) + ")" }),
			cell("echo-tls", "", func(r *Row) string { return num(r.ServerCPUUSPerMsg) }),
			vsUWS("echo-tls", "server_cpu_us_per_msg"),
			cell("ticker-1-tls", "", func(r *Row) string { return num(r.ServerCPUUSPerMsg) }),
			vsUWS("ticker-1-tls", "server_cpu_us_per_msg"),
			cell("ticker-20-tls", "", func(r *Row) string { return num(r.ServerCPUUSPerMsg) }),
			vsUWS("ticker-20-tls", "server_cpu_us_per_msg"),
		)
	}
	b.WriteString("\n(×: ratio in the same run, in brackets to herald, in the × uWS columns to uWebSockets.js; above 1 means more memory or CPU.)\n")
	return b.String()
}

// DeflateHeadline is the summary of the compressed scenarios (the table
// the README carries for them).
func DeflateHeadline(run *Run) string {
	var b strings.Builder
	b.WriteString("| server | RSS / idle conn (hold-z) | echo-z msgs/s (p99 µs) | echo-z wire B/msg | ticker-1z CPU µs/msg | ticker-1z wire B/msg | ticker-1z delivered (p99 µs) | ticker-20z CPU µs/msg | ticker-20z wire B/msg | ticker-20z delivered (p99 µs) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, im := range impls(run.Rows) {
		cell := func(sc, key string, get func(*Row) string) string { return summaryCell(run.Rows, im, sc, key, get) }
		delivered := func(r *Row) string { return pct(r.DeliveredRatio) + " (" + num(r.P99US) + ")" }
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", implLabel(run.Rows, im),
			cell("hold-z", "rss_bytes_per_conn", func(r *Row) string { return num(r.RSSBytesPerConn) + " B" }),
			cell("echo-z", "", func(r *Row) string { return num(r.MsgsPerS) + " (" + num(r.P99US) + ")" }),
			cell("echo-z", "wire_bytes_per_msg", func(r *Row) string { return num(r.WireBytesPerMsg) }),
			cell("ticker-1z", "server_cpu_us_per_msg", func(r *Row) string { return num(r.ServerCPUUSPerMsg) }),
			cell("ticker-1z", "wire_bytes_per_msg", func(r *Row) string { return num(r.WireBytesPerMsg) }),
			cell("ticker-1z", "", delivered),
			cell("ticker-20z", "server_cpu_us_per_msg", func(r *Row) string { return num(r.ServerCPUUSPerMsg) }),
			cell("ticker-20z", "wire_bytes_per_msg", func(r *Row) string { return num(r.WireBytesPerMsg) }),
			cell("ticker-20z", "", delivered),
		)
	}
	b.WriteString("\n(×: ratio to herald in the same run; above 1 means more memory, CPU or bytes than herald.)\n")
	return b.String()
}

// summaryCell is impl's cell of a summary table: get of its row in
// scenario sc, followed by its ratio to herald in key when key is not "";
// "–" without a row, "n/a" when the server could not run it.
func summaryCell(rows []Row, impl, sc, key string, get func(*Row) string) string {
	r := find(rows, impl, sc)
	switch {
	case r == nil:
		return "–"
	case !r.Available:
		return "n/a"
	}
	s := get(r)
	if v, ok := r.VsHerald[key]; ok && key != "" && s != "–" {
		s += fmt.Sprintf(" (%.2f×)", v)
	}
	return s
}

// implLabel is impl's library and version, or its name.
func implLabel(rows []Row, impl string) string {
	if r := firstRow(rows, impl); r != nil && r.Label != "" {
		return r.Label
	}
	return impl
}

func firstRow(rows []Row, impl string) *Row {
	for i := range rows {
		if rows[i].Impl == impl && rows[i].Label != "" {
			return &rows[i]
		}
	}
	return nil
}

// Markdown renders the report.
func Markdown(run *Run, plots []string) string {
	var b strings.Builder
	kind := "full"
	if run.Quick {
		kind = "quick"
	}
	fmt.Fprintf(&b, "# Benchmark report (%s run)\n\n", kind)
	fmt.Fprintf(&b, "Date: %s\n\n", run.Date)
	m := run.Machine
	fmt.Fprintf(&b, "Machine: %s, %d cores, %s memory, Linux %s; %s; node %s\n\n", m.CPU, m.Cores, m.Memory, m.Kernel, m.Go, m.Node)
	b.WriteString("Servers:\n\n")
	for _, v := range run.Versions {
		fmt.Fprintf(&b, "- %s\n", v)
	}
	b.WriteString("\nEvery server ran the same scenarios, one at a time, against the same load generator (epoll, no goroutine per connection) in this run. " +
		"Server CPU is the server process's user+sys time from /proc during the measured window; RSS is VmRSS. " +
		"Absolute numbers move with the machine; the ratios to herald (×) are measured in the same run.\n\n")
	if run.CPUs != "" {
		b.WriteString(run.CPUs + "\n\n")
	}
	b.WriteString("Scenarios:\n\n")
	for _, s := range run.Scenario {
		fmt.Fprintf(&b, "- %s\n", s)
	}
	b.WriteString("\n## Summary\n\n")
	plain, compressed, tls := false, false, false
	for _, sc := range scenarios(run.Rows) {
		z, t := strings.HasSuffix(sc, "z"), IsTLS(sc)
		plain, compressed, tls = plain || (!z && !t), compressed || z, tls || t
	}
	if plain || (!compressed && !tls) {
		b.WriteString(Headline(run))
	}
	if compressed {
		if plain {
			b.WriteString("\nWith permessage-deflate:\n\n")
		}
		b.WriteString(DeflateHeadline(run))
	}
	if tls {
		if plain || compressed {
			b.WriteString("\nOver TLS (wss://):\n\n")
		}
		b.WriteString(TLSHeadline(run))
	}
	for _, p := range plots {
		fmt.Fprintf(&b, "\n![%s](plots/%s)\n", strings.TrimSuffix(p, ".svg"), p)
	}
	for _, sc := range scenarios(run.Rows) {
		fmt.Fprintf(&b, "\n## %s\n\n", sc)
		switch sc {
		case "hold", "hold-z":
			b.WriteString("| server | conns up | RSS / conn | × herald | server RSS | connects/s | idle server CPU % | note |\n|---|---:|---:|---:|---:|---:|---:|---|\n")
			for _, r := range run.Rows {
				if r.Scenario != sc {
					continue
				}
				fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %.1f | %s |\n", r.Impl, r.Connected, num(r.RSSBytesPerConn), ratio(&r, "rss_bytes_per_conn"),
					mib(r.ServerRSSBytes), num(r.ConnectPerS), r.ServerCPUPct, r.Note)
			}
		case "hold-tls":
			b.WriteString("| server | conns up | RSS / conn | × herald | × uWS | server RSS | TLS handshakes/s | resumed | idle server CPU % | note |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
			for _, r := range run.Rows {
				if r.Scenario != sc {
					continue
				}
				fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %.1f | %s |\n", r.Impl, r.Connected, num(r.RSSBytesPerConn), ratio(&r, "rss_bytes_per_conn"),
					ratioUWS(&r, "rss_bytes_per_conn"), mib(r.ServerRSSBytes), num(r.TLSHandshakesPerS), pct(r.TLSResumedRatio), r.ServerCPUPct, r.Note)
			}
		case "churn":
			b.WriteString("| server | cycles/s | × herald | server CPU µs/cycle | deliveries/s | delivered | p99 µs | server CPU % | loadgen CPU % | note |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
			for _, r := range run.Rows {
				if r.Scenario != sc {
					continue
				}
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %.0f | %.0f | %s |\n", r.Impl, num(r.ChurnPerS), ratio(&r, "churn_per_s"), num(r.ServerCPUUSPerCyc),
					num(r.MsgsPerS), pct(r.DeliveredRatio), num(r.P99US), r.ServerCPUPct, r.ClientCPUPct, r.Note)
			}
		default:
			b.WriteString("| server | conns | msgs/s | p50 µs | p99 µs | p99.9 µs | server CPU µs/msg | × herald | wire B/msg | × herald | compressed | server CPU % | loadgen CPU % | delivered | gaps | note |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
			for _, r := range run.Rows {
				if r.Scenario != sc {
					continue
				}
				fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.0f | %.0f | %s | %d | %s |\n", r.Impl, r.Connected, num(r.MsgsPerS), num(r.P50US), num(r.P99US), num(r.P999US),
					num(r.ServerCPUUSPerMsg), ratio(&r, "server_cpu_us_per_msg"), num(r.WireBytesPerMsg), ratio(&r, "wire_bytes_per_msg"), pct(r.CompressedRatio),
					r.ServerCPUPct, r.ClientCPUPct, pct(r.DeliveredRatio), r.Gaps, r.Note)
			}
		}
	}
	b.WriteString("\n## Is the load generator the bottleneck?\n\n")
	b.WriteString("Both processes share the machine's cores, so each row reports both CPUs. A ticker row whose `delivered` is about 100 % " +
		"received every message the server published: the server kept up and the client did not hold it back. " +
		"In the closed-loop echo rows the two processes pace each other; compare their CPU columns. " +
		"Latency percentiles include the time the load generator's single event loop takes to get to each socket " +
		"(its µs per message times the messages of one tick, at worst), the same for every server.\n\n")
	b.WriteString("| server | scenario | server CPU % | loadgen CPU % | loadgen µs/msg | server µs/msg |\n|---|---|---:|---:|---:|---:|\n")
	for _, r := range run.Rows {
		if !r.Available || isHold(r.Scenario) {
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f | %.0f | %s | %s |\n", r.Impl, r.Scenario, r.ServerCPUPct, r.ClientCPUPct, num(r.ClientCPUUSPerMsg), num(r.ServerCPUUSPerMsg))
	}
	b.WriteString("\n## Limits this run was under\n\n```\n")
	for _, l := range run.Limits {
		b.WriteString(l + "\n")
	}
	b.WriteString("```\n")
	if len(run.Advice) > 0 {
		b.WriteString("\nWhat a bigger run needs (C1M on one host):\n\n```\n")
		for _, a := range run.Advice {
			b.WriteString(a + "\n")
		}
		b.WriteString("```\n")
	}
	return b.String()
}

func pct(p *float64) string {
	if p == nil {
		return "–"
	}
	return fmt.Sprintf("%.1f%%", 100**p)
}

func mib(b int64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}
