package broadcast

import (
	"sync/atomic"
	"time"

	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/internal/looplink"
)

// shard is the hub's state on one event loop. Everything in it but the
// counters is touched only on that loop, so it needs no lock.
type shard struct {
	hub  *Hub
	loop looplink.Loop

	subscribed atomic.Int64 // subscriptions on this loop; publish skips empty shards

	topics map[*topic]*shardTopic
	// members is keyed by the connection's id, not the connection: a
	// subscribed connection pays for its entry, and a uint64 key makes it
	// 16 bytes a slot instead of an interface's 24.
	members map[uint64]*member

	// Delivery state, reset after each flush. A member's pending frames are
	// a linked list of runs through arena, so that no subscriber owns a
	// queue.
	arena   []pending
	touched []*member
	held    []*batch // batches whose frames are pending
	scratch []byte
	flushFn func()
	queued  bool // a flush is deferred
	// parked are the slow members holding conflated frames: the loop's
	// sweep sends those once the member drains, even if its topics have
	// gone quiet and no flush touches it again.
	parked []*member

	stats shardStats
}

type shardStats struct {
	deliveries, dropped, conflated, slowClosed, batches atomic.Uint64
	latency                                             latencyHist
}

// shardTopic is a topic's subscribers on one loop.
type shardTopic struct {
	t    *topic
	subs []*member
}

// member is one subscribed connection on a loop.
//
// A member is 64 bytes (TestMemberSize): every subscribed connection has
// one, so what only slow subscribers need is kept apart, in lag.
type member struct {
	c          looplink.Conn
	subs       []subRef // the topics it is in, and its index in each
	lag        *lag     // nil unless it is slow or holds conflated frames
	head, tail int32    // pending runs in shard.arena, -1 when none
	z          bool     // it negotiated permessage-deflate: it gets the twins
	touched    bool     // in shard.touched
	slow       bool     // over the high-water mark: policies apply
	gone       bool     // closed or unsubscribed from everything
	parked     bool     // in shard.parked
}

// lag is what a slow subscriber needs besides its member.
type lag struct {
	from      int // its backlog when it became slow
	conflated []conflated
}

type subRef struct {
	st  *shardTopic
	idx int32
}

// pending is a run of n frames queued for a member: bytes [start, end) of a
// batch's buffer, or of its compressed twin with z. Frames that follow each
// other in the batch share one run, so a subscriber of every topic in a
// batch (a ticker's client) costs one entry and one write, not one entry
// per topic. Which topics a run holds is needed only for a slow subscriber,
// and is read from the batch's items then.
type pending struct {
	b             *batch
	start, end, n int32
	next          int32
	z             bool
}

func (p *pending) bytes() []byte { return p.b.frames(p.z)[p.start:p.end] }

// conflated is the latest frame of a topic kept for a slow subscriber.
type conflated struct {
	t     *topic
	frame []byte
}

// newShard creates the shard of loop l. It runs on l.
func newShard(h *Hub, l looplink.Loop) *shard {
	sh := &shard{
		hub:     h,
		loop:    l,
		topics:  make(map[*topic]*shardTopic),
		members: make(map[uint64]*member),
	}
	sh.flushFn = sh.flush
	l.OnSweep(sh.sweep)
	h.startSweep(l)
	return sh
}

// task returns the loop task that delivers b on this shard.
func (sh *shard) task(b *batch) func() {
	return func() { sh.run(b) }
}

func (sh *shard) subscribe(c looplink.Conn, names []string) {
	if !c.IsOpen() {
		return
	}
	m := sh.members[c.ID()]
	if m == nil {
		m = &member{c: c, z: c.Deflate(), head: -1, tail: -1}
		sh.members[c.ID()] = m
	}
	m.gone = false
next:
	for _, name := range names {
		for _, ref := range m.subs {
			if ref.st.t.name == name {
				continue next // already subscribed
			}
		}
		t := sh.hub.join(name, m.z)
		st := sh.topics[t]
		if st == nil {
			st = &shardTopic{t: t}
			sh.topics[t] = st
		}
		m.subs = append(m.subs, subRef{st: st, idx: int32(len(st.subs))})
		st.subs = append(st.subs, m)
		sh.subscribed.Add(1)
	}
}

func (sh *shard) unsubscribe(c looplink.Conn, names []string) {
	m := sh.members[c.ID()]
	if m == nil {
		return
	}
	for _, name := range names {
		for k := range m.subs {
			if m.subs[k].st.t.name == name {
				sh.removeSub(m, k)
				break
			}
		}
	}
	if len(m.subs) == 0 {
		sh.forgetMember(m)
	}
}

// drop removes a closing connection from all its topics.
func (sh *shard) drop(c looplink.Conn) {
	m := sh.members[c.ID()]
	if m == nil {
		return
	}
	for len(m.subs) > 0 {
		sh.removeSub(m, len(m.subs)-1)
	}
	sh.forgetMember(m)
}

func (sh *shard) forgetMember(m *member) {
	m.gone = true
	m.slow, m.lag = false, nil // m.lag is set while m.slow
	delete(sh.members, m.c.ID())
}

// removeSub takes m out of its k-th topic in O(1): the topic's last
// subscriber moves into m's slot.
func (sh *shard) removeSub(m *member, k int) {
	ref := m.subs[k]
	st := ref.st
	last := len(st.subs) - 1
	moved := st.subs[last]
	st.subs[ref.idx] = moved
	st.subs[last] = nil
	st.subs = st.subs[:last]
	if moved != m {
		for j := range moved.subs {
			if moved.subs[j].st == st {
				moved.subs[j].idx = ref.idx
				break
			}
		}
	}
	m.subs[k] = m.subs[len(m.subs)-1]
	m.subs = m.subs[:len(m.subs)-1]
	if len(st.subs) == 0 {
		delete(sh.topics, st.t)
	}
	sh.subscribed.Add(-1)
	sh.hub.leave(st.t, m.z)
}

// run queues a batch's frames for this loop's subscribers. The writes happen
// in flush, deferred until the loop has drained its inbox, so that batches
// posted together reach each subscriber in one write.
func (sh *shard) run(b *batch) {
	sh.stats.batches.Add(1)
	for k := range b.items {
		it := &b.items[k]
		st := sh.topics[it.topic]
		if st == nil {
			continue
		}
		twin := it.twin()
		for _, m := range st.subs {
			// A deflate subscriber that joined after the publish looked
			// (no twin) gets the plain frame, which it can always take.
			if m.z && twin {
				sh.enqueue(m, b, true, it.zstart, it.zend)
			} else {
				sh.enqueue(m, b, false, it.start, it.end)
			}
		}
	}
	sh.held = append(sh.held, b)
	if !sh.queued {
		sh.queued = true
		sh.loop.Defer(sh.flushFn)
	}
}

func (sh *shard) enqueue(m *member, b *batch, z bool, start, end int32) {
	if m.tail >= 0 {
		if p := &sh.arena[m.tail]; p.b == b && p.z == z && p.end == start {
			p.end = end // the next frame of the batch: extend the run
			p.n++
			return
		}
	}
	i := int32(len(sh.arena))
	sh.arena = append(sh.arena, pending{b: b, start: start, end: end, n: 1, next: -1, z: z})
	if m.head < 0 {
		m.head = i
	} else {
		sh.arena[m.tail].next = i
	}
	m.tail = i
	if !m.touched {
		m.touched = true
		sh.touched = append(sh.touched, m)
	}
}

// flush writes every touched subscriber's pending frames, one write each.
//
// Subscribers that keep up (nothing left unsent) go first: one behind costs
// more (its frames are copied into its backlog, or its policy applied and
// its frames conflated), and thousands of stalled subscribers on a loop must
// not delay the readers behind them.
func (sh *shard) flush() {
	sh.queued = false
	// One clock read per flush marks every subscriber written as active.
	now := sh.hub.srv.Now()
	for _, m := range sh.touched {
		if m.gone || m.slow {
			continue
		}
		if backlog := m.c.Buffered(); backlog == 0 {
			sh.flushMember(m, backlog, now)
			m.head, m.tail = -1, -1 // done: the second pass skips it
		}
	}
	for _, m := range sh.touched {
		if !m.gone && m.head >= 0 {
			sh.flushMember(m, m.c.Buffered(), now)
		}
		m.head, m.tail, m.touched = -1, -1, false
	}
	clear(sh.touched)
	sh.touched = sh.touched[:0]
	clear(sh.arena)
	sh.arena = sh.arena[:0]
	written := sh.hub.srv.Now()
	for _, b := range sh.held {
		sh.stats.latency.observe(written - b.at)
		b.release()
	}
	clear(sh.held)
	sh.held = sh.held[:0]
}

// updateSlow moves m in or out of the slow state by its backlog (what
// Buffered reported for it just before) and reports
// whether it is slow. While the loop's share of the server's outbound budget
// is used up, any backlog makes a subscriber slow: the topic's policy then
// keeps it from growing, instead of the engine closing it.
//
// A slow subscriber counts as drained once its backlog is at most LowWater
// and at most half of what it was when it became slow. The second bound
// matters for one made slow by the budget with less than LowWater: it has
// to have drained something first. Otherwise, when closes free part of the
// budget, thousands of stalled subscribers that read nothing would all be
// written to again, refilling the budget with copies for connections that
// are about to time out.
func (sh *shard) updateSlow(m *member, backlog int) bool {
	opts := &sh.hub.opts
	if m.slow && backlog <= min(opts.LowWater, m.lag.from/2) {
		m.slow = false
	}
	if !m.slow && (backlog > opts.HighWater || backlog > 0 && sh.loop.OverBudget()) {
		m.slow = true
		if m.lag == nil {
			m.lag = new(lag)
		}
		m.lag.from = backlog
	}
	return m.slow
}

func (sh *shard) flushMember(m *member, backlog int, now time.Duration) {
	c := m.c
	if sh.updateSlow(m, backlog) {
		sh.applyPolicy(m)
		return
	}
	if m.lag == nil && m.head == m.tail {
		// One run of a batch's buffer (the subscriber takes every topic
		// of the batch, or one): write the shared bytes, no copy.
		p := &sh.arena[m.head]
		if c.WriteFrames(p.bytes(), now) {
			sh.stats.deliveries.Add(uint64(p.n))
		}
		return
	}
	// A subscriber that just drained first gets the latest of what it
	// missed, then the new frames.
	buf, n := m.takeConflated(sh.scratch[:0])
	for i := m.head; i >= 0; i = sh.arena[i].next {
		p := &sh.arena[i]
		buf = append(buf, p.bytes()...)
		n += uint64(p.n)
	}
	sh.scratch = buf[:0]
	if c.WriteFrames(buf, now) {
		sh.stats.deliveries.Add(n)
	}
}

// sweep runs at every timer sweep of the loop: a parked member that has
// drained gets its conflated frames now, so the latest value of a topic
// that went quiet is not held back until the next publish. Parked members
// are few (slow ones only), so this costs nothing for the rest.
func (sh *shard) sweep(now time.Duration) {
	kept := sh.parked[:0]
	for _, m := range sh.parked {
		switch {
		case m.gone || m.lag == nil || len(m.lag.conflated) == 0:
			m.parked = false
		case m.touched:
			// A flush is pending for it and will send them.
			kept = append(kept, m)
		case sh.updateSlow(m, m.c.Buffered()):
			kept = append(kept, m)
		default:
			m.parked = false
			buf, n := m.takeConflated(sh.scratch[:0])
			sh.scratch = buf[:0]
			if m.c.WriteFrames(buf, now) {
				sh.stats.deliveries.Add(n)
			}
		}
	}
	clear(sh.parked[len(kept):])
	sh.parked = kept
}

// applyPolicy decides the fate of a slow subscriber's pending frames, topic
// by topic.
func (sh *shard) applyPolicy(m *member) {
	for i := m.head; i >= 0; i = sh.arena[i].next {
		p := &sh.arena[i]
		items := p.b.itemsIn(p.z, p.start, p.end)
		for k := range items {
			it := &items[k]
			if p.z && !it.twin() {
				continue // not in the run: it has no bytes among the twins
			}
			switch Policy(it.topic.policy.Load()) {
			case DropNewest:
				sh.stats.dropped.Add(1)
			case Conflate:
				sh.stats.conflated.Add(1)
				m.keepLatest(it.topic, p.b.frameOf(it, p.z))
				if !m.parked {
					m.parked = true
					sh.parked = append(sh.parked, m)
				}
			default:
				sh.stats.slowClosed.Add(1)
				m.c.Close(uint16(engine.StatusTryAgainLater), "slow consumer")
				// It gets nothing more while its close handshake runs.
				sh.drop(m.c)
				return
			}
		}
	}
}

// keepLatest stores frame as the topic's latest for a slow subscriber,
// replacing the previous one. Only slow subscribers pay for this copy.
// m is slow, so m.lag is set.
func (m *member) keepLatest(t *topic, frame []byte) {
	l := m.lag
	for i := range l.conflated {
		if l.conflated[i].t == t {
			l.conflated[i].frame = append(l.conflated[i].frame[:0], frame...)
			return
		}
	}
	if l.conflated == nil {
		// Room for every topic it takes: no regrowth while it stays slow.
		l.conflated = make([]conflated, 0, len(m.subs))
	}
	l.conflated = append(l.conflated, conflated{t: t, frame: append([]byte(nil), frame...)})
}

// takeConflated appends m's conflated frames to buf, in the order their
// topics first became slow, and forgets them; n is how many. A member that
// is no longer slow lets go of its lag too.
func (m *member) takeConflated(buf []byte) (_ []byte, n uint64) {
	if m.lag == nil {
		return buf, 0
	}
	for i := range m.lag.conflated {
		buf = append(buf, m.lag.conflated[i].frame...)
	}
	n = uint64(len(m.lag.conflated))
	m.lag.conflated = nil
	if !m.slow {
		m.lag = nil
	}
	return buf, n
}
