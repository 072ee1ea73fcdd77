package upgrade

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestAuthorize(t *testing.T) {
	secret := errors.New("db password is hunter2")
	withHeader := &RejectError{
		Status: http.StatusUnauthorized,
		Reason: "token expired",
		Header: http.Header{
			"Www-Authenticate": {`Bearer error="invalid_token"`},
			"Content-Length":   {"999"},
			"Connection":       {"keep-alive"},
		},
	}
	cases := []struct {
		name    string
		err     error
		status  int
		body    string
		headers map[string]string
	}{
		{
			name:   "accepted",
			status: 101,
		},
		{
			name:   "ErrUnauthorized",
			err:    ErrUnauthorized,
			status: 401,
			body:   "herald: unauthorized",
		},
		{
			name:   "RejectError with header",
			err:    withHeader,
			status: 401,
			body:   "herald: token expired",
			headers: map[string]string{
				"Www-Authenticate": `Bearer error="invalid_token"`,
			},
		},
		{
			name:   "Reject 429",
			err:    Reject(http.StatusTooManyRequests, "slow down"),
			status: 429,
			body:   "herald: slow down",
		},
		{
			name:   "wrapped RejectError",
			err:    errors.Join(errors.New("ctx"), ErrServiceUnavailable),
			status: 503,
			body:   "herald: service unavailable",
		},
		{
			name:   "plain error is not leaked",
			err:    secret,
			status: 403,
			body:   "herald: forbidden",
		},
		{
			name:   "status out of range",
			err:    Reject(200, "odd"),
			status: 403,
			body:   "herald: odd",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			u := newTest(t, Config{
				Subprotocols: []string{"chat"},
				Authorize: func(r *Request) (any, error) {
					calls++
					if r.Path != "/chat" || r.Header.Get("Sec-WebSocket-Protocol") != "chat" {
						t.Errorf(
							"Authorize sees %+v",
							r)
					}
					if tc.err != nil {
						return "ignored", tc.err
					}
					return "alice", nil
				},
			})
			res := stepWhole(u, wsHead("Sec-WebSocket-Protocol: chat"))
			defer release(res)
			resp, body := checkReply(t, res)
			if res.Status != tc.status || calls != 1 {
				t.Fatalf(
					"status %d calls %d, want %d: %v",
					res.Status, calls, tc.status, res.Err)
			}
			if tc.err == nil {
				if res.Kind != Upgraded || res.Session != "alice" || res.Subprotocol != "chat" || res.Err != nil {
					t.Fatalf(
						"accepted result %+v",
						res)
				}
				return
			}
			if res.Kind != Rejected || res.Session != nil {
				t.Fatalf(
					"kind %v session %v",
					res.Kind, res.Session)
			}
			if body != tc.body {
				t.Fatalf(
					"body %q, want %q",
					body, tc.body)
			}
			if !errors.Is(res.Err, tc.err) {
				t.Fatalf(
					"Result.Err %v does not wrap %v",
					res.Err, tc.err)
			}
			if strings.Contains(string(res.Response.B), "hunter2") {
				t.Fatal("the Authorize error leaked into the reply")
			}
			for k, v := range tc.headers {
				if got := resp.Header.Get(k); got != v {
					t.Fatalf(
						"%s %q, want %q",
						k, got, v)
				}
			}
		})
	}
}

func TestAuthorizeOnlyForValidUpgrades(t *testing.T) {
	calls := 0
	u := newTest(t, Config{Authorize: func(*Request) (any, error) {
		calls++
		return nil, nil
	}})
	for _, data := range []string{
		wsHeadWithout([]string{"Sec-WebSocket-Key"}),
		wsHead("Origin: https://evil.com"),
		wsHeadWithout([]string{"Upgrade"}, "Upgrade: websocket, h2c"),
		strings.Replace(wsHead(), "GET", "PUT", 1),
		head("GET / HTTP/1.1", "Host: example.com"),
	} {
		res := stepWhole(u, data)
		if res.Kind == Upgraded {
			t.Fatalf(
				"accepted %q",
				data)
		}
		release(res)
	}
	if calls != 0 {
		t.Fatalf(
			"Authorize called %d times",
			calls)
	}
}
