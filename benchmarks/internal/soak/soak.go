package soak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/heraldws/herald/benchmarks/internal/histo"
	"github.com/heraldws/herald/benchmarks/internal/loadgen"
	"github.com/heraldws/herald/benchmarks/internal/procstat"
	"github.com/heraldws/herald/benchmarks/internal/runner"
)

// Group is a set of load generator processes of a run with the same flags
// (shards of one another).
type Group struct {
	Name  string   `json:"name"`
	Procs int      `json:"procs"`
	Src   []string `json:"src"`  // source addresses, one entry (a range) per process
	Args  []string `json:"args"` // loadgen flags besides -addr, -shard(s), -src, -start, -duration, -warmup, -interval-report
	// Before: connected before the readers' window opens, and measured
	// over the same window. Otherwise the group starts At after the
	// window opened and runs until it closes.
	Before bool          `json:"before,omitempty"`
	At     time.Duration `json:"at_ns,omitempty"`
}

// Plan is one run against a fresh ticker.
type Plan struct {
	Name      string        `json:"name"`
	Ticker    TickerOpts    `json:"ticker"`
	Readers   int           `json:"readers"`    // healthy subscribers of every symbol, latency measured
	ReaderSrc string        `json:"reader_src"` // their source addresses
	Duration  time.Duration `json:"duration_ns"`
	Warmup    time.Duration `json:"warmup_ns"`
	Sample    time.Duration `json:"sample_ns"`   // RSS and /stats (default 1 s)
	Interval  time.Duration `json:"interval_ns"` // the readers' latency percentiles (default 5 s)
	Groups    []Group       `json:"groups"`
}

// Env is where plans run.
type Env struct {
	Ticker, Loadgen string // binaries
	LogDir          string
	CPUs            runner.CPUSplit
	Log             func(format string, args ...any)
}

// Sample is one reading of the server.
type Sample struct {
	T      float64            `json:"t_s"` // seconds since the ticker started
	RSS    int64              `json:"rss_bytes"`
	CPUNS  int64              `json:"cpu_ns"`
	Server map[string]float64 `json:"server,omitempty"` // /stats
	Hub    map[string]float64 `json:"hub,omitempty"`
	Err    string             `json:"error,omitempty"`
}

// Interval is the readers' latency over one interval, and the hostile
// connections open at its end.
type Interval struct {
	Start float64          `json:"start_s"`
	T     float64          `json:"t_s"` // end, seconds since the ticker started
	N     int64            `json:"received"`
	Gaps  int64            `json:"gaps"`
	P50   float64          `json:"p50_us"`
	P99   float64          `json:"p99_us"`
	Max   float64          `json:"max_us"`
	Open  map[string]int64 `json:"open,omitempty"` // hostile connections open, per kind
	hist  histo.Encoded
}

// Latency summarises the readers over a span.
type Latency struct {
	From, To float64 `json:"-"`
	histo.Summary
	Received int64 `json:"received"`
	Gaps     int64 `json:"gaps"`
}

// Result is one plan's measurements.
type Result struct {
	Plan        Plan                          `json:"plan"`
	Date        string                        `json:"date"`
	WindowStart float64                       `json:"window_start_s"` // the readers' window, seconds since the ticker started
	WindowEnd   float64                       `json:"window_end_s"`
	HostileAt   float64                       `json:"hostile_at_s,omitempty"` // when the first group that is not Before started
	IdleRSS     int64                         `json:"idle_rss_bytes"`         // before any client
	PeakRSS     int64                         `json:"peak_rss_bytes"`
	PeakAt      float64                       `json:"peak_at_s"`
	Readers     Latency                       `json:"readers"` // the whole window
	Baseline    *Latency                      `json:"readers_baseline,omitempty"`
	Hostile     *Latency                      `json:"readers_hostile,omitempty"` // from HostileAt on
	Dropped     int64                         `json:"readers_dropped"`
	Connected   int                           `json:"readers_connected"`
	Kinds       map[string]*loadgen.KindStats `json:"kinds,omitempty"`
	Churn       *Churn                        `json:"churn,omitempty"`
	Policy      map[string]float64            `json:"policy"` // /stats counters: differences over the window
	Samples     []Sample                      `json:"samples"`
	Intervals   []Interval                    `json:"intervals"`
	LatencyHist histo.Encoded                 `json:"latency_hist,omitempty"`
	Errors      []string                      `json:"errors,omitempty"`
}

// Churn is what the churn group did.
type Churn struct {
	Conc     int     `json:"conc"`
	Cycles   int64   `json:"cycles"`
	PerS     float64 `json:"per_s"`
	Failures int64   `json:"failures"`
}

// lgProc is a running load generator process of a group.
type lgProc struct {
	*runner.Proc
	group     string
	shard     int
	connected chan struct{}
	kinds     map[string]*loadgen.KindStats // latest interval snapshot
}

func (p *lgProc) failure() error {
	return fmt.Errorf("loadgen %s/%d: %s", p.group, p.shard, p.Failure())
}

// run is the state of one plan's run.
type run struct {
	env   *Env
	plan  Plan
	t0    time.Time
	tk    *Ticker
	mu    sync.Mutex
	res   *Result
	procs []*lgProc
}

func (r *run) since(t time.Time) float64 { return t.Sub(r.t0).Seconds() }

func (r *run) log(format string, args ...any) {
	if r.env.Log != nil {
		r.env.Log(format, args...)
	}
}

// Run runs plan against a fresh ticker and returns its measurements.
func Run(ctx context.Context, env *Env, plan Plan) (*Result, error) {
	if plan.Sample <= 0 {
		plan.Sample = time.Second
	}
	if plan.Interval <= 0 {
		plan.Interval = 5 * time.Second
	}
	if plan.Warmup <= 0 {
		plan.Warmup = 2 * time.Second
	}
	r := &run{env: env, plan: plan, res: &Result{Plan: plan, Date: time.Now().UTC().Format(time.RFC3339), Policy: map[string]float64{}}}
	logf, err := os.Create(filepath.Join(env.LogDir, plan.Name+".ticker.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	r.log("%s: starting the ticker (%s)", plan.Name, strings.Join(plan.Ticker.Args(), " "))
	r.t0 = time.Now()
	r.tk, err = StartTicker(ctx, env.Ticker, plan.Ticker, env.CPUs.Server, logf)
	if err != nil {
		return nil, err
	}
	defer r.tk.Stop()
	defer func() {
		for _, p := range r.procs {
			p.Stop(10 * time.Second)
		}
	}()
	// The idle RSS, once the runtime has settled from its start.
	if !runner.SleepFor(ctx, 500*time.Millisecond) {
		return nil, ctx.Err()
	}
	if r.res.IdleRSS, err = r.tk.RSS(); err != nil {
		return nil, err
	}
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go r.sample(ctx, stopSampling, sampled)
	err = r.drive(ctx)
	close(stopSampling)
	<-sampled
	if err != nil {
		return r.res, err
	}
	return r.res, r.finish()
}

// sample reads the ticker's RSS, CPU and /stats every plan.Sample.
func (r *run) sample(ctx context.Context, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(r.plan.Sample)
	defer tick.Stop()
	for {
		now := time.Now()
		s := Sample{T: r.since(now)}
		if ps, err := procstat.Read(r.tk.Pid()); err == nil {
			s.RSS, s.CPUNS = ps.RSSBytes, ps.CPUNS
		} else {
			s.Err = err.Error()
		}
		sctx, cancel := context.WithTimeout(ctx, r.plan.Sample*3)
		if st, err := r.tk.Stats(sctx); err == nil {
			s.Server, s.Hub = st.Server, st.Hub
		} else if s.Err == "" {
			s.Err = "/stats: " + err.Error()
		}
		cancel()
		r.mu.Lock()
		r.res.Samples = append(r.res.Samples, s)
		if s.RSS > r.res.PeakRSS {
			r.res.PeakRSS, r.res.PeakAt = s.RSS, s.T
		}
		r.mu.Unlock()
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-r.tk.Done():
			return
		case <-tick.C:
		}
	}
}

// drive starts the load generators in order and waits for the window.
func (r *run) drive(ctx context.Context) error {
	p := r.plan
	var stdinProcs []*lgProc
	waitConnected := func(ps []*lgProc, what string) error {
		guard := time.After(5 * time.Minute)
		for _, lp := range ps {
			select {
			case <-lp.connected:
			case <-lp.Done:
				return lp.failure()
			case <-r.tk.Done():
				return fmt.Errorf("the ticker exited while %s connected (%v)", what, r.tk.err)
			case <-guard:
				return fmt.Errorf("%s took over 5 minutes to connect", what)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	window := []string{"-start", "stdin", "-duration", p.Duration.String(), "-interval-report", p.Interval.String()}
	for _, g := range p.Groups {
		if !g.Before {
			continue
		}
		r.log("%s: connecting %s (%d process(es))", p.Name, g.Name, g.Procs)
		ps, err := r.startGroup(g, window)
		if err != nil {
			return err
		}
		if err := waitConnected(ps, g.Name); err != nil {
			return err
		}
		stdinProcs = append(stdinProcs, ps...)
	}
	readers := Group{Name: "readers", Procs: 1, Src: []string{p.ReaderSrc},
		Args: []string{"-scenario", "ticker", "-path", "/ws", "-conns", strconv.Itoa(p.Readers)}}
	r.log("%s: connecting %d readers", p.Name, p.Readers)
	rp, err := r.startGroup(readers, window)
	if err != nil {
		return err
	}
	// The readers measure: the hostile load generators on the same CPUs
	// must not delay them.
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, rp[0].Cmd.Process.Pid, -10)
	if err := waitConnected(rp, "the readers"); err != nil {
		return err
	}
	stdinProcs = append(stdinProcs, rp...)
	start := time.Now().Add(p.Warmup)
	for _, lp := range stdinProcs {
		if _, err := fmt.Fprintf(lp.Stdin, "%d\n", start.UnixNano()); err != nil {
			return fmt.Errorf("send the start time: %w", err)
		}
	}
	end := start.Add(p.Duration)
	r.res.WindowStart, r.res.WindowEnd = r.since(start), r.since(end)
	r.log("%s: window of %v opens at %.1f s", p.Name, p.Duration, r.res.WindowStart)
	var later []*lgProc
	groups := append([]Group(nil), p.Groups...)
	sort.SliceStable(groups, func(i, j int) bool { return groups[i].At < groups[j].At })
	for _, g := range groups {
		if g.Before {
			continue
		}
		if !runner.SleepUntil(ctx, start.Add(g.At), r.tk.Done()) {
			return errors.New("interrupted")
		}
		if r.res.HostileAt == 0 {
			r.res.HostileAt = r.since(time.Now())
		}
		r.log("%s: starting %s at %.0f s into the window", p.Name, g.Name, g.At.Seconds())
		// Ended by a signal when the readers' window closes; the
		// duration is only a bound.
		ps, err := r.startGroup(g, []string{"-warmup", "0s", "-duration", (p.Duration + time.Hour).String(), "-interval-report", p.Interval.String()})
		if err != nil {
			return err
		}
		later = append(later, ps...)
	}
	select {
	case <-rp[0].Done:
	case <-r.tk.Done():
		return fmt.Errorf("the ticker exited during the window (%v)", r.tk.err)
	case <-ctx.Done():
		return ctx.Err()
	}
	for _, lp := range later {
		lp.Signal()
	}
	guard := time.After(2 * time.Minute)
	for _, lp := range r.procs {
		select {
		case <-lp.Done:
		case <-guard:
			return fmt.Errorf("loadgen %s/%d did not finish", lp.group, lp.shard)
		}
	}
	return nil
}

// startGroup starts g's processes with the extra flags.
func (r *run) startGroup(g Group, extra []string) ([]*lgProc, error) {
	var out []*lgProc
	for i := 0; i < g.Procs; i++ {
		args := append([]string{"-addr", r.tk.Addr(), "-shard", strconv.Itoa(i), "-shards", strconv.Itoa(g.Procs)}, g.Args...)
		if i < len(g.Src) && g.Src[i] != "" {
			args = append(args, "-src", g.Src[i])
		}
		args = append(args, extra...)
		lp, err := r.startLoadgen(g.Name, i, args)
		if err != nil {
			return nil, err
		}
		out = append(out, lp)
	}
	return out, nil
}

func (r *run) startLoadgen(group string, shard int, args []string) (*lgProc, error) {
	cmd := exec.Command(r.env.Loadgen, args...)
	runner.Pin(cmd, r.env.CPUs.Load)
	lp := &lgProc{group: group, shard: shard, connected: make(chan struct{})}
	connected := false
	var err error
	lp.Proc, err = runner.StartProc(cmd, filepath.Join(r.env.LogDir, fmt.Sprintf("%s.%s%d.log", r.plan.Name, group, shard)),
		"loadgen "+strings.Join(args, " "), func(ev []byte) {
			var m map[string]json.RawMessage
			if json.Unmarshal(ev, &m) != nil {
				return
			}
			switch string(m["event"]) {
			case `"connected"`:
				if !connected {
					connected = true
					close(lp.connected)
				}
			case `"interval"`:
				r.interval(lp, m)
			}
		})
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.procs = append(r.procs, lp)
	r.mu.Unlock()
	return lp, nil
}

// interval records an "interval" event: the readers' latency, or a hostile
// group's counters.
func (r *run) interval(lp *lgProc, m map[string]json.RawMessage) {
	var ev struct {
		StartNS  int64                         `json:"start_ns"`
		EndNS    int64                         `json:"end_ns"`
		Received int64                         `json:"received"`
		Gaps     int64                         `json:"gaps"`
		P50      float64                       `json:"p50_us"`
		P99      float64                       `json:"p99_us"`
		Max      float64                       `json:"max_us"`
		Latency  histo.Encoded                 `json:"latency"`
		Kinds    map[string]*loadgen.KindStats `json:"kinds"`
	}
	b, _ := json.Marshal(m)
	if json.Unmarshal(b, &ev) != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if lp.group != "readers" {
		if ev.Kinds != nil {
			lp.kinds = ev.Kinds
		}
		return
	}
	iv := Interval{Start: r.since(time.Unix(0, ev.StartNS)), T: r.since(time.Unix(0, ev.EndNS)), N: ev.Received, Gaps: ev.Gaps,
		P50: ev.P50, P99: ev.P99, Max: ev.Max, hist: ev.Latency, Open: map[string]int64{}}
	for _, p := range r.procs {
		for k, v := range p.kinds {
			iv.Open[k] += v.Open
		}
	}
	r.res.Intervals = append(r.res.Intervals, iv)
}

// finish computes the result from the processes' outputs and the samples.
func (r *run) finish() error {
	res := r.res
	for _, lp := range r.procs {
		if lp.Err != nil {
			return lp.failure()
		}
		rs, err := loadgen.ReadResults(&lp.Stdout)
		if err != nil || len(rs) != 1 {
			return fmt.Errorf("loadgen %s/%d result: %v", lp.group, lp.shard, err)
		}
		lr := rs[0]
		for _, e := range lr.Errors {
			if len(res.Errors) < 20 {
				res.Errors = append(res.Errors, lp.group+": "+e)
			}
		}
		for k, v := range lr.Kinds {
			if res.Kinds == nil {
				res.Kinds = map[string]*loadgen.KindStats{}
			}
			if res.Kinds[k] == nil {
				res.Kinds[k] = &loadgen.KindStats{}
			}
			res.Kinds[k].Add(v)
		}
		switch {
		case lp.group == "readers":
			res.Connected, res.Dropped = lr.Connected, lr.Dropped
			res.Readers.Received, res.Readers.Gaps = lr.Received, lr.Gaps
			res.LatencyHist = lr.Hist[loadgen.HistLatency]
			if h, err := histo.Decode(res.LatencyHist); err == nil {
				res.Readers.Summary = histo.Summarize(h)
			}
		case lr.Scenario == loadgen.Churn:
			if res.Churn == nil {
				res.Churn = &Churn{}
			}
			res.Churn.Conc += lr.ChurnConc
			res.Churn.Cycles += lr.ChurnCycles
			res.Churn.Failures += lr.ChurnFailures
			if lr.WindowNS > 0 {
				res.Churn.PerS += lr.ChurnPerSec()
			}
		}
	}
	res.Readers.From, res.Readers.To = res.WindowStart, res.WindowEnd
	if res.HostileAt > 0 {
		res.Baseline = r.span(res.WindowStart, res.HostileAt)
		res.Hostile = r.span(res.HostileAt, res.WindowEnd)
	}
	// The policy counters over the window: the last sample at or before
	// its start to the last one in it.
	var a, b *Sample
	for i := range res.Samples {
		s := &res.Samples[i]
		if s.Server == nil {
			continue
		}
		if s.T <= res.WindowStart || a == nil {
			a = s
		}
		if s.T <= res.WindowEnd+r.plan.Sample.Seconds() {
			b = s
		}
	}
	if a != nil && b != nil {
		res.Policy = Delta(Stats{a.Server, a.Hub}, Stats{b.Server, b.Hub})
	}
	return nil
}

// span merges the readers' intervals that lie in [from, to).
func (r *run) span(from, to float64) *Latency {
	h := histo.New()
	l := &Latency{From: from, To: to}
	for _, iv := range r.res.Intervals {
		if iv.Start < from-0.5 || iv.T > to+0.5 || iv.hist == "" {
			continue
		}
		if x, err := histo.Decode(iv.hist); err == nil {
			h.Merge(x)
		}
		l.Received += iv.N
		l.Gaps += iv.Gaps
	}
	l.Summary = histo.Summarize(h)
	return l
}
