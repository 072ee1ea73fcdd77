// Command echo is herald's conformance and interop target: a WebSocket
// server that echoes every text and binary message with its type.
//
//	go run ./examples/echo -addr 127.0.0.1:9001
//
// It upgrades on any path, accepts any Origin, messages up to 64 MiB, and
// stops cleanly on SIGINT or SIGTERM, closing every client with 1001. It
// negotiates permessage-deflate when offered (-compression, on by default
// for this target: the bench contract asks for it), inflating compressed
// messages within the 64 MiB limit and compressing echoes of
// -compression-min-size bytes and more; -v logs each connection's
// negotiation. A client holds at most one unread 64 MiB echo (plus 1 MiB);
// all clients together at most -max-outbound-total (512 MiB); a client
// that reads nothing for 10 s is closed.
//
// With -tls-cert FILE -tls-key FILE it serves wss:// (TLS 1.2 and 1.3,
// on its event loops) with the PEM certificate and key in those files,
// read again when the certificate file changes, so that a renewed
// certificate needs no restart.
//
// With -mount the same server is mounted on net/http instead of listening
// itself: an http.Server on -addr serves it as its handler, which upgrades
// and hands every connection to herald's event loops. It is the interop
// and memory target of the mounted path.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/examples/internal/certfile"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run serves until ctx ends, then shuts down, and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9001", "address to listen on (host:port; port 0 picks one)")
	verbose := fs.Bool("v", false, "log handshake rejections and other debug events")
	budget := fs.Int64("max-outbound-total", defaultOutboundTotal,
		"bytes of unread echoes the server holds for all clients together; past it, a client that does not read is closed (1008)")
	compression := fs.Bool("compression", true, "negotiate permessage-deflate when a client offers it (no context takeover, no state per connection)")
	minSize := fs.Int("compression-min-size", engine.DefaultCompressionMinSize, "with -compression, the smallest echo sent compressed, in bytes")
	mount := fs.Bool("mount", false, "serve herald mounted on net/http: an http.Server listens on -addr and hands upgraded connections to herald's loops")
	certFile := fs.String("tls-cert", "", "PEM certificate (chain) file: serve wss:// (with -tls-key)")
	keyFile := fs.String("tls-key", "", "PEM private key file of -tls-cert")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var tlsCfg *tls.Config
	switch {
	case (*certFile == "") != (*keyFile == ""):
		fmt.Fprintln(stderr, "echo: -tls-cert and -tls-key go together")
		return 2
	case *certFile != "" && *mount:
		fmt.Fprintln(stderr, "echo: -tls-cert with -mount is not supported: herald's TLS is on its own listener")
		return 2
	case *certFile != "":
		pair, err := certfile.Load(*certFile, *keyFile)
		if err != nil {
			fmt.Fprintln(stderr, "echo:", err)
			return 1
		}
		tlsCfg = pair.Config()
	}

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	own := *addr
	if *mount {
		own = "" // no listener of its own: net/http's hands connections over
	}
	srv, err := newServer(own, *budget, engine.Compression{Enabled: *compression, MinSize: *minSize}, tlsCfg, logger)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := srv.Start(); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	listening := srv.Addr()
	var hs *http.Server
	if *mount {
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			fmt.Fprintln(stderr, err)
			_ = srv.Shutdown(context.Background())
			return 1
		}
		hs = mounted(srv, logger)
		go func() { _ = hs.Serve(ln) }()
		listening = ln.Addr()
		logger.Info("herald echo mounted on net/http", "addr", listening)
	}
	fmt.Fprintf(stdout, "herald echo listening on %s\n", listening)
	<-ctx.Done()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if hs != nil {
		// Stops accepting; the connections herald holds are not net/http's.
		_ = hs.Shutdown(shutdownCtx)
	}
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("shutdown", "err", err)
	}
	return 0
}

// mounted is the http.Server of -mount: herald's server is its handler, on
// every path, as the bench contract's echo upgrades on any path.
func mounted(srv *engine.Server, logger *slog.Logger) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("/", srv)
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: engine.DefaultHandshakeTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
}
