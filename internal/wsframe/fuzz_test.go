package wsframe

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// FuzzParseHeader feeds arbitrary bytes to the server-frame parser as a
// stream of frames, the way a client reads them. Whatever the bytes:
// ParseHeader never panics; a header it accepts is exactly the strict,
// minimal encoding of what it reports; every shorter prefix of that header
// is incomplete or fails the same way; and ReadFrame over a reader that
// hands out one byte at a time agrees with it frame by frame.
func FuzzParseHeader(f *testing.F) {
	f.Add(serverFrame(true, OpText, []byte("hello")))
	f.Add(append(serverFrame(false, OpText, []byte("frag")), serverFrame(true, OpContinuation, []byte("ment"))...))
	f.Add(serverFrame(true, OpBinary, make([]byte, 300)))
	f.Add(serverFrame(true, OpClose, []byte{0x03, 0xE8, 'b', 'y', 'e'}))
	f.Add([]byte{0x89, 0x00, 0x8A, 0x01, 'x'})
	f.Add([]byte{0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0})
	f.Add([]byte{0x81, 0x85, 1, 2, 3, 4, 'a', 'b', 'c', 'd', 'e'})
	f.Add([]byte{0x82, 126, 0, 5, 'a', 'b', 'c', 'd', 'e'})
	f.Add([]byte{0x09, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		const max = 1 << 20
		r := bufio.NewReaderSize(&oneByteReader{b: append([]byte(nil), b...)}, 16)
		rest := b
		for {
			h, ok, err := ParseHeader(rest)
			checkPrefixes(t, rest, h, ok, err)
			rh, p, rerr := ReadFrame(r, nil, max)
			switch {
			case err != nil:
				if !errors.Is(rerr, err) || !IsProtocolError(rerr) {
					t.Fatalf("ParseHeader: %v; ReadFrame: %v", err, rerr)
				}
				return
			case !ok:
				if rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
					t.Fatalf("incomplete header; ReadFrame: %v", rerr)
				}
				return
			case h.Length > max:
				if !errors.Is(rerr, ErrTooBig) {
					t.Fatalf("header %+v over the limit; ReadFrame: %v", h, rerr)
				}
				return
			case int64(len(rest)-h.Size) < h.Length:
				if !errors.Is(rerr, io.ErrUnexpectedEOF) {
					t.Fatalf("truncated payload; ReadFrame: %v", rerr)
				}
				return
			}
			if rerr != nil || rh != h {
				t.Fatalf("ParseHeader %+v; ReadFrame %+v %v", h, rh, rerr)
			}
			end := h.Size + int(h.Length)
			if !bytes.Equal(p, rest[h.Size:end]) {
				t.Fatalf("ReadFrame payload differs")
			}
			rest = rest[end:]
			if len(rest) == 0 {
				return
			}
		}
	})
}

// checkPrefixes checks one ParseHeader answer against the encoding rules.
func checkPrefixes(t *testing.T, b []byte, h Header, ok bool, err error) {
	t.Helper()
	if err != nil && !IsProtocolError(err) {
		t.Fatalf("error %v is not a ProtocolError", err)
	}
	if ok {
		if err != nil || h.Size > len(b) || h.Length < 0 {
			t.Fatalf("ok with %+v, err %v, %d bytes", h, err, len(b))
		}
		if h.Op >= 8 && (!h.Fin || h.Length > MaxControlPayload) || h.Op > OpBinary && h.Op < OpClose || h.Op > OpPong {
			t.Fatalf("accepted %+v", h)
		}
		if enc := encodeHeader(h); !bytes.Equal(enc, b[:h.Size]) {
			t.Fatalf("accepted header % x, the strict encoding of %+v is % x", b[:h.Size], h, enc)
		}
	}
	decided := len(b)
	if ok {
		decided = h.Size
	}
	for i := 0; i < decided && i < MaxServerHeader; i++ {
		_, pok, perr := ParseHeader(b[:i])
		if pok || perr != nil && perr != err {
			t.Fatalf("prefix %d of % x: ok=%v err=%v; whole: ok=%v err=%v", i, b[:decided], pok, perr, ok, err)
		}
	}
}

// encodeHeader is the one header a server may send for h.
func encodeHeader(h Header) []byte {
	b0 := h.Op
	if h.Fin {
		b0 |= 0x80
	}
	switch n := h.Length; {
	case n <= 125:
		return []byte{b0, byte(n)}
	case n <= 0xFFFF:
		return []byte{b0, 126, byte(n >> 8), byte(n)}
	default:
		return binary.BigEndian.AppendUint64([]byte{b0, 127}, uint64(n))
	}
}
