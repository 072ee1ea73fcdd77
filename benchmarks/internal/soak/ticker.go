// Package soak runs herald's ticker example under slow and hostile clients
// for a long time and reports what its memory budget and slow-consumer
// policies did: the server's RSS against the configured budget, healthy
// readers' latency over time, the policy counters from the ticker's /stats,
// and how each hostile kind's connections ended. It also runs the stall
// experiment (readers' p99 without and with thousands of stalled
// subscribers).
package soak

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/heraldws/herald/benchmarks/internal/procstat"
	"github.com/heraldws/herald/benchmarks/internal/runner"
)

// TickerOpts are the ticker example's flags for a run.
type TickerOpts struct {
	Interval  time.Duration // -interval
	Symbols   int           // -symbols
	Size      int           // -size
	Budget    int64         // -max-outbound-total
	HighWater int           // -high-water
	// MemoryLimit is -memory-limit, the process's memory budget (the Go
	// runtime's soft limit); 0 leaves the ticker's default.
	MemoryLimit int64
}

// Args returns the ticker's command-line flags after -addr.
func (o TickerOpts) Args() []string {
	args := []string{"-interval", o.Interval.String(), "-symbols", strconv.Itoa(o.Symbols), "-size", strconv.Itoa(o.Size),
		"-max-outbound-total", strconv.FormatInt(o.Budget, 10), "-high-water", strconv.Itoa(o.HighWater)}
	if o.MemoryLimit != 0 {
		args = append(args, "-memory-limit", strconv.FormatInt(o.MemoryLimit, 10))
	}
	return args
}

// Rate is the bytes per second the ticker publishes to one subscriber of
// every symbol (frame headers aside).
func (o TickerOpts) Rate() float64 {
	return float64(o.Symbols*o.Size) / o.Interval.Seconds()
}

// Ticker is a running ticker example.
type Ticker struct {
	cmd    *exec.Cmd
	addr   string
	done   chan struct{}
	err    error
	client *http.Client
}

var listenRE = regexp.MustCompile(`listening on (\S+)`)

// StartTicker starts the ticker binary on a free loopback port, pinned to
// cpus ("" for no pinning), its output going to log, and waits until it
// listens.
func StartTicker(ctx context.Context, bin string, o TickerOpts, cpus string, log io.Writer) (*Ticker, error) {
	return startTickerArgs(ctx, bin, o.Args(), cpus, log)
}

func startTickerArgs(ctx context.Context, bin string, args []string, cpus string, log io.Writer) (*Ticker, error) {
	cmd := exec.Command(bin, append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	runner.Pin(cmd, cpus)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = log
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the ticker: %w", err)
	}
	t := &Ticker{cmd: cmd, done: make(chan struct{}),
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
			DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}}}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		found := false
		for sc.Scan() {
			fmt.Fprintln(log, sc.Text())
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil && !found {
				found = true
				addr <- m[1]
			}
		}
	}()
	go func() {
		t.err = cmd.Wait()
		close(t.done)
	}()
	guard := time.NewTimer(time.Minute)
	defer guard.Stop()
	select {
	case t.addr = <-addr:
		return t, nil
	case <-t.done:
		return nil, fmt.Errorf("the ticker exited before listening: %v", t.err)
	case <-guard.C:
		t.Stop()
		return nil, fmt.Errorf("the ticker did not print its address within a minute")
	case <-ctx.Done():
		t.Stop()
		return nil, ctx.Err()
	}
}

// Addr is the ticker's host:port.
func (t *Ticker) Addr() string { return t.addr }

// Pid is the ticker's process id (taskset execs it, so it is the ticker's).
func (t *Ticker) Pid() int { return t.cmd.Process.Pid }

// Done is closed when the ticker has exited.
func (t *Ticker) Done() <-chan struct{} { return t.done }

// Stop sends SIGTERM, then SIGKILL after 5 s.
func (t *Ticker) Stop() {
	select {
	case <-t.done:
		return
	default:
	}
	_ = t.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-t.done:
	case <-time.After(5 * time.Second):
		_ = t.cmd.Process.Kill()
		<-t.done
	}
}

// RSS is the ticker's VmRSS now.
func (t *Ticker) RSS() (int64, error) {
	s, err := procstat.Read(t.Pid())
	return s.RSSBytes, err
}

// Stats is the ticker's /stats: the engine's and the hub's counters, by
// their Go field names (engine.Stats, broadcast.Stats).
type Stats struct {
	Server map[string]float64 `json:"server"`
	Hub    map[string]float64 `json:"hub"`
}

// Stats fetches /stats.
func (t *Ticker) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.addr+"/stats", nil)
	if err != nil {
		return st, err
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("/stats: %s", resp.Status)
	}
	// The counters are numbers; a few fields are nested (closes by code,
	// the publish latency histogram), which the soak does not use.
	var raw struct {
		Server map[string]any `json:"server"`
		Hub    map[string]any `json:"hub"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		return st, err
	}
	st.Server, st.Hub = numbers(raw.Server), numbers(raw.Hub)
	return st, nil
}

// numbers keeps the numeric fields of m.
func numbers(m map[string]any) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k, v := range m {
		if f, ok := v.(float64); ok {
			out[k] = f
		}
	}
	return out
}

// Delta is b − a for every counter in b, keyed "server.Name" and
// "hub.Name". Gauges (Active, OutboundBytes, Topics, Subscriptions) are
// left out: a difference of them means nothing.
func Delta(a, b Stats) map[string]float64 {
	out := map[string]float64{}
	for prefix, pair := range map[string][2]map[string]float64{"server": {a.Server, b.Server}, "hub": {a.Hub, b.Hub}} {
		for k, v := range pair[1] {
			if gauges[k] {
				continue
			}
			out[prefix+"."+k] = v - pair[0][k]
		}
	}
	return out
}

var gauges = map[string]bool{"Active": true, "OutboundBytes": true, "Topics": true, "Subscriptions": true}
