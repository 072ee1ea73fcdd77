package main

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
)

//go:embed web
var webFiles embed.FS

// options are the bench contract's flags.
type options struct {
	addr     string
	interval time.Duration
	symbols  int
	size     int
	loops    int
	// budget and highWater bound what slow clients cost (see main's flags).
	budget     int64
	highWater  int
	sendBuffer int
}

// ticker is the example's server: a hub with one topic per symbol and a
// publisher that updates every symbol each tick.
type ticker struct {
	engine.BaseHandler
	opts options
	srv  *engine.Server
	hub  *broadcast.Hub
	log  *slog.Logger
}

func newTicker(opts options, logger *slog.Logger) (*ticker, error) {
	if opts.symbols < 1 || opts.symbols > 100000 {
		return nil, fmt.Errorf("-symbols must be between 1 and 100000, not %d", opts.symbols)
	}
	if opts.interval <= 0 {
		return nil, fmt.Errorf("-interval must be positive, not %v", opts.interval)
	}
	t := &ticker{opts: opts, log: logger}
	mux := http.NewServeMux()
	web, _ := fs.Sub(webFiles, "web")
	mux.Handle("GET /", http.FileServerFS(web))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /stats", t.serveStats)
	srv, err := engine.New(engine.Config{
		Addr:             opts.addr,
		Loops:            opts.loops,
		MaxOutboundTotal: opts.budget,
		SocketSendBuffer: opts.sendBuffer,
		HTTPHandler:      mux,
		Logger:           logger,
	}, t)
	if err != nil {
		return nil, err
	}
	t.srv = srv
	// A ticker only cares about the newest price: a subscriber that falls
	// behind gets the latest per symbol once it catches up.
	if t.hub, err = broadcast.New(srv, broadcast.Options{Policy: broadcast.Conflate, HighWater: opts.highWater}); err != nil {
		return nil, err
	}
	return t, nil
}

// OnOpen subscribes the connection to every symbol, or to those listed in
// ?symbols=S0,S3.
func (t *ticker) OnOpen(c *engine.Conn) {
	req := c.Request()
	if req.Path != "/ws" {
		_ = c.Close(engine.StatusPolicyViolation, "the ticker is at /ws")
		return
	}
	var topics []string
	if list := req.Query().Get("symbols"); list != "" {
		for _, sym := range strings.Split(list, ",") {
			if !t.validSymbol(sym) {
				_ = c.Close(engine.StatusPolicyViolation, "unknown symbol "+strconv.Quote(sym))
				return
			}
			topics = append(topics, sym)
		}
	} else {
		topics = make([]string, t.opts.symbols)
		for k := range topics {
			topics[k] = symbol(k)
		}
	}
	if err := t.hub.Subscribe(c, topics...); err != nil {
		_ = c.Close(engine.StatusInternalError, "subscribe failed")
	}
}

func (t *ticker) validSymbol(sym string) bool {
	k, err := strconv.Atoi(strings.TrimPrefix(sym, "S"))
	return strings.HasPrefix(sym, "S") && err == nil && k >= 0 && k < t.opts.symbols && sym == symbol(k)
}

func symbol(k int) string { return "S" + strconv.Itoa(k) }

// publish runs the ticks until stop is closed: every tick, each symbol's
// price takes a random step and one message per symbol goes out in one
// batch.
func (t *ticker) publish(stop <-chan struct{}) {
	n := t.opts.symbols
	seq := make([]int64, n)
	price := make([]float64, n)
	names := make([]string, n)
	for k := range price {
		price[k] = 100 + float64(k%50)
		names[k] = symbol(k)
	}
	msgs := make([]broadcast.Message, n)
	offsets := make([]int, 0, n+1)
	var arena []byte
	tick := time.NewTicker(t.opts.interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		arena, offsets = arena[:0], offsets[:0]
		now := time.Now().UnixNano() // the batch's publish time
		for k := 0; k < n; k++ {
			seq[k]++
			price[k] *= 1 + (rand.Float64()-0.5)*0.004
			offsets = append(offsets, len(arena))
			arena = appendTick(arena, names[k], seq[k], now, price[k], t.opts.size)
		}
		offsets = append(offsets, len(arena))
		for k := 0; k < n; k++ {
			msgs[k] = broadcast.Message{Topic: names[k], Type: engine.TextMessage, Data: arena[offsets[k]:offsets[k+1]]}
		}
		if err := t.hub.PublishBatch(msgs); err != nil {
			t.log.Warn("publish", "err", err)
		}
	}
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

// serveStats reports the server's and the hub's counters as JSON.
func (t *ticker) serveStats(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"server":   t.srv.Stats(),
		"hub":      t.hub.Stats(),
		"symbols":  t.opts.symbols,
		"interval": t.opts.interval.String(),
	})
}
