package upgrade

import (
	"bytes"
	"strconv"
	"unsafe"

	"github.com/gobwas/httphead"
)

// permessage-deflate (RFC 7692) negotiation.
//
// Herald compresses each outgoing message on its own and inflates each
// incoming one on its own, so that a connection keeps no compressor, no
// decompressor and no sliding window between messages. Every offer it
// accepts is therefore answered with both
//
//	server_no_context_takeover  (§7.1.1.1: the server may always include it)
//	client_no_context_takeover  (§7.1.1.2: the server may always include it,
//	                             and the client must then reset its context)
//
// and nothing that would need state on either side. The offer's parameters
// decide whether it can be met that way:
//
//   - server_no_context_takeover, client_no_context_takeover: met (no value
//     allowed);
//   - client_max_window_bits, with or without a value 8..15: met, since a
//     message inflated on its own needs no window kept, whatever its size;
//     the answer leaves the client's window as it is;
//   - server_max_window_bits with a value 8..15: met, and repeated in the
//     answer, as §7.1.2.1 asks of a server that accepts it. Below 15 the
//     server must not refer back further than the window allows, which the
//     pooled compressors cannot be held to (they refer up to 32 KiB back);
//     such a connection's messages are compressed with Huffman codes only,
//     which refer back not at all (Result.DeflateWindow), and broadcasts
//     reach it uncompressed. No browser sends such an offer; the Autobahn
//     TestSuite's cases 13.3, 13.5 and 13.7 do;
//   - an unknown parameter, a duplicate, a missing or invalid value:
//     declined (§7, "MUST decline").
//
// Offers are tried in the client's order, across lines, and the first one
// that can be met wins; a declined offer is no error (the connection opens
// without compression). A line that does not parse as an extension list is
// a malformed request (400), whether or not the server compresses.
//
// gobwas/ws's wsflate is not used for the decision: its Extension.Negotiate
// declines an offer whose server_max_window_bits is larger than the
// server's configured window and accepts one that is smaller (the check is
// backwards: an offer of 8 against a server window of 10 is accepted and
// answered with 10, more than the client allowed), and with no window
// configured it declines every offer that names server_max_window_bits at
// all; its Parameters.Parse lets a repeated value-less
// client_max_window_bits through. TestWsflateWindowCheckIsBackwards pins
// that behaviour.

// deflateAnswer is how a permessage-deflate negotiation ended:
// deflateDeclined, deflateAccepted, or the window 8..15 of an accepted offer
// that named server_max_window_bits (the answer repeats it).
type deflateAnswer uint8

const (
	deflateDeclined deflateAnswer = 0 // no offer that can be met, or compression off
	deflateAccepted deflateAnswer = 1 // answered with both no_context_takeover parameters
)

// extAnswers are the Sec-WebSocket-Extensions lines of a 101 that accepts
// an offer, by deflateAnswer; built once so that a handshake appends one
// constant string.
var extAnswers = func() (lines [16]string) {
	const line = "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	lines[deflateAccepted] = line + "\r\n"
	for bits := 8; bits <= 15; bits++ {
		lines[bits] = line + "; server_max_window_bits=" + strconv.Itoa(bits) + "\r\n"
	}
	return lines
}()

// line returns the 101's Sec-WebSocket-Extensions line for a, or "".
func (a deflateAnswer) line() string { return extAnswers[a] }

// window returns the server's LZ77 window in bits that the answer allows:
// 15 unless the client asked for less; 0 when declined.
func (a deflateAnswer) window() int {
	switch a {
	case deflateDeclined:
		return 0
	case deflateAccepted:
		return 15
	}
	return int(a)
}

// negotiateExtensions reads the Sec-WebSocket-Extensions lines and decides
// permessage-deflate (see above). ok is false if a line does not parse as an
// extension list (RFC 6455 §9.1).
func (u *Upgrader) negotiateExtensions(lines []string) (answer deflateAnswer, ok bool) {
	for _, line := range lines {
		var cur deflateOffer
		index := -1
		ok := httphead.ScanOptions(stringBytes(line), func(i int, name, attr, val []byte) httphead.Control {
			if i != index {
				answer = cur.settle(answer)
				index = i
				cur = deflateOffer{deflate: bytes.EqualFold(name, extensionName)}
			}
			if attr != nil {
				cur.param(attr, val)
			}
			return httphead.ControlContinue
		})
		if !ok {
			return deflateDeclined, false
		}
		answer = cur.settle(answer)
	}
	if !u.cfg.Compression {
		answer = deflateDeclined
	}
	return answer, true
}

// Names of the extension and its parameters, compared ignoring case.
var (
	extensionName        = []byte("permessage-deflate")
	paramServerNoContext = []byte("server_no_context_takeover")
	paramClientNoContext = []byte("client_no_context_takeover")
	paramServerMaxWindow = []byte("server_max_window_bits")
	paramClientMaxWindow = []byte("client_max_window_bits")
)

// Parameters of a permessage-deflate offer, as bits of deflateOffer.seen.
const (
	seenServerNoContext = 1 << iota
	seenClientNoContext
	seenServerWindow
	seenClientWindow
)

// deflateOffer is one extension of an offer list being read.
type deflateOffer struct {
	deflate  bool  // it is permessage-deflate
	declined bool  // a parameter that cannot be met, or is not allowed
	window   uint8 // server_max_window_bits' value, 0 if not named
	seen     uint8 // the parameters read so far, to decline duplicates
}

// param reads one parameter of the offer.
func (o *deflateOffer) param(name, val []byte) {
	if !o.deflate || o.declined {
		return
	}
	var bit uint8
	switch {
	case bytes.EqualFold(name, paramServerNoContext):
		bit = seenServerNoContext
		o.declined = val != nil
	case bytes.EqualFold(name, paramClientNoContext):
		bit = seenClientNoContext
		o.declined = val != nil
	case bytes.EqualFold(name, paramServerMaxWindow):
		bit = seenServerWindow
		bits, valid := windowBits(val)
		o.declined = !valid
		o.window = uint8(bits)
	case bytes.EqualFold(name, paramClientMaxWindow):
		bit = seenClientWindow
		if val != nil {
			_, valid := windowBits(val)
			o.declined = !valid
		}
	default:
		o.declined = true // a parameter not defined for an offer
	}
	if o.seen&bit != 0 {
		o.declined = true
	}
	o.seen |= bit
}

// settle ends the offer: it becomes the answer if it is the first
// permessage-deflate offer that can be met.
func (o *deflateOffer) settle(answer deflateAnswer) deflateAnswer {
	if answer != deflateDeclined || !o.deflate || o.declined {
		return answer
	}
	if o.window != 0 {
		return deflateAnswer(o.window)
	}
	return deflateAccepted
}

// windowBits parses a window size: a decimal integer 8 to 15 without
// leading zeros (RFC 7692 §7.1.2.1). A missing value (nil) is invalid.
func windowBits(val []byte) (int, bool) {
	switch {
	case len(val) == 1 && (val[0] == '8' || val[0] == '9'):
		return int(val[0] - '0'), true
	case len(val) == 2 && val[0] == '1' && val[1] >= '0' && val[1] <= '5':
		return 10 + int(val[1]-'0'), true
	}
	return 0, false
}

// stringBytes views s as bytes without a copy, for httphead's scanners,
// which only read their input (an escaped quoted-string is copied out, never
// unescaped in place). The bytes must not be written.
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
