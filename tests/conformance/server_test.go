package conformance

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/heraldws/herald/engine"
)

// contractMaxMessage is the largest message the bench contract's echo target
// accepts.
const contractMaxMessage = 64 << 20

// Timers of the suite's server. The keepalive pings a connection after a
// second of silence, so that every run, not only a slow one, exercises the
// clients' answers to pings (the bystander of every group gets one). The
// timers that end a connection are far beyond the hang guard: a connection
// ends only through what its case does, never through the machine being
// slow, and a TCP close the suite waits for can only be the server's answer
// to the close handshake.
const (
	suitePingInterval = time.Second
	timerOff          = time.Hour
)

// echoHandler sends every message back with its type, on the event loop.
type echoHandler struct{ engine.BaseHandler }

func (echoHandler) OnMessage(c *engine.Conn, typ engine.MessageType, data []byte) {
	_ = c.Send(typ, data)
}

// echoConfig is the bench contract's echo target: any path, any Origin,
// messages up to 64 MiB and room to echo one while the client pipelines
// more, permessage-deflate negotiated when offered, with the suite's
// timers.
func echoConfig(logger *slog.Logger) engine.Config {
	return engine.Config{
		Addr:             "127.0.0.1:0",
		MaxMessageBytes:  contractMaxMessage,
		MaxOutboundBytes: 2*contractMaxMessage + 1<<20,
		// Cases run in parallel, several with 64 MiB echoes: the
		// server-wide budget must not be what a case meets.
		MaxOutboundTotal: 4 << 30,
		OriginPatterns:   []string{"*"},
		Compression:      engine.Compression{Enabled: true},
		Logger:           logger,
		HandshakeTimeout: timerOff,
		PingInterval:     suitePingInterval,
		PongTimeout:      timerOff,
		CloseTimeout:     timerOff,
		// A client reading a 64 MiB echo on a starved machine may not
		// drain any of it for seconds: the suite checks framing, not how
		// long a peer may stall.
		WriteTimeout: timerOff,
	}
}

// startEcho starts an echo server on a free loopback port, returns its
// address and shuts it down when t ends.
func startEcho(t testing.TB) string {
	t.Helper()
	_, addr := startServer(t, nil)
	return addr
}

// startServer is startEcho for tests that also need the server itself;
// tune, if not nil, changes the configuration first. The cleanup shuts the
// server down unless the test already did.
func startServer(t testing.TB, tune func(*engine.Config)) (*shutdownOnce, string) {
	t.Helper()
	lw := &testLogWriter{t: t}
	cfg := echoConfig(slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: serverLogLevel()})))
	if tune != nil {
		tune(&cfg)
	}
	srv, err := engine.New(cfg, echoHandler{})
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	s := &shutdownOnce{srv: srv}
	t.Cleanup(lw.stop)
	t.Cleanup(func() {
		// Every client of the test is closed by now (cleanups run last
		// registered first), so Shutdown has nobody to wait for.
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		if err, first := s.shutdown(ctx); first && err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s, srv.Addr().String()
}

// shutdownOnce lets a test call Shutdown itself while the cleanup still
// covers the paths where it did not.
type shutdownOnce struct {
	srv  *engine.Server
	once sync.Once
}

func (s *shutdownOnce) shutdown(ctx context.Context) (err error, first bool) {
	s.once.Do(func() {
		first = true
		err = s.srv.Shutdown(ctx)
	})
	return err, first
}

// serverLogLevel is Error unless HERALD_TEST_LOG names another slog level
// (debug, info, warn): server logs then go to the test log.
func serverLogLevel() slog.Level {
	var l slog.Level = slog.LevelError
	if v := os.Getenv("HERALD_TEST_LOG"); v != "" {
		if err := l.UnmarshalText([]byte(v)); err != nil {
			l = slog.LevelError
		}
	}
	return l
}

// testLogWriter forwards server log lines to the test log while the test
// runs, and drops them once the server was shut down.
type testLogWriter struct {
	t       testing.TB
	mu      sync.Mutex
	stopped bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Logf("server: %s", bytes.TrimRight(p, "\n"))
	}
	return len(p), nil
}

func (w *testLogWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}
