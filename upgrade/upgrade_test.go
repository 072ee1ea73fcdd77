package upgrade

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

func TestStepStatuses(t *testing.T) {
	long := wsHead("X-Filler: " + strings.Repeat("a", DefaultMaxHeaderBytes))
	cases := []struct {
		name     string
		cfg      Config
		data     string
		kind     Kind
		status   int
		consumed int // 0: the whole data
		cause    error
		headers  map[string]string // exact values
		body     string            // exact body; "" skips the check
	}{
		{
			name:   "valid",
			data:   wsHead(),
			kind:   Upgraded,
			status: 101,
			headers: map[string]string{
				"Upgrade":              "websocket",
				"Connection":           "Upgrade",
				"Sec-Websocket-Accept": testAccept,
			},
		},
		{
			name:   "valid with LF line ends",
			data:   strings.ReplaceAll(wsHead(), "\r\n", "\n"),
			kind:   Upgraded,
			status: 101,
			headers: map[string]string{
				"Sec-Websocket-Accept": testAccept,
			},
		},
		{
			name:   "header names and values in odd case",
			data:   "GET /chat HTTP/1.1\r\nhost: example.com\r\nUPGRADE: WebSocket\r\nconnection: upgrade\r\nsec-websocket-key: " + testKey + "\r\nsec-WEBSOCKET-version: 13\r\n\r\n",
			kind:   Upgraded,
			status: 101,
		},
		{
			name:   "Connection token list",
			data:   wsHeadWithout([]string{"Connection"}, "Connection: keep-alive, Upgrade"),
			kind:   Upgraded,
			status: 101,
		},
		{
			name:   "POST upgrade",
			data:   strings.Replace(wsHead(), "GET", "POST", 1),
			kind:   Rejected,
			status: 405,
			cause:  ErrMethodNotAllowed,
			headers: map[string]string{
				"Allow": "GET",
			},
			body: "herald: method not allowed",
		},
		{
			name:   "HEAD upgrade gets no body",
			data:   strings.Replace(wsHead(), "GET", "HEAD", 1),
			kind:   Rejected,
			status: 405,
			cause:  ErrMethodNotAllowed,
			headers: map[string]string{
				"Allow":          "GET",
				"Content-Length": "26",
			},
		},
		{
			name:   "missing Connection",
			data:   wsHeadWithout([]string{"Connection"}),
			kind:   Rejected,
			status: 400,
			cause:  ErrBadUpgrade,
			body:   `herald: missing "Connection: Upgrade"`,
		},
		{
			name:   "Connection without upgrade",
			data:   wsHeadWithout([]string{"Connection"}, "Connection: keep-alive"),
			kind:   Rejected,
			status: 400,
			cause:  ErrBadUpgrade,
		},
		{
			name:   "Upgrade is not a websocket token",
			data:   wsHeadWithout([]string{"Upgrade"}, "Upgrade: websockets"),
			kind:   Rejected,
			status: 400,
			cause:  ErrBadUpgrade,
			body:   `herald: missing "Upgrade: websocket"`,
		},
		{
			name:   "Upgrade list is refused",
			data:   wsHeadWithout([]string{"Upgrade"}, "Upgrade: websocket, h2c"),
			kind:   Rejected,
			status: 400,
			cause:  ErrBadUpgrade,
		},
		{
			name:   "missing key",
			data:   wsHeadWithout([]string{"Sec-WebSocket-Key"}),
			kind:   Rejected,
			status: 400,
			cause:  ErrBadKey,
			body:   "herald: bad Sec-WebSocket-Key",
		},
		{
			name:   "key not base64",
			data:   wsHeadWithout([]string{"Sec-WebSocket-Key"}, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ!=="),
			kind:   Rejected,
			status: 400,
			cause:  ErrBadKey,
		},
		{
			name:   "key of 15 bytes",
			data:   wsHeadWithout([]string{"Sec-WebSocket-Key"}, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j"),
			kind:   Rejected,
			status: 400,
			cause:  ErrBadKey,
		},
		{
			name:   "two keys",
			data:   wsHead("Sec-WebSocket-Key: " + testKey),
			kind:   Rejected,
			status: 400,
			cause:  ErrBadKey,
		},
		{
			name:   "version 8",
			data:   wsHeadWithout([]string{"Sec-WebSocket-Version"}, "Sec-WebSocket-Version: 8"),
			kind:   Rejected,
			status: 426,
			cause:  ErrBadVersion,
			headers: map[string]string{
				"Sec-Websocket-Version": "13",
				"Upgrade":               "websocket",
			},
			body: "herald: unsupported Sec-WebSocket-Version",
		},
		{
			name:   "missing version",
			data:   wsHeadWithout([]string{"Sec-WebSocket-Version"}),
			kind:   Rejected,
			status: 426,
			cause:  ErrBadVersion,
			headers: map[string]string{
				"Sec-Websocket-Version": "13",
			},
		},
		{
			name:   "not a request line",
			data:   "HELLO\r\n\r\n",
			kind:   Rejected,
			status: 400,
			cause:  ErrMalformed,
			body:   "herald: malformed request line",
		},
		{
			name:     "TLS ClientHello is refused at its first byte",
			data:     "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
			kind:     Rejected,
			status:   400,
			consumed: 1,
			cause:    ErrMalformed,
		},
		{
			name:     "control byte in the request line",
			data:     "GET /\x00 HTTP/1.1\r\n\r\n",
			kind:     Rejected,
			status:   400,
			consumed: 6,
			cause:    ErrMalformed,
		},
		{
			name:   "HTTP/2 preface",
			data:   "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
			kind:   Rejected,
			status: 400,
			cause:  ErrMalformed,
			body:   "herald: unsupported HTTP version",
		},
		{
			name:   "header line without colon",
			data:   wsHead("NoColonHere"),
			kind:   Rejected,
			status: 400,
			cause:  ErrMalformed,
			body:   "herald: malformed header line",
		},
		{
			name:   "space before colon",
			data:   wsHead("Bad Name : x"),
			kind:   Rejected,
			status: 400,
			cause:  ErrMalformed,
		},
		{
			name:   "obs-fold",
			data:   wsHead("X-A: a", " folded"),
			kind:   Rejected,
			status: 400,
			cause:  ErrMalformed,
		},
		{
			name:   "bare CR",
			data:   wsHead("X-A: a\rb"),
			kind:   Rejected,
			status: 400,
			cause:  ErrMalformed,
		},
		{
			name:   "HTTP/1.0 upgrade",
			data:   strings.Replace(wsHead(), "HTTP/1.1", "HTTP/1.0", 1),
			kind:   Rejected,
			status: 400,
			cause:  ErrMalformed,
			body:   "herald: WebSocket needs HTTP/1.1",
		},
		{
			name:   "missing Host",
			data:   wsHeadWithout([]string{"Host"}),
			kind:   Rejected,
			status: 400,
			cause:  ErrMalformed,
			body:   "herald: missing Host header",
		},
		{
			name:   "two Hosts",
			data:   wsHead("Host: evil.com"),
			kind:   Rejected,
			status: 400,
			cause:  ErrMalformed,
		},
		{
			name:   "authority-form target",
			data:   head("CONNECT example.com:443 HTTP/1.1", "Host: example.com:443"),
			kind:   Rejected,
			status: 400,
			cause:  ErrMalformed,
		},
		{
			name:     "head over the limit",
			data:     long,
			kind:     Rejected,
			status:   431,
			consumed: DefaultMaxHeaderBytes,
			cause:    ErrHeaderTooLarge,
			body:     "herald: request header too large",
		},
		{
			name:     "smaller limit",
			cfg:      Config{MaxHeaderBytes: 100},
			data:     wsHead(),
			kind:     Rejected,
			status:   431,
			consumed: 100,
			cause:    ErrHeaderTooLarge,
		},
		{
			name:   "head exactly at the limit",
			cfg:    Config{MaxHeaderBytes: len(wsHead())},
			data:   wsHead(),
			kind:   Upgraded,
			status: 101,
		},
		{
			name:   "Content-Length body",
			data:   wsHead("Content-Length: 5") + "hello",
			kind:   Rejected,
			status: 400,
			cause:  ErrBodyNotSupported,
			body:   "herald: request bodies are not supported",
		},
		{
			name:   "Transfer-Encoding",
			data:   head("POST /x HTTP/1.1", "Host: example.com", "Transfer-Encoding: chunked"),
			kind:   Rejected,
			status: 400,
			cause:  ErrBodyNotSupported,
		},
		{
			name:   "Content-Length 0 is fine",
			data:   wsHead("Content-Length: 0"),
			kind:   Upgraded,
			status: 101,
		},
		{
			name:   "malformed Content-Length",
			data:   wsHead("Content-Length: 1x"),
			kind:   Rejected,
			status: 400,
			cause:  ErrMalformed,
		},
		{
			name:   "foreign origin",
			data:   wsHead("Origin: https://evil.com"),
			kind:   Rejected,
			status: 403,
			cause:  ErrOriginNotAllowed,
			body:   "herald: origin not allowed",
		},
		{
			name:   "plain GET without a handler",
			data:   head("GET / HTTP/1.1", "Host: example.com"),
			kind:   Rejected,
			status: 426,
			cause:  ErrUpgradeRequired,
			headers: map[string]string{
				"Upgrade": "websocket",
			},
			body: "herald: this endpoint speaks WebSocket only",
		},
		{
			name:   "plain HEAD without a handler",
			data:   head("HEAD / HTTP/1.1", "Host: example.com"),
			kind:   Rejected,
			status: 426,
			cause:  ErrUpgradeRequired,
			headers: map[string]string{
				"Upgrade": "websocket",
			},
		},
		{
			name:   "plain POST without a handler",
			data:   head("POST / HTTP/1.1", "Host: example.com"),
			kind:   Rejected,
			status: 405,
			cause:  ErrMethodNotAllowed,
			headers: map[string]string{
				"Allow": "GET",
			},
		},
		{
			name:   "plain HTTP/1.0 without Host",
			data:   head("GET / HTTP/1.0"),
			kind:   Rejected,
			status: 426,
			cause:  ErrUpgradeRequired,
		},
		{
			name:   "malformed subprotocol offer",
			cfg:    Config{Subprotocols: []string{"chat"}},
			data:   wsHead("Sec-WebSocket-Protocol: chat, @bad"),
			kind:   Rejected,
			status: 400,
			cause:  ErrBadSubprotocol,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := newTest(t, tc.cfg)
			res := stepWhole(u, tc.data)
			defer release(res)
			if res.Kind != tc.kind || res.Status != tc.status {
				t.Fatalf(
					"got %v %d (%v), want %v %d",
					res.Kind, res.Status, res.Err, tc.kind, tc.status)
			}
			want := tc.consumed
			if want == 0 {
				want = strings.Index(tc.data, "\r\n\r\n") + 4
				if strings.Count(tc.data, "\r\n") == 0 {
					want = strings.Index(tc.data, "\n\n") + 2
				}
			}
			if res.Consumed != want {
				t.Fatalf(
					"consumed %d, want %d",
					res.Consumed, want)
			}
			if tc.cause != nil && !errors.Is(res.Err, tc.cause) {
				t.Fatalf(
					"err %v, want %v",
					res.Err, tc.cause)
			}
			if tc.cause == nil && res.Err != nil {
				t.Fatalf(
					"unexpected err %v",
					res.Err)
			}
			if tc.kind == Rejected {
				var he *Error
				if !errors.As(res.Err, &he) || he.Status != tc.status {
					t.Fatalf(
						"err %#v is not an *Error with status %d",
						res.Err, tc.status)
				}
			}
			resp, body := checkReply(t, res)
			if got, want := statusLine(res), "HTTP/1.1 "+strconv.Itoa(tc.status)+" "+http.StatusText(tc.status); got != want {
				t.Fatalf(
					"status line %q, want %q",
					got, want)
			}
			for k, v := range tc.headers {
				if got := resp.Header.Get(k); got != v {
					t.Fatalf(
						"%s: %q, want %q\n%s",
						k, got, v, res.Response.B)
				}
			}
			if tc.body != "" && body != tc.body {
				t.Fatalf(
					"body %q, want %q",
					body, tc.body)
			}
			if tc.kind != Upgraded {
				if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
					t.Fatalf(
						"Content-Type %q",
						ct)
				}
				if res.Request != nil && res.Request.Method == http.MethodHead && body != "" {
					t.Fatalf(
						"HEAD reply with a body %q",
						body)
				}
			}
		})
	}
}

func statusLine(res Result) string {
	s := string(res.Response.B)
	return s[:strings.Index(s, "\r\n")]
}

func TestUpgradedResult(t *testing.T) {
	u := newTest(t, Config{})
	data := wsHead("Cookie: a=1; b=2", "X-Dup: one", "x-dup: two", "Origin: https://EXAMPLE.com")
	res := stepWhole(u, data)
	defer release(res)
	if res.Kind != Upgraded {
		t.Fatalf(
			"got %v: %v",
			res.Kind, res.Err)
	}
	want := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + testAccept + "\r\n\r\n"
	if string(res.Response.B) != want {
		t.Fatalf(
			"101 reply %q, want %q",
			res.Response.B, want)
	}
	r := res.Request
	if r.Method != "GET" || r.RequestURI != "/chat?room=1" || r.Path != "/chat" || r.RawQuery != "room=1" ||
		r.Host != "example.com" || r.Proto != "HTTP/1.1" || r.RemoteAddr != testRemote {
		t.Fatalf(
			"request %+v",
			r)
	}
	if got := r.Header["X-Dup"]; len(got) != 2 || got[0] != "one" || got[1] != "two" {
		t.Fatalf(
			"X-Dup %q",
			got)
	}
	if r.Header.Get("Sec-WebSocket-Key") != testKey {
		t.Fatalf(
			"key %q",
			r.Header.Get("Sec-WebSocket-Key"))
	}
	if r.Query().Get("room") != "1" {
		t.Fatalf(
			"query %v",
			r.Query())
	}
	if c, err := r.Cookie("b"); err != nil || c.Value != "2" {
		t.Fatalf(
			"cookie b: %v %v",
			c, err)
	}
	if _, err := r.Cookie("zz"); !errors.Is(err, http.ErrNoCookie) {
		t.Fatalf(
			"missing cookie: %v",
			err)
	}
	if len(r.Cookies()) != 2 {
		t.Fatalf(
			"cookies %v",
			r.Cookies())
	}
	if r.Origin() != "https://EXAMPLE.com" {
		t.Fatalf(
			"origin %q",
			r.Origin())
	}
}

func TestRequestTargets(t *testing.T) {
	u := newTest(t, Config{})
	cases := []struct {
		target, path, query, host string
	}{
		{
			target: "/a%20b/c?x=%20",
			path:   "/a b/c",
			query:  "x=%20",
			host:   "example.com",
		},
		{
			target: "ws://other.example:8080/p?q",
			path:   "/p",
			query:  "q",
			host:   "other.example:8080",
		},
		{
			target: "/",
			path:   "/",
			host:   "example.com",
		},
	}
	for _, tc := range cases {
		res := stepWhole(u, strings.Replace(wsHead(), "/chat?room=1", tc.target, 1))
		if res.Kind != Upgraded {
			t.Fatalf(
				"%s: %v %v",
				tc.target, res.Kind, res.Err)
		}
		r := res.Request
		if r.Path != tc.path || r.RawQuery != tc.query || r.Host != tc.host || r.RequestURI != tc.target {
			t.Fatalf(
				"%s: %+v",
				tc.target, r)
		}
		release(res)
	}
	res := stepWhole(u, strings.Replace(wsHead(), "/chat?room=1", "/bad%zz", 1))
	defer release(res)
	if res.Status != 400 || !errors.Is(res.Err, ErrMalformed) {
		t.Fatalf(
			"bad escape: %d %v",
			res.Status, res.Err)
	}
}

func TestPipelinedBytesStay(t *testing.T) {
	u := newTest(t, Config{})
	frame := "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58" // masked "Hello"
	data := wsHead() + frame
	for _, sizes := range [][]int{nil, {len(wsHead()) - 1, 1}, {len(wsHead()) + 3}} {
		res := stepChunks(t, u, data, sizes)
		if res.Kind != Upgraded || res.Consumed != len(wsHead()) {
			t.Fatalf(
				"sizes %v: %v consumed %d, want %d",
				sizes, res.Kind, res.Consumed, len(wsHead()))
		}
		release(res)
	}
}

func TestSubprotocols(t *testing.T) {
	cases := []struct {
		server []string
		offer  []string
		want   string
		status int
	}{
		{
			server: []string{"v2", "v1"},
			offer:  []string{"v1, v2"},
			want:   "v2",
			status: 101,
		},
		{
			server: []string{"v2", "v1"},
			offer:  []string{"v1", "v3"},
			want:   "v1",
			status: 101,
		},
		{
			server: []string{"v2"},
			offer:  []string{"v3"},
			status: 101,
		},
		{
			server: nil,
			offer:  []string{"v1"},
			status: 101,
		},
		{
			server: []string{"v1"},
			offer:  []string{"v0,, v1"},
			want:   "v1",
			status: 101,
		},
		{
			server: []string{"v1"},
			offer:  []string{""},
			status: 400,
		},
		{
			server: []string{"v1"},
			offer:  []string{"v1 v2"},
			status: 400,
		},
	}
	for _, tc := range cases {
		u := newTest(t, Config{Subprotocols: tc.server})
		var extra []string
		for _, o := range tc.offer {
			extra = append(extra, "Sec-WebSocket-Protocol: "+o)
		}
		res := stepWhole(u, wsHead(extra...))
		resp, _ := checkReply(t, res)
		if res.Status != tc.status || res.Subprotocol != tc.want || resp.Header.Get("Sec-WebSocket-Protocol") != tc.want {
			t.Fatalf(
				"server %q offer %q: %d %q (header %q), want %d %q: %v",
				tc.server, tc.offer, res.Status, res.Subprotocol, resp.Header.Get("Sec-WebSocket-Protocol"), tc.status, tc.want, res.Err)
		}
		release(res)
	}
}

func TestNewValidates(t *testing.T) {
	bad := []Config{
		{OriginPatterns: []string{"[a-"}},
		{OriginPatterns: []string{"ok.com", "\\"}},
		{Subprotocols: []string{"has space"}},
		{Subprotocols: []string{""}},
		{MaxHeaderBytes: -1},
	}
	for _, cfg := range bad {
		if _, err := New(cfg); err == nil {
			t.Fatalf(
				"New(%+v) accepted",
				cfg)
		}
	}
	u, err := New(Config{})
	if err != nil || u.maxHead != DefaultMaxHeaderBytes {
		t.Fatalf(
			"defaults: %v %v",
			u, err)
	}
}

func TestStateResetAndReuse(t *testing.T) {
	u := newTest(t, Config{})
	var st State
	data := []byte(wsHead())
	if res := u.Step(&st, data[:10], nil); res.Kind != NeedMore {
		t.Fatalf(
			"got %v",
			res.Kind)
	}
	st.Reset()
	res := u.Step(&st, data, nil)
	if res.Kind != Upgraded {
		t.Fatalf(
			"got %v",
			res.Kind)
	}
	release(res)
	// The State was reset by the final result: a new request works.
	res = u.Step(&st, data, nil)
	if res.Kind != Upgraded {
		t.Fatalf(
			"reuse: got %v",
			res.Kind)
	}
	release(res)
	// A buffer shorter than the scan position (a caller bug) starts over.
	st.Reset()
	_ = u.Step(&st, data[:50], nil)
	res = u.Step(&st, data[:20], nil)
	if res.Kind != NeedMore {
		t.Fatalf(
			"shrunk buffer: %v",
			res.Kind)
	}
}

func TestErrorText(t *testing.T) {
	u := newTest(t, Config{})
	res := stepWhole(u, wsHead("Origin: https://evil.com"))
	defer release(res)
	msg := res.Err.Error()
	if !strings.Contains(msg, "403") || !strings.Contains(msg, "evil.com") {
		t.Fatalf(
			"error text %q",
			msg)
	}
	res2 := stepWhole(u, wsHeadWithout([]string{"Upgrade"}, "Upgrade: websocket, h2c"))
	defer release(res2)
	var he *Error
	if !errors.As(res2.Err, &he) || he.Err != ErrBadUpgrade || he.Reason != `bad "Upgrade" header` || he.Detail != "websocket, h2c" {
		t.Fatalf(
			"Upgrade list refusal %#v",
			res2.Err)
	}
	if Kind(9).String() != "Kind(9)" || Upgraded.String() != "Upgraded" {
		t.Fatal("Kind.String")
	}
	if ErrUnauthorized.Error() != "herald: rejected with 401: unauthorized" {
		t.Fatalf(
			"RejectError text %q",
			ErrUnauthorized.Error())
	}
}

func TestManyHeaders(t *testing.T) {
	u := newTest(t, Config{})
	var extra []string
	for i := 0; i < 40; i++ {
		extra = append(extra, "X-H"+strconv.Itoa(i%25)+": v"+strconv.Itoa(i))
	}
	res := stepWhole(u, wsHead(extra...))
	defer release(res)
	if res.Kind != Upgraded {
		t.Fatalf(
			"got %v: %v",
			res.Kind, res.Err)
	}
	h := res.Request.Header
	if got := h["X-H3"]; len(got) != 2 || got[0] != "v3" || got[1] != "v28" {
		t.Fatalf(
			"X-H3 %q",
			got)
	}
	if got := h["X-H24"]; len(got) != 1 || got[0] != "v24" {
		t.Fatalf(
			"X-H24 %q",
			got)
	}
	if len(h) != 25+5 {
		t.Fatalf(
			"%d fields",
			len(h))
	}
}

func TestConcurrentSteps(t *testing.T) {
	u := splitUpgrader(t)
	cases := splitCases()
	want := map[string]Result{}
	for name, data := range cases {
		want[name] = stepWhole(u, data)
	}
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 50; i++ {
				for name, data := range cases {
					got := stepChunks(t, u, data, []int{1 + i%30})
					if !sameResult(got, want[name]) {
						t.Errorf(
							"%s differs under concurrency",
							name)
						return
					}
					release(got)
				}
			}
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
}

// TestReleasedRequestReuse gives every Request back and checks that the
// next ones, which reuse their memory, parse exactly as fresh ones: nothing
// left over from an earlier head (fields, repeated values, the target),
// from several goroutines at once.
func TestReleasedRequestReuse(t *testing.T) {
	u := newTest(t, Config{Subprotocols: []string{"chat"}})
	heads := []string{
		wsHead(),
		wsHead("X-Dup: one", "x-dup: two", "Sec-WebSocket-Protocol: chat"),
		strings.Replace(wsHead("X-Only-Here: 1"), "/chat?room=1", "/other/%41?q=2", 1),
		browserHead,
		wsHead("Cookie: " + strings.Repeat("c", 3000)),
		wsHead(manyFields(40)...),                      // too many fields for any variant
		wsHead("Cookie: " + strings.Repeat("d", 5000)), // too long for any variant
	}
	want := make([]Result, len(heads))
	for i, h := range heads {
		if want[i] = stepWhole(u, h); want[i].Kind != Upgraded {
			t.Fatalf(
				"head %d: %v %v",
				i, want[i].Kind, want[i].Err)
		}
	}
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 200; i++ {
				k := (i*7 + g) % len(heads)
				got := stepWhole(u, heads[k])
				if !sameResult(got, want[k]) {
					t.Errorf(
						"head %d parsed into reused memory: %+v, want %+v",
						k, got.Request, want[k].Request)
					return
				}
				release(got)
				ReleaseRequest(got.Request)
			}
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
}

// TestSharedRequestNotReused: a Request a hook was given may be kept by it,
// so releasing it must not let a later handshake overwrite it.
func TestSharedRequestNotReused(t *testing.T) {
	var kept []*Request
	u := newTest(t, Config{Authorize: func(r *Request) (any, error) {
		kept = append(kept, r)
		return nil, nil
	}})
	first := stepWhole(u, wsHead("X-First: 1"))
	release(first)
	ReleaseRequest(first.Request)
	for i := 0; i < 50; i++ {
		res := stepWhole(u, wsHead("X-Later: 2"))
		release(res)
		ReleaseRequest(res.Request)
	}
	if r := kept[0]; r.Header.Get("X-First") != "1" || r.Header.Get("X-Later") != "" || r.Path != "/chat" {
		t.Fatalf(
			"the Request Authorize kept changed: %+v",
			r)
	}
	for _, r := range kept[1:] {
		if r == kept[0] {
			t.Fatalf(
				"a Request Authorize was given was reused")
		}
	}
}
