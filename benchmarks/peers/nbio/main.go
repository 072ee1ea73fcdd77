// Command nbio is the lesismal/nbio peer of herald's benchmark harness: an
// nbhttp.Engine in its default non-blocking (event-loop) mode, with nbio's
// websocket.Upgrader. Sockets are read by nbio's pollers and handlers run on
// its task pool; writes never block (nbio queues what the socket does not
// take). nbio has no prepared or broadcast message, so in ticker mode every
// subscriber gets the same payload through its own Conn.WriteMessage.
//
// -compression calls the Upgrader's EnableCompression: nbio then answers
// without context takeover and compresses every text and binary message
// it writes (level 1), per connection, since it has no prepared message.
//
//	nbio echo -addr 127.0.0.1:0 [-compression]
//	nbio ticker -addr 127.0.0.1:0 -interval 100ms -symbols 20 -size 128 [-payload book] [-compression]
package main

import (
	"context"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/lesismal/llib/std/crypto/tls"
	"github.com/lesismal/nbio/logging"
	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/heraldws/herald/benchmarks/peers/internal/cli"
	"github.com/heraldws/herald/benchmarks/peers/internal/tick"
)

const (
	// tickerWriteBuffer is nbio's MaxWriteBufferSize in ticker mode (the
	// value of nbio's README): a subscriber with more than this queued
	// behind a full socket is disconnected.
	tickerWriteBuffer = 6 << 20
	// echoWriteBuffer lets an echo client have a 64 MiB echo queued.
	echoWriteBuffer = 2*cli.MaxMessage + 1<<20
)

func main() {
	opts := cli.Parse("nbio", os.Args[1:])
	logging.Output = os.Stderr // stdout carries only the listening line
	logging.SetLevel(logging.LevelWarn)
	ctx, stop := cli.SignalContext()
	defer stop()

	s := &server{conns: make(map[*websocket.Conn]struct{})}
	upgrader := websocket.NewUpgrader()
	upgrader.CheckOrigin = func(*http.Request) bool { return true } // the bench contract accepts any Origin
	upgrader.KeepaliveTime = 0                                      // no idle timeout, like the other peers
	upgrader.MessageLengthLimit = cli.MaxMessage
	upgrader.EnableCompression(opts.Compression)
	upgrader.OnOpen(s.add)
	upgrader.OnClose(func(c *websocket.Conn, _ error) { s.remove(c) })

	mux := http.NewServeMux()
	writeBuffer := echoWriteBuffer
	switch opts.Mode {
	case cli.Echo:
		upgrader.OnMessage(func(c *websocket.Conn, mt websocket.MessageType, data []byte) {
			_ = c.WriteMessage(mt, data)
		})
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			_, _ = upgrader.Upgrade(w, r, nil)
		})
	case cli.Ticker:
		writeBuffer = tickerWriteBuffer
		s.subs = make([]map[*websocket.Conn]struct{}, opts.Symbols)
		for k := range s.subs {
			s.subs[k] = make(map[*websocket.Conn]struct{})
		}
		mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
			subs := tick.Filter(r.URL.Query().Get("symbols"), opts.Symbols)
			c, err := upgrader.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			s.subscribe(c, subs)
		})
		go s.publish(ctx, opts.Interval, opts.Feed())
	}

	conf := nbhttp.Config{
		Network:                 "tcp",
		Addrs:                   []string{opts.Addr},
		Handler:                 mux,
		ReleaseWebsocketPayload: true,
		MaxWriteBufferSize:      writeBuffer,
		// A whole 64 MiB frame, its header and one more read must fit.
		ReadLimit: cli.MaxMessage + 1<<20,
	}
	if opts.TLS() {
		// nbio's own TLS, as its examples serve it: its fork of crypto/tls
		// (lesismal/llib), records decrypted on its event loops.
		cert, err := tls.LoadX509KeyPair(opts.TLSCert, opts.TLSKey)
		if err != nil {
			cli.Fatal(err)
		}
		conf.Addrs, conf.AddrsTLS = nil, []string{opts.Addr}
		conf.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	engine := nbhttp.NewEngine(conf)
	if err := engine.Start(); err != nil {
		cli.Fatal(err)
	}
	addr := engine.Addrs // Start fills in the real port
	if opts.TLS() {
		addr = engine.AddrsTLS
	}
	cli.Ready("nbio", opts.Mode, addr[0])

	<-ctx.Done()
	s.closeAll()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cli.ShutdownGrace)
	defer cancel()
	_ = engine.Shutdown(shutdownCtx)
}

type server struct {
	mu      sync.RWMutex
	conns   map[*websocket.Conn]struct{}
	subs    []map[*websocket.Conn]struct{} // ticker subscribers per symbol
	closing bool
}

func (s *server) add(c *websocket.Conn) {
	s.mu.Lock()
	closing := s.closing
	if !closing {
		s.conns[c] = struct{}{}
	}
	s.mu.Unlock()
	if closing {
		_ = c.WriteClose(1001, "")
	}
}

func (s *server) subscribe(c *websocket.Conn, subs []bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c]; !ok {
		return // already closed
	}
	for k, on := range subs {
		if on {
			s.subs[k][c] = struct{}{}
		}
	}
}

func (s *server) remove(c *websocket.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	for _, m := range s.subs {
		delete(m, c)
	}
}

// publish writes one message per symbol to its subscribers every interval.
// WriteMessage frames the payload for each connection and never blocks.
func (s *server) publish(ctx context.Context, interval time.Duration, feed *tick.Feed) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for k := 0; k < feed.Len(); k++ {
			msg := feed.Next(k)
			s.mu.RLock()
			for c := range s.subs[k] {
				_ = c.WriteMessage(websocket.TextMessage, msg)
			}
			s.mu.RUnlock()
		}
	}
}

// closeAll sends 1001 to every connection; engine.Shutdown then closes them.
func (s *server) closeAll() {
	s.mu.Lock()
	s.closing = true
	list := make([]*websocket.Conn, 0, len(s.conns))
	for c := range s.conns {
		list = append(list, c)
	}
	s.mu.Unlock()
	for _, c := range list {
		_ = c.WriteClose(1001, "")
	}
}
