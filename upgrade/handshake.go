package upgrade

import (
	"errors"
	"net/http"

	"github.com/heraldws/herald/pool"
)

// The fixed part of every 101: RFC 6455 §4.2.2 asks for exactly these
// fields, and clients compare the values case-insensitively.
const reply101 = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "

// finish ends a valid upgrade: Authorize runs last, so it is asked only
// about requests herald would otherwise accept, then the 101 is written.
func (u *Upgrader) finish(r *Request, n int, o offer) Result {
	var sess any
	if f := u.cfg.Authorize; f != nil {
		var err error
		if sess, err = callAuthorize(f, r.share()); err != nil {
			status, reason, header := authRejection(err)
			return u.refuse(r, n, refusal{reply: errorReply{status: status, reason: reason, header: header}, cause: err})
		}
	}
	b := pool.Get(256)
	b.B = u.append101(b.B, o)
	return Result{
		Kind:          Upgraded,
		Consumed:      n,
		Response:      b,
		Request:       r,
		Subprotocol:   o.subprotocol,
		Session:       sess,
		Compression:   o.deflate != deflateDeclined,
		DeflateWindow: o.deflate.window(),
		Status:        http.StatusSwitchingProtocols,
	}
}

// append101 appends the reply that accepts o. It carries no Date and no
// Content-Length: a 101 has no body and ends the HTTP exchange.
func (u *Upgrader) append101(b []byte, o offer) []byte {
	b = append(b, reply101...)
	b = appendAccept(b, o.key)
	b = append(b, "\r\n"...)
	if o.subprotocol != "" {
		b = append(b, "Sec-WebSocket-Protocol: "...)
		b = append(b, o.subprotocol...)
		b = append(b, "\r\n"...)
	}
	b = append(b, o.deflate.line()...)
	return append(b, "\r\n"...)
}

// callAuthorize runs the hook, turning a panic into a *PanicError.
func callAuthorize(f func(*Request) (any, error), r *Request) (sess any, err error) {
	defer func() {
		if p := recover(); p != nil {
			sess, err = nil, recovered(hookAuthorize, p)
		}
	}()
	return f(r)
}

// authRejection maps an Authorize error to what the peer is told. Only a
// *RejectError chooses the reply; any other error may hold details the
// client must not see, so it gets a generic 403.
func authRejection(err error) (status int, reason string, header http.Header) {
	var re *RejectError
	if _, ok := err.(*PanicError); ok {
		return http.StatusInternalServerError, "internal error", nil
	}
	if !errors.As(err, &re) {
		return http.StatusForbidden, "forbidden", nil
	}
	status = re.Status
	if status < 300 || status > 599 {
		status = http.StatusForbidden
	}
	reason = re.Reason
	if reason == "" {
		reason = http.StatusText(status)
	}
	return status, reason, re.Header
}
