// Package broadcast is herald's sharded publish/subscribe hub: it pushes
// messages to every connection subscribed to a topic.
//
// The hub keeps one shard per event loop. A connection's subscriptions live
// in the shard of the loop that serves it, and only that loop touches them,
// so delivery needs no lock. Publish encodes each message into a WebSocket
// frame once, posts one task per loop for the whole batch (never a write
// task per connection), and each loop then writes every subscriber's frames
// of the batch with one write: with K topics updated per tick a subscriber
// costs one syscall per tick, not K.
//
// A subscriber whose unread backlog passes Options.HighWater is a slow
// consumer; the topic's Policy decides what it gets: newest messages
// dropped, messages conflated to the latest per topic until it drains, or
// the connection closed. The others never wait for it.
package broadcast

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/gobwas/ws"
	"github.com/valyala/bytebufferpool"

	"github.com/heraldws/herald/codec"
	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/pool"
)

// Policy is what a topic does for a subscriber that is not reading fast
// enough (its backlog is over Options.HighWater).
type Policy uint8

// Slow-consumer policies.
const (
	// CloseSlow closes the connection with 1013 (try again later): the
	// client reconnects and resumes, nothing is silently lost. The default.
	CloseSlow Policy = iota
	// DropNewest skips the messages that arrive while the subscriber is
	// slow, and counts them.
	DropNewest
	// Conflate keeps only the latest message per topic while the subscriber
	// is slow and sends those once it drains below Options.LowWater: what a
	// ticker wants, where only the newest price matters.
	Conflate
)

func (p Policy) String() string {
	switch p {
	case CloseSlow:
		return "close"
	case DropNewest:
		return "drop-newest"
	case Conflate:
		return "conflate"
	}
	return fmt.Sprintf("Policy(%d)", p)
}

// Default thresholds.
const (
	DefaultHighWater = 1 << 20
	MaxTopicLen      = 256
)

// Options configures a Hub. Zero values take defaults.
type Options struct {
	// HighWater is the unread backlog, in bytes, above which a subscriber is
	// slow. It must stay below the server's MaxOutboundBytes, which closes
	// any connection outright. Default 1 MiB.
	HighWater int
	// LowWater is the backlog below which a slow subscriber counts as
	// drained again. Default HighWater/4.
	LowWater int
	// Policy applies to topics without their own (SetPolicy).
	Policy Policy
	// Bus, if set, carries every publish to other processes or nodes; their
	// publishes arrive through Hub.Deliver.
	Bus Bus
}

// Message is one message to publish.
type Message struct {
	Topic string
	Type  engine.MessageType
	Data  []byte
}

// Errors returned by the hub.
var (
	ErrInvalidTopic = errors.New("broadcast: invalid topic name")
	ErrInvalidType  = errors.New("broadcast: message type must be text or binary")
)

// Hub is a sharded pub/sub hub bound to one server. All its methods are safe
// from any goroutine.
type Hub struct {
	srv  *engine.Server
	opts Options

	mu       sync.RWMutex
	topics   map[string]*topic // topics with at least one subscriber
	policies map[string]Policy // set by SetPolicy, kept while topics come and go

	shardMu sync.Mutex
	shards  atomic.Pointer[[]*shard] // indexed by engine.Loop.Index

	published atomic.Uint64
}

// topic is the hub-wide record of a topic: its policy and how many
// subscribers it has across loops.
type topic struct {
	name   string
	policy atomic.Uint32 // a Policy; SetPolicy may change it while loops deliver
	subs   atomic.Int64
}

// New returns a hub that delivers to srv's connections. Call it before
// srv.Start: it registers the hook that drops a closed connection's
// subscriptions.
func New(srv *engine.Server, opts Options) *Hub {
	if opts.HighWater <= 0 {
		opts.HighWater = DefaultHighWater
	}
	if opts.LowWater <= 0 || opts.LowWater > opts.HighWater {
		opts.LowWater = opts.HighWater / 4
	}
	h := &Hub{srv: srv, opts: opts, topics: make(map[string]*topic)}
	empty := []*shard{}
	h.shards.Store(&empty)
	srv.OnConnClose(h.forget)
	if opts.Bus != nil {
		opts.Bus.Attach(h)
	}
	return h
}

// ValidTopic reports whether name can be a topic: 1 to 256 bytes of
// printable ASCII without spaces.
func ValidTopic(name string) bool {
	if len(name) == 0 || len(name) > MaxTopicLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		if b := name[i]; b <= ' ' || b >= 0x7f {
			return false
		}
	}
	return true
}

// SetPolicy sets the slow-consumer policy of a topic. It applies to
// deliveries from then on.
func (h *Hub) SetPolicy(name string, p Policy) error {
	if !ValidTopic(name) {
		return ErrInvalidTopic
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.policies == nil {
		h.policies = make(map[string]Policy)
	}
	h.policies[name] = p
	if t := h.topics[name]; t != nil {
		t.policy.Store(uint32(p))
	}
	return nil
}

// Subscribe adds c to the topics. From c's loop (a handler) it takes effect
// at once; from another goroutine it is queued to the loop, in order with
// c's other operations.
func (h *Hub) Subscribe(c *engine.Conn, topics ...string) error {
	for _, t := range topics {
		if !ValidTopic(t) {
			return fmt.Errorf("%w: %q", ErrInvalidTopic, t)
		}
	}
	return h.onLoop(c, func() { h.shardFor(c.Loop()).subscribe(c, topics) })
}

// Unsubscribe removes c from the topics. Unknown topics are ignored.
func (h *Hub) Unsubscribe(c *engine.Conn, topics ...string) error {
	return h.onLoop(c, func() { h.shardFor(c.Loop()).unsubscribe(c, topics) })
}

func (h *Hub) onLoop(c *engine.Conn, fn func()) error {
	if c.Loop().OnLoop() {
		fn()
		return nil
	}
	return c.Loop().Post(fn)
}

// Subscribers returns how many connections are subscribed to a topic.
func (h *Hub) Subscribers(name string) int {
	h.mu.RLock()
	t := h.topics[name]
	h.mu.RUnlock()
	if t == nil {
		return 0
	}
	return int(t.subs.Load())
}

// Topics returns how many topics have subscribers.
func (h *Hub) Topics() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.topics)
}

// Publish sends one message to every subscriber of topic, and to the Bus if
// there is one.
func (h *Hub) Publish(topic string, typ engine.MessageType, data []byte) error {
	return h.PublishBatch([]Message{{Topic: topic, Type: typ, Data: data}})
}

// PublishBatch sends several messages at once: each loop gets one task for
// the batch and each subscriber one write for all of its messages in it.
// Within a batch, and between batches from one goroutine, every subscriber
// receives messages in publish order.
func (h *Hub) PublishBatch(msgs []Message) error {
	for i := range msgs {
		if !ValidTopic(msgs[i].Topic) {
			return fmt.Errorf("%w: %q", ErrInvalidTopic, msgs[i].Topic)
		}
		if t := msgs[i].Type; t != engine.TextMessage && t != engine.BinaryMessage {
			return ErrInvalidType
		}
	}
	if h.opts.Bus != nil {
		if err := h.opts.Bus.Publish(msgs); err != nil {
			return fmt.Errorf("broadcast: bus: %w", err)
		}
	}
	h.deliver(msgs)
	return nil
}

// Deliver hands the hub messages published elsewhere (by a Bus) for local
// subscribers only; it does not forward them to the Bus again.
func (h *Hub) Deliver(msgs []Message) {
	h.deliver(msgs)
}

// deliver encodes the batch once and posts it to every loop that has
// subscribers.
func (h *Hub) deliver(msgs []Message) {
	h.published.Add(uint64(len(msgs)))
	b := getBatch()
	h.mu.RLock()
	for i := range msgs {
		m := &msgs[i]
		t := h.topics[m.Topic]
		if t == nil || t.subs.Load() == 0 {
			continue // nobody listens: don't even encode
		}
		start := len(b.buf.B)
		b.buf.B = codec.AppendFrame(b.buf.B, ws.OpCode(m.Type), m.Data)
		b.items = append(b.items, item{topic: t, start: int32(start), end: int32(len(b.buf.B))})
	}
	h.mu.RUnlock()
	if len(b.items) == 0 {
		b.release()
		return
	}
	b.refs.Store(1) // the publisher's own reference
	for _, sh := range *h.shards.Load() {
		if sh == nil || sh.subscribed.Load() == 0 {
			continue
		}
		b.refs.Add(1)
		if err := sh.loop.Post(sh.task(b)); err != nil {
			b.release()
		}
	}
	b.release()
}

// shardFor returns the shard of a loop, creating it on first use. Loops are
// few and live as long as the server, so shards are never removed.
func (h *Hub) shardFor(l *engine.Loop) *shard {
	i := l.Index()
	if shards := *h.shards.Load(); i < len(shards) && shards[i] != nil {
		return shards[i]
	}
	h.shardMu.Lock()
	defer h.shardMu.Unlock()
	shards := *h.shards.Load()
	if i < len(shards) && shards[i] != nil {
		return shards[i]
	}
	// Slots of loops that have not subscribed anyone yet stay nil.
	grown := make([]*shard, max(len(shards), i+1))
	copy(grown, shards)
	grown[i] = newShard(h, l)
	h.shards.Store(&grown)
	return grown[i]
}

// join records a new subscriber of name hub-wide and returns the topic.
func (h *Hub) join(name string) *topic {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.topics[name]
	if t == nil {
		t = &topic{name: name}
		t.policy.Store(uint32(h.opts.Policy))
		if p, ok := h.policies[name]; ok {
			t.policy.Store(uint32(p))
		}
		h.topics[name] = t
	}
	t.subs.Add(1)
	return t
}

// leave records that a subscriber of t has gone; the last one removes the
// topic, so an idle topic costs nothing.
func (h *Hub) leave(t *topic) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t.subs.Add(-1) == 0 && h.topics[t.name] == t {
		delete(h.topics, t.name)
	}
}

// forget drops every subscription of a closing connection. It runs on the
// connection's loop (engine close hook).
func (h *Hub) forget(c *engine.Conn) {
	shards := *h.shards.Load()
	if i := c.Loop().Index(); i < len(shards) && shards[i] != nil {
		shards[i].drop(c)
	}
}

// pool of batches: a batch is shared by all loops and goes back to the pool
// when the last one is done with it.
var batches = sync.Pool{New: func() any { return new(batch) }}

type batch struct {
	buf   *bytebufferpool.ByteBuffer
	items []item
	refs  atomic.Int32
}

type item struct {
	topic      *topic
	start, end int32
}

// itemsIn returns the items whose frames fill bytes [start, end) of the
// buffer: a run queued for a subscriber. Items are in buffer order.
func (b *batch) itemsIn(start, end int32) []item {
	i := sort.Search(len(b.items), func(i int) bool { return b.items[i].start >= start })
	j := i
	for j < len(b.items) && b.items[j].start < end {
		j++
	}
	return b.items[i:j]
}

func getBatch() *batch {
	b := batches.Get().(*batch)
	b.buf = pool.Get(512)
	return b
}

func (b *batch) release() {
	if b.refs.Add(-1) > 0 {
		return
	}
	pool.Put(b.buf)
	b.buf = nil
	clear(b.items)
	b.items = b.items[:0]
	batches.Put(b)
}
