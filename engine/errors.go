package engine

import (
	"errors"
	"fmt"

	"github.com/heraldws/herald/upgrade"
)

// ErrClosed is returned by the Conn methods that send or close once the
// connection is closing or closed, and by Server methods once the server is
// shutting down. The broadcast hub returns it (wrapped) for a publish after
// Shutdown.
var ErrClosed = errors.New("herald: closed")

// ErrPongTimeout is the reason given to OnClose for a connection that did
// not answer a keepalive ping in time.
var ErrPongTimeout = errors.New("herald: no pong within the pong timeout")

// ErrWriteTimeout is the reason given to OnClose for a connection whose
// outbound backlog made no progress for Config.WriteTimeout.
var ErrWriteTimeout = errors.New("herald: peer read nothing within the write timeout")

// ErrCloseTimeout is the reason given to OnClose when the peer did not answer
// the server's close frame within Config.CloseTimeout.
var ErrCloseTimeout = errors.New("herald: peer did not complete the close handshake")

// ErrInvalidUTF8 is returned by Send and SendText for a text message that is
// not valid UTF-8: a browser fails the whole connection on such a message, so
// it is refused before it reaches the wire.
var ErrInvalidUTF8 = errors.New("herald: text message is not valid UTF-8")

// CloseError describes how a WebSocket connection was closed with a close
// frame.
type CloseError struct {
	// Code and Reason are from the close frame that ended the connection.
	Code   StatusCode
	Reason string
	// Remote is true when the peer sent the close frame first, false when
	// the server did (a protocol error, a limit, Close, Shutdown).
	Remote bool
}

// Error describes the close: who sent it, the code and the reason.
func (e *CloseError) Error() string {
	who := "server"
	if e.Remote {
		who = "peer"
	}
	if e.Reason == "" {
		return fmt.Sprintf("herald: closed by %s with %d", who, int(e.Code))
	}
	return fmt.Sprintf("herald: closed by %s with %d: %s", who, int(e.Code), e.Reason)
}

// PanicError is a panic recovered from user code: a Handler method (Hook is
// "OnOpen", "OnMessage", "OnClose", "OnPing" or "OnPong") or a handshake hook
// ("Authorize", "CheckOrigin", "HTTPHandler"). The server logs it through
// Config.Logger at Error level with its stack, counts it in Stats.Panics,
// passes it to Config.OnPanic, and closes only the connection it happened on
// (1011), or answers 500 before the upgrade. It is upgrade.PanicError, so
// that a handshake hook's panic needs no conversion.
type PanicError = upgrade.PanicError
