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
// A connection that negotiated permessage-deflate gets each message of
// Config.Compression.MinSize or more compressed: the hub compresses a
// message once per publish, into a compressed twin of the batch, and only
// when one of the topic's subscribers negotiated the extension. However
// many subscribers take it, a message is compressed once.
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
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/valyala/bytebufferpool"

	"github.com/heraldws/herald/codec"
	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/internal/looplink"
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

// String returns the policy's name: "close", "drop-newest" or "conflate".
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
	// DefaultHighWater is Options.HighWater when it is left zero: 64 KiB
	// beyond what the kernel's socket buffers already hold, as
	// uWebSockets' maxBackpressure. A ticker's slow subscriber then
	// conflates within a few ticks instead of buffering a megabyte.
	DefaultHighWater = 64 << 10
	// MaxTopicLen is the longest topic name, in bytes.
	MaxTopicLen = 256
)

// Options configures a Hub. Zero values take defaults.
type Options struct {
	// HighWater is the unread backlog, in bytes, above which a subscriber is
	// slow. It must be below the server's MaxOutboundBytes, which closes
	// any connection outright: New refuses a HighWater the hub's policy
	// could never act on. Default 64 KiB (or half of MaxOutboundBytes, if
	// that is smaller). While the server's outbound budget
	// (engine.Config.MaxOutboundTotal) is used up, any backlog counts as
	// over HighWater.
	HighWater int
	// LowWater is the backlog at or below which a slow subscriber counts as
	// drained again; it then gets the conflated latest messages. It must
	// not exceed HighWater. Default HighWater/4. A subscriber that the
	// outbound budget made slow with less than LowWater must also have
	// written out half of that backlog: one that reads nothing stays slow
	// when others' closes free part of the budget.
	LowWater int
	// Policy applies to topics without their own (SetPolicy).
	Policy Policy
	// Bus, if set, carries every publish to other processes or nodes; their
	// publishes arrive through Hub.Deliver.
	Bus Bus
}

// Message is one message to publish.
type Message struct {
	// Topic names who gets it: every connection subscribed to it.
	Topic string
	// Type is engine.TextMessage (Data must be valid UTF-8) or
	// engine.BinaryMessage.
	Type engine.MessageType
	// Data is the payload. The hub encodes it before Publish returns, so
	// the caller may reuse it then.
	Data []byte
}

// Errors returned by the hub. A publish after the server's Shutdown returns
// an error wrapping engine.ErrClosed.
var (
	ErrInvalidTopic = errors.New("broadcast: invalid topic name")
	ErrInvalidType  = errors.New("broadcast: message type must be text or binary")
	ErrInvalidUTF8  = errors.New("broadcast: text message is not valid UTF-8")
)

// Hub is a sharded pub/sub hub bound to one server. All its methods are safe
// from any goroutine.
type Hub struct {
	srv      looplink.Server
	opts     Options
	interest InterestBus // opts.Bus, if it wants to know the local topics

	mu       sync.RWMutex
	topics   map[string]*topic // topics with at least one subscriber
	policies map[string]Policy // set by SetPolicy, kept while topics come and go

	shardMu sync.Mutex
	shards  atomic.Pointer[[]*shard] // indexed by the loop's Index

	published, compressed atomic.Uint64

	// Topic configurations and histories (history.go): histOn is set once
	// SetHistory has configured a pattern, and hs is then set.
	histOn   atomic.Bool
	histInit sync.Once
	hs       *histState
}

// topic is the hub-wide record of a topic: its policy and how many
// subscribers it has across loops, and how many of those negotiated
// permessage-deflate (its messages then get a compressed twin).
type topic struct {
	name        string
	policy      atomic.Uint32 // a Policy; SetPolicy may change it while loops deliver
	subs        atomic.Int64
	deflateSubs atomic.Int64
}

// New returns a hub that delivers to srv's connections, or an error naming
// the option that is out of range. It may be called before or after
// srv.Start.
func New(srv *engine.Server, opts Options) (*Hub, error) {
	if srv == nil {
		return nil, errors.New("broadcast: New: nil server")
	}
	link := looplink.ServerOf(srv)
	maxOut := link.MaxOutboundBytes()
	switch {
	case opts.HighWater < 0:
		return nil, fmt.Errorf("broadcast: Options.HighWater is negative (%d): use 0 for the default", opts.HighWater)
	case opts.LowWater < 0:
		return nil, fmt.Errorf("broadcast: Options.LowWater is negative (%d): use 0 for the default", opts.LowWater)
	case opts.HighWater >= maxOut:
		return nil, fmt.Errorf("broadcast: Options.HighWater (%d) must be below the server's MaxOutboundBytes (%d), which closes a connection before the topic's policy could act",
			opts.HighWater, maxOut)
	case opts.Policy > Conflate:
		return nil, fmt.Errorf("broadcast: Options.Policy %v is not a policy", opts.Policy)
	}
	if opts.HighWater == 0 {
		opts.HighWater = min(DefaultHighWater, maxOut/2)
	}
	switch {
	case opts.LowWater == 0:
		opts.LowWater = opts.HighWater / 4
	case opts.LowWater > opts.HighWater:
		return nil, fmt.Errorf("broadcast: Options.LowWater (%d) is above Options.HighWater (%d)", opts.LowWater, opts.HighWater)
	}
	h := &Hub{srv: link, opts: opts, topics: make(map[string]*topic)}
	empty := []*shard{}
	h.shards.Store(&empty)
	link.OnConnClose(h.forget)
	if opts.Bus != nil {
		h.interest, _ = opts.Bus.(InterestBus)
		opts.Bus.Attach(h)
	}
	return h, nil
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
		return fmt.Errorf("%w: %q", ErrInvalidTopic, name)
	}
	if p > Conflate {
		return fmt.Errorf("broadcast: SetPolicy: %v is not a policy", p)
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
// c's other operations. Subscriptions made in OnOpen, on the loop or on a
// worker, are in effect before the client can read the 101, so a client
// that connects and then triggers a publish receives it.
func (h *Hub) Subscribe(c *engine.Conn, topics ...string) error {
	for _, t := range topics {
		if !ValidTopic(t) {
			return fmt.Errorf("%w: %q", ErrInvalidTopic, t)
		}
	}
	lc := looplink.ConnOf(c)
	return h.onLoop(lc, func() { h.shardFor(lc.Loop()).subscribe(lc, topics) })
}

// Unsubscribe removes c from the topics. Unknown topics are ignored.
func (h *Hub) Unsubscribe(c *engine.Conn, topics ...string) error {
	lc := looplink.ConnOf(c)
	return h.onLoop(lc, func() { h.shardFor(lc.Loop()).unsubscribe(lc, topics) })
}

func (h *Hub) onLoop(c looplink.Conn, fn func()) error {
	l := c.Loop()
	if l.OnLoop() {
		fn()
		return nil
	}
	return l.Post(fn)
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
// there is one. A text message must be valid UTF-8. After the server's
// Shutdown it returns an error wrapping engine.ErrClosed. If the Bus
// refuses the message, it is still delivered locally and the error is a
// *BusError.
func (h *Hub) Publish(topic string, typ engine.MessageType, data []byte) error {
	return h.PublishBatch([]Message{{Topic: topic, Type: typ, Data: data}})
}

// PublishBatch sends several messages at once: each loop gets one task for
// the batch and each subscriber one write for all of its messages in it.
// Within a batch, and between batches from one goroutine, every subscriber
// receives messages in publish order. The Bus, if any, gets the batch as
// one call; if it refuses it, the error is a *BusError and the batch has
// been delivered locally all the same.
func (h *Hub) PublishBatch(msgs []Message) error {
	if err := checkBatch(msgs); err != nil {
		return err
	}
	if h.srv.Closed() {
		return fmt.Errorf("broadcast: publish: %w", engine.ErrClosed)
	}
	var seqErr error
	if h.histOn.Load() {
		// Sequenced topics' messages go to their Sequencer, which
		// delivers them everywhere (sequence.go).
		if msgs, seqErr = h.sequence(msgs); len(msgs) == 0 {
			return seqErr
		}
	}
	var busErr error
	if h.opts.Bus != nil {
		// A broker that is away must not stop local delivery: the local
		// subscribers get the batch whatever the Bus says.
		if err := h.opts.Bus.Publish(msgs); err != nil {
			busErr = &BusError{Err: err}
		}
	}
	h.deliverLocal(msgs)
	if seqErr != nil {
		return seqErr
	}
	return busErr
}

// checkBatch validates a batch before anything of it is sent: the whole
// batch is refused if one message is invalid.
func checkBatch(msgs []Message) error {
	for i := range msgs {
		m := &msgs[i]
		if !ValidTopic(m.Topic) {
			return fmt.Errorf("%w: %q", ErrInvalidTopic, m.Topic)
		}
		switch m.Type {
		case engine.TextMessage:
			// Once per publish, not per subscriber: a browser fails the
			// connection on invalid UTF-8.
			if !utf8.Valid(m.Data) {
				return fmt.Errorf("%w (topic %q)", ErrInvalidUTF8, m.Topic)
			}
		case engine.BinaryMessage:
		default:
			return fmt.Errorf("%w (topic %q, type %d)", ErrInvalidType, m.Topic, m.Type)
		}
	}
	return nil
}

// Deliver hands the hub messages published elsewhere (by a Bus) for local
// subscribers only; it does not forward them to the Bus again. Messages are
// validated as by PublishBatch, and the same errors returned.
func (h *Hub) Deliver(msgs []Message) error {
	if err := checkBatch(msgs); err != nil {
		return err
	}
	if h.srv.Closed() {
		return fmt.Errorf("broadcast: deliver: %w", engine.ErrClosed)
	}
	h.deliverLocal(msgs)
	return nil
}

// deliverLocal delivers a validated batch to local subscribers, through
// the topics' configurations (positions, histories, envelopes) if there
// are any.
func (h *Hub) deliverLocal(msgs []Message) {
	if h.histOn.Load() {
		h.publishConfigured(msgs)
		return
	}
	h.deliver(msgs)
}

// deliver encodes the batch once (and its compressed twin once, if a
// subscriber of one of its topics negotiated permessage-deflate) and posts
// it to every loop that has subscribers.
func (h *Hub) deliver(msgs []Message) {
	h.published.Add(uint64(len(msgs)))
	b := getBatch()
	b.at = h.srv.Now()
	h.mu.RLock()
	for i := range msgs {
		t := h.topics[msgs[i].Topic]
		if t == nil || t.subs.Load() == 0 {
			continue // nobody listens: don't even encode
		}
		b.items = append(b.items, item{topic: t, msg: int32(i)})
	}
	h.mu.RUnlock()
	if len(b.items) == 0 {
		b.release()
		return
	}
	// Encoding (compressing above all) happens outside the lock, so that
	// subscribing never waits for it.
	minSize := h.srv.CompressMinSize()
	for k := range b.items {
		it := &b.items[k]
		m := &msgs[it.msg]
		it.start = int32(len(b.buf.B))
		b.buf.B = codec.AppendFrame(b.buf.B, ws.OpCode(m.Type), m.Data)
		it.end = int32(len(b.buf.B))
		if it.topic.deflateSubs.Load() == 0 {
			// No twin: an empty range where the twin would be, so that
			// twins stay in item order (itemsIn).
			if b.zbuf != nil {
				it.zstart = int32(len(b.zbuf.B))
			}
			it.zend = it.zstart
			continue
		}
		if b.zbuf == nil {
			b.zbuf = pool.Get(len(b.buf.B) + 64)
		}
		it.zstart = int32(len(b.zbuf.B))
		if len(m.Data) >= minSize {
			// Compressed once for every deflate subscriber: the smallest
			// frame, whatever it costs, since the bytes are paid per socket.
			b.zbuf.B = codec.AppendSmallestFrame(b.zbuf.B, ws.OpCode(m.Type), m.Data)
			if b.zbuf.B[it.zstart]&rsv1 != 0 {
				h.compressed.Add(1)
			}
		} else {
			// Too small to compress: the plain frame, copied, so that a
			// deflate subscriber's frames of the batch stay one run.
			b.zbuf.B = append(b.zbuf.B, b.buf.B[it.start:it.end]...)
		}
		it.zend = int32(len(b.zbuf.B))
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
func (h *Hub) shardFor(l looplink.Loop) *shard {
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

// join records a new subscriber of name hub-wide, one that negotiated
// permessage-deflate if deflate, and returns the topic.
func (h *Hub) join(name string, deflate bool) *topic {
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
		if h.interest != nil {
			h.interest.Interest(name, true)
		}
	}
	t.subs.Add(1)
	if deflate {
		t.deflateSubs.Add(1)
	}
	return t
}

// leave records that a subscriber of t has gone (one that negotiated
// permessage-deflate if deflate); the last one removes the topic, so an
// idle topic costs nothing.
func (h *Hub) leave(t *topic, deflate bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if deflate {
		t.deflateSubs.Add(-1)
	}
	if t.subs.Add(-1) == 0 && h.topics[t.name] == t {
		delete(h.topics, t.name)
		if h.interest != nil {
			h.interest.Interest(t.name, false)
		}
	}
}

// forget drops every subscription of a closing connection. It runs on the
// connection's loop (engine close hook).
func (h *Hub) forget(c looplink.Conn) {
	shards := *h.shards.Load()
	if i := c.Loop().Index(); i < len(shards) && shards[i] != nil {
		shards[i].drop(c)
	}
}

// rsv1 marks a compressed frame.
const rsv1 = 0x40

// pool of batches: a batch is shared by all loops and goes back to the pool
// when the last one is done with it.
var batches = sync.Pool{New: func() any { return new(batch) }}

// batch is one publish, encoded: buf holds every message's frame, and zbuf,
// when a subscriber of one of its topics negotiated permessage-deflate,
// their compressed twins (or copies of the frames too small to compress).
type batch struct {
	at    time.Duration // the server's clock when it was published
	buf   *bytebufferpool.ByteBuffer
	zbuf  *bytebufferpool.ByteBuffer // nil when no message has a twin
	items []item
	refs  atomic.Int32
}

// item is one message of a batch: its frame is buf[start:end], its twin
// zbuf[zstart:zend] (an empty range when it has none).
type item struct {
	topic        *topic
	msg          int32 // its index in the published batch, while encoding
	start, end   int32
	zstart, zend int32
}

// twin reports whether the item has a frame in zbuf.
func (it *item) twin() bool { return it.zend > it.zstart }

// frames returns the buffer of the plain frames or, with z, of the twins.
func (b *batch) frames(z bool) []byte {
	if z {
		return b.zbuf.B
	}
	return b.buf.B
}

// frameOf returns the item's frame, or its twin with z.
func (b *batch) frameOf(it *item, z bool) []byte {
	if z {
		return b.zbuf.B[it.zstart:it.zend]
	}
	return b.buf.B[it.start:it.end]
}

// itemsIn returns the items whose frames fill bytes [start, end) of the
// buffer (of the twins with z): a run queued for a subscriber. Items are in
// buffer order, in both buffers. Among twins, the slice may hold items
// without one (an empty range inside the run); callers skip them.
func (b *batch) itemsIn(z bool, start, end int32) []item {
	at := func(i int) int32 {
		if z {
			return b.items[i].zstart
		}
		return b.items[i].start
	}
	i := sort.Search(len(b.items), func(i int) bool { return at(i) >= start })
	j := i
	for j < len(b.items) && at(j) < end {
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
	pool.Put(b.zbuf)
	b.buf, b.zbuf = nil, nil
	clear(b.items)
	b.items = b.items[:0]
	batches.Put(b)
}
