package engine

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/heraldws/herald/internal/ratelimit"
	"github.com/heraldws/herald/upgrade"
)

// reply is what a raw client got back for its request.
type reply struct {
	status int
	header http.Header
	body   string
	conn   net.Conn      // kept open after a 101
	br     *bufio.Reader // its reader, holding what came after the 101
}

// rawExchange dials s from the loopback address from ("" for any), sends
// data and reads the reply. After a 101 the connection stays open
// (closed when the test ends); after anything else the server must have
// closed it cleanly — read to EOF, no reset — after a complete reply.
func rawExchange(t testing.TB, s *Server, from, data string) (reply, error) {
	d := net.Dialer{Timeout: 60 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	conn, err := d.Dial("tcp", s.Addr().String())
	if err != nil {
		return reply{}, err
	}
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second)) // a hang guard
	if _, err := conn.Write([]byte(data)); err != nil {
		conn.Close()
		return reply{}, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return reply{}, err
	}
	r := reply{status: resp.StatusCode, header: resp.Header}
	if r.status == http.StatusSwitchingProtocols {
		t.Cleanup(func() { conn.Close() })
		r.conn, r.br = conn, br
		return r, nil
	}
	defer conn.Close()
	body, err := io.ReadAll(resp.Body)
	r.body = string(body)
	if err != nil {
		return r, err
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) > 0 {
		return r, fmt.Errorf("after the reply: %q, %v (want a clean close)", rest, err)
	}
	return r, nil
}

// flood runs n raw exchanges, many at a time, and counts the replies by
// status. The connections that upgraded stay open.
func flood(t testing.TB, s *Server, from, data string, n int) (map[int]int, []reply) {
	t.Helper()
	return floodWith(t, s, from, func(int) string { return data }, n)
}

// floodWith is flood with the data of exchange i from data(i).
func floodWith(t testing.TB, s *Server, from string, data func(i int) string, n int) (map[int]int, []reply) {
	t.Helper()
	var (
		mu     sync.Mutex
		counts = map[int]int{}
		opened []reply
		wg     sync.WaitGroup
		errs   []error
	)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				r, err := rawExchange(t, s, from, data(i))
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					counts[r.status]++
					if r.conn != nil {
						opened = append(opened, r)
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d exchanges failed, the first: %v", len(errs), n, errs[0])
	}
	return counts, opened
}

// echoing is a recorder whose connections echo every message.
func echoing() *recorder {
	r := newRecorder()
	r.openCh = make(chan *Conn, 10000)
	r.closeCh = make(chan error, 10000)
	r.onMsg = func(c *Conn, typ MessageType, data []byte) { _ = c.Send(typ, data) }
	return r
}

// echoes checks that conn still gets its message echoed.
func echoes(t testing.TB, conn net.Conn, msg string) {
	t.Helper()
	if err := wsutil.WriteClientText(conn, []byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	f := readFrame(t, conn)
	if f.Header.OpCode != ws.OpText || string(f.Payload) != msg {
		t.Fatalf("got %v %q, want the echo of %q", f.Header.OpCode, f.Payload, msg)
	}
}

// dialFrom is dial from a chosen loopback address.
func dialFrom(t testing.TB, s *Server, from, path string) net.Conn {
	t.Helper()
	r, err := rawExchange(t, s, from, upgradeRequest(path, ""))
	if err != nil || r.status != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade from %s: %d %q %v", from, r.status, r.body, err)
	}
	return bufferedConn{r.conn, r.br}
}

func TestMaxConnsAnswers503(t *testing.T) {
	const limit, n = 5, 1000
	r := echoing()
	s := startServer(t, Config{MaxConns: limit, RetryAfter: 7 * time.Second}, r)
	conns := make([]net.Conn, 0, limit)
	for range limit {
		conns = append(conns, dial(t, s, "/", nil))
		waitOpen(t, r)
	}
	counts, opened := flood(t, s, "", upgradeRequest("/", ""), n)
	if counts[503] != n || len(opened) != 0 {
		t.Fatalf("replies by status %v, want %d × 503", counts, n)
	}
	one, err := rawExchange(t, s, "", upgradeRequest("/", ""))
	if err != nil || one.status != 503 || one.header.Get("Retry-After") != "7" || one.body != "herald: server at its connection limit" {
		t.Fatalf("503: %d Retry-After %q body %q, %v", one.status, one.header.Get("Retry-After"), one.body, err)
	}
	for i, c := range conns { // bystanders are served
		echoes(t, c, fmt.Sprint("bystander ", i))
	}
	st := s.Stats()
	if st.ConnLimitRejected != n+1 || st.Rejected != n+1 {
		t.Fatalf("ConnLimitRejected %d, Rejected %d, want %d", st.ConnLimitRejected, st.Rejected, n+1)
	}
	waitFor(t, "the refused connections to go", func() bool { return s.Stats().Active == limit })
	// A place freed is a place taken.
	conns[0].Close()
	waitClose(t, r)
	waitFor(t, "the closed connection to go", func() bool { return s.Stats().Active == limit-1 })
	echoes(t, dial(t, s, "/", nil), "welcome")
}

func TestPathAnswers404(t *testing.T) {
	r := echoing()
	s := startServer(t, Config{Path: "/ws"}, r)
	good := dial(t, s, "/ws?room=1", nil)
	counts, _ := flood(t, s, "", upgradeRequest("/elsewhere", ""), 300)
	if counts[404] != 300 {
		t.Fatalf("replies by status %v, want 300 × 404", counts)
	}
	one, err := rawExchange(t, s, "", upgradeRequest("/ws/", ""))
	if err != nil || one.status != 404 || one.body != "herald: no WebSocket endpoint at this path" {
		t.Fatalf("%d %q %v", one.status, one.body, err)
	}
	// Plain HTTP is not an upgrade: 426 on any path, as without Path.
	plain, err := rawExchange(t, s, "", "GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n")
	if err != nil || plain.status != http.StatusUpgradeRequired {
		t.Fatalf("plain request: %d %v", plain.status, err)
	}
	echoes(t, good, "still here")
	if st := s.Stats(); st.PathRejected != 301 || st.Rejected != 302 {
		t.Fatalf("PathRejected %d Rejected %d, want 301 and 302", st.PathRejected, st.Rejected)
	}
	if _, err := New(Config{Addr: ":0", Path: "ws"}, r); err == nil || !strings.Contains(err.Error(), "Path") {
		t.Fatalf("a path without '/': %v", err)
	}
}

func TestMaxConnsPerIP(t *testing.T) {
	const perIP, n = 3, 400
	r := echoing()
	s := startServer(t, Config{MaxConnsPerIP: perIP, RetryAfter: time.Second}, r)
	// A bystander on another address.
	bystander := dialFrom(t, s, "127.0.0.2", "/")
	counts, opened := flood(t, s, "127.0.0.3", upgradeRequest("/", ""), n)
	if counts[101] != perIP || counts[429] != n-perIP {
		t.Fatalf("replies by status %v, want %d × 101 and the rest 429", counts, perIP)
	}
	one, err := rawExchange(t, s, "127.0.0.3", upgradeRequest("/", ""))
	if err != nil || one.status != 429 || one.header.Get("Retry-After") != "1" || one.body != "herald: too many connections from this address" {
		t.Fatalf("429: %d %q %q %v", one.status, one.header.Get("Retry-After"), one.body, err)
	}
	echoes(t, bystander, "unaffected")
	st := s.Stats()
	if st.PerIPRejected != n-perIP+1 || st.PerIPTable != 2 {
		t.Fatalf("PerIPRejected %d, PerIPTable %d; want %d and 2", st.PerIPRejected, st.PerIPTable, n-perIP+1)
	}
	// Closing one frees a place for its address; closing all empties the
	// table.
	opened[0].conn.Close()
	waitFor(t, "the place to free", func() bool {
		return s.lim.perIP.Count(ratelimit.KeyOf(netip.MustParseAddr("127.0.0.3"))) == perIP-1
	})
	dialFrom(t, s, "127.0.0.3", "/").Close()
	for _, o := range opened[1:] {
		o.conn.Close()
	}
	bystander.Close()
	waitFor(t, "the table to empty", func() bool { return s.Stats().PerIPTable == 0 && s.Stats().Active == 0 })
}

func TestHandshakeRate(t *testing.T) {
	r := echoing()
	s := startServer(t, Config{HandshakeRate: 4, HandshakeBurst: 5, HandshakeRateTable: 1024}, r)
	clock := fakeClock(s)
	bystander := dialFrom(t, s, "127.0.0.2", "/")
	// The clock stands still: a burst's worth pass, the rest are refused.
	counts, opened := flood(t, s, "127.0.0.4", upgradeRequest("/", ""), 300)
	if counts[101] != 5 || counts[429] != 295 {
		t.Fatalf("replies by status %v, want 5 × 101 and 295 × 429", counts)
	}
	one, err := rawExchange(t, s, "127.0.0.4", upgradeRequest("/", ""))
	if err != nil || one.status != 429 || one.header.Get("Retry-After") != "1" || one.body != "herald: handshake rate limit exceeded" {
		t.Fatalf("429: %d %q %q %v", one.status, one.header.Get("Retry-After"), one.body, err)
	}
	// A quarter of a second later, one token is due.
	clock.advance(250 * time.Millisecond)
	echoes(t, dialFrom(t, s, "127.0.0.4", "/"), "one more")
	if one, _ := rawExchange(t, s, "127.0.0.4", upgradeRequest("/", "")); one.status != 429 {
		t.Fatalf("a second one: %d, want 429", one.status)
	}
	// Open connections are not touched; another address is not limited.
	echoes(t, opened[0].conn, "")
	echoes(t, bystander, "unaffected")
	echoes(t, dialFrom(t, s, "127.0.0.5", "/"), "newcomer")
	st := s.Stats()
	if st.HandshakeRateRejected != 297 || st.HandshakeRateTable != 3 {
		t.Fatalf("HandshakeRateRejected %d, HandshakeRateTable %d; want 297 and 3", st.HandshakeRateRejected, st.HandshakeRateTable)
	}
}

func TestReadRate(t *testing.T) {
	r := echoing()
	r.onOpen = func(c *Conn) {
		if c.Request().RawQuery == "vip" {
			c.SetReadRate(ReadRate{Messages: 1000})
		}
	}
	s := startServer(t, Config{ReadRate: ReadRate{Messages: 10, Bytes: 1000}}, r)
	clock := fakeClock(s)
	bystander := dial(t, s, "/", nil)
	waitOpen(t, r)

	// Ten messages pass, the eleventh closes with 1008.
	flooder := dial(t, s, "/", nil)
	waitOpen(t, r)
	for i := range 10 {
		echoes(t, flooder, fmt.Sprint(i))
	}
	_ = wsutil.WriteClientText(flooder, []byte("one too many"))
	f := readFrame(t, flooder)
	code, reason := ws.ParseCloseFrameData(f.Payload)
	if f.Header.OpCode != ws.OpClose || code != 1008 || reason != "message rate limit exceeded" {
		t.Fatalf("got %v %d %q, want close 1008", f.Header.OpCode, code, reason)
	}
	answerClose(flooder, f.Payload)
	if err := waitClose(t, r); CloseStatus(err) != StatusPolicyViolation {
		t.Fatalf("OnClose: %v", err)
	}

	// A flood of messages in one go: closed, the bystander is served.
	flooder = dial(t, s, "/", nil)
	waitOpen(t, r)
	var burst []byte
	for range 5000 {
		burst = append(burst, frameBytes(ws.OpText, true, "x")...)
	}
	go func() { _, _ = flooder.Write(burst) }()
	if code := expectClose(t, flooder); code != 1008 {
		t.Fatalf("flood closed with %d, want 1008", code)
	}
	answerClose(flooder, nil)
	waitClose(t, r)
	echoes(t, bystander, "unaffected")

	// Bytes: 1000 a second; a message larger than the bucket passes only
	// when the bucket is full.
	big := dial(t, s, "/", nil)
	waitOpen(t, r)
	echoes(t, big, strings.Repeat("b", 1500))
	_ = wsutil.WriteClientText(big, []byte("b"))
	f = readFrame(t, big)
	if code, reason := ws.ParseCloseFrameData(f.Payload); code != 1008 || reason != "byte rate limit exceeded" {
		t.Fatalf("got %d %q, want 1008 for bytes", code, reason)
	}
	answerClose(big, f.Payload)
	waitClose(t, r)

	// Time refills the buckets; SetReadRate raises one connection's limit.
	clock.advance(time.Second)
	for i := range 10 {
		echoes(t, bystander, fmt.Sprint("again ", i))
	}
	vip := dial(t, s, "/?vip", nil)
	waitOpen(t, r)
	for i := range 100 {
		echoes(t, vip, fmt.Sprint(i))
	}
	if st := s.Stats(); st.ReadRateClosed != 3 {
		t.Fatalf("ReadRateClosed %d, want 3", st.ReadRateClosed)
	}
	// Buckets are kept only for connections that are open and have sent.
	vip.Close()
	waitClose(t, r)
	quiet := dial(t, s, "/", nil)
	waitOpen(t, r)
	_ = quiet
	waitFor(t, "the closed connections' buckets to go", func() bool { return readBucketCount(s) == 1 })
}

// answerClose completes the close handshake the server started.
func answerClose(conn net.Conn, payload []byte) {
	_ = ws.WriteFrame(conn, ws.MaskFrameInPlace(ws.NewCloseFrame(payload)))
}

// frameBytes is a masked client frame.
func frameBytes(op ws.OpCode, fin bool, payload string) []byte {
	var b strings.Builder
	_ = ws.WriteFrame(&b, ws.MaskFrameInPlace(ws.NewFrame(op, fin, []byte(payload))))
	return []byte(b.String())
}

// readBucketCount counts the ReadRate buckets the loops hold, on the loops.
func readBucketCount(s *Server) int {
	n := 0
	for _, l := range *s.loopList.Load() {
		done := make(chan int)
		if l.Post(func() { done <- len(l.readRates) }) == nil {
			n += <-done
		}
	}
	return n
}

func TestLimitsConfigErrors(t *testing.T) {
	h := newRecorder()
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{MaxConns: -1}, "MaxConns"},
		{Config{HandshakeRate: -2}, "HandshakeRate"},
		{Config{ReadRate: ReadRate{Bytes: -1}}, "ReadRate.Bytes"},
		{Config{ProxyProtocol: true}, "TrustedProxies"},
		{Config{TrustForwarded: true}, "TrustedProxies"},
	} {
		tc.cfg.Addr = "127.0.0.1:0"
		if _, err := New(tc.cfg, h); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
}

func TestProxyProtocol(t *testing.T) {
	r := echoing()
	var mu sync.Mutex
	var remotes []string
	r.onOpen = func(c *Conn) {
		mu.Lock()
		remotes = append(remotes, c.RemoteAddr().String()+" "+c.Request().RemoteAddr.String())
		mu.Unlock()
	}
	s := startServer(t, Config{
		ProxyProtocol:  true,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		MaxConnsPerIP:  1,
	}, r)
	v2 := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c")
	v2 = append(v2, 198, 51, 100, 7, 127, 0, 0, 1, 0x30, 0x39, 0, 80)
	for _, tc := range []struct{ header, want string }{
		{"PROXY TCP4 192.0.2.9 127.0.0.1 4711 80\r\n", "192.0.2.9:4711"},
		{"PROXY TCP6 2001:db8::9 ::1 4712 80\r\n", "[2001:db8::9]:4712"},
		{string(v2), "198.51.100.7:12345"},
	} {
		one, err := rawExchange(t, s, "127.0.0.1", tc.header+upgradeRequest("/", ""))
		if err != nil || one.status != 101 {
			t.Fatalf("%q: %d %v", tc.header, one.status, err)
		}
		c := waitOpen(t, r)
		if got := c.RemoteAddr().String(); got != tc.want {
			t.Fatalf("RemoteAddr %s, want %s", got, tc.want)
		}
		echoes(t, bufferedConn{one.conn, one.br}, "through the balancer")
	}
	mu.Lock()
	for _, got := range remotes {
		if a, b, _ := strings.Cut(got, " "); a != b {
			t.Fatalf("the Request's RemoteAddr %s differs from the Conn's %s", b, a)
		}
	}
	mu.Unlock()
	// The per-address limit counts the client, not the balancer.
	again, err := rawExchange(t, s, "127.0.0.1", "PROXY TCP4 192.0.2.9 127.0.0.1 4713 80\r\n"+upgradeRequest("/", ""))
	if err != nil || again.status != 429 {
		t.Fatalf("a second connection of 192.0.2.9: %d %v, want 429", again.status, err)
	}
	// A LOCAL header (a health check) keeps the peer's address.
	local := append([]byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"), upgradeRequest("/", "")...)
	if one, err := rawExchange(t, s, "127.0.0.1", string(local)); err != nil || one.status != 101 {
		t.Fatalf("LOCAL: %d %v", one.status, err)
	}
	if c := waitOpen(t, r); !strings.HasPrefix(c.RemoteAddr().String(), "127.0.0.1:") {
		t.Fatalf("LOCAL: RemoteAddr %s", c.RemoteAddr())
	}

	// Malformed headers, a header split over many writes, and peers that
	// are not trusted.
	expectDropped := func(from string, data []byte) {
		conn, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).Dial("tcp", s.Addr().String())
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
		_, _ = conn.Write(data)
		got, _ := io.ReadAll(conn)
		if len(got) != 0 {
			t.Errorf("%q from %s: got %q, want a close without a reply", data, from, got)
		}
	}
	bystander, err := rawExchange(t, s, "127.0.0.1", "PROXY TCP4 192.0.2.10 127.0.0.1 4711 80\r\n"+upgradeRequest("/", ""))
	if err != nil || bystander.status != 101 {
		t.Fatalf("%d %v", bystander.status, err)
	}
	waitOpen(t, r)
	before := s.Stats().ProxyRefused
	// A flood of bad headers, many at a time.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				expectDropped("127.0.0.1", []byte(fmt.Sprintf("PROXY TCP4 192.0.2.%d 127.0.0.1 %d x\r\n", g, i)))
			}
		}()
	}
	wg.Wait()
	echoes(t, bufferedConn{bystander.conn, bystander.br}, "unaffected")
	before += 400
	expectDropped("127.0.0.1", []byte("PROXY TCP4 192.0.2.1 nonsense\r\n"))
	expectDropped("127.0.0.1", []byte(upgradeRequest("/", ""))) // no header at all
	expectDropped("127.0.0.2", []byte("PROXY TCP4 192.0.2.1 127.0.0.1 1 80\r\n"+upgradeRequest("/", "")))
	expectDropped("127.0.0.1", []byte("PROXY TCP4 "+strings.Repeat("1", 200)))
	if got := s.Stats().ProxyRefused - before; got != 4 {
		t.Fatalf("ProxyRefused grew by %d, want 4", got)
	}
	// Byte by byte.
	conn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	for _, b := range []byte("PROXY TCP4 192.0.2.11 127.0.0.1 4711 80\r\n" + upgradeRequest("/", "")) {
		if _, err := conn.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
	}
	if c := waitOpen(t, r); c.RemoteAddr().String() != "192.0.2.11:4711" {
		t.Fatalf("byte by byte: RemoteAddr %s", c.RemoteAddr())
	}
}

func TestTrustForwarded(t *testing.T) {
	r := echoing()
	s := startServer(t, Config{
		TrustForwarded: true,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")},
		MaxConnsPerIP:  1,
		Authorize: func(req *upgrade.Request) (any, error) {
			return req.RemoteAddr.String(), nil // what Authorize saw
		},
	}, r)
	one, err := rawExchange(t, s, "127.0.0.1", upgradeRequest("/", "X-Forwarded-For: 6.6.6.6, 192.0.2.20, 10.0.0.7\r\n"))
	if err != nil || one.status != 101 {
		t.Fatalf("%d %v", one.status, err)
	}
	c := waitOpen(t, r)
	if c.RemoteAddr().String() != "192.0.2.20:0" || c.Session() != "192.0.2.20:0" {
		t.Fatalf("RemoteAddr %s, Authorize saw %v; want 192.0.2.20", c.RemoteAddr(), c.Session())
	}
	// The limit counts the forwarded client; the proxy itself is not
	// limited.
	if two, _ := rawExchange(t, s, "127.0.0.1", upgradeRequest("/", "Forwarded: for=192.0.2.20\r\n")); two.status != 429 {
		t.Fatalf("the same client again: %d, want 429", two.status)
	}
	if three, _ := rawExchange(t, s, "127.0.0.1", upgradeRequest("/", "Forwarded: for=\"[2001:db8::1]:5\"\r\n")); three.status != 101 {
		t.Fatalf("another client: %d, want 101", three.status)
	}
	// An untrusted peer's header is ignored.
	four, err := rawExchange(t, s, "127.0.0.2", upgradeRequest("/", "X-Forwarded-For: 192.0.2.99\r\n"))
	if err != nil || four.status != 101 {
		t.Fatalf("untrusted peer: %d %v", four.status, err)
	}
	for range 2 {
		c := waitOpen(t, r)
		if a := c.RemoteAddr().String(); a == "192.0.2.99:0" {
			t.Fatal("an untrusted peer's X-Forwarded-For was believed")
		}
	}
	if st := s.Stats(); st.PerIPRejected != 1 || st.PerIPTable != 3 {
		t.Fatalf("PerIPRejected %d PerIPTable %d, want 1 and 3", st.PerIPRejected, st.PerIPTable)
	}
}

// A flood of handshakes from as many (spoofed) addresses as there are
// connections, through a trusted balancer: the handshake buckets' table
// stays at its capacity, and an address over its rate stays limited.
func TestHandshakeRateTableBoundedUnderSpoofing(t *testing.T) {
	const n = 3000
	r := echoing()
	s := startServer(t, Config{
		Path:               "/ws",
		HandshakeRate:      1,
		HandshakeBurst:     5,
		HandshakeRateTable: 512,
		ProxyProtocol:      true,
		TrustedProxies:     []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
	}, r)
	fakeClock(s)
	abuser := "PROXY TCP4 192.0.2.1 127.0.0.1 1 80\r\n"
	bystander, err := rawExchange(t, s, "127.0.0.1", abuser+upgradeRequest("/ws", ""))
	if err != nil || bystander.status != 101 {
		t.Fatalf("%d %v", bystander.status, err)
	}
	counts, _ := floodWith(t, s, "127.0.0.1", func(i int) string {
		if i%100 == 0 {
			return abuser + upgradeRequest("/ws", "")
		}
		return fmt.Sprintf("PROXY TCP4 10.%d.%d.%d 127.0.0.1 1 80\r\n", i>>16&255, i>>8&255, i&255) +
			upgradeRequest("/nowhere", "")
	}, n)
	// The clock stands still: the abuser has 4 handshakes left of its
	// burst, then it is refused, its nearly empty bucket never evicted.
	if counts[404] != n-n/100 || counts[101] != 4 || counts[429] != n/100-4 {
		t.Fatalf("replies by status %v: want %d × 404 (new addresses), 4 × 101 and %d × 429 (the abuser)", counts, n-n/100, n/100-4)
	}
	echoes(t, bufferedConn{bystander.conn, bystander.br}, "unaffected")
	if st := s.Stats(); st.HandshakeRateTable != 512 || st.HandshakeRateRejected != n/100-4 {
		t.Fatalf("HandshakeRateTable %d (capacity 512), HandshakeRateRejected %d", st.HandshakeRateTable, st.HandshakeRateRejected)
	}
}

// Many connections flooding messages at once: every one is closed with
// 1008, a bystander within its rate is served throughout, and the loops
// keep buckets only for connections still open.
func TestReadRateFlood(t *testing.T) {
	const flooders = 100
	r := echoing()
	s := startServer(t, Config{ReadRate: ReadRate{Messages: 20}}, r)
	fakeClock(s)
	bystander := dial(t, s, "/", nil)
	waitOpen(t, r)
	var burst []byte
	for range 1000 {
		burst = append(burst, frameBytes(ws.OpBinary, true, "flood")...)
	}
	var wg sync.WaitGroup
	codes := make(chan ws.StatusCode, flooders)
	for range flooders {
		conn := dial(t, s, "/", nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			go func() { _, _ = conn.Write(burst) }()
			for {
				f, err := ws.ReadFrame(conn)
				if err != nil {
					codes <- 0
					return
				}
				if f.Header.OpCode == ws.OpClose {
					code, _ := ws.ParseCloseFrameData(f.Payload)
					answerClose(conn, f.Payload)
					codes <- code
					return
				}
			}
		}()
	}
	for i := range 10 {
		echoes(t, bystander, fmt.Sprint("bystander ", i))
	}
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != 1008 {
			t.Fatalf("a flooder ended with %d, want 1008", code)
		}
	}
	waitFor(t, "the flooders to close", func() bool { return s.Stats().Open == 1 })
	if st := s.Stats(); st.ReadRateClosed != flooders {
		t.Fatalf("ReadRateClosed %d, want %d", st.ReadRateClosed, flooders)
	}
	if n := readBucketCount(s); n != 1 {
		t.Fatalf("%d ReadRate buckets held, want the bystander's alone", n)
	}
}
