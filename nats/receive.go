package nats

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/nats/internal/wire"
)

// Bounds of one delivery to the hub: messages that wait in the receive
// queue together are delivered as one batch (one write per subscriber for
// all of them), up to these.
const (
	maxCoalesce      = 256     // NATS messages
	maxCoalesceBytes = 1 << 20 // their payloads
)

// maxInterned bounds the topic names the receiver keeps to avoid making a
// string per batch entry.
const maxInterned = 4096

// receiveLoop delivers what the broker sends to the hub, in the broker's
// order: every subscription feeds one queue, so messages on a topic's
// subject and on its group's batch subject stay in the order they were
// published.
func (b *Bus) receiveLoop() {
	defer b.wg.Done()
	r := receiver{b: b, names: make(map[string]string)}
	for {
		select {
		case m := <-b.inbox:
			r.take(m)
		case <-b.done:
			return
		}
		if b.opts.pause != nil {
			b.opts.pause()
		}
		r.flush()
	}
}

// receiver is the state of receiveLoop.
type receiver struct {
	b       *Bus
	batch   []broadcast.Message
	names   map[string]string
	lastLog int64 // when reject last logged, Unix ns
}

// take decodes m and whatever else waits in the queue, within bounds.
func (r *receiver) take(m *nats.Msg) {
	size := 0
	for n := 1; ; n++ {
		r.decode(m)
		size += len(m.Data)
		if n == maxCoalesce || size >= maxCoalesceBytes {
			return
		}
		select {
		case m = <-r.b.inbox:
		default:
			return
		}
	}
}

// flush delivers the decoded messages to the hub as one batch.
func (r *receiver) flush() {
	if len(r.batch) == 0 {
		return
	}
	if h := r.b.hub.Load(); h != nil {
		// Counted first, so that the count includes whatever a subscriber
		// has read, and taken back if the hub refuses.
		n := uint64(len(r.batch))
		r.b.stats.delivered.Add(n)
		if err := h.Deliver(r.batch); err != nil {
			r.b.stats.delivered.Add(-n)
			// The server is shutting down, or (it cannot happen: decode
			// checked what the hub checks) the hub refused the messages.
			if !errors.Is(err, engine.ErrClosed) {
				r.b.log.Error("herald/nats: hub refused a delivery", "err", err)
			}
		}
	}
	clear(r.batch) // let the payloads go
	r.batch = r.batch[:0]
}

// decode appends the messages m carries to r.batch, or counts m as rejected
// if it breaks the wire format; nothing of a rejected message is delivered.
func (r *receiver) decode(m *nats.Msg) {
	b := r.b
	b.stats.received.Add(1)
	if v, isBatch := m.Header[wire.HeaderBatch]; isBatch {
		if len(v) != 1 || v[0] != wire.BatchVersion {
			r.reject(m, fmt.Errorf("%s %q is not a known batch version (%q)", wire.HeaderBatch, v, wire.BatchVersion))
			return
		}
		err := wire.DecodeBatch(m.Data, func(binary bool, topic, data []byte) {
			typ := engine.TextMessage
			if binary {
				typ = engine.BinaryMessage
			}
			r.batch = append(r.batch, broadcast.Message{Topic: r.intern(topic), Type: typ, Data: data})
		})
		if err != nil {
			r.reject(m, err)
		}
		return
	}
	topic := b.subj.TopicOf(m.Subject)
	if err := CheckTopic(topic); err != nil {
		r.reject(m, err)
		return
	}
	typ := engine.TextMessage
	switch t := m.Header.Get(wire.HeaderType); t {
	case "", wire.TypeText:
	case wire.TypeBinary:
		typ = engine.BinaryMessage
	default:
		r.reject(m, fmt.Errorf("%s %q is neither %q nor %q", wire.HeaderType, t, wire.TypeText, wire.TypeBinary))
		return
	}
	if typ == engine.TextMessage && !utf8.Valid(m.Data) {
		r.reject(m, errors.New("text message is not valid UTF-8"))
		return
	}
	r.batch = append(r.batch, broadcast.Message{Topic: topic, Type: typ, Data: m.Data})
}

// reject counts a message that breaks the wire format and logs it, at most
// once a second so that a misbehaving publisher cannot flood the log.
func (r *receiver) reject(m *nats.Msg, err error) {
	r.b.stats.rejected.Add(1)
	now := time.Now().UnixNano()
	if now-r.lastLog < int64(time.Second) {
		return
	}
	r.lastLog = now
	r.b.log.Warn("herald/nats: message refused: it breaks the wire format", "subject", m.Subject, "err", err,
		"rejected_total", r.b.stats.rejected.Load())
}

// intern returns topic as a string, the same one for the same name, so a
// batch entry costs no allocation once its topic has been seen.
func (r *receiver) intern(topic []byte) string {
	if s, ok := r.names[string(topic)]; ok {
		return s
	}
	s := string(topic)
	if len(r.names) < maxInterned {
		r.names[s] = s
	}
	return s
}
