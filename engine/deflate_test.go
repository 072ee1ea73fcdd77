package engine

import (
	"bufio"
	"bytes"
	stdflate "compress/flate"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// A permessage-deflate client for the engine's tests, on compress/flate
// (not the implementation under test).

// deflateClient is a raw client connection that may have negotiated
// permessage-deflate.
type deflateClient struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
	ext  string // the server's Sec-WebSocket-Extensions answer
}

// dialDeflate upgrades a connection offering the given extensions line
// ("" for none) and returns it with the server's answer.
func dialDeflate(t testing.TB, s *Server, offer string) *deflateClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second)) // a hang guard
	req := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	if offer != "" {
		req += "Sec-WebSocket-Extensions: " + offer + "\r\n"
	}
	if _, err := conn.Write([]byte(req + "\r\n")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	return &deflateClient{t: t, conn: conn, r: r, ext: resp.Header.Get("Sec-WebSocket-Extensions")}
}

// deflate compresses p as a client of no context takeover does: on its
// own, flushed, without the trailing 00 00 ff ff.
func deflate(p []byte) []byte {
	var b bytes.Buffer
	w, _ := stdflate.NewWriter(&b, stdflate.BestCompression)
	_, _ = w.Write(p)
	_ = w.Flush()
	return bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})
}

func inflate(p []byte) ([]byte, error) {
	tail := []byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff}
	return io.ReadAll(stdflate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader(tail))))
}

// send writes one masked frame; rsv1 marks it compressed.
func (c *deflateClient) send(op ws.OpCode, fin, rsv1 bool, payload []byte) {
	c.t.Helper()
	f := ws.NewFrame(op, fin, append([]byte(nil), payload...))
	f.Header.Rsv = ws.Rsv(rsv1, false, false)
	var b bytes.Buffer
	_ = ws.WriteFrame(&b, ws.MaskFrameInPlace(f))
	if _, err := c.conn.Write(b.Bytes()); err != nil {
		c.t.Fatal(err)
	}
}

// sendCompressed sends p compressed, in one frame.
func (c *deflateClient) sendCompressed(op ws.OpCode, p []byte) {
	c.t.Helper()
	c.send(op, true, true, deflate(p))
}

// next reads one server frame: its header and its payload, inflated if
// RSV1 is set (which the server may only do with the extension).
func (c *deflateClient) next() (ws.Header, []byte) {
	c.t.Helper()
	h, err := ws.ReadHeader(c.r)
	if err != nil {
		c.t.Fatalf("read header: %v", err)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(c.r, p); err != nil {
		c.t.Fatalf("read payload: %v", err)
	}
	if h.Masked || h.Rsv&^ws.Rsv(true, false, false) != 0 {
		c.t.Fatalf("bad server frame header %+v", h)
	}
	if h.Rsv != 0 {
		if c.ext == "" {
			c.t.Fatal("RSV1 without permessage-deflate")
		}
		if !h.Fin || h.OpCode.IsControl() {
			c.t.Fatalf("RSV1 on %+v", h)
		}
		if p, err = inflate(p); err != nil {
			c.t.Fatalf("inflate the server's frame: %v", err)
		}
	}
	return h, p
}

// expectClose reads until a close frame and returns its code and reason.
func (c *deflateClient) expectClose() (ws.StatusCode, string) {
	c.t.Helper()
	for {
		h, p := c.next()
		if h.OpCode == ws.OpClose {
			code, reason := ws.ParseCloseFrameData(p)
			return code, reason
		}
	}
}

const browserOffer = "permessage-deflate; client_max_window_bits"

// compressible returns n bytes of JSON-like text.
func compressible(n int) []byte {
	return []byte(strings.Repeat(`{"sym":"S1","px":101.25},`, n/25+1)[:n])
}

// TestDeflateEcho: with the extension negotiated, what a client sends
// compressed (or not) reaches OnMessage inflated, and what Send sends is
// compressed from MinSize up, on the loop and from other goroutines.
func TestDeflateEcho(t *testing.T) {
	for _, workers := range []int{0, 2} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			r := newRecorder()
			r.onMsg = func(c *Conn, typ MessageType, data []byte) {
				if !c.Compression() {
					t.Error("Compression() is false on a connection that negotiated it")
				}
				_ = c.Send(typ, data)
			}
			s := startServer(t, Config{Workers: workers, Compression: Compression{Enabled: true, MinSize: 128}, MaxMessageBytes: 4 << 20}, r)
			c := dialDeflate(t, s, browserOffer)
			if c.ext != "permessage-deflate; server_no_context_takeover; client_no_context_takeover" {
				t.Fatalf("answer %q", c.ext)
			}
			waitOpen(t, r)
			for _, tc := range []struct {
				n          int
				compressed bool // the client sends it compressed
			}{
				{0, true}, {0, false}, {10, true}, {127, true}, {128, true}, {128, false},
				{1000, true}, {70000, true}, {70000, false}, {2 << 20, true},
			} {
				for _, op := range []ws.OpCode{ws.OpText, ws.OpBinary} {
					p := compressible(tc.n)
					if tc.compressed {
						c.sendCompressed(op, p)
					} else {
						c.send(op, true, false, p)
					}
					h, got := c.next()
					if h.OpCode != op || !bytes.Equal(got, p) {
						t.Fatalf("%d bytes (compressed %v): echo %v of %d bytes", tc.n, tc.compressed, h.OpCode, len(got))
					}
					// From MinSize up, and when it shrinks, the echo is compressed.
					if want := tc.n >= 128; (h.Rsv != 0) != want {
						t.Fatalf("%d bytes: echo compressed %v, want %v", tc.n, h.Rsv != 0, want)
					}
				}
			}
			st := s.Stats()
			if st.DeflateNegotiated != 1 || st.CompressedIn != 14 || st.CompressedOut != 12 {
				t.Fatalf("stats: negotiated %d, in %d, out %d; want 1, 14, 12", st.DeflateNegotiated, st.CompressedIn, st.CompressedOut)
			}
		})
	}
}

// TestDeflateNarrowWindow: a client that limits the server's window
// (server_max_window_bits below 15) is answered with its window, and what
// Send sends it, on the loop and from other goroutines, is compressed with
// Huffman codes only: never under a bit per byte, which these messages
// would be with back references.
func TestDeflateNarrowWindow(t *testing.T) {
	for _, workers := range []int{0, 2} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			r := newRecorder()
			r.onMsg = func(c *Conn, typ MessageType, data []byte) { _ = c.Send(typ, data) }
			s := startServer(t, Config{Workers: workers, Compression: Compression{Enabled: true}}, r)
			c := dialDeflate(t, s, "permessage-deflate; server_max_window_bits=9; client_max_window_bits")
			if c.ext != "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9" {
				t.Fatalf("answer %q", c.ext)
			}
			if conn := waitOpen(t, r); !conn.Compression() {
				t.Fatal("Compression() is false")
			}
			for _, n := range []int{1000, 60000} {
				p := compressible(n)
				c.sendCompressed(ws.OpText, p)
				h, got := c.next()
				if !bytes.Equal(got, p) || h.Rsv == 0 {
					t.Fatalf("%d bytes: echo of %d bytes, compressed %v", n, len(got), h.Rsv != 0)
				}
				if h.Length < int64(n/8) || h.Length >= int64(n) {
					t.Fatalf("%d bytes compressed to %d: not Huffman codes alone", n, h.Length)
				}
			}
		})
	}
}

// TestDeflateFragmented: a compressed message in fragments, with pings
// between them, is inflated once complete; the pings are answered as they
// come.
func TestDeflateFragmented(t *testing.T) {
	r := newRecorder()
	r.onMsg = func(c *Conn, typ MessageType, data []byte) { _ = c.Send(typ, data) }
	s := startServer(t, Config{Compression: Compression{Enabled: true}}, r)
	c := dialDeflate(t, s, "permessage-deflate")
	waitOpen(t, r)
	p := compressible(5000)
	z := deflate(p)
	c.send(ws.OpText, false, true, z[:10])
	c.send(ws.OpPing, true, false, []byte("ping"))
	c.send(ws.OpContinuation, false, false, z[10:20])
	c.send(ws.OpContinuation, true, false, z[20:])
	if h, got := c.next(); h.OpCode != ws.OpPong || string(got) != "ping" {
		t.Fatalf("got %v %q, want the pong", h.OpCode, got)
	}
	if h, got := c.next(); h.OpCode != ws.OpText || !bytes.Equal(got, p) || h.Rsv == 0 {
		t.Fatalf("got %v (rsv %d) of %d bytes, want the compressed echo", h.OpCode, h.Rsv, len(got))
	}
}

// TestDeflateProtocolErrors: each way a client can break RFC 7692 gets its
// close code.
func TestDeflateProtocolErrors(t *testing.T) {
	z := deflate(compressible(300))
	for _, tc := range []struct {
		name   string
		offer  string
		send   func(c *deflateClient)
		code   ws.StatusCode
		reason string
	}{
		{"rsv1 without the extension", "", func(c *deflateClient) { c.send(ws.OpText, true, true, z) }, 1002, "reserved bits set"},
		{"rsv1 on a continuation", browserOffer, func(c *deflateClient) {
			c.send(ws.OpText, false, true, z[:5])
			c.send(ws.OpContinuation, true, true, z[5:])
		}, 1002, "rsv1 on a continuation or control frame"},
		{"rsv1 on a ping", browserOffer, func(c *deflateClient) { c.send(ws.OpPing, true, true, nil) }, 1002, "rsv1 on a continuation or control frame"},
		{"invalid deflate data", browserOffer, func(c *deflateClient) { c.send(ws.OpBinary, true, true, []byte{0xff, 0xff, 0xff}) }, 1007, "invalid deflate data"},
		{"truncated deflate data", browserOffer, func(c *deflateClient) { c.send(ws.OpBinary, true, true, z[:len(z)/2]) }, 1007, "invalid deflate data"},
		{"invalid utf-8 inflated", browserOffer, func(c *deflateClient) { c.sendCompressed(ws.OpText, []byte("bad \xff utf-8")) }, 1007, "invalid utf-8 in text message"},
		{"inflated past the limit", browserOffer, func(c *deflateClient) { c.sendCompressed(ws.OpBinary, make([]byte, 64<<10+1)) }, 1009, "inflated message too big"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecorder()
			s := startServer(t, Config{Compression: Compression{Enabled: true}, MaxMessageBytes: 64 << 10}, r)
			c := dialDeflate(t, s, tc.offer)
			waitOpen(t, r)
			tc.send(c)
			if code, reason := c.expectClose(); code != tc.code || reason != tc.reason {
				t.Fatalf("close %d %q, want %d %q", code, reason, tc.code, tc.reason)
			}
		})
	}
}

// TestDeflateOff: without Config.Compression every offer is declined and
// RSV1 is a reserved bit.
func TestDeflateOff(t *testing.T) {
	r := newRecorder()
	s := startServer(t, Config{}, r)
	c := dialDeflate(t, s, browserOffer)
	if c.ext != "" {
		t.Fatalf("answer %q to an offer with compression off", c.ext)
	}
	if conn := waitOpen(t, r); conn.Compression() {
		t.Fatal("Compression() with compression off")
	}
	c.sendCompressed(ws.OpText, []byte("hello"))
	if code, _ := c.expectClose(); code != 1002 {
		t.Fatalf("close %d, want 1002", code)
	}
}

// TestLoopDecoderTakesEachConnectionsExtension: one loop decodes the reads
// of connections with and without permessage-deflate with one decoder (and
// lends a decoder of its own to one in the middle of a message); each read
// must be decoded with its own connection's extension.
func TestLoopDecoderTakesEachConnectionsExtension(t *testing.T) {
	r := newRecorder()
	r.onMsg = func(c *Conn, typ MessageType, data []byte) { _ = c.Send(typ, data) }
	s := startServer(t, Config{Loops: 1, Compression: Compression{Enabled: true, MinSize: 1}}, r)
	a := dialDeflate(t, s, browserOffer)
	waitOpen(t, r)
	b := dialDeflate(t, s, "")
	waitOpen(t, r)
	p := compressible(400)

	a.sendCompressed(ws.OpText, p) // decoded by the loop's decoder, deflate on
	if _, got := a.next(); !bytes.Equal(got, p) {
		t.Fatal("a: bad echo")
	}
	b.send(ws.OpText, true, false, p) // the loop's decoder, deflate off
	if h, got := b.next(); !bytes.Equal(got, p) || h.Rsv != 0 {
		t.Fatal("b: bad echo")
	}
	// a stops in the middle of a compressed message: it keeps a decoder.
	z := deflate(p)
	a.send(ws.OpText, false, true, z[:7])
	a.send(ws.OpPing, true, false, nil)
	if h, _ := a.next(); h.OpCode != ws.OpPong {
		t.Fatal("a: no pong")
	}
	// b's compressed frame must be refused although the previous read on
	// the loop was a's, in a compressed message.
	b.sendCompressed(ws.OpText, p)
	if code, _ := b.expectClose(); code != 1002 {
		t.Fatalf("b: close %d, want 1002", code)
	}
	a.send(ws.OpContinuation, true, false, z[7:])
	if _, got := a.next(); !bytes.Equal(got, p) {
		t.Fatal("a: bad echo after b's close")
	}
	// A new connection without the extension gets the loop's decoder at
	// rest after a's compressed message: RSV1 is refused there too.
	c := dialDeflate(t, s, "")
	waitOpen(t, r)
	a.sendCompressed(ws.OpBinary, p)
	if _, got := a.next(); !bytes.Equal(got, p) {
		t.Fatal("a: bad echo")
	}
	c.sendCompressed(ws.OpBinary, p)
	if code, _ := c.expectClose(); code != 1002 {
		t.Fatalf("c: close %d, want 1002", code)
	}
}

// TestDeflateBombIsCheap: a message of about half a megabyte that inflates
// to half a gigabyte is closed with 1009, and the server allocates about
// its 1 MiB limit on the way, not the half gigabyte.
func TestDeflateBombIsCheap(t *testing.T) {
	r := newRecorder()
	s := startServer(t, Config{Compression: Compression{Enabled: true}}, r)
	c := dialDeflate(t, s, browserOffer)
	waitOpen(t, r)
	seg := append(deflate(make([]byte, 1<<20)), 0, 0, 0xff, 0xff)
	bomb := bytes.Repeat(seg, 512)
	bomb = bomb[:len(bomb)-4]
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	c.send(ws.OpBinary, true, true, bomb)
	code, reason := c.expectClose()
	runtime.ReadMemStats(&after)
	if code != 1009 || reason != "inflated message too big" {
		t.Fatalf("close %d %q, want 1009", code, reason)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d KiB that inflate to 512 MiB: closed with %d after %d KiB allocated", len(bomb)>>10, code, alloc>>10)
	// The client's frame, the server's copy of it, the output up to the
	// limit and its growth: a few times the limit, never the bomb.
	if alloc > 16<<20 {
		t.Fatalf("allocated %d bytes for a bomb against a 1 MiB limit", alloc)
	}
}
