package codec

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// validPrefix reports whether q, at most 4 bytes that start a character, can
// be completed into valid UTF-8. Only the byte after q has a range that
// depends on q; the ones after it are plain continuation bytes.
func validPrefix(q []byte) bool {
	if utf8.Valid(q) {
		return true
	}
	if len(q) >= utf8.UTFMax {
		return false
	}
	for c := 0x80; c <= 0xBF; c++ {
		ext := append(append([]byte(nil), q...), byte(c))
		for pad := 0; len(ext)+pad <= utf8.UTFMax; pad++ {
			if utf8.Valid(append(ext, strings.Repeat("\x80", pad)...)) {
				return true
			}
		}
	}
	return false
}

// firstInvalid returns the index of the first byte of p after which no
// continuation can make p valid UTF-8, or -1.
func firstInvalid(p []byte) int {
	for j := 0; j < len(p); {
		if p[j] < utf8.RuneSelf {
			j++
			continue
		}
		if _, size := utf8.DecodeRune(p[j:]); size > 1 {
			j += size
			continue
		}
		for k := 1; j+k <= len(p); k++ {
			if !validPrefix(p[j : j+k]) {
				return j + k - 1
			}
		}
		return -1 // p ends inside a character
	}
	return -1
}

// checkUTF8Split validates p in the pieces cut at each of cutLists and
// checks the result after each piece against the reference.
func checkUTF8Split(t testing.TB, p []byte, cutLists ...[]int) {
	t.Helper()
	bad := firstInvalid(p)
	for _, cuts := range cutLists {
		checkUTF8Cuts(t, p, bad, cuts)
	}
}

func checkUTF8Cuts(t testing.TB, p []byte, bad int, cuts []int) {
	t.Helper()
	s := UTF8Accept
	prev := 0
	for i := 0; i <= len(cuts); i++ {
		end := len(p)
		if i < len(cuts) {
			end = cuts[i]
		}
		var ok bool
		s, ok = ValidateUTF8(s, p[prev:end])
		if !ok {
			// Fail fast: the first hopeless byte is in this piece.
			if bad < prev || bad >= end {
				t.Fatalf("%q cut at %v: failed in piece [%d,%d), first invalid byte at %d", p, cuts, prev, end, bad)
			}
			return
		}
		if bad >= 0 && bad < end {
			t.Fatalf("%q cut at %v: piece [%d,%d) accepted, invalid byte at %d", p, cuts, prev, end, bad)
		}
		if (s == UTF8Accept) != utf8.Valid(p[:end]) {
			t.Fatalf("%q cut at %v: state %d after %d bytes, utf8.Valid %v", p, cuts, s, end, utf8.Valid(p[:end]))
		}
		prev = end
	}
}

func TestValidateUTF8(t *testing.T) {
	cases := []string{
		"", "a", "hello, world", "héllo", "€", "𝄞", "\u007f\u0080\u07ff\u0800\uffff\U00010000\U0010ffff",
		"\ufffd", "\xed\x9f\xbf", "\xee\x80\x80", strings.Repeat("日本語", 30), strings.Repeat("a", 100) + "é",
		"\x80", "\xbf", "\xc0\x80", "\xc1\xbf", "\xc2", "\xc2\x7f", "\xe0\x9f\xbf", "\xe0\xa0", "\xed\xa0\x80",
		"\xed\xbf\xbf", "\xf0\x8f\xbf\xbf", "\xf0\x90\x80", "\xf4\x90\x80\x80", "\xf4\x8f\xbf\xbf", "\xf5",
		"\xf8\x88\x80\x80\x80", "\xfe", "\xff", "abc\xe2\x82", "abc\xe2\x82\xacdef\xf0", strings.Repeat("a", 50) + "\xff",
		"\xe2\x82\xac\xe2\x82\xac\xe2(\xa1", "a\xf0\x9f\x98\x80b\xf0\x9f\x98",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range cases {
		p := []byte(c)
		checkUTF8Split(t, p, splitsOf(len(p), rng)...)
	}
}

// TestValidateUTF8Sequences tries every lead byte with a spread of following
// bytes around the edges of the valid ranges, in every split.
func TestValidateUTF8Sequences(t *testing.T) {
	seconds := []byte{0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2, 0xe0, 0xf0, 0xff}
	rest := []byte{0x7f, 0x80, 0xbf, 0xc0}
	for lead := 0x80; lead <= 0xff; lead++ {
		for _, b2 := range seconds {
			for _, b3 := range rest {
				for _, b4 := range rest {
					p := []byte{'x', byte(lead), b2, b3, b4, 'y'}
					checkUTF8Split(t, p, nil, []int{1}, []int{2}, []int{3}, []int{4}, []int{5}, []int{1, 2, 3, 4, 5})
				}
			}
		}
	}
}

func TestValidateUTF8RejectIsSticky(t *testing.T) {
	s, ok := ValidateUTF8(UTF8Accept, []byte{0xff})
	if ok {
		t.Fatal("0xff accepted")
	}
	if _, ok := ValidateUTF8(s, []byte("fine")); ok {
		t.Fatal("valid bytes after a rejection accepted")
	}
}

func TestValidateUTF8Allocs(t *testing.T) {
	p := []byte(strings.Repeat("héllo wörld ", 100))
	if a := testing.AllocsPerRun(100, func() { ValidateUTF8(UTF8Accept, p) }); a != 0 {
		t.Fatalf("%v allocations", a)
	}
}
