package wsframe

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// ProtocolError is a server frame that breaks RFC 6455. The errors below
// are the kinds; ReadHeader and ReadFrame wrap them with the details.
type ProtocolError struct{ msg string }

func (e *ProtocolError) Error() string { return e.msg }

// The ways a server frame can break the protocol.
var (
	ErrMasked   = &ProtocolError{"server frame is masked (RFC 6455 5.1: a server must never mask)"}
	ErrReserved = &ProtocolError{"server frame has RSV bits set, but no extension was negotiated"}
	ErrRSV1     = &ProtocolError{"server frame has RSV1 on a continuation or control frame (RFC 7692 6.1)"}
	ErrOpcode   = &ProtocolError{"server frame has a reserved opcode"}
	ErrControl  = &ProtocolError{"server control frame is fragmented or longer than 125 bytes"}
	ErrLength   = &ProtocolError{"server frame length is not minimally encoded, or has its top bit set (RFC 6455 5.2)"}
	ErrTooBig   = &ProtocolError{"server frame is larger than the reader's limit"}
	ErrClose    = &ProtocolError{"server close frame has an invalid body"}
)

// IsProtocolError reports whether err is (or wraps) a ProtocolError.
func IsProtocolError(err error) bool {
	var pe *ProtocolError
	return errors.As(err, &pe)
}

// MaxServerHeader is the longest header a server frame can have (it is
// never masked).
const MaxServerHeader = 10

// Header is a parsed server frame header.
type Header struct {
	Fin    bool
	Op     byte
	Length int64 // payload bytes
	Size   int   // header bytes: 2, 4 or 10
	// Compressed is RSV1 on the first frame of a message, on a connection
	// that negotiated permessage-deflate (ParseHeaderDeflate): the
	// message's payload is compressed.
	Compressed bool
}

// ParseHeader parses a server frame header at the start of b, strictly: no
// mask, no RSV bits, no reserved opcode, control frames final and at most
// 125 bytes, the minimal length encoding. It returns ok=false with a nil
// error while b does not yet hold the whole header, and reports an error as
// soon as the bytes it has are wrong. It does not allocate.
func ParseHeader(b []byte) (h Header, ok bool, err error) {
	return parseHeader(b, false)
}

// ParseHeaderDeflate is ParseHeader on a connection that negotiated
// permessage-deflate: RSV1 may mark the first frame of a text or binary
// message as compressed (Header.Compressed), and is an error (ErrRSV1) on
// a continuation or control frame.
func ParseHeaderDeflate(b []byte) (h Header, ok bool, err error) {
	return parseHeader(b, true)
}

func parseHeader(b []byte, deflate bool) (h Header, ok bool, err error) {
	if len(b) < 2 {
		return h, false, nil
	}
	b0, b1 := b[0], b[1]
	h.Fin = b0&0x80 != 0
	h.Op = b0 & 0x0F
	rsv := b0 & 0x70
	if deflate && rsv&RSV1 != 0 {
		if h.Op != OpText && h.Op != OpBinary {
			return h, false, ErrRSV1
		}
		h.Compressed = true
		rsv &^= RSV1
	}
	if rsv != 0 {
		return h, false, ErrReserved
	}
	if b1&0x80 != 0 {
		return h, false, ErrMasked
	}
	switch h.Op {
	case OpContinuation, OpText, OpBinary:
	case OpClose, OpPing, OpPong:
		if !h.Fin || b1&0x7F > MaxControlPayload {
			return h, false, ErrControl
		}
	default:
		return h, false, ErrOpcode
	}
	switch l := b1 & 0x7F; l {
	case 126:
		if len(b) < 4 {
			return h, false, nil
		}
		h.Length = int64(binary.BigEndian.Uint16(b[2:]))
		if h.Length < 126 {
			return h, false, ErrLength
		}
		h.Size = 4
	case 127:
		if len(b) < 10 {
			return h, false, nil
		}
		v := binary.BigEndian.Uint64(b[2:])
		if v>>63 != 0 || v <= 0xFFFF {
			return h, false, ErrLength
		}
		h.Length = int64(v)
		h.Size = 10
	default:
		h.Length = int64(l)
		h.Size = 2
	}
	return h, true, nil
}

// headerSize is the size of a server header whose second byte is b1.
func headerSize(b1 byte) int {
	switch b1 & 0x7F {
	case 126:
		return 4
	case 127:
		return 10
	}
	return 2
}

// ReadHeader reads and consumes one server frame header from r, strictly
// (see ParseHeader), and refuses a frame that announces more than max
// payload bytes. A protocol error is a *ProtocolError wrapped with the
// header's details; I/O errors are returned as they are (io.EOF only when
// no byte of the header arrived).
func ReadHeader(r *bufio.Reader, max int64) (Header, error) {
	return readHeader(r, max, false)
}

// ReadHeaderDeflate is ReadHeader on a connection that negotiated
// permessage-deflate (see ParseHeaderDeflate).
func ReadHeaderDeflate(r *bufio.Reader, max int64) (Header, error) {
	return readHeader(r, max, true)
}

func readHeader(r *bufio.Reader, max int64, deflate bool) (Header, error) {
	b, err := r.Peek(2)
	if err != nil {
		return Header{}, eofInside(len(b), err)
	}
	h, ok, err := parseHeader(b, deflate)
	if err != nil {
		return h, explain(b, err)
	}
	if !ok {
		if b, err = r.Peek(headerSize(b[1])); err != nil {
			return Header{}, eofInside(len(b), err)
		}
		if h, ok, err = parseHeader(b, deflate); err != nil {
			return h, explain(b, err)
		}
		if !ok {
			panic("wsframe: incomplete header after a full peek")
		}
	}
	if h.Length > max {
		return h, fmt.Errorf("%w: opcode %#x announces %d bytes, limit %d", ErrTooBig, h.Op, h.Length, max)
	}
	_, _ = r.Discard(h.Size)
	return h, nil
}

// ReadFrame reads one whole server frame from r (see ReadHeader). The
// payload is read into buf's storage when it fits, otherwise into a new
// slice.
func ReadFrame(r *bufio.Reader, buf []byte, max int64) (Header, []byte, error) {
	return readFrame(r, buf, max, false)
}

// ReadFrameDeflate is ReadFrame on a connection that negotiated
// permessage-deflate (see ParseHeaderDeflate). A compressed payload is
// returned as it came; Inflate it once the message is complete.
func ReadFrameDeflate(r *bufio.Reader, buf []byte, max int64) (Header, []byte, error) {
	return readFrame(r, buf, max, true)
}

func readFrame(r *bufio.Reader, buf []byte, max int64, deflate bool) (Header, []byte, error) {
	h, err := readHeader(r, max, deflate)
	if err != nil {
		return h, nil, err
	}
	p := buf[:0]
	if int64(cap(p)) < h.Length {
		p = make([]byte, h.Length)
	}
	p = p[:h.Length]
	if _, err := io.ReadFull(r, p); err != nil {
		return h, nil, fmt.Errorf("reading the %d-byte payload of a frame with opcode %#x: %w", h.Length, h.Op, eofInside(1, err))
	}
	return h, p, nil
}

func eofInside(got int, err error) error {
	if got > 0 && errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// explain wraps a ParseHeader error with what the header says.
func explain(b []byte, err error) error {
	op := b[0] & 0x0F
	switch err {
	case ErrReserved, ErrRSV1:
		return fmt.Errorf("%w: opcode %#x with RSV bits %#02x", err, op, b[0]&0x70)
	case ErrMasked, ErrOpcode:
		return fmt.Errorf("%w: opcode %#x", err, op)
	case ErrControl:
		return fmt.Errorf("%w: opcode %#x, FIN %v, length byte %d", err, op, b[0]&0x80 != 0, b[1]&0x7F)
	case ErrLength:
		if len(b) >= 10 && b[1]&0x7F == 127 {
			return fmt.Errorf("%w: 64-bit length field says %d", err, binary.BigEndian.Uint64(b[2:]))
		}
		if len(b) >= 4 {
			return fmt.Errorf("%w: 16-bit length field says %d", err, binary.BigEndian.Uint16(b[2:]))
		}
	}
	return fmt.Errorf("%w: header % x", err, b)
}

// CloseCode returns the status code of a close frame's body, 1005 (no
// status) when it has none.
func CloseCode(p []byte) uint16 {
	if len(p) < 2 {
		return 1005
	}
	return binary.BigEndian.Uint16(p)
}

// ValidCloseCode reports whether code may be sent in a close frame: RFC 6455
// section 7.4 and the IANA registry (1000-1003, 1007-1014, 3000-4999).
func ValidCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// CheckClose checks the body of a server's close frame: empty, or a code
// that may appear on the wire followed by a valid UTF-8 reason.
func CheckClose(p []byte) error {
	switch {
	case len(p) == 0:
		return nil
	case len(p) == 1:
		return fmt.Errorf("%w: a 1-byte body", ErrClose)
	case !ValidCloseCode(int(binary.BigEndian.Uint16(p))):
		return fmt.Errorf("%w: code %d must not appear on the wire", ErrClose, binary.BigEndian.Uint16(p))
	case !utf8.Valid(p[2:]):
		return fmt.Errorf("%w: the reason %q is not valid UTF-8", ErrClose, p[2:])
	}
	return nil
}
