package nats

import "sync/atomic"

// Stats counts a Bus's work since Connect. Messages are herald messages (a
// batch counts each of its messages); Sent and Received count NATS messages.
type Stats struct {
	Published uint64 // messages handed to the broker connection, Held included
	Sent      uint64 // NATS messages they made: one per batch and group, unless split at the broker's max_payload
	// Held are the published messages that went into the reconnect buffer
	// because the broker was away; they are sent when it returns (or lost,
	// if the bus closes first).
	Held uint64
	// Failed are the messages the broker connection refused: the reconnect
	// buffer was full, the connection closed, a message over the broker's
	// max_payload, or a topic that cannot cross the bus. The hub delivered
	// them locally all the same.
	Failed       uint64
	Received     uint64 // NATS messages from other nodes
	Delivered    uint64 // messages from other nodes handed to the hub
	Rejected     uint64 // NATS messages dropped for breaking the wire format
	SlowConsumer uint64 // slow-consumer notices: the receive queue was full and messages were dropped
	Disconnects  uint64 // broker connection losses
	Reconnects   uint64 // broker connections re-established (subscriptions restored)
	// Subscriptions is the number of broker subscriptions held now.
	Subscriptions int
}

// counters are the atomic sources of Stats.
type counters struct {
	published, sent, held, failed         atomic.Uint64
	received, delivered, rejected         atomic.Uint64
	slowConsumer, disconnects, reconnects atomic.Uint64
	subscriptions                         atomic.Int64
}

// Stats returns a snapshot of the bus's counters.
func (b *Bus) Stats() Stats {
	c := &b.stats
	return Stats{
		Published:     c.published.Load(),
		Sent:          c.sent.Load(),
		Held:          c.held.Load(),
		Failed:        c.failed.Load(),
		Received:      c.received.Load(),
		Delivered:     c.delivered.Load(),
		Rejected:      c.rejected.Load(),
		SlowConsumer:  c.slowConsumer.Load(),
		Disconnects:   c.disconnects.Load(),
		Reconnects:    c.reconnects.Load(),
		Subscriptions: int(c.subscriptions.Load()),
	}
}
