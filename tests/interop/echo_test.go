// Package interop checks herald's echo example against independent WebSocket
// clients. It is its own module so that client libraries never enter the
// framework's go.mod.
//
// The tests run the echo binary named by HERALD_ECHO_BIN, or build
// ./examples/echo from the repository root themselves when it is unset. Each
// test starts its own server process on 127.0.0.1 with a free port.
//
// The echo negotiates permessage-deflate by default: a client that offers it
// must get herald's answer (no context takeover on either side), and the
// echo's own log (-v) must say that the connection negotiated it.
package interop

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

// hangGuard bounds the waits for the server: its address, an answer, a
// close, its exit after SIGTERM. It is no speed requirement; it only ends
// the wait for a server that never answers.
const hangGuard = time.Minute

// echoBin is the path of the echo binary under test.
var echoBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	echoBin = os.Getenv("HERALD_ECHO_BIN")
	if echoBin == "" {
		dir, err := os.MkdirTemp("", "herald-interop-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		echoBin = filepath.Join(dir, "echo")
		root, err := filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		cmd := exec.Command("go", "build", "-o", echoBin, "./examples/echo")
		cmd.Dir = root
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "building ./examples/echo in %s: %v\n", root, err)
			return 1
		}
	}
	return m.Run()
}

// deflateAnswer is herald's answer to every permessage-deflate offer these
// clients make.
const deflateAnswer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

// checkDeflate checks that the client sees the extension negotiated (the
// server's Sec-WebSocket-Extensions answer, ext) and that the server does
// too: the echo, run with -v, logs each connection's negotiation.
func (s *echoServer) checkDeflate(t *testing.T, ext string) {
	t.Helper()
	t.Logf("server answered Sec-WebSocket-Extensions: %q", ext)
	if ext != deflateAnswer {
		t.Fatalf("server answered Sec-WebSocket-Extensions %q, want %q", ext, deflateAnswer)
	}
	// The log line is written before the 101; it reaches the test through
	// a pipe, so wait for it (a hang guard, not a speed requirement).
	deadline := time.Now().Add(hangGuard)
	for !strings.Contains(s.stderr.String(), "deflate=true") {
		if time.Now().After(deadline) {
			t.Fatalf("the echo did not log a connection with deflate=true; stderr:\n%s", s.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// echoServer is one running echo process.
type echoServer struct {
	Addr string // host:port
	URL  string // ws://host:port/

	cmd      *exec.Cmd
	exited   chan struct{}
	waitErr  error
	stderr   *lockedBuffer
	signaled bool
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startEcho starts an echo process, with args after its address, and
// waits for its "listening" line. At the end of the test the process gets
// SIGTERM and must exit with status 0.
func startEcho(t *testing.T, args ...string) *echoServer {
	t.Helper()
	s := &echoServer{exited: make(chan struct{}), stderr: &lockedBuffer{}}
	s.cmd = exec.Command(echoBin, append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	s.cmd.Stderr = s.stderr
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", echoBin, err)
	}
	lines := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		line, _ := r.ReadString('\n')
		lines <- line
		_, _ = io.Copy(io.Discard, r)
	}()
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() { s.stop(t) })

	select {
	case line := <-lines:
		line = strings.TrimSpace(line)
		const prefix = "herald echo listening on "
		if !strings.HasPrefix(line, prefix) {
			t.Fatalf("echo printed %q, want %q<addr>; stderr:\n%s", line, prefix, s.stderr)
		}
		f := strings.Fields(line)
		s.Addr = f[len(f)-1]
		s.URL = "ws://" + s.Addr + "/"
	case <-s.exited:
		t.Fatalf("echo exited before listening (%v); stderr:\n%s", s.waitErr, s.stderr)
	case <-time.After(hangGuard):
		t.Fatalf("echo printed no address (waited %v); stderr:\n%s", hangGuard, s.stderr)
	}
	return s
}

// terminate sends SIGTERM and waits for a clean exit.
func (s *echoServer) terminate(t *testing.T) {
	t.Helper()
	select {
	case <-s.exited:
		t.Errorf("echo had already exited (%v); stderr:\n%s", s.waitErr, s.stderr)
		return
	default:
	}
	s.signaled = true
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
	select {
	case <-s.exited:
		if s.waitErr != nil {
			t.Errorf("echo exited with %v after SIGTERM, want status 0; stderr:\n%s", s.waitErr, s.stderr)
		}
	case <-time.After(hangGuard):
		_ = s.cmd.Process.Kill()
		<-s.exited
		t.Errorf("echo did not exit after SIGTERM (waited %v); stderr:\n%s", hangGuard, s.stderr)
	}
}

func (s *echoServer) stop(t *testing.T) {
	if s.signaled {
		return
	}
	s.terminate(t)
}

// Sizes every client sends: around the 7-bit, 16-bit and 64-bit length
// encodings, then large messages.
var echoSizes = []int{0, 1, 125, 126, 127, 65535, 65536, 65537, 1 << 20, 16 << 20}

// binaryPayload returns n pseudo-random bytes determined by seed.
func binaryPayload(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// textPayload returns exactly n bytes of valid UTF-8 mixing 1- to 4-byte
// characters, so that multi-byte characters straddle frame and read
// boundaries wherever the transport splits them.
func textPayload(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(n)^0x5445_5854))
	runes := []rune{'a', 'Z', ' ', '~', 'é', 'ß', 'Ж', '€', '中', '\uFFFD', '😀', '𝄞', '\U0010FFFF'}
	b := make([]byte, 0, n)
	for len(b) < n {
		c := runes[r.IntN(len(runes))]
		if len(b)+utf8.RuneLen(c) > n {
			c = 'x'
		}
		b = utf8.AppendRune(b, c)
	}
	return b
}

// compressible returns n bytes of JSON-like text, which compresses well.
func compressible(n int) []byte {
	return bytes.Repeat([]byte(`{"sym":"S1","px":101.25},`), n/25+1)[:n]
}

// payload returns the message for (size, seed) of the given kind.
func payload(text bool, n int, seed uint64) []byte {
	if text {
		return textPayload(n, seed)
	}
	return binaryPayload(n, seed)
}

// sameBytes reports a mismatch without dumping megabytes.
func sameBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	t.Fatalf("%s: got %d bytes, want %d; first difference at offset %d", what, len(got), len(want), i)
}

// inFlightSize returns the size of message i of a pipelined burst: mostly
// small, some medium, a few large.
func inFlightSize(i int) int {
	switch {
	case i%100 == 99:
		return 200 << 10
	case i%10 == 9:
		return 4000 + i
	default:
		return i % 300
	}
}

// eachPath runs f against the echo served both ways: on its own listener,
// and mounted on net/http (-mount), where net/http completes the handshake
// and hands the connection to herald's loops. path is the echo's flags for
// the way.
func eachPath(t *testing.T, f func(t *testing.T, path ...string)) {
	t.Run("listener", func(t *testing.T) { f(t) })
	t.Run("mounted", func(t *testing.T) { f(t, "-mount") })
}
