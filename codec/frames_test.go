package codec

import (
	"bytes"
	stdflate "compress/flate"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

// Frame header bits for building client frames in tests.
const (
	bFin  = 0x80
	bRsv1 = 0x40
	bRsv2 = 0x20
	bRsv3 = 0x10
)

// fopt tweaks a client frame built by mkFrame.
type fopt struct {
	unmasked bool    // leave the mask bit and key out
	lenSize  int     // 0: minimal length encoding; 2 or 8: force that extended field
	key      [4]byte // mask key; zero means a fixed non-trivial key
}

// mkFrame builds a client frame: first byte b0 (FIN, RSV and opcode bits),
// then the length, the mask key and the masked payload.
func mkFrame(b0 byte, payload []byte, o fopt) []byte {
	key := o.key
	if key == [4]byte{} {
		key = [4]byte{0xa5, 0x3c, 0x0f, 0x96}
	}
	var mbit byte = 0x80
	if o.unmasked {
		mbit = 0
	}
	n := len(payload)
	out := []byte{b0}
	switch {
	case o.lenSize == 8 || o.lenSize == 0 && n > 0xFFFF:
		out = append(out, mbit|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	case o.lenSize == 2 || o.lenSize == 0 && n > 125:
		out = append(out, mbit|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, mbit|byte(n))
	}
	if o.unmasked {
		return append(out, payload...)
	}
	out = append(out, key[:]...)
	start := len(out)
	out = append(out, payload...)
	for i := range payload {
		out[start+i] ^= key[i%4]
	}
	return out
}

func frame(b0 byte, payload string) []byte { return mkFrame(b0, []byte(payload), fopt{}) }

func textFrame(s string) []byte { return frame(bFin|byte(ws.OpText), s) }
func binFrame(s string) []byte  { return frame(bFin|byte(ws.OpBinary), s) }
func pingFrame(s string) []byte { return frame(bFin|byte(ws.OpPing), s) }
func pongFrame(s string) []byte { return frame(bFin|byte(ws.OpPong), s) }
func contFrame(fin bool, s string) []byte {
	b0 := byte(ws.OpContinuation)
	if fin {
		b0 |= bFin
	}
	return frame(b0, s)
}

func closeFrame(code uint16, reason string) []byte {
	p := binary.BigEndian.AppendUint16(nil, code)
	return frame(bFin|byte(ws.OpClose), string(p)+reason)
}

// deflateStd compresses s as a permessage-deflate client would, with the
// standard library's compress/flate (not the implementation under test):
// the message on its own, flushed, without the trailing 00 00 ff ff.
func deflateStd(s string) string {
	var b bytes.Buffer
	w, _ := stdflate.NewWriter(&b, stdflate.DefaultCompression)
	_, _ = w.Write([]byte(s))
	_ = w.Flush()
	return strings.TrimSuffix(b.String(), "\x00\x00\xff\xff")
}

// inflateStd inflates a permessage-deflate payload with compress/flate.
func inflateStd(p []byte) ([]byte, error) {
	r := stdflate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader([]byte("\x00\x00\xff\xff\x01\x00\x00\xff\xff"))))
	return io.ReadAll(r)
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// maskServerFrame turns a server frame made by the encoder into the same
// frame as a client would send it: mask bit set, key after the length,
// payload masked.
func maskServerFrame(f []byte, key [4]byte) []byte {
	hl := 2
	switch f[1] & 0x7F {
	case 126:
		hl = 4
	case 127:
		hl = 10
	}
	out := append([]byte(nil), f[:hl]...)
	out[1] |= 0x80
	out = append(out, key[:]...)
	start := len(out)
	out = append(out, f[hl:]...)
	for i := start; i < len(out); i++ {
		out[i] ^= key[(i-start)%4]
	}
	return out
}

// ev is a copy of an Event that outlives the Decoder's buffers.
type ev struct {
	Op         ws.OpCode
	Payload    string
	Compressed bool
}

func (e ev) String() string {
	return fmt.Sprintf("{op %d %q compressed=%v}", e.Op, e.Payload, e.Compressed)
}

func msg(op ws.OpCode, payload string) ev { return ev{Op: op, Payload: payload} }

type result struct {
	events []ev
	err    error
}

func (r result) String() string {
	return fmt.Sprintf("events %v, err %v", r.events, r.err)
}

func (r result) equal(o result) bool {
	if r.err != o.err || len(r.events) != len(o.events) {
		return false
	}
	for i := range r.events {
		if r.events[i] != o.events[i] {
			return false
		}
	}
	return true
}

// decodeSplit feeds a copy of stream to a fresh Decoder in pieces cut at
// cuts (ascending offsets) and collects the events and the error. It checks
// the Decoder's contract on the way and reports violations as an error.
func decodeSplit(cfg *DecoderConfig, allowRSV1 bool, stream []byte, cuts []int) (result, error) {
	return decodeSplitMode(cfg, allowRSV1, stream, cuts, false)
}

// decodeSplitMode is decodeSplit; with rest it also does what a server
// that keeps Decoders only for streams that need one does after each piece:
// a Decoder AtRest is released, and must then equal a fresh one; any other
// is moved to a new variable and the old one is wiped.
func decodeSplitMode(cfg *DecoderConfig, allowRSV1 bool, stream []byte, cuts []int, rest bool) (result, error) {
	buf := append([]byte(nil), stream...)
	d := new(Decoder)
	d.Init(cfg, allowRSV1)
	defer func() { d.Release() }()
	var fresh Decoder
	fresh.Init(cfg, allowRSV1)
	_, maxMsg := cfg.limits()
	var r result
	prev := 0
	for i := 0; i <= len(cuts); i++ {
		end := len(buf)
		if i < len(cuts) {
			end = cuts[i]
		}
		chunk := buf[prev:end]
		prev = end
		size := len(chunk)
		for calls := 0; ; calls++ {
			if calls > size+1 {
				return r, fmt.Errorf("no progress on a %d-byte chunk", len(chunk))
			}
			n, e, err := d.Decode(chunk)
			if n < 0 || n > len(chunk) {
				return r, fmt.Errorf("n = %d of %d", n, len(chunk))
			}
			if err != nil {
				if _, ok := err.(*ProtocolError); !ok {
					return r, fmt.Errorf("error %T is not a *ProtocolError", err)
				}
				if e.Op != 0 {
					return r, fmt.Errorf("event with an error")
				}
				// A dead Decoder stays dead.
				if _, _, again := d.Decode([]byte{0x81}); again != err {
					return r, fmt.Errorf("after %v, Decode returned %v", err, again)
				}
				r.err = err
				return r, nil
			}
			if e.Op == 0 {
				if n != len(chunk) {
					return r, fmt.Errorf("no event but n = %d of %d", n, len(chunk))
				}
				if e.Payload != nil || e.Compressed {
					return r, fmt.Errorf("empty event with fields set: %+v", e)
				}
				break
			}
			if len(chunk) > 0 && n == 0 {
				return r, fmt.Errorf("event without consuming input")
			}
			if e.Op < ws.OpClose && int64(len(e.Payload)) > maxMsg {
				return r, fmt.Errorf("payload of %d bytes over the %d limit", len(e.Payload), maxMsg)
			}
			r.events = append(r.events, ev{Op: e.Op, Payload: string(e.Payload), Compressed: e.Compressed})
			chunk = chunk[n:]
			if len(chunk) == 0 {
				break
			}
		}
		// A compressed message's wire bytes may pass the limit a little
		// (compressedLimit); its inflated size may not (checked above).
		if d.msg != nil && int64(len(d.msg.B)) > compressedLimit(maxMsg) {
			return r, fmt.Errorf("buffered %d bytes over the %d limit", len(d.msg.B), maxMsg)
		}
		if d.ctl != nil && len(d.ctl.B) > ws.MaxControlFramePayloadSize {
			return r, fmt.Errorf("buffered a %d-byte control frame", len(d.ctl.B))
		}
		if rest {
			if d.AtRest() {
				d.Release()
				if *d != fresh {
					return r, fmt.Errorf("a Decoder at rest is not fresh once released: %+v", *d)
				}
			} else {
				moved := new(Decoder)
				*moved = *d
				*d = Decoder{}
				d = moved
			}
		}
	}
	// Between messages the Decoder holds no buffer once it has been called
	// again.
	if _, _, err := d.Decode(nil); err == nil && !d.InMessage() && d.flags&flagPayload == 0 && (d.msg != nil || d.ctl != nil) {
		return r, fmt.Errorf("idle Decoder holds a buffer")
	}
	return r, nil
}

// splitsOf returns the cut lists to try on a stream of n bytes: whole, one
// byte at a time, every single cut when n is small, and random cuts.
func splitsOf(n int, rng *rand.Rand) [][]int {
	out := [][]int{nil}
	every := make([]int, 0, n)
	for i := 1; i < n; i++ {
		every = append(every, i)
	}
	out = append(out, every)
	if n <= 300 {
		for i := 1; i < n; i++ {
			out = append(out, []int{i})
		}
	}
	for range 20 {
		out = append(out, randomCuts(n, rng))
	}
	return out
}

func randomCuts(n int, rng *rand.Rand) []int {
	var cuts []int
	for at := 0; n > 0; {
		at += 1 + rng.IntN(max(1, n/4+1))
		if at >= n {
			break
		}
		cuts = append(cuts, at)
	}
	return cuts
}

// checkAllSplits decodes stream in every split of splitsOf and fails unless
// each gives want.
func checkAllSplits(t *testing.T, cfg *DecoderConfig, allowRSV1 bool, stream []byte, want result) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(len(stream)), 7))
	for _, cuts := range splitsOf(len(stream), rng) {
		for _, rest := range []bool{false, true} {
			got, err := decodeSplitMode(cfg, allowRSV1, stream, cuts, rest)
			if err != nil {
				t.Fatalf("cuts %v (rest %v): %v", cuts, rest, err)
			}
			if !got.equal(want) {
				t.Fatalf("cuts %v (rest %v):\n got  %v\n want %v", cuts, rest, got, want)
			}
		}
	}
}
