package codec

import (
	"bytes"
	stdflate "compress/flate"
	"io"
	"math/rand/v2"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
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

// FuzzInflate feeds arbitrary bytes to the Decoder as the payload of a
// compressed message (permessage-deflate negotiated), as one frame or in
// fragments, followed by a ping and a plain message, whole and split
// anywhere. The answer must not depend on the split, and must agree with
// the standard library's inflater: a stream it inflates to at most the
// limit comes out byte for byte (text: if valid UTF-8), any other gets
// ErrInvalidDeflate, ErrInflatedTooBig or ErrInvalidUTF8 and nothing after
// it. The checked-in corpus holds deflate bombs (a kilobyte that inflates
// to a mebibyte, against a 64 KiB limit), which must end in
// ErrInflatedTooBig without the Decoder buffering more than the limit.
func FuzzInflate(f *testing.F) {
	f.Add([]byte(deflateStd("hello, hello, hello")), true, uint16(0), uint64(1))
	f.Add([]byte(deflateStd("fragmented fragmented")), false, uint16(3), uint64(2))
	f.Fuzz(func(t *testing.T, z []byte, text bool, frag uint16, seed uint64) {
		const limit = 64 << 10
		cfg := &DecoderConfig{MaxMessageBytes: limit}
		op := ws.OpBinary
		if text {
			op = ws.OpText
		}
		stream := compressedFrames(op, z, int(frag%512))
		stream = append(stream, pingFrame("p")...)
		stream = append(stream, textFrame("next")...)

		want := result{}
		ref, refErr := inflateRef(z, limit)
		switch {
		case refErr == nil && len(ref) > limit:
			want.err = ErrInflatedTooBig
			if text && !validUpTo(ref[:limit]) {
				want.err = ErrInvalidUTF8
			}
		case refErr == nil && text && !utf8.Valid(ref):
			want.err = ErrInvalidUTF8
		case refErr == nil:
			want.events = []ev{{op, string(ref), true}, msg(ws.OpPing, "p"), msg(ws.OpText, "next")}
		}

		got, err := decodeSplit(cfg, true, stream, nil)
		if err != nil {
			t.Fatalf("whole: %v", err)
		}
		if refErr != nil {
			// Not a stream compress/flate takes: the Decoder must refuse it
			// too, with one of the codes for a bad compressed message.
			switch got.err {
			case ErrInvalidDeflate, ErrInflatedTooBig, ErrInvalidUTF8:
			default:
				t.Fatalf("compress/flate: %v; Decoder: %v", refErr, got)
			}
			if len(got.events) != 0 {
				t.Fatalf("events before the error: %v", got.events)
			}
			want = got
		} else if !got.equal(want) {
			t.Fatalf("whole:\n got  %v\n want %v", got, want)
		}
		rng := rand.New(rand.NewPCG(seed, uint64(len(stream))))
		for i := range 2 {
			cuts := randomCuts(len(stream), rng)
			split, err := decodeSplitMode(cfg, true, stream, cuts, i == 1)
			if err != nil {
				t.Fatalf("cuts %v: %v", cuts, err)
			}
			if !split.equal(want) {
				t.Fatalf("cuts %v:\n got  %v\n want %v", cuts, split, want)
			}
		}
	})
}

// compressedFrames is a compressed message z in one frame (size 0) or in
// fragments of size bytes.
func compressedFrames(op ws.OpCode, z []byte, size int) []byte {
	if size == 0 || size >= len(z) {
		return mkFrame(bFin|bRsv1|byte(op), z, fopt{})
	}
	return fragments(op, string(z), size)
}

// inflateRef inflates a permessage-deflate payload with compress/flate,
// reading at most limit+1 bytes. An empty payload is an empty message, as
// the Decoder takes it.
func inflateRef(z []byte, limit int) ([]byte, error) {
	if len(z) == 0 {
		return nil, nil
	}
	r := stdflate.NewReader(io.MultiReader(bytes.NewReader(z), bytes.NewReader(deflateTail[:])))
	return io.ReadAll(io.LimitReader(r, int64(limit)+1))
}

// validUpTo reports whether p is valid UTF-8 but for a character cut at
// its end.
func validUpTo(p []byte) bool {
	_, ok := ValidateUTF8(UTF8Accept, p)
	return ok
}
