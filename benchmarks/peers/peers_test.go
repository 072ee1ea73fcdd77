// Contract tests for every peer: each is started on 127.0.0.1:0 (the Go
// peers built with go build, the Node peers run with node after setup.sh)
// and driven with gorilla/websocket as the client.
package peers_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldws/herald/examples/ticker/book"
)

// peer is one server under test: how to start it in a mode.
type peer struct {
	name string
	cmd  func(args ...string) *exec.Cmd
	// dropsEmpty: the library never hands a zero-length message to its
	// handler, so there is nothing to echo.
	dropsEmpty bool
}

var (
	setupOnce sync.Once
	setupErr  error
	allPeers  []peer
	binDir    string
)

// peersUnderTest builds the Go peers once, installs the Node peers'
// packages (setup.sh) and returns all five.
func peersUnderTest(t *testing.T) []peer {
	t.Helper()
	setupOnce.Do(func() { allPeers, setupErr = setupPeers() })
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	return allPeers
}

func setupPeers() ([]peer, error) {
	var peers []peer
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("go not found: %v", err)
	}
	binDir, err = os.MkdirTemp("", "peers-bin-")
	if err != nil {
		return nil, err
	}
	build := exec.Command(goBin, "build", "-o", binDir+string(filepath.Separator), "./gorilla", "./gws", "./nbio")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %v\n%s", err, out)
	}
	for _, name := range []string{"gorilla", "gws", "nbio"} {
		path := filepath.Join(binDir, name)
		peers = append(peers, peer{
			name:       name,
			cmd:        func(args ...string) *exec.Cmd { return exec.Command(path, args...) },
			dropsEmpty: name == "nbio", // nbio 1.6.8: Conn.Parse dispatches only non-nil messages
		})
	}

	setup := exec.Command("bash", "setup.sh")
	if out, err := setup.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("setup.sh: %v\n%s", err, out)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("node not found after setup.sh: %v", err)
	}
	for _, name := range []string{"uws", "ws"} {
		script := filepath.Join("node", name+".mjs")
		peers = append(peers, peer{name: name, cmd: func(args ...string) *exec.Cmd {
			return exec.Command(node, append([]string{script}, args...)...)
		}})
	}
	return peers, nil
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// TestPeers checks every peer's echo and ticker modes, peers in parallel.
func TestPeers(t *testing.T) {
	for _, p := range peersUnderTest(t) {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			t.Run("echo", func(t *testing.T) { testEcho(t, p) })
			t.Run("ticker", func(t *testing.T) { testTicker(t, p) })
			t.Run("deflate", func(t *testing.T) { testDeflate(t, p) })
		})
	}
}

// TestSlowClient runs the slow-client check one peer at a time: it loads the
// machine, and a client that falls behind for lack of CPU would be a slow
// client too.
func TestSlowClient(t *testing.T) {
	for _, p := range peersUnderTest(t) {
		t.Run(p.name, func(t *testing.T) { testSlowClient(t, p) })
	}
}

// process is a running peer.
type process struct {
	cmd    *exec.Cmd
	addr   string
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's result, valid after done
	mu     sync.Mutex
	stdout bytes.Buffer // everything after the listening line
	stderr bytes.Buffer
}

var readyLine = regexp.MustCompile(`^(\S+) (echo|ticker) listening on (\S+:\d+)$`)

// start runs the peer and waits for its listening line.
func start(t *testing.T, p peer, mode string, args ...string) *process {
	t.Helper()
	cmd := p.cmd(append([]string{mode, "-addr", "127.0.0.1:0"}, args...)...)
	pr := &process{cmd: cmd, done: make(chan struct{})}
	cmd.Stderr = &lockedWriter{mu: &pr.mu, w: &pr.stderr}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, err := r.ReadString('\n')
		if err != nil {
			close(lines)
		} else {
			lines <- line
		}
		_, _ = io.Copy(&lockedWriter{mu: &pr.mu, w: &pr.stdout}, r)
		pr.err = cmd.Wait()
		close(pr.done)
	}()
	t.Cleanup(func() {
		select {
		case <-pr.done:
		default:
			_ = cmd.Process.Kill()
			<-pr.done
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", p.name, pr.output(&pr.stderr))
		}
	})

	began := time.Now()
	select {
	case line, ok := <-lines:
		if !ok {
			<-pr.done
			t.Fatalf("exited before listening: %v\nstderr:\n%s", pr.err, pr.output(&pr.stderr))
		}
		m := readyLine.FindStringSubmatch(strings.TrimSuffix(line, "\n"))
		if m == nil || m[1] != p.name || m[2] != mode {
			t.Fatalf("listening line %q, want %q", line, p.name+" "+mode+" listening on HOST:PORT")
		}
		if strings.HasSuffix(m[3], ":0") {
			t.Fatalf("printed port 0: %q", line)
		}
		pr.addr = m[3]
		t.Logf("%s %s listening after %v", p.name, mode, time.Since(began).Round(time.Millisecond))
	case <-time.After(60 * time.Second): // a hang guard
		t.Fatal("no listening line within 60s")
	}
	return pr
}

func (pr *process) output(b *bytes.Buffer) string {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return b.String()
}

// stop sends SIGTERM, checks that every client gets a 1001 close, and that
// the process exits 0 having printed nothing more on stdout. The waits are
// hang guards: how fast a peer stops is not part of the contract.
func (pr *process) stop(t *testing.T, clients ...*websocket.Conn) {
	t.Helper()
	sent := time.Now()
	if err := pr.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for i, c := range clients {
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
		for {
			_, _, err := c.ReadMessage()
			if err == nil {
				continue // ticks still in flight
			}
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
				t.Errorf("client %d: got %v, want a 1001 close", i, err)
			}
			break
		}
		c.Close()
	}
	select {
	case <-pr.done:
	case <-time.After(60 * time.Second):
		t.Fatal("still running 60s after SIGTERM")
	}
	t.Logf("exited %v after SIGTERM", time.Since(sent).Round(time.Millisecond))
	if pr.err != nil {
		t.Errorf("exit: %v, want status 0", pr.err)
	}
	if rest := pr.output(&pr.stdout); rest != "" {
		t.Errorf("stdout after the listening line: %q", rest)
	}
}

func dial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	c, _ := dialWith(t, url, false)
	return c
}

// dialWith dials url, offering permessage-deflate when deflate is set, and
// returns the connection and the server's extension answer.
func dialWith(t *testing.T, url string, deflate bool) (*websocket.Conn, string) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 60 * time.Second, EnableCompression: deflate}
	h := http.Header{"Origin": {"http://elsewhere.example"}} // any Origin is accepted
	c, resp, err := d.Dial(url, h)
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("dial %s: %v %s", url, err, status)
	}
	return c, resp.Header.Get("Sec-WebSocket-Extensions")
}

func testEcho(t *testing.T, p peer) {
	pr := start(t, p, "echo")
	c := dial(t, "ws://"+pr.addr+"/any/path?q=1")

	type tc struct {
		mt   int
		size int
	}
	var cases []tc
	for _, size := range []int{0, 125, 126, 65536, 1 << 20} {
		cases = append(cases, tc{websocket.TextMessage, size}, tc{websocket.BinaryMessage, size})
	}
	cases = append(cases, tc{websocket.BinaryMessage, 64 << 20}) // the contract's limit
	// The messages repeat a short period, so they are built by copying
	// it, not byte by byte: under the race detector a loop over the
	// contract's 64 MiB is most of the test's CPU.
	text, binary := make([]byte, 26), make([]byte, 256)
	for i := range text {
		text[i] = 'a' + byte(i)
	}
	for i := range binary {
		binary[i] = byte(i * 7)
	}
	for _, tc := range cases {
		period := binary
		if tc.mt == websocket.TextMessage {
			period = text
		}
		msg := repeatTo(period, tc.size)
		_ = c.SetWriteDeadline(time.Now().Add(60 * time.Second))
		if err := c.WriteMessage(tc.mt, msg); err != nil {
			t.Fatalf("write %d bytes: %v", tc.size, err)
		}
		if tc.size == 0 && p.dropsEmpty {
			// The next echo shows the connection survived and that no
			// empty echo came after all.
			t.Logf("%s does not deliver empty messages; not expecting an echo", p.name)
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
		// ReadMessage, into a buffer sized for the echo expected, so that
		// 64 MiB are not copied again at every doubling.
		mt, r, err := c.NextReader()
		var got bytes.Buffer
		if err == nil {
			got.Grow(tc.size + 1)
			_, err = got.ReadFrom(r)
		}
		if err != nil {
			t.Fatalf("echo of %d bytes (type %d): %v", tc.size, tc.mt, err)
		}
		if mt != tc.mt || !bytes.Equal(got.Bytes(), msg) {
			t.Fatalf("echo of %d bytes (type %d): got %d bytes of type %d", tc.size, tc.mt, got.Len(), mt)
		}
	}
	pr.stop(t, c)
}

// repeatTo returns n bytes that repeat period from its start.
func repeatTo(period []byte, n int) []byte {
	b := make([]byte, n)
	if n == 0 {
		return b
	}
	k := copy(b, period)
	for k < n {
		k += copy(b[k:], b[:k])
	}
	return b
}

type tickMsg struct {
	Sym string `json:"sym"`
	Seq uint64 `json:"seq"`
	TS  int64  `json:"ts"`
	Pad string `json:"pad"`
}

var tickShape = regexp.MustCompile(`^\{"sym":"S\d+","seq":\d+,"ts":\d+,"pad":"x*"\}$`)

// readTicks reads until every symbol in want has n messages and one with
// sequence number through or later, checking each message; it returns the
// raw messages by symbol and sequence number.
func readTicks(t *testing.T, c *websocket.Conn, want []string, n int, through uint64) map[string]map[uint64]string {
	t.Helper()
	got := make(map[string]map[uint64]string)
	last := make(map[string]uint64)
	count := make(map[string]int)
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	for {
		done := true
		for _, s := range want {
			if count[s] < n || last[s] < through {
				done = false
			}
		}
		if done {
			return got
		}
		mt, raw, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("after %v: %v", count, err)
		}
		now := time.Now()
		if mt != websocket.TextMessage {
			t.Fatalf("message of type %d, want text", mt)
		}
		if !tickShape.Match(raw) {
			t.Fatalf("message %q does not have the contract's shape", raw)
		}
		var m tickMsg
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("message %q: %v", raw, err)
		}
		// The contract asks for about -size bytes; every peer pads to
		// exactly that, so any difference means the builders diverged.
		if len(raw) != 128 {
			t.Errorf("message of %d bytes, want 128: %q", len(raw), raw)
		}
		// ts is Unix nanoseconds at publish: on this machine's clock, a
		// little before now. The bound is loose (a busy machine delays
		// delivery); a ts in another unit is off by years.
		if age := now.Sub(time.Unix(0, m.TS)); age < -time.Second || age > time.Minute {
			t.Errorf("%s seq %d: ts is %v before now", m.Sym, m.Seq, age)
		}
		wanted := false
		for _, s := range want {
			wanted = wanted || s == m.Sym
		}
		if !wanted {
			t.Fatalf("got a message for %s, subscribed to %v", m.Sym, want)
		}
		if prev, ok := last[m.Sym]; ok && m.Seq != prev+1 {
			t.Fatalf("%s: seq %d after %d", m.Sym, m.Seq, prev)
		}
		if m.Seq == 0 {
			t.Fatalf("%s: seq 0, sequences start at 1", m.Sym)
		}
		last[m.Sym] = m.Seq
		count[m.Sym]++
		if got[m.Sym] == nil {
			got[m.Sym] = make(map[uint64]string)
		}
		got[m.Sym][m.Seq] = string(raw)
	}
}

func testTicker(t *testing.T, p peer) {
	pr := start(t, p, "ticker", "-interval", "50ms", "-symbols", "3", "-size", "128")
	all := dial(t, "ws://"+pr.addr+"/ws")
	one := dial(t, "ws://"+pr.addr+"/ws?symbols=S1")

	// all subscribed before one, so it gets every S1 tick that one gets:
	// one is read first, then all up to one's last tick, however many
	// ticks passed between the two subscriptions on a busy machine.
	gotOne := readTicks(t, one, []string{"S1"}, 8, 0)
	var through uint64
	for seq := range gotOne["S1"] {
		through = max(through, seq)
	}
	gotAll := readTicks(t, all, []string{"S0", "S1", "S2"}, 8, through)
	// Every subscriber gets the same bytes for the same tick.
	same := 0
	for seq, raw := range gotOne["S1"] {
		if other, ok := gotAll["S1"][seq]; ok {
			same++
			if other != raw {
				t.Errorf("S1 seq %d differs between subscribers:\n%s\n%s", seq, raw, other)
			}
		}
	}
	if same == 0 {
		t.Errorf("the two subscribers got no S1 message in common")
	}
	pr.stop(t, all, one)
}

// testDeflate runs the ticker with -payload book -compression and echo with
// -compression: the peer must negotiate permessage-deflate without context
// takeover, and every tick must be, byte for byte, the order book herald's
// ticker builds (examples/ticker/book) for its symbol, sequence number and
// time: the Node peers build it with their own port of the generator.
// Echoes of compressed messages come back whole.
func testDeflate(t *testing.T, p peer) {
	pr := start(t, p, "ticker", "-interval", "50ms", "-symbols", "2", "-size", "1024", "-payload", "book", "-compression")
	c, ext := dialWith(t, "ws://"+pr.addr+"/ws", true)
	if !strings.HasPrefix(ext, "permessage-deflate") || !strings.Contains(ext, "server_no_context_takeover") {
		t.Fatalf("extensions answered: %q", ext)
	}
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Second)) // a hang guard
	for n := 0; n < 8; n++ {
		_, raw, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("after %d ticks: %v", n, err)
		}
		var m tickMsg
		if err := json.Unmarshal(raw, &m); err != nil || !strings.HasPrefix(m.Sym, "S") {
			t.Fatalf("tick %.80q: %v", raw, err)
		}
		var k int
		fmt.Sscanf(m.Sym, "S%d", &k)
		if want := book.Append(nil, k, m.Seq, m.TS, 1024); !bytes.Equal(raw, want) {
			t.Fatalf("tick differs from the book generator's:\n got %s\nwant %s", raw, want)
		}
	}
	pr.stop(t, c)

	pr = start(t, p, "echo", "-compression")
	c, ext = dialWith(t, "ws://"+pr.addr+"/", true)
	if !strings.HasPrefix(ext, "permessage-deflate") {
		t.Fatalf("echo: extensions answered: %q", ext)
	}
	msg := book.Append(nil, 1, 2, 3, 4096)
	for _, mt := range []int{websocket.TextMessage, websocket.BinaryMessage} {
		_ = c.SetWriteDeadline(time.Now().Add(60 * time.Second))
		if err := c.WriteMessage(mt, msg); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
		gotType, got, err := c.ReadMessage()
		if err != nil || gotType != mt || !bytes.Equal(got, msg) {
			t.Fatalf("echo of a compressed %d-byte message: type %d, %d bytes, %v", len(msg), gotType, len(got), err)
		}
	}
	pr.stop(t, c)
}

// testSlowClient publishes about 26 MB/s to a client that never reads (its
// socket buffers fill within half a second) and checks that another client,
// subscribed to one symbol (3.3 MB/s), still gets every tick, in order and
// without a gap, and that the peer still stops cleanly on SIGTERM. How fast
// the ticks arrive is the benchmarks' business: here it is only logged.
func testSlowClient(t *testing.T, p peer) {
	pr := start(t, p, "ticker", "-interval", "20ms", "-symbols", "8", "-size", "65536")
	stalled := dial(t, "ws://"+pr.addr+"/ws")
	defer stalled.Close()
	good := dial(t, "ws://"+pr.addr+"/ws?symbols=S0")

	const want = 100 // 2 s of ticks, while the stalled client's buffers are full
	var last uint64
	var worst time.Duration
	_ = good.SetReadDeadline(time.Now().Add(60 * time.Second)) // a hang guard
	for n := 0; n < want; n++ {
		_, raw, err := good.ReadMessage()
		if err != nil {
			t.Fatalf("after %d messages: %v", n, err)
		}
		now := time.Now()
		// Decode the head only: the padding is 64 KiB of x.
		var m tickMsg
		head, _, _ := bytes.Cut(raw, []byte(`,"pad":`))
		if err := json.Unmarshal(append(head, '}'), &m); err != nil || m.Sym != "S0" {
			t.Fatalf("message %.80q: %v", raw, err)
		}
		if last != 0 && m.Seq != last+1 {
			t.Fatalf("S0: seq %d after %d", m.Seq, last)
		}
		last = m.Seq
		worst = max(worst, now.Sub(time.Unix(0, m.TS)))
	}
	t.Logf("%d messages in order beside a stalled client, worst age %v", want, worst.Round(time.Microsecond))
	pr.stop(t, good)
}

// lockedWriter serialises writes to a buffer that the test reads.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
