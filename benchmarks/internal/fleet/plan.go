// Package fleet runs the fleet benchmark: N WebSocket connections held by
// several herald ticker processes that share one port (SO_REUSEPORT) and
// a real NATS broker, from several load generator processes over many
// loopback source addresses; then ticks to all of them through the broker.
// It measures what holding them costs (herald's RSS, the kernel's slab
// and socket memory, the load generators' and the broker's memory) at
// several connection counts on the way to N, and what ticking to all of
// them costs (CPU per delivery, the broker's CPU, publish-to-receive
// latency, delivered ratio, sequence gaps), and writes results.json,
// report.md and an SVG plot of memory against connections.
package fleet

import (
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Plan bounds and defaults.
const (
	// MaxPerProcCap bounds the default connections per process when the
	// open-files limit is high: more processes share the CPUs better than
	// one event loop with a million connections.
	MaxPerProcCap = 250_000
	// FDSpare is what a process holds open besides its connections
	// (listener, epoll, eventfds, the broker connection, pipes, logs).
	FDSpare = 256
	// MinSrcPerShard is the fewest source addresses a load generator gets.
	MinSrcPerShard = 4
	// DefaultPending bounds the connections in connect or handshake at
	// once, over all load generators of a wave.
	DefaultPending = 512
	// TickCostPerConn paces the default tick interval: the interval is
	// at least the connections × this, so that one tick's fan-out (the
	// servers' writes and the load generators' reads, on the same host)
	// ends well before the next. Measured at a million: about 80 µs of
	// CPU per delivery on each side (the servers on the one CPU they are
	// pinned to, the load generators on the other), keepalive included;
	// 13 µs at 100k. Every operation on a socket costs several times more
	// with two million of them on the host: their kernel state no longer
	// fits the caches and the TLB.
	TickCostPerConn = 120 * time.Microsecond
	// MaxTickPhase bounds the default number of ticks: as many as fit in
	// it, at least 3 and at most 10.
	MaxTickPhase = 5 * time.Minute
	// MaxPingsPerSecond paces the servers' keepalive: the ping interval is
	// at least 30 s (the engine's default) and long enough that the whole
	// fleet sends at most this many pings a second. A ping and its pong
	// cost the servers 5 µs at 100k and 50 µs at a million (10,000 a
	// second took half a core); at a million a 30 s interval is 33k a
	// second, and the pongs of a wave's connections, pinged together,
	// waited behind 113 processes on two cores for longer than the pong
	// timeout.
	MaxPingsPerSecond = 5_000
)

// Config is one fleet run. Zero values take the defaults.
type Config struct {
	Conns int // connections held at N (required)
	// PerProc caps the connections of each load generator process and the
	// mean of each server process (0: 90% of the open-files hard limit,
	// rounded down to a thousand, at most MaxPerProcCap).
	PerProc int
	// Servers is the number of herald ticker processes (0: enough for
	// PerProc, and for the kernel's uneven spread to stay under the
	// open-files limit).
	Servers int
	// Marks are the connection counts at which memory is sampled, the
	// last one Conns (nil: 10%, 25%, 50%, 100% of Conns from a million
	// on; quarters below).
	Marks []int
	// SrcPerShard is the source addresses per load generator (0: enough
	// that each (source, server) pair uses at most half the ephemeral
	// port range, and at least MinSrcPerShard).
	SrcPerShard int
	Pending     int           // connects in flight over a wave's load generators (DefaultPending)
	Settle      time.Duration // idle time before each memory sample (default 5 s; negative: none)
	Ticks       int           // ticks in the ticker phase (default: as many as fit in MaxTickPhase, 3 to 10)
	// TickInterval is the time between ticks (0: at least a second and
	// at least Conns × TickCostPerConn).
	TickInterval time.Duration
	Symbols      int // symbols per tick, each a message to every connection (default 1)
	MsgSize      int // bytes per message (default 128)
	Loops        int // event loops per server process (default 1)
	// PingInterval and PongTimeout are the servers' keepalive (0: paced
	// by MaxPingsPerSecond, and a pong timeout of half the interval, at
	// least the engine's 15 s and at least the tick interval: a pong may
	// wait behind a whole tick in a load generator that is still reading
	// it).
	PingInterval time.Duration
	PongTimeout  time.Duration
}

// Shard is one load generator process.
type Shard struct {
	Index   int    `json:"index"`
	Wave    int    `json:"wave"` // the mark its connections count toward
	Conns   int    `json:"conns"`
	Src     string `json:"src"` // its source addresses, a range
	Addrs   int    `json:"addrs"`
	Pending int    `json:"pending"` // its connects in flight
}

// Plan is how a run splits its connections over processes and addresses.
type Plan struct {
	Conns   int `json:"conns"`
	Servers int `json:"servers"`
	PerProc int `json:"per_proc"`
	// MaxPerServer is the most files a server process should need: the
	// mean share plus six standard deviations of the kernel's spread
	// (SO_REUSEPORT hashes each connection to a listener) plus FDSpare.
	MaxPerServer int           `json:"max_per_server_files"`
	Marks        []int         `json:"marks"`
	Shards       []Shard       `json:"shards"`
	SrcAddrs     int           `json:"src_addrs"`
	Pending      int           `json:"pending"`
	Settle       time.Duration `json:"settle_ns"`
	Ticks        int           `json:"ticks"`
	TickInterval time.Duration `json:"tick_interval_ns"`
	Symbols      int           `json:"symbols"`
	MsgSize      int           `json:"msg_size"`
	Loops        int           `json:"loops"`
	PingInterval time.Duration `json:"ping_interval_ns"`
	PongTimeout  time.Duration `json:"pong_timeout_ns"`
}

// Waves is the number of marks (each a wave of load generators).
func (p Plan) Waves() int { return len(p.Marks) }

// MaxShard is the most connections a load generator holds.
func (p Plan) MaxShard() int {
	m := 0
	for _, s := range p.Shards {
		m = max(m, s.Conns)
	}
	return m
}

// Expected is the deliveries the ticker phase should make.
func (p Plan) Expected() int64 { return int64(p.Conns) * int64(p.Symbols) * int64(p.Ticks) }

// DefaultPerProc is the connections per process the open-files hard limit
// allows with room to spare: 90%, rounded down to a thousand (18,000
// under a 20,000 limit), at most MaxPerProcCap.
func DefaultPerProc(hardNofile uint64) int {
	v := hardNofile * 9 / 10
	if v >= 2000 {
		v = v / 1000 * 1000
	}
	if hardNofile > FDSpare && v > hardNofile-FDSpare {
		v = hardNofile - FDSpare
	}
	return int(min(max(v, 1), MaxPerProcCap))
}

// DefaultMarks are the sample points for n connections: 10%, 25%, 50% and
// 100% from a million on (100k, 250k, 500k, 1M), quarters below.
func DefaultMarks(n int) []int {
	fr := []float64{0.25, 0.5, 0.75, 1}
	if n >= 1_000_000 {
		fr = []float64{0.1, 0.25, 0.5, 1}
	}
	var out []int
	for _, f := range fr {
		m := int(math.Round(float64(n) * f))
		if m > 0 && (len(out) == 0 || m > out[len(out)-1]) {
			out = append(out, m)
		}
	}
	return out
}

// ParseMarks reads a comma-separated list of counts ("100000,250000",
// "100k,1M").
func ParseMarks(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := ParseCount(f)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// ParseCount reads a count with an optional k or M suffix ("50k", "1M").
func ParseCount(s string) (int, error) {
	mul := 1
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mul, s = 1000, s[:len(s)-1]
	case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "m"):
		mul, s = 1_000_000, s[:len(s)-1]
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("count %q: want a number, optionally with k or M", s)
	}
	return int(math.Round(v * float64(mul))), nil
}

// NewPlan splits cfg over processes for a host whose open-files hard limit
// is hardNofile and whose ephemeral port range has ports ports.
func NewPlan(cfg Config, hardNofile uint64, ports int) (Plan, error) {
	if cfg.Conns < 1 {
		return Plan{}, fmt.Errorf("fleet: -conns must be at least 1")
	}
	p := Plan{Conns: cfg.Conns, PerProc: cfg.PerProc, Pending: cfg.Pending, Settle: cfg.Settle, Ticks: cfg.Ticks,
		TickInterval: cfg.TickInterval, Symbols: cfg.Symbols, MsgSize: cfg.MsgSize, Loops: cfg.Loops,
		PingInterval: cfg.PingInterval, PongTimeout: cfg.PongTimeout}
	if p.PerProc <= 0 {
		p.PerProc = DefaultPerProc(hardNofile)
	}
	if uint64(p.PerProc+FDSpare) > hardNofile {
		return Plan{}, fmt.Errorf("fleet: %d connections per process and %d spare files exceed the open-files limit (%d)", p.PerProc, FDSpare, hardNofile)
	}
	if p.Pending <= 0 {
		p.Pending = DefaultPending
	}
	switch {
	case p.Settle == 0:
		p.Settle = 5 * time.Second
	case p.Settle < 0:
		p.Settle = 0
	}
	if p.TickInterval <= 0 {
		p.TickInterval = max(time.Second, (time.Duration(p.Conns) * TickCostPerConn).Round(100*time.Millisecond))
	}
	if p.Ticks <= 0 {
		p.Ticks = min(10, max(3, int(MaxTickPhase/p.TickInterval)))
	}
	if p.Symbols <= 0 {
		p.Symbols = 1
	}
	if p.MsgSize <= 0 {
		p.MsgSize = 128
	}
	if p.Loops <= 0 {
		p.Loops = 1
	}
	if p.PingInterval <= 0 {
		p.PingInterval = max(30*time.Second, time.Duration(p.Conns)*time.Second/MaxPingsPerSecond)
	}
	if p.PongTimeout <= 0 {
		p.PongTimeout = max(15*time.Second, p.PingInterval/2, p.TickInterval)
	}

	// Servers: the kernel spreads connections over the listeners by a
	// hash, so a server's share varies around the mean; leave six standard
	// deviations.
	p.Servers = cfg.Servers
	if p.Servers <= 0 {
		p.Servers = (p.Conns + p.PerProc - 1) / p.PerProc
	}
	need := func(s int) int {
		mean := float64(p.Conns) / float64(s)
		return int(math.Ceil(mean+6*math.Sqrt(mean))) + FDSpare
	}
	for cfg.Servers <= 0 && uint64(need(p.Servers)) > hardNofile {
		p.Servers++
	}
	p.MaxPerServer = need(p.Servers)
	if uint64(p.MaxPerServer) > hardNofile {
		return Plan{}, fmt.Errorf("fleet: %d server processes for %d connections may need %d files each, over the open-files limit (%d)", p.Servers, p.Conns, p.MaxPerServer, hardNofile)
	}

	// Marks and waves.
	p.Marks = append([]int(nil), cfg.Marks...)
	if len(p.Marks) == 0 {
		p.Marks = DefaultMarks(p.Conns)
	}
	sort.Ints(p.Marks)
	if p.Marks[len(p.Marks)-1] != p.Conns {
		if p.Marks[len(p.Marks)-1] > p.Conns {
			return Plan{}, fmt.Errorf("fleet: mark %d is past -conns %d", p.Marks[len(p.Marks)-1], p.Conns)
		}
		p.Marks = append(p.Marks, p.Conns)
	}
	prev := 0
	for w, m := range p.Marks {
		if m <= prev {
			return Plan{}, fmt.Errorf("fleet: marks must increase and be positive: %v", p.Marks)
		}
		seg := m - prev
		n := (seg + p.PerProc - 1) / p.PerProc
		for i := 0; i < n; i++ {
			c := seg*(i+1)/n - seg*i/n
			p.Shards = append(p.Shards, Shard{Index: len(p.Shards), Wave: w, Conns: c, Pending: max(1, p.Pending/n)})
		}
		prev = m
	}

	// Source addresses: each shard its own /24 of 127.0.0.0/8 from
	// 127.2.0.0 on, so that shards never share a (source, destination)
	// port space; within it, enough addresses that each pair uses at most
	// half the ephemeral range.
	for i := range p.Shards {
		s := &p.Shards[i]
		k := cfg.SrcPerShard
		if k <= 0 {
			k = max(MinSrcPerShard, (2*s.Conns+max(ports, 1)-1)/max(ports, 1))
		}
		if k > 254 {
			return Plan{}, fmt.Errorf("fleet: shard %d needs %d source addresses, more than a /24 holds: lower -per-proc or widen the port range", i, k)
		}
		hi, mid := 2+i/256, i%256
		if hi > 254 {
			return Plan{}, fmt.Errorf("fleet: %d load generator processes: more than 127.0.0.0/8 has /24s for", len(p.Shards))
		}
		s.Src = fmt.Sprintf("127.%d.%d.1-127.%d.%d.%d", hi, mid, hi, mid, k)
		s.Addrs = k
		p.SrcAddrs += k
	}
	return p, nil
}

// ShardAddrs parses a shard's source addresses.
func (s Shard) ShardAddrs() ([]netip.Addr, error) {
	lo, hi, ok := strings.Cut(s.Src, "-")
	if !ok {
		return nil, fmt.Errorf("shard %d: source %q is not a range", s.Index, s.Src)
	}
	a, err1 := netip.ParseAddr(lo)
	b, err2 := netip.ParseAddr(hi)
	if err1 != nil || err2 != nil || b.Less(a) {
		return nil, fmt.Errorf("shard %d: bad source range %q", s.Index, s.Src)
	}
	var out []netip.Addr
	for x := a; ; x = x.Next() {
		out = append(out, x)
		if x == b {
			return out, nil
		}
	}
}

// Describe is the plan in a few lines, for the log and the report.
func (p Plan) Describe() []string {
	waves := make([]int, len(p.Marks))
	for _, s := range p.Shards {
		waves[s.Wave]++
	}
	var ws []string
	prev := 0
	for w, m := range p.Marks {
		unit := "load generators"
		if waves[w] == 1 {
			unit = "load generator"
		}
		ws = append(ws, fmt.Sprintf("%d → %d (%d %s)", prev, m, waves[w], unit))
		prev = m
	}
	return []string{
		fmt.Sprintf("%d connections; %d herald ticker processes on one port (SO_REUSEPORT, %d event loop(s) each, about %d connections each, at most %d files planned); one nats-server; one tick publisher",
			p.Conns, p.Servers, p.Loops, (p.Conns+p.Servers-1)/p.Servers, p.MaxPerServer),
		fmt.Sprintf("%d load generator processes of at most %d connections, %d source addresses in all (each process its own /24 of 127.0.0.0/8 from 127.2.0.0), at most %d connecting at once per wave",
			len(p.Shards), p.PerProc, p.SrcAddrs, p.Pending),
		"waves, memory sampled after each: " + strings.Join(ws, ", "),
		fmt.Sprintf("ticker phase: %d tick(s) of %d symbol(s) × %d B every %v through the broker: %d deliveries expected",
			p.Ticks, p.Symbols, p.MsgSize, p.TickInterval, p.Expected()),
		fmt.Sprintf("keepalive: the servers ping a client silent for %v and drop it %v after (%.0f pings a second over the fleet)",
			p.PingInterval, p.PongTimeout, float64(p.Conns)/p.PingInterval.Seconds()),
	}
}
