// Command gws is the lxzan/gws peer of herald's benchmark harness, written
// the way gws's README recommends: net/http upgrades with a gws.Upgrader,
// one goroutine runs each connection's ReadLoop, and in ticker mode each
// tick's message goes out through a gws.Broadcaster (framed once, written by
// every connection's own asynchronous write queue).
//
// -compression enables gws's PermessageDeflate without context takeover
// on either side (a window per connection would only cost memory: a
// Broadcaster compresses without it): a Broadcaster then compresses each
// message once for all the connections that negotiated it. gws's defaults
// do the rest: level 1 (BestSpeed), messages under 512 bytes sent as they
// are, a pool of 32 compressors.
//
//	gws echo -addr 127.0.0.1:0 [-compression]
//	gws ticker -addr 127.0.0.1:0 -interval 100ms -symbols 20 -size 128 [-payload book] [-compression]
package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/lxzan/gws"

	"github.com/heraldws/herald/benchmarks/peers/internal/cli"
	"github.com/heraldws/herald/benchmarks/peers/internal/tick"
)

func main() {
	opts := cli.Parse("gws", os.Args[1:])
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		cli.Fatal(err)
	}
	ctx, stop := cli.SignalContext()
	defer stop()

	h := &handler{
		conns: make(map[*gws.Conn]struct{}),
		empty: make(chan struct{}),
		subs:  make([]*gws.ConcurrentMap[*gws.Conn, struct{}], opts.Symbols),
	}
	for k := range h.subs {
		h.subs[k] = gws.NewConcurrentMap[*gws.Conn, struct{}]()
	}
	option := &gws.ServerOption{
		ReadMaxPayloadSize:  cli.MaxMessage,
		WriteMaxPayloadSize: cli.MaxMessage,
		PermessageDeflate: gws.PermessageDeflate{
			Enabled:               opts.Compression,
			ServerContextTakeover: false,
			ClientContextTakeover: false,
		},
	}
	mux := http.NewServeMux()
	switch opts.Mode {
	case cli.Echo:
		h.echo = true
		upgrader := gws.NewUpgrader(h, option)
		mux.HandleFunc("/", serve(upgrader))
	case cli.Ticker:
		// gws accepts any Origin unless Authorize says otherwise; here
		// Authorize only records which symbols the connection wants.
		option.Authorize = func(r *http.Request, session gws.SessionStorage) bool {
			session.Store("subs", tick.Filter(r.URL.Query().Get("symbols"), opts.Symbols))
			return true
		}
		upgrader := gws.NewUpgrader(h, option)
		mux.HandleFunc("/ws", serve(upgrader))
		go h.publish(ctx, opts.Interval, opts.Feed())
	}
	srv := &http.Server{Handler: mux}
	go func() {
		serve := func() error { return srv.Serve(ln) }
		if opts.TLS() {
			// crypto/tls through net/http, as gws's users serve wss://.
			serve = func() error { return srv.ServeTLS(ln, opts.TLSCert, opts.TLSKey) }
		}
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cli.Fatal(err)
		}
	}()
	cli.Ready("gws", opts.Mode, ln.Addr().String())

	<-ctx.Done()
	_ = srv.Close() // stops accepting; upgraded connections are hijacked and stay open
	h.shutdown(cli.ShutdownGrace)
}

func serve(upgrader *gws.Upgrader) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		socket, err := upgrader.Upgrade(w, r)
		if err != nil {
			return
		}
		go socket.ReadLoop()
	}
}

type handler struct {
	gws.BuiltinEventHandler
	echo bool
	subs []*gws.ConcurrentMap[*gws.Conn, struct{}] // ticker subscribers per symbol

	mu      sync.Mutex
	conns   map[*gws.Conn]struct{}
	closing bool
	empty   chan struct{} // closed when closing and no connection is left
}

func (h *handler) OnOpen(socket *gws.Conn) {
	h.mu.Lock()
	closing := h.closing
	if !closing {
		h.conns[socket] = struct{}{}
	}
	h.mu.Unlock()
	if closing {
		_ = socket.WriteClose(1001, nil)
		return
	}
	if v, ok := socket.Session().Load("subs"); ok {
		for k, on := range v.([]bool) {
			if on {
				h.subs[k].Store(socket, struct{}{})
			}
		}
	}
}

func (h *handler) OnClose(socket *gws.Conn, err error) {
	for _, m := range h.subs {
		m.Delete(socket)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.conns, socket)
	if h.closing && len(h.conns) == 0 {
		select {
		case <-h.empty:
		default:
			close(h.empty)
		}
	}
}

func (h *handler) OnMessage(socket *gws.Conn, message *gws.Message) {
	defer message.Close()
	if h.echo {
		_ = socket.WriteMessage(message.Opcode, message.Bytes())
	}
}

// publish broadcasts one message per symbol every interval. A Broadcaster
// frames the message once; Broadcast only queues it on each connection's
// write queue, so a slow client delays nobody but itself.
func (h *handler) publish(ctx context.Context, interval time.Duration, feed *tick.Feed) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for k := 0; k < feed.Len(); k++ {
			b := gws.NewBroadcaster(gws.OpcodeText, feed.Next(k))
			h.subs[k].Range(func(socket *gws.Conn, _ struct{}) bool {
				_ = b.Broadcast(socket)
				return true
			})
			_ = b.Close()
		}
	}
}

// shutdown sends 1001 to every connection (WriteClose also closes the
// socket) and waits up to d for their read loops to end.
func (h *handler) shutdown(d time.Duration) {
	h.mu.Lock()
	h.closing = true
	list := make([]*gws.Conn, 0, len(h.conns))
	for socket := range h.conns {
		list = append(list, socket)
	}
	h.mu.Unlock()
	if len(list) == 0 {
		return
	}
	for _, socket := range list {
		go func() {
			// A stalled client must not hold the close up for long.
			_ = socket.SetWriteDeadline(time.Now().Add(time.Second))
			_ = socket.WriteClose(1001, nil)
		}()
	}
	select {
	case <-h.empty:
	case <-time.After(d):
	}
}
