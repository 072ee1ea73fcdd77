package upgrade

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"

	"github.com/valyala/bytebufferpool"

	"github.com/heraldws/herald/pool"
)

// UpgradeHTTP decides a handshake that net/http has already read, for a
// server mounted on a router (engine.Server.ServeHTTP). The policy is
// Step's: the same checks in the same order, the same Origin policy,
// subprotocol and permessage-deflate negotiation, MaxHeaderBytes applied
// to the head as it would have been sent, and Authorize last. The hooks
// see a *Request built from hr (Host back among its header fields, hr's
// header cloned, RemoteAddr parsed from hr.RemoteAddr) and run on the
// caller's goroutine, where Authorize may block.
//
// A refusal is written to w, with the status, header fields and body Step
// would have sent, and returned as Rejected with a nil Response. A request
// that is not an upgrade attempt is refused as Step refuses it without an
// HTTPHandler (426 or 405): the router serves plain HTTP. Upgraded returns
// the 101 in Response; nothing is written to w, so that the caller can
// hijack the connection and write the 101 itself (and pool.Put it).
func (u *Upgrader) UpgradeHTTP(w http.ResponseWriter, hr *http.Request) Result {
	r, e := requestFromHTTP(hr)
	n := headLen(hr)
	var res Result
	switch {
	case n > u.maxHead:
		res = u.refuse(r, n, refused(http.StatusRequestHeaderFieldsTooLarge, ErrHeaderTooLarge.Error(),
			"head of about "+strconv.Itoa(n)+" bytes", ErrHeaderTooLarge))
	case e != nil:
		res = u.refuseErr(r, n, e)
	case !isUpgradeAttempt(r.Header):
		res = u.upgradeRequired(r, n)
	default:
		res = u.judge(r, n)
		if res.Kind == Deferred {
			// Config.DeferHooks: the hooks were left for later, and this
			// goroutine (net/http's, for this request) is where they may
			// block, under the request's context.
			res = res.Pending.Run(hr.Context())
		}
	}
	if res.Kind != Upgraded {
		writeReply(w, res.Response.B, hr.Method)
		pool.Put(res.Response)
		res.Response = nil
	}
	return res
}

// WriteError answers hr on w with herald's plain-text error reply, as Step
// would write it: "herald: " + reason, Connection: close.
func (u *Upgrader) WriteError(w http.ResponseWriter, hr *http.Request, status int, reason string) {
	b := u.ErrorReply(status, reason, hr.Method == http.MethodHead)
	writeReply(w, b.B, hr.Method)
	pool.Put(b)
}

// ErrorReply returns herald's plain-text error reply in a pooled buffer,
// for a connection whose ResponseWriter is gone (hijacked): write it and
// pool.Put it. With head the body is left out.
func (u *Upgrader) ErrorReply(status int, reason string, head bool) *bytebufferpool.ByteBuffer {
	b := pool.Get(256)
	u.writeError(b, errorReply{status: status, reason: reason, head: head})
	return b
}

// requestFromHTTP builds the handshake's view of hr. Its header is a clone
// (the hooks may keep it), with Host put back where Step's parser leaves
// it. The Request is never pooled. The *Error reports what Step's parser
// would have refused that net/http accepted: another HTTP version than
// 1.x, a body.
func requestFromHTTP(hr *http.Request) (*Request, *Error) {
	h := hr.Header.Clone()
	if h == nil {
		h = make(http.Header, 1)
	}
	if hr.Host != "" {
		h["Host"] = []string{hr.Host}
	}
	r := &Request{
		Method:     hr.Method,
		RequestURI: hr.RequestURI,
		Path:       hr.URL.Path,
		RawQuery:   hr.URL.RawQuery,
		Host:       hr.Host,
		Proto:      hr.Proto,
		Header:     h,
		RemoteAddr: remoteAddr(hr.RemoteAddr),
		variant:    noVariant,
		ctx:        hr.Context(), // the hooks run on this request's goroutine
	}
	switch {
	case hr.ProtoMajor != 1:
		return r, malformed("unsupported HTTP version", quoteDetail(hr.Proto))
	case len(hr.TransferEncoding) > 0:
		return r, &Error{Status: http.StatusBadRequest, Reason: ErrBodyNotSupported.Error(), Detail: "Transfer-Encoding", Err: ErrBodyNotSupported}
	case hr.ContentLength != 0:
		return r, &Error{Status: http.StatusBadRequest, Reason: ErrBodyNotSupported.Error(),
			Detail: "Content-Length: " + strconv.FormatInt(hr.ContentLength, 10), Err: ErrBodyNotSupported}
	}
	return r, nil
}

// headLen is the length of hr's head as the client sent it, give or take
// the spelling of field names and optional whitespace: what MaxHeaderBytes
// bounds on the native path.
func headLen(hr *http.Request) int {
	n := len(hr.Method) + 1 + len(hr.RequestURI) + 1 + len(hr.Proto) + 2
	if hr.Host != "" {
		n += len("Host: ") + len(hr.Host) + 2
	}
	for k, vs := range hr.Header {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n + 2
}

// remoteAddr turns net/http's RemoteAddr string ("ip:port", or whatever a
// middleware put there) into a net.Addr.
func remoteAddr(s string) net.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return httpAddr(s)
}

// httpAddr is a RemoteAddr that is not "ip:port".
type httpAddr string

func (httpAddr) Network() string  { return "tcp" }
func (a httpAddr) String() string { return string(a) }

// writeReply writes a complete reply in raw (one of herald's error
// replies) to w: its status, its header fields but Date (net/http writes
// its own) and its body. Going through the bytes Step would send keeps the
// two paths' replies the same.
func writeReply(w http.ResponseWriter, raw []byte, method string) {
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), &http.Request{Method: method})
	if err != nil {
		// Not reached: raw is herald's own well-formed reply.
		http.Error(w, "herald: internal error", http.StatusInternalServerError)
		return
	}
	defer resp.Body.Close()
	h := w.Header()
	for k, v := range resp.Header {
		if k != "Date" {
			h[k] = v
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}
