// Package app is the ticker example's server, shared by the two builds of
// the command: examples/ticker in the core module (one process, no broker)
// and nats/cmd/ticker in the nats module, which adds -nats to join a
// cluster. It lives apart from both so that the core module's go.mod needs
// no NATS client while the two commands keep one set of flags and one
// behaviour.
package app

import (
	"context"
	"crypto/tls"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldws/herald/broadcast"
	heraldjs "github.com/heraldws/herald/clients/js"
	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/examples/internal/certfile"
	"github.com/heraldws/herald/examples/ticker/book"
	"github.com/heraldws/herald/resume"
	"github.com/heraldws/herald/upgrade"
)

//go:embed web
var webFiles embed.FS

// Options are the bench contract's flags (see Flags).
type Options struct {
	Addr     string
	Interval time.Duration
	Symbols  int
	Size     int
	// Payload is what fills a tick to Size: book.Pad or book.Book.
	Payload string
	Loops   int
	// Budget (MaxOutboundTotal), HighWater and SendBuffer bound what slow
	// clients cost; MemoryLimit is the process's budget.
	Budget      int64
	HighWater   int
	SendBuffer  int
	MemoryLimit int64
	// ReusePort lets several processes share Addr (SO_REUSEPORT).
	ReusePort bool
	// PingInterval and PongTimeout are the keepalive (engine.Config's):
	// a node holding hundreds of thousands of clients may ping less often.
	PingInterval time.Duration
	PongTimeout  time.Duration
	// Compression negotiates permessage-deflate with clients that offer
	// it (browsers do); ticks of CompressionMinSize bytes and more are
	// compressed, once per tick for all subscribers.
	Compression        bool
	CompressionMinSize int
	// NATS is the broker URL of a cluster to join; "" runs alone.
	NATS string
	// Publish makes this node publish ticks. A node with Publish false only
	// delivers what others publish.
	Publish bool
	// History is how many ticks of each symbol the subscribe protocol's
	// topics keep for clients that reconnect (see protocol.go); 0 keeps
	// none: they get live ticks, and after a reconnect recovered: false.
	History int
	// TLSCert and TLSKey, both or neither, are PEM files: with them the
	// page is served over https and the ticks over wss://, and a renewed
	// certificate written over the files is served from the next handshake.
	TLSCert, TLSKey string
}

// Cluster is how a node reaches the others: a broadcast.Bus it can report
// on and close.
type Cluster interface {
	broadcast.Bus
	// Report is what /stats shows of the cluster connection.
	Report() any
	Close() error
}

// Stream is a history of the protocol topics that the broker keeps for
// every node of a cluster, so that a position means the same on all of
// them (the nats module's JetStream Stream): the hub hands it the ticks
// to store, and it delivers them back, on every node, in one order.
type Stream interface {
	broadcast.Sequencer
	// Attach replays what the stream holds into the hub, then follows it.
	Attach(h *broadcast.Hub) error
	// Ready is closed once the replay is done.
	Ready() <-chan struct{}
}

// StreamCluster is a Cluster whose broker keeps the ticks' history
// (JetStream); Stream is nil when the broker cannot.
type StreamCluster interface {
	Cluster
	Stream() Stream
}

// Ticker is the example's server: a hub with one topic per symbol and,
// when it publishes, a publisher that updates every symbol each tick.
type Ticker struct {
	engine.BaseHandler
	opts    Options
	srv     *engine.Server
	hub     *broadcast.Hub
	log     *slog.Logger
	cluster Cluster
	rs      *resume.Server // the subscribe protocol on the ticks.* topics
	stream  Stream         // the ticks' history in the broker, or nil

	// The protocol's copy of a tick: publishProtocol's, on the ticking
	// goroutine, or on the feed's with a broker-held history.
	protoMsgs   []broadcast.Message
	protoTopics []string
	historyDown bool
	feed        chan []broadcast.Message // to the feed; nil: in memory
	feedFull    bool                     // the ticking goroutine's: copies are being dropped

	stop     chan struct{}
	stopOnce sync.Once
	ticking  sync.WaitGroup
}

// New makes a ticker with the given options, joined to cluster if it is
// not nil (the ticker closes it at Shutdown).
func New(opts Options, logger *slog.Logger, cluster Cluster) (*Ticker, error) {
	if opts.Symbols < 1 || opts.Symbols > 100000 {
		return nil, fmt.Errorf("-symbols must be between 1 and 100000, not %d", opts.Symbols)
	}
	if opts.Interval <= 0 {
		return nil, fmt.Errorf("-interval must be positive, not %v", opts.Interval)
	}
	if _, err := NewTicksOf(1, opts.Size, opts.Payload); err != nil {
		return nil, err
	}
	if opts.History < 0 {
		return nil, fmt.Errorf("-history must not be negative (%d): give the ticks to keep per symbol, or 0 for none", opts.History)
	}
	if !opts.Publish && cluster == nil {
		return nil, errors.New("-publish=false needs -nats: alone, a node that does not publish has nothing to deliver")
	}
	var tlsConfig *tls.Config
	if (opts.TLSCert == "") != (opts.TLSKey == "") {
		return nil, errors.New("-tls-cert and -tls-key go together")
	}
	if opts.TLSCert != "" {
		pair, err := certfile.Load(opts.TLSCert, opts.TLSKey)
		if err != nil {
			return nil, err
		}
		tlsConfig = pair.Config()
	}
	t := &Ticker{opts: opts, log: logger, cluster: cluster, stop: make(chan struct{})}
	mux := http.NewServeMux()
	web, _ := fs.Sub(webFiles, "web")
	mux.Handle("GET /", http.FileServerFS(web))
	mux.Handle("GET /herald-client.js", heraldjs.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /stats", t.serveStats)
	srv, err := engine.New(engine.Config{
		Addr:             opts.Addr,
		Loops:            opts.Loops,
		ReusePort:        opts.ReusePort,
		MaxOutboundTotal: opts.Budget,
		SocketSendBuffer: opts.SendBuffer,
		PingInterval:     opts.PingInterval,
		PongTimeout:      opts.PongTimeout,
		Compression:      engine.Compression{Enabled: opts.Compression, MinSize: opts.CompressionMinSize},
		// Only a client that offers it speaks the subscribe protocol;
		// every other connection gets the bench contract's ticks.
		Subprotocols: []string{Subprotocol},
		TLS:          tlsConfig,
		HTTPHandler:  mux,
		Logger:       logger,
	}, t)
	if err != nil {
		return nil, err
	}
	t.srv = srv
	hubOpts := broadcast.Options{Policy: broadcast.Conflate, HighWater: opts.HighWater}
	if cluster != nil {
		hubOpts.Bus = cluster
	}
	// A ticker only cares about the newest price: a subscriber that falls
	// behind gets the latest per symbol once it catches up.
	if t.hub, err = broadcast.New(srv, hubOpts); err != nil {
		return nil, err
	}
	if err := t.serveProtocol(); err != nil {
		return nil, err
	}
	return t, nil
}

// Start starts serving and, if the node publishes, ticking.
func (t *Ticker) Start() error {
	if err := t.attachStream(); err != nil {
		return err
	}
	if err := t.srv.Start(); err != nil {
		return err
	}
	if t.opts.Publish {
		t.startHistoryFeed()
		t.ticking.Add(1)
		go func() {
			defer t.ticking.Done()
			t.publish(t.stop)
		}()
	}
	return nil
}

// Addr is the address the ticker listens on, once started.
func (t *Ticker) Addr() net.Addr { return t.srv.Addr() }

// Hub is the ticker's hub: one topic per symbol.
func (t *Ticker) Hub() *broadcast.Hub { return t.hub }

// Shutdown stops ticking, closes every client with 1001 and leaves the
// cluster.
func (t *Ticker) Shutdown(ctx context.Context) error {
	t.stopOnce.Do(func() { close(t.stop) })
	t.ticking.Wait()
	err := t.srv.Shutdown(ctx)
	if t.cluster != nil {
		err = errors.Join(err, t.cluster.Close())
	}
	return err
}

// OnOpen subscribes the connection to every symbol, or to those listed in
// ?symbols=S0,S3.
func (t *Ticker) OnOpen(c *engine.Conn) {
	req := c.Request()
	// Nothing kept from the request points into it (the symbols are
	// copied), so its memory serves the next handshake: a request a
	// handler asked for is otherwise left to the collector, about 0.9 KB
	// of garbage per connection that a ramp of thousands piles up.
	defer upgrade.ReleaseRequest(req)
	if req.Path != "/ws" {
		_ = c.Close(engine.StatusPolicyViolation, "the ticker is at /ws")
		return
	}
	if c.Subprotocol() == Subprotocol {
		t.openProtocol(c)
		return
	}
	var topics []string
	list := ""
	if req.RawQuery != "" { // parsing an empty query still makes a map
		list = req.Query().Get("symbols")
	}
	if list != "" {
		for _, sym := range strings.Split(list, ",") {
			if !t.validSymbol(sym) {
				_ = c.Close(engine.StatusPolicyViolation, "unknown symbol "+strconv.Quote(sym))
				return
			}
			topics = append(topics, strings.Clone(sym))
		}
	} else {
		topics = make([]string, t.opts.Symbols)
		for k := range topics {
			topics[k] = symbol(k)
		}
	}
	if err := t.hub.Subscribe(c, topics...); err != nil {
		_ = c.Close(engine.StatusInternalError, "subscribe failed")
	}
}

func (t *Ticker) validSymbol(sym string) bool {
	k, err := strconv.Atoi(strings.TrimPrefix(sym, "S"))
	return strings.HasPrefix(sym, "S") && err == nil && k >= 0 && k < t.opts.Symbols && sym == symbol(k)
}

func symbol(k int) string { return "S" + strconv.Itoa(k) }

// publish runs the ticks until stop is closed: every tick, each symbol's
// price takes a random step and one message per symbol goes out in one
// batch.
func (t *Ticker) publish(stop <-chan struct{}) {
	ticks, _ := NewTicksOf(t.opts.Symbols, t.opts.Size, t.opts.Payload) // checked by New
	clusterDown := false
	tick := time.NewTicker(t.opts.Interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		var busErr *broadcast.BusError
		msgs := ticks.Next(time.Now().UnixNano())
		err := t.hub.PublishBatch(msgs)
		// The protocol's copy of the tick goes second, so that the bench
		// contract's subscribers never wait for it; a broker-held history
		// takes it on another goroutine (a round trip to the broker).
		t.sendProtocol(msgs)
		switch {
		case errors.As(err, &busErr):
			// Local clients got the tick; tell the operator once that the
			// cluster does not, and once that it does again.
			if !clusterDown {
				clusterDown = true
				t.log.Warn("ticks reach local clients only: the cluster does not take them", "err", busErr.Err)
			}
		case err != nil:
			t.log.Warn("publish", "err", err)
		case clusterDown:
			clusterDown = false
			t.log.Info("ticks reach the cluster again")
		}
	}
}

// Ticks makes the ticker's messages: one text message per symbol and tick,
// in the bench contract's format (see appendTick), with each symbol's
// sequence number going up by one every tick and its price taking a small
// random step. The ticker publishes them, and so can a process that serves
// nobody and only publishes to a cluster (nats/cmd/tickpub). Not safe for
// concurrent use.
type Ticks struct {
	size    int
	book    bool
	seq     []int64
	price   []float64
	names   []string
	msgs    []broadcast.Message
	offsets []int
	arena   []byte
}

// NewTicksOf makes ticks of symbols symbols of about size bytes each,
// filled with payload: book.Pad (the default, also "") pads the price
// with x; book.Book is an order-book snapshot whose numbers change every
// tick, which compresses like real market data, so that bytes measured
// with permessage-deflate mean something.
func NewTicksOf(symbols, size int, payload string) (*Ticks, error) {
	isBook, err := book.IsBook(payload)
	if err != nil {
		return nil, err
	}
	t := NewTicks(symbols, size)
	t.book = isBook
	return t, nil
}

// NewTicks makes ticks of symbols symbols (topics S0 to S<symbols-1>) of
// about size bytes each, padded with PayloadPad.
func NewTicks(symbols, size int) *Ticks {
	t := &Ticks{size: size, seq: make([]int64, symbols), price: make([]float64, symbols),
		names: make([]string, symbols), msgs: make([]broadcast.Message, symbols), offsets: make([]int, 0, symbols+1)}
	for k := range t.price {
		t.price[k] = 100 + float64(k%50)
		t.names[k] = symbol(k)
	}
	return t
}

// Next returns the next tick, one message per symbol, stamped with now
// (Unix ns) as its publish time. The messages and their data are valid
// until the next call.
func (t *Ticks) Next(now int64) []broadcast.Message {
	t.arena, t.offsets = t.arena[:0], t.offsets[:0]
	for k := range t.seq {
		t.seq[k]++
		t.offsets = append(t.offsets, len(t.arena))
		if t.book {
			t.arena = book.Append(t.arena, k, uint64(t.seq[k]), now, t.size)
			continue
		}
		t.price[k] *= 1 + (rand.Float64()-0.5)*0.004
		t.arena = appendTick(t.arena, t.names[k], t.seq[k], now, t.price[k], t.size)
	}
	t.offsets = append(t.offsets, len(t.arena))
	for k := range t.msgs {
		t.msgs[k] = broadcast.Message{Topic: t.names[k], Type: engine.TextMessage, Data: t.arena[t.offsets[k]:t.offsets[k+1]]}
	}
	return t.msgs
}

// appendTick appends one tick message, padded to about size bytes:
// {"sym":"S3","seq":12,"ts":1700000000000000000,"px":101.2345,"pad":"..."}
func appendTick(dst []byte, sym string, seq, ts int64, px float64, size int) []byte {
	start := len(dst)
	dst = append(dst, `{"sym":"`...)
	dst = append(dst, sym...)
	dst = append(dst, `","seq":`...)
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	dst = append(dst, `,"px":`...)
	dst = strconv.AppendFloat(dst, px, 'f', 4, 64)
	const padOverhead = len(`,"pad":""}`)
	if pad := size - (len(dst) - start) - padOverhead; pad > 0 {
		dst = append(dst, `,"pad":"`...)
		for i := 0; i < pad; i++ {
			dst = append(dst, 'x')
		}
		dst = append(dst, `"`...)
	}
	return append(dst, '}')
}

// serveStats reports the server's, the hub's and the cluster's counters as
// JSON.
func (t *Ticker) serveStats(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	stats := map[string]any{
		"server":   t.srv.Stats(),
		"hub":      t.hub.Stats(),
		"symbols":  t.opts.Symbols,
		"interval": t.opts.Interval.String(),
		"publish":  t.opts.Publish,
		// Which process answered: processes of a cluster may share one
		// port (-reuseport).
		"pid": os.Getpid(),
	}
	if t.cluster != nil {
		stats["cluster"] = t.cluster.Report()
	}
	stats["history"] = t.historyReport()
	_ = json.NewEncoder(w).Encode(stats)
}
