package runner

import (
	"fmt"
	"time"
)

// Scenario is one workload every server runs.
type Scenario struct {
	Name string // row name: hold, echo, ticker-1, ticker-20, churn; -z: compressed
	// Deflate runs the scenario with permessage-deflate: the server is
	// started with -compression and the loadgen with -deflate.
	Deflate bool
	// TLS runs the scenario over wss://: the server is started with
	// -tls-cert and -tls-key (Runner.TLS), the loadgen with -tls.
	TLS      bool
	Kind     string // loadgen scenario
	Mode     string // server mode: echo or ticker
	Conns    int
	Procs    int // loadgen processes
	Duration time.Duration
	Warmup   time.Duration
	Settle   time.Duration // hold: idle time before the RSS sample

	Interval time.Duration // ticker
	Symbols  int
	MsgSize  int
	Payload  string // the ticker's -payload ("": the contract's default, pad)

	Size     int // echo
	Inflight int

	ChurnConc int
}

// Describe is one line for the report.
func (s Scenario) Describe() string {
	d := s.describe()
	switch {
	case s.Deflate && s.Kind == "echo":
		d += "; permessage-deflate, each message compressed by the client, payload an order book after the timestamp"
	case s.Deflate && s.Payload != "":
		d += fmt.Sprintf("; permessage-deflate, %s payload", s.Payload)
	case s.Deflate:
		d += "; permessage-deflate negotiated"
	}
	if s.TLS {
		d += "; wss:// (TLS 1.3, a self-signed certificate made for the run; the clients share one session cache, so most connects resume a session)"
	}
	return d
}

func (s Scenario) describe() string {
	switch s.Kind {
	case "hold":
		return fmt.Sprintf("%s: %d idle upgraded connections; RSS sampled after %v idle", s.Name, s.Conns, s.Settle)
	case "echo":
		return fmt.Sprintf("%s: %d connections, closed loop, %d message(s) of %d B in flight each, %v window", s.Name, s.Conns, s.Inflight, s.Size, s.Duration)
	case "ticker":
		return fmt.Sprintf("%s: %d subscribers × %d symbol(s), a tick every %v, %d B messages (%.0f deliveries/s expected), %v window",
			s.Name, s.Conns, s.Symbols, s.Interval, s.MsgSize, s.Expected(), s.Duration)
	case "churn":
		return fmt.Sprintf("%s: %d concurrent connect/upgrade/close cycles while a ticker feeds %d subscribers × %d symbol(s) every %v, %v window",
			s.Name, s.ChurnConc, s.Conns, s.Symbols, s.Interval, s.Duration)
	}
	return s.Name
}

// Expected is the deliveries per second the ticker publishes to all
// subscribers.
func (s Scenario) Expected() float64 {
	if s.Interval <= 0 {
		return 0
	}
	return float64(s.Conns) * float64(s.Symbols) / s.Interval.Seconds()
}

// ServerFlags are the server's flags after -addr. Every server, herald's
// examples and the peers alike, takes the same ones.
func (s Scenario) ServerFlags() []string {
	var flags []string
	if s.Mode == "ticker" {
		flags = []string{"-interval", s.Interval.String(), "-symbols", fmt.Sprint(s.Symbols), "-size", fmt.Sprint(s.MsgSize)}
		if s.Payload != "" {
			flags = append(flags, "-payload", s.Payload)
		}
	}
	if s.Deflate {
		flags = append(flags, "-compression")
	}
	return flags
}

// Path is the held connections' request target.
func (s Scenario) Path() string {
	if s.Mode == "ticker" {
		return "/ws"
	}
	return "/"
}

// Compressed returns the compressed variants of the quick or the full set:
// hold-z, echo-z, ticker-1z and ticker-20z, the plain scenarios' counts
// with permessage-deflate, ~1 KiB messages (above herald's 512-byte
// MinSize) and, for the tickers, the order-book payload: a run of x would
// compress hundreds to one and make every byte figure meaningless. They
// are not part of the default run (-scenarios picks them, make
// bench-deflate runs them all).
func Compressed(quick bool) []Scenario {
	var out []Scenario
	for _, s := range Scenarios(quick) {
		if s.Kind == "churn" {
			continue
		}
		switch s.Kind {
		case "ticker":
			s.Name += "z" // ticker-1z, ticker-20z
			s.MsgSize, s.Payload = 1024, "book"
		case "echo":
			s.Name += "-z"
			s.Size = 1024
		default:
			s.Name += "-z"
		}
		s.Deflate = true
		out = append(out, s)
	}
	return out
}

// TLSScenarios returns the wss:// variants of the quick or the full set:
// hold-tls, echo-tls, ticker-1-tls and ticker-20-tls, the plain
// scenarios' counts over TLS. They are not part of the default run
// (-scenarios tls runs them all, make bench-tls too).
func TLSScenarios(quick bool) []Scenario {
	var out []Scenario
	for _, s := range Scenarios(quick) {
		if s.Kind == "churn" {
			continue
		}
		s.Name += "-tls"
		s.TLS = true
		out = append(out, s)
	}
	return out
}

// Scenarios returns the quick or the full set. The full set runs the
// workloads of the design's reference table.
func Scenarios(quick bool) []Scenario {
	if quick {
		return []Scenario{
			{Name: "hold", Kind: "hold", Mode: "echo", Conns: 5000, Procs: 1, Duration: 2 * time.Second, Settle: 2 * time.Second},
			{Name: "echo", Kind: "echo", Mode: "echo", Conns: 100, Procs: 1, Duration: 5 * time.Second, Warmup: time.Second, Size: 64, Inflight: 1},
			{Name: "ticker-1", Kind: "ticker", Mode: "ticker", Conns: 5000, Procs: 1, Duration: 5 * time.Second, Warmup: time.Second, Interval: 100 * time.Millisecond, Symbols: 1, MsgSize: 128},
			{Name: "ticker-20", Kind: "ticker", Mode: "ticker", Conns: 2000, Procs: 1, Duration: 5 * time.Second, Warmup: time.Second, Interval: 500 * time.Millisecond, Symbols: 20, MsgSize: 128},
			{Name: "churn", Kind: "churn", Mode: "ticker", Conns: 2000, Procs: 1, Duration: 5 * time.Second, Warmup: time.Second, Interval: 100 * time.Millisecond, Symbols: 1, MsgSize: 128, ChurnConc: 16},
		}
	}
	return []Scenario{
		{Name: "hold", Kind: "hold", Mode: "echo", Conns: 15000, Procs: 2, Duration: 3 * time.Second, Settle: 3 * time.Second},
		{Name: "echo", Kind: "echo", Mode: "echo", Conns: 1000, Procs: 1, Duration: 10 * time.Second, Warmup: 2 * time.Second, Size: 64, Inflight: 1},
		{Name: "ticker-1", Kind: "ticker", Mode: "ticker", Conns: 10000, Procs: 1, Duration: 10 * time.Second, Warmup: 2 * time.Second, Interval: 100 * time.Millisecond, Symbols: 1, MsgSize: 128},
		{Name: "ticker-20", Kind: "ticker", Mode: "ticker", Conns: 4000, Procs: 1, Duration: 10 * time.Second, Warmup: 2 * time.Second, Interval: 500 * time.Millisecond, Symbols: 20, MsgSize: 128},
		{Name: "churn", Kind: "churn", Mode: "ticker", Conns: 4000, Procs: 1, Duration: 10 * time.Second, Warmup: 2 * time.Second, Interval: 100 * time.Millisecond, Symbols: 1, MsgSize: 128, ChurnConc: 64},
	}
}
