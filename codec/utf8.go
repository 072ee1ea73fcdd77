package codec

import "unicode/utf8"

// UTF8State is the state of an incremental UTF-8 validation: UTF8Accept
// between characters, another value inside a multi-byte sequence whose
// remaining bytes have not been seen yet. Its zero value is UTF8Accept.
type UTF8State uint8

// UTF8Accept is the state at a character boundary: the bytes validated so far
// form complete, valid UTF-8.
const UTF8Accept UTF8State = 0

// States inside a multi-byte sequence. Each names the range the next byte
// must fall in (RFC 3629, section 4) and how many bytes follow it.
const (
	utf8Need1   UTF8State = 1 + iota // 80..BF, then done
	utf8Need2                        // 80..BF, then 1 more
	utf8Need3                        // 80..BF, then 2 more
	utf8AfterE0                      // A0..BF (no overlongs), then 1 more
	utf8AfterED                      // 80..9F (no surrogates), then 1 more
	utf8AfterF0                      // 90..BF (no overlongs), then 2 more
	utf8AfterF4                      // 80..8F (nothing above U+10FFFF), then 2 more
	utf8Reject                       // an invalid byte was seen
)

// utf8Next gives, for each state inside a sequence, the accepted range of the
// next byte and the state after it.
var utf8Next = [utf8Reject]struct {
	lo, hi byte
	next   UTF8State
}{
	utf8Need1:   {0x80, 0xBF, UTF8Accept},
	utf8Need2:   {0x80, 0xBF, utf8Need1},
	utf8Need3:   {0x80, 0xBF, utf8Need2},
	utf8AfterE0: {0xA0, 0xBF, utf8Need1},
	utf8AfterED: {0x80, 0x9F, utf8Need1},
	utf8AfterF0: {0x90, 0xBF, utf8Need2},
	utf8AfterF4: {0x80, 0x8F, utf8Need2},
}

// utf8Lead returns the state after the first byte b of a sequence.
func utf8Lead(b byte) UTF8State {
	switch {
	case b < 0x80:
		return UTF8Accept
	case b < 0xC2: // continuation bytes and the overlong leads C0, C1
		return utf8Reject
	case b < 0xE0:
		return utf8Need1
	case b == 0xE0:
		return utf8AfterE0
	case b == 0xED:
		return utf8AfterED
	case b < 0xF0:
		return utf8Need2
	case b == 0xF0:
		return utf8AfterF0
	case b < 0xF4:
		return utf8Need3
	case b == 0xF4:
		return utf8AfterF4
	default:
		return utf8Reject
	}
}

// utf8Step runs the state machine over p, one byte at a time.
func utf8Step(s UTF8State, p []byte) UTF8State {
	for _, b := range p {
		if s == UTF8Accept {
			s = utf8Lead(b)
		} else {
			r := utf8Next[s]
			if b < r.lo || b > r.hi {
				return utf8Reject
			}
			s = r.next
		}
		if s == utf8Reject {
			return s
		}
	}
	return s
}

// ValidateUTF8 continues a validation in state s over the next bytes p of the
// text. It returns the state to pass with the following bytes, and false as
// soon as p contains a byte that makes the text invalid whatever follows it.
// The text as a whole is valid only if every call returned true and the last
// state is UTF8Accept; a different state means the text ends inside a
// character.
//
// The state machine only handles the bytes around a boundary; the complete
// characters between are checked by unicode/utf8.Valid, which has an ASCII
// fast path and is as fast as this can be done in portable Go.
func ValidateUTF8(s UTF8State, p []byte) (UTF8State, bool) {
	if s != UTF8Accept {
		if s >= utf8Reject {
			return utf8Reject, false
		}
		// Finish the character begun in an earlier call: at most 3 bytes.
		i := 0
		for ; i < len(p) && s != UTF8Accept; i++ {
			r := utf8Next[s]
			if b := p[i]; b < r.lo || b > r.hi {
				return utf8Reject, false
			}
			s = r.next
		}
		if s != UTF8Accept {
			return s, true
		}
		p = p[i:]
	}
	if len(p) == 0 || p[len(p)-1] < utf8.RuneSelf {
		// p ends with ASCII, so not inside a character: the usual case.
		if utf8.Valid(p) {
			return UTF8Accept, true
		}
		return utf8Reject, false
	}
	// Split off a character that starts in p but ends after it.
	cut := incompleteTail(p)
	if !utf8.Valid(p[:cut]) {
		return utf8Reject, false
	}
	s = utf8Step(UTF8Accept, p[cut:])
	return s, s != utf8Reject
}

// incompleteTail returns the index where a multi-byte character starts that
// p ends in the middle of, or len(p) if p does not end inside a character.
// Invalid bytes may end up on either side: both sides are validated.
func incompleteTail(p []byte) int {
	n := len(p)
	for i := n - 1; i >= 0 && i >= n-3; i-- {
		b := p[i]
		if b < 0x80 {
			return n
		}
		if b >= 0xC0 { // a lead byte
			size := 2
			if b >= 0xF0 {
				size = 4
			} else if b >= 0xE0 {
				size = 3
			}
			if n-i < size {
				return i
			}
			return n
		}
	}
	return n
}
