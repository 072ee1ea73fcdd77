package fleet

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldws/herald/benchmarks/internal/limits"
	"github.com/heraldws/herald/benchmarks/internal/report"
	"github.com/heraldws/herald/benchmarks/internal/runner"
)

// built are the binaries the tests run, built once for all of them into
// a directory TestMain removes: building them takes longer than a tiny
// run.
var built struct {
	once sync.Once
	dir  string
	bins Bins
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// tinySetup skips a tiny run in -short mode, and returns a context that
// bounds it and the binaries, built on first use.
func tinySetup(t *testing.T) (context.Context, Bins) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs binaries")
	}
	lay, err := runner.FindLayout()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "fleet-bins"); built.err == nil {
			built.bins, built.err = Build(ctx, lay, built.dir)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return ctx, built.bins
}

// TestTinyFleet is the fleet run made small, so that the path of
// make bench-c1m cannot rot: a real nats-server, three herald ticker
// processes on one port, two load generators of 1,000 connections from
// their own source addresses, a memory sample after each, then three
// ticks of two symbols through the broker. Every connection must be held
// (by the load generators' count and by the servers' open files) and
// receive every tick, with no gap and no repeat; every process must stop
// cleanly. Each wait ends on a condition (the load generators' events,
// the broker's /connz, the deliveries counted) under hang guards, so a
// busy machine only makes it slower.
func TestTinyFleet(t *testing.T) {
	ctx, bins := tinySetup(t)
	if _, err := limits.RaiseNofile(); err != nil {
		t.Log(err)
	}
	lim, err := limits.Read("/proc")
	if err != nil {
		t.Fatal(err)
	}
	const conns, ticks, symbols = 2000, 3, 2
	plan, err := NewPlan(Config{Conns: conns, Servers: 3, PerProc: 1000, Marks: []int{1000}, Settle: -1,
		Ticks: ticks, TickInterval: 200 * time.Millisecond, Symbols: symbols, MsgSize: 128}, lim.NofileHard, lim.Ports())
	if err != nil {
		t.Fatal(err)
	}
	logs := t.TempDir()
	res, err := Run(ctx, Env{Bins: bins, LogDir: logs, Label: "herald (test)"}, plan)
	if err != nil {
		t.Fatalf("%v (logs in %s)", err, logs)
	}
	fl := res.Fleet
	if len(fl.Errors) > 0 {
		t.Errorf("notes: %v", fl.Errors)
	}
	if fl.Hold.Connected != conns || fl.Hold.ConnectFailures != 0 || len(fl.Samples) != 2 {
		t.Fatalf("hold: %+v, %d samples", fl.Hold, len(fl.Samples))
	}
	if fl.Hold.ServersHeard != 3 || fl.Hold.ServerCloses != (closeCounts{}) {
		t.Fatalf("the servers' closes: %d of 3 heard, %+v", fl.Hold.ServersHeard, fl.Hold.ServerCloses)
	}
	for i, s := range fl.Samples {
		if want := plan.Marks[i]; s.Conns != want || s.ServerConns != want || s.ServerConnsMin < 1 {
			t.Errorf("sample %d: %d connections asked, the servers hold %d (%d–%d each)", i, s.Conns, s.ServerConns, s.ServerConnsMin, s.ServerConnsMax)
		}
		if s.ServerRSS <= 0 || s.LoadgenRSS <= 0 || s.BrokerRSS <= 0 || s.System.TCPInUse < int64(2*s.Conns) {
			t.Errorf("sample %d: %+v", i, s)
		}
	}
	tp := fl.Ticker
	if tp == nil || !tp.Complete || tp.Received != conns*ticks*symbols || tp.DeliveredRatio != 1 || tp.Gaps != 0 || tp.Reordered != 0 || tp.Dropped != 0 || tp.ProtocolErrors != 0 {
		t.Fatalf("ticks: %+v", tp)
	}
	if tp.P50US <= 0 || tp.ServerCPUUS <= 0 || tp.BrokerCPUNS < 0 {
		t.Errorf("ticker measurements: %+v", tp)
	}
	if len(fl.Stopped) != 3 || !strings.Contains(strings.Join(fl.Stopped, "\n"), "servers: 3 of 3 exited cleanly") {
		t.Errorf("stopped: %v", fl.Stopped)
	}
	if len(res.Versions) != 2 || !strings.HasPrefix(res.Versions[1], "nats-server 2.") {
		t.Errorf("versions: %v", res.Versions)
	}
	if len(res.Rows) != 2 || res.Rows[0].Scenario != ScenarioHold || res.Rows[1].Scenario != ScenarioTicker ||
		report.Val(res.Rows[0].RSSBytesPerConn) <= 0 || report.Val(res.Rows[1].DeliveredRatio) != 1 {
		t.Fatalf("rows: %+v", res.Rows)
	}

	dir := t.TempDir()
	if err := Write(dir, res); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"results.json", "report.md", "plots/fleet_memory.svg"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	f, err := os.Open(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	back, err := ReadResults(f)
	if err != nil || back.Fleet.Ticker.Received != tp.Received || len(back.Rows) != 2 {
		t.Fatalf("read back: %v", err)
	}
	// The harness's own reader takes it too: the rows are its format.
	f2, _ := os.Open(filepath.Join(dir, "results.json"))
	defer f2.Close()
	if run, err := report.ReadJSON(f2); err != nil || len(run.Rows) != 2 {
		t.Fatalf("report.ReadJSON: %v", err)
	}
}
