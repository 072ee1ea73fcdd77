package upgrade

import (
	"context"
	"net/http"
	"testing"
)

// With DeferHooks, Step decides what needs no hook and hands the rest over
// as a Pending, whose Run gives what Step would have given.
func TestDeferHooks(t *testing.T) {
	allow := func(*Request) bool { return true }
	deny := func(*Request) bool { return false }
	auth := func(*Request) (any, error) { return "sess", nil }
	const cross = "Origin: http://elsewhere.example"
	cases := []struct {
		name   string
		cfg    Config
		data   string
		step   Kind // what Step returns
		status int  // the final status, after Run for Deferred
	}{
		{"no hooks", Config{}, wsHead(), Upgraded, 101},
		{"Authorize", Config{Authorize: auth}, wsHead(), Deferred, 101},
		{"same origin needs no CheckOrigin", Config{CheckOrigin: deny}, wsHead("Origin: http://example.com"), Upgraded, 101},
		{"CheckOrigin accepts", Config{CheckOrigin: allow}, wsHead(cross), Deferred, 101},
		{"CheckOrigin refuses", Config{CheckOrigin: deny, Authorize: auth}, wsHead(cross), Deferred, 403},
		{"cross origin without CheckOrigin", Config{Authorize: auth}, wsHead(cross), Rejected, 403},
		{"invalid before the hooks", Config{Authorize: auth}, wsHeadWithout([]string{"Sec-WebSocket-Version"}), Rejected, 426},
		{"plain HTTP", Config{Authorize: auth}, head("GET / HTTP/1.1", "Host: example.com"), Rejected, 426},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.DeferHooks = true
			u := newTest(t, tc.cfg)
			res := stepWhole(u, tc.data)
			if res.Kind != tc.step {
				t.Fatalf("Step: %v %d (%v), want %v", res.Kind, res.Status, res.Err, tc.step)
			}
			if res.Kind == Deferred {
				if res.Response != nil || res.Pending == nil || res.Consumed != len(tc.data) || res.Pending.Request() != res.Request {
					t.Fatalf("Deferred result: %+v", res)
				}
				res = res.Pending.Run(context.Background())
			}
			defer release(res)
			checkReply(t, res)
			if res.Status != tc.status {
				t.Fatalf("status %d (%v), want %d", res.Status, res.Err, tc.status)
			}
			if res.Status == 101 && tc.cfg.Authorize != nil && res.Session != "sess" {
				t.Errorf("Session %v, want Authorize's", res.Session)
			}
		})
	}
}

// The hooks see the context given to Run; hooks that Step runs see
// context.Background().
func TestRequestContext(t *testing.T) {
	type key struct{}
	var seen context.Context
	cfg := Config{Authorize: func(r *Request) (any, error) { seen = r.Context(); return nil, nil }}
	u := newTest(t, cfg)
	release(stepWhole(u, wsHead()))
	if seen != context.Background() {
		t.Errorf("on-loop hook's context %v, want context.Background()", seen)
	}
	cfg.DeferHooks = true
	u = newTest(t, cfg)
	ctx := context.WithValue(context.Background(), key{}, "v")
	res := stepWhole(u, wsHead())
	release(res.Pending.Run(ctx))
	if seen != ctx || res.Request.HTTP().Context() != ctx {
		t.Errorf("deferred hook's context %v, want the one given to Run", seen)
	}
}

// Reject answers a Pending without running its hooks, as Authorize
// returning the error would, header fields included.
func TestPendingReject(t *testing.T) {
	u := newTest(t, Config{DeferHooks: true, Authorize: func(*Request) (any, error) {
		t.Error("Authorize ran")
		return nil, nil
	}})
	res := stepWhole(u, wsHead())
	busy := &RejectError{Status: 503, Reason: "busy", Header: http.Header{"Retry-After": {"1"}}}
	rej := res.Pending.Reject(busy)
	defer release(rej)
	resp, body := checkReply(t, rej)
	if rej.Kind != Rejected || resp.StatusCode != 503 || body != "herald: busy" || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("Reject: %v %d %q Retry-After %q", rej.Kind, resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if rej.Consumed != res.Consumed || rej.Request != res.Request {
		t.Errorf("Reject: Consumed %d, Request %p; want %d, %p", rej.Consumed, rej.Request, res.Consumed, res.Request)
	}
}

// HTTP converts a Request to what net/http code reads.
func TestRequestHTTP(t *testing.T) {
	cases := []struct {
		name, line                string
		path, rawQuery, host, uri string
		minor                     int
	}{
		{"origin-form", "GET /a%20b?x=1&y=2 HTTP/1.1", "/a b", "x=1&y=2", "example.com", "/a%20b?x=1&y=2", 1},
		{"absolute-form", "GET http://other.example/ws?t=9 HTTP/1.1", "/ws", "t=9", "other.example", "http://other.example/ws?t=9", 1},
		{"HTTP/1.0", "GET /plain HTTP/1.0", "/plain", "", "example.com", "/plain", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A plain request gets 426; only its Request matters here.
			res := stepWhole(newTest(t, Config{}), head(tc.line, "Host: example.com", "Cookie: sid=abc; theme=dark", "X-Id: 7"))
			defer release(res)
			if res.Request == nil {
				t.Fatalf("no Request: %v", res.Err)
			}
			got := res.Request.HTTP()
			switch {
			case got.Method != "GET" || got.URL.Path != tc.path || got.URL.RawQuery != tc.rawQuery:
				t.Errorf("Method %q, URL %#v", got.Method, got.URL)
			case got.Host != tc.host || got.RequestURI != tc.uri:
				t.Errorf("Host %q, RequestURI %q", got.Host, got.RequestURI)
			case got.ProtoMajor != 1 || got.ProtoMinor != tc.minor || got.Proto != tc.line[len(tc.line)-8:]:
				t.Errorf("Proto %q %d.%d", got.Proto, got.ProtoMajor, got.ProtoMinor)
			case got.RemoteAddr != testRemote.String() || got.Header.Get("X-Id") != "7":
				t.Errorf("RemoteAddr %q, X-Id %q", got.RemoteAddr, got.Header.Get("X-Id"))
			case got.Context() != context.Background() || got.Body != http.NoBody:
				t.Errorf("Context %v, Body %v", got.Context(), got.Body)
			}
			if c, err := got.Cookie("theme"); err != nil || c.Value != "dark" {
				t.Errorf("Cookie(theme) = %v, %v", c, err)
			}
		})
	}
}

// The Request of a Pending stays as it was while its hooks may hold it,
// even if its holder releases it and later handshakes want memory.
func TestPendingRequestIsNotReused(t *testing.T) {
	u := newTest(t, Config{DeferHooks: true, Authorize: func(*Request) (any, error) { return nil, nil }})
	res := stepWhole(u, wsHead("X-Who: first"))
	r := res.Request
	ReleaseRequest(r) // as a server would once the connection is gone
	plain := newTest(t, Config{})
	for range 8 {
		other := stepWhole(plain, wsHead("X-Who: other"))
		release(other)
		ReleaseRequest(other.Request)
	}
	if got := r.Header.Get("X-Who"); got != "first" || r.Path != "/chat" {
		t.Fatalf("the pending request changed: X-Who %q, Path %q", got, r.Path)
	}
	release(res.Pending.Run(context.Background()))
}
