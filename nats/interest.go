package nats

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldws/herald/nats/internal/wire"
)

// DefaultSyncTimeout bounds Sync when its context has no deadline.
const DefaultSyncTimeout = 10 * time.Second

// Interest is called by the hub when topic gains its first local subscriber
// (on) or loses its last one. It only records the change: it runs on an
// event loop, so the broker subscription is made or dropped by the bus's
// own goroutine. Until then, messages other nodes publish on the topic do
// not reach this node; Sync waits for that. With Options.Wildcard it does
// nothing.
func (b *Bus) Interest(topic string, on bool) {
	if b.opts.Wildcard {
		return
	}
	b.mu.Lock()
	b.changes[topic] = on
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// Sync returns once every interest change made before it is in effect at
// the broker: the subscriptions are made and the broker has answered a
// ping sent after them. A subscriber that connected before Sync then gets
// every message another node publishes after Sync returns (with one
// broker; across a NATS cluster, interest also takes the cluster's own
// propagation). It fails while the broker is away.
func (b *Bus) Sync(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case b.syncs <- done:
	case <-b.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
	case <-b.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultSyncTimeout)
		defer cancel()
	}
	return b.nc.FlushWithContext(ctx)
}

// reconcileLoop applies interest changes: one goroutine owns the broker
// subscriptions, so the hub's loops never wait for the connection.
func (b *Bus) reconcileLoop() {
	defer b.wg.Done()
	r := reconciler{
		b:      b,
		active: make(map[string]bool),
		refs:   make(map[string]int),
		subs:   make(map[string]*nats.Subscription),
		spare:  make(map[string]bool),
	}
	for {
		select {
		case <-b.wake:
			r.run()
		case done := <-b.syncs:
			r.run()
			close(done)
		case <-b.done:
			return
		}
	}
}

// reconciler is the state of reconcileLoop.
type reconciler struct {
	b      *Bus
	active map[string]bool               // topics whose subjects are subscribed
	refs   map[string]int                // subject → active topics that need it
	subs   map[string]*nats.Subscription // subject → its subscription
	spare  map[string]bool               // the changes map to swap in next
}

// run applies the changes recorded since the last run. Topics that gained
// interest go first, so that a group's batch subject that one topic leaves
// and another joins in the same run stays subscribed.
func (r *reconciler) run() {
	b := r.b
	b.mu.Lock()
	changes := b.changes
	b.changes = r.spare
	b.mu.Unlock()
	for topic, on := range changes {
		if on {
			r.apply(topic, true)
		}
	}
	for topic, on := range changes {
		if !on {
			r.apply(topic, false)
		}
	}
	clear(changes)
	r.spare = changes
	if !b.opts.Wildcard { // then Attach's one subscription is the count
		b.stats.subscriptions.Store(int64(len(r.subs)))
	}
}

// apply makes topic's subscriptions follow its interest: its own subject,
// and its group's batch subject, counted by the topics that need it.
func (r *reconciler) apply(topic string, on bool) {
	if r.active[topic] == on {
		return
	}
	b := r.b
	if on {
		if err := CheckTopic(topic); err != nil {
			// Local subscribers still get local publishes.
			b.log.Warn("herald/nats: topic has local subscribers but cannot cross the bus", "err", err)
			return
		}
		r.active[topic] = true
	} else {
		delete(r.active, topic)
	}
	r.ref(b.subj.Topic(topic), on)
	r.ref(b.subj.GroupBatch(wire.Group(topic)), on)
}

// ref counts one more or one fewer topic that needs subject, subscribing
// at the first and unsubscribing after the last. Subjects never overlap
// (no wildcards), so no message matches two subscriptions.
func (r *reconciler) ref(subject string, on bool) {
	b := r.b
	if on {
		r.refs[subject]++
		if r.refs[subject] > 1 {
			return
		}
		sub, err := b.nc.ChanSubscribe(subject, b.inbox)
		if err != nil {
			b.log.Error("herald/nats: cannot subscribe", "subject", subject, "err", err)
			return
		}
		r.subs[subject] = sub
		return
	}
	if r.refs[subject]--; r.refs[subject] > 0 {
		return
	}
	delete(r.refs, subject)
	if sub := r.subs[subject]; sub != nil {
		delete(r.subs, subject)
		if err := sub.Unsubscribe(); err != nil {
			b.log.Warn("herald/nats: cannot unsubscribe", "subject", subject, "err", err)
		}
	}
}
