package loadgen

import (
	"bufio"
	"bytes"
	stdflate "compress/flate"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/flate"

	"github.com/heraldws/herald/benchmarks/internal/histo"
	"github.com/heraldws/herald/internal/wsframe"
)

func TestParseDeflateAnswer(t *testing.T) {
	for _, tc := range []struct {
		ext  string
		want deflateAnswer
		err  string
	}{
		{ext: "permessage-deflate; server_no_context_takeover; client_no_context_takeover", want: deflateAnswer{false, 15, 15}},
		{ext: "permessage-deflate; client_no_context_takeover; server_no_context_takeover", want: deflateAnswer{false, 15, 15}},
		{ext: "permessage-deflate;server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10", want: deflateAnswer{false, 10, 15}},
		{ext: "permessage-deflate", want: deflateAnswer{true, 15, 15}},
		{ext: `permessage-deflate; client_max_window_bits="9"`, want: deflateAnswer{true, 15, 9}},
		{ext: "permessage-deflate; server_max_window_bits=7", err: "from 8 to 15"},
		{ext: "permessage-deflate; client_max_window_bits", err: "from 8 to 15"},
		{ext: "permessage-deflate; server_no_context_takeover=1", err: "with a value"},
		{ext: "permessage-deflate; server_no_context_takeover; server_no_context_takeover", err: "twice"},
		{ext: "permessage-deflate; mystery", err: "unknown parameter"},
		{ext: "x-webkit-deflate-frame", err: "not permessage-deflate"},
		{ext: "permessage-deflate, permessage-deflate", err: "several extensions"},
	} {
		got, err := parseDeflateAnswer([]byte(tc.ext))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want an error with %q", tc.ext, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v %v, want %+v", tc.ext, got, err, tc.want)
		}
	}
	if _, err := parseDeflateAnswer(nil); !errors.Is(err, errDeclined) {
		t.Errorf("no answer: %v", err)
	}
}

// deflateServer is a hand-written ticker that answers the deflate offer
// with answer ("" declines) and, once started is closed, sends four ticks
// compressed by compress/flate (an implementation apart from the load
// generator's): whole, in two fragments, plain, and whole again, with one
// compressor for the whole connection when the answer lets the server keep
// its context. Then a ping; done closes when every connection has answered
// it. wire is what it wrote after started, over all connections.
func deflateServer(t *testing.T, answer string, started <-chan struct{}, conns int) (addr string, done <-chan struct{}, wire func() int) {
	takeover := answer != "" && !strings.Contains(answer, "server_no_context_takeover")
	var mu sync.Mutex
	finished, written := 0, 0
	allDone := make(chan struct{})
	addr = fakeServer(t, func(c net.Conn, br *bufio.Reader, req *http.Request, stop <-chan struct{}) {
		if offer := req.Header.Get("Sec-WebSocket-Extensions"); offer != wsframe.DeflateOffer {
			t.Errorf("request offers %q", offer)
			return
		}
		if answer == "" {
			c.Write(upgraded(req))
		} else {
			c.Write(upgraded(req, "Sec-WebSocket-Extensions: "+answer))
		}
		select {
		case <-started:
		case <-stop:
			return
		}
		var z bytes.Buffer
		w, _ := stdflate.NewWriter(&z, stdflate.BestCompression)
		deflate := func(p []byte) []byte {
			z.Reset()
			if !takeover {
				w.Reset(&z)
			}
			w.Write(p)
			w.Flush()
			return bytes.Clone(bytes.TrimSuffix(z.Bytes(), []byte{0, 0, 0xff, 0xff}))
		}
		var out []byte
		frame := func(b0 byte, p []byte) {
			out = append(out, b0)
			if len(p) > 125 {
				out = append(out, 126, byte(len(p)>>8), byte(len(p)))
			} else {
				out = append(out, byte(len(p)))
			}
			out = append(out, p...)
		}
		now := func() int64 { return time.Now().UnixNano() }
		const fin, rsv1 = 0x80, 0x40
		frame(fin|rsv1|0x1, deflate(FormatTicker(nil, 0, 1, now(), 300)))
		z2 := deflate(FormatTicker(nil, 0, 2, now(), 300))
		frame(rsv1|0x1, z2[:len(z2)/2])
		frame(fin|0x0, z2[len(z2)/2:])
		frame(fin|0x1, FormatTicker(nil, 0, 3, now(), 64))
		frame(fin|rsv1|0x1, deflate(FormatTicker(nil, 0, 4, now(), 300)))
		frame(fin|0x9, []byte("hi"))
		if _, err := c.Write(out); err != nil {
			return
		}
		// The pong: the client took every frame before it.
		var hdr [2 + 4 + 2]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil || hdr[0] != 0x8A {
			return
		}
		mu.Lock()
		written += len(out)
		finished++
		if finished == conns {
			close(allDone)
		}
		mu.Unlock()
	})
	return addr, allDone, func() int { mu.Lock(); defer mu.Unlock(); return written }
}

// The load generator honours each answer: it inflates with the server's
// context kept across messages or not, across fragments, beside plain
// messages, counts the bytes on the wire exactly, and fails the run when
// the server declines.
func TestDeflateAnswers(t *testing.T) {
	for _, tc := range []struct {
		answer string
		err    error  // from Run
		reject string // every connection fails with this error
	}{
		{answer: "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
		{answer: "permessage-deflate; server_max_window_bits=12"},
		{answer: "permessage-deflate"},
		{answer: "", err: errDeclined},
		{answer: "permessage-deflate; mystery", reject: "unknown parameter"},
	} {
		t.Run(tc.answer, func(t *testing.T) {
			const conns = 3
			started := make(chan struct{})
			addr, done, wire := deflateServer(t, tc.answer, started, conns)
			var once sync.Once
			window := time.Minute // a hang guard: done ends it
			if tc.reject != "" {
				window = 100 * time.Millisecond // nobody connects: nothing ends it early
			}
			res, err := Run(context.Background(), Config{Scenario: Ticker, Addr: addr, Path: "/ws", Conns: conns, Deflate: true,
				Duration: window, WindowDone: done, Retries: 1,
				StartAt: func() (time.Time, error) { return time.Now(), nil },
				Event: func(ev map[string]any) {
					if ev["event"] == "window" {
						once.Do(func() { close(started) })
					}
				}})
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Run: %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.reject != "" {
				if res.Connected != 0 || res.ConnectFailures != conns || len(res.Errors) == 0 || !strings.Contains(res.Errors[0], tc.reject) {
					t.Fatalf("connected %d, failed %d: %v", res.Connected, res.ConnectFailures, res.Errors)
				}
				return
			}
			if res.Connected != conns || res.ProtocolErrors != 0 || res.Gaps != 0 || res.Reordered != 0 {
				t.Fatalf("connected %d, protocol errors %d, gaps %d, reordered %d: %v", res.Connected, res.ProtocolErrors, res.Gaps, res.Reordered, res.Errors)
			}
			if res.Received != 4*conns || res.Compressed != 3*conns || res.BytesReceived != (3*300+64)*conns {
				t.Fatalf("received %d (%d compressed, %d bytes), want %d (%d, %d)", res.Received, res.Compressed, res.BytesReceived, 4*conns, 3*conns, (3*300+64)*conns)
			}
			if res.WireBytes != int64(wire()) {
				t.Fatalf("wire bytes %d, want %d", res.WireBytes, wire())
			}
			if h, _ := histo.Decode(res.Hist[HistLatency]); h.TotalCount() != res.Received {
				t.Fatalf("%d latency samples", h.TotalCount())
			}
		})
	}
}

// herald builds one of herald's examples and starts it with args; it
// returns the address it listens on.
func herald(t *testing.T, example string, args ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(example))
	build := exec.Command("go", "build", "-o", bin, "./examples/"+example)
	build.Dir = "../../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build examples/%s: %v\n%s", example, err, out)
	}
	return startServer(t, exec.Command(bin, append([]string{"-addr", "127.0.0.1:0"}, args...)...))
}

// A compressed ticker against herald's: every tick comes compressed
// (RSV1), inflates to a valid order-book tick, and the wire carries less
// than half of what it inflates to. The window ends once enough ticks
// arrived, however slow the machine; the Duration is only a hang guard.
func TestCompressedTickerAgainstHerald(t *testing.T) {
	if testing.Short() {
		t.Skip("builds herald's ticker example")
	}
	addr := herald(t, "ticker", "-compression", "-payload", "book", "-size", "1024", "-symbols", "2", "-interval", "20ms")
	const conns, enough = 4, 40
	windowDone := make(chan struct{})
	var mu sync.Mutex
	var got int64
	res, err := Run(context.Background(), Config{Scenario: Ticker, Addr: addr, Path: "/ws", Conns: conns, Deflate: true,
		Duration: time.Minute, WindowDone: windowDone, Interval: 20 * time.Millisecond,
		StartAt: func() (time.Time, error) { return time.Now(), nil },
		Event: func(ev map[string]any) {
			if ev["event"] != "interval" {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if got += ev["received"].(int64); got >= enough && got-ev["received"].(int64) < enough {
				close(windowDone)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != conns || res.ProtocolErrors != 0 || res.Dropped != 0 || res.Received < enough {
		t.Fatalf("connected %d, protocol errors %d, dropped %d, received %d: %v", res.Connected, res.ProtocolErrors, res.Dropped, res.Received, res.Errors)
	}
	if res.Compressed != res.Received {
		t.Fatalf("%d of %d ticks came compressed", res.Compressed, res.Received)
	}
	if per := res.BytesReceived / res.Received; per < 1000 || per > 1034 {
		t.Fatalf("ticks inflate to %d bytes, want about 1024", per)
	}
	if res.WireBytes <= 0 || 2*res.WireBytes > res.BytesReceived {
		t.Fatalf("%d bytes on the wire for %d inflated", res.WireBytes, res.BytesReceived)
	}
}

// Compressed echoes against herald's echo example: the client's compressed
// messages come back compressed and identical.
func TestCompressedEchoAgainstHerald(t *testing.T) {
	if testing.Short() {
		t.Skip("builds herald's echo example")
	}
	addr := herald(t, "echo", "-compression")
	res, err := Run(context.Background(), Config{Scenario: Echo, Addr: addr, Conns: 5, Size: 1024, Inflight: 2, Deflate: true,
		Duration: time.Second, Warmup: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// Any number of echoes proves the path; how many is the machine's speed.
	if res.Connected != 5 || res.ProtocolErrors != 0 || res.Dropped != 0 || res.Received == 0 || res.Compressed != res.Received {
		t.Fatalf("connected %d, protocol errors %d, dropped %d, received %d (%d compressed): %v", res.Connected, res.ProtocolErrors, res.Dropped, res.Received, res.Compressed, res.Errors)
	}
	if 2*res.WireBytes > res.BytesReceived {
		t.Fatalf("%d bytes on the wire for %d inflated", res.WireBytes, res.BytesReceived)
	}
}

// The loop's inflater: a message inflates to its content whether it is
// new or remembered, a message that differs from a remembered one in one
// byte is inflated anew, and the compressed echo message (a stored block
// with the timestamp before the body compressed once) is one stream that
// compress/flate reads back whole.
func TestFlater(t *testing.T) {
	var f flater
	a, b := FormatTicker(nil, 1, 7, 99, 300), FormatTicker(nil, 2, 8, 99, 300)
	za, zb := deflate(a, flate.BestSpeed), deflate(b, flate.BestSpeed)
	bad := bytes.Clone(za)
	bad[len(bad)/2] ^= 0x55
	for i, tc := range []struct {
		z, want []byte
	}{{za, a}, {za, a}, {zb, b}, {za, a}, {bad, nil}, {za, a}} {
		got, err := f.inflate(tc.z, nil)
		if tc.want == nil {
			if err == nil && bytes.Equal(got, a) {
				t.Fatalf("%d: a corrupted message inflated to the original", i)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Fatalf("%d: %q %v, want %q", i, got, err, tc.want)
		}
	}
	for _, huffman := range []bool{false, true} {
		msg := append([]byte("12345678"), FormatTicker(nil, 3, 1, 2, 1000)...)
		for ts := byte('0'); ts < '3'; ts++ {
			msg[0] = ts
			got, err := wsframe.Inflate(f.echoMessage(msg, huffman), 1<<20)
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("huffman %v: echo message inflates to %.40q, %v", huffman, got, err)
			}
		}
	}
}
