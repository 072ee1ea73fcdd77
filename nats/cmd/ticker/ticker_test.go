package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/heraldws/herald/examples/ticker/app"
)

// hangGuard bounds every wait; it is no speed requirement.
const hangGuard = time.Minute

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// Three ticker nodes share one port (SO_REUSEPORT) and a broker embedded in
// the test; one publishes, two only deliver what it publishes. A few
// hundred connections land on all three, and every one of them gets the
// ticks of every symbol with no gap and no repeat, whichever node serves it.
func TestThreeNodesOnOnePort(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(hangGuard) {
		t.Fatal("the NATS server did not start")
	}
	defer ns.Shutdown()

	addr := freePort(t)
	const symbols = 5
	nodes := make([]*app.Ticker, 3)
	buses := make([]cluster, len(nodes))
	for i := range nodes {
		c, err := join(app.Options{NATS: ns.ClientURL()}, quiet)
		if err != nil {
			t.Fatal(err)
		}
		buses[i] = c.(cluster)
		nodes[i], err = app.New(app.Options{
			Addr: addr, ReusePort: true, Loops: 1,
			Interval: 20 * time.Millisecond, Symbols: symbols, Size: 64,
			Publish: i == 0,
		}, quiet, c)
		if err != nil {
			t.Fatal(err)
		}
		if err := nodes[i].Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
			defer cancel()
			_ = nodes[i].Shutdown(ctx)
		}()
	}

	const conns, ticks = 300, 10
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := followTicks(addr, symbols, ticks); err != nil {
				errs <- fmt.Errorf("connection %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Every node served some of them (the kernel spreads connections over
	// the listeners), so the fan-out nodes delivered what came through the
	// broker, and published nothing themselves.
	for i, n := range nodes {
		if st := n.Hub().Stats(); st.Deliveries == 0 {
			t.Errorf("node %d delivered nothing: it got none of the %d connections", i, conns)
		}
		if st := buses[i].Stats(); i > 0 && (st.Published != 0 || st.Delivered == 0) {
			t.Errorf("fan-out node %d: %+v, want nothing published and ticks delivered from the broker", i, st)
		}
	}
}

// freePort returns a loopback address with a port nobody listens on. All
// nodes need the same port, so port 0 will not do.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// followTicks connects to the ticker and reads until it has seen ticks
// consecutive sequence numbers of every symbol, each +1 from the last.
func followTicks(addr string, symbols, ticks int) error {
	conn, br, _, err := ws.Dialer{Timeout: hangGuard}.Dial(context.Background(), "ws://"+addr+"/ws")
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(hangGuard))
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	rw := struct {
		io.Reader
		io.Writer
	}{r, conn}
	first := map[string]int64{}
	last := map[string]int64{}
	done := 0
	for done < symbols {
		data, _, err := wsutil.ReadServerData(rw)
		if err != nil {
			return err
		}
		var m struct {
			Sym string `json:"sym"`
			Seq int64  `json:"seq"`
		}
		if err := json.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("%v: %s", err, data)
		}
		prev, seen := last[m.Sym]
		switch {
		case !seen:
			first[m.Sym] = m.Seq
		case m.Seq != prev+1:
			return fmt.Errorf("%s: seq %d after %d", m.Sym, m.Seq, prev)
		}
		last[m.Sym] = m.Seq
		if m.Seq-first[m.Sym] == int64(ticks-1) {
			done++
		}
	}
	return nil
}

// -cpuprofile writes a profile once the run ends, and refuses a file it
// cannot create (the ticker then exits with the flag's error).
func TestCPUProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	var p profile
	if err := p.start(path); err != nil {
		t.Fatal(err)
	}
	p.stop()
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("profile: %v, %v", fi, err)
	}
	var q profile
	if err := q.start(filepath.Join(t.TempDir(), "missing", "cpu.pprof")); err == nil {
		q.stop()
		t.Fatal("a profile in a directory that does not exist: no error")
	}
}
