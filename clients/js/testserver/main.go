// Command testserver is the herald server the JavaScript client's
// integration test talks to: an engine, a broadcast hub and the subscribe
// protocol with in-memory history, on 127.0.0.1:0 (or the address of
// -addr, to come back where a stopped one was). It prints
// "listening HOST:PORT", then obeys commands read from stdin, one a line,
// and answers each with one line:
//
//	pub TOPIC N   publish the topic's next N messages {"n":1}, {"n":2}... → "published TOPIC LAST"
//	kick CODE     close every connection with CODE                         → "kicked COUNT"
//
// It exits when stdin closes, and its shutdown closes every connection
// with 1001.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/resume"
)

// app sends the welcome on open and keeps the open connections.
type app struct {
	rs    atomic.Pointer[resume.Server]
	mu    sync.Mutex
	conns map[*engine.Conn]struct{}
}

func (a *app) OnOpen(c *engine.Conn) {
	a.mu.Lock()
	a.conns[c] = struct{}{}
	a.mu.Unlock()
	_ = a.rs.Load().Welcome(c)
}

func (a *app) OnMessage(*engine.Conn, engine.MessageType, []byte) {}

func (a *app) OnClose(c *engine.Conn, _ error) {
	a.mu.Lock()
	delete(a.conns, c)
	a.mu.Unlock()
}

// late lets the handler be set once the hub, which needs the server,
// exists.
type late struct {
	h atomic.Pointer[engine.Handler]
}

func (l *late) OnOpen(c *engine.Conn) { (*l.h.Load()).OnOpen(c) }
func (l *late) OnMessage(c *engine.Conn, typ engine.MessageType, data []byte) {
	(*l.h.Load()).OnMessage(c, typ, data)
}
func (l *late) OnClose(c *engine.Conn, err error) { (*l.h.Load()).OnClose(c, err) }

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "the address to listen on")
	flag.Parse()
	if err := run(*addr, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "testserver:", err)
		os.Exit(1)
	}
}

func run(addr string, in io.Reader, out io.Writer) error {
	l := &late{}
	srv, err := engine.New(engine.Config{
		Addr:   addr,
		Loops:  1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, l)
	if err != nil {
		return err
	}
	hub, err := broadcast.New(srv, broadcast.Options{})
	if err != nil {
		return err
	}
	rs := resume.New(hub, resume.Options{})
	if err := rs.Topics("*", resume.History{Size: 1000}); err != nil {
		return err
	}
	a := &app{conns: map[*engine.Conn]struct{}{}}
	a.rs.Store(rs)
	h := rs.Wrap(a)
	l.h.Store(&h)
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	fmt.Fprintf(out, "listening %s\n", srv.Addr())

	next := map[string]int{}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 3 && f[0] == "pub":
			n, err := strconv.Atoi(f[2])
			if err != nil {
				return err
			}
			for range n {
				next[f[1]]++
				if err := rs.Publish(f[1], []byte(`{"n":`+strconv.Itoa(next[f[1]])+`}`)); err != nil {
					return err
				}
			}
			fmt.Fprintf(out, "published %s %d\n", f[1], next[f[1]])
		case len(f) == 2 && f[0] == "kick":
			code, err := strconv.Atoi(f[1])
			if err != nil {
				return err
			}
			a.mu.Lock()
			conns := make([]*engine.Conn, 0, len(a.conns))
			for c := range a.conns {
				conns = append(conns, c)
			}
			a.mu.Unlock()
			for _, c := range conns {
				_ = c.Close(engine.StatusCode(code), "kicked")
			}
			fmt.Fprintf(out, "kicked %d\n", len(conns))
		case len(f) == 0:
		default:
			return fmt.Errorf("unknown command %q", sc.Text())
		}
	}
	return sc.Err()
}
