package upgrade

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/valyala/bytebufferpool"

	"github.com/heraldws/herald/pool"
)

// MaxHTTPReplyBytes bounds the body an HTTPHandler may write; past it Write
// fails and the reply becomes a 500. The whole reply is buffered.
const MaxHTTPReplyBytes = 1 << 20

// serveHTTP answers a request that is not an upgrade attempt.
func (u *Upgrader) serveHTTP(r *Request, n int) Result {
	h := u.cfg.HTTPHandler
	if h == nil {
		return u.upgradeRequired(r, n)
	}
	r.share() // the handler gets its fields and its Header map
	target, err := url.ParseRequestURI(r.RequestURI)
	if err != nil {
		return u.refuseErr(r, n, malformed("malformed request target", quoteDetail(r.RequestURI)))
	}
	remote := ""
	if r.RemoteAddr != nil {
		remote = r.RemoteAddr.String()
	}
	hr := &http.Request{
		Method:     r.Method,
		URL:        target,
		Proto:      r.Proto,
		ProtoMajor: 1,
		ProtoMinor: int(r.Proto[7] - '0'),
		Header:     r.Header,
		Body:       http.NoBody,
		Host:       r.Host,
		RemoteAddr: remote,
		RequestURI: r.RequestURI,
		TLS:        r.TLS,
		Close:      true,
	}
	w := &responseWriter{header: make(http.Header), body: pool.Get(0), head: r.Method == http.MethodHead}
	defer pool.Put(w.body)
	if pe := runHandler(h, w, hr); pe != nil {
		return u.refuse(r, n, refused(http.StatusInternalServerError, "internal error", "", pe))
	}
	if w.tooLarge {
		return u.refuse(r, n, refused(http.StatusInternalServerError, "internal error", "", ErrReplyTooLarge))
	}
	if !w.wroteHeader {
		w.status = http.StatusOK
	}
	b := pool.Get(256 + w.body.Len())
	u.writeHTTPReply(b, w)
	return Result{
		Kind:     ServedHTTP,
		Consumed: n,
		Response: b,
		Request:  r,
		Status:   w.status,
	}
}

// upgradeRequired refuses a request that is not an upgrade attempt when no
// HTTPHandler serves it: 426 for GET and HEAD, 405 for other methods.
func (u *Upgrader) upgradeRequired(r *Request, n int) Result {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return u.refuse(r, n, refused(http.StatusUpgradeRequired, "this endpoint speaks WebSocket only", "", ErrUpgradeRequired))
	}
	f := refused(http.StatusMethodNotAllowed, ErrMethodNotAllowed.Error(), r.Method, ErrMethodNotAllowed)
	f.reply.extra = hdrAllowGet
	return u.refuse(r, n, f)
}

// runHandler serves r, turning a panic into a *PanicError. What the
// handler wrote before panicking is dropped with w.
func runHandler(h http.Handler, w http.ResponseWriter, r *http.Request) (pe *PanicError) {
	defer func() {
		if p := recover(); p != nil {
			pe = recovered(hookHTTPHandler, p)
		}
	}()
	h.ServeHTTP(w, r)
	return nil
}

// writeHTTPReply writes the handler's reply with its exact length and the
// close of the connection.
func (u *Upgrader) writeHTTPReply(b *bytebufferpool.ByteBuffer, w *responseWriter) {
	bodyOK := bodyAllowed(w.status)
	if bodyOK && w.length > 0 && w.header.Get("Content-Type") == "" {
		w.header.Set("Content-Type", http.DetectContentType(w.body.B[:min(512, w.body.Len())]))
	}
	o := appendStatusLine(b.B, w.status)
	if len(w.header["Date"]) == 0 {
		o = appendDate(o, u.now())
	} else {
		o = append(o, "Date: "...)
		o = append(o, w.header["Date"][0]...)
		o = append(o, "\r\n"...)
		delete(w.header, "Date")
	}
	b.B = o
	_ = w.header.WriteSubset(b, ownedHeaders)
	if bodyOK {
		length := w.length
		// A HEAD handler may announce the length of the body it did not
		// write.
		if w.head && length == 0 {
			if cl, err := strconv.ParseInt(w.header.Get("Content-Length"), 10, 64); err == nil && cl >= 0 {
				length = int(cl)
			}
		}
		b.B = append(b.B, "Content-Length: "...)
		b.B = strconv.AppendInt(b.B, int64(length), 10)
		b.B = append(b.B, "\r\n"...)
	}
	b.B = append(b.B, connClose...)
	b.B = append(b.B, "\r\n"...)
	if bodyOK && !w.head {
		b.B = append(b.B, w.body.B...)
	}
}

// bodyAllowed reports whether a reply with this status may carry content
// (RFC 9110 §6.4.1). Such replies also get no Content-Length.
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// responseWriter buffers a handler's reply.
type responseWriter struct {
	header      http.Header
	body        *bytebufferpool.ByteBuffer
	status      int
	length      int  // body bytes written, counted for HEAD too
	head        bool // HEAD: count the body, keep none of it
	wroteHeader bool
	tooLarge    bool
}

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if w.wroteHeader || code < 200 {
		// Informational replies are not supported; the final one counts.
		return
	}
	w.status, w.wroteHeader = code, true
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if w.length+len(p) > MaxHTTPReplyBytes {
		w.tooLarge = true
		return 0, http.ErrContentLength
	}
	w.length += len(p)
	if !w.head {
		w.body.B = append(w.body.B, p...)
	}
	return len(p), nil
}

func (w *responseWriter) WriteString(s string) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if w.length+len(s) > MaxHTTPReplyBytes {
		w.tooLarge = true
		return 0, http.ErrContentLength
	}
	w.length += len(s)
	if !w.head {
		w.body.B = append(w.body.B, s...)
	}
	return len(s), nil
}

// Flush does nothing: the reply is written once the handler returns.
func (w *responseWriter) Flush() {}
