// Package upgrade decides WebSocket handshakes (RFC 6455 §4) from bytes, for
// an event loop that owns the socket.
//
// # The incremental model
//
// The caller keeps every byte a handshaking connection has sent, and on each
// read passes all of them to Upgrader.Step with the connection's State:
//
//	res := up.Step(&st, buffered, remoteAddr)
//	switch res.Kind {
//	case upgrade.NeedMore:    // wait for more bytes (the caller owns the timeout)
//	case upgrade.Upgraded:    // write res.Response, discard res.Consumed bytes, speak WebSocket
//	case upgrade.Rejected,
//		upgrade.ServedHTTP: // write res.Response, then close
//	case upgrade.Deferred:    // Config.DeferHooks: res.Pending.Run(ctx) elsewhere gives the final Result
//	}
//	pool.Put(res.Response) // after writing it
//
// Hooks run on the caller's goroutine, so they must not block on an event
// loop. With Config.DeferHooks, Step stops short of them: a request that
// only they can decide comes back Deferred, and Pending.Run runs them on
// any goroutine, with a context the hooks read from Request.Context;
// Pending.Reject answers it without them (a timeout, a full queue).
//
// State remembers how far the bytes were scanned, so each byte is looked at
// once whatever the split, down to one byte per read. The request head ends
// at its first empty line; line ends may be "\r\n" or a bare "\n" (RFC 9112
// §2.2 lets a recipient accept LF alone), while a bare CR is refused. Bytes
// after the head are not consumed: they are frames the client pipelined.
// The outcome depends on the bytes alone, never on how they were split.
// NeedMore allocates nothing.
//
// Limits: a head longer than Config.MaxHeaderBytes gets 431 as soon as the
// buffer exceeds the limit with no end in it, so no more than the limit plus
// one read is ever held. A request line that starts with a non-token byte or
// holds a control byte (a TLS ClientHello, binary junk) gets 400 at the
// first such byte. Request bodies are not supported: Content-Length > 0 or
// any Transfer-Encoding gets 400.
//
// # Validation
//
// A request is a WebSocket upgrade attempt when an Upgrade header mentions
// "websocket" (any case). The head is parsed once, by herald's own parser,
// and the checks read the parsed Request. They run in this order, first
// failure wins:
//
//   - the head parses as HTTP/1.x with exactly one Host (HTTP/1.1), else 400;
//   - with Config.Path, an upgrade must ask for that path, else 404;
//   - an upgrade must be HTTP/1.1 (else 400) and a GET (else 405, Allow: GET);
//   - every Connection line must be a token list holding "upgrade", and
//     every Upgrade line must be exactly "websocket" (any case), else 400:
//     a line that fails means a hop rewrote the field, and "websocket, h2c"
//     asks for more than a WebSocket server can give;
//   - Sec-WebSocket-Version must be 13 on every line, else 426 with
//     Sec-WebSocket-Version: 13;
//   - Sec-WebSocket-Key must be one base64 of 16 bytes, else 400;
//   - with Config.Subprotocols, each Sec-WebSocket-Protocol line must be a
//     token list, else 400; the first of Config.Subprotocols that the client
//     offered is chosen;
//   - each Sec-WebSocket-Extensions line must parse as an extension list
//     (RFC 6455 §9.1), else 400, whether or not the server compresses; with
//     Config.Compression the first permessage-deflate offer that can be met
//     without context takeover on either side is accepted (RFC 7692; see
//     extensions.go), and an offer that cannot is declined, not refused;
//   - the Origin policy, below, else 403;
//   - Authorize runs last, only for otherwise valid upgrades: a *RejectError
//     refuses with its status, any other error with 403 and a generic body.
//
// The 101 carries Upgrade, Connection, Sec-WebSocket-Accept (computed
// without allocating) and, when chosen, Sec-WebSocket-Protocol and
// Sec-WebSocket-Extensions. A successful upgrade allocates the Request (with
// its copy of the head) and its header map, nothing else; a caller that
// hands the Request back with ReleaseRequest once done with it (the engine
// does, unless the handler asked for it) makes later handshakes reuse that
// memory and allocate nothing.
//
// Other requests go to Config.HTTPHandler, run synchronously with a buffered
// ResponseWriter (no bodies, no streaming, no hijacking). Without one, GET
// and HEAD get 426 Upgrade Required and other methods 405.
//
// Every reply but the 101 is a complete HTTP/1.1 response with a Date, an
// exact Content-Length and "Connection: close" (426 replies say "Connection:
// Upgrade, close" and carry "Upgrade: websocket", as RFC 9110 wants).
// Herald's own refusals are text/plain with a one-line body such as
// "herald: origin not allowed" (no body for HEAD). Handler replies keep the
// handler's fields, with Content-Type sniffed when unset as net/http does,
// and no Content-Length for 204 and 304. Result.Err keeps the full story (an
// *Error wrapping one of the Err* causes, or Authorize's error) for logs;
// the peer gets only the short reason. A panicking hook (Authorize,
// CheckOrigin, HTTPHandler) gets a 500 instead of taking the event loop
// down; Result.Err then holds a *PanicError with the panic value and stack.
//
// # Origin policy
//
// Browsers let any page open a WebSocket to any host, with the user's
// cookies: cross-site WebSocket hijacking. Browsers also always send Origin,
// so the policy is:
//
//   - no Origin header: accepted (not a browser);
//   - an Origin whose host equals the request's Host, port included, ignoring
//     case: accepted (same origin; "https://a.com" against "a.com:443" is not
//     equal, browsers do not send such Hosts);
//   - else an Origin matching one of Config.OriginPatterns: accepted. The
//     patterns are path.Match globs compared case-insensitively with the
//     Origin's host ("*.example.com", "localhost:*"), or with its
//     "scheme://host" when the pattern holds "://" ("https://*.example.com");
//     "*" accepts any Origin;
//   - else if Config.CheckOrigin returns true: accepted;
//   - else 403.
//
// "null" (sandboxed frames, file pages) and Origins without a host are
// refused unless "*", a pattern equal to the whole Origin ("null"), or
// CheckOrigin accepts them. Several Origin headers are refused unless "*" or
// CheckOrigin accepts them.
package upgrade
