package codec

import (
	"bytes"
	stdflate "compress/flate"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/gobwas/ws"
	"github.com/klauspost/compress/flate"
)

// The flate choice: compress/flate against klauspost/compress/flate, each
// with pooled compressors at BestSpeed and pooled decompressors, on the
// messages a WebSocket server sends (JSON, from a ticker's 128 bytes to a
// snapshot of 256 KiB). "ratio" is compressed/original size.
//
//	go test -run '^$' -bench 'Compress|Inflate' -benchmem ./codec

// benchJSON returns about n bytes of ticker-like JSON, deterministic.
func benchJSON(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	sides := []string{"buy", "sell"}
	var b bytes.Buffer
	b.WriteByte('[')
	for i := 0; b.Len() < n-1; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sym":"S%d","seq":%d,"ts":%d,"px":%.2f,"vol":%d,"side":"%s"}`,
			r.IntN(20), r.IntN(1e6), 1764000000000000000+r.Int64N(1e12), 100+r.Float64()*50, r.IntN(10000), sides[r.IntN(2)])
	}
	b.WriteByte(']')
	return b.Bytes()
}

var deflateSizes = []int{128, 1 << 10, 16 << 10, 256 << 10}

type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

var (
	stdWriters = sync.Pool{New: func() any { w, _ := stdflate.NewWriter(nil, stdflate.BestSpeed); return w }}
	kWriters   = sync.Pool{New: func() any { w, _ := flate.NewWriter(nil, flate.BestSpeed); return w }}
)

func BenchmarkCompress(b *testing.B) {
	for _, n := range deflateSizes {
		msg := benchJSON(n)
		out := &sliceWriter{b: make([]byte, 0, 2*len(msg)+64)}
		run := func(b *testing.B, compress func()) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				out.b = out.b[:0]
				compress()
			}
			b.ReportMetric(float64(len(out.b)-4)/float64(len(msg)), "ratio")
		}
		b.Run(fmt.Sprintf("stdlib/%dB", len(msg)), func(b *testing.B) {
			run(b, func() {
				w := stdWriters.Get().(*stdflate.Writer)
				w.Reset(out)
				_, _ = w.Write(msg)
				_ = w.Flush()
				stdWriters.Put(w)
			})
		})
		b.Run(fmt.Sprintf("klauspost/%dB", len(msg)), func(b *testing.B) {
			run(b, func() {
				w := kWriters.Get().(*flate.Writer)
				w.Reset(out)
				_, _ = w.Write(msg)
				_ = w.Flush()
				kWriters.Put(w)
			})
		})
		// What herald does: the frame, header included, into a buffer.
		b.Run(fmt.Sprintf("herald-frame/%dB", len(msg)), func(b *testing.B) {
			run(b, func() { out.b = AppendCompressedFrame(out.b[:0], ws.OpText, msg) })
		})
	}
}

func BenchmarkInflate(b *testing.B) {
	for _, n := range deflateSizes {
		msg := benchJSON(n)
		frame := AppendCompressedFrame(nil, ws.OpText, msg)
		_, hl := serverFrameLen(frame)
		in := append(append([]byte(nil), frame[hl:]...), deflateTail[:]...)
		out := make([]byte, len(msg))
		var src bytes.Reader
		run := func(b *testing.B, r io.Reader) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				src.Reset(in)
				if err := r.(flate.Resetter).Reset(&src, nil); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(r, out); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.Run(fmt.Sprintf("stdlib/%dB", len(msg)), func(b *testing.B) {
			run(b, stdResetter{stdflate.NewReader(&src)})
		})
		b.Run(fmt.Sprintf("klauspost/%dB", len(msg)), func(b *testing.B) {
			run(b, flate.NewReader(&src))
		})
	}
}

// stdResetter gives compress/flate's reader klauspost's Resetter method set.
type stdResetter struct{ io.ReadCloser }

func (r stdResetter) Reset(src io.Reader, dict []byte) error {
	return r.ReadCloser.(stdflate.Resetter).Reset(src, dict)
}

// BenchmarkDecodeCompressed is what a compressed message costs the server
// end to end: unmask, buffer, inflate with a pooled decompressor, check
// UTF-8.
func BenchmarkDecodeCompressed(b *testing.B) {
	for _, n := range deflateSizes {
		msg := benchJSON(n)
		in := maskServerFrame(AppendCompressedFrame(nil, ws.OpText, msg), [4]byte{1, 2, 3, 4})
		buf := make([]byte, len(in))
		b.Run(fmt.Sprintf("%dB", len(msg)), func(b *testing.B) {
			var d Decoder
			d.Init(&DecoderConfig{MaxMessageBytes: 1 << 20}, true)
			defer d.Release()
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				copy(buf, in)
				if _, e, err := d.Decode(buf); err != nil || len(e.Payload) != len(msg) {
					b.Fatalf("%v %d", err, len(e.Payload))
				}
			}
		})
	}
}
