package upgrade

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/heraldws/herald/pool"
)

func TestPathRefusesOtherPaths(t *testing.T) {
	u := newTest(t, Config{Path: "/chat"})
	var st State
	res := u.Step(&st, []byte(wsHead()), testRemote) // GET /chat?room=1
	if res.Kind != Upgraded {
		t.Fatalf("upgrade to the configured path: %v %d %v", res.Kind, res.Status, res.Err)
	}
	pool.Put(res.Response)
	ReleaseRequest(res.Request)

	other := strings.Replace(wsHead(), "GET /chat?room=1", "GET /other?room=1", 1)
	res = u.Step(&st, []byte(other), testRemote)
	if res.Kind != Rejected || res.Status != http.StatusNotFound || !errors.Is(res.Err, ErrNotFound) {
		t.Fatalf("upgrade to another path: %v %d %v, want 404 ErrNotFound", res.Kind, res.Status, res.Err)
	}
	if body := string(res.Response.B); !strings.HasPrefix(body, "HTTP/1.1 404 Not Found\r\n") ||
		!strings.HasSuffix(body, "\r\n\r\nherald: "+ErrNotFound.Error()) {
		t.Fatalf("reply %q", body)
	}
	pool.Put(res.Response)

	// Plain HTTP is not an upgrade: it goes to the handler (here 426)
	// whatever its path.
	res = u.Step(&st, []byte(head("GET /health HTTP/1.1", "Host: x")), testRemote)
	if res.Status != http.StatusUpgradeRequired {
		t.Fatalf("plain request: %d, want 426", res.Status)
	}
	pool.Put(res.Response)
}

func TestRefuseWaitsForTheHead(t *testing.T) {
	u := newTest(t, Config{})
	var st State
	req := []byte(wsHead())
	for i := 1; i < len(req); i++ {
		if res := u.Refuse(&st, req[:i], http.StatusServiceUnavailable, ErrServerBusy, 5); res.Kind != NeedMore {
			t.Fatalf("decided after %d of %d bytes: %v", i, len(req), res.Kind)
		}
	}
	res := u.Refuse(&st, append(req, "pipelined"...), http.StatusServiceUnavailable, ErrServerBusy, 5)
	if res.Kind != Rejected || res.Consumed != len(req) || res.Status != 503 || !errors.Is(res.Err, ErrServerBusy) || res.Request != nil {
		t.Fatalf("%v consumed %d of %d, status %d, err %v", res.Kind, res.Consumed, len(req), res.Status, res.Err)
	}
	body := string(res.Response.B)
	pool.Put(res.Response)
	for _, want := range []string{"HTTP/1.1 503 Service Unavailable\r\n", "\r\nRetry-After: 5\r\n", "\r\nConnection: close\r\n", "\r\n\r\nherald: " + ErrServerBusy.Error()} {
		if !strings.Contains(body, want) {
			t.Fatalf("reply %q lacks %q", body, want)
		}
	}
	// Junk gets the same answer at once.
	res = u.Refuse(&st, []byte("\x16\x03\x01"), http.StatusTooManyRequests, ErrHandshakeRate, 1)
	if res.Kind != Rejected || res.Status != 429 {
		t.Fatalf("junk: %v %d", res.Kind, res.Status)
	}
	pool.Put(res.Response)
}
