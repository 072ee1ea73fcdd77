package upgrade

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/heraldws/herald/pool"
)

// DefaultMaxHeaderBytes is Config.MaxHeaderBytes when it is left zero.
const DefaultMaxHeaderBytes = 8 << 10

// maxMaxHeaderBytes bounds Config.MaxHeaderBytes so that State stays small.
const maxMaxHeaderBytes = 1 << 30

// Config tells an Upgrader what to accept. Hooks run on the caller's
// goroutine (the event loop) and must not block, unless DeferHooks hands
// CheckOrigin and Authorize to the caller to run elsewhere.
type Config struct {
	// MaxHeaderBytes bounds the request head: request line, header fields
	// and the empty line. A longer head gets 431. Default 8 KiB.
	MaxHeaderBytes int

	// Path, if set, is the one path that upgrades ("/ws"): an upgrade to
	// any other path gets 404, before the other checks and hooks. It is
	// compared with Request.Path (decoded, without the query). Plain HTTP
	// requests go to HTTPHandler whatever their path. Empty: any path.
	Path string

	// OriginPatterns widens the same-origin policy: a request whose Origin
	// host matches one of these globs is accepted. The syntax is
	// path.Match's, compared case-insensitively; a pattern holding "://" is
	// matched against "scheme://host" instead of the host; "*" accepts any
	// Origin, even "null". A malformed glob makes New fail.
	OriginPatterns []string

	// CheckOrigin, if set, is asked about requests whose Origin neither the
	// same-host rule nor OriginPatterns accepted. It can only widen.
	CheckOrigin func(r *Request) bool

	// Authorize, if set, runs last, for upgrades that are otherwise valid.
	// A nil error accepts: the session is returned in Result.Session. A
	// *RejectError refuses with its status, reason and header; any other
	// error refuses with 403 and a generic body (the error stays in
	// Result.Err).
	Authorize func(r *Request) (session any, err error)

	// DeferHooks makes Step return Deferred, instead of calling CheckOrigin
	// and Authorize itself, for a request that is valid but for what those
	// hooks will say: the caller runs them with Result.Pending.Run on a
	// goroutine where they may block. Requests that need no hook (no
	// Authorize, and an Origin the rules accept) are still decided by Step.
	DeferHooks bool

	// Subprotocols lists the subprotocols the server speaks, most preferred
	// first. The first of them that the client offered is chosen; none
	// chosen is not an error (the reply then names no subprotocol).
	Subprotocols []string

	// Compression accepts permessage-deflate (RFC 7692) offers that can be
	// met with no state kept between messages on either side: the 101
	// answers server_no_context_takeover and client_no_context_takeover
	// (see extensions.go for which offers qualify) and Result.Compression
	// is true. False declines every offer; offers are still checked for
	// syntax either way.
	Compression bool

	// ClientAddr, if set, is asked for the client's address once the head
	// is parsed, before any check or hook sees the Request: behind a
	// proxy, the address it vouches for in X-Forwarded-For or Forwarded.
	// A nil result keeps the peer's. It becomes Request.RemoteAddr.
	ClientAddr func(r *Request) net.Addr

	// HTTPHandler serves requests that are not WebSocket upgrade attempts
	// (health checks, metrics, a static page). It runs synchronously on the
	// caller's goroutine with a buffered ResponseWriter; request bodies are
	// not supported. Nil answers GET and HEAD with 426 Upgrade Required and
	// other methods with 405.
	HTTPHandler http.Handler
}

// Upgrader decides handshakes. It is safe for concurrent use by many event
// loops.
type Upgrader struct {
	cfg       Config
	maxHead   int
	origins   []originPattern
	anyOrigin bool
	now       func() time.Time // the clock for Date; tests pin it
}

// New validates cfg and applies its defaults.
func New(cfg Config) (*Upgrader, error) {
	u := &Upgrader{cfg: cfg, maxHead: cfg.MaxHeaderBytes, now: time.Now}
	switch {
	case u.maxHead == 0:
		u.maxHead = DefaultMaxHeaderBytes
	case u.maxHead < 0 || u.maxHead > maxMaxHeaderBytes:
		return nil, fmt.Errorf("upgrade: MaxHeaderBytes %d out of range 0..%d", cfg.MaxHeaderBytes, maxMaxHeaderBytes)
	}
	var err error
	if u.origins, u.anyOrigin, err = compileOriginPatterns(cfg.OriginPatterns); err != nil {
		return nil, err
	}
	for _, p := range cfg.Subprotocols {
		if !isTokenString(p) {
			return nil, fmt.Errorf("upgrade: subprotocol %q is not an HTTP token", p)
		}
	}
	u.cfg.Subprotocols = append([]string(nil), cfg.Subprotocols...)
	return u, nil
}

// Kind is what Step decided.
type Kind uint8

// Kinds of Result.
const (
	// NeedMore: the head is incomplete; call Step again with more bytes.
	NeedMore Kind = iota
	// Upgraded: write Response (a 101), discard Consumed bytes and speak
	// WebSocket; bytes after the head are already frames.
	Upgraded
	// Rejected: write Response (an error reply), then close.
	Rejected
	// ServedHTTP: HTTPHandler answered a plain request; write Response,
	// then close.
	ServedHTTP
	// Deferred (with Config.DeferHooks): the request is valid, and its
	// hooks must run before it is decided. Result.Pending.Run runs them
	// and returns the final Result (Upgraded or Rejected); no Response
	// yet. Consumed is the length of the head and Request the request, as
	// for a final Result.
	Deferred
)

var kindNames = [...]string{"NeedMore", "Upgraded", "Rejected", "ServedHTTP", "Deferred"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Result is the outcome of Step.
type Result struct {
	Kind Kind
	// Consumed is the length of the request head (0 for NeedMore). For a
	// refusal decided before the head ended (junk, 431) it is the number of
	// bytes examined. It never exceeds len(buf).
	Consumed int
	// Response is the reply to write: the 101, the error reply or the HTTP
	// reply. It comes from pool.Get; the caller writes it and pool.Put's it.
	// Nil for NeedMore.
	Response *bytebufferpool.ByteBuffer
	// Request is the parsed request; nil for NeedMore and for bytes that did
	// not parse.
	Request     *Request
	Subprotocol string // the chosen subprotocol, "" if none
	Session     any    // what Authorize returned
	// Compression reports that permessage-deflate was negotiated: both
	// sides compress each message on its own (no context takeover).
	Compression bool
	// DeflateWindow is, with Compression, the largest LZ77 window in bits
	// (8..15) the client lets the server's compressor refer back over: 15
	// unless its offer named a smaller server_max_window_bits.
	DeflateWindow int
	Status        int   // the HTTP status sent: 101, 400, 403, ...
	Err           error // why it was refused (an *Error), nil otherwise
	// Pending is, for Deferred, the handshake waiting for its hooks.
	Pending *Pending
}

// Step looks at buf, everything the peer has sent so far (earlier bytes
// included), and decides the handshake if it can. Between calls buf must
// only grow at its end; st remembers how far it was scanned, so each byte is
// scanned once. The decision depends on the bytes only, never on how they
// were split across calls. After a final Result st is reset.
//
// NeedMore does not allocate.
func (u *Upgrader) Step(st *State, buf []byte, remote net.Addr) Result {
	return u.StepTLS(st, buf, remote, nil)
}

// StepTLS is Step for a request read from a TLS connection: cs becomes the
// Request's TLS, so that CheckOrigin and Authorize can see the client's
// certificate.
func (u *Upgrader) StepTLS(st *State, buf []byte, remote net.Addr, cs *tls.ConnectionState) Result {
	outcome, n := st.scan(buf, u.maxHead)
	switch outcome {
	case scanMore:
		return Result{}
	case scanBad:
		st.Reset()
		return u.refuse(nil, n, refused(http.StatusBadRequest, "malformed request line",
			fmt.Sprintf("byte %#02x at offset %d", buf[n-1], n-1), ErrMalformed))
	case scanTooLarge:
		st.Reset()
		return u.refuse(nil, n, refused(http.StatusRequestHeaderFieldsTooLarge, ErrHeaderTooLarge.Error(),
			fmt.Sprintf("no end of head in %d bytes", n), ErrHeaderTooLarge))
	}
	st.Reset()
	return u.decide(buf[:n], remote, cs)
}

// refuse builds a Rejected result: the error reply in a pooled buffer and
// an *Error for the logs.
func (u *Upgrader) refuse(r *Request, consumed int, f refusal) Result {
	b := pool.Get(256)
	e := f.reply
	if r != nil {
		e.head = r.Method == http.MethodHead
	}
	u.writeError(b, e)
	return Result{
		Kind:     Rejected,
		Consumed: consumed,
		Response: b,
		Request:  r,
		Status:   e.status,
		Err:      &Error{Status: e.status, Reason: e.reason, Detail: f.detail, Err: f.cause},
	}
}

// refuseErr refuses with a prepared *Error.
func (u *Upgrader) refuseErr(r *Request, consumed int, e *Error) Result {
	return u.refuse(r, consumed, refused(e.Status, e.Reason, e.Detail, e.Err))
}

// decide handles a complete head, in the documented order: parse, upgrade
// or plain HTTP, the protocol rules, Origin, then Authorize and the 101.
// The head is parsed once; every later step reads the Request.
func (u *Upgrader) decide(head []byte, remote net.Addr, cs *tls.ConnectionState) Result {
	n := len(head)
	r, perr := parseRequest(head, remote)
	if perr != nil {
		return u.refuseErr(r, n, perr)
	}
	r.TLS = cs
	if f := u.cfg.ClientAddr; f != nil {
		if a := f(r); a != nil {
			r.RemoteAddr = a
		}
	}
	if !isUpgradeAttempt(r.Header) {
		return u.serveHTTP(r, n)
	}
	if f := u.checkPath(r); f.cause != nil {
		return u.refuse(r, n, f)
	}
	return u.judge(r, n)
}

// judge decides an upgrade attempt from its parsed request: the protocol
// rules, Origin, then Authorize and the 101. Step and UpgradeHTTP share it.
func (u *Upgrader) judge(r *Request, n int) Result {
	o, f := u.checkUpgrade(r)
	if f.cause != nil {
		return u.refuse(r, n, f)
	}
	byRule := u.originByRule(r)
	if !byRule && u.cfg.CheckOrigin == nil {
		return u.refuse(r, n, refused(http.StatusForbidden, ErrOriginNotAllowed.Error(), originDetail(r), ErrOriginNotAllowed))
	}
	if u.cfg.DeferHooks && (!byRule || u.cfg.Authorize != nil) {
		return Result{
			Kind:     Deferred,
			Consumed: n,
			Request:  r.share(),
			Pending:  &Pending{u: u, r: r, n: n, o: o, askOrigin: !byRule},
		}
	}
	if !byRule {
		if res, no := u.checkOrigin(r, n); no {
			return res
		}
	}
	return u.finish(r, n, o)
}

// checkOrigin asks CheckOrigin about r, whose Origin the rules did not
// accept, and returns the refusal if it does not accept it either.
func (u *Upgrader) checkOrigin(r *Request, n int) (res Result, no bool) {
	ok, detail, err := u.askCheckOrigin(r)
	if err != nil {
		return u.refuse(r, n, refused(http.StatusInternalServerError, "internal error", "", err)), true
	}
	if !ok {
		return u.refuse(r, n, refused(http.StatusForbidden, ErrOriginNotAllowed.Error(), detail, ErrOriginNotAllowed)), true
	}
	return Result{}, false
}
