package upgrade

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// panicValue is what the hooks below panic with: a value whose text must
// reach the logs (Result.Err) and never the peer.
const panicValue = "hook secret 7f3a"

// Each hook panics in a function of its own, so the test can check that
// PanicError.Stack was taken inside the hook's frames.

func authorizePanics(*Request) (any, error) { panic(panicValue) }

func checkOriginPanics(*Request) bool { panic(panicValue) }

func httpHandlerPanics(w http.ResponseWriter, _ *http.Request) {
	_, _ = w.Write([]byte("partial"))
	panic(panicValue)
}

func TestHookPanics(t *testing.T) {
	cases := []struct {
		hook  string
		frame string // a function that must be on the recovered stack
		cfg   Config
		data  string
	}{
		{
			hook:  "Authorize",
			frame: "upgrade.authorizePanics",
			cfg:   Config{Authorize: authorizePanics},
			data:  wsHead(),
		},
		{
			hook:  "CheckOrigin",
			frame: "upgrade.checkOriginPanics",
			cfg:   Config{CheckOrigin: checkOriginPanics},
			data:  wsHead("Origin: https://other.example"),
		},
		{
			hook:  "HTTPHandler",
			frame: "upgrade.httpHandlerPanics",
			cfg:   Config{HTTPHandler: http.HandlerFunc(httpHandlerPanics)},
			data:  head("GET /status HTTP/1.1", "Host: example.com"),
		},
	}
	for _, tc := range cases {
		t.Run(tc.hook, func(t *testing.T) {
			u := newTest(t, tc.cfg)
			res := stepWhole(u, tc.data)
			defer release(res)
			_, body := checkReply(t, res)
			if res.Kind != Rejected || res.Status != http.StatusInternalServerError || body != "herald: internal error" {
				t.Fatalf(
					"got %v %d %q, want Rejected 500 %q",
					res.Kind, res.Status, body, "herald: internal error")
			}
			if bytes.Contains(res.Response.B, []byte(panicValue)) || bytes.Contains(res.Response.B, []byte("partial")) {
				t.Fatalf(
					"the panic leaked into the reply\n%s",
					res.Response.B)
			}
			var he *Error
			if !errors.As(res.Err, &he) || he.Status != 500 || he.Reason != "internal error" {
				t.Fatalf(
					"Result.Err %#v is not an *Error with 500 and the generic reason",
					res.Err)
			}
			pe, ok := he.Err.(*PanicError)
			if !ok {
				t.Fatalf(
					"Error.Err %#v is not a *PanicError",
					he.Err)
			}
			if pe.Hook != tc.hook || pe.Value != panicValue {
				t.Fatalf(
					"PanicError{Hook: %q, Value: %v}, want %q and %q",
					pe.Hook, pe.Value, tc.hook, panicValue)
			}
			if !errors.Is(res.Err, ErrPanic) || !errors.Is(pe, ErrPanic) {
				t.Fatal("errors.Is(err, ErrPanic) is false")
			}
			var got *PanicError
			if !errors.As(res.Err, &got) || got != pe {
				t.Fatal("errors.As does not find the *PanicError")
			}
			if msg := pe.Error(); !strings.Contains(msg, tc.hook) || !strings.Contains(msg, panicValue) {
				t.Fatalf(
					"PanicError text %q names neither the hook nor the value",
					msg)
			}
			if !strings.Contains(res.Err.Error(), panicValue) {
				t.Fatalf(
					"Result.Err text %q lacks the panic value",
					res.Err.Error())
			}
			if !bytes.Contains(pe.Stack, []byte(tc.frame)) {
				t.Fatalf(
					"stack lacks %s:\n%s",
					tc.frame, pe.Stack)
			}
		})
	}
}

// TestPanicErrorValues: a panic with an error or with nil still makes a
// PanicError that matches ErrPanic only.
func TestPanicErrorValues(t *testing.T) {
	denied := ErrForbidden
	for _, v := range []any{denied, 42} {
		u := newTest(t, Config{Authorize: func(*Request) (any, error) { panic(v) }})
		res := stepWhole(u, wsHead())
		var pe *PanicError
		if res.Status != 500 || !errors.As(res.Err, &pe) || pe.Value != v {
			t.Fatalf(
				"panic(%v): %d %v",
				v, res.Status, res.Err)
		}
		// The reply is the panic's, not the one the value would choose.
		var re *RejectError
		if errors.As(res.Err, &re) {
			t.Fatalf(
				"panic(%v) reads as a RejectError",
				v)
		}
		release(res)
	}
	u := newTest(t, Config{Authorize: func(*Request) (any, error) { panic(nil) }})
	res := stepWhole(u, wsHead())
	defer release(res)
	if res.Status != 500 || !errors.Is(res.Err, ErrPanic) {
		t.Fatalf(
			"panic(nil): %d %v",
			res.Status, res.Err)
	}
}
