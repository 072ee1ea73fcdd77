package soak

import (
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldws/herald/benchmarks/internal/histo"
	"github.com/heraldws/herald/benchmarks/internal/loadgen"
)

func wellFormed(t *testing.T, svg string) {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(svg))
	for {
		_, err := dec.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v", err)
		}
	}
}

func fakeResult(p99 float64, peak int64) *Result {
	p := SoakPlan(DefaultSoak())
	p.Duration = 20 * time.Second
	res := &Result{Plan: p, Date: "2026-01-02T03:04:05Z", WindowStart: 2, WindowEnd: 22, HostileAt: 7, IdleRSS: 8 << 20, PeakRSS: peak, PeakAt: 15,
		Readers:  Latency{Summary: histo.Summary{Count: 100, P50: 500, P99: p99, P999: p99, Max: p99}, Received: 100},
		Baseline: &Latency{Summary: histo.Summary{P99: 900}}, Hostile: &Latency{Summary: histo.Summary{P99: p99}},
		Kinds:  map[string]*loadgen.KindStats{loadgen.KindStall: {Conns: 10, Connects: 15, ServerClosed: 5, Closes: map[string]int64{"eof": 4, "1008": 1}, Open: 10}},
		Churn:  &Churn{Conc: 4, Cycles: 100, PerS: 5},
		Policy: map[string]float64{"hub.Conflated": 1234, "server.WriteTimeouts": 5}}
	for i := 0; i <= 22; i++ {
		res.Samples = append(res.Samples, Sample{T: float64(i), RSS: res.IdleRSS + int64(i)<<20, Server: map[string]float64{"Active": float64(50 + i), "OutboundBytes": float64(i << 19)}})
	}
	for t := 2.0; t < 22; t += 5 {
		res.Intervals = append(res.Intervals, Interval{Start: t, T: t + 5, N: 25, P50: 400, P99: p99, Max: p99, Open: map[string]int64{loadgen.KindStall: 10}})
	}
	return res
}

func TestSoakReport(t *testing.T) {
	dir := t.TempDir()
	res := fakeResult(3000, 30<<20)
	if err := WriteSoak(dir, res); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "summary.md"))
	for _, want := range []string{"| configured budget (`-max-outbound-total`) | 32.0 MiB |", "| peak − idle | 22.0 MiB (0.69× the budget) |",
		"| hub.Conflated | 1234 |", "| stall | 10 | 15 | 0 | 5 (1008 × 1, eof × 4) |", "churn: 4 connect/upgrade/close cycles in flight, 100 completed",
		"readers alone (2–7 s)", "plots/soak.svg", "| stall | 2 | from 60 s into the window to its end | `-scenario hold"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("summary.md lacks %q", want)
		}
	}
	svg, _ := os.ReadFile(filepath.Join(dir, "plots", "soak.svg"))
	wellFormed(t, string(svg))
	if _, err := os.Stat(filepath.Join(dir, "soak.json")); err != nil {
		t.Fatal(err)
	}
}

func TestStallTargets(t *testing.T) {
	base, stalled := fakeResult(10000, 10<<20), fakeResult(35000, 60<<20)
	stalled.Plan.Ticker.Budget = 64 << 20
	stalled.Plan.Ticker.MemoryLimit = 0 // without a memory limit, growth is held to the outbound budget
	stalled.Plan.Groups = []Group{{Name: "stall", Args: []string{"-stall", "10"}}}
	s := NewStall(10, base, stalled)
	// 35 ms ≤ 2 × 10 ms + 20 ms; 52 MiB of growth ≤ 64 MiB.
	if s.Ratio != 3.5 || s.TargetUS != 40000 || !s.LatencyMet || !s.MemoryMet || s.PeakGrowth != 52<<20 {
		t.Fatalf("%+v", s)
	}
	over := fakeResult(41000, 80<<20)
	over.Plan.Ticker.MemoryLimit = 0
	s = NewStall(10, base, over)
	if s.LatencyMet || s.MemoryMet {
		t.Fatalf("targets met by 41 ms and 72 MiB: %+v", s)
	}
	// With a memory limit, the peak RSS is held to it.
	for _, tc := range []struct {
		limit int64
		met   bool
	}{{64 << 20, false}, {80 << 20, true}, {128 << 20, true}} {
		r := fakeResult(35000, 80<<20)
		r.Plan.Ticker.MemoryLimit = tc.limit
		if got := NewStall(10, base, r).MemoryMet; got != tc.met {
			t.Errorf("peak RSS 80 MiB, memory limit %d MiB: met = %v, want %v", tc.limit>>20, got, tc.met)
		}
	}
	dir := t.TempDir()
	s.Stalled.Plan.Groups = stalled.Plan.Groups
	if err := WriteStall(dir, s); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "stall.md"))
	for _, want := range []string{"p99 ratio (stalled ÷ alone): **4.10×**", "= 40.0 ms: **not met** (41.0 ms)", "(32.0 MiB): **not met** (72.0 MiB"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("stall.md lacks %q\n%s", want, md)
		}
	}
	svg, _ := os.ReadFile(filepath.Join(dir, "plots", "stall.svg"))
	wellFormed(t, string(svg))
}

func TestDeltaLeavesGaugesOut(t *testing.T) {
	a := Stats{Server: map[string]float64{"Active": 10, "WriteTimeouts": 2, "OutboundBytes": 5}, Hub: map[string]float64{"Conflated": 1, "Subscriptions": 4}}
	b := Stats{Server: map[string]float64{"Active": 3, "WriteTimeouts": 7, "OutboundBytes": 9}, Hub: map[string]float64{"Conflated": 11, "Subscriptions": 2}}
	d := Delta(a, b)
	if len(d) != 2 || d["server.WriteTimeouts"] != 5 || d["hub.Conflated"] != 10 {
		t.Fatalf("%v", d)
	}
}
