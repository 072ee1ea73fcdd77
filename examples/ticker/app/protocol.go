package app

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/resume"
)

// The ticker speaks herald's subscribe protocol (docs/PROTOCOL.md) beside
// the bench contract, on the same /ws: a client that offers the
// subprotocol herald.json.v1 subscribes to the topics it wants, gets each
// tick as a publication with its position, and after a reconnect recovers
// what it missed or learns that it cannot. A client that does not offer
// it is the bench contract's: subscribed to its symbols at the upgrade and
// sent the plain ticks, byte for byte as before. The handshake tells the
// two apart, so nothing is kept per connection to do so.
//
// The protocol's topics are the symbols under a prefix, ticks.S0 for S0:
// a topic's history wraps every message of the topic in the protocol's
// envelope, for all its subscribers, so the plain topics must stay apart.
// Each tick is published twice, plainly and on the protocol's topic.

// Subprotocol is what a client offers to speak the subscribe protocol.
const Subprotocol = "herald.json.v1"

// TopicPrefix names the protocol's topics: TopicPrefix + "S3".
const TopicPrefix = "ticks."

// streamReadyWait bounds how long Start waits for a broker-held history to
// be replayed before serving: past it, the node serves, and recovers
// what it has read so far.
const streamReadyWait = 30 * time.Second

// serveProtocol declares the protocol's topics, with their history: in
// the broker when the cluster keeps one, in memory otherwise.
func (t *Ticker) serveProtocol() error {
	t.rs = resume.New(t.hub, resume.Options{
		// Only the ticker's symbols: a topic a client names is a history
		// the hub would hold for it.
		Authorize: func(_ *engine.Conn, topic string) error {
			if sym, ok := strings.CutPrefix(topic, TopicPrefix); !ok || !t.validSymbol(sym) {
				return errors.New("no such symbol")
			}
			return nil
		},
		MaxSubscriptions: t.opts.Symbols,
	})
	h := resume.History{Size: t.opts.History}
	if sc, ok := t.cluster.(StreamCluster); ok {
		t.stream = sc.Stream()
	}
	switch {
	case t.stream != nil && h.Size > 0:
		h.Sequencer = t.stream
	case t.cluster != nil && h.Size > 0:
		// Each node would number the ticks it happened to receive: a
		// node that had no subscriber of a topic for a while would skip
		// ticks without knowing. Positions that cannot be trusted are
		// worse than none.
		t.log.Warn("the broker keeps no history (JetStream is off): clients that reconnect will not recover missed ticks; start nats-server with -js")
		h.Size = 0
	}
	t.opts.History = h.Size
	if err := t.rs.Topics(TopicPrefix+"*", h); err != nil {
		return fmt.Errorf("the ticks' history: %w", err)
	}
	return nil
}

// attachStream starts reading the broker-held history, if there is one,
// and waits (bounded) for its replay, so that a client that reconnects to
// this node recovers what the others hold.
func (t *Ticker) attachStream() error {
	if t.stream == nil || t.opts.History == 0 {
		return nil
	}
	if err := t.stream.Attach(t.hub); err != nil {
		return err
	}
	select {
	case <-t.stream.Ready():
	case <-time.After(streamReadyWait):
		t.log.Warn("the ticks' history is still being read from the broker; serving meanwhile")
	}
	return nil
}

// openProtocol greets a protocol client with the heartbeat's values; it
// subscribes to topics itself.
func (t *Ticker) openProtocol(c *engine.Conn) {
	_ = t.rs.Welcome(c)
}

// OnMessage answers the protocol's messages on connections that speak it.
// The bench contract's connections send nothing the ticker reads.
func (t *Ticker) OnMessage(c *engine.Conn, typ engine.MessageType, data []byte) {
	if c.Subprotocol() != Subprotocol || t.rs.Handle(c, typ, data) {
		return
	}
	if typ == engine.TextMessage {
		t.rs.ReplyError(c, resume.CodeBadRequest, "the ticker takes subscribe, unsubscribe and ping only")
	}
}

// feedQueue bounds the ticks waiting for a broker-held history: 64 ticks
// absorb the broker's hiccups; past them, copies are dropped.
const feedQueue = 64

// startHistoryFeed starts the goroutine that stores the ticks in a
// broker-held history. A store is a broker round trip per symbol, and one
// that waits for an absent broker waits for its timeout: on the ticking
// goroutine that would hold back the plain ticks, which must keep their
// pace (and reach local clients while the broker is away).
func (t *Ticker) startHistoryFeed() {
	if t.stream == nil || t.opts.History == 0 {
		return
	}
	t.feed = make(chan []broadcast.Message, feedQueue)
	t.ticking.Add(1)
	go func() {
		defer t.ticking.Done()
		for {
			select {
			case <-t.stop:
				return
			case msgs := <-t.feed:
				t.publishProtocol(msgs)
			}
		}
	}()
}

// sendProtocol publishes the protocol's copy of a tick, or hands a copy of
// it to the feed. A tick the feed has no room for is not stored: pages see
// a gap in its sequence, which is what happened.
func (t *Ticker) sendProtocol(msgs []broadcast.Message) {
	if t.feed == nil {
		t.publishProtocol(msgs)
		return
	}
	select {
	case t.feed <- copyTick(msgs):
		if t.feedFull {
			t.feedFull = false
			t.log.Info("ticks reach the history's queue again")
		}
	default:
		if !t.feedFull {
			t.feedFull = true
			t.log.Warn("the history (JetStream) does not keep up: ticks are not stored, pages that reconnect will miss them", "queued", feedQueue)
		}
	}
}

// copyTick copies a tick's messages, whose data Ticks reuses.
func copyTick(msgs []broadcast.Message) []broadcast.Message {
	n := 0
	for i := range msgs {
		n += len(msgs[i].Data)
	}
	buf := make([]byte, 0, n)
	out := make([]broadcast.Message, len(msgs))
	for i, m := range msgs {
		start := len(buf)
		buf = append(buf, m.Data...)
		out[i] = broadcast.Message{Topic: m.Topic, Type: m.Type, Data: buf[start:len(buf):len(buf)]}
	}
	return out
}

// publishProtocol publishes a tick's messages again on the protocol's
// topics: on the ticking goroutine, or on the feed's.
func (t *Ticker) publishProtocol(msgs []broadcast.Message) {
	if cap(t.protoMsgs) < len(msgs) {
		t.protoMsgs = make([]broadcast.Message, len(msgs))
		t.protoTopics = make([]string, len(msgs))
	}
	out := t.protoMsgs[:len(msgs)]
	for i, m := range msgs {
		if t.protoTopics[i] == "" || t.protoTopics[i][len(TopicPrefix):] != m.Topic {
			t.protoTopics[i] = TopicPrefix + m.Topic // once per symbol
		}
		out[i] = broadcast.Message{Topic: t.protoTopics[i], Type: m.Type, Data: m.Data}
	}
	err := t.hub.PublishBatch(out)
	clear(out) // the data belongs to the tick
	var busErr *broadcast.BusError
	switch {
	case err == nil || errors.As(err, &busErr):
		// A broker that is away is reported by the plain ticks' publish.
		if t.historyDown {
			t.historyDown = false
			t.log.Info("ticks reach the history again")
		}
	case !t.historyDown:
		t.historyDown = true
		t.log.Warn("ticks do not reach the history: protocol clients miss them", "err", err)
	}
}

// historyReport is what /stats shows of the ticks' history.
func (t *Ticker) historyReport() map[string]any {
	where := "memory"
	switch {
	case t.opts.History == 0:
		where = "none"
	case t.stream != nil:
		where = "broker (JetStream)"
	}
	return map[string]any{"topics": TopicPrefix + "S<k>", "size": t.opts.History, "kept": where, "subprotocol": Subprotocol}
}
