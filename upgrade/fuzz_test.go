package upgrade

import (
	"strings"
	"testing"
)

// FuzzStep feeds random heads in random splits: Step never panics, never
// consumes more than it was given, always ends in a defined Kind with a
// well-formed reply, and decides the same whatever the split.
func FuzzStep(f *testing.F) {
	for _, data := range splitCases() {
		f.Add([]byte(data), []byte{7, 1, 200, 3})
	}
	f.Add([]byte(wsHead()), []byte{})
	f.Add([]byte("GET / HTTP/1.1\n\n"), []byte{1})
	// The protocol rules: per-line Connection and Upgrade, extension lists.
	f.Add([]byte(wsHeadWithout([]string{"Connection"}, "Connection: keep-alive", "Connection: Upgrade")), []byte{9})
	f.Add([]byte(wsHeadWithout([]string{"Upgrade"}, "Upgrade: websocket", "Upgrade: h2c")), []byte{5, 2})
	f.Add([]byte(wsHead("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=\"10\", x; y")), []byte{30})
	f.Add([]byte(wsHead("Sec-WebSocket-Extensions: permessage-deflate; =")), []byte{})
	u := splitUpgrader(f)
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		whole := stepChunks(t, u, string(data), nil)
		defer release(whole)
		checkFuzzResult(t, u, data, whole)

		sizes := make([]int, len(cuts))
		for i, c := range cuts {
			sizes[i] = 1 + int(c)%64
		}
		for _, s := range [][]int{sizes, ones(len(data))} {
			got := stepChunks(t, u, string(data), s)
			if !sameResult(got, whole) {
				t.Fatalf(
					"sizes %v: got %v %d consumed %d, want %v %d consumed %d\n%q\n%q",
					s, got.Kind, got.Status, got.Consumed, whole.Kind, whole.Status, whole.Consumed,
					responseBytes(got), responseBytes(whole))
			}
			release(got)
		}
	})
}

func ones(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = 1
	}
	return s
}

func checkFuzzResult(t *testing.T, u *Upgrader, data []byte, res Result) {
	t.Helper()
	if res.Consumed < 0 || res.Consumed > len(data) {
		t.Fatalf(
			"consumed %d of %d",
			res.Consumed, len(data))
	}
	switch res.Kind {
	case NeedMore:
		if res.Response != nil || res.Consumed != 0 || res.Err != nil || len(data) > u.maxHead {
			t.Fatalf(
				"bad NeedMore %+v for %d bytes",
				res, len(data))
		}
		// No complete head can be in there.
		if strings.Contains(string(data), "\n\n") || strings.Contains(string(data), "\n\r\n") {
			t.Fatalf(
				"NeedMore with an end of head in %q",
				data)
		}
		return
	case Upgraded:
		if res.Status != 101 || res.Err != nil || res.Request == nil || res.Consumed == 0 {
			t.Fatalf(
				"bad Upgraded %+v",
				res)
		}
	case Rejected:
		if res.Status < 400 || res.Err == nil {
			t.Fatalf(
				"bad Rejected %+v",
				res)
		}
	case ServedHTTP:
		if res.Request == nil || res.Err != nil {
			t.Fatalf(
				"bad ServedHTTP %+v",
				res)
		}
	default:
		t.Fatalf(
			"undefined kind %v",
			res.Kind)
	}
	if res.Consumed == 0 {
		t.Fatalf(
			"%v consumed nothing",
			res.Kind)
	}
	checkReply(t, res)
}
