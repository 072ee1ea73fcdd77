package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldws/herald/benchmarks/internal/histo"
	"github.com/heraldws/herald/internal/wsframe"
)

func TestParseAddrs(t *testing.T) {
	a, err := ParseAddrs("127.0.0.2-127.0.0.4, 127.0.0.9,127.0.1.1-2")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, x := range a {
		got = append(got, x.String())
	}
	if strings.Join(got, " ") != "127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.9 127.0.1.1 127.0.1.2" {
		t.Fatalf("%v", got)
	}
	for _, bad := range []string{"::1", "127.0.0.5-3", "x", "127.0.0.1-127.0.0.0"} {
		if _, err := ParseAddrs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestShardRangeCoversEveryConnectionOnce(t *testing.T) {
	for _, n := range []int{0, 1, 7, 100, 19999} {
		for k := 1; k <= 7; k++ {
			next := 0
			for i := 0; i < k; i++ {
				lo, hi := shardRange(n, i, k)
				if lo != next || hi < lo {
					t.Fatalf("n=%d k=%d shard %d: [%d,%d) after %d", n, k, i, lo, hi, next)
				}
				next = hi
			}
			if next != n {
				t.Fatalf("n=%d k=%d: covered %d", n, k, next)
			}
		}
	}
}

func TestMergeAndReadResults(t *testing.T) {
	mk := func(shard int, vals ...int64) *Result {
		h := histo.New()
		for _, v := range vals {
			histo.Record(h, v)
		}
		e, _ := histo.Encode(h)
		return &Result{Version: ResultVersion, Scenario: Ticker, Shard: shard, Shards: 2, Parts: 1, Conns: 10, Connected: 10,
			ConnectNS: int64(shard+1) * 1e9, WindowStartNS: 1000 + int64(shard), WindowNS: 5e9, Received: int64(len(vals)),
			Gaps: int64(shard), ClientCPUNS: 7, Hist: map[string]histo.Encoded{HistLatency: e}}
	}
	a, b := mk(0, 10, 20, 30), mk(1, 40, 50)
	var buf bytes.Buffer
	json.NewEncoder(&buf).Encode(a)
	json.NewEncoder(&buf).Encode([]*Result{b})
	rs, err := ReadResults(&buf)
	if err != nil || len(rs) != 2 {
		t.Fatalf("read: %d results, %v", len(rs), err)
	}
	m, err := Merge(rs...)
	if err != nil {
		t.Fatal(err)
	}
	if m.Parts != 2 || m.Conns != 20 || m.Connected != 20 || m.Received != 5 || m.Gaps != 1 || m.ClientCPUNS != 14 || m.ConnectNS != 2e9 {
		t.Fatalf("merged %+v", m)
	}
	if m.WindowStartNS != 1000 || m.WindowNS != 5e9+1 {
		t.Fatalf("window %d+%d", m.WindowStartNS, m.WindowNS)
	}
	h, _ := histo.Decode(m.Hist[HistLatency])
	if h.TotalCount() != 5 || h.Max() < 49 || h.Min() > 10 {
		t.Fatalf("merged histogram: n=%d", h.TotalCount())
	}
	// Merging merged results again keeps counting parts.
	mm, err := Merge(m, mk(0, 1))
	if err != nil || mm.Parts != 3 {
		t.Fatalf("re-merge: %v %+v", err, mm)
	}
	if _, err := Merge(a, &Result{Version: ResultVersion, Scenario: Echo}); err == nil {
		t.Fatal("merged different scenarios")
	}
	if _, err := ReadResults(strings.NewReader(`{"version":99}`)); err == nil {
		t.Fatal("accepted a foreign version")
	}
	if _, err := ReadResults(strings.NewReader(`{"version":`)); err == nil {
		t.Fatal("accepted truncated JSON")
	}
}

// holdOpen keeps a fake server's connection open until stop is closed at
// the end of the test (the load generator does not close its sockets when
// a run ends).
func holdOpen(stop <-chan struct{}, c net.Conn) {
	go func() { <-stop; c.Close() }()
}

// fakeServer is a hand-written server on loopback: for every connection
// it reads the upgrade request and calls serve in a goroutine of its own,
// which answers it. Connections stay open until the test ends (the load
// generator does not close its sockets when a run ends); stop is closed
// then.
func fakeServer(t *testing.T, serve func(c net.Conn, br *bufio.Reader, req *http.Request, stop <-chan struct{})) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			holdOpen(stop, c)
			go func() {
				br := bufio.NewReader(c)
				if req, err := http.ReadRequest(br); err == nil {
					serve(c, br, req, stop)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// upgraded is the 101 that answers req, with the header lines given.
func upgraded(req *http.Request, header ...string) []byte {
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + wsframe.Accept(req.Header.Get("Sec-WebSocket-Key")) + "\r\n"
	for _, h := range header {
		resp += h + "\r\n"
	}
	return []byte(resp + "\r\n")
}

// rawTicker is a hand-written server that sends its frames one byte per
// write, pings, fragments a message and skips a sequence number, so the
// client's incremental parsing, pong and gap counting are all exercised. It
// sends them once started is closed: when the run's window has begun.
func rawTicker(t *testing.T, started <-chan struct{}, conns int) (addr string, pongs func() int, done <-chan struct{}) {
	var mu sync.Mutex
	n, finished := 0, 0
	allDone := make(chan struct{})
	addr = fakeServer(t, func(c net.Conn, br *bufio.Reader, req *http.Request, stop <-chan struct{}) {
		c.Write(upgraded(req))
		select {
		case <-started:
		case <-stop:
			return
		}
		var out []byte
		frame := func(b0 byte, p []byte) { out = append(append(out, b0, byte(len(p))), p...) }
		now := func() int64 { return time.Now().UnixNano() }
		frame(0x89, []byte("hi")) // ping
		for _, seq := range []int64{1, 2, 4} {
			frame(0x81, FormatTicker(nil, 0, seq, now(), 100))
		}
		msg := FormatTicker(nil, 1, 9, now(), 100)
		frame(0x01, msg[:40]) // text, not final
		frame(0x80, msg[40:]) // continuation, final
		frame(0x81, FormatTicker(nil, 1, 10, now(), 20))
		for i := range out {
			if _, err := c.Write(out[i : i+1]); err != nil {
				return
			}
		}
		// Read the pong: masked, opcode 0xA.
		var hdr [2]byte
		if _, err := br.Read(hdr[:1]); err == nil && hdr[0] == 0x8A {
			mu.Lock()
			n++
			mu.Unlock()
		}
		// A second ping: its pong (masked, 4-byte key, "hi")
		// comes after the client took every frame before it, so
		// the window can end then, however slow the machine.
		if _, err := c.Write([]byte{0x89, 2, 'h', 'i'}); err != nil {
			return
		}
		var rest [1 + 4 + 2]byte
		if _, err := io.ReadFull(br, rest[:]); err != nil {
			return
		}
		for {
			if _, err := io.ReadFull(br, hdr[:1]); err != nil {
				return
			}
			if hdr[0] == 0x8A {
				break
			}
		}
		mu.Lock()
		finished++
		if finished == conns {
			close(allDone)
		}
		mu.Unlock()
	})
	return addr, func() int { mu.Lock(); defer mu.Unlock(); return n }, allDone
}

func TestTickerIncrementalFramesGapsAndPong(t *testing.T) {
	started := make(chan struct{})
	addr, pongs, done := rawTicker(t, started, 3)
	// The window ends once every connection answered a ping sent after all
	// its frames; the long Duration is only a hang guard.
	// Interval events split the window: together they hold every message.
	var mu sync.Mutex
	var ivReceived, ivGaps, ivSamples int64
	res, err := Run(context.Background(), Config{Scenario: Ticker, Addr: addr, Path: "/ws", Conns: 3, Duration: 60 * time.Second, WindowDone: done,
		StartAt:  func() (time.Time, error) { return time.Now(), nil },
		Interval: 10 * time.Millisecond,
		Event: func(ev map[string]any) {
			if ev["event"] == "window" {
				// The server starts once the window is open: frames that
				// came earlier would be answered but not counted.
				close(started)
			}
			if ev["event"] != "interval" {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			ivReceived += ev["received"].(int64)
			ivGaps += ev["gaps"].(int64)
			if enc, ok := ev["latency"].(histo.Encoded); ok {
				h, err := histo.Decode(enc)
				if err != nil {
					t.Error(err)
					return
				}
				ivSamples += h.TotalCount()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if ivReceived != res.Received || ivSamples != res.Received || ivGaps != res.Gaps {
		t.Fatalf("intervals: %d received, %d samples, %d gaps; the window: %d received, %d gaps", ivReceived, ivSamples, ivGaps, res.Received, res.Gaps)
	}
	if res.Connected != 3 || res.ProtocolErrors != 0 {
		t.Fatalf("connected %d, protocol errors %d: %v", res.Connected, res.ProtocolErrors, res.Errors)
	}
	if res.Received != 3*5 {
		t.Fatalf("received %d, want 15", res.Received)
	}
	if res.Gaps != 3 {
		t.Fatalf("gaps %d, want 3 (seq 3 missing on each connection)", res.Gaps)
	}
	h, _ := histo.Decode(res.Hist[HistLatency])
	if h.TotalCount() != 15 {
		t.Fatalf("latency samples %d", h.TotalCount())
	}
	if p := pongs(); p != 3 {
		t.Fatalf("pongs %d, want 3", p)
	}
}

func TestProtocolErrorIsCounted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		holdOpen(stop, c)
		req, _ := http.ReadRequest(bufio.NewReader(c))
		c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + wsframe.Accept(req.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n"))
		c.Write([]byte{0x81, 0x81, 1, 2, 3, 4, 'x'}) // a masked server frame
	}()
	res, err := Run(context.Background(), Config{Scenario: Ticker, Addr: ln.Addr().String(), Conns: 1, Duration: 500 * time.Millisecond, Warmup: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.ProtocolErrors != 1 || res.Dropped != 1 {
		t.Fatalf("protocol errors %d, dropped %d", res.ProtocolErrors, res.Dropped)
	}
}

// heraldEcho builds and starts herald's echo example.
func heraldEcho(t *testing.T) string {
	t.Helper()
	return herald(t, "echo")
}

// startServer starts cmd and returns the address from its first line,
// "... listening on HOST:PORT".
func startServer(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(line, "listening on ")
	if i < 0 {
		t.Fatalf("unexpected first line %q", line)
	}
	return strings.TrimSpace(line[i+len("listening on "):])
}

func TestEchoAndHoldAgainstHeraldEcho(t *testing.T) {
	if testing.Short() {
		t.Skip("builds herald's echo example")
	}
	addr := heraldEcho(t)
	src, _ := ParseAddrs("127.0.0.2-127.0.0.5")
	res, err := Run(context.Background(), Config{Scenario: Echo, Addr: addr, Conns: 20, Loops: 2, Src: src, Size: 300, Inflight: 3, Duration: time.Second, Warmup: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// Any number of echoes proves the path; how many is the machine's speed.
	if res.Connected != 20 || res.ProtocolErrors != 0 || res.Dropped != 0 || res.Received == 0 {
		t.Fatalf("echo: %+v", res)
	}
	h, _ := histo.Decode(res.Hist[HistLatency])
	if h.TotalCount() != res.Received {
		t.Fatalf("latency samples %d != received %d", h.TotalCount(), res.Received)
	}
	// Two shards of a hold with a shared start, merged exactly. The start is
	// chosen once both shards are connected, however long that took.
	var (
		start      time.Time
		ready      = make(chan struct{}, 2)
		release    = make(chan struct{})
		failed     = make(chan struct{})
		failedOnce sync.Once
	)
	go func() {
		for range 2 {
			select {
			case <-ready:
			case <-failed:
				return
			}
		}
		start = time.Now().Add(time.Second)
		close(release)
	}()
	startAt := func() (time.Time, error) {
		ready <- struct{}{}
		select {
		case <-release:
			return start, nil
		case <-failed:
			return time.Time{}, errors.New("the other shard failed")
		}
	}
	var rs [2]*Result
	var errs [2]error
	var wg sync.WaitGroup
	for i := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs[i], errs[i] = Run(context.Background(), Config{Scenario: Hold, Addr: addr, Conns: 301, Shard: i, Shards: 2, Src: src, Duration: 300 * time.Millisecond,
				StartAt: startAt})
			if errs[i] != nil {
				failedOnce.Do(func() { close(failed) })
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("shard %d: %v", i, err)
		}
	}
	if rs[0].Conns != 150 || rs[1].Conns != 151 || rs[0].WindowStartNS != start.UnixNano() || rs[1].WindowStartNS != start.UnixNano() {
		t.Fatalf("shards: %d+%d conns, starts %d %d", rs[0].Conns, rs[1].Conns, rs[0].WindowStartNS, rs[1].WindowStartNS)
	}
	m, err := Merge(rs[0], rs[1])
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := histo.Decode(m.Hist[HistConnect])
	if m.Connected != 301 || ch.TotalCount() != 301 {
		t.Fatalf("merged hold: %d connected, %d connect samples", m.Connected, ch.TotalCount())
	}
}

// TestDropsWhileWaitingForTheWindow: held connections that the server
// closes after they came up, while the load generator waits for its
// window's start, are reported in a "dropped" event with why, before the
// window opens.
func TestDropsWhileWaitingForTheWindow(t *testing.T) {
	opened := make(chan net.Conn, 4)
	addr := fakeServer(t, func(c net.Conn, _ *bufio.Reader, req *http.Request, _ <-chan struct{}) {
		if _, err := c.Write(upgraded(req)); err == nil {
			opened <- c
		}
	})
	var mu sync.Mutex
	var dropped []map[string]any
	connected := make(chan struct{})
	sawDrops := make(chan struct{})
	go func() {
		// Once all four are up, the server goes away from two of them
		// with 1001, as a server that shuts down does.
		select {
		case <-connected:
		case <-time.After(60 * time.Second): // a hang guard
			return
		}
		for i := 0; i < 2; i++ {
			c := <-opened
			c.Write([]byte{0x88, 2, 0x03, 0xe9})
		}
	}()
	res, err := Run(context.Background(), Config{Scenario: Ticker, Addr: addr, Path: "/ws", Conns: 4, Duration: 10 * time.Millisecond,
		StartAt: func() (time.Time, error) {
			select {
			case <-sawDrops:
			case <-time.After(60 * time.Second): // a hang guard
			}
			return time.Now(), nil
		},
		Event: func(ev map[string]any) {
			mu.Lock()
			defer mu.Unlock()
			switch ev["event"] {
			case "connected":
				close(connected)
			case "dropped":
				dropped = append(dropped, ev)
				if ev["dropped"].(int64) == 2 {
					close(sawDrops)
				}
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(dropped) == 0 {
		t.Fatal("no dropped event while waiting for the window")
	}
	last := dropped[len(dropped)-1]
	errs, _ := last["errors"].([]string)
	if last["dropped"].(int64) != 2 || len(errs) != 2 || !strings.Contains(errs[0], "server sent close 1001") {
		t.Fatalf("dropped event %v, want 2 dropped with close 1001 as why", last)
	}
	if res.Connected != 4 {
		t.Fatalf("connected %d, want 4", res.Connected)
	}
	if n := res.ErrorKinds["dropped before the window: server sent close 1001"]; n != 2 {
		t.Fatalf("error kinds %v, want 2 drops before the window for close 1001", res.ErrorKinds)
	}
}

// Every error is counted by kind, not only the first few kept in full:
// a run that loses thousands of connections says why each went.
func TestErrorsCountedByKind(t *testing.T) {
	const conns = 3 * maxErrors
	addr := fakeServer(t, func(c net.Conn, _ *bufio.Reader, _ *http.Request, _ <-chan struct{}) {
		c.Write([]byte("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"))
	})
	res, err := Run(context.Background(), Config{Scenario: Ticker, Addr: addr, Path: "/ws", Conns: conns, Duration: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.ConnectFailures != conns || len(res.Errors) != maxErrors {
		t.Fatalf("%d failures, %d errors kept, want %d and %d", res.ConnectFailures, len(res.Errors), conns, maxErrors)
	}
	var total int64
	for k, n := range res.ErrorKinds {
		if !strings.HasPrefix(k, "bad upgrade response: ") {
			t.Fatalf("error kind %q, want a bad upgrade response", k)
		}
		total += n
	}
	if total != conns {
		t.Fatalf("error kinds %v count %d errors, want %d", res.ErrorKinds, total, conns)
	}
	merged, err := Merge(res, res)
	if err != nil {
		t.Fatal(err)
	}
	if top := merged.TopErrorKinds(1); len(top) != 1 || !strings.HasPrefix(top[0], fmt.Sprintf("%d× bad upgrade response", 2*conns)) {
		t.Fatalf("merged top kinds %v, want %d bad upgrade responses", top, 2*conns)
	}
}

// A connect phase that times out says why its connections did not come
// up: the error carries the most frequent error kinds.
func TestConnectTimeoutNamesErrorKinds(t *testing.T) {
	var attempts atomic.Int32
	addr := fakeServer(t, func(c net.Conn, _ *bufio.Reader, _ *http.Request, done <-chan struct{}) {
		if attempts.Add(1) <= 2 {
			c.Close() // the first attempts end before the upgrade response
			return
		}
		<-done // the retries get no answer: the connect phase times out
	})
	_, err := Run(context.Background(), Config{Scenario: Ticker, Addr: addr, Path: "/ws", Conns: 2,
		ConnectTimeout: time.Second, Duration: 10 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "connect phase timed out") ||
		!strings.Contains(err.Error(), "closed waiting for the upgrade response: EOF") {
		t.Fatalf("err = %v, want a connect timeout that names the closes", err)
	}
}
