// Package wsframe is the client side of RFC 6455 for herald's own tests and
// load generators: it builds client frames (masked by default, and on
// request every kind of illegal frame a conformance test needs), parses
// server frames strictly, builds the upgrade request and checks the 101
// answer, and answers pings.
//
// The functions a load generator calls per message (AppendFrame,
// AppendPong, AppendClose, Mask, ParseHeader, ParseResponse on an incomplete
// head) append to or read from caller buffers and do not allocate.
package wsframe

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
)

// Opcodes (RFC 6455 section 5.2).
const (
	OpContinuation byte = 0x0
	OpText         byte = 0x1
	OpBinary       byte = 0x2
	OpClose        byte = 0x8
	OpPing         byte = 0x9
	OpPong         byte = 0xA
)

// RSV bits as they sit in the first header byte.
const (
	RSV1 byte = 0x40
	RSV2 byte = 0x20
	RSV3 byte = 0x10
)

// MaxControlPayload is the largest payload of a control frame.
const MaxControlPayload = 125

// AppendFrame appends one final, masked, well-formed frame with opcode op
// and payload p to b, masked with key (written little-endian: the key's low
// byte is the first masking byte). p is left as it was.
func AppendFrame(b []byte, op byte, p []byte, key uint32) []byte {
	n := len(p)
	b = append(b, 0x80|op)
	switch {
	case n <= 125:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = binary.LittleEndian.AppendUint32(b, key)
	start := len(b)
	b = append(b, p...)
	Mask(b[start:], key)
	return b
}

// AppendPong appends the masked pong that answers a ping whose payload is
// ping: the same payload, as RFC 6455 section 5.5.3 asks.
func AppendPong(b, ping []byte, key uint32) []byte {
	return AppendFrame(b, OpPong, ping, key)
}

// AppendClose appends a masked close frame with code and no reason; code 0
// gives a close frame without a body.
func AppendClose(b []byte, code uint16, key uint32) []byte {
	if code == 0 {
		return AppendFrame(b, OpClose, nil, key)
	}
	var body [2]byte
	binary.BigEndian.PutUint16(body[:], code)
	return AppendFrame(b, OpClose, body[:], key)
}

// AppendCloseReply appends the masked close frame that answers a close
// whose body is p: the same code (RFC 6455 section 5.5.1), or no body when p
// has none.
func AppendCloseReply(b, p []byte, key uint32) []byte {
	if len(p) < 2 {
		return AppendClose(b, 0, key)
	}
	return AppendClose(b, CloseCode(p), key)
}

// AppendClosePayload appends a close frame's body: the code big-endian, then
// the reason. It does not check either.
func AppendClosePayload(b []byte, code uint16, reason string) []byte {
	b = binary.BigEndian.AppendUint16(b, code)
	return append(b, reason...)
}

// Mask XORs p with the masking key, eight bytes at a time. The key's low
// byte masks p[0] (the key as AppendFrame writes it on the wire).
func Mask(p []byte, key uint32) {
	k8 := uint64(key) | uint64(key)<<32
	i := 0
	for ; i+8 <= len(p); i += 8 {
		v := binary.LittleEndian.Uint64(p[i:])
		binary.LittleEndian.PutUint64(p[i:], v^k8)
	}
	for ; i < len(p); i++ {
		p[i] ^= byte(key >> (8 * uint(i&3)))
	}
}

// NewKey returns a non-zero masking key from the runtime's random source.
func NewKey() uint32 {
	for {
		if k := rand.Uint32(); k != 0 {
			return k
		}
	}
}

// Frame describes one client frame, well-formed or not. Build it with New
// and the modifiers; the zero choice of each modifier is the well-formed
// one: FIN set, no RSV bits, masked, minimal length encoding, a length field
// that matches the payload.
type Frame struct {
	op       byte
	payload  []byte
	noFin    bool
	rsv      byte
	unmasked bool
	lenField int // 0: minimal; 1: 7-bit; 2: 16-bit; 8: 64-bit
	declared bool
	length   uint64
}

// New describes a final, masked frame with opcode op (any 4-bit value,
// reserved ones included) and payload p.
func New(op byte, p []byte) Frame { return Frame{op: op, payload: p} }

// NoFin clears the FIN bit: the frame is a fragment with more to follow.
func (f Frame) NoFin() Frame { f.noFin = true; return f }

// WithRSV sets RSV bits (any of RSV1|RSV2|RSV3).
func (f Frame) WithRSV(bits byte) Frame { f.rsv = bits & 0x70; return f }

// Unmasked sends the payload without a mask, which a server must refuse.
func (f Frame) Unmasked() Frame { f.unmasked = true; return f }

// LengthField forces the size of the length field: 1 (7-bit), 2 (16-bit)
// or 8 (64-bit) bytes, minimal or not. Append panics when the length does
// not fit the field.
func (f Frame) LengthField(size int) Frame { f.lenField = size; return f }

// Declare makes the length field say n whatever the payload is: a frame
// whose payload is sent only in part (or not at all), or that lies.
func (f Frame) Declare(n uint64) Frame { f.declared, f.length = true, n; return f }

// Op is the frame's opcode.
func (f Frame) Op() byte { return f.op }

// Payload is the payload the frame carries (before masking).
func (f Frame) Payload() []byte { return f.payload }

// Final reports whether the FIN bit is set.
func (f Frame) Final() bool { return !f.noFin }

// Complete reports whether the bytes Append writes are a whole frame: false
// when the length field announces more than the payload holds.
func (f Frame) Complete() bool { return !f.declared || f.length <= uint64(len(f.payload)) }

// Append appends the frame to b, masked with key unless Unmasked. It panics
// when a forced length field cannot hold the length: that is a mistake in
// the caller, not a frame.
func (f Frame) Append(b []byte, key uint32) []byte {
	n := uint64(len(f.payload))
	if f.declared {
		n = f.length
	}
	size := f.lenField
	if size == 0 {
		switch {
		case n <= 125:
			size = 1
		case n <= 0xFFFF:
			size = 2
		default:
			size = 8
		}
	}
	b0 := f.op&0x0F | f.rsv
	if !f.noFin {
		b0 |= 0x80
	}
	var maskBit byte = 0x80
	if f.unmasked {
		maskBit = 0
	}
	switch size {
	case 1:
		if n > 125 {
			panic(fmt.Sprintf("wsframe: length %d does not fit a 7-bit length field", n))
		}
		b = append(b, b0, maskBit|byte(n))
	case 2:
		if n > 0xFFFF {
			panic(fmt.Sprintf("wsframe: length %d does not fit a 16-bit length field", n))
		}
		b = append(b, b0, maskBit|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	case 8:
		b = append(b, b0, maskBit|127)
		b = binary.BigEndian.AppendUint64(b, n)
	default:
		panic(fmt.Sprintf("wsframe: bad length field size %d", size))
	}
	if f.unmasked {
		return append(b, f.payload...)
	}
	b = binary.LittleEndian.AppendUint32(b, key)
	start := len(b)
	b = append(b, f.payload...)
	Mask(b[start:], key)
	return b
}

// Bytes encodes the frame into a new slice with a fresh random key.
func (f Frame) Bytes() []byte {
	return f.Append(make([]byte, 0, 14+len(f.payload)), NewKey())
}
