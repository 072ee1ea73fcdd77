package upgrade

import (
	"fmt"
	"runtime/debug"
)

// Names of the hooks a PanicError can come from.
const (
	hookAuthorize   = "Authorize"
	hookCheckOrigin = "CheckOrigin"
	hookHTTPHandler = "HTTPHandler"
)

// PanicError is the cause of a handshake refused because a hook panicked:
// Config.Authorize, Config.CheckOrigin or Config.HTTPHandler. The upgrader
// recovers the panic so that one bad request cannot take an event loop, and
// every connection on it, down; the peer gets a 500 with the generic reason
// "internal error", never the panic value. Result.Err is then an *Error whose
// Err is the *PanicError, and errors.Is(err, ErrPanic) holds.
//
// A recovered panic is a bug in the hook, not a bad request, so it must not
// pass as one more refusal: the server logs it, with Hook, Value and Stack,
// through its logger at error level, and counts it apart from ordinary
// refusals.
type PanicError struct {
	// Hook names the hook: "Authorize", "CheckOrigin" or "HTTPHandler"
	// here; the engine uses the same type for its Handler methods
	// ("OnOpen", "OnMessage", ...).
	Hook string
	// Value is what the hook passed to panic.
	Value any
	// Stack is the panicking goroutine's stack, taken while the panic was
	// being recovered, so it shows where in the hook the panic started.
	Stack []byte
}

// Error names the hook and the panic value.
func (e *PanicError) Error() string {
	return fmt.Sprintf("herald: %s panicked: %v", e.Hook, e.Value)
}

// Is reports whether target is ErrPanic, so that callers can test for any
// hook panic without a type assertion.
func (e *PanicError) Is(target error) bool { return target == ErrPanic }

// recovered turns the value recover returned into a *PanicError. It must be
// called from the deferred function that recovered, so that the stack still
// holds the hook's frames.
func recovered(hook string, v any) *PanicError {
	return &PanicError{Hook: hook, Value: v, Stack: debug.Stack()}
}
