package codec

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gobwas/ws"

	"github.com/heraldws/herald/pool"
)

var encodeLengths = []int{0, 1, 125, 126, 127, 1000, 65535, 65536, 70000, 1 << 20}

func TestHeaderLen(t *testing.T) {
	for n, want := range map[int]int{0: 2, 125: 2, 126: 4, 65535: 4, 65536: 10, 1 << 40: 10} {
		if got := HeaderLen(n); got != want {
			t.Errorf("HeaderLen(%d) = %d, want %d", n, got, want)
		}
	}
}

// The headers match what gobwas/ws writes for the same unmasked header.
func TestAppendHeaderMatchesWS(t *testing.T) {
	for _, n := range encodeLengths {
		for _, op := range []ws.OpCode{ws.OpContinuation, ws.OpText, ws.OpBinary, ws.OpClose, ws.OpPing, ws.OpPong} {
			for _, fin := range []bool{false, true} {
				for _, rsv1 := range []bool{false, true} {
					var want bytes.Buffer
					h := ws.Header{Fin: fin, Rsv: ws.Rsv(rsv1, false, false), OpCode: op, Length: int64(n)}
					if err := ws.WriteHeader(&want, h); err != nil {
						t.Fatal(err)
					}
					got := AppendHeader([]byte("prefix"), op, fin, rsv1, n)
					if !bytes.Equal(got[6:], want.Bytes()) || string(got[:6]) != "prefix" {
						t.Fatalf("%+v: % x, want % x", h, got[6:], want.Bytes())
					}
					var arr [MaxHeaderLen]byte
					k := PutHeader(arr[:], op, fin, rsv1, n)
					if k != HeaderLen(n) || !bytes.Equal(arr[:k], want.Bytes()) {
						t.Fatalf("PutHeader %+v: % x, want % x", h, arr[:k], want.Bytes())
					}
				}
			}
		}
	}
}

// Frames from the encoder, masked as a client would, decode to what went in.
func TestEncodeRoundTrip(t *testing.T) {
	payload := []byte(strings.Repeat("round trip ✓ ", 1<<17))
	for _, n := range encodeLengths {
		p := payload[:n]
		for len(p) > 0 && !utf8Complete(p) {
			p = p[:len(p)-1]
		}
		ops := []ws.OpCode{ws.OpText, ws.OpBinary}
		if len(p) <= 125 {
			ops = append(ops, ws.OpPing, ws.OpPong)
		}
		for _, op := range ops {
			f := AppendFrame(nil, op, p)
			if len(f) != HeaderLen(len(p))+len(p) {
				t.Fatalf("frame of %d bytes for %d", len(f), len(p))
			}
			b := EncodeFrame(op, p)
			if !bytes.Equal(b.B, f) {
				t.Fatalf("EncodeFrame differs from AppendFrame")
			}
			pool.Put(b)
			in := maskServerFrame(f, [4]byte{0xde, 0xad, 0xbe, 0xef})
			cfg := &DecoderConfig{MaxMessageBytes: 2 << 20}
			for _, cuts := range [][]int{nil, {1}, {len(in) / 2}, {len(in) - 1}} {
				res, err := decodeSplit(cfg, false, in, cuts)
				if err != nil || res.err != nil || len(res.events) != 1 {
					t.Fatalf("op %d len %d: %v %v", op, len(p), res.err, err)
				}
				if e := res.events[0]; e.Op != op || e.Payload != string(p) || e.Compressed {
					t.Fatalf("op %d len %d: got op %d, %d bytes", op, len(p), e.Op, len(e.Payload))
				}
			}
		}
	}

	// A compressed message in two fragments: RSV1 on the first only.
	z := deflateStd("abcde")
	f := AppendHeader(nil, ws.OpText, false, true, 3)
	f = append(f, z[:3]...)
	mid := len(f)
	f = AppendHeader(f, ws.OpContinuation, true, false, len(z)-3)
	f = append(f, z[3:]...)
	in := cat(maskServerFrame(f[:mid], [4]byte{9, 8, 7, 6}), maskServerFrame(f[mid:], [4]byte{1, 2, 3, 4}))
	res, err := decodeSplit(nil, true, in, nil)
	if err != nil || res.err != nil || len(res.events) != 1 || res.events[0] != (ev{ws.OpText, "abcde", true}) {
		t.Fatalf("compressed: %v %v", res, err)
	}
}

func utf8Complete(p []byte) bool {
	s, ok := ValidateUTF8(UTF8Accept, p)
	return ok && s == UTF8Accept
}

func TestEncodeAllocs(t *testing.T) {
	payload := make([]byte, 1000)
	dst := make([]byte, 0, HeaderLen(len(payload))+len(payload))
	if a := testing.AllocsPerRun(100, func() { AppendFrame(dst, ws.OpBinary, payload) }); a != 0 {
		t.Errorf("AppendFrame: %v allocations", a)
	}
	if a := testing.AllocsPerRun(100, func() { AppendHeader(dst, ws.OpText, true, true, 70000) }); a != 0 {
		t.Errorf("AppendHeader: %v allocations", a)
	}
	var h [MaxHeaderLen]byte
	if a := testing.AllocsPerRun(100, func() { PutHeader(h[:], ws.OpText, true, false, 1<<20) }); a != 0 {
		t.Errorf("PutHeader: %v allocations", a)
	}
}
