package nats

import (
	"fmt"
	"math"

	"github.com/nats-io/nats.go"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/nats/internal/wire"
	"github.com/heraldws/herald/pool"
)

// Headers the bus sends, shared read-only by every publish.
var (
	binaryHeader = nats.Header{wire.HeaderType: {wire.TypeBinary}}
	batchHeader  = nats.Header{wire.HeaderBatch: {wire.BatchVersion}}
)

// batchHeaderBytes is what batchHeader costs on the wire, which counts
// against the broker's max_payload: "NATS/1.0\r\nHerald-Batch: 1\r\n\r\n".
const batchHeaderBytes = len("NATS/1.0\r\n") + len(wire.HeaderBatch) + len(": ") + len(wire.BatchVersion) + 4

// Publish sends a batch published on the attached hub to the other nodes.
// Every topic must pass CheckTopic, or nothing is sent and the error is a
// *TopicError. A batch crosses the broker as one NATS message per group
// (see the package documentation), unless it is larger than the broker's
// max_payload: then it is split between entries, in order. It returns
// once the messages are in the connection's buffer; while the broker is
// away, that is the reconnect buffer, and a publish that finds it full
// fails (Stats.Failed).
func (b *Bus) Publish(msgs []broadcast.Message) error {
	for i := range msgs {
		if err := CheckTopic(msgs[i].Topic); err != nil {
			b.stats.failed.Add(uint64(len(msgs)))
			return err
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	g := wire.Group(msgs[0].Topic)
	for i := 1; i < len(msgs); i++ {
		if wire.Group(msgs[i].Topic) != g {
			return b.publishGroups(msgs)
		}
	}
	return b.publishGroup(msgs, g) // the common case: one group, one message
}

// publishGroups sends a batch that spans several groups: one NATS message
// per group, in the order the groups first appear. Each topic is in one
// group, so its messages keep their order.
func (b *Bus) publishGroups(msgs []broadcast.Message) error {
	sent := make([]bool, len(msgs))
	part := make([]broadcast.Message, 0, len(msgs))
	var firstErr error
	for i := range msgs {
		if sent[i] {
			continue
		}
		g := wire.Group(msgs[i].Topic)
		part = part[:0]
		for j := i; j < len(msgs); j++ {
			if !sent[j] && wire.Group(msgs[j].Topic) == g {
				part = append(part, msgs[j])
				sent[j] = true
			}
		}
		if err := b.publishGroup(part, g); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// publishGroup sends messages of one group: a single message as itself on
// its topic's subject; several of one topic as a batch on that subject
// (interest stays exact); several topics as a batch on the group's batch
// subject.
func (b *Bus) publishGroup(part []broadcast.Message, g string) error {
	topic := part[0].Topic
	oneTopic := true
	for i := 1; i < len(part); i++ {
		if part[i].Topic != topic {
			oneTopic = false
			break
		}
	}
	switch {
	case oneTopic && len(part) == 1:
		m := &part[0]
		header := nats.Header(nil)
		if m.Type == engine.BinaryMessage {
			header = binaryHeader
		}
		return b.send(b.subj.Topic(topic), header, m.Data, 1)
	case oneTopic:
		return b.publishBatch(b.subj.Topic(topic), part)
	default:
		return b.publishBatch(b.subj.GroupBatch(g), part)
	}
}

// publishBatch encodes part as batch entries and sends them on subject: one
// NATS message, or several in order if it would exceed the broker's
// max_payload.
func (b *Bus) publishBatch(subject string, part []broadcast.Message) error {
	limit := int(b.nc.MaxPayload()) - batchHeaderBytes
	if limit <= 0 {
		limit = math.MaxInt // not known before the first connection
	}
	size := 0
	for i := range part {
		size += wire.EntrySize(part[i].Topic, part[i].Data)
	}
	buf := pool.Get(min(size, limit))
	defer pool.Put(buf)
	var firstErr error
	start := 0
	for i := range part {
		m := &part[i]
		if n := wire.EntrySize(m.Topic, m.Data); len(buf.B) > 0 && len(buf.B)+n > limit {
			if err := b.send(subject, batchHeader, buf.B, i-start); err != nil && firstErr == nil {
				firstErr = err
			}
			buf.B, start = buf.B[:0], i
		}
		buf.B = wire.AppendEntry(buf.B, m.Topic, m.Type == engine.BinaryMessage, m.Data)
	}
	if err := b.send(subject, batchHeader, buf.B, len(part)-start); err != nil && firstErr == nil {
		firstErr = err
	}
	return firstErr
}

// send hands one NATS message carrying n herald messages to the
// connection, and counts it. nats.go copies data before it returns.
func (b *Bus) send(subject string, header nats.Header, data []byte, n int) error {
	held := b.nc.IsReconnecting()
	var err error
	if header == nil {
		err = b.nc.Publish(subject, data) // plain PUB: what `nats pub` sends
	} else {
		err = b.nc.PublishMsg(&nats.Msg{Subject: subject, Header: header, Data: data})
	}
	if err != nil {
		b.stats.failed.Add(uint64(n))
		return fmt.Errorf("herald/nats: publish %d message(s) on %s: %w", n, subject, err)
	}
	b.stats.published.Add(uint64(n))
	b.stats.sent.Add(1)
	if held {
		b.stats.held.Add(uint64(n))
	}
	return nil
}
