package report

import (
	"encoding/xml"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heraldws/herald/benchmarks/internal/histo"
)

func sampleRun(t *testing.T) *Run {
	h := histo.New()
	for i := int64(1); i < 5000; i++ {
		histo.Record(h, i*1000)
	}
	e, err := histo.Encode(h)
	if err != nil {
		t.Fatal(err)
	}
	return &Run{Date: "2026-01-02T03:04:05Z", Quick: true, Machine: Machine{CPU: "cpu", Cores: 2}, Rows: []Row{
		{Impl: "herald", Scenario: "hold", Conns: 100, Available: true, RSSBytesPerConn: F(1000), ConnectPerS: F(20000)},
		{Impl: "nbio", Scenario: "hold", Conns: 100, Available: true, RSSBytesPerConn: F(1500), ConnectPerS: F(10000)},
		{Impl: "herald", Scenario: "ticker-1", Conns: 100, Available: false, Note: "not available: examples/ticker does not exist yet"},
		{Impl: "nbio", Scenario: "ticker-1", Conns: 100, Available: true, MsgsPerS: F(1000), ServerCPUUSPerMsg: F(7.5), P50US: F(100), P99US: F(900), LatencyH: string(e)},
		{Impl: "herald", Scenario: "echo", Conns: 10, Available: true, MsgsPerS: F(2000), ServerCPUUSPerMsg: F(2), P50US: F(10), P99US: F(50), LatencyH: string(e)},
		{Impl: "nbio", Scenario: "echo", Conns: 10, Available: true, MsgsPerS: F(1000), ServerCPUUSPerMsg: F(3), P50US: F(20), P99US: F(70), LatencyH: string(e)},
	}}
}

func TestCompare(t *testing.T) {
	run := sampleRun(t)
	Compare(run.Rows)
	nbioHold := run.Rows[1].VsHerald
	if nbioHold["rss_bytes_per_conn"] != 1.5 || nbioHold["connect_per_s"] != 0.5 {
		t.Fatalf("hold ratios %v", nbioHold)
	}
	if run.Rows[3].VsHerald != nil {
		t.Fatalf("a ratio against an unavailable herald row: %v", run.Rows[3].VsHerald)
	}
	if run.Rows[5].VsHerald["server_cpu_us_per_msg"] != 1.5 {
		t.Fatalf("echo ratios %v", run.Rows[5].VsHerald)
	}
	if F(math.NaN()) != nil || Val(nil) == Val(nil) {
		t.Fatal("NaN handling")
	}
}

func TestWriteAndReadBack(t *testing.T) {
	dir := t.TempDir()
	run := sampleRun(t)
	if err := Write(dir, run); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	back, err := ReadJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Rows) != len(run.Rows) || Val(back.Rows[1].RSSBytesPerConn) != 1500 || back.Rows[2].MsgsPerS != nil {
		t.Fatalf("round trip: %+v", back.Rows)
	}
	// The JSON rows carry the fields the issue lists, null when not measured.
	raw, _ := os.ReadFile(filepath.Join(dir, "results.json"))
	for _, k := range []string{`"impl"`, `"scenario"`, `"conns"`, `"msgs_per_s"`, `"p50_us"`, `"p99_us"`, `"server_cpu_us_per_msg"`, `"rss_bytes_per_conn"`, `"msgs_per_s": null`} {
		if !strings.Contains(string(raw), k) {
			t.Errorf("results.json lacks %s", k)
		}
	}
	md, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	for _, want := range []string{"## Summary", "| 1500 | 1.50× |", "not available", "plots/rss_per_conn.svg", "Is the load generator the bottleneck?", "2026-01-02"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	plots, _ := filepath.Glob(filepath.Join(dir, "plots", "*.svg"))
	names := map[string]bool{}
	for _, p := range plots {
		names[filepath.Base(p)] = true
		b, _ := os.ReadFile(p)
		dec := xml.NewDecoder(strings.NewReader(string(b)))
		for {
			_, err := dec.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s is not well-formed XML: %v", p, err)
			}
		}
	}
	for _, want := range []string{"rss_per_conn.svg", "cpu_per_msg.svg", "throughput.svg", "latency_echo.svg", "latency_ticker-1.svg"} {
		if !names[want] {
			t.Errorf("missing plot %s (have %v)", want, names)
		}
	}
	if _, err := ReadJSON(strings.NewReader(`{"rows":[{"impl":""}]}`)); err == nil {
		t.Fatal("accepted a row without impl")
	}
}

// A run of the compressed scenarios alone gets their summary, the bytes on
// the wire with their ratios to herald, and the hold-z memory plot.
func TestCompressedReport(t *testing.T) {
	run := &Run{Date: "2026-01-02T03:04:05Z", Rows: []Row{
		{Impl: "herald", Scenario: "hold-z", Conns: 100, Available: true, RSSBytesPerConn: F(900)},
		{Impl: "uws", Scenario: "hold-z", Conns: 100, Available: true, RSSBytesPerConn: F(1800)},
		{Impl: "herald", Scenario: "ticker-20z", Conns: 100, Available: true, MsgsPerS: F(1000), ServerCPUUSPerMsg: F(2), WireBytesPerMsg: F(400), CompressedRatio: F(1), DeliveredRatio: F(1), P99US: F(900)},
		{Impl: "uws", Scenario: "ticker-20z", Conns: 100, Available: true, MsgsPerS: F(1000), ServerCPUUSPerMsg: F(3), WireBytesPerMsg: F(500), CompressedRatio: F(0.5), DeliveredRatio: F(0.9), P99US: F(800)},
	}}
	dir := t.TempDir()
	if err := Write(dir, run); err != nil {
		t.Fatal(err)
	}
	if v := run.Rows[3].VsHerald["wire_bytes_per_msg"]; v != 1.25 {
		t.Fatalf("wire ratio %v", v)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	for _, want := range []string{"ticker-20z wire B/msg", "| 1800 B (2.00×) |", "| 500 (1.25×) |", "| 3 (1.50×) |", "90.0% (800)", "| 500 | 1.25× | 50.0% |", "## hold-z"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	if strings.Contains(string(md), "ticker-1 CPU µs/msg") {
		t.Error("the plain summary in a run without plain scenarios")
	}
	for _, f := range []string{"rss_per_conn.svg", "wire_bytes_per_msg.svg"} {
		if _, err := os.Stat(filepath.Join(dir, "plots", f)); err != nil {
			t.Errorf("missing plot %s", f)
		}
	}
}

func TestHuman(t *testing.T) {
	for v, want := range map[float64]string{1234567: "1.23M", 15600: "15.6k", 1211: "1211", 3.69: "3.69", 12.5: "12.5", 0.43: "0.43"} {
		if got := Human(v); got != want {
			t.Errorf("Human(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestTimeChart(t *testing.T) {
	rss := TimeLine{Name: "RSS", T: []float64{0, 1, 2, 3}, V: []float64{10, 20, math.NaN(), 15}}
	budget := TimeLine{Name: "budget", T: []float64{0, 3}, V: []float64{40, 40}, Dashed: true}
	p99 := TimeLine{Name: "p99 <ms>", T: []float64{5}, V: []float64{3}}
	svg := TimeChart("Soak & co", "sub", "seconds", []Panel{{Title: "RSS", Unit: "MiB", Lines: []TimeLine{rss, budget}}, {Title: "latency", Unit: "ms", Lines: []TimeLine{p99}}},
		[]Mark{{T: 1, Label: "hostile load"}})
	dec := xml.NewDecoder(strings.NewReader(svg))
	for {
		_, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, svg)
		}
	}
	// The NaN breaks the RSS line in two; a lone point still draws.
	if n := strings.Count(svg, "<polyline"); n != 4 {
		t.Fatalf("%d polylines, want 4 (two RSS segments, the budget, the lone p99)", n)
	}
	for _, want := range []string{"Soak &amp; co", "p99 &lt;ms&gt;", "hostile load", `stroke-dasharray="6,4"`} {
		if !strings.Contains(svg, want) {
			t.Errorf("missing %q", want)
		}
	}
	if empty := TimeChart("t", "", "s", nil, nil); !strings.Contains(empty, "no samples") {
		t.Fatal("an empty chart should say so")
	}
}
