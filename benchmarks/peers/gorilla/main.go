// Command gorilla is the gorilla/websocket peer of herald's benchmark
// harness, written the way gorilla's own examples are: one goroutine reads
// each connection, and in ticker mode a second goroutine writes it, fed by a
// hub goroutine through a buffered channel (the chat example's design) with
// each tick's message encoded once as a websocket.PreparedMessage.
//
// -compression sets the Upgrader's EnableCompression, as gorilla's users
// turn permessage-deflate on: gorilla then compresses every text and binary
// message it writes (no context takeover, level 1), and a PreparedMessage
// compresses once for all the connections that negotiated it.
//
//	gorilla echo -addr 127.0.0.1:0 [-compression]
//	gorilla ticker -addr 127.0.0.1:0 -interval 100ms -symbols 20 -size 128 [-payload book] [-compression]
package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldws/herald/benchmarks/peers/internal/cli"
	"github.com/heraldws/herald/benchmarks/peers/internal/tick"
)

const (
	// writeWait bounds every write to a client: a client that does not
	// take a message within it is disconnected.
	writeWait = 10 * time.Second
	// sendBuffer is how many messages may wait for a ticker client's
	// writer; a client further behind is disconnected.
	sendBuffer = 256
)

var upgrader = websocket.Upgrader{
	// The bench contract accepts any Origin.
	CheckOrigin: func(*http.Request) bool { return true },
}

func main() {
	opts := cli.Parse("gorilla", os.Args[1:])
	upgrader.EnableCompression = opts.Compression
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		cli.Fatal(err)
	}
	ctx, stop := cli.SignalContext()
	defer stop()

	conns := newRegistry()
	var handler http.Handler
	var h *hub
	switch opts.Mode {
	case cli.Echo:
		handler = echoHandler(conns)
	case cli.Ticker:
		h = newHub(opts.Symbols)
		go h.run()
		go h.publish(ctx, opts.Interval, opts.Feed())
		mux := http.NewServeMux()
		mux.Handle("/ws", tickerHandler(h, conns, opts.Symbols))
		handler = mux
	}
	srv := &http.Server{Handler: handler}
	go func() {
		serve := func() error { return srv.Serve(ln) }
		if opts.TLS() {
			// crypto/tls through net/http, as gorilla's users serve wss://.
			serve = func() error { return srv.ServeTLS(ln, opts.TLSCert, opts.TLSKey) }
		}
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cli.Fatal(err)
		}
	}()
	cli.Ready("gorilla", opts.Mode, ln.Addr().String())

	<-ctx.Done()
	_ = srv.Close() // stops accepting; upgraded connections are hijacked and stay open
	conns.shutdown(cli.ShutdownGrace, func(c *websocket.Conn) {
		if h != nil {
			return // ticker: each writer sends 1001 when the hub closes its channel
		}
		msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "")
		_ = c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	}, func() {
		if h != nil {
			h.stop()
		}
	})
}

// echoHandler upgrades on any path and echoes every message with its type.
func echoHandler(conns *registry) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		if !conns.add(c) {
			return
		}
		defer conns.remove(c)
		c.SetReadLimit(cli.MaxMessage)
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			// A large echo gets a second more per MiB: the deadline is for
			// a client that stopped reading, not for one that reads 64 MiB
			// on a busy machine.
			_ = c.SetWriteDeadline(time.Now().Add(writeWait + time.Duration(len(msg)>>20)*time.Second))
			if err := c.WriteMessage(mt, msg); err != nil {
				return
			}
		}
	}
}

// client is one ticker connection: the hub queues prepared messages on send
// and writePump writes them.
type client struct {
	conn *websocket.Conn
	subs []bool
	send chan *websocket.PreparedMessage
}

func tickerHandler(h *hub, conns *registry, symbols int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		subs := tick.Filter(r.URL.Query().Get("symbols"), symbols)
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		if !conns.add(c) {
			c.Close()
			return
		}
		cl := &client{conn: c, subs: subs, send: make(chan *websocket.PreparedMessage, sendBuffer)}
		if !h.add(cl) {
			conns.remove(c)
			c.Close()
			return
		}
		go cl.writePump()
		cl.readPump(h, conns)
	}
}

// readPump reads until the connection fails or the client's close arrives
// (gorilla answers the close itself), then unregisters the client.
func (cl *client) readPump(h *hub, conns *registry) {
	defer func() {
		h.remove(cl)
		cl.conn.Close()
		conns.remove(cl.conn)
	}()
	for {
		if _, _, err := cl.conn.NextReader(); err != nil {
			return
		}
	}
}

// writePump writes queued messages, each within writeWait. When the hub
// closes the channel (the client fell behind, or the server is stopping)
// it sends a close frame.
func (cl *client) writePump() {
	for pm := range cl.send {
		_ = cl.conn.SetWriteDeadline(time.Now().Add(writeWait))
		if err := cl.conn.WritePreparedMessage(pm); err != nil {
			cl.conn.Close()
			for range cl.send { // let the hub unregister us
			}
			return
		}
	}
	msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "")
	_ = cl.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
}

type broadcast struct {
	sym int
	pm  *websocket.PreparedMessage
}

// hub owns the set of ticker clients, like the hub of gorilla's chat
// example: one goroutine registers, unregisters and fans out.
type hub struct {
	clients    map[*client]struct{}
	register   chan *client
	unregister chan *client
	broadcast  chan broadcast
	quit       chan struct{}
	done       chan struct{}
	symbols    int
}

func newHub(symbols int) *hub {
	return &hub{
		clients:    make(map[*client]struct{}),
		register:   make(chan *client),
		unregister: make(chan *client),
		broadcast:  make(chan broadcast, symbols),
		quit:       make(chan struct{}),
		done:       make(chan struct{}),
		symbols:    symbols,
	}
}

func (h *hub) add(cl *client) bool {
	select {
	case h.register <- cl:
		return true
	case <-h.done:
		return false
	}
}

func (h *hub) remove(cl *client) {
	select {
	case h.unregister <- cl:
	case <-h.done:
	}
}

// stop closes every client's channel, so each writer sends 1001.
func (h *hub) stop() {
	close(h.quit)
	<-h.done
}

func (h *hub) run() {
	defer close(h.done)
	for {
		select {
		case cl := <-h.register:
			h.clients[cl] = struct{}{}
		case cl := <-h.unregister:
			if _, ok := h.clients[cl]; ok {
				delete(h.clients, cl)
				close(cl.send)
			}
		case b := <-h.broadcast:
			for cl := range h.clients {
				if !cl.subs[b.sym] {
					continue
				}
				select {
				case cl.send <- b.pm:
				default: // too far behind: drop the client
					delete(h.clients, cl)
					close(cl.send)
				}
			}
		case <-h.quit:
			for cl := range h.clients {
				delete(h.clients, cl)
				close(cl.send)
			}
			return
		}
	}
}

// publish sends one message per symbol to the hub every interval, each
// encoded once as a prepared message.
func (h *hub) publish(ctx context.Context, interval time.Duration, feed *tick.Feed) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for k := 0; k < feed.Len(); k++ {
			pm, err := websocket.NewPreparedMessage(websocket.TextMessage, feed.Next(k))
			if err != nil {
				cli.Fatal(err)
			}
			select {
			case h.broadcast <- broadcast{sym: k, pm: pm}:
			case <-h.done:
				return
			}
		}
	}
}

// registry tracks the upgraded connections so that shutdown can close them
// with 1001 and wait for them to go.
type registry struct {
	mu      sync.Mutex
	conns   map[*websocket.Conn]struct{}
	closing bool
	empty   chan struct{} // closed when closing and no connection is left
}

func newRegistry() *registry {
	return &registry{conns: make(map[*websocket.Conn]struct{}), empty: make(chan struct{})}
}

func (r *registry) add(c *websocket.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *registry) remove(c *websocket.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conns, c)
	if r.closing && len(r.conns) == 0 {
		select {
		case <-r.empty:
		default:
			close(r.empty)
		}
	}
}

// shutdown refuses new connections, calls closeAll and then closeOne for
// every open connection, and waits up to d for them all to go.
func (r *registry) shutdown(d time.Duration, closeOne func(*websocket.Conn), closeAll func()) {
	r.mu.Lock()
	r.closing = true
	list := make([]*websocket.Conn, 0, len(r.conns))
	for c := range r.conns {
		list = append(list, c)
	}
	r.mu.Unlock()
	closeAll()
	if len(list) == 0 {
		return
	}
	for _, c := range list {
		go closeOne(c)
	}
	select {
	case <-r.empty:
	case <-time.After(d):
	}
}
