package upgrade

import (
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"unsafe"
)

// splitCases are heads whose outcome must not depend on how they arrive.
func splitCases() map[string]string {
	frame := "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
	return map[string]string{
		"valid":               wsHead("Origin: https://example.com", "Sec-WebSocket-Protocol: b, a"),
		"valid LF":            strings.ReplaceAll(wsHead(), "\r\n", "\n"),
		"valid mixed ends":    strings.Replace(wsHead(), "\r\n\r\n", "\n\r\n", 1),
		"valid + frame":       wsHead() + frame,
		"valid + compression": wsHead("Sec-WebSocket-Extensions: permessage-deflate"),
		"authorized":          strings.Replace(wsHead(), "/chat?room=1", "/chat?token=ok", 1),
		"denied":              strings.Replace(wsHead(), "/chat?room=1", "/chat?token=no", 1),
		"bad origin":          wsHead("Origin: https://evil.com"),
		"bad key":             wsHeadWithout([]string{"Sec-WebSocket-Key"}, "Sec-WebSocket-Key: short"),
		"bad version":         wsHeadWithout([]string{"Sec-WebSocket-Version"}, "Sec-WebSocket-Version: 7"),
		"POST":                strings.Replace(wsHead(), "GET", "POST", 1),
		"garbage":             "HELLO WORLD\r\n\r\n",
		"TLS":                 "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
		"control late":        "GET /abc\x01 HTTP/1.1\r\n\r\n",
		"bare CR":             wsHead("X: a\rb"),
		"too large":           wsHead("X-Filler: " + strings.Repeat("z", 600)),
		"plain GET":           head("GET /health HTTP/1.1", "Host: example.com"),
		"plain HEAD":          head("HEAD /health HTTP/1.1", "Host: example.com"),
		"plain 404":           head("GET /nope HTTP/1.1", "Host: example.com"),
		"incomplete":          "GET /chat HTTP/1.1\r\nHost: example.com\r\n",
		"CR LF straddle":      "GET / HTTP/1.1\r\nHost: x\r\n\r",
	}
}

func splitUpgrader(tb testing.TB) *Upgrader {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	return newTest(tb, Config{
		MaxHeaderBytes: 512,
		Subprotocols:   []string{"a", "b"},
		Compression:    true,
		HTTPHandler:    mux,
		Authorize: func(r *Request) (any, error) {
			switch r.Query().Get("token") {
			case "no":
				return nil, ErrUnauthorized
			case "ok":
				return "user-1", nil
			}
			return nil, nil
		},
	})
}

// TestSplits: every cut into two pieces, one byte at a time and random
// splits give the result of the whole buffer at once.
func TestSplits(t *testing.T) {
	u := splitUpgrader(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for name, data := range splitCases() {
		t.Run(name, func(t *testing.T) {
			want := stepChunks(t, u, data, nil)
			defer release(want)
			if want.Kind != NeedMore {
				checkReply(t, want)
			}
			check := func(sizes []int) {
				got := stepChunks(t, u, data, sizes)
				defer release(got)
				if !sameResult(got, want) {
					t.Fatalf(
						"sizes %v: got %v %d consumed %d, want %v %d consumed %d\n%q\n%q",
						sizes, got.Kind, got.Status, got.Consumed, want.Kind, want.Status, want.Consumed,
						responseBytes(got), responseBytes(want))
				}
			}
			for cut := 1; cut < len(data); cut++ {
				check([]int{cut})
			}
			ones := make([]int, len(data))
			for i := range ones {
				ones[i] = 1
			}
			check(ones)
			for i := 0; i < 200; i++ {
				check(randomSizes(rng, len(data)))
			}
		})
	}
}

func responseBytes(r Result) []byte {
	if r.Response == nil {
		return nil
	}
	return r.Response.B
}

// TestSplitOutcomes pins what some split cases decide.
func TestSplitOutcomes(t *testing.T) {
	u := splitUpgrader(t)
	cases := splitCases()
	want := map[string]struct {
		kind     Kind
		status   int
		consumed int
	}{
		"valid + frame":  {Upgraded, 101, len(wsHead())},
		"too large":      {Rejected, 431, 512},
		"TLS":            {Rejected, 400, 1},
		"control late":   {Rejected, 400, 9},
		"incomplete":     {NeedMore, 0, 0},
		"CR LF straddle": {NeedMore, 0, 0},
		"authorized":     {Upgraded, 101, len(cases["authorized"])},
		"denied":         {Rejected, 401, len(cases["denied"])},
		"plain HEAD":     {ServedHTTP, 200, len(cases["plain HEAD"])},
	}
	for name, w := range want {
		res := stepWhole(u, cases[name])
		if res.Kind != w.kind || res.Status != w.status || res.Consumed != w.consumed {
			t.Fatalf(
				"%s: %v %d consumed %d, want %v %d consumed %d",
				name, res.Kind, res.Status, res.Consumed, w.kind, w.status, w.consumed)
		}
		release(res)
	}
	res := stepWhole(u, cases["valid"])
	defer release(res)
	if res.Subprotocol != "a" {
		t.Fatalf(
			"subprotocol %q",
			res.Subprotocol)
	}
}

// TestLimitIsNeverExceeded: at exactly MaxHeaderBytes with no end Step
// waits; one byte more is 431.
func TestLimitIsNeverExceeded(t *testing.T) {
	u := newTest(t, Config{MaxHeaderBytes: 64})
	data := []byte("GET /" + strings.Repeat("a", 100))
	var st State
	for n := 1; n <= 64; n++ {
		if res := u.Step(&st, data[:n], nil); res.Kind != NeedMore {
			t.Fatalf(
				"decided at %d bytes: %v",
				n, res.Kind)
		}
	}
	res := u.Step(&st, data[:65], nil)
	defer release(res)
	if res.Status != 431 || res.Consumed != 64 {
		t.Fatalf(
			"got %d consumed %d",
			res.Status, res.Consumed)
	}
}

func TestNeedMoreDoesNotAllocate(t *testing.T) {
	u := newTest(t, Config{})
	data := []byte(wsHead())
	var st State
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		i = i%(len(data)-1) + 1
		if i == 1 {
			st.Reset()
		}
		if res := u.Step(&st, data[:i], testRemote); res.Kind != NeedMore {
			t.Fatalf(
				"decided at %d",
				i)
		}
	})
	if allocs != 0 {
		t.Fatalf(
			"NeedMore allocates %v times",
			allocs)
	}
}

// TestStateIsSmall: every handshaking connection carries a State.
func TestStateIsSmall(t *testing.T) {
	if n := unsafe.Sizeof(State{}); n != 4 {
		t.Fatalf("State is %d bytes, want 4", n)
	}
}
