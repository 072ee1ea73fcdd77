package upgrade

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"unsafe"
)

// Request is the parsed head of a handshake request. It is built once the
// whole head has arrived and owns its memory (one copy of the head), so it
// stays valid after Step returns, until it is given to ReleaseRequest. Keep
// it only as long as needed: an idle connection should not carry its
// handshake around.
type Request struct {
	Method     string
	RequestURI string // the request target as sent: "/ws?room=1"
	Path       string // the decoded path, as url.URL.Path
	RawQuery   string // the query without '?', still encoded
	Host       string // the Host header, or the authority of an absolute-form target
	Proto      string // "HTTP/1.1"
	Header     http.Header
	RemoteAddr net.Addr
	// TLS is the connection's TLS state when the request came over TLS
	// (the server's Config.TLS): the version, the server name the client
	// asked for, the negotiated protocol, and the client's certificates
	// with their verified chains (PeerCertificates, VerifiedChains) when
	// the server asked for them. Nil over plain TCP.
	TLS *tls.ConnectionState

	// ctx is what Context returns; nil for context.Background().
	ctx context.Context
	// variant says which of the allocation shapes below holds r (noVariant:
	// none, r is not reused); shared is set once a hook was given r.
	variant int8
	shared  bool
}

// Query parses RawQuery, dropping malformed pairs like url.URL.Query.
func (r *Request) Query() url.Values {
	v, _ := url.ParseQuery(r.RawQuery)
	return v
}

// Cookie returns the named cookie, or http.ErrNoCookie.
func (r *Request) Cookie(name string) (*http.Cookie, error) {
	hr := http.Request{Header: r.Header}
	return hr.Cookie(name)
}

// Cookies returns the cookies the request carries.
func (r *Request) Cookies() []*http.Cookie {
	hr := http.Request{Header: r.Header}
	return hr.Cookies()
}

// Origin returns the Origin header ("" if absent).
func (r *Request) Origin() string { return headerFirst(r.Header, "Origin") }

func headerFirst(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// A Request is allocated together with the backing array of its header
// values and its copy of the head, so that a handshake costs one allocation
// for the three, plus the header map. Each variant fills a malloc size
// class, so the head gets the room the allocator would round up to anyway:
// the smallest holds a minimal client's head (about 190 bytes), the next a
// browser's, the larger ones heads with cookies.
//
// The runtime puts an 8-byte header before objects with pointers that are
// larger than 512 bytes, so the variants above 512 bytes leave room for it.
//
// ReleaseRequest gives a Request back for a later handshake, header map
// included, so that a server that does not look at its requests makes no
// garbage per handshake: tens of thousands of connects would otherwise leave
// a kilobyte each for the collector, and the heap grows by what is left
// between two collections.
const mallocHeader = 8

type (
	requestS struct {
		r    Request
		vals [8]string
		head [512 - unsafe.Sizeof(Request{}) - unsafe.Sizeof([8]string{})]byte
	}
	requestM struct {
		r    Request
		vals [16]string
		head [1024 - mallocHeader - unsafe.Sizeof(Request{}) - unsafe.Sizeof([16]string{})]byte
	}
	requestL struct {
		r    Request
		vals [24]string
		head [2048 - mallocHeader - unsafe.Sizeof(Request{}) - unsafe.Sizeof([24]string{})]byte
	}
	requestXL struct {
		r    Request
		vals [32]string
		head [4096 - mallocHeader - unsafe.Sizeof(Request{}) - unsafe.Sizeof([32]string{})]byte
	}
)

// Request variants; Request.variant indexes requestPools.
const (
	noVariant int8 = iota - 1
	variantS
	variantM
	variantL
	variantXL
)

// requestPools hold released Requests, one pool per variant. Each holds the
// *Request at the start of its variant's allocation (Request is the first
// field of each), with its header map emptied but kept.
var requestPools [4]sync.Pool

// newRequest returns a zero Request with room for the given number of
// header values and a head of headLen bytes: in one allocation when a
// variant fits them (none when a released one is reused), else in three.
// The Request's Header map is empty.
func newRequest(headLen, fields int) (*Request, []string, []byte) {
	v := noVariant
	switch {
	case headLen <= len(requestS{}.head) && fields <= len(requestS{}.vals):
		v = variantS
	case headLen <= len(requestM{}.head) && fields <= len(requestM{}.vals):
		v = variantM
	case headLen <= len(requestL{}.head) && fields <= len(requestL{}.vals):
		v = variantL
	case headLen <= len(requestXL{}.head) && fields <= len(requestXL{}.vals):
		v = variantXL
	default:
		return &Request{variant: noVariant, Header: make(http.Header, fields)}, make([]string, fields), make([]byte, headLen)
	}
	r, _ := requestPools[v].Get().(*Request)
	if r == nil {
		r = allocRequest(v)
		r.Header = make(http.Header, fields)
	}
	// Request is the first field of every variant, so r points at its
	// variant's allocation.
	switch v {
	case variantS:
		b := (*requestS)(unsafe.Pointer(r))
		return r, b.vals[:fields], b.head[:headLen]
	case variantM:
		b := (*requestM)(unsafe.Pointer(r))
		return r, b.vals[:fields], b.head[:headLen]
	case variantL:
		b := (*requestL)(unsafe.Pointer(r))
		return r, b.vals[:fields], b.head[:headLen]
	default:
		b := (*requestXL)(unsafe.Pointer(r))
		return r, b.vals[:fields], b.head[:headLen]
	}
}

// allocRequest allocates a Request of variant v.
func allocRequest(v int8) *Request {
	var r *Request
	switch v {
	case variantS:
		r = &new(requestS).r
	case variantM:
		r = &new(requestM).r
	case variantL:
		r = &new(requestL).r
	default:
		r = &new(requestXL).r
	}
	r.variant = v
	return r
}

// ReleaseRequest lets a later handshake reuse r's memory: its copy of the
// head, its header values and its header map. Call it only once nothing
// refers to r, nor to any string, slice or map taken from it: they will
// change under the holder's feet. A server that does not look at a
// connection's request after the handshake releases it and makes no garbage
// per handshake; not releasing is always safe (r is then collected as
// usual).
//
// A Request that a hook (CheckOrigin, Authorize, HTTPHandler) was given is
// never reused, since the hook may have kept parts of it: ReleaseRequest
// then does nothing. Nil is ignored.
func ReleaseRequest(r *Request) {
	if r == nil || r.shared || r.variant == noVariant {
		return
	}
	h, v := r.Header, r.variant
	clear(h)
	*r = Request{Header: h, variant: v}
	requestPools[v].Put(r)
}

// share marks r as seen by a hook before handing it over (see
// ReleaseRequest).
func (r *Request) share() *Request {
	r.shared = true
	return r
}

// parseRequest parses a complete head (ending with its empty line) into a
// Request. It copies the head once and slices every field out of the copy.
// It is strict where RFC 9112 allows a choice: no whitespace before a
// header's colon, no obs-fold continuation lines, no bare CR, single spaces
// in the request line.
func parseRequest(head []byte, remote net.Addr) (*Request, *Error) {
	// At most one field per line but the request line and the empty one.
	fields := max(bytes.Count(head, []byte{'\n'})-2, 0)
	r, vals, cp := newRequest(len(head), fields)
	copy(cp, head)
	// cp is not written again until ReleaseRequest; the strings of r point
	// into it.
	s := unsafe.String(unsafe.SliceData(cp), len(cp))
	// fail gives r back; e was built (with its details copied) first.
	fail := func(e *Error) (*Request, *Error) {
		ReleaseRequest(r)
		return nil, e
	}
	line, p, ok := nextLine(s, 0)
	if !ok {
		return fail(malformed("bare CR in request line", ""))
	}
	r.RemoteAddr = remote
	if e := r.parseRequestLine(line); e != nil {
		return fail(e)
	}
	// Header values share one backing array, inside the Request's own
	// allocation for a typical head; a repeated field's append copies out
	// of it (the slices are capped).
	for i := 0; ; i++ {
		line, p, ok = nextLine(s, p)
		if !ok {
			return fail(malformed("bare CR in header", ""))
		}
		if line == "" {
			break
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 || !isTokenString(line[:colon]) {
			return fail(malformed("malformed header line", quoteDetail(line)))
		}
		v := trimOWS(line[colon+1:])
		if !validFieldValue(v) {
			return fail(malformed("malformed header value", quoteDetail(line)))
		}
		k := canonicalKey(line[:colon])
		vals[i] = v
		if old, ok := r.Header[k]; ok {
			r.Header[k] = append(old, v)
		} else {
			r.Header[k] = vals[i : i+1 : i+1]
		}
	}
	return r, r.check()
}

// parseRequestLine fills Method, RequestURI, Path, RawQuery and Proto.
func (r *Request) parseRequestLine(line string) *Error {
	sp1 := strings.IndexByte(line, ' ')
	if sp1 <= 0 {
		return malformed("malformed request line", quoteDetail(line))
	}
	r.Method = line[:sp1]
	rest := line[sp1+1:]
	sp2 := strings.IndexByte(rest, ' ')
	if sp2 <= 0 || !isTokenString(r.Method) {
		return malformed("malformed request line", quoteDetail(line))
	}
	r.RequestURI, r.Proto = rest[:sp2], rest[sp2+1:]
	// HTTP-version = "HTTP/" DIGIT "." DIGIT; herald speaks 1.x only.
	if len(r.Proto) != 8 || r.Proto[:7] != "HTTP/1." || r.Proto[7] < '0' || r.Proto[7] > '9' {
		return malformed("unsupported HTTP version", quoteDetail(r.Proto))
	}
	t := r.RequestURI
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c == 0x7f {
			return malformed("malformed request target", quoteDetail(t))
		}
	}
	switch {
	case t[0] == '/': // origin-form, the usual case: no allocation unless escaped
		raw := t
		if q := strings.IndexByte(t, '?'); q >= 0 {
			raw, r.RawQuery = t[:q], t[q+1:]
		}
		r.Path = raw
		if strings.IndexByte(raw, '%') >= 0 {
			p, err := url.PathUnescape(raw)
			if err != nil {
				return malformed("malformed request target", quoteDetail(t))
			}
			r.Path = p
		}
	case t == "*" && r.Method == http.MethodOptions: // asterisk-form
		r.Path = "*"
	case strings.Contains(t, "://"): // absolute-form
		u, err := url.ParseRequestURI(t)
		if err != nil {
			return malformed("malformed request target", quoteDetail(t))
		}
		r.Path, r.RawQuery, r.Host = u.Path, u.RawQuery, u.Host
	default: // authority-form (CONNECT) and junk: herald is not a proxy
		return malformed("unsupported request target", quoteDetail(t))
	}
	return nil
}

// check applies the rules that need the whole header: Host, body framing.
func (r *Request) check() *Error {
	hosts := r.Header["Host"]
	switch {
	case len(hosts) > 1:
		return malformed("repeated Host header", "")
	case len(hosts) == 0 && r.Proto != "HTTP/1.0":
		return malformed("missing Host header", "")
	case len(hosts) == 1 && r.Host == "":
		r.Host = hosts[0]
	}
	if len(r.Header["Transfer-Encoding"]) > 0 {
		return &Error{Status: http.StatusBadRequest, Reason: ErrBodyNotSupported.Error(), Detail: "Transfer-Encoding", Err: ErrBodyNotSupported}
	}
	for _, v := range r.Header["Content-Length"] {
		if v == "" {
			return malformed("malformed Content-Length", "")
		}
		zero := true
		for i := 0; i < len(v); i++ {
			switch c := v[i]; {
			case c < '0' || c > '9':
				return malformed("malformed Content-Length", quoteDetail(v))
			case c != '0':
				zero = false
			}
		}
		if !zero {
			return &Error{Status: http.StatusBadRequest, Reason: ErrBodyNotSupported.Error(), Detail: "Content-Length: " + v, Err: ErrBodyNotSupported}
		}
	}
	return nil
}

// nextLine returns the line of s starting at p without its terminator
// ("\r\n" or "\n"), and where the next line starts. ok is false if the line
// holds a bare CR. s must hold a '\n' at or after p.
func nextLine(s string, p int) (line string, next int, ok bool) {
	i := strings.IndexByte(s[p:], '\n')
	line, next = s[p:p+i], p+i+1
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, next, strings.IndexByte(line, '\r') < 0
}

// trimOWS drops the optional whitespace (SP, HTAB) around a field value.
func trimOWS(s string) string {
	i, j := 0, len(s)
	for i < j && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	for j > i && (s[j-1] == ' ' || s[j-1] == '\t') {
		j--
	}
	return s[i:j]
}

// validFieldValue reports whether v holds no control byte but HTAB. Bytes
// 0x80 and up (obs-text) are allowed.
func validFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func malformed(reason, detail string) *Error {
	return &Error{Status: http.StatusBadRequest, Reason: reason, Detail: detail, Err: ErrMalformed}
}

// quoteDetail quotes s for Error.Detail, cut to a sane length.
func quoteDetail(s string) string {
	const max = 128
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.Quote(s)
}

// commonKeys interns the canonical names of the fields browsers and proxies
// send, so that a name sent in another case ("Sec-WebSocket-Key") costs no
// allocation.
var commonKeys = func() map[string]string {
	m := make(map[string]string)
	for _, k := range []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language",
		"Authorization", "Cache-Control", "Connection", "Content-Length",
		"Content-Type", "Cookie", "Dnt", "Forwarded", "Host", "If-Modified-Since",
		"If-None-Match", "Keep-Alive", "Origin", "Pragma", "Referer",
		"Sec-Ch-Ua", "Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform", "Sec-Fetch-Dest",
		"Sec-Fetch-Mode", "Sec-Fetch-Site", "Sec-Fetch-User", "Sec-Gpc",
		"Sec-Websocket-Extensions", "Sec-Websocket-Key", "Sec-Websocket-Protocol",
		"Sec-Websocket-Version", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"User-Agent", "Via", "X-Forwarded-For", "X-Forwarded-Host",
		"X-Forwarded-Proto", "X-Real-Ip", "X-Request-Id",
	} {
		m[k] = k
	}
	return m
}()

// canonicalKey is textproto.CanonicalMIMEHeaderKey for a valid token,
// without its allocation for common names in an uncommon case: measured at
// four allocations per browser handshake.
func canonicalKey(name string) string {
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return canonicalSlow(name)
		}
		upper = c == '-'
	}
	return name
}

func canonicalSlow(name string) string {
	var buf [64]byte
	if len(name) > len(buf) {
		return textproto.CanonicalMIMEHeaderKey(name)
	}
	b := buf[:len(name)]
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case upper && 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		case !upper && 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		b[i] = c
		upper = c == '-'
	}
	if k, ok := commonKeys[string(b)]; ok {
		return k
	}
	return string(b)
}
