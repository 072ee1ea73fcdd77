package wsframe

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Handshake errors. ParseResponse wraps ErrBadHandshake with what was wrong.
var (
	ErrBadHandshake  = errors.New("bad handshake response")
	ErrResponseLarge = errors.New("handshake response head too large")
)

// MaxResponseHead bounds the 101 head a client reads.
const MaxResponseHead = 16 << 10

const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// NewRequestKey returns a fresh random Sec-WebSocket-Key.
func NewRequestKey() string {
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	return base64.StdEncoding.EncodeToString(raw[:])
}

// Key returns a Sec-WebSocket-Key derived from a connection number and an
// attempt: 16 bytes from both, base64 encoded, so that a load generator
// needs no storage per connection to check the answer.
func Key(n uint64, attempt uint32) string {
	var raw [16]byte
	binary.LittleEndian.PutUint64(raw[:8], n*0x9E3779B97F4A7C15+uint64(attempt))
	binary.LittleEndian.PutUint64(raw[8:], n^0xD1B54A32D192ED03+uint64(attempt)<<32)
	return base64.StdEncoding.EncodeToString(raw[:])
}

// acceptLen is the length of a Sec-WebSocket-Accept value.
const acceptLen = 28

// Accept is the Sec-WebSocket-Accept a server must answer to key.
func Accept(key string) string {
	var a [acceptLen]byte
	accept(&a, key)
	return string(a[:])
}

// accept computes the answer to key into a without allocating for keys of
// the usual size.
func accept(a *[acceptLen]byte, key string) {
	var buf [128]byte
	in := buf[:0]
	if len(key)+len(websocketGUID) > len(buf) {
		in = make([]byte, 0, len(key)+len(websocketGUID))
	}
	in = append(append(in, key...), websocketGUID...)
	sum := sha1.Sum(in)
	base64.StdEncoding.Encode(a[:], sum[:])
}

// AppendRequest appends an upgrade request for path (with its query) on
// host, with key, to b. Each of header is one more header line as given
// ("Name: value"), such as an Origin. It does not allocate beyond b.
func AppendRequest(b []byte, host, path, key string, header ...string) []byte {
	b = append(b, "GET "...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "...)
	b = append(b, key...)
	b = append(b, "\r\nSec-WebSocket-Version: 13\r\n"...)
	for _, h := range header {
		b = append(b, h...)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...)
}

// ReadHead reads a response head from r up to and including its empty
// line, one byte per Read, so that no byte after it is consumed (wrap r in
// a bufio.Reader and keep reading from that when the head is not all).
func ReadHead(r io.Reader) ([]byte, error) {
	head := make([]byte, 0, 256)
	var c [1]byte
	for indexCRLFCRLF(head) < 0 {
		if len(head) >= MaxResponseHead {
			return head, ErrResponseLarge
		}
		if _, err := io.ReadFull(r, c[:]); err != nil {
			return head, eofInside(len(head), err)
		}
		head = append(head, c[0])
	}
	return head, nil
}

// ParseResponse looks for a complete response head at the start of b. It
// returns the length of the head, 0 while it is incomplete, and an error
// (wrapping ErrBadHandshake) when the head is not a valid 101 for key per
// RFC 6455 section 4.2.2: the status, Upgrade: websocket, a Connection
// header with the upgrade token, the right Sec-WebSocket-Accept, and no
// extension or subprotocol, since none was offered. It does not allocate
// unless the answer is wrong.
func ParseResponse(b []byte, key string) (int, error) {
	n, _, err := parseResponse(b, key, false)
	return n, err
}

// ParseResponseExtensions is ParseResponse for a request that offered
// extensions: it also returns the value of the answer's
// Sec-WebSocket-Extensions (nil when there is none) for the caller to
// check, instead of refusing it.
func ParseResponseExtensions(b []byte, key string) (n int, extensions []byte, err error) {
	return parseResponse(b, key, true)
}

func parseResponse(b []byte, key string, offered bool) (int, []byte, error) {
	end := indexCRLFCRLF(b)
	if end < 0 {
		if len(b) > MaxResponseHead {
			return 0, nil, ErrResponseLarge
		}
		return 0, nil, nil
	}
	head := b[:end]
	n := end + 4
	line, rest := cutLine(head)
	if len(line) < 12 || string(line[:9]) != "HTTP/1.1 " || string(line[9:12]) != "101" ||
		(len(line) > 12 && line[12] != ' ') {
		return n, nil, fmt.Errorf("%w: status line %q, want HTTP/1.1 101", ErrBadHandshake, line)
	}
	var upgrade, connection, accepted, extensions []byte
	var haveUpgrade, haveConnection, haveAccept bool
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
			return n, nil, fmt.Errorf("%w: malformed header line %q", ErrBadHandshake, line)
		}
		name := line[:colon]
		value := trimSpace(line[colon+1:])
		switch {
		case equalFold(name, "upgrade"):
			upgrade, haveUpgrade = value, true
		case equalFold(name, "connection"):
			if !haveConnection || !containsTokenFold(connection, "upgrade") {
				connection, haveConnection = value, true
			}
		case equalFold(name, "sec-websocket-accept"):
			if haveAccept {
				return n, nil, fmt.Errorf("%w: more than one Sec-WebSocket-Accept", ErrBadHandshake)
			}
			accepted, haveAccept = value, true
		case equalFold(name, "sec-websocket-extensions"):
			if !offered {
				return n, nil, fmt.Errorf("%w: server answered extensions %q that were not offered", ErrBadHandshake, value)
			}
			if extensions != nil {
				return n, nil, fmt.Errorf("%w: more than one Sec-WebSocket-Extensions", ErrBadHandshake)
			}
			extensions = value
		case equalFold(name, "sec-websocket-protocol"):
			return n, nil, fmt.Errorf("%w: server answered subprotocol %q that was not offered", ErrBadHandshake, value)
		}
	}
	if !haveUpgrade || !equalFold(upgrade, "websocket") {
		return n, nil, fmt.Errorf("%w: Upgrade header %q, want websocket", ErrBadHandshake, upgrade)
	}
	if !containsTokenFold(connection, "upgrade") {
		return n, nil, fmt.Errorf("%w: Connection header %q lacks the upgrade token", ErrBadHandshake, connection)
	}
	var want [acceptLen]byte
	accept(&want, key)
	if string(accepted) != string(want[:]) {
		return n, nil, fmt.Errorf("%w: Sec-WebSocket-Accept %q, want %q", ErrBadHandshake, accepted, string(want[:]))
	}
	return n, extensions, nil
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

// equalFold compares b with the lower-case ASCII s, ignoring b's case.
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

// containsTokenFold reports whether the comma-separated list b holds tok.
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
