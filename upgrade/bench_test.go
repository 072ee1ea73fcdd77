package upgrade

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// browserHead is what a browser sends, give or take.
var browserHead = head(
	"GET /ws?room=lobby HTTP/1.1",
	"Host: example.com",
	"Connection: Upgrade",
	"Pragma: no-cache",
	"Cache-Control: no-cache",
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
	"Upgrade: websocket",
	"Origin: https://example.com",
	"Sec-WebSocket-Version: 13",
	"Accept-Encoding: gzip, deflate, br",
	"Accept-Language: en-US,en;q=0.9",
	"Cookie: session=abc123; theme=dark",
	"Sec-WebSocket-Key: "+testKey,
	"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
	"Sec-WebSocket-Protocol: chat.v2, chat.v1",
)

func benchStep(b *testing.B, u *Upgrader, data string, want Kind) {
	buf := []byte(data)
	var st State
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		res := u.Step(&st, buf, testRemote)
		if res.Kind != want {
			b.Fatalf(
				"got %v %d: %v",
				res.Kind, res.Status, res.Err)
		}
		release(res)
		ReleaseRequest(res.Request) // as a server that does not keep it does
	}
}

// BenchmarkStepUpgrade: a whole browser handshake with a subprotocol and an
// Authorize hook (which is given the Request, so it is not reused).
func BenchmarkStepUpgrade(b *testing.B) {
	u := newTest(b, Config{
		Subprotocols: []string{"chat.v1", "chat.v2"},
		Authorize:    func(*Request) (any, error) { return nil, nil },
	})
	benchStep(b, u, browserHead, Upgraded)
}

// BenchmarkStepUpgradeMinimal: the smallest valid handshake, no hooks: the
// released Request is reused, nothing is allocated.
func BenchmarkStepUpgradeMinimal(b *testing.B) {
	benchStep(b, newTest(b, Config{}), wsHead(), Upgraded)
}

// BenchmarkStepNeedMore: the browser head arriving one byte per read; each
// op is one Step that finds no end yet.
func BenchmarkStepNeedMore(b *testing.B) {
	u := newTest(b, Config{})
	buf := []byte(browserHead)
	var st State
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		n++
		if n == len(buf) {
			n = 1
			st.Reset()
		}
		if res := u.Step(&st, buf[:n], testRemote); res.Kind != NeedMore {
			b.Fatalf(
				"decided at %d",
				n)
		}
	}
}

// BenchmarkStepRejectOrigin: a complete browser head refused with 403.
func BenchmarkStepRejectOrigin(b *testing.B) {
	u := newTest(b, Config{})
	benchStep(b, u, replaceOrigin(browserHead, "https://evil.com"), Rejected)
}

// BenchmarkStepRejectJunk: a TLS ClientHello on the plain port.
func BenchmarkStepRejectJunk(b *testing.B) {
	benchStep(b, newTest(b, Config{}), "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", Rejected)
}

// BenchmarkStepHTTP: a health check through an http.Handler.
func BenchmarkStepHTTP(b *testing.B) {
	u := newTest(b, Config{HTTPHandler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("ok"))
	})})
	benchStep(b, u, head("GET /healthz HTTP/1.1", "Host: example.com", "User-Agent: probe/1.0"), ServedHTTP)
}

func replaceOrigin(h, origin string) string {
	return strings.Replace(h, "Origin: https://example.com", "Origin: "+origin, 1)
}

// sinkHeader makes the maps headerMapAllocs builds escape, as a Request's
// header map does.
var sinkHeader http.Header

// headerMapAllocs is what the runtime spends on an http.Header sized for n
// fields and filled with n distinct ones, as parseRequest builds it. It
// depends on the Go version's map implementation, not on herald.
func headerMapAllocs(n int) float64 {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "X-Field-" + strconv.Itoa(i)
	}
	vals := []string{"v"}
	return testing.AllocsPerRun(100, func() {
		h := make(http.Header, n)
		for _, k := range keys {
			h[k] = vals
		}
		sinkHeader = h
	})
}

// manyFields returns n header lines with distinct names.
func manyFields(n int) []string {
	lines := make([]string, n)
	for i := range lines {
		lines[i] = "X-Field-" + strconv.Itoa(i) + ": v"
	}
	return lines
}

// TestUpgradeAllocs pins what a successful upgrade allocates: the Request,
// which holds the copy of the head when it fits, and its header map. The
// subprotocol, the permessage-deflate negotiation, the Origin check,
// Authorize, the accept key and the 101 cost nothing. A head too long (or
// with too many fields) for the Request's room costs two more: its copy and
// the values' backing array.
func TestUpgradeAllocs(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("instrumented builds allocate more")
	}
	full := Config{
		Subprotocols: []string{"chat.v1", "chat.v2"},
		Compression:  true,
		Authorize:    func(*Request) (any, error) { return "alice", nil },
		CheckOrigin:  func(*Request) bool { return false },
	}
	cases := []struct {
		name    string
		cfg     Config
		data    string
		request float64 // allocations besides the header map
	}{
		{name: "minimal", data: wsHead(), request: 1},
		{name: "browser", cfg: full, data: browserHead, request: 1},
		{name: "browser, foreign Origin accepted by pattern", cfg: Config{OriginPatterns: []string{"*.example.org"}},
			data: replaceOrigin(browserHead, "https://app.example.org"), request: 1},
		{name: "head with cookies", cfg: full, data: wsHead("Cookie: " + strings.Repeat("c", 3000)), request: 1},
		{name: "head too long for the Request", cfg: full, data: wsHead("Cookie: " + strings.Repeat("c", 4000)), request: 3},
		{name: "many fields", data: wsHead(manyFields(40)...), request: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := newTest(t, tc.cfg)
			buf := []byte(tc.data)
			var st State
			got := testing.AllocsPerRun(200, func() {
				res := u.Step(&st, buf, testRemote)
				if res.Kind != Upgraded {
					t.Fatalf(
						"got %v %d: %v",
						res.Kind, res.Status, res.Err)
				}
				release(res)
			})
			fields := strings.Count(tc.data, "\n") - 2
			want := tc.request + headerMapAllocs(fields)
			t.Logf("%d fields: %v allocations (%v for the header map)", fields, got, want-tc.request)
			if got != want {
				t.Fatalf(
					"a successful upgrade allocates %v times, want %v: the Request (%v) and its header map; "+
						"if this went down, lower the pin",
					got, want, tc.request)
			}
		})
	}
}

// TestReleasedRequestAllocs pins what ReleaseRequest buys: a server that
// gives each upgraded Request back makes no garbage per handshake, whatever
// the head's variant, unless a hook was given the Request (it may have kept
// it, so it is never reused).
func TestReleasedRequestAllocs(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("instrumented builds allocate more, and the race detector makes sync.Pool drop items")
	}
	hooked := Config{Authorize: func(*Request) (any, error) { return nil, nil }}
	cases := []struct {
		name string
		cfg  Config
		data string
		want float64
	}{
		{name: "minimal", data: wsHead(), want: 0},
		{name: "browser", cfg: Config{Subprotocols: []string{"chat.v1"}, OriginPatterns: []string{"*"}}, data: browserHead, want: 0},
		{name: "head with cookies", data: wsHead("Cookie: " + strings.Repeat("c", 3000)), want: 0},
		{name: "seen by Authorize", cfg: hooked, data: wsHead(), want: 1 + headerMapAllocs(strings.Count(wsHead(), "\n")-2)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := newTest(t, tc.cfg)
			buf := []byte(tc.data)
			var st State
			got := testing.AllocsPerRun(200, func() {
				res := u.Step(&st, buf, testRemote)
				if res.Kind != Upgraded {
					t.Fatalf(
						"got %v %d: %v",
						res.Kind, res.Status, res.Err)
				}
				release(res)
				ReleaseRequest(res.Request)
			})
			if got != tc.want {
				t.Fatalf(
					"an upgrade whose Request is released allocates %v times, want %v",
					got, tc.want)
			}
		})
	}
}

// BenchmarkStepUpgradeDeferred is BenchmarkStepUpgrade with DeferHooks: Step
// hands the handshake over as a Pending, and Run (here on the same
// goroutine) runs Authorize and writes the 101. What the split costs
// beyond the on-loop path is the Pending; the hand-over between goroutines
// is the engine's.
func BenchmarkStepUpgradeDeferred(b *testing.B) {
	u := newTest(b, Config{
		Subprotocols: []string{"chat.v1", "chat.v2"},
		Authorize:    func(*Request) (any, error) { return nil, nil },
		DeferHooks:   true,
	})
	buf := []byte(browserHead)
	ctx := context.Background()
	var st State
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		res := u.Step(&st, buf, testRemote)
		if res.Kind != Deferred {
			b.Fatalf("got %v %d: %v", res.Kind, res.Status, res.Err)
		}
		res = res.Pending.Run(ctx)
		if res.Kind != Upgraded {
			b.Fatalf("got %v %d: %v", res.Kind, res.Status, res.Err)
		}
		release(res)
	}
}
