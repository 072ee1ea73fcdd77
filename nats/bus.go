package nats

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/nats/internal/wire"
)

// Defaults of Options.
const (
	DefaultPrefix          = "herald"
	DefaultReconnectBuffer = 8 << 20 // nats.go's own default
	DefaultWriteTimeout    = 5 * time.Second
	DefaultReceiveQueue    = 8192
)

// Options configures a Bus. Zero values take defaults.
type Options struct {
	// URL is the broker to connect to; several, comma-separated, are a
	// cluster. Default nats.DefaultURL (nats://127.0.0.1:4222).
	URL string
	// Prefix is the subject prefix: a topic travels on Prefix + "." +
	// topic. Hubs that share a prefix form one cluster. Default "herald".
	Prefix string
	// Wildcard makes the node subscribe to every topic under Prefix with
	// one subscription, instead of only to the topics it has local
	// subscribers of. Worth it when every node has subscribers of nearly
	// every topic anyway.
	Wildcard bool
	// ReconnectBuffer bounds, in bytes, what publishes the connection holds
	// while the broker is away; they go out when it comes back. A publish
	// that finds it full fails. Negative: hold nothing, fail at once.
	// Default 8 MiB.
	ReconnectBuffer int
	// WriteTimeout bounds a write to the broker's socket, and so how long
	// Publish can wait for a broker that does not read; past it the
	// connection counts as lost and reconnects. Default 5 s.
	WriteTimeout time.Duration
	// ReceiveQueue is how many messages from the broker may wait for
	// delivery to the hub. Past it, the broker's messages are dropped and
	// counted as a slow-consumer event (Stats.SlowConsumer). Its memory is
	// at most ReceiveQueue × the broker's max_payload. Default 8192.
	ReceiveQueue int
	// Logger receives the bus's notices: broker connection lost and back,
	// slow-consumer events, messages refused for their wire format. Default
	// slog.Default().
	Logger *slog.Logger
	// NATS are more options for the connection: credentials, TLS, a name,
	// reconnect pacing. They are applied after the bus's defaults, so they
	// may override them, but before what the bus depends on (NoEcho and its
	// event handlers), which they cannot.
	NATS []nats.Option

	// pause, if set, runs before each delivery to the hub: tests stall the
	// receiver with it.
	pause func()
}

// fill checks opts and sets the defaults.
func (o *Options) fill() error {
	if o.URL == "" {
		o.URL = nats.DefaultURL
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if err := CheckTopic(o.Prefix); err != nil {
		return fmt.Errorf("herald/nats: Options.Prefix: %w", err)
	}
	switch {
	case o.ReconnectBuffer == 0:
		o.ReconnectBuffer = DefaultReconnectBuffer
	case o.ReconnectBuffer < 0:
		o.ReconnectBuffer = -1 // nats.go: a publish while reconnecting fails at once
	}
	switch {
	case o.WriteTimeout == 0:
		o.WriteTimeout = DefaultWriteTimeout
	case o.WriteTimeout < 0:
		return fmt.Errorf("herald/nats: Options.WriteTimeout is negative (%v): use 0 for the default", o.WriteTimeout)
	}
	switch {
	case o.ReceiveQueue == 0:
		o.ReceiveQueue = DefaultReceiveQueue
	case o.ReceiveQueue < 0:
		return fmt.Errorf("herald/nats: Options.ReceiveQueue is negative (%d): use 0 for the default", o.ReceiveQueue)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// ErrClosed is returned by a Bus's methods after Close.
var ErrClosed = errors.New("herald/nats: bus is closed")

// Bus is a broadcast.Bus over a NATS broker: give it to one hub in
// broadcast.Options.Bus. It publishes the hub's batches on NATS and delivers
// what other nodes publish to the hub, subscribing only to the topics the
// hub has local subscribers of (it is a broadcast.InterestBus) unless
// Options.Wildcard. The package documentation describes the wire format.
// All methods are safe from any goroutine.
type Bus struct {
	nc   *nats.Conn
	opts Options
	log  *slog.Logger
	subj wire.Subjects
	hub  atomic.Pointer[broadcast.Hub]

	inbox chan *nats.Msg // every subscription feeds it, in the broker's order

	// Interest changes not yet applied, latest state per topic; the
	// reconciler applies them (interest.go).
	mu      sync.Mutex
	changes map[string]bool
	wake    chan struct{}
	syncs   chan chan struct{}

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	stats counters
}

// Connect connects to the broker and returns a Bus ready to be given to
// broadcast.New. It fails if the broker cannot be reached now; once
// connected, the connection is re-established forever after a loss.
func Connect(opts Options) (*Bus, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	b := &Bus{
		opts:    opts,
		log:     opts.Logger,
		subj:    wire.NewSubjects(opts.Prefix),
		inbox:   make(chan *nats.Msg, opts.ReceiveQueue),
		changes: make(map[string]bool),
		wake:    make(chan struct{}, 1),
		syncs:   make(chan chan struct{}),
		done:    make(chan struct{}),
	}
	natsOpts := []nats.Option{
		nats.Name("herald"),
		// A server keeps trying: its local delivery never depended on the
		// broker, and its cluster comes back with it.
		nats.MaxReconnects(-1),
		nats.ReconnectBufSize(opts.ReconnectBuffer),
		nats.FlusherTimeout(opts.WriteTimeout),
	}
	natsOpts = append(natsOpts, opts.NATS...)
	natsOpts = append(natsOpts,
		// The hub delivered its own publishes locally: the broker must not
		// send them back.
		nats.NoEcho(),
		nats.DisconnectErrHandler(b.onDisconnect),
		nats.ReconnectHandler(b.onReconnect),
		nats.ClosedHandler(b.onClosed),
		nats.ErrorHandler(b.onAsyncError),
	)
	nc, err := nats.Connect(opts.URL, natsOpts...)
	if err != nil {
		return nil, fmt.Errorf("herald/nats: connect to %s: %w", opts.URL, err)
	}
	b.nc = nc
	b.wg.Add(2)
	go b.reconcileLoop()
	go b.receiveLoop()
	return b, nil
}

// Attach is called by broadcast.New with the hub the Bus serves. A Bus
// serves one hub; attaching a second panics.
func (b *Bus) Attach(h *broadcast.Hub) {
	if !b.hub.CompareAndSwap(nil, h) {
		panic("herald/nats: Attach: a Bus serves one hub, and this one is attached already")
	}
	if b.opts.Wildcard {
		// One subscription for every topic and batch under the prefix:
		// subjects never overlap, so nothing arrives twice.
		if _, err := b.nc.ChanSubscribe(b.subj.All(), b.inbox); err != nil {
			b.log.Error("herald/nats: cannot subscribe", "subject", b.subj.All(), "err", err)
			return
		}
		b.stats.subscriptions.Store(1)
	}
}

// Close stops receiving and closes the broker connection, sending what it
// still buffers. The hub keeps delivering locally; publishes fail with the
// connection closed.
func (b *Bus) Close() error {
	b.closeOnce.Do(func() {
		close(b.done)
		b.wg.Wait()
		b.nc.Close()
	})
	return nil
}

// Connection lifecycle, from nats.go's handler goroutine.

func (b *Bus) onDisconnect(_ *nats.Conn, err error) {
	b.stats.disconnects.Add(1)
	b.log.Warn("herald/nats: broker connection lost; local delivery continues, publishes are held until it returns",
		"err", err, "reconnect_buffer_bytes", b.opts.ReconnectBuffer)
}

func (b *Bus) onReconnect(nc *nats.Conn) {
	b.stats.reconnects.Add(1)
	b.log.Info("herald/nats: broker connection back; subscriptions restored", "url", nc.ConnectedUrlRedacted())
}

func (b *Bus) onClosed(*nats.Conn) {
	b.log.Info("herald/nats: broker connection closed")
}

func (b *Bus) onAsyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrSlowConsumer) {
		b.stats.slowConsumer.Add(1)
		subject := ""
		if sub != nil {
			subject = sub.Subject
		}
		b.log.Warn("herald/nats: slow consumer: the receive queue is full, messages from the broker were dropped",
			"subject", subject, "receive_queue", cap(b.inbox))
		return
	}
	b.log.Error("herald/nats: broker error", "err", err)
}
