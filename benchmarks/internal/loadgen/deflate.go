package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"strconv"

	"github.com/klauspost/compress/flate"

	"github.com/heraldws/herald/internal/wsframe"
)

// The client side of permessage-deflate (RFC 7692) in the load generator.
// With Config.Deflate every held connection offers it as browsers do, and a
// server that declines fails the run. What the server answered is honoured
// per connection: without server_no_context_takeover the connection keeps
// the server's last window of output as the dictionary of its next message
// (the only per-connection state, and only then); with client_max_window_bits
// below 15 its messages are Huffman-coded only, so that no back-reference
// reaches past the window. Messages are always compressed on their own,
// which every answer allows.
//
// One inflater serves all the connections of a loop: klauspost/compress's,
// reset for each message, so that it does not allocate. Inflating a 1 KiB
// tick still costs microseconds (its Huffman tables are built anew for
// every message), more than the rest of a delivery, so a loop remembers
// the last messages it inflated: a message whose compressed bytes equal
// one of them (every subscriber of a broadcast gets the same bytes, and a
// server that compresses per connection produces the same ones) takes
// that result. Without a dictionary, what DEFLATE bytes inflate to is a
// function of the bytes alone, so this checks exactly what inflating them
// again would; a connection whose server keeps its context inflates every
// message. Echo messages are compressed once per run: the timestamp goes
// in a stored block before the compressed order book, which any inflater
// reads as one message.

// deflateHeader is the request's extension offer.
const deflateHeader = "Sec-WebSocket-Extensions: " + wsframe.DeflateOffer

// inflateTail ends a message's DEFLATE data (RFC 7692 7.2.2: 00 00 ff ff),
// then adds an empty final block so that the reader reports io.EOF.
var inflateTail = []byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff}

// deflateAnswer is what the server's Sec-WebSocket-Extensions agreed to.
type deflateAnswer struct {
	serverTakeover bool // the server keeps its window across messages
	serverBits     int  // its window: 2^serverBits bytes
	clientBits     int  // the window our back-references must stay in
}

// errDeclined is a server that answered the offer without the extension.
var errDeclined = errors.New("the server declined permessage-deflate (no Sec-WebSocket-Extensions in its 101)")

// parseDeflateAnswer checks the answer to our offer: exactly
// permessage-deflate, with parameters RFC 7692 allows in a response to it.
func parseDeflateAnswer(ext []byte) (deflateAnswer, error) {
	a := deflateAnswer{serverTakeover: true, serverBits: 15, clientBits: 15}
	if ext == nil {
		return a, errDeclined
	}
	if bytes.IndexByte(ext, ',') >= 0 {
		return a, fmt.Errorf("the server answered several extensions to one offer: %q", ext)
	}
	seen := map[string]bool{}
	for i, part := range bytes.Split(ext, []byte{';'}) {
		name, value, hasValue := bytes.Cut(bytes.TrimSpace(part), []byte{'='})
		name = bytes.TrimSpace(name)
		if i == 0 {
			if string(name) != "permessage-deflate" || hasValue {
				return a, fmt.Errorf("the server answered %q, not permessage-deflate", ext)
			}
			continue
		}
		if seen[string(name)] {
			return a, fmt.Errorf("parameter %s twice in %q", name, ext)
		}
		seen[string(name)] = true
		switch string(name) {
		case "server_no_context_takeover", "client_no_context_takeover":
			if hasValue {
				return a, fmt.Errorf("%s with a value in %q", name, ext)
			}
			a.serverTakeover = a.serverTakeover && string(name) != "server_no_context_takeover"
		case "server_max_window_bits", "client_max_window_bits":
			bits, err := strconv.Atoi(string(bytes.Trim(bytes.TrimSpace(value), `"`)))
			if !hasValue || err != nil || bits < 8 || bits > 15 {
				return a, fmt.Errorf("%s needs a value from 8 to 15 in %q", name, ext)
			}
			if name[0] == 's' {
				a.serverBits = bits
			} else {
				a.clientBits = bits
			}
		default:
			return a, fmt.Errorf("unknown parameter %s in %q", name, ext)
		}
	}
	return a, nil
}

// Bits of conn.z.
const (
	zOn      uint8 = 1 << iota // permessage-deflate negotiated
	zHuffman                   // client_max_window_bits < 15: Huffman-only messages
	zFrag                      // the message being reassembled is compressed
)

// history is the server's window for a connection whose server keeps its
// context: the dictionary of the next message.
type history struct {
	window int
	b      []byte
}

func (h *history) add(out []byte) {
	if len(out) >= h.window {
		h.b = append(h.b[:0], out[len(out)-h.window:]...)
		return
	}
	if drop := len(h.b) + len(out) - h.window; drop > 0 {
		h.b = h.b[:copy(h.b, h.b[drop:])]
	}
	h.b = append(h.b, out...)
}

// flater is a loop's inflater, its memory of recent messages, and the
// compressed echo body.
type flater struct {
	in   []byte // a message's compressed payload and the tail
	inR  bytes.Reader
	r    io.ReadCloser // implements flate.Resetter
	out  []byte
	seed maphash.Seed
	memo [memoSize]inflated
	// body and huffman are the echo body compressed at BestSpeed and with
	// Huffman codes only; packed is a message built from one of them.
	body, huffman, packed []byte
}

// memoSize is how many recent messages a loop remembers: a few ticks of
// 20 symbols.
const memoSize = 256

// memoMax is the largest message remembered.
const memoMax = 64 << 10

// inflated is a remembered message: its compressed bytes and what they
// inflate to.
type inflated struct {
	z, out []byte
	ok     bool
}

// inflate returns the message whose compressed payload is p, valid until
// the next call. h is the connection's history when its server keeps its
// context (nil otherwise): the dictionary, then updated with the message.
func (f *flater) inflate(p []byte, h *history) ([]byte, error) {
	if h != nil {
		return f.inflateNow(p, h)
	}
	if f.seed == (maphash.Seed{}) {
		f.seed = maphash.MakeSeed()
	}
	m := &f.memo[maphash.Bytes(f.seed, p)%memoSize]
	if m.ok && bytes.Equal(m.z, p) {
		return m.out, nil
	}
	out, err := f.inflateNow(p, nil)
	if err != nil || len(out) > memoMax {
		return out, err
	}
	m.z, m.out, m.ok = append(m.z[:0], p...), append(m.out[:0], out...), true
	return m.out, nil
}

// inflateNow inflates p (see inflate).
func (f *flater) inflateNow(p []byte, h *history) ([]byte, error) {
	f.in = append(append(f.in[:0], p...), inflateTail...)
	f.inR.Reset(f.in)
	var dict []byte
	if h != nil {
		dict = h.b
	}
	if f.r == nil {
		f.r = flate.NewReaderDict(&f.inR, dict)
	} else if err := f.r.(flate.Resetter).Reset(&f.inR, dict); err != nil {
		return nil, err
	}
	out := f.out[:0]
	for {
		if len(out) == cap(out) {
			out = append(out, 0)[:len(out)]
		}
		n, err := f.r.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("inflating a %d-byte compressed message: %w", len(p), err)
		}
		if len(out) > maxMessage {
			return nil, fmt.Errorf("a compressed message inflates past %d bytes", maxMessage)
		}
	}
	if cap(out) <= 1<<20 {
		f.out = out // keep the buffer unless one huge message grew it
	}
	if h != nil {
		h.add(out)
	}
	return out, nil
}

// deflate compresses p as a message of its own (RFC 7692 7.2.1: flushed,
// the trailing 00 00 ff ff removed) at level.
func deflate(p []byte, level int) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, level) // the levels used are valid
	_, _ = w.Write(p)                  // a bytes.Buffer does not fail
	_ = w.Flush()
	return bytes.TrimSuffix(b.Bytes(), inflateTail[:4])
}

// echoMessage returns the compressed echo message msg: its first 8 bytes
// (the timestamp) in a stored block, then the rest, which is the same for
// every message, compressed once at BestSpeed (Huffman-only when huffman
// is set) and kept. A stored block ends on a byte boundary and a
// compressor's output starts on one, so the two make one DEFLATE stream;
// no back-reference of the second reaches into the first. The result is
// valid until the next call.
func (f *flater) echoMessage(msg []byte, huffman bool) []byte {
	body := &f.body
	level := flate.BestSpeed
	if huffman {
		body, level = &f.huffman, flate.HuffmanOnly
	}
	if *body == nil {
		*body = deflate(msg[8:], level)
	}
	// A stored block, not final: BFINAL 0, BTYPE 00, padded to the byte;
	// LEN 8 and its complement, little-endian; the 8 bytes.
	f.packed = append(f.packed[:0], 0, 8, 0, 0xf7, 0xff)
	f.packed = append(f.packed, msg[:8]...)
	return append(f.packed, *body...)
}
