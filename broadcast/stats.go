package broadcast

// Stats counts the hub's work since it was created, summed over loops.
type Stats struct {
	Topics        int    // topics with at least one subscriber
	Subscriptions int64  // (connection, topic) pairs
	Published     uint64 // messages published (locally or through the Bus)
	Compressed    uint64 // messages compressed for permessage-deflate subscribers: once per message, however many take it
	Batches       uint64 // batch deliveries run by loops
	Deliveries    uint64 // messages written to subscribers
	Dropped       uint64 // messages not sent to slow subscribers (DropNewest)
	Conflated     uint64 // messages replaced by a newer one for slow subscribers (Conflate)
	SlowClosed    uint64 // slow subscribers closed (CloseSlow)
	// PublishLatency is publish → written, once per batch and loop.
	PublishLatency Latency
	// Histories (SetHistory): topics with a history, the messages they
	// hold, and the bytes their buffers retain.
	HistoryTopics   int64
	HistoryMessages int64
	HistoryBytes    int64
	// EnvelopePanics counts messages not delivered because their
	// topic's Envelope panicked.
	EnvelopePanics int64
}

// Stats returns a snapshot of the hub's counters.
func (h *Hub) Stats() Stats {
	st := Stats{Topics: h.Topics(), Published: h.published.Load(), Compressed: h.compressed.Load()}
	for _, sh := range *h.shards.Load() {
		if sh == nil {
			continue
		}
		st.Subscriptions += sh.subscribed.Load()
		st.Batches += sh.stats.batches.Load()
		st.Deliveries += sh.stats.deliveries.Load()
		st.Dropped += sh.stats.dropped.Load()
		st.Conflated += sh.stats.conflated.Load()
		st.SlowClosed += sh.stats.slowClosed.Load()
		sh.stats.latency.addTo(&st.PublishLatency)
	}
	if h.histOn.Load() {
		c := &h.hs.counters
		st.HistoryTopics, st.HistoryMessages, st.HistoryBytes = c.topics.Load(), c.messages.Load(), c.bytes.Load()
		st.EnvelopePanics = c.envelopePanics.Load()
	}
	return st
}
