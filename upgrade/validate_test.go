package upgrade

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

// TestUpgradeRules walks every rule of the handshake validation: each row
// is one request, the status it gets, the cause Result.Err wraps and the
// reason the peer reads. Rows with status 101 show what a rule lets through.
func TestUpgradeRules(t *testing.T) {
	const deflate = true
	withConnection := func(lines ...string) string {
		var extra []string
		for _, l := range lines {
			extra = append(extra, "Connection: "+l)
		}
		return wsHeadWithout([]string{"Connection"}, extra...)
	}
	withUpgrade := func(lines ...string) string {
		var extra []string
		for _, l := range lines {
			extra = append(extra, "Upgrade: "+l)
		}
		return wsHeadWithout([]string{"Upgrade"}, extra...)
	}
	cases := []struct {
		name   string
		cfg    Config
		data   string
		status int
		cause  error  // nil for 101
		reason string // "" skips the check
	}{
		// Request line.
		{name: "HTTP/1.0", data: strings.Replace(wsHead(), "HTTP/1.1", "HTTP/1.0", 1), status: 400, cause: ErrMalformed, reason: "WebSocket needs HTTP/1.1"},
		{name: "POST", data: strings.Replace(wsHead(), "GET", "POST", 1), status: 405, cause: ErrMethodNotAllowed, reason: "method not allowed"},
		{name: "OPTIONS", data: strings.Replace(wsHead(), "GET", "OPTIONS", 1), status: 405, cause: ErrMethodNotAllowed},

		// Connection: every line a token list holding "upgrade".
		{name: "Connection missing", data: wsHeadWithout([]string{"Connection"}), status: 400, cause: ErrBadUpgrade, reason: `missing "Connection: Upgrade"`},
		{name: "Connection keep-alive", data: withConnection("keep-alive"), status: 400, cause: ErrBadUpgrade, reason: `missing "Connection: Upgrade"`},
		{name: "Connection empty", data: withConnection(""), status: 400, cause: ErrBadUpgrade, reason: `missing "Connection: Upgrade"`},
		{name: "Connection not a token", data: withConnection("upgrade/1"), status: 400, cause: ErrBadUpgrade, reason: `missing "Connection: Upgrade"`},
		{name: "Connection list", data: withConnection("keep-alive, Upgrade"), status: 101},
		{name: "Connection any case", data: withConnection("UPGRADE"), status: 101},
		{name: "Connection empty elements", data: withConnection(",Upgrade,,"), status: 101},
		{name: "Connection tab as whitespace", data: withConnection("keep-alive,\tUpgrade"), status: 101},
		{name: "Connection on two lines, both with upgrade", data: withConnection("Upgrade", "keep-alive, upgrade"), status: 101},
		{name: "Connection line without upgrade", data: withConnection("keep-alive", "Upgrade"), status: 400, cause: ErrBadUpgrade, reason: `bad "Connection" header`},
		{name: "Connection line without upgrade after one with it", data: withConnection("Upgrade", "close"), status: 400, cause: ErrBadUpgrade, reason: `bad "Connection" header`},
		{name: "Connection malformed list", data: withConnection("Upgrade, @x"), status: 400, cause: ErrBadUpgrade, reason: `bad "Connection" header`},
		{name: "Connection two words", data: withConnection("Upgrade keep-alive"), status: 400, cause: ErrBadUpgrade},

		// Upgrade: every line exactly "websocket".
		{name: "Upgrade any case", data: withUpgrade("WebSocket"), status: 101},
		{name: "Upgrade on two lines", data: withUpgrade("websocket", "WEBSOCKET"), status: 101},
		{name: "Upgrade websockets", data: withUpgrade("websockets"), status: 400, cause: ErrBadUpgrade, reason: `missing "Upgrade: websocket"`},
		{name: "Upgrade with a version", data: withUpgrade("websocket/13"), status: 400, cause: ErrBadUpgrade, reason: `missing "Upgrade: websocket"`},
		{name: "Upgrade list", data: withUpgrade("websocket, h2c"), status: 400, cause: ErrBadUpgrade, reason: `bad "Upgrade" header`},
		{name: "Upgrade second line", data: withUpgrade("websocket", "h2c"), status: 400, cause: ErrBadUpgrade, reason: `bad "Upgrade" header`},

		// Sec-WebSocket-Version: 13 on every line.
		{name: "version missing", data: wsHeadWithout([]string{"Sec-WebSocket-Version"}), status: 426, cause: ErrBadVersion, reason: "unsupported Sec-WebSocket-Version"},
		{name: "version 8", data: wsHeadWithout([]string{"Sec-WebSocket-Version"}, "Sec-WebSocket-Version: 8"), status: 426, cause: ErrBadVersion},
		{name: "version list", data: wsHeadWithout([]string{"Sec-WebSocket-Version"}, "Sec-WebSocket-Version: 13, 8"), status: 426, cause: ErrBadVersion},
		{name: "version 13 and 8", data: wsHead("Sec-WebSocket-Version: 8"), status: 426, cause: ErrBadVersion},
		{name: "version 13 twice", data: wsHead("Sec-WebSocket-Version: 13"), status: 101},

		// Sec-WebSocket-Key: one base64 of 16 bytes.
		{name: "key missing", data: wsHeadWithout([]string{"Sec-WebSocket-Key"}), status: 400, cause: ErrBadKey, reason: "bad Sec-WebSocket-Key"},
		{name: "key twice", data: wsHead("Sec-WebSocket-Key: " + testKey), status: 400, cause: ErrBadKey},
		{name: "key not base64", data: wsHeadWithout([]string{"Sec-WebSocket-Key"}, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ!=="), status: 400, cause: ErrBadKey},
		{name: "key of 15 bytes", data: wsHeadWithout([]string{"Sec-WebSocket-Key"}, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j"), status: 400, cause: ErrBadKey},
		{name: "key empty", data: wsHeadWithout([]string{"Sec-WebSocket-Key"}, "Sec-WebSocket-Key:"), status: 400, cause: ErrBadKey},

		// Sec-WebSocket-Protocol: token lists, when the server has any.
		{name: "subprotocol chosen", cfg: Config{Subprotocols: []string{"b", "a"}}, data: wsHead("Sec-WebSocket-Protocol: a, b"), status: 101},
		{name: "subprotocol malformed", cfg: Config{Subprotocols: []string{"chat"}}, data: wsHead("Sec-WebSocket-Protocol: chat, @bad"), status: 400, cause: ErrBadSubprotocol, reason: "malformed Sec-WebSocket-Protocol"},
		{name: "subprotocol malformed after a match", cfg: Config{Subprotocols: []string{"chat"}}, data: wsHead("Sec-WebSocket-Protocol: chat", "Sec-WebSocket-Protocol: a b"), status: 400, cause: ErrBadSubprotocol},
		{name: "subprotocol empty", cfg: Config{Subprotocols: []string{"chat"}}, data: wsHead("Sec-WebSocket-Protocol:"), status: 400, cause: ErrBadSubprotocol},
		{name: "subprotocol ignored without configured ones", data: wsHead("Sec-WebSocket-Protocol: @bad"), status: 101},

		// Sec-WebSocket-Extensions: an extension list, with or without
		// compression configured.
		{name: "extensions valid", cfg: Config{Compression: deflate}, data: wsHead("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-foo; a=1; b=\"q\""), status: 101},
		{name: "extensions valid, no compression", data: wsHead("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"), status: 101},
		{name: "extensions bad parameters are declined", cfg: Config{Compression: deflate}, data: wsHead("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=99"), status: 101},
		{name: "extensions malformed", cfg: Config{Compression: deflate}, data: wsHead("Sec-WebSocket-Extensions: permessage-deflate; =x"), status: 400, cause: ErrBadExtension, reason: "malformed Sec-WebSocket-Extensions"},
		{name: "extensions malformed, no compression", data: wsHead("Sec-WebSocket-Extensions: permessage-deflate;;"), status: 400, cause: ErrBadExtension},
		{name: "extensions empty", cfg: Config{Compression: deflate}, data: wsHead("Sec-WebSocket-Extensions:"), status: 400, cause: ErrBadExtension},
		{name: "extensions unterminated quote", cfg: Config{Compression: deflate}, data: wsHead(`Sec-WebSocket-Extensions: permessage-deflate; a="b`), status: 400, cause: ErrBadExtension},
		{name: "extensions malformed second line", cfg: Config{Compression: deflate}, data: wsHead("Sec-WebSocket-Extensions: permessage-deflate", "Sec-WebSocket-Extensions: @"), status: 400, cause: ErrBadExtension},

		// First failure wins, and the protocol rules come before the hooks.
		{name: "method before Connection", data: strings.Replace(wsHeadWithout([]string{"Connection"}), "GET", "PUT", 1), status: 405, cause: ErrMethodNotAllowed},
		{name: "Connection before Upgrade", data: wsHeadWithout([]string{"Connection", "Upgrade"}, "Upgrade: websocket, h2c"), status: 400, cause: ErrBadUpgrade, reason: `missing "Connection: Upgrade"`},
		{name: "Upgrade before version", data: wsHeadWithout([]string{"Upgrade", "Sec-WebSocket-Version"}, "Upgrade: websocket, h2c"), status: 400, cause: ErrBadUpgrade},
		{name: "version before key", data: wsHeadWithout([]string{"Sec-WebSocket-Version", "Sec-WebSocket-Key"}), status: 426, cause: ErrBadVersion},
		{name: "key before Origin", data: wsHeadWithout([]string{"Sec-WebSocket-Key"}, "Origin: https://evil.com"), status: 400, cause: ErrBadKey},
		{name: "extensions before Origin", data: wsHead("Sec-WebSocket-Extensions: ;", "Origin: https://evil.com"), status: 400, cause: ErrBadExtension},
		{name: "Origin", data: wsHead("Origin: https://evil.com"), status: 403, cause: ErrOriginNotAllowed, reason: "origin not allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hooks := 0
			cfg := tc.cfg
			cfg.CheckOrigin = func(*Request) bool { hooks++; return false }
			cfg.Authorize = func(*Request) (any, error) { hooks++; return nil, nil }
			res := stepWhole(newTest(t, cfg), tc.data)
			defer release(res)
			_, body := checkReply(t, res)
			if res.Status != tc.status {
				t.Fatalf(
					"status %d, want %d: %v",
					res.Status, tc.status, res.Err)
			}
			if tc.cause == nil {
				if res.Kind != Upgraded || res.Err != nil {
					t.Fatalf(
						"got %v: %v",
						res.Kind, res.Err)
				}
				return
			}
			var he *Error
			if res.Kind != Rejected || !errors.As(res.Err, &he) || he.Err != tc.cause || he.Status != tc.status {
				t.Fatalf(
					"got %v %#v, want an *Error with %d and cause %v",
					res.Kind, res.Err, tc.status, tc.cause)
			}
			if tc.reason != "" && (he.Reason != tc.reason || body != "herald: "+tc.reason) {
				t.Fatalf(
					"reason %q body %q, want %q",
					he.Reason, body, tc.reason)
			}
			// Only Origin refusals reach a hook, and only CheckOrigin.
			if want := map[bool]int{true: 1, false: 0}[tc.cause == ErrOriginNotAllowed]; hooks != want {
				t.Fatalf(
					"hooks called %d times, want %d",
					hooks, want)
			}
			if tc.status == http.StatusMethodNotAllowed && res.Response != nil && !strings.Contains(string(res.Response.B), "\r\nAllow: GET\r\n") {
				t.Fatalf(
					"405 without Allow\n%s",
					res.Response.B)
			}
		})
	}
}

// TestUpgradeRulesAreSplitProof: the rows above that exercise the new rules
// decide the same in any split, down to one byte per read.
func TestUpgradeRulesAreSplitProof(t *testing.T) {
	u := newTest(t, Config{Compression: true, Subprotocols: []string{"chat"}})
	for _, data := range []string{
		wsHeadWithout([]string{"Connection"}, "Connection: keep-alive", "Connection: Upgrade"),
		wsHeadWithout([]string{"Upgrade"}, "Upgrade: websocket", "Upgrade: h2c"),
		wsHead("Sec-WebSocket-Extensions: permessage-deflate; =x"),
		wsHead("Sec-WebSocket-Extensions: permessage-deflate, x; y=\"z\"", "Sec-WebSocket-Protocol: chat"),
	} {
		want := stepWhole(u, data)
		got := stepChunks(t, u, data, ones(len(data)))
		if !sameResult(got, want) {
			t.Fatalf(
				"%q: byte by byte %v %d, whole %v %d",
				data, got.Kind, got.Status, want.Kind, want.Status)
		}
		release(want)
		release(got)
	}
}
