package broadcast

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/internal/looplink"
)

// Position is where a message stands in its topic's history: Offset grows
// by one with every message of the topic, and Epoch names the history the
// offsets count in. A new epoch starts whenever a history is lost (the hub
// that held it was restarted, it was reset, or it was forgotten after
// HistoryOptions.IdleTTL), so a position from another epoch cannot be
// resumed from. Offset 0 is "before the first message".
type Position struct {
	Epoch  string
	Offset uint64
}

// Envelope builds what subscribers receive for a message, and what a
// history keeps: it appends to dst a text payload (valid UTF-8) made of the
// message and its position (the zero Position for a topic without history)
// and returns it. It is called once per message, however many subscribers
// take it, with the hub's publish order held: it must be quick and must
// not call into the hub.
type Envelope func(dst []byte, m *Message, pos Position) []byte

// HistoryOptions configures the topics that match a pattern (Hub.SetHistory).
type HistoryOptions struct {
	// Size is how many messages the history of each matching topic keeps,
	// the newest. 0: no history, and no positions (an Envelope alone).
	Size int
	// MaxAge, if positive, forgets messages older than it as well.
	MaxAge time.Duration
	// IdleTTL is how long a history that holds no message (all expired by
	// MaxAge, or none published) and sees no publish is kept before it is
	// forgotten: its next message starts a new epoch. It bounds the memory
	// of topics that come and go. Default 24 hours.
	IdleTTL time.Duration
	// Envelope, if set, wraps every message of the matching topics, with
	// its position, into the text payload subscribers receive (see
	// Envelope). Messages arriving from a Bus are wrapped too, by this
	// hub, with its positions.
	Envelope Envelope
	// Sequencer, if set, gives the topics' messages their positions
	// outside the hub, the same on every node (see Sequencer): a publish
	// goes to it, and it delivers through DeliverSequenced. Requires Size
	// > 0. Until its first message arrives, a topic's history has the
	// empty epoch.
	Sequencer Sequencer
}

// DefaultIdleTTL is HistoryOptions.IdleTTL when left zero.
const DefaultIdleTTL = 24 * time.Hour

// topicConf is one SetHistory pattern.
type topicConf struct {
	pattern string // a topic, or a prefix ending in '*'
	opts    HistoryOptions
}

func (c *topicConf) matches(topic string) bool {
	if p, ok := strings.CutSuffix(c.pattern, "*"); ok {
		return strings.HasPrefix(topic, p)
	}
	return topic == c.pattern
}

// histState is the hub's history state, apart from Hub so that a hub
// without history pays one atomic load per publish for it.
type histState struct {
	mu    sync.RWMutex
	confs []*topicConf        // longest pattern first: the most specific wins
	hists map[string]*history // topics with a history record

	// pubMu orders the publishes of configured topics: offsets are given,
	// histories appended and batches posted to the loops in one order, so
	// that every subscriber receives a topic's messages in offset order.
	pubMu   sync.Mutex
	wrapped []Message // scratch of the publisher holding pubMu
	buf     []byte

	sweepOnce sync.Once
	sequenced atomic.Bool // a configuration has a Sequencer
	now       func() time.Duration

	// totals over all histories, under mu's read side and each history's
	// lock: kept with atomics in the counters below.
	counters histCounters
}

// history is one topic's bounded history: a ring of its newest messages,
// oldest at head, with consecutive offsets ending at next-1.
type history struct {
	mu    sync.RWMutex
	topic string
	epoch string
	next  uint64 // the offset of the next message
	ring  []histEntry
	head  int
	n     int
	last  time.Duration // clock of the last publish (or of creation)
	dead  bool          // forgotten by the sweep: look it up again
}

type histEntry struct {
	at   time.Duration
	typ  engine.MessageType
	data []byte
}

// SetHistory configures the topics that match pattern: an exact topic, or
// a prefix ending in "*" ("prices.*"; "*" alone matches every topic). The
// most specific pattern of a topic applies (an exact topic, else the
// longest prefix). Options with Size 0 and no Envelope remove the
// pattern's configuration, and the histories it gave.
//
// A topic with history gives every message a Position, keeps its newest
// messages (bounded by Size and MaxAge) and lets a subscriber catch up with
// Recover. Publishes of configured topics are ordered hub-wide: offsets,
// histories and deliveries follow one order.
func (h *Hub) SetHistory(pattern string, o HistoryOptions) error {
	if !validPattern(pattern) {
		return fmt.Errorf("%w: pattern %q (a topic, or a prefix ending in the only '*')", ErrInvalidTopic, pattern)
	}
	switch {
	case o.Size < 0:
		return fmt.Errorf("broadcast: HistoryOptions.Size is negative (%d)", o.Size)
	case o.MaxAge < 0:
		return fmt.Errorf("broadcast: HistoryOptions.MaxAge is negative (%v)", o.MaxAge)
	case o.IdleTTL < 0:
		return fmt.Errorf("broadcast: HistoryOptions.IdleTTL is negative (%v)", o.IdleTTL)
	case o.Sequencer != nil && o.Size == 0:
		return errors.New("broadcast: HistoryOptions.Sequencer needs a history (Size > 0)")
	}
	if o.IdleTTL == 0 {
		o.IdleTTL = DefaultIdleTTL
	}
	hs := h.hist()
	hs.mu.Lock()
	defer hs.mu.Unlock()
	kept := hs.confs[:0]
	for _, c := range hs.confs {
		if c.pattern != pattern {
			kept = append(kept, c)
		}
	}
	hs.confs = kept
	if o.Size > 0 || o.Envelope != nil {
		c := &topicConf{pattern: pattern, opts: o}
		i := 0
		for i < len(hs.confs) && specificity(hs.confs[i].pattern) >= specificity(pattern) {
			i++
		}
		hs.confs = append(hs.confs, nil)
		copy(hs.confs[i+1:], hs.confs[i:])
		hs.confs[i] = c
	}
	// Histories whose topic no longer has one are forgotten.
	for name, hi := range hs.hists {
		if c := hs.confFor(name); c == nil || c.opts.Size == 0 {
			hs.forget(hi)
		}
	}
	seq := false
	for _, c := range hs.confs {
		seq = seq || c.opts.Sequencer != nil
	}
	hs.sequenced.Store(seq)
	h.histOn.Store(len(hs.confs) > 0)
	// The sweep runs on a loop that has a shard; one created later starts
	// it otherwise (newShard).
	for _, sh := range *h.shards.Load() {
		if sh != nil {
			l := sh.loop
			_ = l.Post(func() { h.startSweep(l) })
			break
		}
	}
	return nil
}

func validPattern(p string) bool {
	if p == "*" {
		return true
	}
	p = strings.TrimSuffix(p, "*")
	return ValidTopic(p) && !strings.Contains(p, "*")
}

// specificity orders patterns: an exact topic before any prefix, a longer
// prefix before a shorter one.
func specificity(pattern string) int {
	if strings.HasSuffix(pattern, "*") {
		return len(pattern) - 1
	}
	return MaxTopicLen + 1
}

// hist returns the hub's history state, creating it on first use.
func (h *Hub) hist() *histState {
	h.histInit.Do(func() { h.hs = &histState{hists: make(map[string]*history), now: h.srv.Now} })
	return h.hs
}

// confFor returns the configuration of a topic, or nil. hs.mu is held.
func (hs *histState) confFor(topic string) *topicConf {
	for _, c := range hs.confs {
		if c.matches(topic) {
			return c
		}
	}
	return nil
}

// lookup returns the topic's configuration and, if it keeps a history,
// its history, created (with a new epoch) if need be.
func (hs *histState) lookup(topic string) (*topicConf, *history) {
	hs.mu.RLock()
	c := hs.confFor(topic)
	hi := hs.hists[topic]
	hs.mu.RUnlock()
	if c == nil || c.opts.Size == 0 || hi != nil {
		return c, hi
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if c = hs.confFor(topic); c == nil || c.opts.Size == 0 {
		return c, nil
	}
	if hi = hs.hists[topic]; hi == nil {
		hi = &history{topic: topic, next: 1, last: hs.now()}
		if c.opts.Sequencer == nil {
			hi.epoch = newEpoch() // a sequenced topic's comes with its messages
		}
		hs.hists[topic] = hi
		hs.counters.topics.Add(1)
	}
	return c, hi
}

// forget removes a history; hs.mu is held for writing.
func (hs *histState) forget(hi *history) {
	hi.mu.Lock()
	hi.dead = true
	hs.counters.messages.Add(-int64(hi.n))
	hs.counters.bytes.Add(-hi.retained())
	hi.ring, hi.n, hi.head = nil, 0, 0
	hi.mu.Unlock()
	delete(hs.hists, hi.topic)
	hs.counters.topics.Add(-1)
}

// newEpoch returns a fresh epoch: 64 random bits, in hex.
func newEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// publishConfigured delivers a batch when some topics are configured:
// every message of a configured topic gets its position and envelope and
// goes into its history, then the batch is delivered, all in the hub's one
// publish order.
func (h *Hub) publishConfigured(msgs []Message) {
	hs := h.hs
	hs.pubMu.Lock()
	defer hs.pubMu.Unlock()
	var now time.Duration // read once, if a topic has a MaxAge
	clocked := false
	out := hs.wrapped[:0]
	hs.buf = hs.buf[:0]
	for i := range msgs {
		m := msgs[i]
		c, hi := hs.lookup(m.Topic)
		if c == nil {
			out = append(out, m)
			continue
		}
		if c.opts.Sequencer != nil {
			// From a Bus: a sequenced topic's messages have no position
			// but their Sequencer's, and arrive through it.
			continue
		}
		var pos Position
		if c, hi = hs.lockLive(c, hi, m.Topic); hi != nil {
			pos = Position{Epoch: hi.epoch, Offset: hi.next}
			if c.opts.MaxAge > 0 && !clocked {
				now, clocked = h.srv.Now(), true
			}
		}
		if hs.record(c, hi, &m, &msgs[i], pos, now) {
			out = append(out, m)
		}
	}
	h.deliverRecorded(out)
}

// lockLive locks hi, the history lookup found for topic with its
// configuration c, and returns them; if hi was forgotten between the
// lookup and the lock, it looks again, for the topic's new record. hi is
// nil, and nothing locked, when the topic keeps no history.
func (hs *histState) lockLive(c *topicConf, hi *history, topic string) (*topicConf, *history) {
	for hi != nil {
		hi.mu.Lock()
		if !hi.dead {
			return c, hi
		}
		hi.mu.Unlock()
		c, hi = hs.lookup(topic)
	}
	return c, hi
}

// record wraps m, a copy of src, in c's envelope (if c has one) at pos,
// in the publisher's scratch, and appends it to hi (locked by lockLive,
// or nil), which it unlocks. It reports false when the envelope failed:
// the message is dropped, and its offset stays free, since nobody saw it.
// pubMu is held.
func (hs *histState) record(c *topicConf, hi *history, m, src *Message, pos Position, now time.Duration) bool {
	if c != nil && c.opts.Envelope != nil {
		start := len(hs.buf)
		var ok bool
		if hs.buf, ok = hs.wrap(c.opts.Envelope, hs.buf, src, pos); !ok {
			if hi != nil {
				hi.mu.Unlock()
			}
			return false
		}
		m.Type, m.Data = engine.TextMessage, hs.buf[start:len(hs.buf):len(hs.buf)]
	}
	if hi != nil {
		// Into the history before the batch looks for subscribers: a
		// subscriber that joins after that look finds it in Recover.
		hs.append(hi, &c.opts, m.Type, m.Data, now)
		hi.mu.Unlock()
	}
	return true
}

// deliverRecorded delivers out, the batch record kept, and readies the
// publisher's scratch for the next batch. pubMu is held.
func (h *Hub) deliverRecorded(out []Message) {
	hs := h.hs
	h.deliver(out)
	clear(out)
	hs.wrapped = out[:0]
	if cap(hs.buf) > 1<<20 {
		hs.buf = nil // a burst's scratch goes back
	}
	hs.buf = hs.buf[:0]
}

// append adds a message at offset hi.next; hi.mu is held. now is the
// clock when the topic has a MaxAge (unused otherwise).
func (hs *histState) append(hi *history, o *HistoryOptions, typ engine.MessageType, data []byte, now time.Duration) {
	dropped := hs.trim(hi, o, now, false)
	for hi.n >= o.Size && hi.n > 0 {
		hi.dropOldest(hs, false) // the ring is full (or Size has shrunk)
		dropped++
	}
	if hi.n == len(hi.ring) {
		hi.grow(o.Size)
	}
	e := &hi.ring[(hi.head+hi.n)%len(hi.ring)]
	before := cap(e.data)
	if cap(e.data) > 2*len(data)+1024 {
		e.data = nil // a big message's slot does not stay big
	}
	e.data = append(e.data[:0], data...)
	e.at, e.typ = now, typ
	if d := cap(e.data) - before; d != 0 {
		hs.counters.bytes.Add(int64(d))
	}
	hi.n++
	hi.next++
	if o.MaxAge > 0 {
		// Without MaxAge a history that has a message is never idle,
		// and the clock is not read for it.
		hi.last = now
	}
	if d := 1 - dropped; d != 0 { // a full ring's steady state: no change
		hs.counters.messages.Add(int64(d))
	}
}

// grow doubles the ring, up to size slots, keeping the messages in order.
func (hi *history) grow(size int) {
	n := min(max(2*len(hi.ring), 8), size)
	ring := make([]histEntry, n)
	for i := 0; i < hi.n; i++ {
		ring[i] = hi.ring[(hi.head+i)%len(hi.ring)]
	}
	// Slots past the messages keep their buffers for reuse.
	for i := hi.n; i < len(hi.ring); i++ {
		ring[i] = hi.ring[(hi.head+i)%len(hi.ring)]
	}
	hi.ring, hi.head = ring, 0
}

// trim drops messages older than MaxAge and returns how many; hi.mu is
// held. With release their buffers go too (an idle topic's memory
// returns). The caller counts the messages dropped.
func (hs *histState) trim(hi *history, o *HistoryOptions, now time.Duration, release bool) int {
	n := 0
	for o.MaxAge > 0 && hi.n > 0 && now-hi.ring[hi.head].at > o.MaxAge {
		hi.dropOldest(hs, release)
		n++
	}
	return n
}

// dropOldest forgets the oldest message, and with release its buffer;
// hi.mu is held. The caller counts the message.
func (hi *history) dropOldest(hs *histState, release bool) {
	e := &hi.ring[hi.head]
	if release {
		hs.counters.bytes.Add(-int64(cap(e.data)))
		e.data = nil
	}
	hi.head = (hi.head + 1) % len(hi.ring)
	hi.n--
}

// retained is the bytes the ring's buffers hold; hi.mu is held.
func (hi *history) retained() int64 {
	var n int64
	for i := range hi.ring {
		n += int64(cap(hi.ring[i].data))
	}
	return n
}

// sweep, run at a loop's timer sweeps, trims every history by age,
// releasing what it held, and forgets the ones idle past IdleTTL.
func (hs *histState) sweep(now time.Duration) {
	hs.mu.RLock()
	var idle []*history
	for name, hi := range hs.hists {
		c := hs.confFor(name)
		if c == nil {
			continue
		}
		hi.mu.Lock()
		if n := hs.trim(hi, &c.opts, now, true); n > 0 {
			hs.counters.messages.Add(-int64(n))
		}
		if hi.n == 0 && now-hi.last > c.opts.IdleTTL {
			idle = append(idle, hi)
		}
		hi.mu.Unlock()
	}
	hs.mu.RUnlock()
	if len(idle) == 0 {
		return
	}
	hs.mu.Lock()
	for _, hi := range idle {
		hi.mu.RLock()
		still := hi.n == 0 && !hi.dead
		hi.mu.RUnlock()
		if still && hs.hists[hi.topic] == hi {
			hs.forget(hi)
		}
	}
	hs.mu.Unlock()
}

// startSweep makes the history sweep run on loop l, once per hub.
func (h *Hub) startSweep(l looplink.Loop) {
	if !h.histOn.Load() {
		return
	}
	hs := h.hs
	hs.sweepOnce.Do(func() { l.OnSweep(hs.sweep) })
}

// ErrNoHistory is what Recover and Position return for a topic that keeps
// no history.
var ErrNoHistory = errors.New("broadcast: topic keeps no history")

// Position returns the position of a topic's newest message (offset 0 when
// it has none yet), starting its history if it has none. A subscriber that
// reads it after subscribing receives every message after it.
func (h *Hub) Position(topic string) (Position, error) {
	cur, _, err := h.Recover(topic, nil, 0, nil)
	return cur, err
}

// Recover reads what a subscriber missed: the messages of topic after
// since, oldest first, passed to fn with their offsets (payload is valid
// during the call only; with an Envelope it is the envelope). It returns
// the topic's current position, and recovered: whether the history holds
// every message after since — false when since is of another epoch, older
// than the history's oldest message, or newer than its newest (but for a
// sequenced topic, where this node may lag behind another), and when
// more than max messages were missed (max > 0); fn is then not called. A
// nil since only returns the position. A topic without history returns
// ErrNoHistory.
//
// Call it after the subscription is in effect (SubscribeThen): then no
// message falls between what it returns and what is delivered live;
// a message may be both returned and delivered, with the same offset.
func (h *Hub) Recover(topic string, since *Position, max int, fn func(offset uint64, typ engine.MessageType, payload []byte)) (cur Position, recovered bool, err error) {
	if !h.histOn.Load() {
		return Position{}, false, ErrNoHistory
	}
	hs := h.hs
	now := h.srv.Now()
	for {
		c, hi := hs.lookup(topic)
		if hi == nil {
			return Position{}, false, ErrNoHistory
		}
		hi.mu.RLock()
		if hi.dead {
			hi.mu.RUnlock()
			continue
		}
		cur = Position{Epoch: hi.epoch, Offset: hi.next - 1}
		if since != nil {
			recovered = hi.recover(&c.opts, since, max, now, fn)
		}
		hi.mu.RUnlock()
		return cur, recovered, nil
	}
}

// recover passes fn the messages after since if it has them all; hi.mu is
// held (for reading: expired messages are skipped, not trimmed).
func (hi *history) recover(o *HistoryOptions, since *Position, max int, now time.Duration, fn func(uint64, engine.MessageType, []byte)) bool {
	top := hi.next - 1
	if since.Epoch != hi.epoch {
		return false
	}
	if since.Offset > top {
		// Beyond the newest: a bogus position, unless the topic is
		// sequenced and this node has not read as far as the one the
		// client came from. The client then already has what is on its
		// way here, and drops it by its offset.
		return o.Sequencer != nil
	}
	missed := top - since.Offset
	if missed == 0 {
		return true
	}
	if missed > uint64(hi.n) || max > 0 && missed > uint64(max) {
		return false
	}
	first := hi.n - int(missed)
	if o.MaxAge > 0 && now-hi.ring[(hi.head+first)%len(hi.ring)].at > o.MaxAge {
		return false // the oldest one it needs has expired
	}
	if fn != nil {
		for i := first; i < hi.n; i++ {
			e := &hi.ring[(hi.head+i)%len(hi.ring)]
			fn(hi.next-uint64(hi.n-i), e.typ, e.data)
		}
	}
	return true
}

// ResetHistory forgets a topic's history: its next message starts a new
// epoch, and no subscriber can recover across it.
func (h *Hub) ResetHistory(topic string) {
	if !h.histOn.Load() {
		return
	}
	hs := h.hs
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hi := hs.hists[topic]; hi != nil {
		hs.forget(hi)
	}
}

// SubscribeThen subscribes c to topic and then calls then, on c's loop,
// with the subscription in effect: what then sends on c (Conn.Send writes
// at once on the loop) goes out before any message delivered to the new
// subscription, and a Recover in then misses nothing published before. If
// c is already subscribed to limit topics or more (limit > 0), not
// counting topic, it is not subscribed and then gets false. If c is
// closing, then still runs (its sends fail).
func (h *Hub) SubscribeThen(c *engine.Conn, topic string, limit int, then func(ok bool)) error {
	if !ValidTopic(topic) {
		return fmt.Errorf("%w: %q", ErrInvalidTopic, topic)
	}
	lc := looplink.ConnOf(c)
	return h.onLoop(lc, func() {
		sh := h.shardFor(lc.Loop())
		if limit > 0 {
			if m := sh.members[lc.ID()]; m != nil && len(m.subs) >= limit && !m.in(topic) {
				then(false)
				return
			}
		}
		sh.subscribe(lc, []string{topic})
		then(true)
	})
}

// UnsubscribeThen unsubscribes c from topic and then calls then on c's
// loop.
func (h *Hub) UnsubscribeThen(c *engine.Conn, topic string, then func()) error {
	lc := looplink.ConnOf(c)
	return h.onLoop(lc, func() {
		h.shardFor(lc.Loop()).unsubscribe(lc, []string{topic})
		then()
	})
}

// in reports whether m is subscribed to the topic.
func (m *member) in(topic string) bool {
	for _, ref := range m.subs {
		if ref.st.t.name == topic {
			return true
		}
	}
	return false
}

// histCounters are the totals over a hub's histories, for Stats.
type histCounters struct {
	topics, messages, bytes, envelopePanics atomic.Int64
}

// wrap runs an Envelope. A panic in it costs only its message, which is
// not delivered, and is counted (Stats.EnvelopePanics): the publisher may
// be a Bus's goroutine, and the hub's locks must not stay held.
func (hs *histState) wrap(env Envelope, dst []byte, m *Message, pos Position) (out []byte, ok bool) {
	n := len(dst)
	defer func() {
		if r := recover(); r != nil {
			hs.counters.envelopePanics.Add(1)
			out, ok = dst[:n], false
		}
	}()
	return env(dst, m, pos), true
}
