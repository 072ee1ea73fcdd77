package upgrade

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// readHTTP parses a head as net/http's server does, with its RemoteAddr.
func readHTTP(t *testing.T, data string) *http.Request {
	t.Helper()
	hr, err := http.ReadRequest(bufio.NewReader(strings.NewReader(data)))
	if err != nil {
		t.Fatalf("net/http cannot read %q: %v", data, err)
	}
	hr.RemoteAddr = testRemote.String()
	return hr
}

// UpgradeHTTP decides as Step does: same kind, status, negotiation and
// session, the same 101 byte for byte, and the same refusal written to
// the ResponseWriter.
func TestUpgradeHTTPDecidesAsStep(t *testing.T) {
	seen := map[string]string{}
	u := newTest(t, Config{
		MaxHeaderBytes: 512,
		Subprotocols:   []string{"chat"},
		Compression:    true,
		OriginPatterns: []string{"*.example.org"},
		Authorize: func(r *Request) (any, error) {
			seen[r.Header.Get("X-Case")] = strings.Join([]string{r.Method, r.RequestURI, r.Path, r.RawQuery, r.Host,
				r.Header.Get("Host"), r.Origin(), r.RemoteAddr.String(), r.Query().Get("room")}, "|")
			if r.Header.Get("X-Deny") != "" {
				return nil, &RejectError{Status: 401, Reason: "no", Header: http.Header{"Www-Authenticate": {"Basic"}}}
			}
			return "s-" + r.Header.Get("X-Case"), nil
		},
	})
	for _, tc := range []struct{ name, head string }{
		{"plain", wsHead("X-Case: plain")},
		{"negotiated", wsHead("X-Case: negotiated", "Sec-WebSocket-Protocol: x, chat", "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10")},
		{"allowed origin", wsHead("X-Case: origin", "Origin: https://a.example.org")},
		{"bad origin", wsHead("Origin: https://a.example.net")},
		{"bad version", wsHeadWithout([]string{"Sec-WebSocket-Version"}, "Sec-WebSocket-Version: 12")},
		{"missing key", wsHeadWithout([]string{"Sec-WebSocket-Key"})},
		{"no upgrade", head("GET / HTTP/1.1", "Host: example.com")},
		{"not a GET", head("DELETE / HTTP/1.1", "Host: example.com", "Upgrade: websocket", "Connection: Upgrade")},
		{"HEAD", head("HEAD / HTTP/1.1", "Host: example.com")},
		{"HTTP/1.0", strings.Replace(wsHead(), "HTTP/1.1", "HTTP/1.0", 1)},
		{"body", wsHead("Content-Length: 2") + "{}"},
		{"denied", wsHead("X-Case: denied", "X-Deny: 1")},
		{"too large", wsHead("X-Pad: " + strings.Repeat("p", 500))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := stepWhole(u, tc.head)
			defer release(want)
			w := httptest.NewRecorder()
			got := u.UpgradeHTTP(w, readHTTP(t, tc.head))
			defer release(got)
			if got.Kind != want.Kind || got.Status != want.Status || got.Subprotocol != want.Subprotocol ||
				got.Compression != want.Compression || got.DeflateWindow != want.DeflateWindow || got.Session != want.Session {
				t.Fatalf("UpgradeHTTP %v %d %q %v/%d %v, Step %v %d %q %v/%d %v", got.Kind, got.Status, got.Subprotocol,
					got.Compression, got.DeflateWindow, got.Session, want.Kind, want.Status, want.Subprotocol,
					want.Compression, want.DeflateWindow, want.Session)
			}
			if want.Kind == Upgraded {
				if string(got.Response.B) != string(want.Response.B) {
					t.Fatalf("101:\n%q\nwant\n%q", got.Response.B, want.Response.B)
				}
				if w.Code != http.StatusOK || w.Body.Len() != 0 || len(w.Header()) != 0 {
					t.Fatal("an accepted upgrade wrote to the ResponseWriter")
				}
				return
			}
			if got.Response != nil {
				t.Fatal("a refusal returned a Response as well as writing it")
			}
			resp, body := checkReply(t, want)
			if w.Code != resp.StatusCode || w.Body.String() != body {
				t.Fatalf("wrote %d %q, Step's reply %d %q", w.Code, w.Body.String(), resp.StatusCode, body)
			}
			for k := range resp.Header {
				if k != "Date" && w.Header().Get(k) != resp.Header.Get(k) {
					t.Errorf("%s: wrote %q, Step's reply %q", k, w.Header().Get(k), resp.Header.Get(k))
				}
			}
		})
	}
	// Authorize saw the same request on both paths.
	for _, c := range []string{"plain", "negotiated", "origin", "denied"} {
		if !strings.Contains(seen[c], "|") {
			t.Errorf("Authorize did not run for %s", c)
		}
	}
	hr := readHTTP(t, wsHead("X-Case: again"))
	u.UpgradeHTTP(httptest.NewRecorder(), hr)
	viaHTTP := seen["again"]
	release(stepWhole(u, wsHead("X-Case: again")))
	if viaHTTP != seen["again"] {
		t.Fatalf("Authorize saw %q through net/http, %q through Step", viaHTTP, seen["again"])
	}
}

// What net/http reads and herald's parser would not: another protocol
// version than HTTP/1.x.
func TestUpgradeHTTPRefusesHTTP2(t *testing.T) {
	u := newTest(t, Config{})
	hr := readHTTP(t, wsHead())
	hr.Proto, hr.ProtoMajor, hr.ProtoMinor = "HTTP/2.0", 2, 0
	w := httptest.NewRecorder()
	res := u.UpgradeHTTP(w, hr)
	if res.Kind != Rejected || w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "unsupported HTTP version") {
		t.Fatalf("got %v, %d %q; want 400 unsupported HTTP version", res.Kind, w.Code, w.Body.String())
	}
	if hr.Header.Get("Host") != "" {
		t.Fatal("UpgradeHTTP changed the caller's header")
	}
}
