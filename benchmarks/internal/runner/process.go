package runner

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a running load generator process: its stdin takes the window's
// start time, its stdout the result. Its stderr goes to a log file; EVENT
// lines are handed to a callback, and the last few other lines explain a
// failure.
type Proc struct {
	Cmd    *exec.Cmd
	Stdin  io.WriteCloser
	Stdout bytes.Buffer
	// Done is closed once the process has exited; Err is set by then.
	Done chan struct{}
	Err  error

	mu   sync.Mutex
	tail []string // last stderr lines that were not events
}

// StartProc starts cmd in its own process group. Its stderr is copied to a
// new file at logPath (after header, if not empty); onEvent, if set, gets
// the JSON of each "EVENT " line, on the goroutine that reads stderr.
func StartProc(cmd *exec.Cmd, logPath, header string, onEvent func(event []byte)) (*Proc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &Proc{Cmd: cmd, Done: make(chan struct{})}
	cmd.Stdout = &p.Stdout
	var err error
	if p.Stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	if header != "" {
		fmt.Fprintln(logf, header)
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(errPipe)
		sc.Buffer(make([]byte, 64<<10), 4<<20) // interval events carry histograms
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if ev, ok := strings.CutPrefix(line, "EVENT "); ok {
				if onEvent != nil {
					onEvent([]byte(ev))
				}
				continue
			}
			p.mu.Lock()
			p.tail = append(p.tail, line)
			if len(p.tail) > 5 {
				p.tail = p.tail[1:]
			}
			p.mu.Unlock()
		}
		p.Err = cmd.Wait()
		logf.Close()
		close(p.Done)
	}()
	return p, nil
}

// Failure says why the process failed: its last stderr lines, or else its
// exit status.
func (p *Proc) Failure() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	msg := strings.Join(p.tail, "; ")
	if msg == "" && p.Err != nil {
		msg = p.Err.Error()
	}
	return msg
}

// Signal asks the process to end (SIGTERM), unless it has.
func (p *Proc) Signal() {
	select {
	case <-p.Done:
	default:
		_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	}
}

// Stop asks the process to end and kills it if it has not within grace.
func (p *Proc) Stop(grace time.Duration) {
	select {
	case <-p.Done:
		return
	default:
	}
	p.Signal()
	select {
	case <-p.Done:
	case <-time.After(grace):
		_ = p.Cmd.Process.Kill()
		<-p.Done
	}
}
