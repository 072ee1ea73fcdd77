package engine

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// BenchmarkTLSConnect measures a wss:// connect (TCP, TLS handshake,
// WebSocket upgrade, close) against herald and, as the peer measured in
// the same run, crypto/tls's own listener with a goroutine per connection
// doing the same upgrade (gobwas/ws). Full handshakes and resumptions
// (session tickets). Client and server share the machine: compare the
// ratio, not the figures.
func BenchmarkTLSConnect(b *testing.B) {
	peer := startPeerTLS(b)
	srv := startTLS(b, Config{}, BaseHandler{})
	for _, target := range []struct {
		name string
		addr string
	}{{"herald", srv.Addr().String()}, {"goroutine-per-conn", peer}} {
		for _, resume := range []bool{false, true} {
			name := target.name + "/full"
			if resume {
				name = target.name + "/resumed"
			}
			b.Run(name, func(b *testing.B) {
				cfg := loopbackPKI.ClientConfig()
				if resume {
					// The first connection fills the cache; the
					// others resume from a ticket.
					cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
				}
				// Several clients at once: connects per second, not the
				// latency of one.
				b.SetParallelism(4)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						tc, err := tls.Dial("tcp", target.addr, cfg)
						if err != nil {
							b.Error(err)
							return
						}
						if _, err := wsOver(tc, "/"); err != nil {
							b.Error(err)
							return
						}
						tc.Close()
					}
				})
			})
		}
	}
}

// startPeerTLS runs crypto/tls's listener with a goroutine per connection
// that upgrades it and waits for the client to go.
func startPeerTLS(b *testing.B) string {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", loopbackPKI.ServerConfig())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				if _, err := ws.Upgrade(c); err != nil {
					return
				}
				_, _ = c.Read(make([]byte, 1))
			}(c)
		}
	}()
	return ln.Addr().String()
}

// BenchmarkTLSFloodBystander measures the echo round trip of an open TLS
// connection while a child process floods the server with full handshakes
// from 16 clients at once (flood), and without them (quiet), in the same
// run: the handshakes' CPU tokens keep the loop's open connections served.
func BenchmarkTLSFloodBystander(b *testing.B) {
	for _, flood := range []bool{false, true} {
		b.Run(map[bool]string{false: "quiet", true: "flood"}[flood], func(b *testing.B) {
			r := echoing()
			s := startTLS(b, Config{Loops: 1}, r)
			conn, _ := dialTLS(b, s, "/", nil)
			if flood {
				stop := startFlood(b, s.Addr().String(), 16)
				defer stop()
				waitFor(b, "the flood to begin", func() bool { return s.Stats().TLSHandshakes > 50 })
			}
			before := s.Stats().TLSHandshakes
			lat := make([]time.Duration, 0, b.N)
			msg := []byte("bystander")
			for b.Loop() {
				start := time.Now()
				if err := wsutil.WriteClientText(conn, msg); err != nil {
					b.Fatal(err)
				}
				if _, err := wsutil.ReadServerText(conn); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(float64(s.Stats().TLSHandshakes-before)/b.Elapsed().Seconds(), "handshakes/s")
		})
	}
}

// floodEnv makes the test binary a handshake flooder (startFlood).
const floodEnv = "HERALD_TLS_FLOOD"

// startFlood runs n clients in a child process that connect to addr with
// full TLS handshakes (no session cache) and the upgrade, and hang up, over
// and over, until the returned function stops them.
func startFlood(b *testing.B, addr string, n int) (stop func()) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%d", floodEnv, addr, n))
	stdin, _ := cmd.StdinPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	return func() { stdin.Close(); _ = cmd.Wait() }
}

// runFloodIfChild floods and exits when this process was started by
// startFlood.
func runFloodIfChild() {
	spec := os.Getenv(floodEnv)
	if spec == "" {
		return
	}
	addr, count, _ := strings.Cut(spec, "|")
	n, _ := strconv.Atoi(count)
	cfg := &tls.Config{InsecureSkipVerify: true}
	done := make(chan struct{})
	for range n {
		go func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				// A whole connect: the handshake, then the upgrade (a
				// client that hangs up at once ends the server's
				// handshake before it reads the client's Finished).
				if tc, err := tls.Dial("tcp", addr, cfg); err == nil {
					_, _ = wsOver(tc, "/")
					tc.Close()
				}
			}
		}()
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	close(done)
	os.Exit(0)
}
