// Package runner drives the benchmark: it starts each server, runs every
// scenario against it with loadgen processes, samples the server from /proc
// and turns the measurements into report rows.
package runner

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/heraldws/herald/benchmarks/internal/histo"
	"github.com/heraldws/herald/benchmarks/internal/loadgen"
	"github.com/heraldws/herald/benchmarks/internal/procstat"
	"github.com/heraldws/herald/benchmarks/internal/report"
)

// Runner holds what every measurement shares.
type Runner struct {
	Loadgen  string // loadgen binary
	LogDir   string
	Progress *Progress
	// Src is the loadgen's source addresses flag.
	Src string
	// CPUs separates the server's CPUs from the load generators'.
	CPUs CPUSplit
	// TLS is the certificate the TLS scenarios' servers are given
	// (nil: no TLS scenario in the run).
	TLS *TLSFiles
}

var listenRE = regexp.MustCompile(`listening on (\S+)`)

// server is a running server process.
type server struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
	err  error
}

func (r *Runner) startServer(ctx context.Context, im *Impl, sc Scenario, tag string) (*server, error) {
	flags := append([]string{"-addr", "127.0.0.1:0"}, sc.ServerFlags()...)
	if sc.TLS {
		if r.TLS == nil {
			return nil, errors.New("a TLS scenario without a certificate (Runner.TLS)")
		}
		flags = append(flags, "-tls-cert", r.TLS.Cert, "-tls-key", r.TLS.Key)
	}
	cmd := im.Command(context.Background(), sc.Mode, flags)
	pin(cmd, r.CPUs.Server)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, err := os.Create(filepath.Join(r.LogDir, tag+".server.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", strings.Join(cmd.Args, " "), err)
	}
	s := &server{cmd: cmd, done: make(chan struct{})}
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		found := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if m := listenRE.FindStringSubmatch(line); m != nil && !found {
				found = true
				addrCh <- m[1]
			}
		}
		_, _ = io.Copy(logf, out)
	}()
	go func() {
		s.err = cmd.Wait()
		logf.Close()
		close(s.done)
	}()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case a := <-addrCh:
		s.addr = a
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("server exited before listening (%v); see %s.server.log", s.err, tag)
	case <-timer.C:
		s.stop()
		return nil, fmt.Errorf("server did not print its address within 30s")
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
}

// stop sends SIGTERM, then SIGKILL after 5 s, to the server's process.
func (s *server) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// lg is a running loadgen process.
type lg struct {
	*Proc
	connected chan map[string]any
	progress  func(map[string]any)
}

// maxPendingConnects bounds the connections in connect or handshake at
// once, over all load generator processes of a run. It stays below the
// smallest listen backlog among the servers (uWebSockets.js: 512): a
// backlog overflow drops SYNs, each costing the client a one-second retry,
// and would measure the kernel's retry timer instead of the server.
const maxPendingConnects = 256

// connectLimit bounds a scenario's connect phase in the load generator;
// the runner waits a minute more. Over TLS a ticker's subscribers connect
// while ticks already flow to those that are up, and every delivery is
// encrypted by the server and decrypted by the client: on a busy 2-core
// machine 10,000 subscribers took over two minutes.
func connectLimit(sc Scenario) time.Duration {
	if sc.TLS {
		return 5 * time.Minute
	}
	return 2 * time.Minute
}

func (r *Runner) startLoadgen(sc Scenario, addr string, shard int, tag string, progress func(map[string]any)) (*lg, error) {
	args := []string{
		"-scenario", sc.Kind, "-addr", addr, "-path", sc.Path(), "-conns", strconv.Itoa(sc.Conns),
		"-shard", strconv.Itoa(shard), "-shards", strconv.Itoa(sc.Procs), "-start", "stdin",
		"-duration", sc.Duration.String(), "-src", r.Src,
		"-pending", strconv.Itoa(max(1, maxPendingConnects/sc.Procs)),
		"-connect-timeout", connectLimit(sc).String(),
	}
	switch sc.Kind {
	case "echo":
		args = append(args, "-size", strconv.Itoa(sc.Size), "-inflight", strconv.Itoa(sc.Inflight))
	case "churn":
		args = append(args, "-churn-conc", strconv.Itoa(sc.ChurnConc), "-churn-path", "/ws?symbols=S0")
	}
	if sc.Deflate {
		args = append(args, "-deflate")
	}
	if sc.TLS && r.TLS != nil {
		args = append(args, "-tls", "-tls-ca", r.TLS.CA, "-tls-server-name", "localhost")
	}
	cmd := exec.Command(r.Loadgen, args...)
	pin(cmd, r.CPUs.Load)
	l := &lg{connected: make(chan map[string]any, 1), progress: progress}
	var err error
	l.Proc, err = StartProc(cmd, filepath.Join(r.LogDir, fmt.Sprintf("%s.loadgen%d.log", tag, shard)), "", func(ev []byte) {
		var m map[string]any
		if json.Unmarshal(ev, &m) != nil {
			return
		}
		switch m["event"] {
		case "connected":
			l.connected <- m
		case "connecting":
			if l.progress != nil {
				l.progress(m)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

func (l *lg) failure() error { return errors.New("loadgen: " + l.Failure()) }

// Measure runs scenario sc against im and returns its row.
func (r *Runner) Measure(ctx context.Context, im *Impl, sc Scenario) report.Row {
	row := report.Row{Impl: im.Name, Label: im.Label, Scenario: sc.Name, Conns: sc.Conns, LoadgenProcs: sc.Procs}
	if ok, why := im.Available(sc.Mode); !ok {
		row.Note = why
		return row
	}
	if ok, why := im.Available(sc.Mode + "-tls"); sc.TLS && !ok {
		row.Note = why
		return row
	}
	if err := r.measure(ctx, im, sc, &row); err != nil {
		row.Available = false
		row.Note = "failed: " + err.Error()
	}
	return row
}

func (r *Runner) measure(ctx context.Context, im *Impl, sc Scenario, row *report.Row) error {
	tag := im.Name + "-" + sc.Name
	say := func(format string, args ...any) {
		r.Progress.Step(fmt.Sprintf("%s %s: ", im.Name, sc.Name) + fmt.Sprintf(format, args...))
	}
	say("starting server")
	srv, err := r.startServer(ctx, im, sc, tag)
	if err != nil {
		return err
	}
	defer srv.stop()
	pid := srv.cmd.Process.Pid
	time.Sleep(500 * time.Millisecond)
	before, err := procstat.Read(pid)
	if err != nil {
		return fmt.Errorf("read server /proc: %w", err)
	}

	var mu sync.Mutex
	counts := make([]float64, sc.Procs)
	progress := func(shard int) func(map[string]any) {
		return func(m map[string]any) {
			mu.Lock()
			defer mu.Unlock()
			c, _ := m["connected"].(float64)
			counts[shard] = c
			var sum float64
			for _, v := range counts {
				sum += v
			}
			say("connecting %.0f/%d", sum, sc.Conns)
		}
	}
	say("connecting 0/%d", sc.Conns)
	var lgs []*lg
	defer func() {
		for _, l := range lgs {
			l.Stop(3 * time.Second)
		}
	}()
	for i := 0; i < sc.Procs; i++ {
		l, err := r.startLoadgen(sc, srv.addr, i, tag, progress(i))
		if err != nil {
			return err
		}
		lgs = append(lgs, l)
	}
	connectDeadline := time.After(connectLimit(sc) + time.Minute)
	for _, l := range lgs {
		select {
		case <-l.connected:
		case <-l.Done:
			return l.failure()
		case <-srv.done:
			return fmt.Errorf("server exited while connecting (%v)", srv.err)
		case <-connectDeadline:
			return fmt.Errorf("connect phase took over %v", connectLimit(sc)+time.Minute)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if sc.Kind == "hold" {
		say("holding %d idle connections", sc.Conns)
		if !SleepFor(ctx, sc.Settle) {
			return ctx.Err()
		}
		held, err := procstat.Read(pid)
		if err != nil {
			return fmt.Errorf("read server /proc: %w", err)
		}
		row.ServerRSSBytes = held.RSSBytes
		row.RSSBytesPerConn = report.F(float64(held.RSSBytes-before.RSSBytes) / float64(sc.Conns))
	}
	start := time.Now().Add(sc.Warmup + 200*time.Millisecond)
	for _, l := range lgs {
		if _, err := fmt.Fprintf(l.Stdin, "%d\n", start.UnixNano()); err != nil {
			return fmt.Errorf("send start time: %w", err)
		}
	}
	say("warming up")
	if !SleepUntil(ctx, start, nil) {
		return ctx.Err()
	}
	s0, err := procstat.Read(pid)
	if err != nil {
		return fmt.Errorf("read server /proc: %w", err)
	}
	say("measuring for %v", sc.Duration)
	if !SleepUntil(ctx, start.Add(sc.Duration), nil) {
		return ctx.Err()
	}
	s1, err := procstat.Read(pid)
	if err != nil {
		return fmt.Errorf("server exited during the window (%w)", err)
	}
	if sc.Kind != "hold" {
		row.ServerRSSBytes = s1.RSSBytes
	}
	var stats *report.ServerStats
	if im.Name == "herald" && sc.Mode == "ticker" {
		if stats, err = r.serverStats(ctx, srv.addr, sc); err != nil {
			r.Progress.Log("%s %s: the server's /stats: %v", im.Name, sc.Name, err)
		}
	}
	var results []*loadgen.Result
	for _, l := range lgs {
		select {
		case <-l.Done:
		case <-time.After(30 * time.Second):
			return fmt.Errorf("loadgen did not finish")
		}
		if l.Err != nil {
			return l.failure()
		}
		rs, err := loadgen.ReadResults(&l.Stdout)
		if err != nil || len(rs) != 1 {
			return fmt.Errorf("loadgen result: %v", err)
		}
		results = append(results, rs[0])
	}
	res, err := loadgen.Merge(results...)
	if err != nil {
		return err
	}
	if err := fill(row, sc, res, s1.CPUNS-s0.CPUNS, sc.Duration); err != nil {
		return err
	}
	row.ServerStats = stats
	if lost := stats.Lost(); lost != "" && (res.Dropped > 0 || res.ConnectFailures > 0 || res.Connected < sc.Conns) {
		row.Note = strings.TrimPrefix(row.Note+"; the server counted "+lost, "; ")
	}
	return nil
}

// fill computes a row from the merged loadgen result and the server's CPU
// time over the window.
func fill(row *report.Row, sc Scenario, res *loadgen.Result, serverCPU int64, window time.Duration) error {
	row.Available = true
	row.WindowS = window.Seconds()
	row.Connected = res.Connected
	row.Gaps = res.Gaps
	row.Dropped = res.Dropped
	row.ProtocolErrors = res.ProtocolErrors
	row.ConnectFails = res.ConnectFailures
	row.ServerCPUPct = 100 * float64(serverCPU) / float64(window.Nanoseconds())
	row.ClientCPUPct = 100 * float64(res.ClientCPUNS) / float64(window.Nanoseconds())
	row.ConnectPerS = report.F(res.ConnectRate())
	if sc.TLS && res.TLSHandshakes > 0 {
		row.TLSHandshakesPerS = report.F(res.TLSHandshakesPerSec())
		row.TLSResumedRatio = report.F(float64(res.TLSResumed) / float64(res.TLSHandshakes))
	}
	if res.ConnectFailures > 0 || res.Connected < sc.Conns {
		row.Note = fmt.Sprintf("%d of %d connections up", res.Connected, sc.Conns)
	}
	if h := res.Hist[loadgen.HistConnect]; h != "" {
		row.ConnectH = string(h)
	}
	if sc.Kind != "hold" {
		h, err := histo.Decode(res.Hist[loadgen.HistLatency])
		if err != nil {
			return err
		}
		sum := histo.Summarize(h)
		row.MsgsPerS = report.F(res.MsgsPerSec())
		if sum.Count > 0 {
			row.P50US, row.P99US, row.P999US = report.F(sum.P50), report.F(sum.P99), report.F(sum.P999)
			row.LatencyH = string(res.Hist[loadgen.HistLatency])
		}
		if res.Received > 0 {
			row.ServerCPUUSPerMsg = report.F(float64(serverCPU) / 1e3 / float64(res.Received))
			row.ClientCPUUSPerMsg = report.F(float64(res.ClientCPUNS) / 1e3 / float64(res.Received))
			row.WireBytesPerMsg = report.F(float64(res.WireBytes) / float64(res.Received))
			if sc.Deflate {
				row.CompressedRatio = report.F(float64(res.Compressed) / float64(res.Received))
			}
		}
	}
	if sc.Kind == "ticker" || sc.Kind == "churn" {
		if exp := sc.Expected() * window.Seconds(); exp > 0 {
			row.DeliveredRatio = report.F(float64(res.Received) / exp)
		}
	}
	if sc.Kind == "churn" {
		row.ChurnPerS = report.F(res.ChurnPerSec())
		if res.ChurnCycles > 0 {
			row.ServerCPUUSPerCyc = report.F(float64(serverCPU) / 1e3 / float64(res.ChurnCycles))
		}
		if res.ChurnFailures > 0 {
			row.Note = strings.TrimPrefix(row.Note+fmt.Sprintf("; %d churn cycles failed", res.ChurnFailures), "; ")
		}
	}
	row.ErrorKinds = res.ErrorKinds
	if res.Dropped > 0 || res.ProtocolErrors > 0 {
		msg := fmt.Sprintf("%d dropped, %d protocol errors", res.Dropped, res.ProtocolErrors)
		if len(res.Errors) > 0 {
			msg += " (" + res.Errors[0] + ")"
		}
		row.Note = strings.TrimPrefix(row.Note+"; "+msg, "; ")
	}
	if top := res.TopErrorKinds(4); len(top) > 0 && (res.Dropped > 0 || res.ConnectFailures > 0 || res.ProtocolErrors > 0) {
		row.Note += "; the load generator's errors: " + strings.Join(top, ", ")
	}
	return nil
}

// SleepFor waits d; false if ctx ended first.
func SleepFor(ctx context.Context, d time.Duration) bool {
	return SleepUntil(ctx, time.Now().Add(d), nil)
}

// SleepUntil waits until t; false if ctx ended or abort (which may be nil)
// was closed first.
func SleepUntil(ctx context.Context, t time.Time, abort <-chan struct{}) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-abort:
		return false
	case <-timer.C:
		return true
	}
}
