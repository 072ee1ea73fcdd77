package runner

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldws/herald/benchmarks/internal/report"
)

// TestTLSEndToEnd runs tiny hold-tls and echo-tls scenarios through the
// real runner against herald's echo and one peer (gws behind crypto/tls),
// with a certificate made for the test: every connection comes up over a
// verified TLS handshake, echoes come back, and the report carries the TLS
// table. No ratio is asserted: that is the machine's business.
func TestTLSEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs binaries")
	}
	lay, err := FindLayout()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lg, impls := builtOnce(t, lay, "herald", "gws")
	files, err := MakeTLSFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := &Runner{Loadgen: lg, LogDir: t.TempDir(), Src: "127.0.0.2-127.0.0.3", TLS: files}
	hold := Scenario{Name: "hold-tls", TLS: true, Kind: "hold", Mode: "echo", Conns: 300, Procs: 2, Duration: 300 * time.Millisecond, Settle: 300 * time.Millisecond}
	echo := Scenario{Name: "echo-tls", TLS: true, Kind: "echo", Mode: "echo", Conns: 8, Procs: 1, Duration: time.Second, Warmup: 200 * time.Millisecond, Size: 64, Inflight: 2}
	var rows []report.Row
	for _, im := range impls {
		for _, sc := range []Scenario{hold, echo} {
			row := r.Measure(ctx, im, sc)
			if !row.Available || row.Note != "" {
				t.Fatalf("%s %s: %+v", im.Name, sc.Name, row)
			}
			if row.Connected != sc.Conns || report.Val(row.TLSHandshakesPerS) <= 0 || row.TLSResumedRatio == nil {
				t.Fatalf("%s %s: %d connected, %v TLS handshakes/s", im.Name, sc.Name, row.Connected, report.Val(row.TLSHandshakesPerS))
			}
			if sc.Kind == "echo" && (report.Val(row.MsgsPerS) <= 0 || row.ProtocolErrors != 0 || row.Dropped != 0) {
				t.Fatalf("%s echo-tls: %+v", im.Name, row)
			}
			if sc.Kind == "hold" && report.Val(row.RSSBytesPerConn) <= 0 {
				t.Fatalf("%s hold-tls: %+v", im.Name, row)
			}
			rows = append(rows, row)
		}
	}
	dir := t.TempDir()
	if err := report.Write(dir, &report.Run{Date: "today", Rows: rows}); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "RSS / idle TLS conn") || !strings.Contains(string(md), "## hold-tls") {
		t.Fatalf("report without the TLS tables:\n%s", md)
	}
}

// The TLS scenarios: each plain one but churn, with the same load, the
// server given -tls-cert/-tls-key by the runner, not by its flags.
func TestTLSScenarios(t *testing.T) {
	for _, quick := range []bool{true, false} {
		plain := map[string]Scenario{}
		for _, s := range Scenarios(quick) {
			plain[s.Name] = s
		}
		got := TLSScenarios(quick)
		var names []string
		for _, s := range got {
			names = append(names, s.Name)
			p := plain[strings.TrimSuffix(s.Name, "-tls")]
			if !s.TLS || p.TLS || s.Conns != p.Conns || s.Procs != p.Procs || s.Expected() != p.Expected() ||
				!slices.Equal(s.ServerFlags(), p.ServerFlags()) || !strings.Contains(s.Describe(), "wss://") {
				t.Errorf("quick=%v: %+v against %+v", quick, s, p)
			}
		}
		if strings.Join(names, " ") != "hold-tls echo-tls ticker-1-tls ticker-20-tls" {
			t.Errorf("quick=%v: %v", quick, names)
		}
	}
}
