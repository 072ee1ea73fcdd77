package upgrade

import (
	"errors"
	"net/http"
	"strconv"
)

// RejectError is the error an Authorize or CheckOrigin hook returns to refuse
// an upgrade with a chosen status. Reason is sent to the peer as the body
// ("herald: " + Reason), so it must not contain secrets; Header adds fields
// to the reply (WWW-Authenticate, Retry-After, Location). Fields that herald
// owns (Content-Type, Content-Length, Connection, Transfer-Encoding, Date)
// are ignored, as are invalid header names.
//
// A Status outside 300..599 is sent as 403.
type RejectError struct {
	Status int
	Reason string
	Header http.Header
}

// Error implements error.
func (e *RejectError) Error() string {
	return "herald: rejected with " + strconv.Itoa(e.Status) + ": " + e.Reason
}

// Reject returns a *RejectError with the given status and reason.
func Reject(status int, reason string) error {
	return &RejectError{Status: status, Reason: reason}
}

// Ready-made rejections for Authorize hooks.
var (
	ErrUnauthorized       = Reject(http.StatusUnauthorized, "unauthorized")
	ErrForbidden          = Reject(http.StatusForbidden, "forbidden")
	ErrTooManyRequests    = Reject(http.StatusTooManyRequests, "too many requests")
	ErrServiceUnavailable = Reject(http.StatusServiceUnavailable, "service unavailable")
)

// Causes of a refused handshake. Result.Err wraps one of them (test with
// errors.Is), a *PanicError, or the error an Authorize hook returned.
var (
	// ErrMalformed: the bytes are not an HTTP/1.x request herald accepts
	// (request line, header syntax, missing or repeated Host, HTTP/1.0
	// upgrade, bad request target). 400.
	ErrMalformed = errors.New("malformed request")
	// ErrHeaderTooLarge: no end of the head within Config.MaxHeaderBytes. 431.
	ErrHeaderTooLarge = errors.New("request header too large")
	// ErrBodyNotSupported: the request announces a body (Content-Length > 0
	// or Transfer-Encoding). 400.
	ErrBodyNotSupported = errors.New("request bodies are not supported")
	// ErrMethodNotAllowed: an upgrade that is not a GET, or a plain request
	// other than GET/HEAD without an HTTPHandler. 405.
	ErrMethodNotAllowed = errors.New("method not allowed")
	// ErrBadUpgrade: an upgrade whose Connection or Upgrade field is not
	// as RFC 6455 wants it: every Connection line a token list holding
	// "upgrade", every Upgrade line exactly "websocket". 400.
	ErrBadUpgrade = errors.New("bad Upgrade or Connection header")
	// ErrBadVersion: Sec-WebSocket-Version is missing or not 13. 426.
	ErrBadVersion = errors.New("unsupported Sec-WebSocket-Version")
	// ErrBadKey: Sec-WebSocket-Key is missing, repeated or not the base64 of
	// 16 bytes. 400.
	ErrBadKey = errors.New("bad Sec-WebSocket-Key")
	// ErrOriginNotAllowed: the Origin policy refused the request. 403.
	ErrOriginNotAllowed = errors.New("origin not allowed")
	// ErrBadSubprotocol: Sec-WebSocket-Protocol is not a token list. 400.
	ErrBadSubprotocol = errors.New("malformed Sec-WebSocket-Protocol")
	// ErrBadExtension: Sec-WebSocket-Extensions does not parse as an
	// extension list (RFC 6455 §9.1), whether or not the server
	// compresses. 400.
	ErrBadExtension = errors.New("malformed Sec-WebSocket-Extensions")
	// ErrUpgradeRequired: a plain GET/HEAD without an HTTPHandler. 426.
	ErrUpgradeRequired = errors.New("WebSocket upgrade required")
	// ErrReplyTooLarge: an HTTPHandler wrote more than MaxHTTPReplyBytes.
	// 500.
	ErrReplyTooLarge = errors.New("HTTP reply too large")
	// ErrPanic: a hook (Authorize, CheckOrigin, HTTPHandler) panicked; the
	// cause is then a *PanicError, which matches ErrPanic. 500.
	ErrPanic = errors.New("hook panicked")
)

// Error is Result.Err for a refused handshake. Status and Reason are what
// the peer was sent; Detail and Err are for logs only.
type Error struct {
	Status int    // the HTTP status sent
	Reason string // the reply body, after "herald: "
	Detail string // context not sent to the peer (the offending value); may be empty
	Err    error  // the cause: one of the Err* variables, a *PanicError, or Authorize's error
}

// Error implements error.
func (e *Error) Error() string {
	s := "herald: handshake refused with " + strconv.Itoa(e.Status) + ": " + e.Reason
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	if e.Err != nil && !e.causeShown() {
		s += ": " + e.Err.Error()
	}
	return s
}

// causeShown reports whether the cause says nothing the status and reason
// have not said already (the same text, or a *RejectError with the same
// status and reason), so that a log line does not repeat it.
func (e *Error) causeShown() bool {
	if e.Err.Error() == e.Reason {
		return true
	}
	re, ok := e.Err.(*RejectError)
	return ok && re.Status == e.Status && re.Reason == e.Reason
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }
