package upgrade

import (
	"context"
	"net/http"
	"net/url"
)

// Pending is a handshake whose request is valid and whose hooks
// (Config.CheckOrigin, when the Origin rules did not accept the request, and
// Config.Authorize) have yet to run: what Step returns as Result.Pending,
// with Kind Deferred, when Config.DeferHooks is set.
//
// Run runs the hooks, on any goroutine, and returns the final Result. The
// caller that gives up waiting (a timeout, the connection went away) answers
// with Reject instead and ignores what Run returns later. The Request the
// hooks see stays valid for as long as anything refers to it: it was handed
// to a hook, so it is never reused (see ReleaseRequest).
type Pending struct {
	u *Upgrader
	r *Request
	n int
	o offer
	// askOrigin: the Origin rules did not accept the request, so
	// CheckOrigin decides.
	askOrigin bool
}

// Request is the request the hooks are asked about.
func (p *Pending) Request() *Request { return p.r }

// Run runs the hooks and returns the final Result: Upgraded, or Rejected
// with the reply the hooks chose (403 for an Origin CheckOrigin refused,
// a *RejectError's status, 500 for a panic, recovered as Step recovers it).
// ctx becomes the Request's Context, which the hooks should pass to what
// they call. Run may be called on any goroutine, once.
func (p *Pending) Run(ctx context.Context) Result {
	r := p.r
	r.ctx = ctx
	if p.askOrigin {
		if res, no := p.u.checkOrigin(r, p.n); no {
			return res
		}
	}
	return p.u.finish(r, p.n, p.o)
}

// Reject returns the refusal the handshake would get if Authorize returned
// err: a *RejectError (wrapped or not) chooses the status, reason and
// header fields, any other error gets 403. It is how a caller answers a
// handshake whose hooks did not finish in time (a 503 with Retry-After, say)
// without waiting for Run. Safe to call while Run runs.
func (p *Pending) Reject(err error) Result {
	status, reason, header := authRejection(err)
	return p.u.refuse(p.r, p.n, refusal{reply: errorReply{status: status, reason: reason, header: header}, cause: err})
}

// Context is the context a hook runs under. For an upgrade mounted on
// net/http (the engine's Server.ServeHTTP, UpgradeHTTP) it is the
// *http.Request's. For a handshake whose hooks run
// off the event loop (Config.DeferHooks; the engine's HandshakeWorkers) it
// is the one given to Pending.Run: with the engine it ends at the handshake
// timeout (its Deadline), when the connection closes or the server shuts
// down, and once the handshake is decided; context.Cause says why. For hooks
// that run on the event loop it is context.Background(): they must not
// block anyway.
func (r *Request) Context() context.Context {
	if r.ctx != nil {
		return r.ctx
	}
	return context.Background()
}

// HTTP converts r to an *http.Request, for code that reads requests the
// net/http way: Method, URL, Proto, Header, Host, RemoteAddr, RequestURI,
// Cookie and the Context (r.Context()) are filled in; the Body is empty.
// The Header map is r's own, not a copy: read it, do not change it. Each
// call builds a new value (a few small allocations); it reads r only, so it
// is safe on any goroutine for as long as r is valid.
func (r *Request) HTTP() *http.Request {
	minor := 1
	if len(r.Proto) == 8 {
		minor = int(r.Proto[7] - '0')
	}
	remote := ""
	if r.RemoteAddr != nil {
		remote = r.RemoteAddr.String()
	}
	hr := &http.Request{
		Method:     r.Method,
		URL:        r.url(),
		Proto:      r.Proto,
		ProtoMajor: 1,
		ProtoMinor: minor,
		Header:     r.Header,
		Body:       http.NoBody,
		Host:       r.Host,
		RemoteAddr: remote,
		RequestURI: r.RequestURI,
		TLS:        r.TLS,
	}
	if r.ctx == nil {
		return hr // context.Background(), as r.Context()
	}
	return hr.WithContext(r.ctx)
}

// url parses the request target as net/http does; a target it would not
// parse (none passes the request line check) keeps the decoded path.
func (r *Request) url() *url.URL {
	if u, err := url.ParseRequestURI(r.RequestURI); err == nil {
		return u
	}
	return &url.URL{Path: r.Path, RawQuery: r.RawQuery}
}
