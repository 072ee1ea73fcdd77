package upgrade

import (
	"net/http"
	"strings"
)

// refusal is a failed check: the reply to send, the detail for logs and the
// cause Result.Err wraps. The zero value means the check passed.
type refusal struct {
	reply  errorReply
	detail string
	cause  error
}

func refused(status int, reason, detail string, cause error) refusal {
	return refusal{reply: errorReply{status: status, reason: reason}, detail: detail, cause: cause}
}

// offer is what a valid upgrade request asks for, as the checks found it.
type offer struct {
	key         string        // Sec-WebSocket-Key, valid
	subprotocol string        // the subprotocol chosen, "" if none
	deflate     deflateAnswer // the permessage-deflate negotiation
}

// checkUpgrade applies RFC 6455 §4.2.1 to an upgrade attempt, in the order
// the package documentation gives; the first failure wins. Every rule is
// decided from the parsed header alone, before any hook runs, so hooks only
// ever see well-formed upgrades.
func (u *Upgrader) checkUpgrade(r *Request) (offer, refusal) {
	h := r.Header
	if r.Proto == "HTTP/1.0" {
		return offer{}, refused(http.StatusBadRequest, "WebSocket needs HTTP/1.1", "", ErrMalformed)
	}
	if r.Method != http.MethodGet {
		f := refused(http.StatusMethodNotAllowed, ErrMethodNotAllowed.Error(), r.Method, ErrMethodNotAllowed)
		f.reply.extra = hdrAllowGet
		return offer{}, f
	}
	if f := checkConnection(h["Connection"]); f.cause != nil {
		return offer{}, f
	}
	if f := checkUpgradeField(h["Upgrade"]); f.cause != nil {
		return offer{}, f
	}
	if v := h["Sec-Websocket-Version"]; !allEqual(v, "13") {
		f := refused(http.StatusUpgradeRequired, ErrBadVersion.Error(), strings.Join(v, ", "), ErrBadVersion)
		f.reply.extra = hdrWSVersion
		return offer{}, f
	}
	k := h["Sec-Websocket-Key"]
	if len(k) != 1 || !validKey(k[0]) {
		return offer{}, refused(http.StatusBadRequest, ErrBadKey.Error(), strings.Join(k, ", "), ErrBadKey)
	}
	o := offer{key: k[0]}
	var ok bool
	if o.subprotocol, ok = u.selectSubprotocol(h["Sec-Websocket-Protocol"]); !ok {
		return offer{}, refused(http.StatusBadRequest, ErrBadSubprotocol.Error(),
			strings.Join(h["Sec-Websocket-Protocol"], ", "), ErrBadSubprotocol)
	}
	if o.deflate, ok = u.negotiateExtensions(h["Sec-Websocket-Extensions"]); !ok {
		return offer{}, refused(http.StatusBadRequest, ErrBadExtension.Error(),
			strings.Join(h["Sec-Websocket-Extensions"], ", "), ErrBadExtension)
	}
	return o, refusal{}
}

// checkConnection wants "upgrade" among the Connection options, on every
// Connection line: a line without it means some hop rewrote the field, and
// the request is not the one the client made. Each line must also be a
// well-formed token list.
func checkConnection(vals []string) refusal {
	const missing = `missing "Connection: Upgrade"`
	bad := false
	found := false
	for _, v := range vals {
		valid, has := tokenListHas(v, "upgrade")
		bad = bad || !valid || !has
		found = found || has
	}
	switch {
	case !found:
		return refused(http.StatusBadRequest, missing, strings.Join(vals, ", "), ErrBadUpgrade)
	case bad:
		return refused(http.StatusBadRequest, `bad "Connection" header`, strings.Join(vals, ", "), ErrBadUpgrade)
	}
	return refusal{}
}

// checkUpgradeField wants every Upgrade line to be exactly "websocket", in
// any case: a server that switches to WebSocket cannot honour another
// protocol offered next to it ("websocket, h2c"), and RFC 6455 §4.1 has the
// client send the one keyword.
func checkUpgradeField(vals []string) refusal {
	found, bad := false, false
	for _, v := range vals {
		if strings.EqualFold(v, "websocket") {
			found = true
			continue
		}
		bad = true
		// "websocket, h2c" offers WebSocket, just not alone: a bad
		// field rather than a missing keyword.
		_, has := tokenListHas(v, "websocket")
		found = found || has
	}
	switch {
	case !found:
		return refused(http.StatusBadRequest, `missing "Upgrade: websocket"`, strings.Join(vals, ", "), ErrBadUpgrade)
	case bad:
		return refused(http.StatusBadRequest, `bad "Upgrade" header`, strings.Join(vals, ", "), ErrBadUpgrade)
	}
	return refusal{}
}

// isUpgradeAttempt: an Upgrade header mentions "websocket" in any case.
// Such a request is judged as a handshake; anything else is plain HTTP.
func isUpgradeAttempt(h http.Header) bool {
	for _, v := range h["Upgrade"] {
		if containsFold(v, "websocket") {
			return true
		}
	}
	return false
}

// containsFold reports whether s contains the lower-case ASCII word sub,
// ignoring case.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// tokenListHas parses v as a 1#token list (RFC 9110 §5.6.1: tokens
// separated by commas, optional whitespace around them, empty elements
// ignored). valid reports that v is one, with at least one token; has that
// one of its tokens is want, ignoring case.
func tokenListHas(v, want string) (valid, has bool) {
	tokens := 0
	for v != "" {
		var t string
		t, v, _ = strings.Cut(v, ",")
		if t = trimOWS(t); t == "" {
			continue
		}
		if !isTokenString(t) {
			return false, has
		}
		tokens++
		has = has || strings.EqualFold(t, want)
	}
	return tokens > 0, has
}

func allEqual(vals []string, want string) bool {
	for _, v := range vals {
		if v != want {
			return false
		}
	}
	return len(vals) > 0
}

// selectSubprotocol returns the first of Config.Subprotocols the client
// offered: the server's preference wins, since it knows which of its
// protocols is best. ok is false if a Sec-WebSocket-Protocol line is not a
// token list. Without configured subprotocols the header is ignored: a
// server that speaks none cannot misread one, and the 101 names none.
func (u *Upgrader) selectSubprotocol(offers []string) (chosen string, ok bool) {
	if len(u.cfg.Subprotocols) == 0 || len(offers) == 0 {
		return "", true
	}
	for _, v := range offers {
		if valid, _ := tokenListHas(v, ""); !valid {
			return "", false
		}
	}
	for _, p := range u.cfg.Subprotocols {
		for _, v := range offers {
			for v != "" {
				var t string
				t, v, _ = strings.Cut(v, ",")
				if trimOWS(t) == p {
					return p, true
				}
			}
		}
	}
	return "", true
}
