package engine

import (
	"errors"
	"fmt"

	"github.com/gobwas/ws"
)

// StatusCode is a WebSocket close code (RFC 6455 section 7.4).
type StatusCode = ws.StatusCode

// Close codes used by the server.
const (
	StatusNormalClosure   StatusCode = 1000
	StatusGoingAway       StatusCode = 1001
	StatusProtocolError   StatusCode = 1002
	StatusUnsupportedData StatusCode = 1003
	StatusNoStatus        StatusCode = 1005
	StatusInvalidPayload  StatusCode = 1007
	StatusPolicyViolation StatusCode = 1008
	StatusMessageTooBig   StatusCode = 1009
	StatusInternalError   StatusCode = 1011
	StatusTryAgainLater   StatusCode = 1013
)

// ErrClosed is returned by Conn methods once the connection is closing or
// closed, and by Server methods once the server is shut down.
var ErrClosed = errors.New("herald: connection closed")

// ErrPongTimeout is the reason given to OnClose for a connection that did
// not answer a keepalive ping in time.
var ErrPongTimeout = errors.New("herald: no pong within the pong timeout")

// ErrCloseTimeout is the reason given to OnClose when the peer did not answer
// the server's close frame within Config.CloseTimeout.
var ErrCloseTimeout = errors.New("herald: peer did not complete the close handshake")

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

func (e *CloseError) Error() string {
	who := "server"
	if e.Remote {
		who = "peer"
	}
	if e.Reason == "" {
		return fmt.Sprintf("herald: closed by %s with %d", who, e.Code)
	}
	return fmt.Sprintf("herald: closed by %s with %d: %s", who, e.Code, e.Reason)
}
