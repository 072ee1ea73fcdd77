package interop

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func coderDial(t *testing.T, s *echoServer, opts *websocket.DialOptions) (*websocket.Conn, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, s.URL, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", s.URL, err)
	}
	c.SetReadLimit(64 << 20)
	t.Cleanup(func() { _ = c.CloseNow() })
	return c, resp
}

func coderEcho(t *testing.T, c *websocket.Conn, text bool, n int, seed uint64) {
	t.Helper()
	coderEchoBytes(t, c, text, payload(text, n, seed))
}

func coderEchoBytes(t *testing.T, c *websocket.Conn, text bool, want []byte) {
	t.Helper()
	n := len(want)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	typ := websocket.MessageBinary
	if text {
		typ = websocket.MessageText
	}
	if err := c.Write(ctx, typ, want); err != nil {
		t.Fatalf("write %d bytes: %v", n, err)
	}
	gotType, got, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read echo of %d bytes: %v", n, err)
	}
	if gotType != typ {
		t.Fatalf("echo of %d bytes: message type %v, want %v", n, gotType, typ)
	}
	sameBytes(t, fmt.Sprintf("echo of %d bytes", n), got, want)
}

// coder/websocket writes each message as a single frame.
func TestCoderEcho(t *testing.T) {
	eachPath(t, func(t *testing.T, path ...string) {
		s := startEcho(t, path...)
		c, _ := coderDial(t, s, nil)
		for _, text := range []bool{true, false} {
			for _, n := range echoSizes {
				t.Run(fmt.Sprintf("%s/%d", kind(text), n), func(t *testing.T) {
					coderEcho(t, c, text, n, 11)
				})
			}
		}
	})
}

// Negotiates permessage-deflate in both of coder/websocket's modes and
// exchanges compressed messages both ways. With CompressionContextTakeover
// the client offers to keep its window; herald's answer,
// client_no_context_takeover, makes it compress each message on its own
// (repeated messages would otherwise refer back to the previous ones, and
// the server would refuse them with 1007).
func TestCoderEchoDeflate(t *testing.T) {
	eachPath(t, func(t *testing.T, path ...string) {
		for _, mode := range []websocket.CompressionMode{websocket.CompressionNoContextTakeover, websocket.CompressionContextTakeover} {
			t.Run(fmt.Sprint(mode), func(t *testing.T) {
				s := startEcho(t, append(path, "-v")...)
				c, resp := coderDial(t, s, &websocket.DialOptions{CompressionMode: mode})
				s.checkDeflate(t, resp.Header.Get("Sec-WebSocket-Extensions"))
				for _, text := range []bool{true, false} {
					for _, n := range []int{0, 125, 126, 200, 65536, 1 << 20} {
						t.Run(fmt.Sprintf("%s/%d", kind(text), n), func(t *testing.T) {
							for range 3 {
								coderEcho(t, c, text, n, 12)
							}
						})
					}
					for _, n := range []int{100, 600, 65536, 4 << 20} {
						t.Run(fmt.Sprintf("%s/%d-compressible", kind(text), n), func(t *testing.T) {
							for range 3 {
								coderEchoBytes(t, c, text, compressible(n))
							}
						})
					}
				}
			})
		}
	})
}

func TestCoderInFlight(t *testing.T) {
	eachPath(t, func(t *testing.T, path ...string) {
		s := startEcho(t, path...)
		c, _ := coderDial(t, s, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		const count = 3000
		werr := make(chan error, 1)
		go func() {
			for i := range count {
				text := i%2 == 0
				typ := websocket.MessageBinary
				if text {
					typ = websocket.MessageText
				}
				if err := c.Write(ctx, typ, payload(text, inFlightSize(i), uint64(i))); err != nil {
					werr <- fmt.Errorf("write message %d: %w", i, err)
					return
				}
			}
			werr <- nil
		}()
		for i := range count {
			typ, got, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("read echo %d: %v", i, err)
			}
			text := i%2 == 0
			if (typ == websocket.MessageText) != text {
				t.Fatalf("echo %d: type %v", i, typ)
			}
			sameBytes(t, fmt.Sprintf("echo %d", i), got, payload(text, inFlightSize(i), uint64(i)))
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
	})
}

// Ping waits for a pong with the same payload; it needs a concurrent reader,
// which here also checks data echoes sent between pings.
func TestCoderPing(t *testing.T) {
	eachPath(t, func(t *testing.T, path ...string) {
		s := startEcho(t, path...)
		var mu sync.Mutex
		var pongs []string
		c, _ := coderDial(t, s, &websocket.DialOptions{OnPongReceived: func(_ context.Context, p []byte) {
			mu.Lock()
			pongs = append(pongs, string(p))
			mu.Unlock()
		}})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		const rounds = 20
		echoes := make(chan string, rounds)
		readErr := make(chan error, 1)
		go func() {
			for {
				_, b, err := c.Read(ctx)
				if err != nil {
					readErr <- err
					return
				}
				echoes <- string(b)
			}
		}()
		for i := range rounds {
			if err := c.Ping(ctx); err != nil {
				t.Fatalf("ping %d: %v", i, err)
			}
			msg := fmt.Sprintf("between pings %d", i)
			if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			select {
			case got := <-echoes:
				if got != msg {
					t.Fatalf("echo %q, want %q", got, msg)
				}
			case err := <-readErr:
				t.Fatalf("read: %v", err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if len(pongs) != rounds {
			t.Fatalf("%d pongs for %d pings", len(pongs), rounds)
		}
		for i, p := range pongs {
			if p != fmt.Sprint(i+1) {
				t.Fatalf("pong %d payload %q, want %q", i, p, fmt.Sprint(i+1))
			}
		}
	})
}

// Close returns nil only when the server's close frame carries the same code.
func TestCoderCloseHandshake(t *testing.T) {
	eachPath(t, func(t *testing.T, path ...string) {
		s := startEcho(t, path...)
		for _, code := range []websocket.StatusCode{websocket.StatusNormalClosure, websocket.StatusGoingAway, 3000, 4000, 4999} {
			t.Run(fmt.Sprint(int(code)), func(t *testing.T) {
				c, _ := coderDial(t, s, nil)
				coderEcho(t, c, false, 10, 13)
				if err := c.Close(code, "done"); err != nil {
					t.Fatalf("close handshake with %d: %v", code, err)
				}
			})
		}
	})
}

func TestCoderConcurrentConns(t *testing.T) {
	eachPath(t, func(t *testing.T, path ...string) {
		s := startEcho(t, path...)
		const conns, msgs = 40, 150
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		errs := make(chan error, conns)
		for k := range conns {
			c, _ := coderDial(t, s, nil)
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- func() error {
					for i := range msgs {
						text := (i+k)%2 == 0
						typ := websocket.MessageBinary
						if text {
							typ = websocket.MessageText
						}
						want := payload(text, (i*53+k)%5000, uint64(k*1000+i))
						if err := c.Write(ctx, typ, want); err != nil {
							return fmt.Errorf("conn %d write %d: %w", k, i, err)
						}
						gt, got, err := c.Read(ctx)
						if err != nil {
							return fmt.Errorf("conn %d read %d: %w", k, i, err)
						}
						if gt != typ || string(got) != string(want) {
							return fmt.Errorf("conn %d message %d: wrong echo (type %v, %d bytes, want type %v, %d bytes)", k, i, gt, len(got), typ, len(want))
						}
					}
					if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
						return fmt.Errorf("conn %d close: %w", k, err)
					}
					return nil
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

func TestCoderGoingAwayOnSIGTERM(t *testing.T) {
	eachPath(t, func(t *testing.T, path ...string) {
		s := startEcho(t, path...)
		const conns = 5
		cs := make([]*websocket.Conn, conns)
		for i := range cs {
			cs[i], _ = coderDial(t, s, nil)
			coderEcho(t, cs[i], i%2 == 1, 100, 14)
		}
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		results := make(chan error, conns)
		for i, c := range cs {
			go func() {
				_, _, err := c.Read(ctx)
				var ce websocket.CloseError
				switch {
				case !errors.As(err, &ce):
					results <- fmt.Errorf("conn %d: read error %v, want a close frame with 1001", i, err)
				case ce.Code != websocket.StatusGoingAway:
					results <- fmt.Errorf("conn %d: server closed with %d %q, want 1001", i, ce.Code, ce.Reason)
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
