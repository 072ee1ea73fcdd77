package codec

import (
	"bytes"
	stdflate "compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

// deflateLevel compresses s with compress/flate at level, flushed, without
// the trailing 00 00 ff ff; with final, the stream ends with a final block
// instead (Close), which RFC 7692 7.2.3.4 lets a sender do.
func deflateLevel(s string, level int, final bool) string {
	var b bytes.Buffer
	w, _ := stdflate.NewWriter(&b, level)
	_, _ = w.Write([]byte(s))
	if final {
		_ = w.Close()
		return b.String()
	}
	_ = w.Flush()
	return strings.TrimSuffix(b.String(), "\x00\x00\xff\xff")
}

// bomb returns a compressed payload that inflates to n MiB of zeros from
// about n KiB: one MiB compressed once, repeated. Each copy ends with the
// flush marker the next one needs, and none refers to another, so the
// copies chain into one valid stream.
func bomb(n int) []byte {
	seg := deflateLevel(string(make([]byte, 1<<20)), stdflate.BestCompression, false) + "\x00\x00\xff\xff"
	return []byte(strings.Repeat(seg, n)[:n*len(seg)-4])
}

// randomText returns n bytes of valid UTF-8 that compress poorly.
func randomText(n int, seed uint64) string {
	r := rand.New(rand.NewPCG(seed, 1))
	runes := []rune("aZ~éßЖ€中😀𝄞")
	var b strings.Builder
	for b.Len() < n {
		c := runes[r.IntN(len(runes))]
		if b.Len()+len(string(c)) > n {
			c = 'x'
		}
		b.WriteRune(c)
	}
	return b.String()
}

func compressedFrame(op ws.OpCode, z string) []byte { return frame(bFin|bRsv1|byte(op), z) }

// TestCompressedStreams: compressed messages whole, fragmented and split
// anywhere, the limits on the inflated size, and every way a compressed
// message can be wrong. Each stream is decoded in every split of
// checkAllSplits.
func TestCompressedStreams(t *testing.T) {
	json := strings.Repeat(`{"sym":"S1","seq":1234,"px":101.25},`, 30)
	zjson := deflateLevel(json, stdflate.DefaultCompression, false)
	random := randomText(1000, 1)
	zrandom := deflateLevel(random, stdflate.NoCompression, false)
	limit := &DecoderConfig{MaxMessageBytes: 1000}
	cases := []struct {
		name   string
		cfg    *DecoderConfig
		stream []byte
		want   []ev
		err    *ProtocolError
	}{
		{name: "text", stream: compressedFrame(ws.OpText, zjson), want: []ev{{ws.OpText, json, true}}},
		{name: "binary", stream: compressedFrame(ws.OpBinary, deflateLevel("\x00\xff\xfe", 6, false)), want: []ev{{ws.OpBinary, "\x00\xff\xfe", true}}},
		{name: "empty", stream: compressedFrame(ws.OpText, deflateLevel("", 6, false)), want: []ev{{ws.OpText, "", true}}},
		{name: "empty payload: lenient", stream: compressedFrame(ws.OpBinary, ""), want: []ev{{ws.OpBinary, "", true}}},
		{name: "huffman only", stream: compressedFrame(ws.OpText, deflateLevel(json, stdflate.HuffmanOnly, false)), want: []ev{{ws.OpText, json, true}}},
		{name: "stored blocks", stream: compressedFrame(ws.OpText, zrandom), want: []ev{{ws.OpText, random, true}}},
		{name: "final block", stream: compressedFrame(ws.OpText, deflateLevel(json, 6, true)), want: []ev{{ws.OpText, json, true}}},
		{
			name:   "fragmented with a ping between",
			stream: cat(frame(bRsv1|byte(ws.OpText), zjson[:10]), pingFrame("p"), contFrame(false, zjson[10:11]), contFrame(false, ""), contFrame(true, zjson[11:])),
			want:   []ev{msg(ws.OpPing, "p"), {ws.OpText, json, true}},
		},
		{
			name:   "empty first fragment",
			stream: cat(frame(bRsv1|byte(ws.OpBinary), ""), contFrame(true, zjson)),
			want:   []ev{{ws.OpBinary, json, true}},
		},
		{
			name: "each message on its own, mixed with plain ones",
			stream: cat(compressedFrame(ws.OpText, zjson), textFrame("plain"), compressedFrame(ws.OpText, zjson),
				first(ws.OpBinary, "pl"), contFrame(true, "ain"), compressedFrame(ws.OpText, deflateLevel("é", 1, false))),
			want: []ev{{ws.OpText, json, true}, msg(ws.OpText, "plain"), {ws.OpText, json, true}, msg(ws.OpBinary, "plain"), {ws.OpText, "é", true}},
		},

		// MaxMessageBytes is the inflated size.
		{name: "inflates to the limit", cfg: limit, stream: compressedFrame(ws.OpText, deflateLevel(strings.Repeat("a", 1000), 6, false)), want: []ev{{ws.OpText, strings.Repeat("a", 1000), true}}},
		{name: "inflates past the limit", cfg: limit, stream: compressedFrame(ws.OpText, deflateLevel(strings.Repeat("a", 1001), 6, false)), err: ErrInflatedTooBig},
		{name: "bomb", cfg: &DecoderConfig{MaxMessageBytes: 64 << 10}, stream: compressedFrame(ws.OpBinary, string(bomb(2))), err: ErrInflatedTooBig},
		{
			name:   "fragmented bomb",
			cfg:    &DecoderConfig{MaxMessageBytes: 64 << 10, MaxFrameBytes: 1 << 10},
			stream: fragments(ws.OpBinary, string(bomb(2)), 1<<10),
			err:    ErrInflatedTooBig,
		},
		{
			// Incompressible data takes a few bytes more on the wire than
			// inflated: the wire limit leaves room for that.
			name:   "stored at the limit",
			cfg:    limit,
			stream: compressedFrame(ws.OpText, zrandom),
			want:   []ev{{ws.OpText, random, true}},
		},
		{name: "wire past the slack", cfg: limit, stream: compressedFrame(ws.OpText, zrandom+strings.Repeat("\x00\x00\x00\xff\xff", 60)), err: ErrFrameTooBig},
		{
			name:   "utf-8 at the limit, a character cut by it",
			cfg:    &DecoderConfig{MaxMessageBytes: 5},
			stream: compressedFrame(ws.OpText, deflateLevel("abcd€", 6, false)),
			err:    ErrInflatedTooBig,
		},

		// Invalid DEFLATE data.
		{name: "garbage", stream: compressedFrame(ws.OpText, "\xff\xff\xff\xff"), err: ErrInvalidDeflate},
		{name: "reserved block type", stream: compressedFrame(ws.OpBinary, "\x07\x00"), err: ErrInvalidDeflate},
		{name: "truncated", stream: compressedFrame(ws.OpText, zjson[:len(zjson)/2]), err: ErrInvalidDeflate},
		{name: "stored length mismatch", stream: compressedFrame(ws.OpBinary, "\x00\x05\x00\x00\x00abcde"), err: ErrInvalidDeflate},
		{name: "distance too far back", stream: compressedFrame(ws.OpBinary, farReference()), err: ErrInvalidDeflate},
		{name: "error after a good message", stream: cat(compressedFrame(ws.OpText, zjson), compressedFrame(ws.OpText, "\xff")), want: []ev{{ws.OpText, json, true}}, err: ErrInvalidDeflate},

		// UTF-8 is checked on the inflated text.
		{name: "invalid utf-8", stream: compressedFrame(ws.OpText, deflateLevel("ab\xff", 6, false)), err: ErrInvalidUTF8},
		{name: "utf-8 surrogate", stream: compressedFrame(ws.OpText, deflateLevel("a\xed\xa0\x80", 6, false)), err: ErrInvalidUTF8},
		{name: "text ends inside a character", stream: compressedFrame(ws.OpText, deflateLevel("ab\xe2\x82", 6, false)), err: ErrInvalidUTF8},
		{name: "fragmented invalid utf-8", stream: fragments(ws.OpText, deflateLevel(json+"\xc0\xaf", 6, false), 7), err: ErrInvalidUTF8},
		{name: "binary is not checked", stream: compressedFrame(ws.OpBinary, deflateLevel("\xff\xfe", 6, false)), want: []ev{{ws.OpBinary, "\xff\xfe", true}}},
		{
			// The wire bytes of a compressed text are not UTF-8 and are not
			// checked as such; only the inflated text is.
			name:   "compressed bytes are not checked",
			stream: compressedFrame(ws.OpText, deflateLevel("ok", 6, false)),
			want:   []ev{{ws.OpText, "ok", true}},
		},

		// RSV1 where RFC 7692 6.1 forbids it.
		{name: "rsv1 on a continuation", stream: cat(frame(bRsv1|byte(ws.OpText), zjson[:3]), frame(bFin|bRsv1, zjson[3:])), err: ErrMisplacedRSV1},
		{name: "rsv1 on a continuation of a plain message", stream: cat(first(ws.OpText, "a"), frame(bFin|bRsv1, "b")), err: ErrMisplacedRSV1},
		{name: "rsv1 on a ping", stream: frame(bFin|bRsv1|byte(ws.OpPing), ""), err: ErrMisplacedRSV1},
		{name: "rsv1 on a close", stream: frame(bFin|bRsv1|byte(ws.OpClose), "\x03\xe8"), err: ErrMisplacedRSV1},
		{name: "rsv1 on a ping inside a compressed message", stream: cat(frame(bRsv1|byte(ws.OpText), zjson[:3]), frame(bFin|bRsv1|byte(ws.OpPing), "")), err: ErrMisplacedRSV1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := result{events: tc.want}
			if tc.err != nil {
				want.err = tc.err
			}
			checkAllSplits(t, tc.cfg, true, tc.stream, want)
		})
	}
}

// farReference is a fixed-Huffman block whose first symbol copies from
// before the start of the message.
func farReference() string {
	// BFINAL=0, BTYPE=01, then length code 257 (3 bytes: 0000001) and
	// distance code 0 (distance 1: 00000), with nothing before it.
	w := bitWriter{}
	w.bits(0, 1)
	w.bits(1, 2)
	w.code(0b0000001, 7)
	w.code(0, 5)
	w.code(0, 7) // end of block
	return string(w.flush())
}

// bitWriter writes DEFLATE bit fields: values LSB first, Huffman codes MSB
// first.
type bitWriter struct {
	b    []byte
	acc  uint32
	nacc uint
}

func (w *bitWriter) bits(v uint32, n uint) {
	w.acc |= v << w.nacc
	w.nacc += n
	for w.nacc >= 8 {
		w.b = append(w.b, byte(w.acc))
		w.acc >>= 8
		w.nacc -= 8
	}
}

func (w *bitWriter) code(c uint32, n uint) {
	for i := int(n) - 1; i >= 0; i-- {
		w.bits(c>>uint(i)&1, 1)
	}
}

func (w *bitWriter) flush() []byte {
	if w.nacc > 0 {
		w.b = append(w.b, byte(w.acc))
	}
	return w.b
}

// fragments splits a compressed payload into frames of at most size bytes,
// RSV1 on the first.
func fragments(op ws.OpCode, z string, size int) []byte {
	var out []byte
	for i := 0; ; i += size {
		end := min(i+size, len(z))
		b0 := byte(ws.OpContinuation)
		if i == 0 {
			b0 = bRsv1 | byte(op)
		}
		if end == len(z) {
			b0 |= bFin
		}
		out = append(out, frame(b0, z[i:end])...)
		if end == len(z) {
			return out
		}
	}
}

// TestCompressedWithoutDeflate: RSV1 when permessage-deflate was not
// negotiated is a reserved bit (1002), compressed or not.
func TestCompressedWithoutDeflate(t *testing.T) {
	res, err := decodeSplit(nil, false, compressedFrame(ws.OpText, deflateLevel("x", 6, false)), nil)
	if err != nil || res.err != ErrReservedBits {
		t.Fatalf("got %v %v, want %v", res, err, ErrReservedBits)
	}
}

// TestSetDeflate: one Decoder serves connections with and without
// permessage-deflate in turn.
func TestSetDeflate(t *testing.T) {
	z := compressedFrame(ws.OpText, deflateLevel("hello", 6, false))
	var d Decoder
	d.Init(nil, false)
	for i, on := range []bool{true, false, true} {
		d.SetDeflate(on)
		_, e, err := d.Decode(append([]byte(nil), z...))
		if on && (err != nil || string(e.Payload) != "hello" || !e.Compressed) {
			t.Fatalf("%d: deflate on: %q %v", i, e.Payload, err)
		}
		if !on && err != ErrReservedBits {
			t.Fatalf("%d: deflate off: %v, want %v", i, err, ErrReservedBits)
		}
		d.Release()
	}
}

// TestBombMemory: a message of about 1 MiB that inflates to 1 GiB is
// refused as soon as it passes the limit, having cost the decoder about
// the limit in memory, not the gigabyte. The same for invalid UTF-8 at the
// start of a text bomb: inflation stops at the first bad byte.
func TestBombMemory(t *testing.T) {
	z := bomb(1024)
	for _, tc := range []struct {
		name  string
		op    ws.OpCode
		z     []byte
		limit int64
		err   *ProtocolError
		max   uint64 // bytes the decoder may allocate
	}{
		{name: "over the limit", op: ws.OpBinary, z: z, limit: 4 << 20, err: ErrInflatedTooBig, max: 16 << 20},
		{name: "invalid text first", op: ws.OpText, z: append([]byte(deflateLevel("\xff", 6, false)+"\x00\x00\xff\xff"), z...), limit: 2 << 30, err: ErrInvalidUTF8, max: 16 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := mkFrame(bFin|bRsv1|byte(tc.op), tc.z, fopt{})
			var d Decoder
			d.Init(&DecoderConfig{MaxMessageBytes: tc.limit}, true)
			defer d.Release()
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, _, err := d.Decode(in)
			runtime.ReadMemStats(&after)
			if err != tc.err {
				t.Fatalf("got %v, want %v", err, tc.err)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d KiB that inflate to 1 GiB: %v after allocating %d KiB", len(tc.z)>>10, err, alloc>>10)
			if alloc > tc.max+uint64(len(in)) {
				t.Fatalf("allocated %d bytes, more than %d", alloc, tc.max)
			}
		})
	}
}

// TestAppendCompressedFrame: the frame carries the payload compressed (RSV1
// set) when that is smaller, the plain frame otherwise; either way the
// standard library's inflater and herald's Decoder read back the payload.
// AppendHuffmanFrame's frames refer back not at all: they never take less
// than a bit per byte, which 1 MiB of zeros with back references does.
func TestAppendCompressedFrame(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	random := make([]byte, 1<<20)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	json := []byte(strings.Repeat(`{"sym":"S7","seq":99,"px":3.25,"pad":"xxxxxxxx"},`, 30000)) // ~1.5 MB
	for _, tc := range []struct {
		name       string
		payload    []byte
		compressed bool // by AppendCompressedFrame
		huffman    bool // by AppendHuffmanFrame
	}{
		{"empty", nil, false, false},
		{"one byte", []byte("a"), false, false},
		{"short text", []byte("hello"), false, false},
		{"128 B of JSON", json[:128], true, true},
		{"1 KiB of JSON", json[:1024], true, true},
		{"64 KiB of JSON", json[:64<<10], true, true},
		{"1.5 MB of JSON", json, true, true},
		{"1 MiB of zeros", make([]byte, 1<<20), true, true},
		{"1 KiB random", random[:1024], false, false},
		{"1 MiB random", random, false, false},
	} {
		for _, fn := range []struct {
			name       string
			append     func([]byte, ws.OpCode, []byte) []byte
			compressed bool
		}{
			{"AppendCompressedFrame", AppendCompressedFrame, tc.compressed},
			{"AppendSmallestFrame", AppendSmallestFrame, tc.compressed},
			{"AppendHuffmanFrame", AppendHuffmanFrame, tc.huffman},
		} {
			t.Run(fn.name+"/"+tc.name, func(t *testing.T) {
				prefix := []byte("before")
				f := fn.append(prefix, ws.OpBinary, tc.payload)
				if !bytes.Equal(f[:len(prefix)], prefix) {
					t.Fatal("the bytes before the frame changed")
				}
				f = f[len(prefix):]
				n, hl := serverFrameLen(f)
				if hl+n != len(f) || f[0]&0x0F != byte(ws.OpBinary) || f[0]&bFin == 0 || f[0]&(bRsv2|bRsv3) != 0 {
					t.Fatalf("bad frame: header % x, %d bytes of payload in %d", f[:hl], n, len(f))
				}
				body := f[hl:]
				if got := f[0]&bRsv1 != 0; got != fn.compressed {
					t.Fatalf("compressed %v, want %v (%d bytes for %d)", got, fn.compressed, n, len(tc.payload))
				}
				if fn.compressed {
					if n >= len(tc.payload) {
						t.Fatalf("compressed to %d bytes from %d", n, len(tc.payload))
					}
					if fn.name == "AppendHuffmanFrame" && n < len(tc.payload)/8 {
						t.Fatalf("%d bytes in %d: less than a bit per byte, so it refers back", len(tc.payload), n)
					}
					t.Logf("%d bytes compressed to %d (%.2f)", len(tc.payload), n, float64(n)/float64(len(tc.payload)))
					plain, err := inflateStd(body)
					if err != nil || !bytes.Equal(plain, tc.payload) {
						t.Fatalf("compress/flate reads back %d bytes (%v), want %d", len(plain), err, len(tc.payload))
					}
				} else if !bytes.Equal(body, tc.payload) {
					t.Fatal("plain frame does not carry the payload")
				}
				var d Decoder
				d.Init(&DecoderConfig{MaxMessageBytes: 4 << 20}, true)
				defer d.Release()
				_, e, err := d.Decode(maskServerFrame(f, [4]byte{1, 2, 3, 4}))
				if err != nil || !bytes.Equal(e.Payload, tc.payload) || e.Compressed != fn.compressed {
					t.Fatalf("Decoder reads back %d bytes, compressed %v (%v)", len(e.Payload), e.Compressed, err)
				}
			})
		}
	}
}

// serverFrameLen returns the payload length and the header length of a
// server frame.
func serverFrameLen(f []byte) (n, hl int) {
	switch l := f[1] & 0x7F; l {
	case 126:
		return int(binary.BigEndian.Uint16(f[2:])), 4
	case 127:
		return int(binary.BigEndian.Uint64(f[2:])), 10
	default:
		return int(l), 2
	}
}

// TestDeflateAllocs: compressing into a buffer that has room, and
// inflating a message, allocate nothing once the pools are warm.
func TestDeflateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	payload := []byte(strings.Repeat(`{"sym":"S1","seq":1234,"px":101.25},`, 30))
	dst := make([]byte, 0, 2*len(payload))
	if a := testing.AllocsPerRun(100, func() { AppendCompressedFrame(dst, ws.OpText, payload) }); a != 0 {
		t.Errorf("AppendCompressedFrame: %v allocations", a)
	}
	in := maskServerFrame(AppendCompressedFrame(nil, ws.OpText, payload), [4]byte{5, 6, 7, 8})
	buf := make([]byte, len(in))
	var d Decoder
	d.Init(nil, true)
	defer d.Release()
	if a := testing.AllocsPerRun(100, func() {
		copy(buf, in)
		if _, e, err := d.Decode(buf); err != nil || len(e.Payload) != len(payload) {
			t.Fatalf("decode: %v", err)
		}
	}); a != 0 {
		t.Errorf("inflating Decode: %v allocations", a)
	}
}

// TestDeflateErrors: the new errors name their rule and carry the right
// close code.
func TestDeflateErrors(t *testing.T) {
	for e, code := range map[*ProtocolError]ws.StatusCode{
		ErrInflatedTooBig: ws.StatusMessageTooBig,
		ErrInvalidDeflate: ws.StatusInvalidFramePayloadData,
	} {
		var pe *ProtocolError
		if !errors.As(fmt.Errorf("wrapped: %w", e), &pe) || pe.Code != code || len(pe.Reason) > 123 {
			t.Errorf("%v: code %d, want %d", e, pe.Code, code)
		}
	}
}

// TestCompressedFrameBound: AppendCompressedFrame and AppendHuffmanFrame
// stay within the bound documented, for data that compresses and data that
// does not.
func TestCompressedFrameBound(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, 127, 128, 1000, 65535, 65536, 1 << 20} {
		for _, random := range []bool{false, true} {
			p := make([]byte, n)
			if random {
				for i := range p {
					p[i] = byte(r.Uint32())
				}
			}
			for name, fn := range map[string]func([]byte, ws.OpCode, []byte) []byte{
				"AppendCompressedFrame": AppendCompressedFrame,
				"AppendSmallestFrame":   AppendSmallestFrame,
				"AppendHuffmanFrame":    AppendHuffmanFrame,
			} {
				dst := make([]byte, 3, 3+CompressedFrameBound(n))
				if f := fn(dst, ws.OpBinary, p); len(f)-3 > CompressedFrameBound(n) || &f[0] != &dst[0] {
					t.Fatalf("%s, %d bytes (random %v): %d appended, bound %d, reallocated %v", name, n, random, len(f)-3, CompressedFrameBound(n), &f[0] != &dst[0])
				}
			}
		}
	}
}

// TestSmallestFrameIsSmaller: AppendSmallestFrame's frames of JSON are
// smaller than AppendCompressedFrame's, or it would not be worth its CPU.
func TestSmallestFrameIsSmaller(t *testing.T) {
	var json []byte
	for i := range 40 {
		json = fmt.Appendf(json, `{"px":%d.%02d,"qty":%d},`, 100+i*7%13, i*37%100, i*53%1000)
	}
	fast, smallest := AppendCompressedFrame(nil, ws.OpText, json), AppendSmallestFrame(nil, ws.OpText, json)
	if len(smallest) >= len(fast) {
		t.Fatalf("%d bytes of JSON: smallest %d, fast %d", len(json), len(smallest), len(fast))
	}
	t.Logf("%d bytes of JSON: smallest %d, fast %d", len(json), len(smallest), len(fast))
}

// TestSmallestFrameOfRepeatedBytes pins the size of a long run of one byte
// at DEFLATE's best level. klauspost/compress before v1.20 spent about a
// second on 64 KiB of zeros there and wrote 8 KiB instead of a few dozen
// bytes: a CPU cost any client could make the hub pay by publishing such a
// message. A size, not a time, so that the check does not depend on the
// machine's speed; the fixed versions also ended the slowness.
func TestSmallestFrameOfRepeatedBytes(t *testing.T) {
	for _, b := range []byte{0, 'a', 0xff} {
		payload := bytes.Repeat([]byte{b}, 64<<10)
		frame := AppendSmallestFrame(nil, ws.OpBinary, payload)
		if len(frame) > 512 {
			t.Errorf("64 KiB of %#x: a %d-byte frame, want at most 512", b, len(frame))
		}
	}
}
