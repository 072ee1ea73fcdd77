package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldws/herald/benchmarks/internal/histo"
	"github.com/heraldws/herald/benchmarks/internal/limits"
	"github.com/heraldws/herald/benchmarks/internal/loadgen"
	"github.com/heraldws/herald/benchmarks/internal/procstat"
	"github.com/heraldws/herald/benchmarks/internal/report"
	"github.com/heraldws/herald/benchmarks/internal/runner"
)

// Env is where a run happens.
type Env struct {
	Bins   Bins
	LogDir string
	// CPUs pins the servers, the broker and the publisher to CPUs.Server
	// and the load generators to CPUs.Load ("" leaves a side unpinned).
	CPUs     runner.CPUSplit
	Progress *runner.Progress // nil logs to stderr
	Label    string           // the servers in the report, "herald 1a2b3c4"
	Machine  report.Machine
	// Tune raises the kernel settings the plan needs (as root), printing
	// each before and after; without it the run only says what it would
	// set.
	Tune bool
	// Force runs even when a limit that blocks the plan (open files,
	// ports, memory) is too low.
	Force bool
	// ProcRoot is where proc is mounted for the limits ("/proc" if empty).
	ProcRoot string
}

// Results is results.json: the harness's format (report.Run, one row per
// scenario: fleet-hold and fleet-ticker) plus the fleet's own
// measurements under "fleet".
type Results struct {
	report.Run
	Fleet *Fleet `json:"fleet"`
}

// Fleet is what only a fleet run measures.
type Fleet struct {
	Plan    Plan            `json:"plan"`
	Layout  []string        `json:"layout"`
	Limits  []string        `json:"limits"`
	Tuning  []limits.Change `json:"tuning,omitempty"` // what -tune changed, or would change
	Tuned   bool            `json:"tuned"`            // the changes were applied
	Waves   []Wave          `json:"waves"`
	Base    Sample          `json:"baseline"`
	Samples []Sample        `json:"samples"` // one per mark, after the settle
	Slabs   []SlabGrowth    `json:"slab_growth,omitempty"`
	Hold    HoldPhase       `json:"hold"`
	Ticker  *TickerPhase    `json:"ticker,omitempty"`
	Stopped []string        `json:"stopped"` // how each process ended
	Errors  []string        `json:"errors,omitempty"`
	Cost    *CostModel      `json:"cost_model,omitempty"`
	// LoadAvg is /proc/loadavg when the run started and when it ended:
	// on a shared machine, how busy the rest of it was.
	LoadAvg []string `json:"loadavg"`
}

// Wave is one group of load generators that connected together.
type Wave struct {
	Mark     int     `json:"mark"` // connections held once it is up
	Conns    int     `json:"conns"`
	Shards   int     `json:"shards"`
	Seconds  float64 `json:"connect_s"` // its slowest load generator's connect phase
	PerS     float64 `json:"connect_per_s"`
	Failures int64   `json:"connect_failures"`
}

// Sample is one reading of every process and of the kernel at a number of
// held connections.
type Sample struct {
	Conns          int             `json:"conns"` // connections the load generators hold
	T              float64         `json:"t_s"`   // seconds since the run started
	ServerRSS      int64           `json:"server_rss_bytes"`
	ServerRSSMin   int64           `json:"server_rss_min_bytes"` // of one server process
	ServerRSSMax   int64           `json:"server_rss_max_bytes"`
	ServerCPUNS    int64           `json:"server_cpu_ns"`
	ServerConns    int             `json:"server_conns"` // open files over the baseline, all servers: the connections they hold
	ServerConnsMin int             `json:"server_conns_min"`
	ServerConnsMax int             `json:"server_conns_max"`
	LoadgenRSS     int64           `json:"loadgen_rss_bytes"`
	BrokerRSS      int64           `json:"broker_rss_bytes"`
	BrokerCPUNS    int64           `json:"broker_cpu_ns"`
	System         procstat.System `json:"system"`
	// Per connection, against the baseline: herald's RSS growth over all
	// servers; the kernel's, slab and TCP buffer pages (both ends of each
	// connection are on this host), without the /proc inodes (see
	// ProcPerConn); the load generators' whole RSS.
	HeraldPerConn  float64 `json:"herald_rss_per_conn"`
	KernelPerConn  float64 `json:"kernel_per_conn"`
	LoadgenPerConn float64 `json:"loadgen_rss_per_conn"`
	// KernelRawPerConn is the growth of Slab and TCP pages as it is;
	// ProcPerConn the part of it that is proc inodes and their dentries
	// (proc_inode_cache in /proc/slabinfo): they exist while something
	// lists /proc/<pid>/fd of the processes (a monitoring agent, lsof),
	// one per descriptor, and are not what a socket costs. 0 without
	// slabinfo (then KernelPerConn is the raw growth).
	KernelRawPerConn float64 `json:"kernel_raw_per_conn"`
	ProcPerConn      float64 `json:"proc_inodes_per_conn"`
}

// SlabGrowth is a slab cache's growth from the baseline to N connections.
type SlabGrowth struct {
	Cache   string  `json:"cache"`
	Bytes   int64   `json:"bytes"`
	PerConn float64 `json:"per_conn"`
}

// HoldPhase sums up the connect and hold.
type HoldPhase struct {
	Connected       int     `json:"connected"`
	ConnectFailures int64   `json:"connect_failures"`
	ConnectS        float64 `json:"connect_s"` // the waves' connect phases added up
	ConnectPerS     float64 `json:"connect_per_s"`
	IdleCPUPct      float64 `json:"server_idle_cpu_pct"` // all servers, over the last settle, of one core
	BrokerRSS       int64   `json:"broker_rss_bytes"`
	// ServerCloses are the connections the servers closed on their own
	// up to the end of the hold (all zero in a valid run), as ServersHeard
	// of them report it.
	ServerCloses closeCounts `json:"server_closes"`
	ServersHeard int         `json:"servers_heard"`
}

// TickerPhase is what ticking to every connection did.
type TickerPhase struct {
	Ticks          int     `json:"ticks"`
	IntervalS      float64 `json:"interval_s"`
	Expected       int64   `json:"expected"`
	Received       int64   `json:"received"`
	DeliveredRatio float64 `json:"delivered_ratio"`
	Gaps           int64   `json:"gaps"`
	Reordered      int64   `json:"reordered"`
	Dropped        int64   `json:"dropped"`
	ProtocolErrors int64   `json:"protocol_errors"`
	P50US          float64 `json:"p50_us"`
	P99US          float64 `json:"p99_us"`
	P999US         float64 `json:"p999_us"`
	MaxUS          float64 `json:"max_us"`
	Seconds        float64 `json:"seconds"` // first tick to the last delivery counted
	ServerCPUNS    int64   `json:"server_cpu_ns"`
	ServerCPUUS    float64 `json:"server_cpu_us_per_delivery"`
	// ServerNetCPUUS leaves out what the servers spend idle with every
	// connection held (ServerIdleCPUNS: keepalive pings and timers, at
	// the hold's idle rate over the ticks' span): the deliveries' own cost.
	ServerNetCPUUS  float64 `json:"server_net_cpu_us_per_delivery"`
	ServerIdleCPUNS int64   `json:"server_idle_cpu_ns"`
	BrokerCPUNS     int64   `json:"broker_cpu_ns"`
	BrokerCPUUS     float64 `json:"broker_cpu_us_per_tick"`
	LoadgenCPUNS    int64   `json:"loadgen_cpu_ns"`
	LoadgenCPUUS    float64 `json:"loadgen_cpu_us_per_delivery"`
	PeakServerRSS   int64   `json:"peak_server_rss_bytes"`
	Complete        bool    `json:"complete"` // every expected delivery was counted
	// ServerCloses are the connections the servers closed on their own
	// during the ticks, as ServersHeard of them report it.
	ServerCloses closeCounts `json:"server_closes"`
	ServersHeard int         `json:"servers_heard"`
	latencyH     string
}

// lgProc is a running load generator.
type lgProc struct {
	*runner.Proc
	shard     Shard
	connected chan map[string]any
	progress  atomic.Int64 // connected so far
	received  atomic.Int64 // deliveries inside the window, from interval events
	gaps      atomic.Int64
	// lost counts held connections dropped before the window (from
	// "dropped" events); lostWhy is the load generator's first errors.
	lost    atomic.Int64
	lostWhy atomic.Value // []any
}

type run struct {
	env  Env
	plan Plan
	t0   time.Time
	fl   *Fleet

	broker        *service
	brokerURL     string
	brokerVersion string
	monitor       string
	servers       []*service
	addr          string
	baseFDs       []int
	lgs           []*lgProc
	pub           *service
	results       []*loadgen.Result
	merged        *loadgen.Result
}

var (
	listenRE  = regexp.MustCompile(`listening on (\S+)`)
	clientRE  = regexp.MustCompile(`Listening for client connections on (\S+)`)
	monitorRE = regexp.MustCompile(`Starting http monitor on (\S+)`)
	versionRE = regexp.MustCompile(`Version:\s+(\S+)`)
)

func (r *run) step(format string, args ...any) {
	msg := fmt.Sprintf("fleet %d: ", r.plan.Conns) + fmt.Sprintf(format, args...)
	if r.env.Progress != nil {
		r.env.Progress.Step(msg)
		return
	}
	fmt.Fprintln(os.Stderr, msg)
}

func (r *run) log(format string, args ...any) {
	if r.env.Progress != nil {
		r.env.Progress.Log(format, args...)
		return
	}
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

func (r *run) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.fl.Errors = append(r.fl.Errors, msg)
	r.log("note: %s", msg)
}

// Run runs plan: broker, servers, the waves of load generators with a
// memory sample after each, the ticker phase, and a clean stop of
// everything.
func Run(ctx context.Context, env Env, plan Plan) (*Results, error) {
	if env.ProcRoot == "" {
		env.ProcRoot = "/proc"
	}
	if err := os.MkdirAll(env.LogDir, 0o755); err != nil {
		return nil, err
	}
	r := &run{env: env, plan: plan, t0: time.Now(), fl: &Fleet{Plan: plan, Layout: plan.Describe(), LoadAvg: []string{loadavg(env.ProcRoot)}}}
	for _, line := range r.fl.Layout {
		r.log("  %s", line)
	}
	defer r.cleanup()
	if err := r.limits(); err != nil {
		return nil, err
	}
	if err := r.startBroker(ctx); err != nil {
		return nil, err
	}
	if err := r.startServers(ctx); err != nil {
		return nil, err
	}
	if err := r.hold(ctx); err != nil {
		return nil, err
	}
	if err := r.tick(ctx); err != nil {
		return nil, err
	}
	r.fl.LoadAvg = append(r.fl.LoadAvg, loadavg(env.ProcRoot))
	r.stopAll()
	return r.finish()
}

// loadavg is the first three fields of /proc/loadavg.
func loadavg(procRoot string) string {
	b, err := os.ReadFile(filepath.Join(procRoot, "loadavg"))
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// Preflight prints plan and checks this host's limits against it,
// printing what Tune would change (or, with env.Tune as root, changing
// it), without starting anything. It fails as Run would on a limit that
// blocks the plan.
func Preflight(env Env, plan Plan) error {
	if env.ProcRoot == "" {
		env.ProcRoot = "/proc"
	}
	r := &run{env: env, plan: plan, t0: time.Now(), fl: &Fleet{Plan: plan, Layout: plan.Describe()}}
	for _, line := range r.fl.Layout {
		r.log("  %s", line)
	}
	return r.limits()
}

// limits checks the host against the plan, raises what -tune may, and
// refuses a plan that cannot work.
func (r *run) limits() error {
	if _, err := limits.RaiseNofile(); err != nil {
		r.log("could not raise the open-files limit: %v", err)
	}
	lim, err := limits.Read(r.env.ProcRoot)
	if err != nil {
		return err
	}
	lp := r.limitsPlan()
	fs := limits.Check(lim, lp)
	switch {
	case r.env.Tune && os.Geteuid() != 0:
		r.log("-tune needs root; not changing anything")
		r.fl.Tuning = limits.Tune(r.env.ProcRoot, fs, false)
	case r.env.Tune:
		r.fl.Tuning = limits.Tune(r.env.ProcRoot, fs, true)
		r.fl.Tuned = true
		if len(r.fl.Tuning) > 0 {
			r.log("tuned the kernel for this run (before -> after):")
			for _, c := range r.fl.Tuning {
				r.log("  %s", c)
			}
		} else {
			r.log("-tune: nothing to change")
		}
		if lim, err = limits.Read(r.env.ProcRoot); err != nil {
			return err
		}
		fs = limits.Check(lim, lp)
	default:
		r.fl.Tuning = limits.Tune(r.env.ProcRoot, fs, false)
		if len(r.fl.Tuning) > 0 {
			r.log("with -tune (as root) the run would set (now -> then):")
			for _, c := range r.fl.Tuning {
				r.log("  %s", c)
			}
		}
	}
	r.log("limits for %d connections (%d servers, %d load generators, %d source addresses, at most %d files per process):",
		lp.Conns, lp.ServerProcs, lp.LoadProcs, lp.SrcAddrs, lp.PerProcFDs)
	var blocking []string
	for _, f := range fs {
		r.fl.Limits = append(r.fl.Limits, f.String())
		r.log("  %s", f)
		if !f.OK && f.Blocks {
			blocking = append(blocking, f.What)
		}
	}
	if len(blocking) > 0 {
		if !r.env.Force {
			return fmt.Errorf("limits too low for this plan: %s (raise them, -tune as root, or -force)", strings.Join(blocking, ", "))
		}
		r.note("running with limits too low: %s", strings.Join(blocking, ", "))
	}
	return nil
}

func (r *run) limitsPlan() limits.Plan {
	return limits.Plan{Conns: r.plan.Conns, ServerProcs: r.plan.Servers, LoadProcs: len(r.plan.Shards), LoadHosts: 1,
		SrcAddrs: r.plan.SrcAddrs, DstAddrs: 1, Pending: r.plan.Pending, PerConnBytes: 1024,
		PerProcFDs: max(r.plan.MaxPerServer, r.plan.MaxShard()+FDSpare)}
}

func (r *run) logPath(name string) string { return filepath.Join(r.env.LogDir, name+".log") }

// startBroker starts nats-server on free loopback ports, with its
// monitoring endpoint.
func (r *run) startBroker(ctx context.Context) error {
	r.step("starting the broker")
	b, err := startBroker(ctx, r.env.Bins.Broker, r.env.CPUs.Server, r.logPath("nats-server"))
	if b != nil {
		r.broker, r.brokerURL, r.monitor, r.brokerVersion = b.service, b.url, b.monitor, b.version
	}
	return err
}

// broker is a running nats-server: url is for clients, monitor its HTTP
// monitoring endpoint.
type broker struct {
	*service
	url, monitor, version string
}

// startBroker starts nats-server on free loopback ports, pinned to cpus,
// with its monitoring endpoint, and waits until it is ready. A broker
// that started but did not become ready is returned with the error, for
// the caller to stop.
func startBroker(ctx context.Context, bin, cpus, logPath string) (*broker, error) {
	var mu sync.Mutex
	b := &broker{}
	var client, mon string
	ready := make(chan struct{})
	var once sync.Once
	s, err := startService("nats-server", []string{bin, "-a", "127.0.0.1", "-p", "-1", "-m", "-1"}, cpus, logPath,
		func(line string) {
			mu.Lock()
			defer mu.Unlock()
			if m := clientRE.FindStringSubmatch(line); m != nil {
				client = m[1]
			}
			if m := monitorRE.FindStringSubmatch(line); m != nil {
				mon = m[1]
			}
			if m := versionRE.FindStringSubmatch(line); m != nil && b.version == "" {
				b.version = m[1]
			}
			if strings.Contains(line, "Server is ready") {
				once.Do(func() { close(ready) })
			}
		})
	if err != nil {
		return nil, err
	}
	b.service = s
	if err := waitFor(ctx, "nats-server ready", time.Minute, 20*time.Millisecond,
		func() bool {
			select {
			case <-ready:
				return true
			default:
				return false
			}
		},
		func() error {
			if s.exited() {
				return errors.New(s.failure())
			}
			return nil
		}); err != nil {
		return b, err
	}
	mu.Lock()
	defer mu.Unlock()
	if client == "" || mon == "" {
		return b, fmt.Errorf("nats-server did not say where it listens (see %s)", logPath)
	}
	b.url, b.monitor = "nats://"+client, "http://"+mon
	return b, nil
}

// startServers starts the first ticker node on a free port, then the
// others on the same port (SO_REUSEPORT), every one a fan-out node that
// publishes nothing itself, and waits until all of them are connected to
// the broker.
func (r *run) startServers(ctx context.Context) error {
	r.step("starting %d herald ticker processes", r.plan.Servers)
	args := func(addr string) []string {
		return []string{r.env.Bins.Ticker, "-addr", addr, "-reuseport", "-nats", r.brokerURL, "-publish=false",
			"-symbols", strconv.Itoa(r.plan.Symbols), "-size", strconv.Itoa(r.plan.MsgSize), "-loops", strconv.Itoa(r.plan.Loops), "-interval", "1s",
			"-ping-interval", r.plan.PingInterval.String(), "-pong-timeout", r.plan.PongTimeout.String()}
	}
	var err error
	r.servers, r.addr, err = startNodes(ctx, r.plan.Servers, args, r.env.CPUs.Server, func(i int) string { return r.logPath(fmt.Sprintf("server%02d", i)) })
	if err != nil {
		return err
	}
	r.step("waiting for %d nodes at the broker", r.plan.Servers)
	return waitFor(ctx, "every node connected to the broker", time.Minute, 50*time.Millisecond, func() bool {
		cz, err := r.connz(ctx)
		return err == nil && cz.nodes() == r.plan.Servers
	}, r.alive)
}

// startNodes starts n herald servers pinned to cpus: the first on the
// address argv gives it for "127.0.0.1:0", the others on the port it
// picked (argv must share it, with -reuseport, when n > 1). It returns
// once every one listens there. The processes it started are returned
// even with an error, for the caller to stop.
func startNodes(ctx context.Context, n int, argv func(addr string) []string, cpus string, logPath func(i int) string) ([]*service, string, error) {
	start := func(i int, addr string) (*service, chan string, error) {
		got := make(chan string, 1)
		var once sync.Once
		s, err := startService(fmt.Sprintf("server %d", i), argv(addr), cpus, logPath(i), func(line string) {
			if m := listenRE.FindStringSubmatch(line); m != nil {
				once.Do(func() { got <- m[1] })
			}
		})
		return s, got, err
	}
	wait := func(s *service, got chan string) (string, error) {
		t := time.NewTimer(time.Minute)
		defer t.Stop()
		select {
		case a := <-got:
			return a, nil
		case <-s.done:
			return "", errors.New(s.failure())
		case <-t.C:
			return "", fmt.Errorf("%s did not listen within a minute", s.name)
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	s, got, err := start(0, "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	nodes := []*service{s}
	addr, err := wait(s, got)
	if err != nil {
		return nodes, "", err
	}
	chans := []chan string{got}
	for i := 1; i < n; i++ {
		s, got, err := start(i, addr)
		if err != nil {
			return nodes, addr, err
		}
		nodes = append(nodes, s)
		chans = append(chans, got)
	}
	for i := 1; i < len(nodes); i++ {
		a, err := wait(nodes[i], chans[i])
		if err != nil {
			return nodes, addr, err
		}
		if a != addr {
			return nodes, addr, fmt.Errorf("%s listens on %s, not on the shared %s", nodes[i].name, a, addr)
		}
	}
	return nodes, addr, nil
}

// alive fails once the broker or a server has exited.
func (r *run) alive() error {
	if r.broker != nil && r.broker.exited() {
		return errors.New(r.broker.failure())
	}
	for _, s := range r.servers {
		if s.exited() {
			return errors.New(s.failure())
		}
	}
	// A connection lost while the fleet ramps or holds makes every
	// per-connection figure wrong: stop, and say why.
	for _, l := range r.lgs {
		if n := l.lost.Load(); n > 0 {
			why, _ := l.lostWhy.Load().([]any)
			return fmt.Errorf("load generator %d: %d held connections dropped before the ticks; first: %v; %s", l.shard.Index, n, why, r.closesNote())
		}
	}
	return nil
}

// connz is the broker's /connz with subscriptions.
type connz struct {
	Conns []struct {
		Name string   `json:"name"`
		Subs []string `json:"subscriptions_list"`
	} `json:"connections"`
}

func (r *run) connz(ctx context.Context) (*connz, error) { return readConnz(ctx, r.monitor) }

// readConnz reads /connz with subscriptions from the broker's monitoring
// endpoint.
func readConnz(ctx context.Context, monitor string) (*connz, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, monitor+"/connz?subs=1&limit=100000", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var cz connz
	if err := json.NewDecoder(resp.Body).Decode(&cz); err != nil {
		return nil, err
	}
	return &cz, nil
}

// nodes is the number of herald Bus connections at the broker.
func (cz *connz) nodes() int {
	n := 0
	for _, c := range cz.Conns {
		if c.Name == "herald" {
			n++
		}
	}
	return n
}

// subscribed is the number of herald connections subscribed to every
// subject in subjects.
func (cz *connz) subscribed(subjects []string) int {
	n := 0
	for _, c := range cz.Conns {
		if c.Name != "herald" {
			continue
		}
		have := map[string]bool{}
		for _, s := range c.Subs {
			have[s] = true
		}
		all := true
		for _, s := range subjects {
			all = all && have[s]
		}
		if all {
			n++
		}
	}
	return n
}

// hold samples the idle fleet, then connects each wave and samples after
// it.
func (r *run) hold(ctx context.Context) error {
	r.step("baseline")
	if !runner.SleepFor(ctx, r.plan.Settle) {
		return ctx.Err()
	}
	base, err := r.sample(0)
	if err != nil {
		return err
	}
	r.fl.Base = base
	held := 0
	var cpu0 int64
	var settleAt time.Time
	for w, mark := range r.plan.Marks {
		var wave []*lgProc
		conns := 0
		for _, sh := range r.plan.Shards {
			if sh.Wave != w {
				continue
			}
			l, err := r.startLoadgen(sh)
			if err != nil {
				return err
			}
			r.lgs = append(r.lgs, l)
			wave = append(wave, l)
			conns += sh.Conns
		}
		wv := Wave{Mark: mark, Conns: conns, Shards: len(wave)}
		var slowest float64
		for _, l := range wave {
			ev, err := r.awaitConnected(ctx, l, held, mark)
			if err != nil {
				return err
			}
			ms, _ := ev["connect_ms"].(float64)
			slowest = max(slowest, ms/1e3)
			if f, _ := ev["failed"].(float64); f > 0 {
				wv.Failures += int64(f)
			}
			if c, _ := ev["connected"].(float64); c > 0 {
				r.fl.Hold.Connected += int(c)
			}
		}
		wv.Seconds = slowest
		if slowest > 0 {
			wv.PerS = float64(conns) / slowest
		}
		if wv.Failures > 0 {
			r.note("wave %d: %d connections failed", w+1, wv.Failures)
		}
		r.fl.Waves = append(r.fl.Waves, wv)
		r.fl.Hold.ConnectFailures += wv.Failures
		r.fl.Hold.ConnectS += slowest
		held = mark
		r.log("%d connections held (wave %d of %d: %d in %.1f s, %.0f/s)", held, w+1, len(r.plan.Marks), conns, slowest, wv.PerS)
		r.step("holding %d connections for %v", held, r.plan.Settle)
		settleAt = time.Now()
		if s, err := r.readServers(); err == nil {
			cpu0 = s
		}
		if !runner.SleepFor(ctx, r.plan.Settle) {
			return ctx.Err()
		}
		if err := r.alive(); err != nil {
			return err
		}
		s, err := r.sample(held)
		if err != nil {
			return err
		}
		r.fl.Samples = append(r.fl.Samples, s)
		// The load generators count connections as they come up; what
		// counts is what the servers hold after the settle. A connection
		// lost on the way (a server or a load generator that closed it)
		// would make every per-connection figure wrong.
		if s.ServerConns != held {
			return fmt.Errorf("at the %d mark the servers hold %d connections by their open files (%d–%d each), not %d: connections were lost after they came up; %s",
				held, s.ServerConns, s.ServerConnsMin, s.ServerConnsMax, held, r.closesNote())
		}
		r.log("  at %d: herald %s/conn (%d servers, %d–%d connections each), kernel %s/conn, load generators %s/conn, broker %s",
			held, bytesStr(s.HeraldPerConn), len(r.servers), s.ServerConnsMin, s.ServerConnsMax, bytesStr(s.KernelPerConn), bytesStr(s.LoadgenPerConn), mibStr(s.BrokerRSS))
	}
	last := r.fl.Samples[len(r.fl.Samples)-1]
	if el := time.Since(settleAt); r.plan.Settle > 0 && el > 0 {
		r.fl.Hold.IdleCPUPct = 100 * float64(last.ServerCPUNS-cpu0) / float64(el.Nanoseconds())
	}
	if r.fl.Hold.ConnectS > 0 {
		r.fl.Hold.ConnectPerS = float64(r.fl.Hold.Connected) / r.fl.Hold.ConnectS
	}
	r.fl.Hold.BrokerRSS = last.BrokerRSS
	r.fl.Hold.ServerCloses, r.fl.Hold.ServersHeard, _ = r.serverCloses(ctx)
	r.fl.Slabs = slabGrowth(r.fl.Base.System.Slabs, last.System.Slabs, last.Conns)
	return nil
}

func (r *run) startLoadgen(sh Shard) (*lgProc, error) {
	guard := r.tickGuard()
	args := []string{"-scenario", "ticker", "-addr", r.addr, "-path", "/ws", "-conns", strconv.Itoa(sh.Conns),
		"-shard", "0", "-shards", "1", "-start", "stdin", "-src", sh.Src, "-pending", strconv.Itoa(sh.Pending),
		"-connect-timeout", "30m", "-interval-report", "500ms",
		"-duration", (time.Duration(r.plan.Ticks)*r.plan.TickInterval + 2*guard).String()}
	cmd := exec.Command(r.env.Bins.Loadgen, args...)
	runner.Pin(cmd, r.env.CPUs.Load)
	l := &lgProc{shard: sh, connected: make(chan map[string]any, 1)}
	var err error
	l.Proc, err = runner.StartProc(cmd, r.logPath(fmt.Sprintf("loadgen%02d", sh.Index)), strings.Join(cmd.Args, " "), func(ev []byte) {
		var m map[string]any
		if json.Unmarshal(ev, &m) != nil {
			return
		}
		switch m["event"] {
		case "connecting":
			if c, ok := m["connected"].(float64); ok {
				l.progress.Store(int64(c))
			}
		case "connected":
			if c, ok := m["connected"].(float64); ok {
				l.progress.Store(int64(c))
			}
			select {
			case l.connected <- m:
			default:
			}
		case "dropped":
			if n, ok := m["dropped"].(float64); ok {
				if why, ok := m["errors"].([]any); ok {
					l.lostWhy.Store(why)
				}
				l.lost.Store(int64(n))
			}
		case "interval":
			if n, ok := m["received"].(float64); ok {
				l.received.Add(int64(n))
			}
			if g, ok := m["gaps"].(float64); ok {
				l.gaps.Add(int64(g))
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("start load generator %d: %w", sh.Index, err)
	}
	return l, nil
}

// awaitConnected waits for l's "connected" event, showing the progress of
// every load generator, and fails when nothing has connected for two
// minutes.
func (r *run) awaitConnected(ctx context.Context, l *lgProc, held, mark int) (map[string]any, error) {
	const stall = 2 * time.Minute
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	last, lastAt := int64(-1), time.Now()
	for {
		select {
		case ev := <-l.connected:
			return ev, nil
		case <-l.Done:
			return nil, fmt.Errorf("load generator %d: %s", l.shard.Index, l.Failure())
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
		if err := r.alive(); err != nil {
			return nil, err
		}
		var sum int64
		for _, o := range r.lgs {
			sum += o.progress.Load()
		}
		if sum != last {
			last, lastAt = sum, time.Now()
			r.step("connecting %d/%d (this wave to %d)", sum, r.plan.Conns, mark)
		} else if time.Since(lastAt) > stall {
			return nil, fmt.Errorf("no connection made for %v at %d of %d", stall, sum, mark)
		}
	}
}

// tickGuard bounds the wait for the ticks after the last one went out.
func (r *run) tickGuard() time.Duration {
	return max(2*time.Minute, time.Duration(r.plan.Conns)*200*time.Microsecond)
}

// readServers is the servers' CPU time, added up.
func (r *run) readServers() (int64, error) {
	var cpu int64
	for _, s := range r.servers {
		st, err := procstat.Read(s.pid())
		if err != nil {
			return 0, fmt.Errorf("%s: %w", s.name, err)
		}
		cpu += st.CPUNS
	}
	return cpu, nil
}

// sample reads every process and the kernel with conns connections held.
func (r *run) sample(conns int) (Sample, error) {
	s := Sample{Conns: conns, T: time.Since(r.t0).Seconds(), ServerConnsMin: math.MaxInt}
	fds := make([]int, len(r.servers))
	for i, srv := range r.servers {
		st, err := procstat.Read(srv.pid())
		if err != nil {
			return s, fmt.Errorf("%s: %w", srv.name, err)
		}
		s.ServerRSS += st.RSSBytes
		s.ServerCPUNS += st.CPUNS
		if s.ServerRSSMin == 0 || st.RSSBytes < s.ServerRSSMin {
			s.ServerRSSMin = st.RSSBytes
		}
		s.ServerRSSMax = max(s.ServerRSSMax, st.RSSBytes)
		if fds[i], err = procstat.CountFDs(srv.pid()); err != nil {
			return s, fmt.Errorf("%s: %w", srv.name, err)
		}
	}
	if r.baseFDs == nil {
		r.baseFDs = fds
	}
	for i := range fds {
		c := fds[i] - r.baseFDs[i]
		s.ServerConns += c
		s.ServerConnsMin = min(s.ServerConnsMin, c)
		s.ServerConnsMax = max(s.ServerConnsMax, c)
	}
	for _, l := range r.lgs {
		if st, err := procstat.Read(l.Cmd.Process.Pid); err == nil {
			s.LoadgenRSS += st.RSSBytes
		}
	}
	if st, err := procstat.Read(r.broker.pid()); err == nil {
		s.BrokerRSS, s.BrokerCPUNS = st.RSSBytes, st.CPUNS
	}
	sys, err := procstat.ReadSystem()
	if err != nil {
		return s, err
	}
	s.System = sys
	if conns > 0 {
		b := r.fl.Base
		page := int64(os.Getpagesize())
		s.HeraldPerConn = float64(s.ServerRSS-b.ServerRSS) / float64(conns)
		raw := (sys.SlabBytes - b.System.SlabBytes) + (sys.TCPMemPages-b.System.TCPMemPages)*page
		proc := procInodes(b.System.Slabs, sys.Slabs)
		s.KernelRawPerConn = float64(raw) / float64(conns)
		s.ProcPerConn = float64(proc) / float64(conns)
		s.KernelPerConn = float64(raw-proc) / float64(conns)
		s.LoadgenPerConn = float64(s.LoadgenRSS) / float64(conns)
	}
	return s, nil
}

// procInodes is the growth of the proc inodes and their dentries from
// base to at (0 without slabinfo).
func procInodes(base, at map[string]procstat.Slab) int64 {
	b, ok1 := base["proc_inode_cache"]
	a, ok2 := at["proc_inode_cache"]
	if !ok1 || !ok2 || a.Objs <= b.Objs {
		return 0
	}
	return a.Bytes() - b.Bytes() + (a.Objs-b.Objs)*at["dentry"].ObjSize
}

// slabGrowth is the caches that grew most from base to at, per connection.
func slabGrowth(base, at map[string]procstat.Slab, conns int) []SlabGrowth {
	if base == nil || at == nil || conns == 0 {
		return nil
	}
	var out []SlabGrowth
	for k, v := range at {
		if d := v.Bytes() - base[k].Bytes(); d > 0 {
			out = append(out, SlabGrowth{Cache: k, Bytes: d, PerConn: float64(d) / float64(conns)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Bytes > out[j].Bytes })
	if len(out) > 10 {
		out = out[:10]
	}
	return out
}

// tick opens every load generator's window, publishes the ticks through
// the broker and waits until every connection has received all of them,
// or until deliveries stop.
func (r *run) tick(ctx context.Context) error {
	p := r.plan
	subjects := make([]string, 0, p.Symbols+1)
	for k := 0; k < p.Symbols; k++ {
		subjects = append(subjects, "herald.S"+strconv.Itoa(k))
	}
	subjects = append(subjects, "herald.$batch")
	r.step("waiting for every node's subscriptions at the broker")
	if err := waitFor(ctx, "every node subscribed at the broker", time.Minute, 50*time.Millisecond, func() bool {
		cz, err := r.connz(ctx)
		return err == nil && cz.subscribed(subjects) == p.Servers
	}, r.alive); err != nil {
		return err
	}
	start := time.Now().Add(300 * time.Millisecond)
	for _, l := range r.lgs {
		if _, err := fmt.Fprintf(l.Stdin, "%d\n", start.UnixNano()); err != nil {
			return fmt.Errorf("load generator %d: send the start: %w", l.shard.Index, err)
		}
	}
	if !runner.SleepUntil(ctx, start.Add(50*time.Millisecond), nil) {
		return ctx.Err()
	}
	cpu0, err := r.readServers()
	if err != nil {
		return err
	}
	cpuFrom := time.Now()
	b0, err := procstat.Read(r.broker.pid())
	if err != nil {
		return err
	}
	r.step("ticking %d × every %v", p.Ticks, p.TickInterval)
	pubArgs := []string{r.env.Bins.Publisher, "-nats", r.brokerURL, "-interval", p.TickInterval.String(),
		"-symbols", strconv.Itoa(p.Symbols), "-size", strconv.Itoa(p.MsgSize), "-ticks", strconv.Itoa(p.Ticks)}
	t0 := time.Now()
	if r.pub, err = startService("publisher", pubArgs, r.env.CPUs.Server, r.logPath("tickpub"), nil); err != nil {
		return err
	}
	tp := &TickerPhase{Ticks: p.Ticks, IntervalS: p.TickInterval.Seconds(), Expected: p.Expected()}
	quiet := max(10*time.Second, 3*p.TickInterval)
	guard := time.Duration(p.Ticks)*p.TickInterval + r.tickGuard()
	var last int64 = -1
	lastAt, lastSample := time.Now(), time.Time{}
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	pubReported := false
	for {
		var got int64
		for _, l := range r.lgs {
			got += l.received.Load()
		}
		now := time.Now()
		if got != last {
			last, lastAt = got, now
			r.step("ticking: %d of %d deliveries", got, tp.Expected)
		}
		if now.Sub(lastSample) >= time.Second {
			lastSample = now
			var rss int64
			for _, s := range r.servers {
				if st, err := procstat.Read(s.pid()); err == nil {
					rss += st.RSSBytes
				}
			}
			tp.PeakServerRSS = max(tp.PeakServerRSS, rss)
		}
		if got >= tp.Expected {
			tp.Complete = true
			break
		}
		if r.pub.exited() && !pubReported {
			pubReported = true
			if r.pub.err != nil {
				r.note("the publisher failed: %s", r.pub.failure())
			}
		}
		if r.pub.exited() && now.Sub(lastAt) > quiet {
			r.note("deliveries stopped at %d of %d (nothing for %v after the last tick)", got, tp.Expected, quiet)
			break
		}
		if now.Sub(t0) > guard {
			r.note("hang guard: %d of %d deliveries after %v", got, tp.Expected, guard)
			break
		}
		if err := r.alive(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-poll.C:
		}
	}
	tp.Seconds = lastAt.Sub(t0).Seconds()
	cpu1, err := r.readServers()
	if err != nil {
		return err
	}
	// What the servers spend idle (keepalive, timers), measured at the
	// end of the hold, over the same span.
	tp.ServerIdleCPUNS = int64(r.fl.Hold.IdleCPUPct / 100 * float64(time.Since(cpuFrom).Nanoseconds()))
	b1, err := procstat.Read(r.broker.pid())
	if err != nil {
		return err
	}
	tp.ServerCPUNS, tp.BrokerCPUNS = cpu1-cpu0, b1.CPUNS-b0.CPUNS
	// What the servers closed by now, less what they had closed before
	// the ticks.
	if closes, heard, err := r.serverCloses(ctx); err == nil && heard == r.fl.Hold.ServersHeard {
		tp.ServerCloses = closes.Minus(r.fl.Hold.ServerCloses)
		tp.ServersHeard = heard
	}
	if tp.Ticks > 0 {
		tp.BrokerCPUUS = float64(tp.BrokerCPUNS) / 1e3 / float64(tp.Ticks)
	}

	// End every window: each load generator writes its result and exits.
	r.step("collecting the load generators' results")
	for _, l := range r.lgs {
		l.Signal()
	}
	for _, l := range r.lgs {
		t := time.NewTimer(2 * time.Minute)
		select {
		case <-l.Done:
		case <-t.C:
			t.Stop()
			return fmt.Errorf("load generator %d did not end its window within 2 minutes", l.shard.Index)
		}
		t.Stop()
		if l.Err != nil {
			return fmt.Errorf("load generator %d: %s", l.shard.Index, l.Failure())
		}
		rs, err := loadgen.ReadResults(&l.Stdout)
		if err != nil || len(rs) != 1 {
			return fmt.Errorf("load generator %d: result: %v", l.shard.Index, err)
		}
		r.results = append(r.results, rs[0])
	}
	m, err := loadgen.Merge(r.results...)
	if err != nil {
		return err
	}
	r.merged = m
	tp.Received, tp.Gaps, tp.Reordered, tp.Dropped, tp.ProtocolErrors = m.Received, m.Gaps, m.Reordered, m.Dropped, m.ProtocolErrors
	tp.LoadgenCPUNS = m.ClientCPUNS
	if tp.Expected > 0 {
		tp.DeliveredRatio = float64(m.Received) / float64(tp.Expected)
	}
	if m.Received > 0 {
		tp.ServerCPUUS = float64(tp.ServerCPUNS) / 1e3 / float64(m.Received)
		tp.ServerNetCPUUS = max(0, float64(tp.ServerCPUNS-tp.ServerIdleCPUNS)) / 1e3 / float64(m.Received)
		tp.LoadgenCPUUS = float64(tp.LoadgenCPUNS) / 1e3 / float64(m.Received)
	}
	if e, ok := m.Hist[loadgen.HistLatency]; ok {
		h, err := histo.Decode(e)
		if err != nil {
			return err
		}
		s := histo.Summarize(h)
		tp.P50US, tp.P99US, tp.P999US, tp.MaxUS = s.P50, s.P99, s.P999, s.Max
		tp.latencyH = string(e)
	}
	if len(m.Errors) > 0 {
		r.note("load generators reported: %s", strings.Join(m.Errors[:min(3, len(m.Errors))], "; "))
	}
	r.fl.Ticker = tp
	r.log("ticks: %d of %d delivered (%.4f), %d gaps, p50 %s p99 %s p99.9 %s max %s; servers %.2f µs CPU per delivery, broker %.0f µs per tick",
		tp.Received, tp.Expected, tp.DeliveredRatio, tp.Gaps, usStr(tp.P50US), usStr(tp.P99US), usStr(tp.P999US), usStr(tp.MaxUS), tp.ServerCPUUS, tp.BrokerCPUUS)
	return nil
}

// stopAll stops the publisher, the servers (in parallel) and the broker,
// and records how each ended.
func (r *run) stopAll() {
	r.step("stopping")
	if r.pub != nil {
		if err := r.pub.stop(10 * time.Second); err != nil {
			r.note("publisher: %v", err)
		}
		r.fl.Stopped = append(r.fl.Stopped, "publisher: "+exitStr(r.pub.err))
		r.pub = nil
	}
	errs := make([]error, len(r.servers))
	var wg sync.WaitGroup
	for i, s := range r.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.stop(30 * time.Second)
		}()
	}
	wg.Wait()
	clean := 0
	for i, err := range errs {
		if err != nil {
			r.note("%s: %v", r.servers[i].name, err)
		} else {
			clean++
		}
	}
	r.fl.Stopped = append(r.fl.Stopped, fmt.Sprintf("servers: %d of %d exited cleanly on SIGTERM", clean, len(r.servers)))
	r.servers = nil
	if r.broker != nil {
		err := r.broker.stop(10 * time.Second)
		if err != nil {
			r.note("nats-server: %v", err)
		}
		r.fl.Stopped = append(r.fl.Stopped, "nats-server: "+exitStr(err))
		r.broker = nil
	}
}

// cleanup ends whatever a failed run left running.
func (r *run) cleanup() {
	// A load generator still waiting for its window's start reads stdin:
	// closing it ends the wait, the signal ends anything else. All at
	// once, so that a million connections' worth of them stop in seconds.
	var lwg sync.WaitGroup
	for _, l := range r.lgs {
		lwg.Add(1)
		go func() {
			defer lwg.Done()
			l.Signal()
			_ = l.Stdin.Close()
			l.Stop(10 * time.Second)
		}()
	}
	lwg.Wait()
	if r.pub != nil {
		_ = r.pub.stop(5 * time.Second)
	}
	var wg sync.WaitGroup
	for _, s := range r.servers {
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.stop(10 * time.Second) }()
	}
	wg.Wait()
	if r.broker != nil {
		_ = r.broker.stop(5 * time.Second)
	}
}

func exitStr(err error) string {
	if err == nil {
		return "exited cleanly"
	}
	return err.Error()
}
