package engine

import (
	"crypto/tls"
	"net"
	"testing"

	"github.com/gobwas/ws"
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
