package engine

// MessageType is the type of a data message: text (UTF-8, validated) or
// binary. The values are the RFC 6455 opcodes.
type MessageType uint8

// Message types.
const (
	TextMessage   MessageType = 1
	BinaryMessage MessageType = 2
)

// String returns "text" or "binary".
func (t MessageType) String() string {
	switch t {
	case TextMessage:
		return "text"
	case BinaryMessage:
		return "binary"
	}
	return "invalid"
}

// Handler is what a service implements to use herald. The server calls it
// on the connection's event loop (or, with Config.Workers, on a worker, in
// order per connection). Handlers must not block the loop: do slow work
// elsewhere and Send the result, which is safe from any goroutine.
type Handler interface {
	// OnOpen is called once the WebSocket handshake has completed.
	// Conn.Request is available during this call only.
	OnOpen(c *Conn)

	// OnMessage is called for every complete message. data is valid only
	// until OnMessage returns: copy it to keep it.
	OnMessage(c *Conn, typ MessageType, data []byte)

	// OnClose is called once when an open connection ends. err says why,
	// and is never nil:
	//
	//   - a *CloseError (errors.As) when a close frame was sent or
	//     received: Remote tells whether the peer sent it; a server
	//     shutdown is Code StatusGoingAway;
	//   - io.EOF (errors.Is) when the peer went away without a close frame;
	//   - ErrPongTimeout, ErrWriteTimeout or ErrCloseTimeout (errors.Is)
	//     when herald gave up on the peer;
	//   - otherwise the network error, e.g. syscall.ECONNRESET (errors.Is)
	//     when the peer reset the connection.
	OnClose(c *Conn, err error)
}

// PingHandler is an optional interface: a Handler that implements it is told
// about every ping, after the server has answered it with a pong.
type PingHandler interface {
	OnPing(c *Conn, data []byte)
}

// PongHandler is an optional interface: a Handler that implements it is told
// about every pong (answers to the server's keepalive pings, or unsolicited).
type PongHandler interface {
	OnPong(c *Conn, data []byte)
}

// BaseHandler implements Handler with methods that do nothing. Embed it to
// implement only the callbacks you need.
type BaseHandler struct{}

// OnOpen does nothing.
func (BaseHandler) OnOpen(*Conn) {}

// OnMessage does nothing.
func (BaseHandler) OnMessage(*Conn, MessageType, []byte) {}

// OnClose does nothing.
func (BaseHandler) OnClose(*Conn, error) {}
