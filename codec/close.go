package codec

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// maxCloseReason is the longest close reason: a control frame payload is at
// most 125 bytes and the status code takes 2 of them.
const maxCloseReason = ws.MaxControlFramePayloadSize - 2

// ValidCloseCode reports whether code may appear in a close frame: 1000-1003
// and 1007-1014 (the codes registered for the protocol) and 3000-4999
// (libraries, frameworks and applications). 1004-1006 and 1015 are reserved
// and never sent; everything else is unassigned.
func ValidCloseCode(code ws.StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// ParseClose parses and validates the payload of a close frame. An empty
// payload carries no status: ParseClose returns 1005 (no status received), no
// reason and no error. reason aliases p. err is nil or one of
// ErrCloseOneByte, ErrInvalidCloseCode and ErrInvalidCloseReason.
func ParseClose(p []byte) (code ws.StatusCode, reason []byte, err error) {
	code, reason, perr := parseClose(p)
	if perr != nil {
		return code, reason, perr
	}
	return code, reason, nil
}

func parseClose(p []byte) (ws.StatusCode, []byte, *ProtocolError) {
	switch len(p) {
	case 0:
		return ws.StatusNoStatusRcvd, nil, nil
	case 1:
		return 0, nil, ErrCloseOneByte
	}
	code := ws.StatusCode(binary.BigEndian.Uint16(p))
	if !ValidCloseCode(code) {
		return code, nil, ErrInvalidCloseCode
	}
	reason := p[2:]
	if !utf8.Valid(reason) {
		return code, reason, ErrInvalidCloseReason
	}
	return code, reason, nil
}

// AppendClose appends a whole, unmasked close frame to dst and returns the
// extended slice. code 0 and 1005 (no status) give an empty payload and no
// reason. A reason longer than 123 bytes is cut at the last character
// boundary that fits, so that the frame stays within the 125-byte control
// frame limit and a valid reason stays valid. code is written as given; check
// it with ValidCloseCode if it comes from elsewhere.
func AppendClose(dst []byte, code ws.StatusCode, reason string) []byte {
	if code == 0 || code == ws.StatusNoStatusRcvd {
		return AppendHeader(dst, ws.OpClose, true, false, 0)
	}
	if len(reason) > maxCloseReason {
		cut := maxCloseReason
		// A character is at most 4 bytes: look back at most 3.
		for i := 0; i < utf8.UTFMax-1 && !utf8.RuneStart(reason[cut]); i++ {
			cut--
		}
		reason = reason[:cut]
	}
	dst = AppendHeader(dst, ws.OpClose, true, false, 2+len(reason))
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	return append(dst, reason...)
}
