// Package resume serves herald's subscribe protocol (docs/PROTOCOL.md) on
// a broadcast hub: clients subscribe to topics with JSON messages, receive
// publications with their positions, and after a reconnect resubscribe
// from their last position to get exactly what they missed, or learn that
// they cannot (recovered: false).
//
// The protocol is optional and layered on the Handler API. Wrap an
// application's handler (Server.Wrap), or call Server.Handle first in its
// OnMessage: protocol messages are answered, anything else is the
// application's.
//
//	hub, _ := broadcast.New(srv, broadcast.Options{})
//	rs := resume.New(hub, resume.Options{})
//	rs.Topics("news.*", resume.History{Size: 1000, MaxAge: 10 * time.Minute})
//	// the engine's handler: rs.Wrap(app), or in OnMessage: if rs.Handle(c, typ, data) { return }
//	rs.Publish("news.eu", []byte(`{"title":"…"}`))
//
// A publication is encoded once for all subscribers (the hub's Envelope),
// and history topics keep it with its position, so a recovery sends the
// kept bytes as they are. Nothing is kept per connection beyond its
// subscriptions in the hub.
package resume

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/pool"
)

// Error codes of error replies.
const (
	CodeBadRequest           = "bad_request"
	CodeUnknownType          = "unknown_type"
	CodeForbidden            = "forbidden"
	CodeTooManySubscriptions = "too_many_subscriptions"
	CodeUnavailable          = "unavailable"
	CodeInternal             = "internal"
)

// Close codes with which a server tells a client whether to reconnect
// (docs/PROTOCOL.md): 3000-3499 reconnect, 3500-3999 do not.
const (
	CloseReconnect    engine.StatusCode = 3000 // reconnect (with backoff), e.g. to rebalance
	CloseUnauthorized engine.StatusCode = 3500 // do not reconnect
	CloseForbidden    engine.StatusCode = 3501 // do not reconnect
	CloseBadRequest   engine.StatusCode = 3502 // do not reconnect
)

// Reconnect reports whether a client should reconnect after the server
// closed the connection with code (a CloseError's code, or 1006 when the
// connection was lost).
func Reconnect(code engine.StatusCode) bool {
	switch {
	case code == engine.StatusGoingAway, code == engine.StatusAbnormalClosure,
		code >= engine.StatusInternalError && code <= engine.StatusBadGateway:
		return true
	case code >= 3000 && code < 3500, code >= 4000 && code < 4500:
		return true
	}
	return false
}

// Defaults of Options.
const (
	DefaultMaxSubscriptions = 256
	DefaultPing             = 25 * time.Second
	DefaultPong             = 10 * time.Second
)

// Options configures a Server. Zero values take defaults.
type Options struct {
	// Authorize, if set, decides whether c may subscribe to topic: a
	// non-nil error refuses it with a forbidden reply carrying the error's
	// text. It runs where OnMessage runs (the connection's loop, or a
	// worker with engine.Config.Workers) and must not block the loop.
	Authorize func(c *engine.Conn, topic string) error
	// MaxSubscriptions bounds the topics one connection may be subscribed
	// to at once. Default 256.
	MaxSubscriptions int
	// MaxRecover bounds the publications one subscribed reply carries;
	// a client that missed more gets recovered: false. Default: no bound
	// but the history's size.
	MaxRecover int
	// Ping and Pong are the heartbeat the welcome message announces: the
	// client pings after Ping without sending, and gives up on the link
	// after Pong without hearing from the server. Defaults 25 s and 10 s.
	Ping, Pong time.Duration
}

// History configures the history of protocol topics (Server.Topics).
type History struct {
	// Size is how many publications each topic keeps; 0: no history (its
	// publications carry no position and a resubscribe never recovers).
	Size int
	// MaxAge, if positive, forgets publications older than it too.
	MaxAge time.Duration
	// IdleTTL: see broadcast.HistoryOptions.IdleTTL. Default 24 hours.
	IdleTTL time.Duration
	// Sequencer, if set, gives positions the same on every node (the NATS
	// module's Stream, over JetStream): see broadcast.Sequencer. A
	// publish is then a broker round trip: not from an event loop.
	Sequencer broadcast.Sequencer
}

// Server serves the protocol for one hub. Its methods are safe from any
// goroutine.
type Server struct {
	hub  *broadcast.Hub
	opts Options

	mu       sync.RWMutex
	patterns []string
	welcome  []byte
}

// New returns a Server on hub. Declare the protocol's topics with Topics.
func New(hub *broadcast.Hub, opts Options) *Server {
	if opts.MaxSubscriptions <= 0 {
		opts.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if opts.Ping <= 0 {
		opts.Ping = DefaultPing
	}
	if opts.Pong <= 0 {
		opts.Pong = DefaultPong
	}
	s := &Server{hub: hub, opts: opts}
	s.welcome = fmt.Appendf(nil, `{"type":"welcome","v":1,"ping":%d,"pong":%d}`, opts.Ping.Milliseconds(), opts.Pong.Milliseconds())
	return s
}

// Topics makes the topics matching pattern (a topic, or a prefix ending
// in "*") protocol topics: clients may subscribe to them (as Authorize
// allows), and every message published on them — by Publish, by the hub's
// own Publish, or arriving from a Bus — is a publication, with a position
// when h.Size > 0. It configures the hub's SetHistory for the pattern.
func (s *Server) Topics(pattern string, h History) error {
	err := s.hub.SetHistory(pattern, broadcast.HistoryOptions{
		Size: h.Size, MaxAge: h.MaxAge, IdleTTL: h.IdleTTL, Envelope: Envelope, Sequencer: h.Sequencer,
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.patterns {
		if p == pattern {
			return nil
		}
	}
	s.patterns = append(s.patterns, pattern)
	return nil
}

// serves reports whether topic is a protocol topic.
func (s *Server) serves(topic string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, p := range s.patterns {
		if pre, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(topic, pre) || p == topic {
			return true
		}
	}
	return false
}

// ErrNotServed is what Publish returns for a topic that Topics did not
// declare.
var ErrNotServed = errors.New("resume: topic is not a protocol topic (Server.Topics)")

// ErrNotJSON is what Publish returns for data that is not one JSON value.
var ErrNotJSON = errors.New("resume: Publish: data is not a JSON value (PublishBinary sends bytes)")

// Publish publishes data, one JSON value, on a protocol topic: subscribers
// receive it as a publication's "data". The hub's errors are returned as
// they are (a *broadcast.BusError when only the Bus refused it).
func (s *Server) Publish(topic string, data []byte) error {
	if !s.serves(topic) {
		return fmt.Errorf("%w: %q", ErrNotServed, topic)
	}
	if !json.Valid(data) {
		return ErrNotJSON
	}
	return s.hub.Publish(topic, engine.TextMessage, data)
}

// PublishBinary publishes bytes on a protocol topic: subscribers receive
// them base64-encoded in a publication's "b64".
func (s *Server) PublishBinary(topic string, data []byte) error {
	if !s.serves(topic) {
		return fmt.Errorf("%w: %q", ErrNotServed, topic)
	}
	return s.hub.Publish(topic, engine.BinaryMessage, data)
}

// Welcome sends the welcome message (the heartbeat's values) to c; call it
// from OnOpen if clients should use other values than the defaults.
func (s *Server) Welcome(c *engine.Conn) error {
	return c.Send(engine.TextMessage, s.welcome)
}

// Handle answers a protocol message and reports true, or reports false for
// a message that is not one (binary, not a JSON object with a string
// "type", or a type that is not the protocol's): the application's.
func (s *Server) Handle(c *engine.Conn, typ engine.MessageType, data []byte) bool {
	if typ != engine.TextMessage {
		return false
	}
	req, err := DecodeRequest(data)
	switch {
	case errors.Is(err, ErrNotProtocol):
		return false
	case err != nil:
		s.replyError(c, &req, CodeBadRequest, err.Error())
		return true
	}
	switch req.Type {
	case TypePing:
		buf := pool.Get(32)
		buf.B = append(buf.B, `{"type":"pong"`...)
		buf.B = appendID(buf.B, req.ID)
		buf.B = append(buf.B, '}')
		_ = c.Send(engine.TextMessage, buf.B)
		pool.Put(buf)
	case TypeSubscribe:
		s.subscribe(c, req)
	case TypeUnsubscribe:
		s.unsubscribe(c, req)
	}
	return true
}

func (s *Server) subscribe(c *engine.Conn, req Request) {
	if !s.serves(req.Topic) {
		s.replyError(c, &req, CodeForbidden, "topic is not served")
		return
	}
	if s.opts.Authorize != nil {
		if err := s.authorize(c, req.Topic); err != nil {
			s.replyError(c, &req, CodeForbidden, err.Error())
			return
		}
	}
	err := s.hub.SubscribeThen(c, req.Topic, s.opts.MaxSubscriptions, func(ok bool) {
		if !ok {
			s.replyError(c, &req, CodeTooManySubscriptions,
				"at most "+strconv.Itoa(s.opts.MaxSubscriptions)+" subscriptions per connection")
			return
		}
		s.replySubscribed(c, &req)
	})
	if err != nil {
		s.replyError(c, &req, CodeUnavailable, err.Error())
	}
}

// authorize runs the application's hook; a panic in it refuses the
// subscription instead of costing the connection.
func (s *Server) authorize(c *engine.Conn, topic string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errors.New("authorization failed")
		}
	}()
	return s.opts.Authorize(c, topic)
}

// replySubscribed runs on c's loop with the subscription in effect: the
// history read now and the live publications after it leave no gap, and
// the reply goes out before any of them.
func (s *Server) replySubscribed(c *engine.Conn, req *Request) {
	pubs := pool.Get(256)
	defer pool.Put(pubs)
	n := 0
	cur, recovered, err := s.hub.Recover(req.Topic, req.Since, s.opts.MaxRecover, func(_ uint64, _ engine.MessageType, p []byte) {
		if n > 0 {
			pubs.B = append(pubs.B, ',')
		}
		pubs.B = append(pubs.B, p...)
		n++
	})
	hasHistory := err == nil
	if err != nil && !errors.Is(err, broadcast.ErrNoHistory) {
		s.replyError(c, req, CodeInternal, err.Error())
		return
	}
	buf := pool.Get(len(pubs.B) + 128)
	defer pool.Put(buf)
	buf.B = append(buf.B, `{"type":"subscribed"`...)
	buf.B = appendID(buf.B, req.ID)
	buf.B = append(buf.B, `,"topic":`...)
	buf.B = appendString(buf.B, req.Topic)
	if hasHistory {
		buf.B = append(buf.B, `,"epoch":`...)
		buf.B = appendString(buf.B, cur.Epoch)
		buf.B = append(buf.B, `,"offset":`...)
		buf.B = strconv.AppendUint(buf.B, cur.Offset, 10)
	}
	if req.Since != nil {
		if recovered {
			buf.B = append(buf.B, `,"recovered":true,"pubs":[`...)
			buf.B = append(buf.B, pubs.B...)
			buf.B = append(buf.B, ']')
		} else {
			buf.B = append(buf.B, `,"recovered":false`...)
		}
	}
	buf.B = append(buf.B, '}')
	_ = c.Send(engine.TextMessage, buf.B)
}

func (s *Server) unsubscribe(c *engine.Conn, req Request) {
	err := s.hub.UnsubscribeThen(c, req.Topic, func() {
		buf := pool.Get(64 + len(req.Topic))
		buf.B = append(buf.B, `{"type":"unsubscribed"`...)
		buf.B = appendID(buf.B, req.ID)
		buf.B = append(buf.B, `,"topic":`...)
		buf.B = appendString(buf.B, req.Topic)
		buf.B = append(buf.B, '}')
		_ = c.Send(engine.TextMessage, buf.B)
		pool.Put(buf)
	})
	if err != nil {
		s.replyError(c, &req, CodeUnavailable, err.Error())
	}
}

// ReplyError sends an error reply to c: for an application that answers
// messages Handle left to it (code CodeBadRequest or CodeUnknownType).
func (s *Server) ReplyError(c *engine.Conn, code, message string) {
	s.replyError(c, &Request{}, code, message)
}

func (s *Server) replyError(c *engine.Conn, req *Request, code, message string) {
	buf := pool.Get(128 + len(message))
	buf.B = append(buf.B, `{"type":"error"`...)
	buf.B = appendID(buf.B, req.ID)
	if req.Topic != "" {
		buf.B = append(buf.B, `,"topic":`...)
		buf.B = appendString(buf.B, req.Topic)
	}
	buf.B = append(buf.B, `,"code":`...)
	buf.B = appendString(buf.B, code)
	buf.B = append(buf.B, `,"message":`...)
	buf.B = appendString(buf.B, strings.ToValidUTF8(message, "\uFFFD"))
	buf.B = append(buf.B, '}')
	_ = c.Send(engine.TextMessage, buf.B)
	pool.Put(buf)
}

func appendID(dst []byte, id uint64) []byte {
	if id == 0 {
		return dst
	}
	dst = append(dst, `,"id":`...)
	return strconv.AppendUint(dst, id, 10)
}

// Wrap returns a Handler that answers protocol messages and passes
// everything else to app. With a nil app, other text messages get a
// bad_request or unknown_type reply and binary ones are ignored.
func (s *Server) Wrap(app engine.Handler) engine.Handler {
	return &handler{s: s, app: app}
}

type handler struct {
	s   *Server
	app engine.Handler
}

func (h *handler) OnOpen(c *engine.Conn) {
	if h.app != nil {
		h.app.OnOpen(c)
	}
}

func (h *handler) OnMessage(c *engine.Conn, typ engine.MessageType, data []byte) {
	if h.s.Handle(c, typ, data) {
		return
	}
	if h.app != nil {
		h.app.OnMessage(c, typ, data)
		return
	}
	if typ != engine.TextMessage {
		return
	}
	var p probe
	if json.Unmarshal(data, &p) == nil && p.Type != nil {
		h.s.ReplyError(c, CodeUnknownType, "unknown type "+strconv.Quote(clip(*p.Type)))
		return
	}
	h.s.ReplyError(c, CodeBadRequest, "not a JSON object with a string \"type\"")
}

func (h *handler) OnClose(c *engine.Conn, err error) {
	if h.app != nil {
		h.app.OnClose(c, err)
	}
}

// OnPing and OnPong pass the application's optional callbacks through.
func (h *handler) OnPing(c *engine.Conn, data []byte) {
	if p, ok := h.app.(engine.PingHandler); ok {
		p.OnPing(c, data)
	}
}

func (h *handler) OnPong(c *engine.Conn, data []byte) {
	if p, ok := h.app.(engine.PongHandler); ok {
		p.OnPong(c, data)
	}
}
