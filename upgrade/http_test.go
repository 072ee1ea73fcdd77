package upgrade

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

func testMux(t *testing.T) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		if r.Context() != context.Background() || r.Body != http.NoBody || r.RemoteAddr != testRemote.String() ||
			r.Host != "example.com" || r.URL.RawQuery != "v=1" || r.RequestURI != "/health?v=1" || !r.Close {
			t.Errorf(
				"handler sees %+v",
				r)
		}
		if b, err := io.ReadAll(r.Body); err != nil || len(b) != 0 {
			t.Errorf(
				"body %q %v",
				b, err)
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Connection", "keep-alive") // herald owns it
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<!DOCTYPE html><title>x</title>"))
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
		if _, err := w.Write([]byte("x")); !errors.Is(err, http.ErrBodyNotAllowed) {
			t.Errorf(
				"write to a 204: %v",
				err)
		}
	})
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("partial"))
		panic("boom")
	})
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 64<<10)
		for i := 0; i < MaxHTTPReplyBytes/len(chunk)+1; i++ {
			w.Write(chunk)
		}
	})
	mux.HandleFunc("/dated", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", "Mon, 02 Jan 2006 15:04:05 GMT")
		w.WriteHeader(http.StatusAccepted)
	})
	return mux
}

func TestHTTPHandler(t *testing.T) {
	cases := []struct {
		name    string
		data    string
		status  int
		kind    Kind
		body    string
		headers map[string]string
	}{
		{
			name:   "200 with body",
			data:   head("GET /health?v=1 HTTP/1.1", "Host: example.com"),
			status: 200,
			kind:   ServedHTTP,
			body:   "ok",
			headers: map[string]string{
				"Content-Type":   "text/plain",
				"Content-Length": "2",
				"Date":           "Sat, 07 Jun 2025 08:09:10 GMT",
			},
		},
		{
			name:   "HEAD has no body",
			data:   head("HEAD /health?v=1 HTTP/1.1", "Host: example.com"),
			status: 200,
			kind:   ServedHTTP,
			headers: map[string]string{
				"Content-Length": "2",
			},
		},
		{
			name:   "404 from the mux",
			data:   head("GET /missing HTTP/1.1", "Host: example.com"),
			status: 404,
			kind:   ServedHTTP,
			body:   "404 page not found\n",
		},
		{
			name:   "405 from the mux",
			data:   head("POST /health HTTP/1.1", "Host: example.com"),
			status: 405,
			kind:   ServedHTTP,
		},
		{
			name:   "sniffed Content-Type",
			data:   head("GET /page HTTP/1.1", "Host: example.com"),
			status: 200,
			kind:   ServedHTTP,
			headers: map[string]string{
				"Content-Type": "text/html; charset=utf-8",
			},
		},
		{
			name:   "empty reply",
			data:   head("GET /empty HTTP/1.1", "Host: example.com"),
			status: 200,
			kind:   ServedHTTP,
			headers: map[string]string{
				"Content-Length": "0",
			},
		},
		{
			name:   "204 without Content-Length",
			data:   head("GET /nocontent HTTP/1.1", "Host: example.com"),
			status: 204,
			kind:   ServedHTTP,
		},
		{
			name:   "handler Date kept",
			data:   head("GET /dated HTTP/1.1", "Host: example.com"),
			status: 202,
			kind:   ServedHTTP,
			headers: map[string]string{
				"Date": "Mon, 02 Jan 2006 15:04:05 GMT",
			},
		},
		{
			name:   "HTTP/1.0 request",
			data:   head("GET /page HTTP/1.0"),
			status: 200,
			kind:   ServedHTTP,
		},
		{
			name:   "panic is 500",
			data:   head("GET /panic HTTP/1.1", "Host: example.com"),
			status: 500,
			kind:   Rejected,
			body:   "herald: internal error",
		},
		{
			name:   "reply too large",
			data:   head("GET /huge HTTP/1.1", "Host: example.com"),
			status: 500,
			kind:   Rejected,
		},
		{
			name:   "request body refused",
			data:   head("POST /health HTTP/1.1", "Host: example.com", "Content-Length: 3") + "abc",
			status: 400,
			kind:   Rejected,
			body:   "herald: request bodies are not supported",
		},
		{
			name:   "upgrades do not reach the handler",
			data:   wsHead(),
			status: 101,
			kind:   Upgraded,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := newTest(t, Config{HTTPHandler: testMux(t)})
			res := stepWhole(u, tc.data)
			defer release(res)
			if res.Kind != tc.kind || res.Status != tc.status {
				t.Fatalf(
					"got %v %d, want %v %d: %v",
					res.Kind, res.Status, tc.kind, tc.status, res.Err)
			}
			if res.Consumed != strings.Index(tc.data, "\r\n\r\n")+4 {
				t.Fatalf(
					"consumed %d",
					res.Consumed)
			}
			resp, body := checkReply(t, res)
			if tc.body != "" && body != tc.body {
				t.Fatalf(
					"body %q, want %q",
					body, tc.body)
			}
			if res.Request.Method == http.MethodHead && body != "" {
				t.Fatalf(
					"HEAD body %q",
					body)
			}
			for k, v := range tc.headers {
				if got := resp.Header.Get(k); got != v {
					t.Fatalf(
						"%s %q, want %q\n%s",
						k, got, v, res.Response.B)
				}
			}
			if n := strings.Count(string(res.Response.B), "Connection:"); tc.kind == ServedHTTP && n != 1 {
				t.Fatalf(
					"%d Connection fields\n%s",
					n, res.Response.B)
			}
		})
	}
}
