package runner

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Progress is the one-line status the runner keeps on stderr: rewritten in
// place on a terminal, one line per step otherwise.
type Progress struct {
	mu     sync.Mutex
	w      io.Writer
	tty    bool
	start  time.Time
	Total  int
	Done   int
	last   string
	lastAt time.Time
}

// stepKey is a step's message without its numbers.
func stepKey(msg string) string {
	b := []byte(msg)
	out := b[:0]
	for _, c := range b {
		if c < '0' || c > '9' {
			out = append(out, c)
		}
	}
	return string(out)
}

// NewProgress writes to w (a terminal gets an updating line).
func NewProgress(w *os.File, total int) *Progress {
	tty := false
	if fi, err := w.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		tty = true
	}
	return &Progress{w: w, tty: tty, start: time.Now(), Total: total}
}

// Step shows what is happening now.
func (p *Progress) Step(msg string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	el := time.Since(p.start).Round(time.Second)
	line := fmt.Sprintf("[%d/%d %v] %s", p.Done, p.Total, el, msg)
	if p.tty {
		fmt.Fprintf(p.w, "\r\x1b[K%s", line)
		return
	}
	// Without a terminal, print a repeated step (connect counts) at most
	// every 5 s to keep logs short.
	if key := stepKey(msg); key == p.last && time.Since(p.lastAt) < 5*time.Second {
		return
	} else {
		p.last = key
	}
	p.lastAt = time.Now()
	fmt.Fprintln(p.w, line)
}

// Log prints a line that stays.
func (p *Progress) Log(format string, args ...any) {
	if p == nil {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
	fmt.Fprintf(p.w, format+"\n", args...)
}

// Finish counts one measurement done.
func (p *Progress) Finish() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.Done++
	p.mu.Unlock()
}
