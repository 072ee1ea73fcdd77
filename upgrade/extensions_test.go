package upgrade

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws/wsflate"
)

// The answers to an accepted permessage-deflate offer.
const (
	answerDeflate   = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	answerDeflate15 = answerDeflate + "; server_max_window_bits=15"
	answerDeflate8  = answerDeflate + "; server_max_window_bits=8"
)

// answerWindow is the server's window an answer allows: 0 for none, the
// server_max_window_bits it repeats, or 15.
func answerWindow(answer string) int {
	if answer == "" {
		return 0
	}
	_, bits, found := strings.Cut(answer, "server_max_window_bits=")
	if !found {
		return 15
	}
	n, err := strconv.Atoi(bits)
	if err != nil {
		panic("answer " + answer + ": " + err.Error())
	}
	return n
}

// TestDeflateNegotiation is RFC 7692 §7's negotiation table: every
// parameter form, in every position, alone and together, several offers in
// one line and across lines; what real clients send; and the offers that
// must be declined. Each row is the Sec-WebSocket-Extensions lines of one
// request and the answer the 101 carries ("" for declined: the connection
// opens uncompressed).
func TestDeflateNegotiation(t *testing.T) {
	cases := []struct {
		name   string
		offer  []string
		answer string
	}{
		// Every parameter form alone.
		{"no parameters", []string{"permessage-deflate"}, answerDeflate},
		{"server_no_context_takeover", []string{"permessage-deflate; server_no_context_takeover"}, answerDeflate},
		{"client_no_context_takeover", []string{"permessage-deflate; client_no_context_takeover"}, answerDeflate},
		{"client_max_window_bits without a value", []string{"permessage-deflate; client_max_window_bits"}, answerDeflate},
		{"client_max_window_bits=8", []string{"permessage-deflate; client_max_window_bits=8"}, answerDeflate},
		{"client_max_window_bits=15", []string{"permessage-deflate; client_max_window_bits=15"}, answerDeflate},
		{"client_max_window_bits quoted", []string{`permessage-deflate; client_max_window_bits="10"`}, answerDeflate},
		{"server_max_window_bits=15 is repeated", []string{"permessage-deflate; server_max_window_bits=15"}, answerDeflate15},
		{"server_max_window_bits quoted", []string{`permessage-deflate; server_max_window_bits="15"`}, answerDeflate15},
		// All together, in any order.
		{"every parameter", []string{"permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15; client_max_window_bits=9"}, answerDeflate15},
		{"every parameter reversed", []string{"permessage-deflate; client_max_window_bits; server_max_window_bits=15; client_no_context_takeover; server_no_context_takeover"}, answerDeflate15},
		{"spaces and case", []string{"Permessage-Deflate ;Server_No_Context_Takeover ; CLIENT_MAX_WINDOW_BITS"}, answerDeflate},

		// What clients send.
		{"Chromium, Firefox, Node ws", []string{"permessage-deflate; client_max_window_bits"}, answerDeflate},
		{"gorilla/websocket", []string{"permessage-deflate; server_no_context_takeover; client_no_context_takeover"}, answerDeflate},
		{"Autobahn default (12.x, 13.1)", []string{"permessage-deflate; client_no_context_takeover; client_max_window_bits"}, answerDeflate},
		{"Autobahn 13.2", []string{"permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover"}, answerDeflate},
		{"Autobahn 13.3", []string{"permessage-deflate; client_no_context_takeover; client_max_window_bits; server_max_window_bits=8"}, answerDeflate8},
		{"Autobahn 13.4", []string{"permessage-deflate; client_no_context_takeover; client_max_window_bits; server_max_window_bits=15"}, answerDeflate15},
		{"Autobahn 13.5", []string{"permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover; server_max_window_bits=8"}, answerDeflate8},
		{"Autobahn 13.6", []string{"permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover; server_max_window_bits=15"}, answerDeflate15},
		{"Autobahn 13.7: the first offer", []string{"permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover; server_max_window_bits=8, " +
			"permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover, " +
			"permessage-deflate; client_no_context_takeover; client_max_window_bits"}, answerDeflate8},

		// Several offers: the first that can be met wins.
		{"first of two", []string{"permessage-deflate; server_max_window_bits=15, permessage-deflate"}, answerDeflate15},
		{"declined, then accepted", []string{"permessage-deflate; server_max_window_bits=16, permessage-deflate; client_max_window_bits"}, answerDeflate},
		{"across lines", []string{"permessage-deflate; x=1", "permessage-deflate; server_max_window_bits=15"}, answerDeflate15},
		{"after another extension", []string{"x-webkit-deflate-frame, permessage-deflate"}, answerDeflate},
		{"another extension's parameters are not ours", []string{"x-foo; server_max_window_bits=8, permessage-deflate"}, answerDeflate},

		// A smaller window for the server: met (Huffman codes only).
		{"server_max_window_bits=8", []string{"permessage-deflate; server_max_window_bits=8"}, answerDeflate8},
		{"server_max_window_bits=14", []string{"permessage-deflate; server_max_window_bits=14"}, answerDeflate + "; server_max_window_bits=14"},
		{"server_max_window_bits=9 quoted", []string{`permessage-deflate; server_max_window_bits="9"`}, answerDeflate + "; server_max_window_bits=9"},

		// Declined: nothing that can be met.
		{"server_max_window_bits without a value", []string{"permessage-deflate; server_max_window_bits"}, ""},
		{"server_max_window_bits=16", []string{"permessage-deflate; server_max_window_bits=16"}, ""},
		{"server_max_window_bits=7", []string{"permessage-deflate; server_max_window_bits=7"}, ""},
		{"server_max_window_bits leading zero", []string{"permessage-deflate; server_max_window_bits=015"}, ""},
		{"client_max_window_bits=16", []string{"permessage-deflate; client_max_window_bits=16"}, ""},
		{"client_max_window_bits=0", []string{"permessage-deflate; client_max_window_bits=0"}, ""},
		{"client_max_window_bits not a number", []string{"permessage-deflate; client_max_window_bits=ten"}, ""},
		{"server_no_context_takeover with a value", []string{"permessage-deflate; server_no_context_takeover=1"}, ""},
		{"client_no_context_takeover with a value", []string{"permessage-deflate; client_no_context_takeover=true"}, ""},
		{"unknown parameter", []string{"permessage-deflate; mem_level=8"}, ""},
		{"response-only spelling", []string{"permessage-deflate; no_context_takeover"}, ""},
		{"duplicate server_no_context_takeover", []string{"permessage-deflate; server_no_context_takeover; server_no_context_takeover"}, ""},
		{"duplicate client_no_context_takeover", []string{"permessage-deflate; client_no_context_takeover; client_no_context_takeover"}, ""},
		{"duplicate client_max_window_bits", []string{"permessage-deflate; client_max_window_bits; client_max_window_bits"}, ""},
		{"duplicate client_max_window_bits with values", []string{"permessage-deflate; client_max_window_bits=9; client_max_window_bits=10"}, ""},
		{"duplicate server_max_window_bits", []string{"permessage-deflate; server_max_window_bits=15; server_max_window_bits=15"}, ""},
		{"another extension only", []string{"x-webkit-deflate-frame"}, ""},
		{"every offer declined", []string{"permessage-deflate; a, permessage-deflate; server_max_window_bits=16"}, ""},
		{"no header", nil, ""},
	}
	u := newTest(t, Config{Compression: true})
	off := newTest(t, Config{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var extra []string
			for _, line := range tc.offer {
				extra = append(extra, "Sec-WebSocket-Extensions: "+line)
			}
			res := stepWhole(u, wsHead(extra...))
			resp, _ := checkReply(t, res)
			got := resp.Header.Get("Sec-WebSocket-Extensions")
			if res.Kind != Upgraded || got != tc.answer || res.Compression != (tc.answer != "") {
				t.Fatalf(
					"offer %q: %v, Compression %v, answer %q; want Upgraded, answer %q (%v)",
					tc.offer, res.Kind, res.Compression, got, tc.answer, res.Err)
			}
			if want := answerWindow(tc.answer); res.DeflateWindow != want {
				t.Errorf("offer %q: DeflateWindow %d, want %d", tc.offer, res.DeflateWindow, want)
			}
			release(res)

			// With compression off, every offer is declined.
			res = stepWhole(off, wsHead(extra...))
			resp, _ = checkReply(t, res)
			if res.Kind != Upgraded || res.Compression || resp.Header.Get("Sec-WebSocket-Extensions") != "" {
				t.Fatalf(
					"compression off, offer %q: %v, Compression %v, answer %q",
					tc.offer, res.Kind, res.Compression, resp.Header.Get("Sec-WebSocket-Extensions"))
			}
			release(res)
		})
	}
}

// TestDeflateNegotiationMalformed: a line that is not an extension list is
// a malformed request whether or not the server compresses (RFC 6455 §9.1);
// a declined offer is not.
func TestDeflateNegotiationMalformed(t *testing.T) {
	for _, cfg := range []Config{{Compression: true}, {}} {
		for _, line := range []string{"permessage-deflate; =x", "permessage-deflate;;", "", ";", `permessage-deflate; a="b`} {
			res := stepWhole(newTest(t, cfg), wsHead("Sec-WebSocket-Extensions: "+line))
			if res.Status != 400 {
				t.Fatalf(
					"compression %v, %q: status %d, want 400",
					cfg.Compression, line, res.Status)
			}
			release(res)
		}
	}
}

// TestWsflateWindowCheckIsBackwards pins the defects of gobwas/ws's wsflate
// negotiation that made herald decide offers itself (extensions.go): if a
// new version fixes them, this test says so and the workaround can be
// revisited.
func TestWsflateWindowCheckIsBackwards(t *testing.T) {
	negotiate := func(server wsflate.Parameters, offer string) (string, bool) {
		var opt httphead.Option
		ok := httphead.ScanOptions([]byte(offer), func(_ int, name, attr, val []byte) httphead.Control {
			opt.Name = name
			if attr != nil {
				opt.Parameters.Set(attr, val)
			}
			return httphead.ControlContinue
		})
		if !ok {
			t.Fatalf("offer %q does not parse", offer)
		}
		ext := wsflate.Extension{Parameters: server}
		answer, err := ext.Negotiate(opt)
		if err != nil || answer.Size() == 0 {
			return "", false
		}
		var b bytes.Buffer
		_, _ = httphead.WriteOptions(&b, []httphead.Option{answer})
		return b.String(), true
	}

	// A client that allows the server a window of at most 2^8 is accepted
	// by a server that uses 2^10, and answered with 10: more than allowed
	// (RFC 7692 7.1.2.1 wants "the same or smaller value").
	if answer, ok := negotiate(wsflate.Parameters{ServerMaxWindowBits: 10}, "permessage-deflate; server_max_window_bits=8"); !ok || !strings.Contains(answer, "server_max_window_bits=10") {
		t.Errorf("wsflate now answers server_max_window_bits=8 against a window of 10 with %q (accepted %v): its window check may be fixed", answer, ok)
	}
	// A client that allows the full window is declined by that server.
	if _, ok := negotiate(wsflate.Parameters{ServerMaxWindowBits: 10}, "permessage-deflate; server_max_window_bits=15"); ok {
		t.Error("wsflate now accepts server_max_window_bits=15 against a window of 10: its window check may be fixed")
	}
	// With no window configured, any server_max_window_bits declines.
	if _, ok := negotiate(wsflate.Parameters{ServerNoContextTakeover: true, ClientNoContextTakeover: true}, "permessage-deflate; server_max_window_bits=15"); ok {
		t.Error("wsflate now accepts server_max_window_bits=15 with no window configured")
	}
	// A repeated value-less client_max_window_bits is not seen as a
	// duplicate (RFC 7692 7: "MUST decline").
	var p wsflate.Parameters
	opt := httphead.Option{Name: []byte("permessage-deflate")}
	opt.Parameters.Set([]byte("client_max_window_bits"), nil)
	opt.Parameters.Set([]byte("client_max_window_bits"), nil)
	if err := p.Parse(opt); err != nil {
		t.Errorf("wsflate now refuses a repeated client_max_window_bits (%v)", err)
	}

	// Herald decides all four as RFC 7692 asks.
	u := newTest(t, Config{Compression: true})
	for offer, want := range map[string]string{
		"permessage-deflate; server_max_window_bits=8":                       answerDeflate8,
		"permessage-deflate; server_max_window_bits=15":                      answerDeflate15,
		"permessage-deflate; client_max_window_bits; client_max_window_bits": "",
	} {
		res := stepWhole(u, wsHead("Sec-WebSocket-Extensions: "+offer))
		resp, _ := checkReply(t, res)
		if got := resp.Header.Get("Sec-WebSocket-Extensions"); got != want {
			t.Errorf("herald answers %q with %q, want %q", offer, got, want)
		}
		release(res)
	}
}
