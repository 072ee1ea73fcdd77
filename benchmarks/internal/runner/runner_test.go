package runner

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldws/herald/benchmarks/internal/report"
)

// TestEndToEndAgainstHeraldEcho builds the loadgen and herald's echo
// example and runs tiny hold and echo scenarios through the real runner,
// with two loadgen processes (shards) merged into each row.
func TestEndToEndAgainstHeraldEcho(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs binaries")
	}
	lay, err := FindLayout()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lg, impls := builtOnce(t, lay, "herald")
	r := &Runner{Loadgen: lg, LogDir: t.TempDir(), Src: "127.0.0.2-127.0.0.3"}
	hold := Scenario{Name: "hold", Kind: "hold", Mode: "echo", Conns: 400, Procs: 2, Duration: 300 * time.Millisecond, Settle: 300 * time.Millisecond}
	echo := Scenario{Name: "echo", Kind: "echo", Mode: "echo", Conns: 8, Procs: 2, Duration: time.Second, Warmup: 200 * time.Millisecond, Size: 64, Inflight: 2}
	var rows []report.Row
	for _, sc := range []Scenario{hold, echo} {
		row := r.Measure(ctx, impls[0], sc)
		if !row.Available || row.Note != "" {
			t.Fatalf("%s: %+v", sc.Name, row)
		}
		rows = append(rows, row)
	}
	if rows[0].Connected != 400 || report.Val(rows[0].RSSBytesPerConn) <= 0 || rows[0].ServerRSSBytes <= 0 {
		t.Fatalf("hold row: %+v", rows[0])
	}
	e := rows[1]
	if e.Connected != 8 || report.Val(e.MsgsPerS) < 100 || report.Val(e.P99US) <= 0 || report.Val(e.ServerCPUUSPerMsg) <= 0 || e.ClientCPUPct <= 0 || e.LatencyH == "" {
		t.Fatalf("echo row: %+v", e)
	}
	// A scenario the server cannot run is reported, not fatal.
	ticker := Scenario{Name: "ticker-1", Kind: "ticker", Mode: "ticker", Conns: 10, Procs: 1, Duration: time.Second, Interval: 100 * time.Millisecond, Symbols: 1, MsgSize: 64}
	if _, err := os.Stat(filepath.Join(lay.Root, "examples", "ticker")); err != nil {
		row := r.Measure(ctx, impls[0], ticker)
		if row.Available || !strings.Contains(row.Note, "not available") {
			t.Fatalf("missing ticker: %+v", row)
		}
		rows = append(rows, row)
	}
	dir := t.TempDir()
	if err := report.Write(dir, &report.Run{Date: "today", Rows: rows}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"results.json", "report.md", "plots/rss_per_conn.svg", "plots/latency_echo.svg"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}
}

// built are the loadgen and the servers the end-to-end tests run, built
// once for all of them into a directory TestMain removes.
var built struct {
	once    sync.Once
	dir     string
	loadgen string
	impls   map[string]*Impl
	err     error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// builtOnce returns the loadgen and the servers named (of herald and gws),
// built on first use.
func builtOnce(t *testing.T, lay Layout, names ...string) (string, []*Impl) {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "runner-bins-"); built.err != nil {
			return
		}
		lay.Bin = built.dir
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		var impls []*Impl
		built.loadgen, impls, built.err = Build(ctx, lay, []string{"herald", "gws"}, t.Logf)
		built.impls = map[string]*Impl{}
		for _, im := range impls {
			built.impls[im.Name] = im
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	var impls []*Impl
	for _, name := range names {
		im := built.impls[name]
		if im == nil {
			t.Fatalf("%s is not among the servers built for the tests", name)
		}
		impls = append(impls, im)
	}
	return built.loadgen, impls
}

func TestScenarioSets(t *testing.T) {
	for _, quick := range []bool{true, false} {
		names := map[string]bool{}
		for _, s := range Scenarios(quick) {
			names[s.Name] = true
			if s.Procs < 1 || s.Duration <= 0 || s.Describe() == "" {
				t.Errorf("%+v", s)
			}
			if s.Conns/s.Procs > 16000 {
				t.Errorf("%s: %d connections per loadgen process, over the open-files budget", s.Name, s.Conns/s.Procs)
			}
		}
		for _, want := range []string{"hold", "echo", "ticker-1", "ticker-20", "churn"} {
			if !names[want] {
				t.Errorf("quick=%v lacks %s", quick, want)
			}
		}
	}
	full := Scenarios(false)
	if full[2].Expected() != 100000 || full[3].Expected() != 160000 {
		t.Fatalf("full ticker rates %v %v, want the design's 100k and 160k/s", full[2].Expected(), full[3].Expected())
	}
}

// The compressed scenarios: each plain one but churn, with the same load,
// permessage-deflate and ~1 KiB messages of the book payload; every server
// gets -compression (and the tickers -payload book), the loadgen -deflate.
func TestCompressedScenarios(t *testing.T) {
	for _, quick := range []bool{true, false} {
		plain := map[string]Scenario{}
		for _, s := range Scenarios(quick) {
			plain[s.Name] = s
		}
		want := []struct {
			name, of string
			flags    string
		}{
			{"hold-z", "hold", "-compression"},
			{"echo-z", "echo", "-compression"},
			{"ticker-1z", "ticker-1", "-interval 100ms -symbols 1 -size 1024 -payload book -compression"},
			{"ticker-20z", "ticker-20", "-interval 500ms -symbols 20 -size 1024 -payload book -compression"},
		}
		got := Compressed(quick)
		if len(got) != len(want) {
			t.Fatalf("quick=%v: %d compressed scenarios", quick, len(got))
		}
		for i, w := range want {
			s, p := got[i], plain[w.of]
			if s.Name != w.name || !s.Deflate || strings.Join(s.ServerFlags(), " ") != w.flags {
				t.Errorf("quick=%v: %s: %+v, flags %q", quick, w.name, s, s.ServerFlags())
			}
			if s.Conns != p.Conns || s.Procs != p.Procs || s.Expected() != p.Expected() || s.Duration != p.Duration {
				t.Errorf("quick=%v: %s has another load than %s", quick, s.Name, p.Name)
			}
			if s.Kind == "echo" && s.Size != 1024 || !strings.Contains(s.Describe(), "permessage-deflate") {
				t.Errorf("quick=%v: %s: size %d, %q", quick, s.Name, s.Size, s.Describe())
			}
			if p.Deflate || slices.Contains(p.ServerFlags(), "-compression") {
				t.Errorf("plain %s asks for compression", p.Name)
			}
		}
	}
}
