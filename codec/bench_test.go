package codec

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/heraldws/herald/pool"
)

// benchKey keeps ASCII masked bytes ASCII: decoding a text frame in place
// twice gives the frame back, so the benchmark needs no copy per iteration.
var benchKey = [4]byte{0x12, 0x34, 0x56, 0x78}

var benchSizes = []int{16, 128, 1024, 64 << 10}

func benchText(n int) []byte {
	return mkFrame(bFin|byte(ws.OpText), []byte(strings.Repeat("abcdefghijklmnopqrstuvwxyz012345", n/32+1)[:n]), fopt{key: benchKey})
}

func BenchmarkDecode(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			f := benchText(n)
			var d Decoder
			d.Init(nil, false)
			defer d.Release()
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, e, err := d.Decode(f); err != nil || e.Op != ws.OpText {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeSplit feeds each frame in pieces of at most 1448 bytes (a
// typical TCP segment) or, for small frames, in two halves: the payload goes
// through a pooled buffer.
func BenchmarkDecodeSplit(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			f := benchText(n)
			piece := min(1448, len(f)/2)
			var d Decoder
			d.Init(nil, false)
			defer d.Release()
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				var got ws.OpCode
				for p := f; len(p) > 0; {
					k := min(piece, len(p))
					_, e, err := d.Decode(p[:k])
					if err != nil {
						b.Fatal(err)
					}
					got = e.Op
					p = p[k:]
				}
				if got != ws.OpText {
					b.Fatal("no message")
				}
			}
		})
	}
}

// BenchmarkDecodeFragmented decodes a 4 KiB text message sent as 4 fragments
// with a ping between the second and third, all arriving at once.
func BenchmarkDecodeFragmented(b *testing.B) {
	part := strings.Repeat("x", 1024)
	in := cat(first(ws.OpText, part), contFrame(false, part), pingFrame("ping"), contFrame(false, part), contFrame(true, part))
	var d Decoder
	d.Init(nil, false)
	defer d.Release()
	b.SetBytes(4096)
	b.ReportAllocs()
	for b.Loop() {
		p := in
		events := 0
		for len(p) > 0 {
			n, e, err := d.Decode(p)
			if err != nil {
				b.Fatal(err)
			}
			if e.Op != 0 {
				events++
			}
			p = p[n:]
		}
		if events != 2 {
			b.Fatal(events)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, n := range benchSizes {
		payload := make([]byte, n)
		b.Run("AppendFrame/"+strconv.Itoa(n), func(b *testing.B) {
			dst := make([]byte, 0, HeaderLen(n)+n)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				dst = AppendFrame(dst[:0], ws.OpText, payload)
			}
		})
		b.Run("EncodeFrame/"+strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				pool.Put(EncodeFrame(ws.OpText, payload))
			}
		})
	}
	b.Run("PutHeader", func(b *testing.B) {
		var h [MaxHeaderLen]byte
		b.ReportAllocs()
		for b.Loop() {
			PutHeader(h[:], ws.OpBinary, true, false, 70000)
		}
	})
}

func BenchmarkUTF8(b *testing.B) {
	inputs := map[string]string{
		"ascii-1K": strings.Repeat("abcdefghijklmnop", 64),
		"mixed-1K": strings.Repeat("héllo wörld €𝄞 ", 1024/20+1)[:1020],
		"ascii-64": strings.Repeat("abcdefgh", 8),
	}
	for _, name := range []string{"ascii-64", "ascii-1K", "mixed-1K"} {
		p := []byte(inputs[name])
		b.Run("ValidateUTF8/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			for b.Loop() {
				if s, ok := ValidateUTF8(UTF8Accept, p); !ok || s != UTF8Accept {
					b.Fatal("invalid")
				}
			}
		})
		b.Run("utf8.Valid/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			for b.Loop() {
				if !utf8.Valid(p) {
					b.Fatal("invalid")
				}
			}
		})
	}
}
