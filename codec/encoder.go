package codec

import (
	"encoding/binary"

	"github.com/gobwas/ws"
	"github.com/valyala/bytebufferpool"

	"github.com/heraldws/herald/pool"
)

// MaxHeaderLen is the longest header of a server frame: 2 bytes, then up to 8
// bytes of extended length. Server frames carry no mask.
const MaxHeaderLen = 10

const (
	finBit  = 0x80
	rsv1Bit = 0x40
	rsv2Bit = 0x20
	rsv3Bit = 0x10
	maskBit = 0x80
)

// HeaderLen returns the length of the header of a server frame with a
// payloadLen-byte payload: 2, 4 or 10.
func HeaderLen(payloadLen int) int {
	switch {
	case payloadLen <= 125:
		return 2
	case payloadLen <= 0xFFFF:
		return 4
	default:
		return MaxHeaderLen
	}
}

// PutHeader writes the header of a server frame into dst, which must be at
// least HeaderLen(payloadLen) bytes long (a [MaxHeaderLen]byte always is),
// and returns the number of bytes written. It suits vectored writes, where
// the header and the payload go out as separate buffers. rsv1 marks the first
// frame of a compressed message. payloadLen must not be negative.
func PutHeader(dst []byte, op ws.OpCode, fin, rsv1 bool, payloadLen int) int {
	b0 := byte(op) & 0x0F
	if fin {
		b0 |= finBit
	}
	if rsv1 {
		b0 |= rsv1Bit
	}
	switch {
	case payloadLen <= 125:
		_ = dst[1]
		dst[0] = b0
		dst[1] = byte(payloadLen)
		return 2
	case payloadLen <= 0xFFFF:
		_ = dst[3]
		dst[0] = b0
		dst[1] = 126
		binary.BigEndian.PutUint16(dst[2:], uint16(payloadLen))
		return 4
	default:
		_ = dst[9]
		dst[0] = b0
		dst[1] = 127
		binary.BigEndian.PutUint64(dst[2:], uint64(payloadLen))
		return MaxHeaderLen
	}
}

// AppendHeader appends the header of a server frame to dst and returns the
// extended slice; the payload is for the caller to append. It allocates only
// if dst lacks capacity. rsv1 marks the first frame of a compressed message.
// payloadLen must not be negative.
func AppendHeader(dst []byte, op ws.OpCode, fin, rsv1 bool, payloadLen int) []byte {
	var h [MaxHeaderLen]byte
	n := PutHeader(h[:], op, fin, rsv1, payloadLen)
	return append(dst, h[:n]...)
}

// AppendFrame appends a whole, unfragmented server frame (FIN set, no RSV
// bits) carrying payload to dst and returns the extended slice. It allocates
// only if dst lacks capacity: HeaderLen(len(payload))+len(payload) bytes.
func AppendFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	dst = AppendHeader(dst, op, true, false, len(payload))
	return append(dst, payload...)
}

// EncodeFrame returns a buffer from herald's pool holding the frame that
// AppendFrame would build. Return it with pool.Put once it is written.
func EncodeFrame(op ws.OpCode, payload []byte) *bytebufferpool.ByteBuffer {
	b := pool.Get(HeaderLen(len(payload)) + len(payload))
	b.B = AppendFrame(b.B, op, payload)
	return b
}
