package upgrade

import "bytes"

// State is the per-connection progress of a handshake: how many bytes of the
// buffered request have been scanned already. Its zero value is ready; Step
// resets it when it returns a final Result, so a State can be reused. It is
// four bytes, since every connection carries one.
type State struct {
	// v holds the bytes of the buffer already scanned (below 2^31: see
	// maxMaxHeaderBytes), and stateLine once the request line is complete
	// and was checked.
	v uint32
}

const stateLine = 1 << 31

// Reset forgets the progress, for a new request on a fresh buffer.
func (s *State) Reset() { *s = State{} }

func (s *State) pos() int   { return int(s.v &^ stateLine) }
func (s *State) line() bool { return s.v&stateLine != 0 }

// set records the progress: pos bytes scanned, line the request line done.
func (s *State) set(pos int, line bool) {
	s.v = uint32(pos)
	if line {
		s.v |= stateLine
	}
}

// Outcomes of scan.
const (
	scanMore     = iota // no end of head yet, within the limit
	scanHead            // the head is buf[:n]
	scanBad             // buf[n-1] cannot be part of a request line
	scanTooLarge        // more than max bytes and no end of head among them
)

// scan looks for the end of the request head in buf, resuming where the
// previous call stopped. The head ends at the first empty line: "\r\n\r\n",
// or a bare "\n" where a "\r\n" would be (RFC 9112 §2.2 lets recipients
// accept LF alone as a line terminator). Only buf[:max] is ever looked at.
//
// While the request line is incomplete its bytes are checked as they arrive:
// it must start with a token byte and hold no control byte other than CR.
// A TLS ClientHello or other binary junk is thus refused at its first byte
// instead of waiting for the limit or the timeout.
//
// Every decision depends only on the bytes before the point of decision, so
// the outcome is the same for any split of the input.
func (s *State) scan(buf []byte, max int) (outcome, n int) {
	pos, line := s.pos(), s.line()
	if pos > len(buf) {
		// The caller dropped bytes it should have kept; start over rather
		// than index out of range.
		pos, line = 0, false
	}
	limit := min(len(buf), max)
	if !line {
		for ; pos < limit; pos++ {
			c := buf[pos]
			if pos == 0 && !isToken(c) {
				return scanBad, 1
			}
			if c == '\n' {
				line = true
				pos++
				break
			}
			if (c < ' ' && c != '\r') || c == 0x7f {
				s.set(pos, false)
				return scanBad, pos + 1
			}
		}
	}
	if line {
		for pos < limit {
			i := bytes.IndexByte(buf[pos:limit], '\n')
			if i < 0 {
				pos = limit
				break
			}
			i += pos
			// i >= 2 here: the request line starts with a token byte and
			// ends with the first '\n', which is at 1 or later.
			if p := buf[i-1]; p == '\n' || (p == '\r' && buf[i-2] == '\n') {
				s.set(i+1, true)
				return scanHead, i + 1
			}
			pos = i + 1
		}
	}
	s.set(pos, line)
	if len(buf) > max {
		return scanTooLarge, max
	}
	return scanMore, 0
}

// tokenTable marks the bytes of an RFC 9110 token (tchar).
var tokenTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(c byte) bool { return tokenTable[c] }

func isTokenString(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenTable[s[i]] {
			return false
		}
	}
	return true
}
