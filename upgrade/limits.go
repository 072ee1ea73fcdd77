package upgrade

import (
	"errors"
	"net/http"
	"strconv"
)

// Causes of refusals decided by the server's operational limits rather
// than by the request itself. Result.Err wraps one of them.
var (
	// ErrNotFound: Config.Path is set and the upgrade asked for another
	// path. 404.
	ErrNotFound = errors.New("no WebSocket endpoint at this path")
	// ErrServerBusy: the server holds as many connections as it may. 503
	// with Retry-After.
	ErrServerBusy = errors.New("server at its connection limit")
	// ErrTooManyConnections: the client's address holds as many
	// connections as it may. 429 with Retry-After.
	ErrTooManyConnections = errors.New("too many connections from this address")
	// ErrHandshakeRate: the client's address opens connections faster
	// than it may. 429 with Retry-After.
	ErrHandshakeRate = errors.New("handshake rate limit exceeded")
)

// Refuse answers a handshake that the caller refused before looking at it:
// the server is full, or the client is over a limit. It reads the request
// head as Step does, so that the reply is written only once the client has
// sent it all and closing leaves no unread bytes behind (unread bytes make
// the kernel reset the connection, and the client may then lose the
// reply); a head that is malformed or over the limit gets the same reply.
// NeedMore until then. The reply is status with the cause's text as its
// body and, with retryAfter > 0, a Retry-After of that many seconds. The
// request is not parsed and no hook runs.
func (u *Upgrader) Refuse(st *State, buf []byte, status int, cause error, retryAfter int) Result {
	outcome, n := st.scan(buf, u.maxHead)
	if outcome == scanMore {
		return Result{}
	}
	st.Reset()
	f := refused(status, cause.Error(), "", cause)
	if retryAfter > 0 {
		f.reply.extra = "Retry-After: " + strconv.Itoa(retryAfter) + "\r\n"
	}
	return u.refuse(nil, n, f)
}

// checkPath refuses an upgrade to a path other than Config.Path, if set.
func (u *Upgrader) checkPath(r *Request) refusal {
	if u.cfg.Path == "" || r.Path == u.cfg.Path {
		return refusal{}
	}
	return refused(http.StatusNotFound, ErrNotFound.Error(), quoteDetail(r.Path), ErrNotFound)
}
