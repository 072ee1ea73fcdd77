package upgrade

import (
	"crypto/sha1"
	"encoding/base64"
)

// websocketGUID is the fixed suffix RFC 6455 §1.3 appends to the client's
// key before hashing.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// keyLen is the length of a valid Sec-WebSocket-Key: the base64 of 16 bytes.
const keyLen = 24

// acceptLen is the length of Sec-WebSocket-Accept: the base64 of a 20-byte
// SHA-1 sum.
const acceptLen = 28

// appendAccept appends the Sec-WebSocket-Accept value for key (RFC 6455
// §4.2.2): base64(SHA-1(key + GUID)). key must have passed validKey. The
// hash input and the encoding live in fixed-size arrays on the stack, so a
// handshake spends no allocation on its accept key.
func appendAccept(dst []byte, key string) []byte {
	var in [keyLen + len(websocketGUID)]byte
	copy(in[copy(in[:], key):], websocketGUID)
	sum := sha1.Sum(in[:])
	var out [acceptLen]byte
	base64.StdEncoding.Encode(out[:], sum[:])
	return append(dst, out[:]...)
}

// validKey reports whether k is the base64 of 16 bytes (RFC 6455 §4.1):
// 22 characters of the standard alphabet and the "==" padding.
func validKey(k string) bool {
	if len(k) != keyLen || k[22] != '=' || k[23] != '=' {
		return false
	}
	for i := 0; i < 22; i++ {
		c := k[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}
