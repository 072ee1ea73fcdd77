package engine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/heraldws/herald/internal/testpki"
	"github.com/heraldws/herald/upgrade"
)

// loopbackPKI is made once: key generation is the slow part.
var loopbackPKI = func() *testpki.Loopback {
	l, err := testpki.NewLoopback()
	if err != nil {
		panic(err)
	}
	return l
}()

// startTLS runs a server with cfg and the loopback certificate unless cfg
// has a TLS config of its own.
func startTLS(t testing.TB, cfg Config, h Handler) *Server {
	t.Helper()
	if cfg.TLS == nil {
		cfg.TLS = loopbackPKI.ServerConfig()
	}
	return startServer(t, cfg, h)
}

// dialTLS makes a TLS connection to s with cfg (the loopback CA's client
// config if nil) and upgrades it on path.
func dialTLS(t testing.TB, s *Server, path string, cfg *tls.Config) (net.Conn, *tls.Conn) {
	t.Helper()
	tc, err := tlsDial(s, cfg)
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	t.Cleanup(func() { tc.Close() })
	conn, err := wsOver(tc, path)
	if err != nil {
		t.Fatalf("upgrade over TLS: %v", err)
	}
	return conn, tc
}

// tlsDial makes a TLS connection to s, closed when the test ends.
func tlsDial(s *Server, cfg *tls.Config) (*tls.Conn, error) {
	if cfg == nil {
		cfg = loopbackPKI.ClientConfig()
	}
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 60 * time.Second}, "tcp", s.Addr().String(), cfg)
	if err != nil {
		return nil, err
	}
	_ = tc.SetDeadline(time.Now().Add(60 * time.Second)) // a hang guard
	return tc, nil
}

// wsOver upgrades conn, a connection already made, to a WebSocket on path.
func wsOver(conn net.Conn, path string) (net.Conn, error) {
	br, _, err := ws.Dialer{}.Upgrade(conn, &url.URL{Scheme: "wss", Host: "localhost", Path: path})
	if err != nil {
		conn.Close()
		return nil, err
	}
	if br != nil {
		return bufferedConn{conn, br}, nil
	}
	return conn, nil
}

// A WebSocket over TLS 1.2 and 1.3 echoes messages of every size, from
// empty to several records (a record holds 16 KiB); ALPN says http/1.1; the
// upgrade request and the Conn see the TLS state.
func TestTLSEcho(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version uint16
	}{
		{"TLS1.2", tls.VersionTLS12},
		{"TLS1.3", tls.VersionTLS13},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var reqTLS atomic.Pointer[tls.ConnectionState]
			r := echoing()
			r.onOpen = func(c *Conn) { reqTLS.Store(c.Request().TLS) }
			s := startTLS(t, Config{}, r)
			cfg := loopbackPKI.ClientConfig()
			cfg.MinVersion, cfg.MaxVersion = tc.version, tc.version
			cfg.NextProtos = []string{"h2", "http/1.1"}
			conn, tconn := dialTLS(t, s, "/", cfg)
			c := waitOpen(t, r)
			if st := tconn.ConnectionState(); st.Version != tc.version || st.NegotiatedProtocol != "http/1.1" {
				t.Fatalf("client sees version %#x, ALPN %q; want %#x, http/1.1", st.Version, st.NegotiatedProtocol, tc.version)
			}
			if rs := reqTLS.Load(); rs == nil || rs.Version != tc.version || !rs.HandshakeComplete {
				t.Fatalf("Request.TLS = %+v, want the handshake's state", rs)
			}
			if cs := c.TLS(); cs == nil || cs.Version != tc.version || cs.NegotiatedProtocol != "http/1.1" {
				t.Fatalf("Conn.TLS = %+v", cs)
			}
			for _, n := range []int{0, 5, 125, 16 << 10, 70000, 1 << 20} {
				echoes(t, conn, strings.Repeat("x", n))
			}
			st := s.Stats()
			if st.TLSHandshakes != 1 || st.TLSErrors != 0 || st.TLSHandshakesInFlight != 0 {
				t.Fatalf("stats: %d handshakes, %d errors, %d in flight", st.TLSHandshakes, st.TLSErrors, st.TLSHandshakesInFlight)
			}
			if err := wsutil.WriteClientMessage(conn, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye")); err != nil {
				t.Fatal(err)
			}
			if code := expectClose(t, conn); code != ws.StatusNormalClosure {
				t.Fatalf("close code %d", code)
			}
			var ce *CloseError
			if err := waitClose(t, r); !errors.As(err, &ce) || ce.Code != StatusNormalClosure {
				t.Fatalf("OnClose: %v", err)
			}
		})
	}
}

// Messages the server sends unasked (Send from another goroutine, a close
// frame) are encrypted too.
func TestTLSSendFromElsewhere(t *testing.T) {
	r := newRecorder()
	s := startTLS(t, Config{}, r)
	conn, _ := dialTLS(t, s, "/", nil)
	c := waitOpen(t, r)
	big := strings.Repeat("b", 100000)
	for _, msg := range []string{"hello", big} {
		if err := c.SendText(msg); err != nil {
			t.Fatal(err)
		}
		if f := readFrame(t, conn); string(f.Payload) != msg {
			t.Fatalf("got %d bytes, want %d", len(f.Payload), len(msg))
		}
	}
	if err := c.Close(StatusGoingAway, "later"); err != nil {
		t.Fatal(err)
	}
	if code := expectClose(t, conn); code != ws.StatusGoingAway {
		t.Fatalf("close code %d", code)
	}
}

// slowWriter writes every byte in a write of its own, and runs midway once
// after half of the first write (the ClientHello) is out.
type slowWriter struct {
	net.Conn
	midway func()
}

func (w *slowWriter) Write(p []byte) (int, error) {
	for i := range p {
		if _, err := w.Conn.Write(p[i : i+1]); err != nil {
			return i, err
		}
		if w.midway != nil && i == len(p)/2 {
			w.midway()
			w.midway = nil
		}
	}
	return len(p), nil
}

// A client that sends its whole TLS handshake and request one byte at a
// time gets through, and while its ClientHello is half sent another client
// is served on the same loop.
func TestTLSByteByByte(t *testing.T) {
	r := echoing()
	s := startTLS(t, Config{Loops: 1}, r)
	raw, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(60 * time.Second))
	sw := &slowWriter{Conn: raw}
	sw.midway = func() {
		other, _ := dialTLS(t, s, "/", nil)
		echoes(t, other, "meanwhile")
		if got := s.Stats().TLSHandshakes; got != 1 {
			t.Errorf("%d handshakes done while the slow one is half sent, want 1", got)
		}
	}
	tc := tls.Client(sw, loopbackPKI.ClientConfig())
	conn, err := wsOver(tc, "/")
	if err != nil {
		t.Fatal(err)
	}
	echoes(t, conn, "slowly")
	if got := s.Stats().TLSHandshakes; got != 2 {
		t.Fatalf("%d handshakes, want 2", got)
	}
}

// rawTLSPort connects to s and sends data as it is.
func rawTLSPort(t testing.TB, s *Server, data string) net.Conn {
	t.Helper()
	raw, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	_ = raw.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.WriteString(raw, data); err != nil {
		t.Fatal(err)
	}
	return raw
}

// What is not TLS is turned away: plain HTTP with net/http's answer, garbage
// and a broken handshake by closing; no goroutine is left behind.
func TestTLSNotTLS(t *testing.T) {
	for _, tc := range []struct {
		name, data, reply string
	}{
		{"plain HTTP", "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", httpOverTLS},
		{"plain HTTP upgrade", upgradeRequest("/", ""), httpOverTLS},
		{"garbage", "\x00\x01\x02\x03\x04\x05 not TLS", ""},
		{"SSLv2 hello", "\x80\x2e\x01\x00\x02\x00\x15", ""},
		{"not a handshake record", "\x17\x03\x03\x00\x05hello", ""},
		{"a handshake record of garbage", "\x16\x03\x01\x00\x10" + strings.Repeat("\xff", 16), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecorder()
			s := startTLS(t, Config{}, r)
			raw := rawTLSPort(t, s, tc.data)
			got, _ := io.ReadAll(raw)
			if tc.reply != "" && string(got) != tc.reply {
				t.Fatalf("reply %q, want %q", got, tc.reply)
			}
			waitFor(t, "the error counted and the handshake gone", func() bool {
				st := s.Stats()
				return st.TLSErrors == 1 && st.TLSHandshakesInFlight == 0 && st.Active == 0
			})
		})
	}
}

// HandshakeTimeout covers the TLS handshake: a client that stops in the
// middle of its ClientHello is dropped when the (injected) clock passes
// the timeout, and its handshake goroutine ends.
func TestTLSHandshakeTimeout(t *testing.T) {
	r := newRecorder()
	s := startTLS(t, Config{HandshakeTimeout: 5 * time.Second}, r)
	clock := fakeClock(s)
	raw := rawTLSPort(t, s, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
	waitFor(t, "the handshake started", func() bool { return s.Stats().TLSHandshakesInFlight == 1 })
	clock.advance(4 * time.Second)
	s.sweepAll(true)
	if st := s.Stats(); st.HandshakeTimeouts != 0 || st.Active != 1 {
		t.Fatalf("before the timeout: %d timeouts, %d active", st.HandshakeTimeouts, st.Active)
	}
	clock.advance(time.Second)
	s.sweepAll(true)
	if _, err := io.ReadAll(raw); err != nil {
		t.Fatalf("read: %v", err)
	}
	waitFor(t, "the handshake goroutine gone", func() bool {
		st := s.Stats()
		return st.HandshakeTimeouts == 1 && st.TLSHandshakesInFlight == 0 && st.Active == 0
	})
}

// Beyond MaxTLSHandshakes handshakes in flight, a new connection is closed
// before its handshake starts.
func TestTLSMaxHandshakes(t *testing.T) {
	r := echoing()
	s := startTLS(t, Config{MaxTLSHandshakes: 2}, r)
	hello := "\x16\x03\x01\x02\x00\x01"
	rawTLSPort(t, s, hello)
	rawTLSPort(t, s, hello)
	waitFor(t, "two handshakes in flight", func() bool { return s.Stats().TLSHandshakesInFlight == 2 })
	third := rawTLSPort(t, s, hello)
	if _, err := io.ReadAll(third); err != nil {
		t.Fatalf("read: %v", err)
	}
	if st := s.Stats(); st.TLSRefused != 1 {
		t.Fatalf("TLSRefused = %d, want 1", st.TLSRefused)
	}
}

// SNI: GetCertificate picks the certificate by the name the client asks
// for, at every handshake, so a certificate replaced meanwhile is the one
// the next client gets.
func TestTLSSNIAndReload(t *testing.T) {
	ca := loopbackPKI.CA
	certs := map[string]*atomic.Pointer[tls.Certificate]{}
	for _, name := range []string{"a.example", "b.example"} {
		c, err := ca.Server(name)
		if err != nil {
			t.Fatal(err)
		}
		certs[name] = new(atomic.Pointer[tls.Certificate])
		certs[name].Store(&c)
	}
	cfg := &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if p := certs[h.ServerName]; p != nil {
			return p.Load(), nil
		}
		return nil, errors.New("unknown name")
	}}
	r := echoing()
	s := startTLS(t, Config{TLS: cfg}, r)
	serial := func(name string) string {
		cc := loopbackPKI.ClientConfig()
		cc.ServerName = name
		conn, tc := dialTLS(t, s, "/", cc)
		echoes(t, conn, name)
		leaf := tc.ConnectionState().PeerCertificates[0]
		if leaf.DNSNames[0] != name {
			t.Fatalf("asked for %s, got a certificate for %v", name, leaf.DNSNames)
		}
		return leaf.SerialNumber.String()
	}
	before := serial("a.example")
	serial("b.example")
	renewed, err := ca.Server("a.example")
	if err != nil {
		t.Fatal(err)
	}
	certs["a.example"].Store(&renewed)
	if after := serial("a.example"); after == before {
		t.Fatal("the renewed certificate was not served")
	}
	if _, err := tlsDial(s, &tls.Config{RootCAs: ca.Pool, ServerName: "c.example"}); err == nil {
		t.Fatal("a name without a certificate was served")
	}
}

// A second connection resumes the first one's session (a ticket), over
// TLS 1.2 and 1.3.
func TestTLSResumption(t *testing.T) {
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		r := echoing()
		s := startTLS(t, Config{}, r)
		cfg := loopbackPKI.ClientConfig()
		cfg.MinVersion, cfg.MaxVersion = version, version
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		for i, want := range []bool{false, true} {
			conn, tc := dialTLS(t, s, "/", cfg)
			echoes(t, conn, "x") // TLS 1.3's ticket comes after the handshake
			if got := tc.ConnectionState().DidResume; got != want {
				t.Fatalf("version %#x, connection %d: DidResume = %v", version, i, got)
			}
			conn.Close()
		}
	}
}

// Many clients handshake at once, more than the loops have CPU tokens; all
// get through.
func TestTLSConcurrentHandshakes(t *testing.T) {
	r := echoing()
	s := startTLS(t, Config{Loops: 1}, r)
	const n = 32
	errs := make(chan error, n)
	for i := range n {
		go func() {
			tc, err := tlsDial(s, nil)
			if err != nil {
				errs <- err
				return
			}
			defer tc.Close()
			conn, err := wsOver(tc, "/")
			if err != nil {
				errs <- err
				return
			}
			msg := []byte(strings.Repeat("m", i))
			if err := wsutil.WriteClientText(conn, msg); err != nil {
				errs <- err
				return
			}
			got, err := wsutil.ReadServerText(conn)
			if err == nil && !bytes.Equal(got, msg) {
				err = errors.New("wrong echo")
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Stats().TLSHandshakes; got != n {
		t.Fatalf("%d handshakes, want %d", got, n)
	}
}

// The upgrade request may come in the same flight as the client's
// Finished, and frames right behind it: nothing is lost at the hand-over
// from the handshake goroutine to the loop.
func TestTLSRequestWithFinished(t *testing.T) {
	r := echoing()
	s := startTLS(t, Config{}, r)
	for range 10 {
		tc, err := tlsDial(s, nil)
		if err != nil {
			t.Fatal(err)
		}
		var req bytes.Buffer
		req.WriteString(upgradeRequest("/", ""))
		_ = ws.WriteFrame(&req, ws.MaskFrame(ws.NewTextFrame([]byte("early"))))
		if _, err := tc.Write(req.Bytes()); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(tc)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %v %v", resp, err)
		}
		f, err := ws.ReadFrame(br)
		if err != nil || string(f.Payload) != "early" {
			t.Fatalf("got %q, %v", f.Payload, err)
		}
		tc.Close()
	}
}

// Client certificates: with RequireAndVerifyClientCert the verified chain
// reaches Authorize (on the loop, or on a handshake worker) and the Conn,
// so a service can authenticate by certificate; a client without one, or
// with one from another CA, is refused.
func TestTLSClientCertificates(t *testing.T) {
	ca := loopbackPKI.CA
	alice, err := ca.Client("alice")
	if err != nil {
		t.Fatal(err)
	}
	other, err := testpki.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	mallory, err := other.Client("mallory")
	if err != nil {
		t.Fatal(err)
	}
	for _, workers := range []int{0, 2} {
		t.Run(fmt.Sprintf("HandshakeWorkers=%d", workers), func(t *testing.T) {
			cfg := loopbackPKI.ServerConfig()
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
			cfg.ClientCAs = ca.Pool
			authorize := func(r *upgrade.Request) (any, error) {
				if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
					return nil, errors.New("no verified client certificate")
				}
				chain := r.TLS.VerifiedChains[0]
				if !chain[len(chain)-1].Equal(ca.Cert) {
					return nil, errors.New("chain does not end at the CA")
				}
				return chain[0].Subject.CommonName, nil
			}
			var onOpenCN atomic.Value
			r := echoing()
			r.onOpen = func(c *Conn) {
				if certs := c.PeerCertificates(); len(certs) > 0 {
					onOpenCN.Store(certs[0].Subject.CommonName)
				}
			}
			s := startTLS(t, Config{TLS: cfg, Authorize: authorize, HandshakeWorkers: workers}, r)

			cc := loopbackPKI.ClientConfig()
			cc.Certificates = []tls.Certificate{alice}
			conn, _ := dialTLS(t, s, "/", cc)
			c := waitOpen(t, r)
			if c.Session() != "alice" || onOpenCN.Load() != "alice" {
				t.Fatalf("session %v, OnOpen saw %v; want alice", c.Session(), onOpenCN.Load())
			}
			if cs := c.TLS(); len(cs.VerifiedChains) != 1 {
				t.Fatalf("Conn.TLS has %d verified chains", len(cs.VerifiedChains))
			}
			echoes(t, conn, "hello alice")

			for name, certs := range map[string][]tls.Certificate{"no certificate": nil, "another CA": {mallory}} {
				cc := loopbackPKI.ClientConfig()
				cc.Certificates = certs
				// TLS 1.3 clients learn of the refusal at their first read.
				tc, err := tlsDial(s, cc)
				if err == nil {
					_, err = wsOver(tc, "/")
				}
				if err == nil {
					t.Fatalf("%s: upgraded", name)
				}
			}
			waitFor(t, "the refusals counted", func() bool { return s.Stats().TLSErrors == 2 })
			if st := s.Stats(); st.Upgraded != 1 {
				t.Fatalf("%d upgrades, want 1", st.Upgraded)
			}
		})
	}
}

// An idle TLS connection keeps no read buffer: what the handshake left is
// dropped after the first read, a large record's buffer after it was read,
// and a small record's buffer is small. If a Go release renames
// crypto/tls's buffers, this fails: trimming has turned itself off. TLS
// 1.2 keeps crypto/tls's record layer (TLS 1.3 with AES-GCM drops the
// tls.Conn: tls_record.go).
func TestTLSTrimActive(t *testing.T) {
	if !tlsBufs.ok {
		t.Fatal("crypto/tls's read buffers were not found: idle TLS connections keep theirs (see tls_trim.go)")
	}
	r := echoing()
	s := startTLS(t, Config{Loops: 1}, r)
	cfg := loopbackPKI.ClientConfig()
	cfg.MaxVersion = tls.VersionTLS12
	conn, _ := dialTLS(t, s, "/", cfg)
	c := waitOpen(t, r)
	readCap := func() int {
		got := make(chan int)
		_ = c.loop.Post(func() { got <- tlsReadCap(c.loop.tlsConns[c].conn) })
		return <-got
	}
	for _, n := range []int{10, 100000, 10} {
		echoes(t, conn, strings.Repeat("z", n))
		if got := readCap(); got > maxIdleTLSRead {
			t.Fatalf("after a %d-byte message the read buffers keep %d bytes, want at most %d", n, got, maxIdleTLSRead)
		}
	}
}

// Shutdown ends the handshakes in flight: their goroutines see the end of
// the input and return.
func TestTLSShutdownDuringHandshake(t *testing.T) {
	r := newRecorder()
	s := startTLS(t, Config{}, r)
	for range 3 {
		rawTLSPort(t, s, "\x16\x03\x01\x02\x00\x01\x00")
	}
	waitFor(t, "three handshakes in flight", func() bool { return s.Stats().TLSHandshakesInFlight == 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // a hang guard
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	waitFor(t, "the handshake goroutines gone", func() bool { return s.Stats().TLSHandshakesInFlight == 0 })
}

// With handlers on workers, the 101 and what OnOpen sends behind it, and
// the echoes, are encrypted on the loop as ever.
func TestTLSWorkers(t *testing.T) {
	r := echoing()
	r.onOpen = func(c *Conn) { _ = c.SendText("welcome") }
	s := startTLS(t, Config{Workers: 2}, r)
	conn, _ := dialTLS(t, s, "/", nil)
	if f := readFrame(t, conn); string(f.Payload) != "welcome" {
		t.Fatalf("first frame %q, want the welcome", f.Payload)
	}
	for _, n := range []int{1, 20000} {
		echoes(t, conn, strings.Repeat("w", n))
	}
}
