package upgrade

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/heraldws/herald/pool"
)

var fixedNow = time.Date(2025, 6, 7, 8, 9, 10, 0, time.UTC)

var testRemote = &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40123}

const testKey = "dGhlIHNhbXBsZSBub25jZQ=="
const testAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" // RFC 6455 §1.3

// newTest builds an Upgrader with a pinned clock, so replies are
// byte-for-byte reproducible.
func newTest(tb testing.TB, cfg Config) *Upgrader {
	tb.Helper()
	u, err := New(cfg)
	if err != nil {
		tb.Fatalf(
			"New: %v",
			err)
	}
	u.now = func() time.Time { return fixedNow }
	return u
}

// head joins a request line and header lines into a head with CRLF line
// ends and the closing empty line.
func head(lines ...string) string {
	return strings.Join(lines, "\r\n") + "\r\n\r\n"
}

// wsHead is a valid upgrade request with extra header lines.
func wsHead(extra ...string) string {
	lines := []string{
		"GET /chat?room=1 HTTP/1.1",
		"Host: example.com",
		"Upgrade: websocket",
		"Connection: Upgrade",
		"Sec-WebSocket-Key: " + testKey,
		"Sec-WebSocket-Version: 13",
	}
	return head(append(lines, extra...)...)
}

// wsHeadWithout is wsHead without the header lines that start with one of
// the prefixes, plus extra lines.
func wsHeadWithout(prefixes []string, extra ...string) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSuffix(wsHead(), "\r\n\r\n"), "\r\n") {
		drop := false
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				drop = true
			}
		}
		if !drop {
			lines = append(lines, l)
		}
	}
	return head(append(lines, extra...)...)
}

// stepWhole decides data passed at once.
func stepWhole(u *Upgrader, data string) Result {
	var st State
	return u.Step(&st, []byte(data), testRemote)
}

// stepChunks feeds data the way the engine does: the buffer grows by each
// chunk size in turn (the rest at once when sizes run out) and Step sees all
// of it, until a decision or the end of data.
func stepChunks(tb testing.TB, u *Upgrader, data string, sizes []int) Result {
	tb.Helper()
	var st State
	buf := make([]byte, 0, len(data))
	for i := 0; ; i++ {
		n := len(data) - len(buf)
		if i < len(sizes) && sizes[i] > 0 && sizes[i] < n {
			n = sizes[i]
		}
		buf = append(buf, data[len(buf):len(buf)+n]...)
		res := u.Step(&st, buf, testRemote)
		if res.Consumed > len(buf) {
			tb.Fatalf(
				"consumed %d of %d bytes",
				res.Consumed, len(buf))
		}
		if res.Kind == NeedMore && (res.Response != nil || res.Consumed != 0) {
			tb.Fatalf(
				"NeedMore with a response or consumed %d",
				res.Consumed)
		}
		if res.Kind != NeedMore || len(buf) == len(data) {
			return res
		}
	}
}

// sameResult compares everything a split could change.
func sameResult(a, b Result) bool {
	if a.Kind != b.Kind || a.Consumed != b.Consumed || a.Status != b.Status ||
		a.Subprotocol != b.Subprotocol || a.Compression != b.Compression ||
		!reflect.DeepEqual(a.Session, b.Session) {
		return false
	}
	if (a.Response == nil) != (b.Response == nil) ||
		(a.Response != nil && !bytes.Equal(a.Response.B, b.Response.B)) {
		return false
	}
	if (a.Err == nil) != (b.Err == nil) || (a.Err != nil && a.Err.Error() != b.Err.Error()) {
		return false
	}
	return reflect.DeepEqual(a.Request, b.Request)
}

func release(res Result) { pool.Put(res.Response) }

// checkReply parses res.Response as an HTTP/1.1 response and checks the
// rules every reply follows: a status line matching res.Status, exactly the
// announced body and nothing after it, "Connection: close" for anything but
// a 101. It returns the response and its body.
func checkReply(tb testing.TB, res Result) (*http.Response, string) {
	tb.Helper()
	if res.Response == nil {
		tb.Fatalf(
			"%v result without a response",
			res.Kind)
	}
	raw := res.Response.B
	method := http.MethodGet
	if res.Request != nil {
		method = res.Request.Method
	}
	br := bufio.NewReader(bytes.NewReader(raw))
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		tb.Fatalf(
			"reply does not parse: %v\n%q",
			err, raw)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf(
			"reply body: %v\n%q",
			err, raw)
	}
	if rest, _ := io.ReadAll(br); len(rest) > 0 {
		tb.Fatalf(
			"%d bytes after the reply\n%q",
			len(rest), raw)
	}
	if resp.StatusCode != res.Status || resp.Proto != "HTTP/1.1" {
		tb.Fatalf(
			"status line %q %d, Result.Status %d",
			resp.Proto, resp.StatusCode, res.Status)
	}
	if res.Status == http.StatusSwitchingProtocols {
		if len(body) != 0 {
			tb.Fatalf(
				"101 with a body %q",
				body)
		}
		return resp, ""
	}
	// ReadResponse turns "Connection: close" into resp.Close.
	if !resp.Close || !bytes.Contains(raw, []byte("close\r\n")) {
		tb.Fatalf(
			"reply without Connection: close\n%q",
			raw)
	}
	if resp.Header.Get("Date") == "" {
		tb.Fatalf(
			"reply without Date\n%q",
			raw)
	}
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusNotModified && len(resp.Header["Content-Length"]) != 1 {
		tb.Fatalf(
			"reply without one Content-Length\n%q",
			raw)
	}
	return resp, string(body)
}

// randomSizes returns chunk sizes covering n bytes.
func randomSizes(r *rand.Rand, n int) []int {
	var sizes []int
	for n > 0 {
		s := 1 + r.IntN(min(n, 40))
		sizes = append(sizes, s)
		n -= s
	}
	return sizes
}
