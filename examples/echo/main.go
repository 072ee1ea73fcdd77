// Command echo is herald's conformance and interop target: a WebSocket
// server that echoes every text and binary message with its type.
//
//	go run ./examples/echo -addr 127.0.0.1:9001
//
// It upgrades on any path, accepts any Origin, messages up to 64 MiB, and
// stops cleanly on SIGINT or SIGTERM, closing every client with 1001.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9001", "address to listen on (host:port; port 0 picks one)")
	verbose := flag.Bool("v", false, "log handshake rejections and other debug events")
	flag.Parse()

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	srv, err := newServer(*addr, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := srv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("herald echo listening on %s\n", srv.Addr())
	<-ctx.Done()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("shutdown", "err", err)
	}
}
