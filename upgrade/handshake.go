package upgrade

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/valyala/bytebufferpool"

	"github.com/heraldws/herald/pool"
)

// handshake is the pooled scratch space of one gobwas/ws run. Its hooks are
// method values bound once, when the pool creates it, so a run allocates no
// closures.
type handshake struct {
	u       *Upgrader
	wsu     ws.Upgrader
	rw      headRW
	ext     wsflate.Extension
	req     *Request
	chosen  string
	session any
	authErr error // what Authorize returned, if it refused
}

// headRW is what gobwas/ws reads the head from and writes its reply to:
// exactly the head bytes, and a pooled buffer. Nothing touches a socket.
type headRW struct {
	r bytes.Reader
	w *bytebufferpool.ByteBuffer
}

func (x *headRW) Read(p []byte) (int, error)  { return x.r.Read(p) }
func (x *headRW) Write(p []byte) (int, error) { return x.w.Write(p) }

func (u *Upgrader) newHandshake() *handshake {
	h := &handshake{u: u}
	h.wsu.WriteBufferSize = 256
	if len(u.cfg.Subprotocols) > 0 {
		h.wsu.Protocol = h.protocol
	}
	if u.cfg.Authorize != nil {
		h.wsu.OnBeforeUpgrade = h.beforeUpgrade
	}
	if c := u.cfg.Compression; c != nil {
		h.ext.Parameters = *c
		h.wsu.Negotiate = h.negotiate
	}
	return h
}

// protocol picks the subprotocol decide chose: gobwas/ws offers the
// client's tokens in the client's order, but herald honours the server's
// preference, so the choice is made beforehand.
func (h *handshake) protocol(p []byte) bool {
	return h.chosen != "" && string(p) == h.chosen
}

// negotiate accepts a permessage-deflate offer. An offer with invalid
// parameters is declined, not fatal (RFC 7692 §5).
func (h *handshake) negotiate(opt httphead.Option) (httphead.Option, error) {
	acc, err := h.ext.Negotiate(opt)
	if err != nil {
		return httphead.Option{}, nil
	}
	return acc, nil
}

// beforeUpgrade runs Authorize once gobwas/ws found the request valid.
func (h *handshake) beforeUpgrade() (ws.HandshakeHeader, error) {
	sess, err := callAuthorize(h.u.cfg.Authorize, h.req)
	if err == nil {
		h.session = sess
		return nil, nil
	}
	h.authErr = err
	status, reason, _ := authRejection(err)
	return nil, ws.RejectConnectionError(ws.RejectionStatus(status), ws.RejectionReason(reason))
}

func callAuthorize(f func(*Request) (any, error), r *Request) (sess any, err error) {
	defer func() {
		if p := recover(); p != nil {
			sess, err = nil, fmt.Errorf("%w: Authorize: %v", ErrPanic, p)
		}
	}()
	return f(r)
}

// authRejection maps an Authorize error to what the peer is told.
func authRejection(err error) (status int, reason string, header http.Header) {
	var re *RejectError
	switch {
	case errors.Is(err, ErrPanic):
		return http.StatusInternalServerError, "internal error", nil
	case errors.As(err, &re):
		status = re.Status
		if status < 300 || status > 599 {
			status = http.StatusForbidden
		}
		reason = re.Reason
		if reason == "" {
			reason = http.StatusText(status)
		}
		return status, reason, re.Header
	default:
		return http.StatusForbidden, "forbidden", nil
	}
}

// handshake runs gobwas/ws's Upgrader over exactly the head: it validates
// the request again, picks the subprotocol, negotiates compression, calls
// Authorize through OnBeforeUpgrade and writes the 101. Its own error
// replies lack "Connection: close", so on refusal its bytes are dropped and
// herald writes its own.
func (u *Upgrader) handshake(r *Request, head []byte, chosen string) Result {
	h := u.hsPool.Get().(*handshake)
	h.req, h.chosen = r, chosen
	h.ext.Reset()
	h.rw.r.Reset(head)
	b := pool.Get(256)
	h.rw.w = b
	// The reader never needs to grow: it holds the whole head.
	h.wsu.ReadBufferSize = max(len(head), 256)

	hs, err := h.wsu.Upgrade(&h.rw)

	_, compressed := h.ext.Accepted()
	sess, authErr := h.session, h.authErr
	h.req, h.session, h.authErr, h.chosen = nil, nil, nil, ""
	h.rw.r.Reset(nil)
	h.rw.w = nil
	u.hsPool.Put(h)

	n := len(head)
	if err == nil {
		return Result{
			Kind:        Upgraded,
			Consumed:    n,
			Response:    b,
			Request:     r,
			Subprotocol: hs.Protocol,
			Session:     sess,
			Compression: compressed,
			Status:      http.StatusSwitchingProtocols,
		}
	}
	pool.Put(b)
	if authErr != nil {
		status, reason, header := authRejection(authErr)
		res := u.refuse(r, n, errorReply{status: status, reason: reason, header: header}, "", authErr)
		return res
	}
	// gobwas/ws is stricter than herald's own checks in a few spots (each
	// of Upgrade and Connection must be valid on every line it appears on,
	// a Sec-WebSocket-Extensions offer must parse): take its verdict.
	status := http.StatusBadRequest
	var rej *ws.ConnectionRejectedError
	if errors.As(err, &rej) && rej.StatusCode() >= 400 && rej.StatusCode() <= 599 {
		status = rej.StatusCode()
	}
	cause := ErrMalformed
	if errors.Is(err, ws.ErrHandshakeBadUpgrade) || errors.Is(err, ws.ErrHandshakeBadConnection) {
		cause = ErrBadUpgrade
	}
	reason := strings.TrimPrefix(err.Error(), "handshake error: ")
	return u.refuse(r, n, errorReply{status: status, reason: reason}, "refused by gobwas/ws", &causes{cause, err})
}

// causes wraps herald's cause and gobwas/ws's error, so that errors.Is
// finds either.
type causes struct{ herald, ws error }

func (c *causes) Error() string   { return c.herald.Error() }
func (c *causes) Unwrap() []error { return []error{c.herald, c.ws} }
