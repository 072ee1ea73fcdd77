package fleet

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/heraldws/herald/benchmarks/internal/runner"
)

// Bins are the programs a fleet run starts.
type Bins struct {
	Loadgen   string `json:"loadgen"`
	Ticker    string `json:"ticker"`    // nats/cmd/ticker
	Publisher string `json:"publisher"` // nats/cmd/tickpub
	Broker    string `json:"broker"`    // nats-server, the version nats/go.mod pins
	// Single is examples/ticker, the ticker without a broker client: the
	// single process the cluster is compared with.
	Single string `json:"single"`
}

// Build builds the load generator (this module), the ticker's cluster
// build and the tick publisher (the nats module), nats-server (from the
// nats module too: its go.mod pins the version as a tool, so this module
// carries no NATS dependency) and the single-process ticker (the core
// module) into dir.
func Build(ctx context.Context, lay runner.Layout, dir string) (Bins, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Bins{}, err
	}
	b := Bins{Loadgen: filepath.Join(dir, "loadgen"), Ticker: filepath.Join(dir, "herald-ticker-nats"),
		Publisher: filepath.Join(dir, "tickpub"), Broker: filepath.Join(dir, "nats-server"), Single: filepath.Join(dir, "herald-ticker")}
	natsDir := filepath.Join(lay.Root, "nats")
	for _, job := range []struct{ dir, out, pkg string }{
		{lay.Bench, b.Loadgen, "./cmd/loadgen"},
		{natsDir, b.Ticker, "./cmd/ticker"},
		{natsDir, b.Publisher, "./cmd/tickpub"},
		{natsDir, b.Broker, "github.com/nats-io/nats-server/v2"},
		{lay.Root, b.Single, "./examples/ticker"},
	} {
		if err := runner.GoBuild(ctx, job.dir, job.out, job.pkg); err != nil {
			return Bins{}, fmt.Errorf("build %s: %w", job.pkg, err)
		}
	}
	return b, nil
}

// service is a process of the run other than a load generator: the
// broker, a server, the publisher. Its stdout and stderr go to one log
// file, and every line to a watcher.
type service struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once it has exited; err is set by then
	err  error

	mu   sync.Mutex
	tail []string
}

// startService starts argv pinned to cpus ("" for none), in its own
// process group, logging to logPath; watch (if set) sees every line of
// its output, on the goroutine that reads it.
func startService(name string, argv []string, cpus, logPath string, watch func(line string)) (*service, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	runner.Pin(cmd, cpus)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		logf.Close()
		r.Close()
		w.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	w.Close()
	s := &service{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			s.mu.Lock()
			s.tail = append(s.tail, line)
			if len(s.tail) > 5 {
				s.tail = s.tail[1:]
			}
			s.mu.Unlock()
			if watch != nil {
				watch(line)
			}
		}
		r.Close()
		s.err = cmd.Wait()
		logf.Close()
		close(s.done)
	}()
	return s, nil
}

func (s *service) pid() int { return s.cmd.Process.Pid }

func (s *service) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// failure says how the process ended: its exit status and last lines.
func (s *service) failure() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg := fmt.Sprintf("%s exited (%v)", s.name, s.err)
	if len(s.tail) > 0 {
		msg += ": " + strings.Join(s.tail, "; ")
	}
	return msg
}

// stop sends SIGTERM and waits up to grace, then kills. It returns how
// the process ended: nil for a clean exit after the signal (status 0).
func (s *service) stop(grace time.Duration) error {
	if !s.exited() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-s.done:
		case <-t.C:
			_ = s.cmd.Process.Kill()
			<-s.done
			return fmt.Errorf("%s did not stop within %v of SIGTERM: killed", s.name, grace)
		}
	}
	return s.err
}

// waitFor waits until cond holds, checking it every poll (the processes
// it watches have no other signal), or fails after guard or when fail
// returns an error.
func waitFor(ctx context.Context, what string, guard, poll time.Duration, cond func() bool, fail func() error) error {
	deadline := time.Now().Add(guard)
	t := time.NewTicker(poll)
	defer t.Stop()
	for !cond() {
		if fail != nil {
			if err := fail(); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not done within %v", what, guard)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
