package fleet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldws/herald/benchmarks/internal/report"
	"github.com/heraldws/herald/benchmarks/internal/runner"
)

// TestTinyCompare is make bench-cluster made small: one pair of 300
// subscribers × 2 symbols (a batch per tick, the ticker-20 path) every
// 50 ms for a 1 s window, the single ticker, then nats-server with three ticker processes
// on one port and tickpub. Both must deliver everything (no gap, repeat or
// drop, every connection up, the delivered ratio near 1), every process
// of the cluster must hold some of the subscribers and stop cleanly, and
// the report must be written and read back. It asserts nothing about the
// CPU ratio: that depends on the machine.
func TestTinyCompare(t *testing.T) {
	ctx, bins := tinySetup(t)
	sc := runner.Scenario{Name: "ticker-tiny", Kind: "ticker", Mode: "ticker", Conns: 300, Procs: 1,
		Duration: time.Second, Warmup: 200 * time.Millisecond, Interval: 50 * time.Millisecond, Symbols: 2, MsgSize: 128}
	logs := t.TempDir()
	// The delivered ratio counts what arrives inside a 1 s window, on a
	// machine busy with the rest of the suite: a tick delayed across the
	// window's end moves out of it. Missing deliveries show as gaps.
	cfg := CompareConfig{Scenarios: []runner.Scenario{sc}, Pairs: 1, Nodes: 3, Src: "127.0.0.60-127.0.0.61", Tolerance: 0.25}
	res, err := Compare(ctx, Env{Bins: bins, LogDir: logs, Label: "herald (test)"}, cfg)
	if err != nil {
		t.Fatalf("%v (logs in %s)", err, logs)
	}
	c := res.Cluster
	if len(c.Workloads) != 1 || len(c.Workloads[0].Pairs) != 1 {
		t.Fatalf("workloads: %+v", c.Workloads)
	}
	wl := c.Workloads[0]
	p := wl.Pairs[0]
	for _, m := range []Measurement{p.Single, p.Cluster} {
		if !m.Valid || m.Connected != sc.Conns || m.Gaps != 0 || m.Reordered != 0 || m.Dropped != 0 || m.Received == 0 {
			t.Errorf("%s: valid %v (%s), %d connected, %d received, %d gaps, %d repeats, %d dropped; logs in %s",
				m.Mode, m.Valid, m.Invalid, m.Connected, m.Received, m.Gaps, m.Reordered, m.Dropped, logs)
		}
		if m.ServerCPUNS <= 0 || m.ServerCPUUS <= 0 || len(m.LoadAvg) != 2 {
			t.Errorf("%s: %d ns server CPU, %.2f µs per delivery, load %v", m.Mode, m.ServerCPUNS, m.ServerCPUUS, m.LoadAvg)
		}
	}
	if n := len(p.Cluster.NodeConns); n != 3 {
		t.Fatalf("cluster: %d processes measured", n)
	}
	held := 0
	for i, n := range p.Cluster.NodeConns {
		// 300 connections over three listeners: each gets some, unless
		// the kernel's hash of 300 source ports is very uneven.
		if n <= 0 {
			t.Errorf("cluster process %d held no connection: %v", i, p.Cluster.NodeConns)
		}
		held += n
	}
	if held != sc.Conns || len(p.Single.NodeConns) != 1 || p.Single.NodeConns[0] != sc.Conns {
		t.Errorf("connections held: single %v, cluster %v", p.Single.NodeConns, p.Cluster.NodeConns)
	}
	if p.Cluster.BrokerCPUNS < 0 || p.Cluster.PublisherCPUNS < 0 || p.Single.BrokerCPUNS != 0 {
		t.Errorf("broker, publisher CPU: %+v", p.Cluster)
	}
	if p.Ratio <= 0 || wl.Valid != 1 || wl.Median != p.Ratio {
		t.Errorf("ratio %.3f, median %.3f of %d valid", p.Ratio, wl.Median, wl.Valid)
	}
	if len(res.Rows) != 2 || res.Rows[1].VsHerald["server_cpu_us_per_msg"] != p.Ratio || !strings.HasPrefix(res.Versions[1], "nats-server 2.") {
		t.Errorf("rows %+v, versions %v", res.Rows, res.Versions)
	}

	dir := t.TempDir()
	if err := WriteCompare(dir, res); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil || !strings.Contains(string(md), "| ticker-tiny |") {
		t.Fatalf("report.md: %v\n%s", err, md)
	}
	f, err := os.Open(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	back, err := ReadCompare(f)
	if err != nil || back.Cluster.Workloads[0].Pairs[0].Cluster.Received != p.Cluster.Received {
		t.Fatalf("read back: %v", err)
	}
	f2, _ := os.Open(filepath.Join(dir, "results.json"))
	defer f2.Close()
	if run, err := report.ReadJSON(f2); err != nil || len(run.Rows) != 2 {
		t.Fatalf("report.ReadJSON: %v", err)
	}
}

// The median and the pair it comes from, and what makes a workload meet
// the target.
func TestMedianRatio(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ratios []float64 // 0: an invalid pair
		median float64
		valid  int
		pair   int // index of the median pair
	}{
		{"odd", []float64{1.3, 1.1, 1.2}, 1.2, 3, 2},
		{"even", []float64{1.0, 1.4, 1.2, 1.1}, 1.15, 4, 3},
		{"invalid left out", []float64{0, 1.3, 1.1}, 1.2, 2, 2},
		{"none valid", []float64{0, 0}, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wl := Workload{}
			for _, r := range tc.ratios {
				wl.Pairs = append(wl.Pairs, Pair{Ratio: r})
			}
			wl.Median, wl.Valid = medianRatio(wl.Pairs)
			if diff := wl.Median - tc.median; diff > 1e-9 || diff < -1e-9 || wl.Valid != tc.valid {
				t.Fatalf("median %v of %d valid, want %v of %d", wl.Median, wl.Valid, tc.median, tc.valid)
			}
			if got := wl.medianPair(); got != &wl.Pairs[tc.pair] {
				t.Errorf("median pair %+v, want index %d", got, tc.pair)
			}
		})
	}
}

// A measurement is valid only when every delivery arrived.
func TestMeasurementValidity(t *testing.T) {
	sc := runner.Scenario{Conns: 10, Symbols: 2, Interval: 100 * time.Millisecond, Duration: time.Second}
	for _, tc := range []struct {
		name  string
		edit  func(m *Measurement)
		valid bool
	}{
		{"complete", func(*Measurement) {}, true},
		{"a tick at the edge", func(m *Measurement) { m.Received = 210 }, true},
		{"gap", func(m *Measurement) { m.Gaps = 1 }, false},
		{"repeat", func(m *Measurement) { m.Reordered = 1 }, false},
		{"dropped", func(m *Measurement) { m.Dropped = 1 }, false},
		{"a connection short", func(m *Measurement) { m.Connected = 9 }, false},
		{"behind", func(m *Measurement) { m.Received = 170 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Measurement{Received: 200, Connected: 10}
			tc.edit(&m)
			m.check(sc, 0)
			if m.Valid != tc.valid || (m.Invalid == "") != tc.valid {
				t.Errorf("valid %v (%q), want %v", m.Valid, m.Invalid, tc.valid)
			}
		})
	}
}
