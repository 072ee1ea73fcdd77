package codec

import (
	"math/rand/v2"
	"testing"
	"unicode/utf8"
)

// FuzzDecoder feeds arbitrary bytes to a Decoder whole, one byte at a time
// and in random pieces, released whenever it is at rest or kept throughout.
// It must never panic or stall, never hold or deliver more than the limits
// allow, and give the same events and error every time.
func FuzzDecoder(f *testing.F) {
	f.Add(textFrame("hello"), uint64(1), false)
	f.Add(cat(first(2, "ab"), pingFrame("p"), contFrame(true, "c")), uint64(2), false)
	f.Fuzz(func(t *testing.T, data []byte, seed uint64, allowRSV1 bool) {
		cfg := &DecoderConfig{MaxFrameBytes: 300, MaxMessageBytes: 1000}
		if seed&1 != 0 {
			cfg = nil // the defaults
		}
		want, err := decodeSplit(cfg, allowRSV1, data, nil)
		if err != nil {
			t.Fatalf("whole: %v", err)
		}
		every := make([]int, 0, len(data))
		for i := 1; i < len(data); i++ {
			every = append(every, i)
		}
		rng := rand.New(rand.NewPCG(seed, uint64(len(data))))
		for i, cuts := range [][]int{every, randomCuts(len(data), rng), randomCuts(len(data), rng)} {
			// Odd runs release the Decoder whenever it is at rest and move
			// it otherwise, as a server that keeps one only for streams in
			// the middle of a frame or message does.
			rest := i%2 == 1 || seed&2 != 0
			got, err := decodeSplitMode(cfg, allowRSV1, data, cuts, rest)
			if err != nil {
				t.Fatalf("cuts %v (rest %v): %v", cuts, rest, err)
			}
			if !got.equal(want) {
				t.Fatalf("cuts %v (rest %v):\n got  %v\n want %v", cuts, rest, got, want)
			}
		}
	})
}

// FuzzValidateUTF8 checks the incremental validator against unicode/utf8 in
// random pieces, including that it fails in the piece holding the first
// hopeless byte.
func FuzzValidateUTF8(f *testing.F) {
	f.Add([]byte("héllo, 世界 𝄞"), uint64(1))
	f.Add([]byte("ab\xed\xa0\x80"), uint64(2))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		s, ok := ValidateUTF8(UTF8Accept, data)
		if got, want := ok && s == UTF8Accept, utf8.Valid(data); got != want {
			t.Fatalf("%q: valid %v, utf8.Valid %v", data, got, want)
		}
		rng := rand.New(rand.NewPCG(seed, 3))
		every := make([]int, 0, len(data))
		for i := 1; i < len(data); i++ {
			every = append(every, i)
		}
		checkUTF8Split(t, data, randomCuts(len(data), rng), every)
	})
}
