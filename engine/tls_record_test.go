package engine

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// recView is what a test sees of a connection's record layer.
type recView struct {
	own, conn        bool // herald's record layer; crypto/tls's tls.Conn kept
	readAEAD, wrAEAD bool
	rdSecret, wrSec  [48]byte
	partial          bool
}

func viewRec(t testing.TB, c *Conn) recView {
	t.Helper()
	got := make(chan recView, 1)
	if err := c.loop.Post(func() {
		var v recView
		if tc := c.loop.tlsConns[c]; tc != nil {
			v.conn = tc.conn != nil
			if r := tc.rec; r != nil {
				v.own = true
				v.readAEAD, v.wrAEAD = r.rd.aead != nil, r.wr.aead != nil
				v.rdSecret, v.wrSec = r.rd.secret, r.wr.secret
				v.partial = r.partial != nil
			}
		}
		got <- v
	}); err != nil {
		t.Fatal(err)
	}
	return <-got
}

// If a Go release moves the fields herald reads to take the record layer
// over, this fails: every connection then keeps crypto/tls's.
func TestTLSRecordFieldsFound(t *testing.T) {
	if !tlsHalves.ok {
		t.Fatal("crypto/tls's halfConn fields were not found: TLS 1.3 connections keep crypto/tls's record layer (see tls_record.go)")
	}
}

// After a TLS 1.3 handshake with AES-GCM herald's record layer carries the
// connection and the tls.Conn is gone; messages of every size cross it,
// including records of exactly 16 KiB and messages of many records. TLS
// 1.2 keeps crypto/tls's record layer and works the same.
func TestTLSRecordTakeOver(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version uint16
		own     bool
	}{
		{"TLS1.3", tls.VersionTLS13, true},
		{"TLS1.2", tls.VersionTLS12, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := echoing()
			s := startTLS(t, Config{Loops: 1}, r)
			cfg := loopbackPKI.ClientConfig()
			cfg.MaxVersion = tc.version
			conn, _ := dialTLS(t, s, "/", cfg)
			c := waitOpen(t, r)
			if v := viewRec(t, c); v.own != tc.own || v.conn == tc.own {
				t.Fatalf("own record layer %v, tls.Conn kept %v; want %v, %v", v.own, v.conn, tc.own, !tc.own)
			}
			if cs := c.TLS(); cs == nil || cs.Version != tc.version || cs.ServerName != "localhost" || !cs.HandshakeComplete {
				t.Fatalf("Conn.TLS = %+v", cs)
			}
			for _, n := range []int{0, 1, tlsMaxPlain - 2, tlsMaxPlain - 4, tlsMaxPlain, 3*tlsMaxPlain + 7, 1 << 20} {
				echoes(t, conn, strings.Repeat("y", n))
			}
			if err := c.Send(TextMessage, []byte("pushed")); err != nil {
				t.Fatal(err)
			}
			if f := readFrame(t, conn); string(f.Payload) != "pushed" {
				t.Fatalf("got %q", f.Payload)
			}
			if st := s.Stats(); st.TLSErrors != 0 {
				t.Fatalf("%d TLS errors", st.TLSErrors)
			}
		})
	}
}

// holdConn passes a TLS client's writes to the socket, or keeps them while
// hold is set, so that a test can send the records as it likes.
type holdConn struct {
	net.Conn
	mu   sync.Mutex
	hold bool
	kept bytes.Buffer
}

func (h *holdConn) Write(b []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hold {
		return h.kept.Write(b)
	}
	return h.Conn.Write(b)
}

// take returns the records kept and stops keeping.
func (h *holdConn) take() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hold = false
	b := bytes.Clone(h.kept.Bytes())
	h.kept.Reset()
	return b
}

// dialHeld makes a TLS 1.3 WebSocket connection to s whose client records
// can be held back.
func dialHeld(t *testing.T, s *Server) (net.Conn, *tls.Conn, *holdConn) {
	t.Helper()
	raw, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	_ = raw.SetDeadline(time.Now().Add(60 * time.Second)) // a hang guard
	h := &holdConn{Conn: raw}
	tc := tls.Client(h, loopbackPKI.ClientConfig())
	conn, err := wsOver(tc, "/")
	if err != nil {
		t.Fatal(err)
	}
	return conn, tc, h
}

// Records arriving a byte at a time, and several records in one read,
// are read whole: the partial record waits in a pooled buffer, which goes
// back once the record is complete.
func TestTLSRecordSplits(t *testing.T) {
	r := echoing()
	s := startTLS(t, Config{Loops: 1}, r)
	conn, tc, h := dialHeld(t, s)
	c := waitOpen(t, r)
	msgs := []string{"one", strings.Repeat("two", 20000), "", "three"}
	h.hold = true
	for _, m := range msgs {
		if err := wsutil.WriteClientText(tc, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	records := h.take()
	for i := range records {
		if _, err := h.Conn.Write(records[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range msgs {
		if f := readFrame(t, conn); string(f.Payload) != m {
			t.Fatalf("got %d bytes, want the echo of %d", len(f.Payload), len(m))
		}
	}
	if v := viewRec(t, c); !v.own || v.partial {
		t.Fatalf("own record layer %v, partial record kept %v; want true, false", v.own, v.partial)
	}
}

// A record that fails to decrypt ends the connection with bad_record_mac;
// so does a record from the wrong place in the sequence (a replay).
func TestTLSRecordBadMAC(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"corrupted", func(b []byte) []byte { b[len(b)-3] ^= 0x40; return b }},
		{"replayed", func(b []byte) []byte { return append(b, b...) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := echoing()
			s := startTLS(t, Config{Loops: 1}, r)
			conn, tconn, h := dialHeld(t, s)
			waitOpen(t, r)
			h.hold = true
			if err := wsutil.WriteClientText(tconn, []byte("hello")); err != nil {
				t.Fatal(err)
			}
			if _, err := h.Conn.Write(tc.damage(h.take())); err != nil {
				t.Fatal(err)
			}
			if tc.name == "replayed" {
				if f := readFrame(t, conn); string(f.Payload) != "hello" {
					t.Fatalf("got %q before the replay's alert", f.Payload)
				}
			}
			_, _, err := wsutil.ReadServerData(conn)
			if err == nil || !strings.Contains(err.Error(), "bad record MAC") {
				t.Fatalf("read: %v, want the bad_record_mac alert", err)
			}
			waitClose(t, r)
			if st := s.Stats(); st.TLSErrors != 1 {
				t.Fatalf("%d TLS errors, want 1", st.TLSErrors)
			}
		})
	}
}

// A connection drops its AEADs as its upgrade ends, and a direction idle
// for tlsIdleCipher drops its AEAD at the sweep; the next record in either
// direction builds it again, with the same keys.
func TestTLSRecordHibernate(t *testing.T) {
	r := echoing()
	s := startTLS(t, Config{Loops: 1, PingInterval: -1}, r)
	clock := fakeClock(s)
	conn, _ := dialTLS(t, s, "/", nil)
	c := waitOpen(t, r)
	if v := viewRec(t, c); !v.own || v.readAEAD || v.wrAEAD {
		t.Fatalf("after the upgrade: %+v, want no AEAD", v)
	}
	echoes(t, conn, "awake")
	if v := viewRec(t, c); !v.own || !v.readAEAD || !v.wrAEAD {
		t.Fatalf("after traffic: %+v, want both AEADs", v)
	}
	clock.advance(tlsIdleCipher - time.Millisecond)
	s.sweepAll(true)
	if v := viewRec(t, c); !v.readAEAD || !v.wrAEAD {
		t.Fatal("an AEAD was dropped before its direction was idle for tlsIdleCipher")
	}
	clock.advance(time.Millisecond)
	s.sweepAll(true)
	if v := viewRec(t, c); v.readAEAD || v.wrAEAD {
		t.Fatalf("after %v idle: read AEAD %v, write AEAD %v; want both dropped", tlsIdleCipher, v.readAEAD, v.wrAEAD)
	}
	// Write only: the server pushes; then read only.
	if err := c.Send(TextMessage, []byte("pushed")); err != nil {
		t.Fatal(err)
	}
	if f := readFrame(t, conn); string(f.Payload) != "pushed" {
		t.Fatalf("got %q", f.Payload)
	}
	if v := viewRec(t, c); v.readAEAD || !v.wrAEAD {
		t.Fatalf("after a push: read AEAD %v, write AEAD %v; want false, true", v.readAEAD, v.wrAEAD)
	}
	clock.advance(tlsIdleCipher)
	s.sweepAll(true)
	echoes(t, conn, "again")
	echoes(t, conn, strings.Repeat("big", 30000))
	if v := viewRec(t, c); !v.readAEAD || !v.wrAEAD {
		t.Fatalf("after traffic again: %+v, want both AEADs", v)
	}
}

// Sealing and opening a record on a warm connection allocates nothing.
func TestTLSRecordNoAllocs(t *testing.T) {
	for _, keyLen := range []int{16, 32} {
		secret := bytes.Repeat([]byte{7}, 48)
		a := &tlsRec{sha384: keyLen == 32, keyLen: uint8(keyLen)}
		b := &tlsRec{sha384: keyLen == 32, keyLen: uint8(keyLen)}
		a.setSecret(&a.wr, secret[:a.hashLen()])
		b.setSecret(&b.rd, secret[:b.hashLen()])
		l := &loop{}
		out := make([]byte, 0, 4096)
		msg := bytes.Repeat([]byte("m"), 1000)
		round := func() {
			rec := l.seal(a, &a.wr, out[:0], recAppData, msg)
			p, typ, _, ok := l.open(b, rec)
			if !ok || typ != recAppData || !bytes.Equal(p, msg) {
				t.Fatalf("round trip: ok %v, type %d, %d bytes", ok, typ, len(p))
			}
		}
		round()
		if n := testing.AllocsPerRun(100, round); n != 0 {
			t.Fatalf("AES-%d: %v allocations per record sealed and opened, want 0", keyLen*8, n)
		}
		// A key update on both sides keeps them in step.
		a.update(&a.wr)
		b.update(&b.rd)
		round()
	}
}

// openSSLClient runs `openssl s_client` against s, its stdin kept open
// (commands such as K, a KeyUpdate, are read from it), its output
// collected.
type openSSLClient struct {
	in  io.WriteCloser
	mu  sync.Mutex
	out bytes.Buffer
}

func (o *openSSLClient) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.out.Write(b)
}

func (o *openSSLClient) has(s string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return bytes.Contains(o.out.Bytes(), []byte(s))
}

func startOpenSSL(t *testing.T, s *Server, suite string) *openSSLClient {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed: the KeyUpdate and ChaCha20 interop tests need its s_client")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // a hang guard
	cmd := exec.CommandContext(ctx, bin, "s_client", "-connect", s.Addr().String(), "-tls1_3",
		"-ciphersuites", suite, "-servername", "localhost", "-alpn", "http/1.1")
	o := &openSSLClient{}
	cmd.Stdout, cmd.Stderr = o, o
	if o.in, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		o.in.Close()
		cancel()
		_ = cmd.Wait()
	})
	return o
}

// send writes b to the client's stdin as one piece: s_client reads a
// command only at the start of a read.
func (o *openSSLClient) send(t *testing.T, b []byte) {
	t.Helper()
	if _, err := o.in.Write(b); err != nil {
		t.Fatal(err)
	}
}

func maskedText(msg string) []byte {
	var b bytes.Buffer
	f := ws.NewTextFrame([]byte(msg))
	f = ws.MaskFrameInPlace(f)
	_ = ws.WriteFrame(&b, f)
	return b.Bytes()
}

// OpenSSL's client, with AES-256-GCM (SHA-384) and ChaCha20-Poly1305:
// echo, then a KeyUpdate that asks for ours (s_client's K command): both
// directions move to their next keys and the echo goes on. ChaCha20 keeps
// crypto/tls's record layer.
func TestTLSRecordOpenSSL(t *testing.T) {
	for _, tc := range []struct {
		suite string
		own   bool
	}{
		{"TLS_AES_256_GCM_SHA384", true},
		{"TLS_AES_128_GCM_SHA256", true},
		{"TLS_CHACHA20_POLY1305_SHA256", false},
	} {
		t.Run(tc.suite, func(t *testing.T) {
			r := echoing()
			s := startTLS(t, Config{Loops: 1}, r)
			o := startOpenSSL(t, s, tc.suite)
			o.send(t, []byte(upgradeRequest("/", "")))
			c := waitOpen(t, r)
			waitFor(t, "the 101", func() bool { return o.has("101 Switching Protocols") })
			if cs := c.TLS(); cs == nil || tls.CipherSuiteName(cs.CipherSuite) != tc.suite {
				t.Fatalf("Conn.TLS = %+v, want suite %s", cs, tc.suite)
			}
			before := viewRec(t, c)
			if before.own != tc.own {
				t.Fatalf("own record layer %v, want %v", before.own, tc.own)
			}
			o.send(t, maskedText("before-update"))
			waitFor(t, "the first echo", func() bool { return o.has("before-update") })
			o.send(t, []byte("K\n"))
			waitFor(t, "s_client to send the KeyUpdate", func() bool { return o.has("KEYUPDATE") })
			if tc.own {
				waitFor(t, "the KeyUpdate", func() bool {
					v := viewRec(t, c)
					return v.rdSecret != before.rdSecret && v.wrSec != before.wrSec
				})
			}
			o.send(t, maskedText("after-update"))
			waitFor(t, "the echo under the new keys", func() bool { return o.has("after-update") })
			if st := s.Stats(); st.TLSErrors != 0 {
				t.Fatalf("%d TLS errors", st.TLSErrors)
			}
		})
	}
}

// The end of a burst of TLS handshakes gives crypto/tls's garbage back to
// the OS on its own (Stats.MemoryReturns), with nothing closed.
func TestTLSBurstReturnsMemory(t *testing.T) {
	r := echoing()
	s := startTLS(t, Config{ReturnMemoryAfter: 1 << 20}, r)
	n := int(1<<20/tlsGarbage) + 1
	for range n {
		dialTLS(t, s, "/", nil)
		waitOpen(t, r)
	}
	waitFor(t, "a memory return", func() bool { return s.Stats().MemoryReturns > 0 })
	if st := s.Stats(); st.Open != int64(n) {
		t.Fatalf("%d open, want %d", st.Open, n)
	}
}

// readRecorder keeps what a connection reads.
type readRecorder struct {
	net.Conn
	mu  sync.Mutex
	got []byte
}

func (r *readRecorder) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	r.mu.Lock()
	r.got = append(r.got, b[:n]...)
	r.mu.Unlock()
	return n, err
}

// After the close handshake herald's record layer ends the TLS stream
// with close_notify: the client reads a clean end, and the last record
// on the wire is the 19-byte ciphertext of a 2-byte alert.
func TestTLSRecordCloseNotify(t *testing.T) {
	r := echoing()
	s := startTLS(t, Config{Loops: 1}, r)
	raw, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(60 * time.Second)) // a hang guard
	rec := &readRecorder{Conn: raw}
	tc := tls.Client(rec, loopbackPKI.ClientConfig())
	conn, err := wsOver(tc, "/")
	if err != nil {
		t.Fatal(err)
	}
	waitOpen(t, r)
	echoes(t, conn, "bye soon")
	if err := wsutil.WriteClientMessage(conn, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "")); err != nil {
		t.Fatal(err)
	}
	if code := expectClose(t, conn); code != ws.StatusNormalClosure {
		t.Fatalf("close code %d", code)
	}
	if _, err := tc.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after the close: %v, want io.EOF", err)
	}
	rec.mu.Lock()
	got := rec.got
	rec.mu.Unlock()
	const alertRecord = tlsRecordHeader + 2 + 1 + tlsTagLen
	if len(got) < alertRecord || !bytes.Equal(got[len(got)-alertRecord:][:tlsRecordHeader], []byte{23, 3, 3, 0, alertRecord - tlsRecordHeader}) {
		t.Fatalf("the stream does not end with an alert record: % x", got[max(0, len(got)-alertRecord):])
	}
	if st := s.Stats(); st.TLSErrors != 0 {
		t.Fatalf("%d TLS errors", st.TLSErrors)
	}
}
