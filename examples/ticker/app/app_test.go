package app

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/heraldws/herald/examples/ticker/book"
	"github.com/heraldws/herald/internal/loadclient"
	"github.com/heraldws/herald/internal/wsframe"
)

// startTicker runs the example in-process with a fast tick, and a history
// for the subscribe protocol as the command has by default: the bench
// contract's clients must not see it.
func startTicker(t *testing.T, symbols, size int) string {
	t.Helper()
	return startTickerHistory(t, symbols, size, 100).Addr().String()
}

func startTickerHistory(t *testing.T, symbols, size, history int) *Ticker {
	t.Helper()
	tk, err := New(Options{Addr: "127.0.0.1:0", Interval: 20 * time.Millisecond, Symbols: symbols, Size: size, Publish: true, History: history},
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tk.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = tk.Shutdown(ctx)
	})
	return tk
}

type tick struct {
	Sym string  `json:"sym"`
	Seq int64   `json:"seq"`
	TS  int64   `json:"ts"`
	Px  float64 `json:"px"`
}

// hangGuard bounds every wait for the server. It is no speed requirement:
// it only ends the wait for a server that never answers.
const hangGuard = time.Minute

// dialTicker connects to /ws and returns a reader of the server's frames:
// frames that came with the 101 are in the dialer's buffer, read it first.
func dialTicker(t *testing.T, addr, query string) io.ReadWriter {
	t.Helper()
	conn, br, _, err := ws.Dialer{Timeout: hangGuard}.Dial(context.Background(), "ws://"+addr+"/ws"+query)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(hangGuard))
	if br != nil {
		return struct {
			io.Reader
			io.Writer
		}{io.MultiReader(br, conn), conn}
	}
	return conn
}

func TestTickerContract(t *testing.T) {
	testStart := time.Now()
	const symbols, size = 3, 128
	addr := startTicker(t, symbols, size)
	conn := dialTicker(t, addr, "")
	last := map[string]int64{}
	for len(last) < symbols || minSeqSeen(last) < 5 {
		data, op, err := wsutil.ReadServerData(conn)
		if err != nil {
			t.Fatal(err)
		}
		if op != ws.OpText {
			t.Fatalf("opcode %v, want text", op)
		}
		if d := len(data) - size; d < -16 || d > 16 {
			t.Fatalf("message of %d bytes, want about %d: %s", len(data), size, data)
		}
		var m tick
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("%v: %s", err, data)
		}
		if !strings.HasPrefix(m.Sym, "S") || m.Px <= 0 {
			t.Fatalf("bad message %s", data)
		}
		// The publish time in Unix ns: not in the future, and not older
		// than this test.
		if age := time.Since(time.Unix(0, m.TS)); age < 0 || time.Unix(0, m.TS).Before(testStart) {
			t.Fatalf("ts %d is %v old", m.TS, age)
		}
		if prev, ok := last[m.Sym]; ok && m.Seq != prev+1 {
			t.Fatalf("%s: seq %d after %d", m.Sym, m.Seq, prev)
		}
		last[m.Sym] = m.Seq
	}
}

func minSeqSeen(last map[string]int64) int64 {
	least := int64(1 << 62)
	for _, s := range last {
		least = min(least, s)
	}
	return least
}

func TestTickerNarrowsToRequestedSymbols(t *testing.T) {
	addr := startTicker(t, 5, 64)
	conn := dialTicker(t, addr, "?symbols=S1,S3")
	seen := map[string]bool{}
	for i := 0; i < 20; i++ {
		data, _, err := wsutil.ReadServerData(conn)
		if err != nil {
			t.Fatal(err)
		}
		var m tick
		_ = json.Unmarshal(data, &m)
		if m.Sym != "S1" && m.Sym != "S3" {
			t.Fatalf("got %s, subscribed to S1,S3 only", m.Sym)
		}
		seen[m.Sym] = true
	}
	if !seen["S1"] || !seen["S3"] {
		t.Fatalf("saw %v", seen)
	}
}

func TestTickerRefusesBadRequests(t *testing.T) {
	addr := startTicker(t, 5, 64)
	for _, q := range []string{"?symbols=S9", "?symbols=S1,,S2", "?symbols=X1", "?symbols=S01"} {
		conn := dialTicker(t, addr, q)
		f, err := ws.ReadFrame(conn)
		if err != nil || f.Header.OpCode != ws.OpClose {
			t.Fatalf("%s: got %v %v, want a close", q, f.Header.OpCode, err)
		}
		if code, _ := ws.ParseCloseFrameData(f.Payload); code != 1008 {
			t.Fatalf("%s: close code %d, want 1008", q, code)
		}
	}
	// Plain HTTP: the page, health and stats.
	for path, want := range map[string]int{"/": 200, "/healthz": 200, "/stats": 200, "/herald-client.js": 200, "/nope": 404} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

func TestAppendTickSize(t *testing.T) {
	for _, size := range []int{16, 64, 128, 1024} {
		b := appendTick(nil, "S12", 123456, time.Now().UnixNano(), 101.5, size)
		var m tick
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("size %d: %v: %s", size, err, b)
		}
		if size >= 80 && len(b) != size {
			t.Fatalf("size %d: got %d bytes", size, len(b))
		}
	}
}

// Ticks makes one message per symbol and tick, each +1 in its symbol's
// sequence and stamped with the tick's time.
func TestTicksSequence(t *testing.T) {
	ticks := NewTicks(3, 96)
	for n := int64(1); n <= 4; n++ {
		msgs := ticks.Next(1000 + n)
		if len(msgs) != 3 {
			t.Fatalf("tick %d: %d messages", n, len(msgs))
		}
		for k, m := range msgs {
			var got tick
			if err := json.Unmarshal(m.Data, &got); err != nil {
				t.Fatalf("tick %d: %v: %s", n, err, m.Data)
			}
			if want := symbol(k); m.Topic != want || got.Sym != want || got.Seq != n || got.TS != 1000+n || len(m.Data) != 96 {
				t.Fatalf("tick %d, message %d: topic %s %+v (%d bytes)", n, k, m.Topic, got, len(m.Data))
			}
		}
	}
}

// -payload picks what fills a tick: book ticks are the book package's
// messages for the tick's symbol, sequence and time; an unknown payload is
// refused before the server starts.
func TestTicksPayload(t *testing.T) {
	for _, tc := range []struct {
		payload string
		want    func(k int, seq, ts int64) string // "" : the plain tick
		err     bool
	}{
		{payload: ""},
		{payload: book.Pad},
		{payload: book.Book, want: func(k int, seq, ts int64) string { return string(book.Append(nil, k, uint64(seq), ts, 1024)) }},
		{payload: "zeros", err: true},
	} {
		ticks, err := NewTicksOf(3, 1024, tc.payload)
		if tc.err {
			_, nerr := New(Options{Addr: "127.0.0.1:0", Interval: time.Second, Symbols: 1, Payload: tc.payload, Publish: true}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
			if err == nil || nerr == nil {
				t.Errorf("payload %q: accepted (%v, %v)", tc.payload, err, nerr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("payload %q: %v", tc.payload, err)
		}
		for seq := int64(1); seq <= 3; seq++ {
			for k, m := range ticks.Next(5000 + seq) {
				var got tick
				if err := json.Unmarshal(m.Data, &got); err != nil || got.Seq != seq || got.Sym != symbol(k) || got.TS != 5000+seq {
					t.Fatalf("payload %q: %s: %+v %v", tc.payload, m.Data, got, err)
				}
				isBook := strings.Contains(string(m.Data), `"levels":[[`)
				if tc.want == nil {
					if isBook || len(m.Data) != 1024 {
						t.Fatalf("payload %q: not the plain tick: %.100s (%d bytes)", tc.payload, m.Data, len(m.Data))
					}
				} else if w := tc.want(k, seq, 5000+seq); string(m.Data) != w {
					t.Fatalf("payload %q: got %.100s, want %.100s", tc.payload, m.Data, w)
				}
			}
		}
	}
}

func TestMemoryLimitFlag(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "") // set, so a valid limit leaves the runtime alone
	for _, tc := range []struct {
		limit, outbound int64
		wantErr         string
	}{
		{0, 64 << 20, ""},
		{256 << 20, 64 << 20, ""},
		{-1, 64 << 20, "negative"},
		{128 << 20, 64 << 20, "below 4 × -max-outbound-total"},
	} {
		err := applyMemoryLimit(tc.limit, tc.outbound)
		if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("applyMemoryLimit(%d, %d) = %v, want an error containing %q", tc.limit, tc.outbound, err, tc.wantErr)
		}
	}
}

// The flags' defaults are the bench contract's: alone, publishing; a node
// that does not publish needs a cluster.
func TestFlagsAndOptions(t *testing.T) {
	fs := flag.NewFlagSet("ticker", flag.ContinueOnError)
	o := Flags(fs)
	if err := fs.Parse([]string{"-addr", "127.0.0.1:0", "-reuseport"}); err != nil {
		t.Fatal(err)
	}
	if o.NATS != "" || !o.Publish || !o.ReusePort || o.Symbols != 20 || o.Interval != 100*time.Millisecond {
		t.Fatalf("options %+v", *o)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if o.History != 1000 {
		t.Fatalf("-history defaults to %d, want 1000", o.History)
	}
	bad := *o
	bad.History = -1
	if _, err := New(bad, quiet, nil); err == nil || !strings.Contains(err.Error(), "-history") {
		t.Fatalf("New with a negative history: %v", err)
	}
	o.Publish = false
	if _, err := New(*o, quiet, nil); err == nil || !strings.Contains(err.Error(), "-publish=false needs -nats") {
		t.Fatalf("New without a cluster nor publishing: %v", err)
	}
}

// TestTickerCompression: with -compression, a client that offers
// permessage-deflate gets every tick of -compression-min-size bytes and
// more compressed, and /stats counts the negotiation and the compressed
// ticks (once per tick, whatever the number of clients). The flag is off
// by default.
func TestTickerCompression(t *testing.T) {
	fs := flag.NewFlagSet("ticker", flag.ContinueOnError)
	if o := Flags(fs); o.Compression || o.CompressionMinSize != 512 {
		t.Fatalf("compression flags default to %v, %d; want off, 512", o.Compression, o.CompressionMinSize)
	}
	tk, err := New(Options{Addr: "127.0.0.1:0", Interval: 20 * time.Millisecond, Symbols: 3, Size: 200, Publish: true,
		Compression: true, CompressionMinSize: 64}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tk.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = tk.Shutdown(ctx)
	})
	addr := tk.Addr().String()
	clients := make([]*bufio.Reader, 3)
	for i := range clients {
		conn, err := loadclient.DialDeflate(addr, "/ws", i)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		_ = conn.SetDeadline(time.Now().Add(hangGuard))
		clients[i] = bufio.NewReader(conn)
	}
	for i, r := range clients {
		for n := 0; n < 9; n++ {
			h, p, err := wsframe.ReadFrameDeflate(r, nil, 1<<20)
			if err != nil {
				t.Fatalf("client %d: %v", i, err)
			}
			if h.Op != wsframe.OpText || !h.Compressed {
				t.Fatalf("client %d: tick %d: opcode %#x compressed %v, want a compressed text", i, n, h.Op, h.Compressed)
			}
			if p, err = wsframe.Inflate(p, 1<<20); err != nil {
				t.Fatal(err)
			}
			var tk tick
			if err := json.Unmarshal(p, &tk); err != nil || !strings.HasPrefix(tk.Sym, "S") || tk.Seq < 1 {
				t.Fatalf("client %d: tick %q: %v", i, p, err)
			}
		}
	}
	resp, err := http.Get("http://" + addr + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var stats struct {
		Server struct{ DeflateNegotiated uint64 }
		Hub    struct{ Published, Compressed uint64 }
	}
	if err := json.NewDecoder(resp.Body).Decode(&stats); err != nil {
		t.Fatal(err)
	}
	if stats.Server.DeflateNegotiated != 3 || stats.Hub.Compressed == 0 || stats.Hub.Compressed > stats.Hub.Published {
		t.Fatalf("stats %+v: want 3 negotiations, and each tick compressed at most once for the 3 clients", stats)
	}
}
