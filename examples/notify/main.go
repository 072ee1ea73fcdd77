// Command notify is a notification service with herald embedded the way
// docs/EMBEDDING.md describes: herald is mounted on the service's own
// http.ServeMux at /ws, beside the service's plain HTTP endpoints, its
// Prometheus metrics and a browser page, all on one port.
//
//	go -C examples/notify run .           # from the repository's root
//	cd examples/notify && go run .        # the same
//
// then open the printed address, log in as a user and post notifications:
//
//	curl --json '{"text":"hi"}' 'http://127.0.0.1:8082/notify?user=alice'
//	curl --json '{"text":"deploy at 5"}' http://127.0.0.1:8082/announce
//
// (curl's --json sets Content-Type: application/json; plain -d would send
// a form's type, which the service refuses with 415.)
//
// # Why its own module
//
// The /metrics endpoint uses herald's Prometheus collector, the prom
// module, and with it client_golang. The core module's go.mod stays free
// of metrics libraries (brokers, metrics and peers live in their own
// modules), so this example is a module of its own too, with replace
// directives to the core and prom modules in this repository. That is
// also how a service embeds herald: its own module requiring herald's.
// A package of another module cannot be named by a relative path from the
// root (go run ./examples/notify), hence go -C; the Makefile's vet, test
// and interop targets cover the module.
//
// # Endpoints
//
//	GET  /            the page (embedded): log in, see notifications live
//	POST /login       form field user=NAME: starts a session, sets the
//	                  HttpOnly cookie notify_session; 200 {"user":NAME}
//	POST /logout      ends the session, closes its sockets (4001 "logged
//	                  out") and clears the cookie
//	GET  /me          200 {"user":NAME} for a live session cookie, else 401
//	GET  /ws          the WebSocket (herald), for a live session cookie only
//	POST /notify?user=NAME  body {"text":"..."}: to NAME's connections
//	POST /announce    body {"text":"..."}: to every connection
//	GET  /metrics     Prometheus: herald's server and hub series, the
//	                  notifications accepted, the Go runtime and the process
//	GET  /healthz     200 ok
//
// A user name is 1 to 32 characters a-z, 0-9, '-' or '_'. There is no
// password: the login stands for the service's real one. What matters here
// is what follows it: the cookie is checked at the WebSocket upgrade.
//
// /notify and /announce answer 202 Accepted with what was done:
//
//	{"id":7,"delivered_to":"user:alice","connections":2}
//
// "connections" is how many connections the topic had when the hub took
// the message (0 for a user who is not connected: not an error, the
// notification is simply not kept). A body must be application/json (or
// carry no Content-Type), at most 4 KiB, exactly one object with only the
// field "text", of 1 to 1000 bytes; anything else is 400 (or 413 over the
// size, 415 for another content type) with {"error":"the reason"}. Another
// method is 405 with Allow. These two endpoints are the service's internal
// API: a real deployment would put them behind its own authentication or
// on an internal listener.
//
// # The WebSocket
//
// The browser sends its cookie with the upgrade. Config.Authorize reads it
// and asks the user store, which takes 50 ms (-store-latency) as a real
// database would: a call that blocks, which is fine here because, mounted
// on net/http, Authorize runs on the request's goroutine, never on an
// event loop. No cookie, or a session the store does not know, is refused
// with 401 before the upgrade. The user name becomes the connection's
// session; OnOpen subscribes the connection to the topics "user:NAME" and
// "announce" and sends {"type":"hello","user":NAME}. Notifications then
// arrive as JSON text messages:
//
//	{"type":"notify","id":7,"user":"alice","text":"hi","ts":1700000000000}
//	{"type":"announce","id":8,"text":"deploy at 5","ts":1700000000000}
//
// The socket only sends: a message from the client closes it with 1008.
// The page reconnects with full-jitter exponential backoff when the socket
// drops, and shows the login form again if its session is gone.
//
// # Shutdown
//
// On SIGINT or SIGTERM the service stops in this order:
//
//  1. The HTTP server (http.Server.Shutdown): it stops accepting, so no new
//     upgrade reaches herald and no new notification reaches the hub, and
//     waits for requests in flight, each of which has published or failed
//     by the time it returns. Hijacked WebSocket connections are not its
//     own any more; it does not wait for them.
//  2. Herald (engine.Server.Shutdown): every connection gets what was
//     published before, then close 1001, and the event loops stop.
//
// The other order would refuse notifications already accepted over HTTP
// (the hub answers ErrClosed after herald's shutdown) and could hand an
// upgraded socket to a server that is gone.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	opts := defaultOptions()
	flag.StringVar(&opts.addr, "addr", opts.addr, "address to listen on (host:port; port 0 picks one)")
	flag.DurationVar(&opts.latency, "store-latency", opts.latency, "the user store's simulated round trip, paid at every login and upgrade")
	flag.IntVar(&opts.maxSessions, "max-sessions", opts.maxSessions, "sessions the user store keeps at most")
	flag.IntVar(&opts.loops, "loops", opts.loops, "herald's event loops (default: one per core)")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, opts, logger, func(addr net.Addr) {
		fmt.Printf("herald notify listening on %s\n", addr)
		logger.Info("open the page", "url", "http://"+addr.String()+"/")
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "notify:", err)
		os.Exit(1)
	}
}

// shutdownTimeout bounds each of the two shutdown steps.
const shutdownTimeout = 5 * time.Second

// run serves until ctx ends, then shuts down in order (see the package
// documentation). ready is called once the service listens.
func run(ctx context.Context, opts options, logger *slog.Logger, ready func(net.Addr)) error {
	return serve(ctx, opts, logger, nil, ready)
}

// serve is run with tune, if set, applied to the service before it
// starts (tests replace parts of it).
func serve(ctx context.Context, opts options, logger *slog.Logger, tune func(*service), ready func(net.Addr)) error {
	s, err := newService(opts, logger)
	if err != nil {
		return err
	}
	if tune != nil {
		tune(s)
	}
	ln, err := net.Listen("tcp", opts.addr)
	if err != nil {
		return err
	}
	if err := s.srv.Start(); err != nil {
		ln.Close()
		return err
	}
	hs := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	ready(ln.Addr())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}

	// 1. The HTTP server: no new upgrades, no new notifications.
	hctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(hctx); err != nil {
		logger.Warn("http shutdown", "err", err)
	}
	// 2. Herald: what was published goes out, then 1001 to every client.
	wctx, cancel2 := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel2()
	if err := s.srv.Shutdown(wctx); err != nil {
		logger.Warn("herald shutdown", "err", err)
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}
