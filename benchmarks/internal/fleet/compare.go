package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldws/herald/benchmarks/internal/histo"
	"github.com/heraldws/herald/benchmarks/internal/loadgen"
	"github.com/heraldws/herald/benchmarks/internal/procstat"
	"github.com/heraldws/herald/benchmarks/internal/report"
	"github.com/heraldws/herald/benchmarks/internal/runner"
)

// CompareTarget is the scale-out goal: the ticker spread over processes
// through NATS costs at most this many times the single process's server
// CPU per delivered message, measured in the same run.
const CompareTarget = 1.15

// Modes of a comparison's measurements.
const (
	ModeSingle  = "single"
	ModeCluster = "cluster"
)

// CompareConfig is what a comparison runs: for each scenario, Pairs times
// the single process and then the cluster, alternating, so that both see
// the same machine as its load drifts.
type CompareConfig struct {
	Scenarios []runner.Scenario // ticker scenarios: runner.Scenarios' ticker-1 and ticker-20
	Pairs     int
	Nodes     int    // herald processes of the cluster, on one port
	Src       string // the load generators' source addresses (loadgen -src)
	// Tolerance is how far from 1 the delivered ratio of a valid
	// measurement may be (0: one tick's share of the window + 2%). The
	// ratio counts deliveries received inside the window, so a tick at
	// either edge may fall in or out of it.
	Tolerance float64
}

// CompareResults is a comparison's results.json: the harness's format (a
// row per mode and scenario, from the pair with the median ratio) plus the
// comparison's own measurements under "cluster".
type CompareResults struct {
	report.Run
	Cluster *Comparison `json:"cluster"`
}

// Comparison is every measurement of a comparison and its ratios.
type Comparison struct {
	Nodes     int        `json:"nodes"`
	Target    float64    `json:"target"`
	Pairs     int        `json:"pairs"`
	Publisher string     `json:"publisher"` // who publishes the cluster's ticks, and why
	Workloads []Workload `json:"workloads"`
	// LoadAvg is /proc/loadavg when the run started and when it ended.
	LoadAvg []string `json:"loadavg"`
	// LoadWait says whether the run waited for the machine's load to
	// fall before it started, and what the load was then.
	LoadWait string `json:"load_wait,omitempty"`
}

// Workload is one scenario's pairs and their median ratio.
type Workload struct {
	Scenario string  `json:"scenario"`
	Describe string  `json:"describe"`
	Pairs    []Pair  `json:"pairs"`
	Valid    int     `json:"valid_pairs"`
	Median   float64 `json:"median_ratio"` // of the valid pairs' ratios; 0 without one
	Met      bool    `json:"met"`          // Median ≤ the target, with at least one valid pair
}

// Pair is a single-process measurement, the cluster measurement after it,
// and the ratio of their server CPU per delivery.
type Pair struct {
	Single  Measurement `json:"single"`
	Cluster Measurement `json:"cluster"`
	Ratio   float64     `json:"ratio"` // cluster ÷ single; 0 unless both are valid
}

// Measurement is one window of one mode: the herald processes' CPU over it
// per delivery received in it, and whether every delivery arrived.
type Measurement struct {
	Mode     string  `json:"mode"`
	Conns    int     `json:"conns"`
	Loadgens int     `json:"loadgen_procs"`
	WindowS  float64 `json:"window_s"`
	Expected float64 `json:"expected"` // deliveries the window should hold: subscribers × symbols × ticks
	Received int64   `json:"received"`
	Ratio    float64 `json:"delivered_ratio"`

	Connected       int   `json:"connected"`
	ConnectFailures int64 `json:"connect_failures"`
	Gaps            int64 `json:"gaps"`
	Reordered       int64 `json:"reordered"`
	Dropped         int64 `json:"dropped"`
	ProtocolErrors  int64 `json:"protocol_errors"`

	ServerCPUNS  int64   `json:"server_cpu_ns"` // the herald processes' user + system time in the window, added up
	ServerCPUUS  float64 `json:"server_cpu_us_per_delivery"`
	ServerCPUPct float64 `json:"server_cpu_pct"` // of one core
	NodeCPUNS    []int64 `json:"node_cpu_ns"`    // each herald process's
	// NodeConns are the connections each herald process held (its open
	// files over those before the load generators connected): how the
	// kernel spread them over the shared port.
	NodeConns      []int   `json:"node_conns"`
	ServerRSS      int64   `json:"server_rss_bytes"` // at the window's end, added up
	BrokerCPUNS    int64   `json:"broker_cpu_ns,omitempty"`
	BrokerCPUUS    float64 `json:"broker_cpu_us_per_delivery,omitempty"`
	PublisherCPUNS int64   `json:"publisher_cpu_ns,omitempty"`
	PublisherCPUUS float64 `json:"publisher_cpu_us_per_delivery,omitempty"`
	LoadgenCPUUS   float64 `json:"loadgen_cpu_us_per_delivery"`

	P50US    float64 `json:"p50_us"`
	P99US    float64 `json:"p99_us"`
	P999US   float64 `json:"p999_us"`
	latencyH string

	// LoadAvg is /proc/loadavg at the window's start and end.
	LoadAvg []string `json:"loadavg"`
	Valid   bool     `json:"valid"`
	// Invalid says why a measurement does not count: deliveries missing,
	// connections lost, a process that failed.
	Invalid string   `json:"invalid,omitempty"`
	Stopped []string `json:"stopped"` // how each process ended
}

// Compare runs cfg: for each scenario, Pairs times the single process and
// then the cluster. A measurement that fails is recorded as invalid and
// the run goes on; only the context ends it early.
func Compare(ctx context.Context, env Env, cfg CompareConfig) (*CompareResults, error) {
	if env.ProcRoot == "" {
		env.ProcRoot = "/proc"
	}
	if cfg.Pairs < 1 || cfg.Nodes < 1 || len(cfg.Scenarios) == 0 {
		return nil, fmt.Errorf("a comparison needs a scenario, a pair and a node (have %d, %d, %d)", len(cfg.Scenarios), cfg.Pairs, cfg.Nodes)
	}
	if err := os.MkdirAll(env.LogDir, 0o755); err != nil {
		return nil, err
	}
	t0 := time.Now()
	cmp := &Comparison{Nodes: cfg.Nodes, Target: CompareTarget, Pairs: cfg.Pairs, LoadAvg: []string{loadavg(env.ProcRoot)},
		Publisher: "nats/cmd/tickpub: every herald process of the cluster then does the same work (receive from the broker, decode, fan out), and the ticks cost the servers nothing, as the single process's own ticks (one per interval) cost it next to nothing; its CPU is reported beside the servers'"}
	brokerVersion := ""
	for _, sc := range cfg.Scenarios {
		wl := Workload{Scenario: sc.Name, Describe: sc.Describe()}
		for i := range cfg.Pairs {
			var p Pair
			for _, mode := range []string{ModeSingle, ModeCluster} {
				m, version, err := measure(ctx, env, cfg, sc, mode, i+1)
				if err != nil {
					return nil, err
				}
				if version != "" {
					brokerVersion = version
				}
				env.Progress.Finish()
				say(env, "%s %s %d/%d: %s", sc.Name, mode, i+1, cfg.Pairs, m.summary())
				if mode == ModeSingle {
					p.Single = m
				} else {
					p.Cluster = m
				}
			}
			if p.Single.Valid && p.Cluster.Valid && p.Single.ServerCPUUS > 0 {
				p.Ratio = p.Cluster.ServerCPUUS / p.Single.ServerCPUUS
			}
			wl.Pairs = append(wl.Pairs, p)
		}
		wl.Median, wl.Valid = medianRatio(wl.Pairs)
		wl.Met = wl.Valid > 0 && wl.Median <= CompareTarget
		cmp.Workloads = append(cmp.Workloads, wl)
	}
	cmp.LoadAvg = append(cmp.LoadAvg, loadavg(env.ProcRoot))
	res := &CompareResults{Cluster: cmp}
	res.Date = t0.UTC().Format(time.RFC3339)
	res.Machine = env.Machine
	res.Versions = []string{env.Label, "nats-server " + brokerVersion}
	res.CPUs = env.CPUs.Describe()
	for _, sc := range cfg.Scenarios {
		res.Scenario = append(res.Scenario, sc.Describe())
	}
	for _, wl := range cmp.Workloads {
		res.Rows = append(res.Rows, wl.rows(env.Label, cfg.Nodes)...)
	}
	return res, nil
}

// medianRatio is the median of the valid pairs' ratios and how many there
// are.
func medianRatio(pairs []Pair) (float64, int) {
	var rs []float64
	for _, p := range pairs {
		if p.Ratio > 0 {
			rs = append(rs, p.Ratio)
		}
	}
	if len(rs) == 0 {
		return 0, 0
	}
	sort.Float64s(rs)
	n := len(rs)
	if n%2 == 1 {
		return rs[n/2], n
	}
	return (rs[n/2-1] + rs[n/2]) / 2, n
}

func say(env Env, format string, args ...any) {
	if env.Progress != nil {
		env.Progress.Log(format, args...)
		return
	}
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

func step(env Env, format string, args ...any) {
	if env.Progress != nil {
		env.Progress.Step(fmt.Sprintf(format, args...))
	}
}

// procs are the processes of one measurement.
type procs struct {
	broker *broker
	nodes  []*service
	pub    *service
	lgs    []*runner.Proc
}

// alive fails once a process of the measurement has exited before its
// time.
func (p *procs) alive() error {
	if p.broker != nil && p.broker.exited() {
		return errors.New(p.broker.failure())
	}
	if p.pub != nil && p.pub.exited() {
		return errors.New(p.pub.failure())
	}
	for _, s := range p.nodes {
		if s.exited() {
			return errors.New(s.failure())
		}
	}
	return nil
}

// stop ends every process, the load generators first (they are done by
// then, unless the measurement failed), and says how each ended; clean is
// false unless every server, the publisher and the broker exited cleanly
// on SIGTERM.
func (p *procs) stop() (out []string, clean bool) {
	clean = true
	for _, l := range p.lgs {
		_ = l.Stdin.Close() // ends a wait for the window's start
		l.Stop(5 * time.Second)
	}
	ended := func(name string, err error) {
		out = append(out, name+": "+exitStr(err))
		clean = clean && err == nil
	}
	if p.pub != nil {
		ended("publisher", p.pub.stop(10*time.Second))
	}
	errs := make([]error, len(p.nodes))
	var wg sync.WaitGroup
	for i, s := range p.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = s.stop(30 * time.Second) }()
	}
	wg.Wait()
	for i, err := range errs {
		ended(p.nodes[i].name, err)
	}
	if p.broker != nil {
		ended("nats-server", p.broker.stop(10*time.Second))
	}
	return out, clean
}

// cpu is the CPU time of each of ss, and their sum.
func cpu(ss []*service) ([]int64, int64, error) {
	each := make([]int64, len(ss))
	var sum int64
	for i, s := range ss {
		if s == nil {
			continue
		}
		st, err := procstat.Read(s.pid())
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", s.name, err)
		}
		each[i] = st.CPUNS
		sum += st.CPUNS
	}
	return each, sum, nil
}

// measure runs one window of sc in mode. Anything that goes wrong but the
// context's end makes the measurement invalid, with why. It also returns
// the broker's version, when it started one.
func measure(ctx context.Context, env Env, cfg CompareConfig, sc runner.Scenario, mode string, pair int) (Measurement, string, error) {
	m := Measurement{Mode: mode, Conns: sc.Conns, Loadgens: sc.Procs, WindowS: sc.Duration.Seconds()}
	p := &procs{}
	err := m.run(ctx, env, cfg, sc, p, fmt.Sprintf("%s-%s-%d", sc.Name, mode, pair))
	version := ""
	if p.broker != nil {
		version = p.broker.version
	}
	stopped, clean := p.stop()
	m.Stopped = stopped
	switch {
	case ctx.Err() != nil:
		return m, version, ctx.Err()
	case err != nil:
		m.Valid, m.Invalid = false, err.Error()
	case !clean:
		m.Valid, m.Invalid = false, "a process did not stop cleanly: "+strings.Join(stopped, "; ")
	}
	return m, version, nil
}

// run starts the servers (and in the cluster the broker and the
// publisher), connects the load generators, and measures the window.
func (m *Measurement) run(ctx context.Context, env Env, cfg CompareConfig, sc runner.Scenario, p *procs, tag string) error {
	logPath := func(name string) string { return filepath.Join(env.LogDir, tag+"."+name+".log") }
	cpus := env.CPUs
	var addr string
	var err error
	nodeLog := func(i int) string { return logPath(fmt.Sprintf("server%d", i)) }
	step(env, "%s %s: starting", sc.Name, m.Mode)
	if m.Mode == ModeCluster {
		if p.broker, err = startBroker(ctx, env.Bins.Broker, cpus.Server, logPath("nats-server")); err != nil {
			return err
		}
		argv := func(addr string) []string {
			return append([]string{env.Bins.Ticker, "-addr", addr, "-reuseport", "-nats", p.broker.url, "-publish=false"}, sc.ServerFlags()...)
		}
		if p.nodes, addr, err = startNodes(ctx, cfg.Nodes, argv, cpus.Server, nodeLog); err != nil {
			return err
		}
		if err := waitFor(ctx, "every node connected to the broker", time.Minute, 50*time.Millisecond, func() bool {
			cz, err := readConnz(ctx, p.broker.monitor)
			return err == nil && cz.nodes() == cfg.Nodes
		}, p.alive); err != nil {
			return err
		}
		// The publisher starts with the servers, as the single process
		// ticks from its start.
		pubArgs := []string{env.Bins.Publisher, "-nats", p.broker.url, "-interval", sc.Interval.String(),
			"-symbols", strconv.Itoa(sc.Symbols), "-size", strconv.Itoa(sc.MsgSize)}
		if p.pub, err = startService("publisher", pubArgs, cpus.Server, logPath("tickpub"), nil); err != nil {
			return err
		}
	} else {
		argv := func(addr string) []string {
			return append([]string{env.Bins.Single, "-addr", addr}, sc.ServerFlags()...)
		}
		if p.nodes, addr, err = startNodes(ctx, 1, argv, cpus.Server, nodeLog); err != nil {
			return err
		}
	}
	// As the runner, before its first sample of the server.
	if !runner.SleepFor(ctx, 500*time.Millisecond) {
		return ctx.Err()
	}
	baseFDs := make([]int, len(p.nodes))
	for i, s := range p.nodes {
		if baseFDs[i], err = procstat.CountFDs(s.pid()); err != nil {
			return err
		}
	}
	step(env, "%s %s: connecting %d", sc.Name, m.Mode, sc.Conns)
	for shard := range sc.Procs {
		l, err := startLoadgen(env, cfg, sc, addr, shard, logPath(fmt.Sprintf("loadgen%d", shard)))
		if err != nil {
			return err
		}
		p.lgs = append(p.lgs, l.Proc)
		if err := l.awaitConnected(ctx, p); err != nil {
			return err
		}
	}
	active := 0
	for i, s := range p.nodes {
		fds, err := procstat.CountFDs(s.pid())
		if err != nil {
			return err
		}
		m.NodeConns = append(m.NodeConns, fds-baseFDs[i])
		if fds > baseFDs[i] {
			active++
		}
	}
	if p.broker != nil {
		// A node subscribes at the broker once its first subscriber of a
		// symbol arrives; the window waits for every node that has one.
		subjects := []string{"herald.$batch"}
		for k := range sc.Symbols {
			subjects = append(subjects, "herald.S"+strconv.Itoa(k))
		}
		if err := waitFor(ctx, "every node with subscribers subscribed at the broker", time.Minute, 50*time.Millisecond, func() bool {
			cz, err := readConnz(ctx, p.broker.monitor)
			return err == nil && cz.subscribed(subjects) == active
		}, p.alive); err != nil {
			return err
		}
	}

	start := time.Now().Add(sc.Warmup + 200*time.Millisecond)
	for _, l := range p.lgs {
		if _, err := fmt.Fprintf(l.Stdin, "%d\n", start.UnixNano()); err != nil {
			return fmt.Errorf("send the start time: %w", err)
		}
	}
	step(env, "%s %s: warming up", sc.Name, m.Mode)
	if !runner.SleepUntil(ctx, start, nil) {
		return ctx.Err()
	}
	others := []*service{p.pub, nil}
	if p.broker != nil {
		others[1] = p.broker.service
	}
	n0, s0, err := cpu(p.nodes)
	if err != nil {
		return err
	}
	o0, _, err := cpu(others)
	if err != nil {
		return err
	}
	m.LoadAvg = []string{loadavg(env.ProcRoot)}
	step(env, "%s %s: measuring for %v", sc.Name, m.Mode, sc.Duration)
	if !runner.SleepUntil(ctx, start.Add(sc.Duration), nil) {
		return ctx.Err()
	}
	n1, s1, err := cpu(p.nodes)
	if err != nil {
		return fmt.Errorf("a server exited during the window (%w)", err)
	}
	o1, _, err := cpu(others)
	if err != nil {
		return fmt.Errorf("the publisher or the broker exited during the window (%w)", err)
	}
	m.LoadAvg = append(m.LoadAvg, loadavg(env.ProcRoot))
	for i := range n1 {
		m.NodeCPUNS = append(m.NodeCPUNS, n1[i]-n0[i])
	}
	m.ServerCPUNS = s1 - s0
	m.PublisherCPUNS, m.BrokerCPUNS = o1[0]-o0[0], o1[1]-o0[1]
	for _, s := range p.nodes {
		if st, err := procstat.Read(s.pid()); err == nil {
			m.ServerRSS += st.RSSBytes
		}
	}
	if err := p.alive(); err != nil {
		return err
	}
	res, err := collect(p.lgs)
	if err != nil {
		return err
	}
	m.fill(sc, res, cfg.Tolerance)
	return nil
}

// compareLoadgen is a load generator of a measurement.
type compareLoadgen struct {
	*runner.Proc
	connected chan struct{}
}

// maxPending bounds the connections in connect or handshake at once over
// a measurement's load generators, as the runner does: below the servers'
// listen backlog, so that no SYN is dropped and retried a second later.
const maxPending = 256

// startLoadgen starts shard of sc's load generators with the runner's
// arguments: the window starts at the time written to its stdin.
func startLoadgen(env Env, cfg CompareConfig, sc runner.Scenario, addr string, shard int, logPath string) (*compareLoadgen, error) {
	args := []string{"-scenario", sc.Kind, "-addr", addr, "-path", sc.Path(), "-conns", strconv.Itoa(sc.Conns),
		"-shard", strconv.Itoa(shard), "-shards", strconv.Itoa(sc.Procs), "-start", "stdin",
		"-duration", sc.Duration.String(), "-src", cfg.Src, "-pending", strconv.Itoa(max(1, maxPending/sc.Procs))}
	cmd := exec.Command(env.Bins.Loadgen, args...)
	runner.Pin(cmd, env.CPUs.Load)
	l := &compareLoadgen{connected: make(chan struct{})}
	var once sync.Once
	var err error
	l.Proc, err = runner.StartProc(cmd, logPath, strings.Join(cmd.Args, " "), func(ev []byte) {
		if strings.Contains(string(ev), `"event":"connected"`) {
			once.Do(func() { close(l.connected) })
		}
	})
	if err != nil {
		return nil, fmt.Errorf("start the load generator: %w", err)
	}
	return l, nil
}

// awaitConnected waits until every connection of l is up (or given up).
func (l *compareLoadgen) awaitConnected(ctx context.Context, p *procs) error {
	guard := time.NewTimer(3 * time.Minute)
	defer guard.Stop()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-l.connected:
			return nil
		case <-l.Done:
			return errors.New("load generator: " + l.Failure())
		case <-guard.C:
			return errors.New("the connect phase took over 3 minutes")
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if err := p.alive(); err != nil {
				return err
			}
		}
	}
}

// collect waits for the load generators' results (each writes it when its
// window ends) and merges them.
func collect(lgs []*runner.Proc) (*loadgen.Result, error) {
	var results []*loadgen.Result
	for _, l := range lgs {
		t := time.NewTimer(30 * time.Second)
		select {
		case <-l.Done:
		case <-t.C:
			t.Stop()
			return nil, errors.New("a load generator did not end within 30 s of its window")
		}
		t.Stop()
		if l.Err != nil {
			return nil, errors.New("load generator: " + l.Failure())
		}
		rs, err := loadgen.ReadResults(&l.Stdout)
		if err != nil || len(rs) != 1 {
			return nil, fmt.Errorf("load generator result: %v", err)
		}
		results = append(results, rs[0])
	}
	return loadgen.Merge(results...)
}

// fill computes m from the merged load generators' result and decides
// whether every delivery arrived.
func (m *Measurement) fill(sc runner.Scenario, res *loadgen.Result, tolerance float64) {
	m.Received, m.Gaps, m.Reordered, m.Dropped, m.ProtocolErrors = res.Received, res.Gaps, res.Reordered, res.Dropped, res.ProtocolErrors
	m.Connected, m.ConnectFailures = res.Connected, res.ConnectFailures
	m.ServerCPUPct = 100 * float64(m.ServerCPUNS) / float64(sc.Duration.Nanoseconds())
	if res.Received > 0 {
		per := func(ns int64) float64 { return float64(ns) / 1e3 / float64(res.Received) }
		m.ServerCPUUS, m.BrokerCPUUS, m.PublisherCPUUS, m.LoadgenCPUUS = per(m.ServerCPUNS), per(m.BrokerCPUNS), per(m.PublisherCPUNS), per(res.ClientCPUNS)
	}
	if e, ok := res.Hist[loadgen.HistLatency]; ok {
		if h, err := histo.Decode(e); err == nil {
			s := histo.Summarize(h)
			m.P50US, m.P99US, m.P999US = s.P50, s.P99, s.P999
			m.latencyH = string(e)
		}
	}
	m.check(sc, tolerance)
}

// check computes the delivered ratio and decides whether every delivery
// arrived: every connection up, no sequence number missing or repeated,
// no connection dropped, and the ratio within tolerance of 1 (0: one
// tick's share of the window + 2%).
func (m *Measurement) check(sc runner.Scenario, tolerance float64) {
	m.Expected = sc.Expected() * sc.Duration.Seconds()
	if m.Expected > 0 {
		m.Ratio = float64(m.Received) / m.Expected
	}
	if tolerance <= 0 {
		tolerance = sc.Interval.Seconds()/sc.Duration.Seconds() + 0.02
	}
	var why []string
	if m.Connected != sc.Conns || m.ConnectFailures > 0 {
		why = append(why, fmt.Sprintf("%d of %d connections up (%d failed)", m.Connected, sc.Conns, m.ConnectFailures))
	}
	if m.Gaps > 0 || m.Reordered > 0 {
		why = append(why, fmt.Sprintf("%d deliveries missing (sequence gaps), %d repeated", m.Gaps, m.Reordered))
	}
	if m.Dropped > 0 || m.ProtocolErrors > 0 {
		why = append(why, fmt.Sprintf("%d connections dropped, %d protocol errors", m.Dropped, m.ProtocolErrors))
	}
	if m.Ratio < 1-tolerance || m.Ratio > 1+tolerance {
		why = append(why, fmt.Sprintf("delivered ratio %.4f is not within %.3f of 1: the servers did not keep up, or deliveries are missing", m.Ratio, tolerance))
	}
	m.Valid = len(why) == 0
	m.Invalid = strings.Join(why, "; ")
}

// summary is one line for the progress log.
func (m *Measurement) summary() string {
	s := fmt.Sprintf("%.2f µs server CPU per delivery (%.0f%% of a core), delivered %.4f, %d gaps, p99 %s, load %s",
		m.ServerCPUUS, m.ServerCPUPct, m.Ratio, m.Gaps, usStr(m.P99US), strings.Join(m.LoadAvg, " → "))
	if m.Mode == ModeCluster {
		s += fmt.Sprintf("; connections per node %v, broker %.1f ms, publisher %.1f ms", m.NodeConns, float64(m.BrokerCPUNS)/1e6, float64(m.PublisherCPUNS)/1e6)
	}
	if !m.Valid {
		s += "; INVALID: " + m.Invalid
	}
	return s
}
