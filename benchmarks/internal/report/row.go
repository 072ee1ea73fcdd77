// Package report turns the runner's measurements into results.json, a
// Markdown report and SVG plots.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

// Row is one server in one scenario: a line of results.json. Metrics that do
// not apply to the scenario are null.
type Row struct {
	Impl     string `json:"impl"`
	Label    string `json:"label"`
	Scenario string `json:"scenario"`
	Conns    int    `json:"conns"` // held connections

	MsgsPerS          *float64 `json:"msgs_per_s"` // messages delivered to clients per second
	P50US             *float64 `json:"p50_us"`     // echo: round trip; ticker, churn: publish to receive
	P99US             *float64 `json:"p99_us"`
	P999US            *float64 `json:"p999_us"`
	ServerCPUUSPerMsg *float64 `json:"server_cpu_us_per_msg"` // server user+sys / messages delivered
	RSSBytesPerConn   *float64 `json:"rss_bytes_per_conn"`    // hold: (RSS at N idle - RSS before) / N
	ConnectPerS       *float64 `json:"connect_per_s"`         // connect + upgrade rate while connecting
	ChurnPerS         *float64 `json:"churn_per_s"`           // connect/upgrade/close cycles per second
	ServerCPUUSPerCyc *float64 `json:"server_cpu_us_per_churn_cycle"`
	DeliveredRatio    *float64 `json:"delivered_ratio"` // ticker: received / published × subscribers
	// WireBytesPerMsg is what the clients read from their sockets in the
	// window ÷ the messages they received: frames as sent, compressed or
	// not, with their headers.
	WireBytesPerMsg *float64 `json:"wire_bytes_per_msg"`
	// CompressedRatio is the share of the messages received that came
	// compressed (permessage-deflate scenarios only).
	CompressedRatio *float64 `json:"compressed_ratio,omitempty"`
	// TLSHandshakesPerS is the TLS handshakes the clients completed per
	// second of the connect phase, TLSResumedRatio the share of them that
	// resumed a session (TLS scenarios only).
	TLSHandshakesPerS *float64 `json:"tls_handshakes_per_s,omitempty"`
	TLSResumedRatio   *float64 `json:"tls_resumed_ratio,omitempty"`

	ServerCPUPct      float64  `json:"server_cpu_pct"` // of one core, during the window
	ClientCPUPct      float64  `json:"client_cpu_pct"` // loadgen, all processes, of one core
	ClientCPUUSPerMsg *float64 `json:"client_cpu_us_per_msg"`
	ServerRSSBytes    int64    `json:"server_rss_bytes"`
	WindowS           float64  `json:"window_s"`
	LoadgenProcs      int      `json:"loadgen_procs"`

	Connected      int   `json:"connected"`
	Gaps           int64 `json:"gaps"`
	Dropped        int64 `json:"dropped"`
	ProtocolErrors int64 `json:"protocol_errors"`
	ConnectFails   int64 `json:"connect_failures"`

	// ErrorKinds counts the load generators' errors by kind (what
	// failed and how): why connections were lost, every one of them.
	ErrorKinds map[string]int64 `json:"error_kinds,omitempty"`
	// ServerStats is what herald's ticker says it closed and refused
	// over the whole run (its /stats), herald's rows only.
	ServerStats *ServerStats `json:"server_stats,omitempty"`

	Note     string             `json:"note,omitempty"` // why the row has no numbers, or what went wrong
	VsHerald map[string]float64 `json:"vs_herald,omitempty"`
	// VsUWS is the same ratios to uWebSockets.js (TLS scenarios only:
	// the reference for serving TLS itself, OpenSSL in the addon).
	VsUWS     map[string]float64 `json:"vs_uws,omitempty"`
	LatencyH  string             `json:"latency_hist,omitempty"` // HDR V2 compressed, ns
	ConnectH  string             `json:"connect_hist,omitempty"`
	Available bool               `json:"available"`
}

// F makes an optional metric; NaN and infinities become null.
func F(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// Val reads an optional metric (NaN when null).
func Val(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

// Compare fills VsHerald on every row: the row's metric divided by
// herald's in the same scenario (below 1 is less CPU, memory or latency,
// above 1 more throughput, whichever the metric).
// TLS scenarios (IsTLS) also get VsUWS, the ratios to uWebSockets.js.
func Compare(rows []Row) {
	compareTo(rows, "herald", func(r *Row) *map[string]float64 { return &r.VsHerald }, func(string) bool { return true })
	compareTo(rows, "uws", func(r *Row) *map[string]float64 { return &r.VsUWS }, IsTLS)
}

// IsTLS reports whether scenario sc runs over wss://.
func IsTLS(sc string) bool { return strings.HasSuffix(sc, "-tls") }

func compareTo(rows []Row, impl string, into func(*Row) *map[string]float64, which func(string) bool) {
	base := map[string]*Row{}
	for i := range rows {
		if rows[i].Impl == impl && rows[i].Available {
			base[rows[i].Scenario] = &rows[i]
		}
	}
	for i := range rows {
		r := &rows[i]
		h := base[r.Scenario]
		if h == nil || !r.Available || r.Impl == impl || !which(r.Scenario) {
			continue
		}
		m := map[string]float64{}
		put := func(k string, a, b *float64) {
			if a != nil && b != nil && *b != 0 {
				m[k] = *a / *b
			}
		}
		put("msgs_per_s", r.MsgsPerS, h.MsgsPerS)
		put("p50_us", r.P50US, h.P50US)
		put("p99_us", r.P99US, h.P99US)
		put("server_cpu_us_per_msg", r.ServerCPUUSPerMsg, h.ServerCPUUSPerMsg)
		put("wire_bytes_per_msg", r.WireBytesPerMsg, h.WireBytesPerMsg)
		put("rss_bytes_per_conn", r.RSSBytesPerConn, h.RSSBytesPerConn)
		put("connect_per_s", r.ConnectPerS, h.ConnectPerS)
		put("churn_per_s", r.ChurnPerS, h.ChurnPerS)
		put("tls_handshakes_per_s", r.TLSHandshakesPerS, h.TLSHandshakesPerS)
		if len(m) > 0 {
			*into(r) = m
		}
	}
}

// Run is a whole results.json.
type Run struct {
	Date     string   `json:"date"`
	Quick    bool     `json:"quick"`
	Machine  Machine  `json:"machine"`
	Versions []string `json:"versions"`
	Limits   []string `json:"limits"`
	Advice   []string `json:"advice,omitempty"`
	Scenario []string `json:"scenarios"`      // scenario descriptions
	CPUs     string   `json:"cpus,omitempty"` // how servers and load generators shared the CPUs
	Rows     []Row    `json:"rows"`
}

// Machine describes the host.
type Machine struct {
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	Memory string `json:"memory"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
	Node   string `json:"node"`
}

// WriteJSON writes run as indented JSON.
func WriteJSON(path string, run *Run) error {
	b, err := json.MarshalIndent(run, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadJSON parses a results.json.
func ReadJSON(r io.Reader) (*Run, error) {
	var run Run
	dec := json.NewDecoder(r)
	if err := dec.Decode(&run); err != nil {
		return nil, fmt.Errorf("parse results: %w", err)
	}
	for i, row := range run.Rows {
		if row.Impl == "" || row.Scenario == "" {
			return nil, fmt.Errorf("parse results: row %d has no impl or scenario", i)
		}
	}
	return &run, nil
}

// ServerStats are the counters of herald's engine.Stats that say why a
// connection was closed or refused, as its ticker's /stats reports them
// ("server"), from the server's start to the end of the window.
type ServerStats struct {
	Accepted          uint64 `json:"Accepted"`
	Upgraded          uint64 `json:"Upgraded"`
	HandshakeTimeouts uint64 `json:"HandshakeTimeouts"`
	CloseCounts
	TLSHandshakes uint64 `json:"TLSHandshakes"`
	TLSErrors     uint64 `json:"TLSErrors"`
	TLSRefused    uint64 `json:"TLSRefused"`
	Closes        struct {
		ByCode      [16]uint64 `json:"ByCode"` // code 1000+i
		Application uint64     `json:"Application"`
	} `json:"Closes"`
}

// CloseCounts are the reasons a herald server closes an upgraded
// connection on its own, as engine.Stats names them (in /stats, "server").
type CloseCounts struct {
	PongTimeouts   uint64 `json:"PongTimeouts"`
	WriteTimeouts  uint64 `json:"WriteTimeouts"`
	IdleClosed     uint64 `json:"IdleClosed"`
	ProtocolErrors uint64 `json:"ProtocolErrors"`
	SlowClosed     uint64 `json:"SlowClosed"`
	BudgetShed     uint64 `json:"BudgetShed"`
}

// Minus is c less what o counted before.
func (c CloseCounts) Minus(o CloseCounts) CloseCounts {
	return CloseCounts{
		PongTimeouts: c.PongTimeouts - o.PongTimeouts, WriteTimeouts: c.WriteTimeouts - o.WriteTimeouts,
		IdleClosed: c.IdleClosed - o.IdleClosed, ProtocolErrors: c.ProtocolErrors - o.ProtocolErrors,
		SlowClosed: c.SlowClosed - o.SlowClosed, BudgetShed: c.BudgetShed - o.BudgetShed,
	}
}

// Add adds o's counts to c's.
func (c *CloseCounts) Add(o CloseCounts) {
	c.PongTimeouts += o.PongTimeouts
	c.WriteTimeouts += o.WriteTimeouts
	c.IdleClosed += o.IdleClosed
	c.ProtocolErrors += o.ProtocolErrors
	c.SlowClosed += o.SlowClosed
	c.BudgetShed += o.BudgetShed
}

// String lists the counts.
func (c CloseCounts) String() string {
	return fmt.Sprintf("%d by keepalive (pong timeout), %d by WriteTimeout, %d by IdleTimeout, %d for protocol errors, %d for MaxOutboundBytes, %d for MaxOutboundTotal",
		c.PongTimeouts, c.WriteTimeouts, c.IdleClosed, c.ProtocolErrors, c.SlowClosed, c.BudgetShed)
}

// Lost lists the counters that say why connections ended or were
// refused, the non-zero ones only ("" if none).
func (s *ServerStats) Lost() string {
	if s == nil {
		return ""
	}
	var parts []string
	for _, c := range []struct {
		n    uint64
		what string
	}{
		{s.HandshakeTimeouts, "handshake timeouts"}, {s.TLSErrors, "TLS errors"}, {s.TLSRefused, "TLS refused (MaxTLSHandshakes)"},
		{s.PongTimeouts, "pong timeouts"}, {s.WriteTimeouts, "write timeouts"}, {s.IdleClosed, "idle closes"},
		{s.ProtocolErrors, "protocol errors"}, {s.SlowClosed, "slow consumers closed"}, {s.BudgetShed, "shed for MaxOutboundTotal"},
	} {
		if c.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c.n, c.what))
		}
	}
	var codes []string
	for i, n := range s.Closes.ByCode {
		if n > 0 {
			codes = append(codes, fmt.Sprintf("%d: %d", 1000+i, n))
		}
	}
	if s.Closes.Application > 0 {
		codes = append(codes, fmt.Sprintf("other: %d", s.Closes.Application))
	}
	if len(codes) > 0 {
		parts = append(parts, "closes by code "+strings.Join(codes, ", "))
	}
	return strings.Join(parts, ", ")
}
