// Package wsclient is the client side of RFC 6455 as the load generator needs
// it: the upgrade request and the validation of its answer, masked frame
// encoding, and an incremental decoder of server frames that accepts any
// split of the byte stream and rejects what a server must not send.
package wsclient

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strconv"
)

// Opcodes.
const (
	OpContinuation = 0x0
	OpText         = 0x1
	OpBinary       = 0x2
	OpClose        = 0x8
	OpPing         = 0x9
	OpPong         = 0xA
)

// Errors the decoder reports; each one is a server that broke the protocol.
var (
	ErrMasked        = errors.New("server frame is masked")
	ErrReserved      = errors.New("reserved bits set without an extension")
	ErrOpcode        = errors.New("reserved opcode")
	ErrControl       = errors.New("fragmented or oversized control frame")
	ErrContinuation  = errors.New("continuation without a message, or a new message inside one")
	ErrTooBig        = errors.New("message larger than the limit")
	ErrBadHandshake  = errors.New("bad handshake response")
	ErrLength        = errors.New("non-minimal or negative payload length")
	ErrResponseLarge = errors.New("handshake response too large")
)

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// Key returns the Sec-WebSocket-Key for a connection number and attempt: 16
// bytes derived from both, base64 encoded, so no per-connection storage is
// needed to check the answer.
func Key(n uint64, attempt uint32) string {
	var raw [16]byte
	binary.LittleEndian.PutUint64(raw[:8], n*0x9E3779B97F4A7C15+uint64(attempt))
	binary.LittleEndian.PutUint64(raw[8:], n^0xD1B54A32D192ED03+uint64(attempt)<<32)
	return base64.StdEncoding.EncodeToString(raw[:])
}

// Accept is the Sec-WebSocket-Accept a server must answer to key.
func Accept(key string) string {
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte(wsGUID))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// AppendRequest appends the upgrade request for host and path (with its
// query) to b.
func AppendRequest(b []byte, host, path, key string) []byte {
	b = append(b, "GET "...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "...)
	b = append(b, key...)
	b = append(b, "\r\nSec-WebSocket-Version: 13\r\nOrigin: http://"...)
	b = append(b, host...)
	b = append(b, "\r\n\r\n"...)
	return b
}

// ParseResponse looks for a complete response head in b. It returns the
// length of the head (0 while it is incomplete) and an error when the head is
// not a valid 101 for key: status, Upgrade, Connection and Accept are checked,
// and no extension may have been negotiated (none was offered).
func ParseResponse(b []byte, key string) (int, error) {
	end := indexCRLFCRLF(b)
	if end < 0 {
		if len(b) > 16<<10 {
			return 0, ErrResponseLarge
		}
		return 0, nil
	}
	head := b[:end]
	n := end + 4
	line, rest := cutLine(head)
	if len(line) < 12 || string(line[:9]) != "HTTP/1.1 " || string(line[9:12]) != "101" {
		return n, ErrBadHandshake
	}
	var upgrade, connection, accept bool
	want := Accept(key)
	for len(rest) > 0 {
		line, rest = cutLine(rest)
		colon := -1
		for i, c := range line {
			if c == ':' {
				colon = i
				break
			}
		}
		if colon <= 0 {
			return n, ErrBadHandshake
		}
		name := line[:colon]
		value := trimSpace(line[colon+1:])
		switch {
		case equalFold(name, "upgrade"):
			upgrade = equalFold(value, "websocket")
		case equalFold(name, "connection"):
			connection = containsTokenFold(value, "upgrade")
		case equalFold(name, "sec-websocket-accept"):
			accept = string(value) == want
		case equalFold(name, "sec-websocket-extensions"):
			if len(value) > 0 {
				return n, ErrBadHandshake
			}
		}
	}
	if !upgrade || !connection || !accept {
		return n, ErrBadHandshake
	}
	return n, nil
}

func indexCRLFCRLF(b []byte) int {
	for i := 0; i+3 < len(b); i++ {
		if b[i] == '\r' && b[i+1] == '\n' && b[i+2] == '\r' && b[i+3] == '\n' {
			return i
		}
	}
	return -1
}

func cutLine(b []byte) (line, rest []byte) {
	for i := 0; i+1 < len(b); i++ {
		if b[i] == '\r' && b[i+1] == '\n' {
			return b[:i], b[i+2:]
		}
	}
	return b, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		if lower(b[i]) != s[i] {
			return false
		}
	}
	return true
}

func containsTokenFold(b []byte, tok string) bool {
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != ',' {
			i++
		}
		if equalFold(trimSpace(b[:i]), tok) {
			return true
		}
		if i == len(b) {
			break
		}
		b = b[i+1:]
	}
	return false
}

// AppendFrame appends one final, masked frame with opcode op and payload p to
// b, masking with key. The payload is copied, so p is left as it was.
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

// AppendClose appends a masked close frame with code (0: no body).
func AppendClose(b []byte, code uint16, key uint32) []byte {
	if code == 0 {
		return AppendFrame(b, OpClose, nil, key)
	}
	var body [2]byte
	binary.BigEndian.PutUint16(body[:], code)
	return AppendFrame(b, OpClose, body[:], key)
}

// Mask XORs p with the masking key, whose first byte is the key's low byte
// (the key as written little-endian on the wire).
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

// MaxHeader is the longest frame header a server may send (no mask).
const MaxHeader = 10

// Header is a parsed server frame header.
type Header struct {
	Fin    bool
	Op     byte
	Length int64
	Size   int // header bytes
}

// ParseHeader parses a server frame header at the start of b. It returns
// ok=false when b does not yet hold the whole header.
func ParseHeader(b []byte) (h Header, ok bool, err error) {
	if len(b) < 2 {
		return h, false, nil
	}
	b0, b1 := b[0], b[1]
	h.Fin = b0&0x80 != 0
	h.Op = b0 & 0x0F
	if b0&0x70 != 0 {
		return h, false, ErrReserved
	}
	if b1&0x80 != 0 {
		return h, false, ErrMasked
	}
	switch h.Op {
	case OpContinuation, OpText, OpBinary:
	case OpClose, OpPing, OpPong:
		if !h.Fin || b1&0x7F > 125 {
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

// CloseCode returns the status code of a close frame payload (1005 when it
// has none).
func CloseCode(p []byte) uint16 {
	if len(p) < 2 {
		return 1005
	}
	return binary.BigEndian.Uint16(p)
}

// TickerFields scans a ticker message for "sym":"S<k>", "seq":<n> and
// "ts":<ns> without decoding JSON. ok is false when any is missing.
func TickerFields(p []byte) (sym int, seq int64, ts int64, ok bool) {
	i := index(p, `"sym":"S`)
	if i < 0 {
		return
	}
	v, n := parseUint(p[i+8:])
	if n == 0 || i+8+n >= len(p) || p[i+8+n] != '"' {
		return
	}
	sym = int(v)
	i = index(p, `"seq":`)
	if i < 0 {
		return
	}
	v, n = parseUint(p[i+6:])
	if n == 0 {
		return
	}
	seq = int64(v)
	i = index(p, `"ts":`)
	if i < 0 {
		return
	}
	v, n = parseUint(p[i+5:])
	if n == 0 {
		return
	}
	ts = int64(v)
	return sym, seq, ts, true
}

func parseUint(b []byte) (uint64, int) {
	var v uint64
	i := 0
	for i < len(b) && i < 19 && b[i] >= '0' && b[i] <= '9' {
		v = v*10 + uint64(b[i]-'0')
		i++
	}
	return v, i
}

// index is bytes.Index for a short constant needle, without the allocation
// of converting it.
func index(p []byte, needle string) int {
	n := len(needle)
	first := needle[0]
	for i := 0; i+n <= len(p); i++ {
		if p[i] == first && string(p[i:i+n]) == needle {
			return i
		}
	}
	return -1
}

// FormatTicker renders a ticker message the way the bench contract
// describes it, padded with a "pad" field to about size bytes. Servers and
// tests that need one use it.
func FormatTicker(b []byte, sym int, seq, ts int64, size int) []byte {
	start := len(b)
	b = append(b, `{"sym":"S`...)
	b = strconv.AppendInt(b, int64(sym), 10)
	b = append(b, `","seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, `,"pad":"`...)
	for len(b)-start < size-2 {
		b = append(b, 'x')
	}
	b = append(b, `"}`...)
	return b
}
