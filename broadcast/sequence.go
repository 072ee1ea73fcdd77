package broadcast

import (
	"errors"
	"fmt"
	"time"

	"github.com/heraldws/herald/engine"
)

// A Sequencer gives the messages of some topics their positions outside
// the hub — in a broker's stream that every node reads — so that a
// position means the same on every node and a client can resume on any of
// them. Topics get one through HistoryOptions.Sequencer.
//
// PublishBatch hands a Sequencer the messages of its topics instead of
// delivering them or giving them to the Bus; the Sequencer delivers them
// back, on every node this one included, through Hub.DeliverSequenced, in
// its order. Sequence runs on the publisher's goroutine and may wait for
// the broker: a publish of such a topic is a broker round trip, so it does
// not belong on an event loop.
type Sequencer interface {
	Sequence(msgs []Message) error
}

// sequence takes the messages of sequenced topics out of a validated
// batch and hands them to their Sequencers; it returns the rest.
func (h *Hub) sequence(msgs []Message) ([]Message, error) {
	hs := h.hs
	if !hs.sequenced.Load() {
		return msgs, nil
	}
	var (
		rest []Message
		errs []error
	)
	hs.mu.RLock()
	seqs := make([]Sequencer, len(msgs))
	found := false
	for i := range msgs {
		if c := hs.confFor(msgs[i].Topic); c != nil && c.opts.Sequencer != nil {
			seqs[i], found = c.opts.Sequencer, true
		}
	}
	hs.mu.RUnlock()
	if !found {
		return msgs, nil
	}
	// Consecutive messages of one Sequencer go as one call, in order.
	for i := 0; i < len(msgs); {
		j := i + 1
		for j < len(msgs) && seqs[j] == seqs[i] {
			j++
		}
		if seqs[i] == nil {
			rest = append(rest, msgs[i:j]...)
		} else if err := seqs[i].Sequence(msgs[i:j]); err != nil {
			errs = append(errs, err)
		}
		i = j
	}
	if len(errs) > 0 {
		return rest, &SequenceError{Err: errors.Join(errs...)}
	}
	return rest, nil
}

// SequenceError is what Publish and PublishBatch return when a Sequencer
// refused messages: those were not delivered anywhere.
type SequenceError struct {
	Err error
}

func (e *SequenceError) Error() string {
	return "broadcast: the sequencer did not take the messages: " + e.Err.Error()
}

func (e *SequenceError) Unwrap() error { return e.Err }

// DeliverSequenced delivers messages that a Sequencer has positioned,
// pos[i] being msgs[i]'s, to local subscribers, through their topics'
// configuration (history, envelope). A message at or below its topic's
// newest offset in the same epoch was delivered already and is skipped,
// so a Sequencer may replay. One of another epoch starts the topic's
// history again in that epoch; one past the next offset starts it again
// at its offset (what came between cannot be recovered here).
func (h *Hub) DeliverSequenced(msgs []Message, pos []Position) error {
	if len(pos) != len(msgs) {
		return fmt.Errorf("broadcast: DeliverSequenced: %d messages but %d positions", len(msgs), len(pos))
	}
	if err := checkBatch(msgs); err != nil {
		return err
	}
	for i := range pos {
		if pos[i].Offset == 0 {
			return fmt.Errorf("broadcast: DeliverSequenced: message %d (topic %q) has offset 0", i, msgs[i].Topic)
		}
	}
	if h.srv.Closed() {
		return fmt.Errorf("broadcast: deliver: %w", engine.ErrClosed)
	}
	hs := h.hist()
	hs.pubMu.Lock()
	defer hs.pubMu.Unlock()
	var now time.Duration // read once, if a topic has a MaxAge
	clocked := false
	out := hs.wrapped[:0]
	hs.buf = hs.buf[:0]
	for i := range msgs {
		m, p := msgs[i], pos[i]
		c, hi := hs.lookup(m.Topic)
		c, hi = hs.lockLive(c, hi, m.Topic)
		if hi != nil {
			switch {
			case hi.epoch != p.Epoch || p.Offset > hi.next:
				hs.restart(hi, p)
			case p.Offset < hi.next:
				hi.mu.Unlock()
				continue // delivered already
			}
			if c.opts.MaxAge > 0 && !clocked {
				now, clocked = h.srv.Now(), true
			}
		}
		if hs.record(c, hi, &m, &msgs[i], p, now) {
			out = append(out, m)
		}
	}
	h.deliverRecorded(out)
	return nil
}

// restart empties a history and makes p its next position; hi.mu is held.
func (hs *histState) restart(hi *history, p Position) {
	hs.counters.messages.Add(-int64(hi.n))
	for hi.n > 0 {
		hi.dropOldest(hs, false)
	}
	hi.epoch, hi.next = p.Epoch, p.Offset
}
