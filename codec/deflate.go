package codec

import (
	"bytes"
	"io"
	"slices"
	"sync"

	"github.com/gobwas/ws"
	"github.com/klauspost/compress/flate"
	"github.com/valyala/bytebufferpool"

	"github.com/heraldws/herald/pool"
)

// permessage-deflate (RFC 7692) without context takeover on either side:
// every message is compressed, and inflated, on its own. So nothing is kept
// between messages: a compressor is taken from a pool for the time it takes
// to compress one message, and a decompressor for the time it takes to
// inflate one complete message (in one Decode call). No connection ever
// holds either.
//
// The flate implementation is klauspost/compress's, chosen by the
// benchmarks in deflate_bench_test.go (figures in the README): at
// BestSpeed it compresses JSON faster than compress/flate and a little
// smaller, its compressor is less than half the size of compress/flate's
// (1.2 MB), and it inflates without compress/flate's allocations per
// dynamic block.

// deflateTail is what the receiver appends to a compressed payload before
// inflating it (RFC 7692 7.2.2): the empty stored block the sender removed,
// then an empty final block, so that a complete message ends the stream
// cleanly (io.EOF) and one cut short is an error.
var deflateTail = [...]byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

// compressedLimit is the wire limit of a compressed frame or message whose
// inflated limit is n. DEFLATE expands data it cannot compress by 5 bytes
// per 64 KiB stored block, so a message that inflates to n bytes may take a
// little more than n on the wire; beyond this it is refused from its header
// like any other (the inflated size is checked while inflating).
func compressedLimit(n int64) int64 {
	return n + n>>12 + 256
}

// inflater is a pooled decompressor with its input reader (a *bytes.Reader,
// so that the decompressor takes its fastest path) and a buffer that small
// messages are inflated into before they are copied into a pooled buffer
// of exactly their size (the pool sizes its buffers by what it is given
// back, so exact sizes keep it from dropping them).
type inflater struct {
	src   bytes.Reader
	fr    io.ReadCloser
	small [smallInflate]byte
}

// smallInflate is the largest message inflated into inflater.small.
const smallInflate = 4 << 10

var inflaters = sync.Pool{New: func() any {
	f := new(inflater)
	f.fr = flate.NewReader(&f.src)
	return f
}}

// inflate replaces the payload p of the compressed message with opcode op
// that is completing by its inflated bytes, held in a pooled buffer that d owns
// until the next call (d.msg). p is d.msg's bytes when the message was
// buffered (d.msg has room for deflateTail after them), else a slice of the
// caller's input.
//
// The inflated size is bounded while inflating: inflation stops as soon as
// it passes MaxMessageBytes (ErrInflatedTooBig), so a small message that
// would inflate to gigabytes costs at most the limit. Text is checked for
// UTF-8 as it comes out of the decompressor, and inflation stops at the
// first byte that cannot be valid (ErrInvalidUTF8). Data that is not valid
// DEFLATE, or ends in the middle of a block, is ErrInvalidDeflate.
func (d *Decoder) inflate(p []byte, op ws.OpCode) ([]byte, *ProtocolError) {
	comp := d.msg
	d.msg = nil
	if len(p) == 0 {
		// No DEFLATE stream at all (a compressor that flushes nothing
		// writes one byte, 0x00): the clients that send it mean an empty
		// message, and that is what it is taken for.
		pool.Put(comp)
		return nil, nil
	}
	if comp != nil {
		comp.B = append(comp.B, deflateTail[:]...) // room was left by msgSpace
	} else {
		comp = pool.Get(len(p) + len(deflateTail))
		comp.B = append(append(comp.B, p...), deflateTail[:]...)
	}
	_, maxMsg := d.cfg.limits()
	out, err := inflateInto(comp.B, maxMsg, op == ws.OpText)
	pool.Put(comp)
	if err != nil {
		pool.Put(out)
		return nil, err
	}
	d.msg = out
	d.flags |= flagPutMsg
	return out.B, nil
}

// inflateInto inflates in (a compressed payload followed by deflateTail)
// into a pooled buffer, up to maxBytes, checking UTF-8 if text. The buffer,
// if any, is returned even with an error, for the caller to put back.
func inflateInto(in []byte, maxBytes int64, text bool) (*bytebufferpool.ByteBuffer, *ProtocolError) {
	f := inflaters.Get().(*inflater)
	defer func() {
		f.src.Reset(nil) // keep no reference to the input
		inflaters.Put(f)
	}()
	f.src.Reset(in)
	if err := f.fr.(flate.Resetter).Reset(&f.src, nil); err != nil {
		return nil, ErrInvalidDeflate
	}
	// One byte more than allowed tells a message that is too big.
	limit := int(min(maxBytes, int64(maxInt)-1) + 1)
	// dst is f.small until the message outgrows it, then out's bytes.
	dst := f.small[:0:min(len(f.small), limit)]
	var out *bytebufferpool.ByteBuffer
	state := UTF8Accept
	for {
		if len(dst) == cap(dst) {
			grown := pool.Get(min(limit, max(2*cap(dst), 4*len(in))))
			grown.B = append(grown.B, dst...)
			pool.Put(out)
			out = grown
			dst = grown.B[:len(dst):min(cap(grown.B), limit)]
		}
		n, err := f.fr.Read(dst[len(dst):cap(dst)])
		chunk := dst[len(dst) : len(dst)+n]
		dst = dst[:len(dst)+n]
		over := len(dst) - (limit - 1)
		if text {
			valid := chunk
			if over > 0 {
				valid = chunk[:len(chunk)-over]
			}
			var ok bool
			if state, ok = ValidateUTF8(state, valid); !ok {
				return out, ErrInvalidUTF8
			}
		}
		if over > 0 {
			return out, ErrInflatedTooBig
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return out, ErrInvalidDeflate
		}
	}
	if state != UTF8Accept {
		return out, ErrInvalidUTF8 // the text ends inside a character
	}
	if out == nil {
		out = pool.Get(len(dst))
		out.B = append(out.B, dst...)
	} else {
		out.B = dst
	}
	return out, nil
}

const maxInt = int(^uint(0) >> 1)

// appendWriter is the io.Writer a compressor writes a frame through: it
// appends to b.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// CompressedFrameBound is the most AppendCompressedFrame appends for a
// payload of n bytes: the longest header, and data that does not compress
// (DEFLATE's stored blocks) with its overhead. With that much room left in
// dst, AppendCompressedFrame does not allocate.
func CompressedFrameBound(n int) int {
	return MaxHeaderLen + n + n>>10 + 16
}

// deflater is a pooled compressor with the writer it writes through. A
// compressor is half a megabyte, so it is shared: taken from the pool for
// one message and put back, never kept by a connection.
type deflater struct {
	w  appendWriter
	fw *flate.Writer
}

var deflaters = newDeflaterPool(flate.BestSpeed)

// smallestDeflaters compress as small as DEFLATE goes, at several times
// the CPU of BestSpeed: for a message compressed once for many sockets.
var smallestDeflaters = newDeflaterPool(flate.BestCompression)

// huffmanDeflaters compress with Huffman codes only: no back references, so
// their output fits any LZ77 window.
var huffmanDeflaters = newDeflaterPool(flate.HuffmanOnly)

func newDeflaterPool(level int) *sync.Pool {
	return &sync.Pool{New: func() any {
		z := new(deflater)
		z.fw, _ = flate.NewWriter(&z.w, level) // a valid level never fails
		return z
	}}
}

// AppendCompressedFrame appends a whole server frame (FIN set) carrying
// payload compressed for permessage-deflate to dst and returns the
// extended slice. The message is compressed on its own, without context
// takeover (what herald always negotiates), with RSV1 set on the frame.
// If compressing does not make the payload smaller, the frame is the plain
// one AppendFrame appends instead. It allocates only if dst lacks capacity
// and keeps no state.
//
// Compression costs microseconds per kilobyte (see the package's
// benchmarks): a server compresses a broadcast once for all its
// subscribers, and leaves small messages uncompressed.
func AppendCompressedFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	return appendDeflated(deflaters, dst, op, payload)
}

// AppendSmallestFrame is AppendCompressedFrame at DEFLATE's best
// compression, for a message compressed once and written to many
// connections (the broadcast hub's compressed twin): its CPU is paid once,
// its bytes on every socket. A 1 KiB JSON order book comes out about 6%
// smaller than with AppendCompressedFrame (399 against 424 bytes) for
// about three times the compression time.
func AppendSmallestFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	return appendDeflated(smallestDeflaters, dst, op, payload)
}

// AppendHuffmanFrame is AppendCompressedFrame for a peer that limited the
// server's LZ77 window (server_max_window_bits below 15, RFC 7692
// 7.1.2.1): the payload is compressed with Huffman codes only, which never
// refer back, so the frame fits any window. It saves less: about a third
// of JSON, against two thirds or more with back references.
func AppendHuffmanFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	return appendDeflated(huffmanDeflaters, dst, op, payload)
}

// appendDeflated appends the frame of payload compressed by a compressor
// from pool (see AppendCompressedFrame).
func appendDeflated(pool *sync.Pool, dst []byte, op ws.OpCode, payload []byte) []byte {
	start := len(dst)
	dst = slices.Grow(dst, CompressedFrameBound(len(payload)))
	dst = dst[:start+MaxHeaderLen]
	z := pool.Get().(*deflater)
	z.w.b = dst
	z.fw.Reset(&z.w)           // a new message: no context taken over
	_, _ = z.fw.Write(payload) // appendWriter never fails
	_ = z.fw.Flush()
	dst = z.w.b
	z.w.b = nil
	pool.Put(z)
	// The stream ends with the empty stored block of a flush, 00 00 ff ff,
	// which RFC 7692 7.2.1 has the sender remove.
	body := start + MaxHeaderLen
	n := len(dst) - 4 - body
	if n >= len(payload) {
		return AppendFrame(dst[:start], op, payload)
	}
	// The header goes right before the compressed bytes; then the frame
	// moves down to start.
	hl := HeaderLen(n)
	PutHeader(dst[body-hl:], op, true, true, n)
	copy(dst[start:], dst[body-hl:body+n])
	return dst[:start+hl+n]
}
