package fleet

import (
	"fmt"
	"math"
	"strings"
)

// C10M is the connection count the cost model prices.
const C10M = 10_000_000

// The host the cost model prices in, and how much of it a plan may use.
const (
	HostMemGiB  = 64
	HostCores   = 16
	MemFraction = 0.75 // of a host's memory for connections (the rest: OS, page cache, headroom)
	CPUFraction = 0.70 // of a host's cores for fan-out (headroom for bursts and everything else)
)

// Rate is a delivery rate the cost model prices: messages per connection
// per second.
type Rate struct {
	PerConnPerS float64 `json:"per_conn_per_s"`
	Deliveries  float64 `json:"deliveries_per_s"` // over C10M connections
	Cores       float64 `json:"cores"`
	Hosts       int     `json:"hosts"` // for CPU and memory together
}

// CostModel is what C10M would take at the measured costs: memory per
// connection on a server host (herald's RSS plus the kernel's per
// socket) and server CPU per delivered message.
type CostModel struct {
	HeraldPerConn    float64 `json:"herald_rss_per_conn"`
	KernelPerSocket  float64 `json:"kernel_per_socket"` // the measured kernel per connection ÷ 2: one end per server host
	CPUPerDeliveryUS float64 `json:"server_cpu_us_per_delivery"`
	MemoryGiB        float64 `json:"memory_gib"` // C10M × (herald + kernel)
	HostsForMemory   int     `json:"hosts_for_memory"`
	Rates            []Rate  `json:"rates"`
}

// NewCostModel prices C10M from herald's RSS per connection, the kernel's
// memory per server socket and the servers' CPU per delivery (µs; NaN if
// not measured).
func NewCostModel(heraldPerConn, kernelPerSocket, cpuUS float64) *CostModel {
	c := &CostModel{HeraldPerConn: heraldPerConn, KernelPerSocket: kernelPerSocket, CPUPerDeliveryUS: cpuUS}
	c.MemoryGiB = C10M * (heraldPerConn + kernelPerSocket) / (1 << 30)
	c.HostsForMemory = int(math.Ceil(c.MemoryGiB / (HostMemGiB * MemFraction)))
	if math.IsNaN(cpuUS) {
		return c
	}
	for _, r := range []float64{0.1, 1, 10} {
		x := Rate{PerConnPerS: r, Deliveries: C10M * r}
		x.Cores = x.Deliveries * cpuUS / 1e6
		x.Hosts = max(c.HostsForMemory, int(math.Ceil(x.Cores/(HostCores*CPUFraction))))
		c.Rates = append(c.Rates, x)
	}
	return c
}

// Published figures of other servers at scale (not measured here), for
// the comparison beside herald's measured ones.
var Published = []struct {
	Who, Figure string
	PerConn     float64 // bytes per connection as published, for the C10M column; 0: none
	Covers      string
}{
	{"Centrifugo", "1M connections on 20 pods, ~30 KB per connection; ~500k msg/s delivered", 30 << 10, "pod memory (process and, as a container counts it, socket buffers)"},
	{"Centrifugo, tuned", "11.6 KB per connection on one node", 11.6 * 1024, "process memory"},
	{"lesismal/nbio", "≈1 KB per connection at 1M", 1 << 10, "process memory; the kernel's sockets on top"},
	{"greatws", "0.45–0.6 KB per connection at 1M", 0.6 * 1024, "process memory; the kernel's sockets on top"},
	{"MigratoryData", "12M connections on one box, ~3 KB of kernel memory per socket", 3 << 10, "the kernel's memory per socket"},
}

// Markdown is the cost model as a report section.
func (c *CostModel) Markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("## Cost model: C10M at the measured costs\n\n")
	w("Measured here: herald %s RSS per connection, the kernel %s per server socket (half the per-connection figure, which counts both ends on this host), ",
		bytesStr(c.HeraldPerConn), bytesStr(c.KernelPerSocket))
	if math.IsNaN(c.CPUPerDeliveryUS) {
		w("no CPU per delivery.\n\n")
	} else {
		w("%.2f µs of server CPU per delivered message (on loopback, where the kernel's send also does the receiving socket's work).\n\n", c.CPUPerDeliveryUS)
	}
	w("10M connections need **%.0f GiB** for herald and the kernel: %d host(s) of %d GiB at %.0f%% for connections. ",
		c.MemoryGiB, c.HostsForMemory, HostMemGiB, 100*MemFraction)
	if len(c.Rates) > 0 {
		w("CPU decides past a message per connection every few seconds (hosts of %d cores at %.0f%%):\n\n", HostCores, 100*CPUFraction)
		w("| messages per connection per second | deliveries/s | cores | hosts (CPU and memory) |\n|---:|---:|---:|---:|\n")
		for _, r := range c.Rates {
			w("| %g | %s | %.1f | %d |\n", r.PerConnPerS, humanCount(r.Deliveries), r.Cores, r.Hosts)
		}
		w("\n")
	} else {
		w("\n\n")
	}
	w("Beside published figures (not measured here; what each covers differs):\n\n| server | published | per connection × 10M |\n|---|---|---:|\n")
	w("| herald (this run) | %s process + %s kernel per server socket | %.0f GiB |\n", bytesStr(c.HeraldPerConn), bytesStr(c.KernelPerSocket), c.MemoryGiB)
	for _, p := range Published {
		w("| %s | %s (%s) | %.0f GiB |\n", p.Who, p.Figure, p.Covers, C10M*p.PerConn/(1<<30))
	}
	return b.String()
}

func humanCount(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", math.Round(v/1e5)/10)
	case v >= 1e3:
		return fmt.Sprintf("%gk", math.Round(v/1e2)/10)
	}
	return fmt.Sprintf("%g", v)
}
