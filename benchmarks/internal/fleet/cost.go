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
// the comparison beside herald's measured ones. Compare says which of
// herald's figures is the comparable one: "process" (RSS per
// connection), "kernel" (per server socket) or "total" (both).
var Published = []struct {
	Who, Figure string
	PerConn     float64 // bytes per connection as published
	Compare     string
}{
	{"Centrifugo", "1M connections on 20 pods, ~30 KB per connection; ~500k msg/s delivered", 30 << 10, "total"},
	{"Centrifugo, tuned", "11.6 KB per connection on one node", 11.6 * 1024, "total"},
	{"lesismal/nbio", "≈1 KB per connection at 1M", 1 << 10, "process"},
	{"greatws", "0.45–0.6 KB per connection at 1M", 0.6 * 1024, "process"},
	{"MigratoryData", "12M connections on one box, ~3 KB of kernel memory per socket", 3 << 10, "kernel"},
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
	w("10M connections need **%.0f GiB** for herald and the kernel: %d host(s) of %d GiB at %.0f%% for connections.",
		c.MemoryGiB, c.HostsForMemory, HostMemGiB, 100*MemFraction)
	if len(c.Rates) > 0 {
		// From this rate on, the cores needed outgrow the hosts memory asks for.
		cross := float64(c.HostsForMemory) * HostCores * CPUFraction * 1e6 / (C10M * c.CPUPerDeliveryUS)
		w(" Fan-out CPU needs more hosts than memory from about %.2f messages per connection per second (one every %.1f s), on hosts of %d cores at %.0f%%:\n\n",
			cross, 1/cross, HostCores, 100*CPUFraction)
		w("| messages per connection per second | deliveries/s | cores | hosts (CPU and memory) |\n|---:|---:|---:|---:|\n")
		for _, r := range c.Rates {
			w("| %g | %s | %.1f | %d |\n", r.PerConnPerS, humanCount(r.Deliveries), r.Cores, r.Hosts)
		}
		w("\nCentrifugo's published ~500k messages per second delivered (20 pods) would take herald %.1f cores at this CPU per delivery.\n\n", 500e3*c.CPUPerDeliveryUS/1e6)
	} else {
		w("\n\n")
	}
	w("Beside published figures (not measured here; they do not all count the same things: a process's memory, a pod's, the kernel's):\n\n")
	w("| server | published | herald's comparable figure here | published × 10M |\n|---|---|---:|---:|\n")
	for _, p := range Published {
		var mine string
		switch p.Compare {
		case "process":
			mine = bytesStr(c.HeraldPerConn) + " RSS per connection"
		case "kernel":
			mine = bytesStr(c.KernelPerSocket) + " kernel per socket"
		default:
			mine = bytesStr(c.HeraldPerConn+c.KernelPerSocket) + " process + kernel"
		}
		w("| %s | %s | %s | %.0f GiB |\n", p.Who, p.Figure, mine, C10M*p.PerConn/(1<<30))
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
