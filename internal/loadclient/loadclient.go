// Package loadclient holds many plain WebSocket client connections for
// herald's own benchmarks: idle-memory and fan-out measurements need more
// sockets than one process may open for both ends, so their clients run in a
// child process (the test binary itself, re-executed).
//
// A test's TestMain calls RunIfChild first; a benchmark calls Start to run
// the clients in a child and gets a function that stops them.
package loadclient

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heraldws/herald/internal/wsframe"
)

const childEnv = "HERALD_LOAD_CLIENT"

// RaiseFileLimit lifts the open-files soft limit to the hard one and returns
// the result.
func RaiseFileLimit() uint64 {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil {
		return 0
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	return lim.Cur
}

// Dial upgrades a new TCP connection to addr at path, checking the 101 and
// its accept key and reading exactly its head so that no frame bytes are
// swallowed. The i-th connection comes from 127.0.0.(2+i%8), so that no
// single source address runs out of ephemeral ports.
func Dial(addr, path string, i int) (net.Conn, error) {
	return DialOffer(addr, path, i, "")
}

// DialDeflate is Dial offering permessage-deflate as browsers do
// (wsframe.DeflateOffer); the server must accept it.
func DialDeflate(addr, path string, i int) (net.Conn, error) {
	return DialOffer(addr, path, i, wsframe.DeflateOffer)
}

// DialOffer is Dial offering the Sec-WebSocket-Extensions line offer ("" for
// none); the server must accept a permessage-deflate offer.
func DialOffer(addr, path string, i int, offer string) (net.Conn, error) {
	return dialWith(addr, path, i, offer, nil)
}

// DialTLS is Dial over TLS with cfg (wss://).
func DialTLS(addr, path string, i int, cfg *tls.Config) (net.Conn, error) {
	return dialWith(addr, path, i, "", cfg)
}

// tlsClient is the config of StartTLS's clients: whatever certificate the
// server shows (a test's own), and session tickets, so that most
// handshakes are resumptions.
var tlsClient = &tls.Config{InsecureSkipVerify: true, ClientSessionCache: tls.NewLRUClientSessionCache(64)}

func dialWith(addr, path string, i int, offer string, tlsCfg *tls.Config) (net.Conn, error) {
	deflate := offer != ""
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%8))}}
	conn, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil {
		tc := tls.Client(conn, tlsCfg)
		if err := tc.Handshake(); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		conn = tc
	}
	key := wsframe.NewRequestKey()
	var extra []string
	if deflate {
		extra = append(extra, "Sec-WebSocket-Extensions: "+offer)
	}
	if _, err := conn.Write(wsframe.AppendRequest(nil, addr, path, key, extra...)); err != nil {
		conn.Close()
		return nil, err
	}
	head, err := wsframe.ReadHead(conn)
	if err == nil {
		var ext []byte
		_, ext, err = wsframe.ParseResponseExtensions(head, key)
		if err == nil && deflate != strings.HasPrefix(string(ext), "permessage-deflate") {
			err = fmt.Errorf("offered permessage-deflate %v, answered %q", deflate, ext)
		}
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	return conn, nil
}

// Start runs count clients connected to addr at path in a child process.
// With drain they read and discard everything; otherwise they stay idle.
// It returns once all are upgraded; the returned function closes them.
func Start(tb testing.TB, addr, path string, count int, drain bool) (stop func()) {
	tb.Helper()
	return start(tb, addr, path, count, drain, false)
}

// StartDeflate is Start with clients that negotiate permessage-deflate
// (DialDeflate). Draining clients skip compressed frames unread.
func StartDeflate(tb testing.TB, addr, path string, count int, drain bool) (stop func()) {
	tb.Helper()
	return start(tb, addr, path, count, drain, true)
}

// StartTLS is Start with clients over TLS (DialTLS; any server
// certificate is accepted).
func StartTLS(tb testing.TB, addr, path string, count int, drain bool) (stop func()) {
	tb.Helper()
	return startSpec(tb, addr, path, count, drain, false, true)
}

func start(tb testing.TB, addr, path string, count int, drain, deflate bool) (stop func()) {
	tb.Helper()
	return startSpec(tb, addr, path, count, drain, deflate, false)
}

func startSpec(tb testing.TB, addr, path string, count int, drain, deflate, useTLS bool) (stop func()) {
	tb.Helper()
	if limit := RaiseFileLimit(); limit < uint64(count)+256 {
		tb.Skipf("open-files limit %d is below the %d sockets needed", limit, count+256)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%s|%d|%t|%t|%t", childEnv, addr, path, count, drain, deflate, useTLS))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready") {
		stdin.Close()
		_ = cmd.Wait()
		tb.Fatalf("load client: %q %v", line, err)
	}
	return func() { stdin.Close(); _ = cmd.Wait() }
}

// RunIfChild runs the clients and exits when this process is a child started
// by Start; otherwise it returns at once. Call it first in TestMain.
func RunIfChild() {
	spec := os.Getenv(childEnv)
	if spec == "" {
		return
	}
	parts := strings.Split(spec, "|")
	if len(parts) != 6 {
		fmt.Fprintln(os.Stderr, "load client: bad spec", spec)
		os.Exit(2)
	}
	count, _ := strconv.Atoi(parts[2])
	os.Exit(run(parts[0], parts[1], count, parts[3] == "true", parts[4] == "true", parts[5] == "true"))
}

func run(addr, path string, count int, drain, deflate, useTLS bool) int {
	RaiseFileLimit()
	conns := make([]net.Conn, count)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed error
	)
	dial := Dial
	switch {
	case deflate:
		dial = DialDeflate
	case useTLS:
		dial = func(addr, path string, i int) (net.Conn, error) { return DialTLS(addr, path, i, tlsClient) }
	}
	const dialers = 8
	for w := 0; w < dialers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < count; i += dialers {
				c, err := dial(addr, path, i)
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
					return
				}
				conns[i] = c
				if drain {
					go discard(c, deflate)
				}
			}
		}(w)
	}
	wg.Wait()
	if failed != nil {
		fmt.Fprintln(os.Stderr, "load client:", failed)
		return 1
	}
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	for _, c := range conns {
		c.Close()
	}
	return 0
}

// Discard reads and drops every message c receives, without allocating
// per read, and answers the server's pings as any client would (a
// keepalive drops a client that does not), until c fails, is closed, or the
// server closes it (its close frame is answered).
func Discard(c net.Conn) {
	discard(c, false)
}

// DiscardDeflate is Discard for a connection that negotiated
// permessage-deflate (DialDeflate): compressed frames are skipped unread
// too.
func DiscardDeflate(c net.Conn) {
	discard(c, true)
}

func discard(c net.Conn, deflate bool) {
	r := bufio.NewReaderSize(c, 16<<10)
	var ctl [wsframe.MaxControlPayload]byte
	out := make([]byte, 0, 2*wsframe.MaxControlPayload)
	for {
		var h wsframe.Header
		var err error
		if deflate {
			h, err = wsframe.ReadHeaderDeflate(r, 1<<62)
		} else {
			h, err = wsframe.ReadHeader(r, 1<<62)
		}
		if err != nil {
			return
		}
		if h.Op < wsframe.OpClose {
			if _, err := r.Discard(int(h.Length)); err != nil {
				return
			}
			continue
		}
		p := ctl[:h.Length]
		if _, err := io.ReadFull(r, p); err != nil {
			return
		}
		switch h.Op {
		case wsframe.OpPing:
			out = wsframe.AppendPong(out[:0], p, wsframe.NewKey())
		case wsframe.OpClose:
			_, _ = c.Write(wsframe.AppendCloseReply(out[:0], p, wsframe.NewKey()))
			return
		default:
			continue
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}
