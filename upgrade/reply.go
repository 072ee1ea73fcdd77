package upgrade

import (
	"net/http"
	"strconv"
	"time"

	"github.com/valyala/bytebufferpool"
)

// Header lines herald adds to some replies.
const (
	hdrAllowGet      = "Allow: GET\r\n"
	hdrUpgradeWS     = "Upgrade: websocket\r\n"
	hdrWSVersion     = "Sec-WebSocket-Version: 13\r\n"
	connClose        = "Connection: close\r\n"
	connUpgradeClose = "Connection: Upgrade, close\r\n"
)

// ownedHeaders are the fields herald writes itself; a hook's or handler's
// copies are dropped.
var ownedHeaders = map[string]bool{
	"Connection":        true,
	"Content-Length":    true,
	"Transfer-Encoding": true,
	"Keep-Alive":        true,
	"Upgrade":           true,
	"Date":              true,
	"Trailer":           true,
}

// ownedErrorHeaders adds the fields of herald's plain-text error replies.
var ownedErrorHeaders = func() map[string]bool {
	m := map[string]bool{"Content-Type": true, "X-Content-Type-Options": true}
	for k := range ownedHeaders {
		m[k] = true
	}
	return m
}()

// appendStatusLine appends "HTTP/1.1 <code> <text>\r\n".
func appendStatusLine(b []byte, code int) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	if t := http.StatusText(code); t != "" {
		b = append(b, t...)
	} else {
		b = append(b, "status code "...)
		b = strconv.AppendInt(b, int64(code), 10)
	}
	return append(b, "\r\n"...)
}

func appendDate(b []byte, now time.Time) []byte {
	b = append(b, "Date: "...)
	b = now.UTC().AppendFormat(b, http.TimeFormat)
	return append(b, "\r\n"...)
}

// errorReply is a refusal to be written.
type errorReply struct {
	status int
	reason string      // body after "herald: "
	extra  string      // preformatted header lines herald adds
	header http.Header // a RejectError's fields
	head   bool        // the request was HEAD: no body
}

// write appends the reply to b: a complete HTTP/1.1 response that announces
// its length and the close of the connection.
func (u *Upgrader) writeError(b *bytebufferpool.ByteBuffer, e errorReply) {
	const prefix = "herald: "
	o := appendStatusLine(b.B, e.status)
	o = appendDate(o, u.now())
	o = append(o, "Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: "...)
	o = strconv.AppendInt(o, int64(len(prefix)+len(e.reason)), 10)
	o = append(o, "\r\n"...)
	if e.status == http.StatusUpgradeRequired {
		// RFC 9110 §7.8: a sender of Upgrade also sends the "upgrade"
		// connection option.
		o = append(o, connUpgradeClose...)
		o = append(o, hdrUpgradeWS...)
	} else {
		o = append(o, connClose...)
	}
	o = append(o, e.extra...)
	b.B = o
	if len(e.header) > 0 {
		_ = e.header.WriteSubset(b, ownedErrorHeaders)
	}
	b.B = append(b.B, "\r\n"...)
	if !e.head {
		b.B = append(b.B, prefix...)
		b.B = append(b.B, e.reason...)
	}
}
