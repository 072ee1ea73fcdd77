package interop

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func gorillaDial(t *testing.T, s *echoServer, d *websocket.Dialer) *websocket.Conn {
	t.Helper()
	if d == nil {
		d = &websocket.Dialer{HandshakeTimeout: hangGuard}
	}
	c, resp, err := d.Dial(s.URL, nil)
	if err != nil {
		if resp != nil {
			t.Fatalf("dial %s: %v (HTTP %s)", s.URL, err, resp.Status)
		}
		t.Fatalf("dial %s: %v", s.URL, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func gorillaEcho(t *testing.T, c *websocket.Conn, text bool, n int, seed uint64) {
	t.Helper()
	gorillaEchoBytes(t, c, text, payload(text, n, seed))
}

func gorillaEchoBytes(t *testing.T, c *websocket.Conn, text bool, want []byte) {
	t.Helper()
	n := len(want)
	typ := websocket.BinaryMessage
	if text {
		typ = websocket.TextMessage
	}
	_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if err := c.WriteMessage(typ, want); err != nil {
		t.Fatalf("write %d bytes: %v", n, err)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	gotType, got, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read echo of %d bytes: %v", n, err)
	}
	if gotType != typ {
		t.Fatalf("echo of %d bytes: message type %d, want %d", n, gotType, typ)
	}
	sameBytes(t, fmt.Sprintf("echo of %d bytes", n), got, want)
}

// gorilla's client splits each message into frames of its write buffer size
// (4 KiB by default), so large messages arrive as thousands of continuation
// frames.
func TestGorillaEcho(t *testing.T) {
	eachPath(t, func(t *testing.T, path ...string) {
		s := startEcho(t, path...)
		c := gorillaDial(t, s, nil)
		for _, text := range []bool{true, false} {
			for _, n := range echoSizes {
				t.Run(fmt.Sprintf("%s/%d", kind(text), n), func(t *testing.T) {
					gorillaEcho(t, c, text, n, 1)
				})
			}
		}
	})
}

// With a write buffer larger than the message, every message is one frame.
func TestGorillaEchoSingleFrame(t *testing.T) {
	eachPath(t, func(t *testing.T, path ...string) {
		s := startEcho(t, path...)
		c := gorillaDial(t, s, &websocket.Dialer{HandshakeTimeout: hangGuard, WriteBufferSize: 1 << 20, ReadBufferSize: 1 << 16})
		for _, text := range []bool{true, false} {
			for _, n := range []int{0, 126, 65536, 1<<20 - 64} {
				t.Run(fmt.Sprintf("%s/%d", kind(text), n), func(t *testing.T) {
					gorillaEcho(t, c, text, n, 2)
				})
			}
		}
	})
}

// Negotiates permessage-deflate (without context takeover, the only mode
// gorilla has) and exchanges compressed messages both ways: gorilla
// compresses every message it writes, the echo those of 512 bytes and more
// that get smaller.
func TestGorillaEchoDeflate(t *testing.T) {
	eachPath(t, func(t *testing.T, path ...string) {
		s := startEcho(t, append(path, "-v")...)
		d := &websocket.Dialer{HandshakeTimeout: hangGuard, EnableCompression: true}
		c, resp, err := d.Dial(s.URL, nil)
		if err != nil {
			t.Fatalf("dial with permessage-deflate offered: %v", err)
		}
		defer c.Close()
		c.SetReadLimit(64 << 20)
		s.checkDeflate(t, resp.Header.Get("Sec-WebSocket-Extensions"))
		c.EnableWriteCompression(true)
		for _, text := range []bool{true, false} {
			for _, n := range []int{0, 125, 126, 65536, 1 << 20} {
				t.Run(fmt.Sprintf("%s/%d", kind(text), n), func(t *testing.T) {
					gorillaEcho(t, c, text, n, 3)
				})
			}
			for _, n := range []int{100, 600, 65536, 4 << 20} {
				t.Run(fmt.Sprintf("%s/%d-compressible", kind(text), n), func(t *testing.T) {
					gorillaEchoBytes(t, c, text, compressible(n))
				})
			}
		}
	})
}

// Many messages written back to back while a reader checks each echo in
// order.
func TestGorillaInFlight(t *testing.T) {
	eachPath(t, func(t *testing.T, path ...string) {
		s := startEcho(t, path...)
		c := gorillaDial(t, s, nil)
		const count = 3000
		werr := make(chan error, 1)
		go func() {
			_ = c.SetWriteDeadline(time.Now().Add(60 * time.Second))
			for i := range count {
				text := i%2 == 0
				typ := websocket.BinaryMessage
				if text {
					typ = websocket.TextMessage
				}
				if err := c.WriteMessage(typ, payload(text, inFlightSize(i), uint64(i))); err != nil {
					werr <- fmt.Errorf("write message %d: %w", i, err)
					return
				}
			}
			werr <- nil
		}()
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
		for i := range count {
			typ, got, err := c.ReadMessage()
			if err != nil {
				t.Fatalf("read echo %d: %v", i, err)
			}
			text := i%2 == 0
			if (typ == websocket.TextMessage) != text {
				t.Fatalf("echo %d: type %d", i, typ)
			}
			sameBytes(t, fmt.Sprintf("echo %d", i), got, payload(text, inFlightSize(i), uint64(i)))
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
	})
}

// Pings with payloads of 0 to 125 bytes, interleaved with data messages, come
// back as pongs with the same payloads, in order.
func TestGorillaPingPong(t *testing.T) {
	eachPath(t, func(t *testing.T, path ...string) {
		s := startEcho(t, path...)
		c := gorillaDial(t, s, nil)
		var mu sync.Mutex
		var pongs []string
		c.SetPongHandler(func(data string) error {
			mu.Lock()
			pongs = append(pongs, data)
			mu.Unlock()
			return nil
		})
		pings := []string{"", "hello", strings.Repeat("p", 125), "\x00\xff binary \x80"}
		for i, p := range pings {
			if err := c.WriteControl(websocket.PingMessage, []byte(p), time.Now().Add(hangGuard)); err != nil {
				t.Fatalf("ping %d: %v", i, err)
			}
			// A data message after each ping: its echo arrives after the pong,
			// and reading it runs the pong handler.
			marker := fmt.Sprintf("after ping %d", i)
			if err := c.WriteMessage(websocket.TextMessage, []byte(marker)); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(hangGuard))
			_, got, err := c.ReadMessage()
			if err != nil {
				t.Fatalf("read after ping %d: %v", i, err)
			}
			if string(got) != marker {
				t.Fatalf("got %q, want %q", got, marker)
			}
			mu.Lock()
			n := len(pongs)
			last := ""
			if n > 0 {
				last = pongs[n-1]
			}
			mu.Unlock()
			if n != i+1 {
				t.Fatalf("after ping %d: %d pongs received, want %d", i, n, i+1)
			}
			if last != p {
				t.Fatalf("pong %d payload %q, want %q", i, last, p)
			}
		}
		// A ping in the middle of a fragmented message is answered and the
		// message still arrives whole.
		w, err := c.NextWriter(websocket.TextMessage)
		if err != nil {
			t.Fatal(err)
		}
		big := textPayload(20000, 7)
		if _, err := w.Write(big[:9000]); err != nil { // flushes two 4 KiB frames
			t.Fatal(err)
		}
		if err := c.WriteControl(websocket.PingMessage, []byte("mid"), time.Now().Add(hangGuard)); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(big[9000:]); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		sameBytes(t, "fragmented message around a ping", got, big)
		mu.Lock()
		defer mu.Unlock()
		if len(pongs) != len(pings)+1 || pongs[len(pongs)-1] != "mid" {
			t.Fatalf("pongs %q, want a last pong \"mid\"", pongs)
		}
	})
}

// The server echoes the client's close code and reason, then closes the TCP
// connection.
func TestGorillaCloseHandshake(t *testing.T) {
	eachPath(t, func(t *testing.T, path ...string) {
		s := startEcho(t, path...)
		cases := []struct {
			code   int
			reason string
		}{
			{websocket.CloseNormalClosure, ""},
			{websocket.CloseNormalClosure, "bye"},
			{websocket.CloseGoingAway, "tab closed"},
			{3000, "registered"},
			{4001, "application reason"},
			{4999, strings.Repeat("r", 123)}, // longest reason a close frame holds
			{4000, "ünïcödé €"},
		}
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%d/%d-byte-reason", tc.code, len(tc.reason)), func(t *testing.T) {
				c := gorillaDial(t, s, nil)
				gorillaEcho(t, c, true, 10, 4)
				msg := websocket.FormatCloseMessage(tc.code, tc.reason)
				if err := c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(hangGuard)); err != nil {
					t.Fatal(err)
				}
				_ = c.SetReadDeadline(time.Now().Add(hangGuard))
				_, _, err := c.ReadMessage()
				var ce *websocket.CloseError
				if !errors.As(err, &ce) {
					t.Fatalf("after sending close: read error %v, want the server's close frame", err)
				}
				if ce.Code != tc.code {
					t.Fatalf("server closed with %d %q, want the echo %d %q", ce.Code, ce.Text, tc.code, tc.reason)
				}
				if ce.Text != tc.reason {
					t.Errorf("server echoed code %d with reason %q, want the reason %q echoed too", ce.Code, ce.Text, tc.reason)
				}
				expectEOF(t, c)
			})
		}
		t.Run("no-status", func(t *testing.T) {
			c := gorillaDial(t, s, nil)
			if err := c.WriteControl(websocket.CloseMessage, nil, time.Now().Add(hangGuard)); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(hangGuard))
			_, _, err := c.ReadMessage()
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("after sending an empty close: read error %v, want the server's close frame", err)
			}
			// An empty close is answered with an empty close (reported by
			// gorilla as 1005) or with 1000.
			if ce.Code != websocket.CloseNoStatusReceived && ce.Code != websocket.CloseNormalClosure {
				t.Fatalf("server answered an empty close with %d %q", ce.Code, ce.Text)
			}
			expectEOF(t, c)
		})
	})
}

// expectEOF checks that the server closes the TCP connection after the close
// handshake.
func expectEOF(t *testing.T, c *websocket.Conn) {
	t.Helper()
	nc := c.NetConn()
	_ = nc.SetReadDeadline(time.Now().Add(hangGuard))
	buf := make([]byte, 16)
	n, err := nc.Read(buf)
	if err == nil {
		t.Fatalf("server sent %d more bytes after the close handshake", n)
	}
	if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
		t.Fatalf("server did not close the TCP connection after the close handshake (waited %v)", hangGuard)
	}
}

// Several connections at once, each with its own traffic.
func TestGorillaConcurrentConns(t *testing.T) {
	eachPath(t, func(t *testing.T, path ...string) {
		s := startEcho(t, path...)
		const conns, msgs = 40, 150
		var wg sync.WaitGroup
		errs := make(chan error, conns)
		for k := range conns {
			c := gorillaDial(t, s, nil)
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- func() error {
					_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
					for i := range msgs {
						text := (i+k)%2 == 0
						typ := websocket.BinaryMessage
						if text {
							typ = websocket.TextMessage
						}
						want := payload(text, (i*37+k)%5000, uint64(k*1000+i))
						if err := c.WriteMessage(typ, want); err != nil {
							return fmt.Errorf("conn %d write %d: %w", k, i, err)
						}
						gt, got, err := c.ReadMessage()
						if err != nil {
							return fmt.Errorf("conn %d read %d: %w", k, i, err)
						}
						if gt != typ || string(got) != string(want) {
							return fmt.Errorf("conn %d message %d: wrong echo (type %d, %d bytes, want type %d, %d bytes)", k, i, gt, len(got), typ, len(want))
						}
					}
					return c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(hangGuard))
				}()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
	})
}

// On SIGTERM the server closes every client with 1001 and exits with 0.
func TestGorillaGoingAwayOnSIGTERM(t *testing.T) {
	eachPath(t, func(t *testing.T, path ...string) {
		s := startEcho(t, path...)
		const conns = 5
		cs := make([]*websocket.Conn, conns)
		for i := range cs {
			cs[i] = gorillaDial(t, s, nil)
			gorillaEcho(t, cs[i], i%2 == 0, 100, 5)
		}
		results := make(chan error, conns)
		for i, c := range cs {
			go func() {
				_ = c.SetReadDeadline(time.Now().Add(hangGuard))
				_, _, err := c.ReadMessage()
				var ce *websocket.CloseError
				switch {
				case !errors.As(err, &ce):
					results <- fmt.Errorf("conn %d: read error %v, want a close frame with 1001", i, err)
				case ce.Code != websocket.CloseGoingAway:
					results <- fmt.Errorf("conn %d: server closed with %d %q, want 1001", i, ce.Code, ce.Text)
				default:
					results <- nil
				}
			}()
		}
		s.terminate(t)
		for range conns {
			if err := <-results; err != nil {
				t.Error(err)
			}
		}
	})
}

func kind(text bool) string {
	if text {
		return "text"
	}
	return "binary"
}
