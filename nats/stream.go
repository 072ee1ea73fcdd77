package nats

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
)

// Headers of a history message in the stream.
const (
	// HeaderEpoch is the topic's epoch: random, chosen by the publisher
	// that found the topic without messages in the stream.
	HeaderEpoch = "Herald-Epoch"
	// HeaderOffset is the message's offset in its topic: the previous
	// message's plus one, in the same epoch.
	HeaderOffset = "Herald-Offset"
)

// Defaults of StreamOptions.
const (
	DefaultStreamName    = "HERALD_HISTORY"
	DefaultStreamPrefix  = "heraldhist"
	DefaultStreamTimeout = 5 * time.Second
)

// StreamOptions configures a Stream. Zero values take defaults.
type StreamOptions struct {
	// URL is the broker, as in Options.URL.
	URL string
	// Name is the JetStream stream's name. Default "HERALD_HISTORY".
	Name string
	// Prefix is the subject prefix: a topic's messages are stored on
	// Prefix + "." + topic. It must differ from the Bus's prefix. Default
	// "heraldhist".
	Prefix string
	// Size is how many messages the stream keeps per topic (its
	// MaxMsgsPerSubject); give the hub's HistoryOptions the same. Required.
	Size int
	// MaxAge, if positive, is the stream's MaxAge.
	MaxAge time.Duration
	// Replicas of the stream in a JetStream cluster. Default 1.
	Replicas int
	// Memory keeps the stream in memory instead of files.
	Memory bool
	// Timeout bounds each request to the broker (a publish's
	// acknowledgement, a lookup). Default 5 s.
	Timeout time.Duration
	// Logger receives the stream's notices. Default slog.Default().
	Logger *slog.Logger
	// NATS are more options for the connection.
	NATS []nats.Option
}

// Stream is a broadcast.Sequencer over a NATS JetStream stream: topics'
// messages are stored in the stream, each with a position (an epoch and a
// per-topic offset, in headers) that every node reads back identically, so
// a client can resume on any node. Every node connects its own Stream to
// the same stream, gives it to the hub's HistoryOptions.Sequencer, and
// calls Attach.
//
// A publish is a broker round trip: the message is stored with
// "expected last sequence for its subject", so two nodes publishing to a
// topic at once cannot give one offset twice (the loser reads the topic's
// last message and tries again). Each node consumes the stream with an
// ordered consumer and delivers what it reads through
// Hub.DeliverSequenced, its own publishes included, so every node keeps
// the same history, in the stream's order.
type Stream struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	opts   StreamOptions
	log    *slog.Logger
	hub    atomic.Pointer[broadcast.Hub]
	cc     jetstream.ConsumeContext

	pubMu  sync.Mutex // one publish at a time: a topic's state is read and written in order
	mu     sync.Mutex
	topics map[string]topicState // the last message of each topic seen

	inbox     chan jetstream.Msg // from the consumer to deliverLoop, in the stream's order
	done      chan struct{}
	wg        sync.WaitGroup
	ready     chan struct{}
	readyOnce sync.Once
	closeOnce sync.Once
	published atomic.Uint64
	conflicts atomic.Uint64
	delivered atomic.Uint64
}

// topicState is what the next publish of a topic needs: the last
// message's position and its sequence in the stream (0: none).
type topicState struct {
	epoch  string
	offset uint64
	seq    uint64
}

// ConnectStream connects to the broker and creates (or updates) the
// stream.
func ConnectStream(opts StreamOptions) (*Stream, error) {
	if opts.URL == "" {
		opts.URL = nats.DefaultURL
	}
	if opts.Name == "" {
		opts.Name = DefaultStreamName
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultStreamPrefix
	}
	if err := CheckTopic(opts.Prefix); err != nil {
		return nil, fmt.Errorf("herald/nats: StreamOptions.Prefix: %w", err)
	}
	if opts.Size <= 0 {
		return nil, errors.New("herald/nats: StreamOptions.Size must be positive: the messages kept per topic")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultStreamTimeout
	}
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	natsOpts := append([]nats.Option{nats.Name("herald-history"), nats.MaxReconnects(-1)}, opts.NATS...)
	nc, err := nats.Connect(opts.URL, natsOpts...)
	if err != nil {
		return nil, fmt.Errorf("herald/nats: connect to %s: %w", opts.URL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("herald/nats: JetStream: %w", err)
	}
	storage := jetstream.FileStorage
	if opts.Memory {
		storage = jetstream.MemoryStorage
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	defer cancel()
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              opts.Name,
		Subjects:          []string{opts.Prefix + ".>"},
		MaxMsgsPerSubject: int64(opts.Size),
		MaxAge:            opts.MaxAge,
		Storage:           storage,
		Replicas:          opts.Replicas,
		Discard:           jetstream.DiscardOld,
		AllowDirect:       true,
	})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("herald/nats: stream %s: %w", opts.Name, err)
	}
	return &Stream{
		nc: nc, js: js, stream: st, opts: opts, log: opts.Logger,
		topics: make(map[string]topicState),
		inbox:  make(chan jetstream.Msg, 4096),
		done:   make(chan struct{}),
		ready:  make(chan struct{}),
	}, nil
}

// Attach starts delivering the stream to h: first every message it holds
// (the hub builds its histories from them), then each new one. Call it
// once, after the hub's SetHistory names this Stream as the Sequencer;
// Ready tells when the replay is done.
func (s *Stream) Attach(h *broadcast.Hub) error {
	if !s.hub.CompareAndSwap(nil, h) {
		return errors.New("herald/nats: Stream.Attach: attached already")
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	info, err := s.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("herald/nats: stream %s: %w", s.opts.Name, err)
	}
	if info.State.Msgs == 0 {
		s.markReady()
	}
	cons, err := s.js.OrderedConsumer(ctx, s.opts.Name, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{s.opts.Prefix + ".>"},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("herald/nats: consumer on %s: %w", s.opts.Name, err)
	}
	s.wg.Add(1)
	go s.deliverLoop()
	s.cc, err = cons.Consume(s.receive)
	if err != nil {
		return fmt.Errorf("herald/nats: consume %s: %w", s.opts.Name, err)
	}
	return nil
}

// Ready returns a channel closed once the messages the stream held at
// Attach have been delivered to the hub: from then on, this node recovers
// what any node could.
func (s *Stream) Ready() <-chan struct{} { return s.ready }

func (s *Stream) markReady() { s.readyOnce.Do(func() { close(s.ready) }) }

// receive queues a message of the stream for the delivery goroutine.
func (s *Stream) receive(msg jetstream.Msg) {
	select {
	case s.inbox <- msg:
	case <-s.done:
	}
}

// deliverLoop hands the stream's messages to the hub: what has arrived
// together goes as one DeliverSequenced, so the hub writes it to each
// subscriber in one write, as it does a local batch.
func (s *Stream) deliverLoop() {
	defer s.wg.Done()
	var (
		msgs []broadcast.Message
		pos  []broadcast.Position
	)
	for {
		var msg jetstream.Msg
		select {
		case msg = <-s.inbox:
		case <-s.done:
			return
		}
		msgs, pos = msgs[:0], pos[:0]
		caughtUp := false
		for {
			if m, p, ok := s.decode(msg, &caughtUp); ok {
				msgs, pos = append(msgs, m), append(pos, p)
			}
			if len(msgs) >= maxDeliverBatch {
				break
			}
			select {
			case msg = <-s.inbox:
				continue
			default:
			}
			break
		}
		if len(msgs) > 0 {
			if err := s.hub.Load().DeliverSequenced(msgs, pos); err != nil {
				if !errors.Is(err, engine.ErrClosed) {
					s.log.Warn("herald/nats: stream messages refused", "count", len(msgs), "err", err)
				}
			} else {
				s.delivered.Add(uint64(len(msgs)))
			}
		}
		clear(msgs)
		if caughtUp {
			s.markReady()
		}
	}
}

// maxDeliverBatch bounds the messages of one delivery to the hub.
const maxDeliverBatch = 256

// decode reads a stream message's topic and position; caughtUp is set
// when it was the last the stream held when it was sent.
func (s *Stream) decode(msg jetstream.Msg, caughtUp *bool) (broadcast.Message, broadcast.Position, bool) {
	meta, err := msg.Metadata()
	if err != nil {
		return broadcast.Message{}, broadcast.Position{}, false
	}
	if meta.NumPending == 0 {
		*caughtUp = true
	}
	topic, ok := strings.CutPrefix(msg.Subject(), s.opts.Prefix+".")
	h := msg.Headers()
	epoch := h.Get(HeaderEpoch)
	off, perr := strconv.ParseUint(h.Get(HeaderOffset), 10, 64)
	if !ok || epoch == "" || perr != nil || off == 0 {
		s.log.Warn("herald/nats: a stream message without a position is skipped", "subject", msg.Subject())
		return broadcast.Message{}, broadcast.Position{}, false
	}
	s.saw(topic, topicState{epoch: epoch, offset: off, seq: meta.Sequence.Stream})
	typ := engine.TextMessage
	if h.Get(HeaderType) == "binary" {
		typ = engine.BinaryMessage
	}
	return broadcast.Message{Topic: topic, Type: typ, Data: msg.Data()},
		broadcast.Position{Epoch: epoch, Offset: off}, true
}

// saw records a topic's last message, if newer than what was known.
func (s *Stream) saw(topic string, st topicState) {
	s.mu.Lock()
	if old, ok := s.topics[topic]; !ok || st.seq > old.seq {
		s.topics[topic] = st
	}
	s.mu.Unlock()
}

// maxAttempts bounds a publish's retries when other nodes publish to the
// same topic at once.
const maxAttempts = 32

// Sequence stores msgs in the stream, each with its topic's next position;
// the hubs receive them from the stream. It implements broadcast.Sequencer.
func (s *Stream) Sequence(msgs []broadcast.Message) error {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	for i := range msgs {
		if err := s.publish(&msgs[i]); err != nil {
			return err
		}
	}
	return nil
}

func (s *Stream) publish(m *broadcast.Message) error {
	if err := CheckTopic(m.Topic); err != nil {
		return err
	}
	subject := s.opts.Prefix + "." + m.Topic
	for attempt := 0; attempt < maxAttempts; attempt++ {
		// After a lost race, what this node has read of the stream may
		// still be behind: ask the stream itself.
		st, err := s.state(m.Topic, subject, attempt > 0)
		if err != nil {
			return err
		}
		next := topicState{epoch: st.epoch, offset: st.offset + 1}
		if st.seq == 0 {
			// Nothing of the topic in the stream: a new epoch.
			next = topicState{epoch: newEpoch(), offset: 1}
		}
		msg := &nats.Msg{Subject: subject, Data: m.Data, Header: nats.Header{}}
		msg.Header.Set(HeaderEpoch, next.epoch)
		msg.Header.Set(HeaderOffset, strconv.FormatUint(next.offset, 10))
		if m.Type == engine.BinaryMessage {
			msg.Header.Set(HeaderType, "binary")
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
		ack, err := s.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(st.seq))
		cancel()
		if err == nil {
			next.seq = ack.Sequence
			s.saw(m.Topic, next)
			s.published.Add(1)
			return nil
		}
		if !wrongLastSequence(err) {
			return fmt.Errorf("herald/nats: store %s: %w", subject, err)
		}
		// Another node published first, or the topic's last message
		// expired: read the stream's last one and try again.
		s.conflicts.Add(1)
		// A node that keeps publishing to the topic wins every race
		// against one that must look the last message up first: the
		// loser waits a little, more after each loss.
		time.Sleep(time.Duration(mrand.Int64N(int64(attempt+1) * int64(200*time.Microsecond))))
	}
	return fmt.Errorf("herald/nats: store %s: %d attempts lost to other publishers", subject, maxAttempts)
}

// state returns the topic's last message as known or, if it is not known
// or fresh, as the stream has it.
func (s *Stream) state(topic, subject string, fresh bool) (topicState, error) {
	s.mu.Lock()
	st, ok := s.topics[topic]
	s.mu.Unlock()
	if ok && !fresh {
		return st, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	last, err := s.stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		s.mu.Lock()
		delete(s.topics, topic) // expired, or purged: a new epoch
		s.mu.Unlock()
		return topicState{}, nil
	}
	if err != nil {
		return topicState{}, fmt.Errorf("herald/nats: last message of %s: %w", subject, err)
	}
	off, perr := strconv.ParseUint(last.Header.Get(HeaderOffset), 10, 64)
	epoch := last.Header.Get(HeaderEpoch)
	if perr != nil || epoch == "" {
		// Stored by someone else without a position: start an epoch
		// after it.
		return topicState{epoch: newEpoch(), offset: 0, seq: last.Sequence}, nil
	}
	st = topicState{epoch: epoch, offset: off, seq: last.Sequence}
	s.mu.Lock()
	s.topics[topic] = st // the stream's word: newer than anything read
	s.mu.Unlock()
	return st, nil
}

func wrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
	}
	return false
}

// newEpoch returns a fresh epoch: 64 random bits, in hex.
func newEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// StreamStats counts a Stream's work.
type StreamStats struct {
	Published uint64 // messages stored by this node
	Conflicts uint64 // publishes retried because another node stored first
	Delivered uint64 // stream messages delivered to the hub
}

// Stats returns the Stream's counters.
func (s *Stream) Stats() StreamStats {
	return StreamStats{Published: s.published.Load(), Conflicts: s.conflicts.Load(), Delivered: s.delivered.Load()}
}

// Close stops consuming and closes the connection. The stream stays on
// the broker.
func (s *Stream) Close() error {
	s.closeOnce.Do(func() {
		if s.cc != nil {
			s.cc.Stop()
		}
		close(s.done)
		s.wg.Wait()
		s.nc.Close()
	})
	return nil
}
