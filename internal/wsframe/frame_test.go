package wsframe

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// unmaskClient decodes a client frame as a server would: header fields and
// the unmasked payload.
func unmaskClient(t *testing.T, f []byte) (b0 byte, masked bool, n uint64, payload []byte) {
	t.Helper()
	b0, masked = f[0], f[1]&0x80 != 0
	n = uint64(f[1] & 0x7F)
	off := 2
	switch n {
	case 126:
		n, off = uint64(binary.BigEndian.Uint16(f[2:])), 4
	case 127:
		n, off = binary.BigEndian.Uint64(f[2:]), 10
	}
	if !masked {
		return b0, false, n, f[off:]
	}
	key := f[off : off+4]
	payload = append([]byte(nil), f[off+4:]...)
	for i := range payload {
		payload[i] ^= key[i%4]
	}
	return b0, true, n, payload
}

func TestAppendFrameMasksAndRoundTrips(t *testing.T) {
	for _, n := range []int{0, 1, 7, 125, 126, 1000, 65535, 65536, 70000} {
		p := bytes.Repeat([]byte("abcdefghij"), n/10+1)[:n]
		key := uint32(0xA1B2C3D4)
		f := AppendFrame(nil, OpBinary, p, key)
		b0, masked, l, got := unmaskClient(t, f)
		if b0 != 0x82 || !masked {
			t.Fatalf("n=%d: header % x: want FIN+binary, masked", n, f[:2])
		}
		if l != uint64(n) {
			t.Fatalf("length %d, want %d", l, n)
		}
		if !bytes.Equal(got, p) {
			t.Fatalf("n=%d: unmasked payload differs", n)
		}
		if n > 8 && bytes.Contains(f, p) {
			t.Fatalf("n=%d: payload not masked", n)
		}
		if !bytes.Equal(New(OpBinary, p).Append(nil, key), f) {
			t.Fatalf("n=%d: Frame.Append and AppendFrame differ", n)
		}
	}
	// The key's low byte masks the first payload byte.
	f := AppendFrame(nil, OpText, []byte{0, 0, 0, 0}, 0x04030201)
	if !bytes.Equal(f[2:], []byte{1, 2, 3, 4, 1, 2, 3, 4}) {
		t.Fatalf("key and masked zeros: % x", f[2:])
	}
}

func TestFrameModifiers(t *testing.T) {
	p := []byte("hello")
	cases := []struct {
		name   string
		f      Frame
		header []byte // the bytes before the mask key (or payload when unmasked)
	}{
		{"plain", New(OpText, p), []byte{0x81, 0x85}},
		{"no fin", New(OpText, p).NoFin(), []byte{0x01, 0x85}},
		{"continuation", New(OpContinuation, p), []byte{0x80, 0x85}},
		{"rsv1", New(OpText, p).WithRSV(RSV1), []byte{0xC1, 0x85}},
		{"rsv all", New(OpBinary, p).WithRSV(RSV1 | RSV2 | RSV3), []byte{0xF2, 0x85}},
		{"reserved opcode", New(0xB, p), []byte{0x8B, 0x85}},
		{"unmasked", New(OpText, p).Unmasked(), []byte{0x81, 0x05}},
		{"16-bit for 5", New(OpText, p).LengthField(2), []byte{0x81, 0xFE, 0, 5}},
		{"64-bit for 5", New(OpText, p).LengthField(8), []byte{0x81, 0xFF, 0, 0, 0, 0, 0, 0, 0, 5}},
		{"declared", New(OpBinary, p).Declare(1 << 20), []byte{0x82, 0xFF, 0, 0, 0, 0, 0, 0x10, 0, 0}},
		{"lying short", New(OpBinary, p).Declare(2), []byte{0x82, 0x82}},
		{"top bit", New(OpText, nil).Declare(1<<63 | 5), []byte{0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 5}},
	}
	for _, tc := range cases {
		b := tc.f.Append(nil, 0x01020304)
		if !bytes.HasPrefix(b, tc.header) {
			t.Errorf("%s: % x, want header % x", tc.name, b, tc.header)
			continue
		}
		rest := b[len(tc.header):]
		if tc.f.unmasked {
			if !bytes.Equal(rest, p) {
				t.Errorf("%s: payload % x", tc.name, rest)
			}
			continue
		}
		if !bytes.Equal(rest[:4], []byte{4, 3, 2, 1}) {
			t.Errorf("%s: mask key % x", tc.name, rest[:4])
		}
		got := append([]byte(nil), rest[4:]...)
		Mask(got, 0x01020304)
		if !bytes.Equal(got, tc.f.Payload()) {
			t.Errorf("%s: payload %q", tc.name, got)
		}
	}
	if New(OpText, p).Declare(100).Complete() || !New(OpText, p).Declare(5).Complete() || !New(OpText, p).Complete() {
		t.Error("Complete is wrong")
	}
	if f := New(OpPing, p).NoFin(); f.Final() || f.Op() != OpPing {
		t.Error("accessors")
	}
	for _, bad := range []Frame{New(OpText, make([]byte, 126)).LengthField(1), New(OpText, nil).Declare(1 << 16).LengthField(2), New(OpText, nil).LengthField(3)} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("no panic for an impossible length field")
				}
			}()
			bad.Append(nil, 1)
		}()
	}
	if b := New(OpText, p).Bytes(); len(b) != 2+4+5 || bytes.Equal(b[2:6], []byte{0, 0, 0, 0}) {
		t.Errorf("Bytes: % x", b)
	}
}

func TestAppendCloseAndPong(t *testing.T) {
	_, _, _, body := unmaskClient(t, AppendClose(nil, 1001, 7))
	if CloseCode(body) != 1001 || len(body) != 2 {
		t.Fatalf("close body % x", body)
	}
	f := AppendClose(nil, 0, 7)
	if f[0] != 0x88 || f[1] != 0x80 {
		t.Fatalf("empty close % x", f)
	}
	_, _, _, body = unmaskClient(t, AppendCloseReply(nil, AppendClosePayload(nil, 4001, "reason"), 7))
	if CloseCode(body) != 4001 || len(body) != 2 {
		t.Fatalf("close reply body % x", body)
	}
	if f := AppendCloseReply(nil, nil, 7); f[1] != 0x80 {
		t.Fatalf("reply to an empty close % x", f)
	}
	if CloseCode(nil) != 1005 {
		t.Fatal("CloseCode of an empty body")
	}
	if p := AppendClosePayload(nil, 4000, "bye"); !bytes.Equal(p, []byte{0x0F, 0xA0, 'b', 'y', 'e'}) {
		t.Fatalf("close payload % x", p)
	}
	b0, _, _, got := unmaskClient(t, AppendPong(nil, []byte("ping data"), 99))
	if b0 != 0x8A || string(got) != "ping data" {
		t.Fatalf("pong %#x %q", b0, got)
	}
}

// serverFrame encodes a frame as a server sends it: unmasked, minimal.
func serverFrame(fin bool, op byte, p []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	f := []byte{b0}
	switch n := len(p); {
	case n <= 125:
		f = append(f, byte(n))
	case n <= 0xFFFF:
		f = append(f, 126, byte(n>>8), byte(n))
	default:
		f = append(f, 127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	return append(f, p...)
}

func TestParseHeaderSplitsAndErrors(t *testing.T) {
	f := serverFrame(true, OpText, bytes.Repeat([]byte("x"), 300))
	for i := 0; i < 4; i++ {
		_, ok, err := ParseHeader(f[:i])
		if ok || err != nil {
			t.Fatalf("prefix %d: ok=%v err=%v, want incomplete", i, ok, err)
		}
	}
	h, ok, err := ParseHeader(f)
	if !ok || err != nil || h.Length != 300 || h.Size != 4 || !h.Fin || h.Op != OpText {
		t.Fatalf("header %+v ok=%v err=%v", h, ok, err)
	}
	h, ok, err = ParseHeader(serverFrame(false, OpBinary, make([]byte, 70000)))
	if !ok || err != nil || h.Length != 70000 || h.Size != 10 || h.Fin {
		t.Fatalf("64-bit header %+v ok=%v err=%v", h, ok, err)
	}
	bad := map[string]struct {
		b   []byte
		err error
	}{
		"masked":        {[]byte{0x81, 0x80 | 1}, ErrMasked},
		"rsv":           {[]byte{0xC1, 1}, ErrReserved},
		"opcode":        {[]byte{0x83, 0}, ErrOpcode},
		"long control":  {[]byte{0x89, 126, 0, 200}, ErrControl},
		"fragmented":    {[]byte{0x09, 0}, ErrControl},
		"non-minimal16": {[]byte{0x82, 126, 0, 5}, ErrLength},
		"non-minimal64": {[]byte{0x82, 127, 0, 0, 0, 0, 0, 0, 0, 5}, ErrLength},
		"top bit":       {[]byte{0x82, 127, 0x80, 0, 0, 0, 0, 1, 0, 0}, ErrLength},
	}
	for name, tc := range bad {
		if _, _, err := ParseHeader(tc.b); err != tc.err {
			t.Errorf("%s: err %v, want %v", name, err, tc.err)
		}
		_, err := ReadHeader(bufio.NewReader(bytes.NewReader(tc.b)), 1<<30)
		if !errors.Is(err, tc.err) || !IsProtocolError(err) {
			t.Errorf("%s: ReadHeader: %v, want %v", name, err, tc.err)
		}
	}
}

func TestReadFrame(t *testing.T) {
	var stream []byte
	want := []struct {
		fin bool
		op  byte
		p   []byte
	}{
		{false, OpText, []byte("frag")},
		{true, OpPing, []byte("ping")},
		{true, OpContinuation, []byte("ment")},
		{true, OpBinary, bytes.Repeat([]byte{7}, 70000)},
		{true, OpClose, AppendClosePayload(nil, 1000, "bye")},
	}
	for _, w := range want {
		stream = append(stream, serverFrame(w.fin, w.op, w.p)...)
	}
	// One byte per Read: every header and payload split everywhere.
	r := bufio.NewReader(&oneByteReader{b: stream})
	buf := make([]byte, 0, 16)
	for i, w := range want {
		h, p, err := ReadFrame(r, buf, 1<<20)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if h.Fin != w.fin || h.Op != w.op || !bytes.Equal(p, w.p) {
			t.Fatalf("frame %d: %+v %d bytes", i, h, len(p))
		}
	}
	if _, _, err := ReadFrame(r, nil, 1<<20); err != io.EOF {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}
	for _, cut := range []int{1, 3, 9} {
		_, _, err := ReadFrame(bufio.NewReader(bytes.NewReader(serverFrame(true, OpBinary, make([]byte, 70000))[:cut])), nil, 1<<20)
		if err != io.ErrUnexpectedEOF {
			t.Errorf("header cut at %d: %v, want io.ErrUnexpectedEOF", cut, err)
		}
	}
	_, _, err := ReadFrame(bufio.NewReader(bytes.NewReader(serverFrame(true, OpBinary, make([]byte, 300))[:100])), nil, 1<<20)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("payload cut: %v", err)
	}
	_, _, err = ReadFrame(bufio.NewReader(bytes.NewReader(serverFrame(true, OpBinary, make([]byte, 300)))), nil, 299)
	if !errors.Is(err, ErrTooBig) {
		t.Errorf("over the limit: %v", err)
	}
}

type oneByteReader struct{ b []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.b[0]
	r.b = r.b[1:]
	return 1, nil
}

func TestCheckClose(t *testing.T) {
	for _, ok := range [][]byte{nil, {0x03, 0xE8}, AppendClosePayload(nil, 4999, "ünï"), AppendClosePayload(nil, 3000, "")} {
		if err := CheckClose(ok); err != nil {
			t.Errorf("% x: %v", ok, err)
		}
	}
	for _, bad := range [][]byte{{0x03}, AppendClosePayload(nil, 1005, ""), AppendClosePayload(nil, 999, ""), AppendClosePayload(nil, 5000, ""), AppendClosePayload(nil, 1000, "\xff")} {
		if err := CheckClose(bad); !errors.Is(err, ErrClose) {
			t.Errorf("% x: %v", bad, err)
		}
	}
	for code, want := range map[int]bool{999: false, 1000: true, 1003: true, 1004: false, 1006: false, 1007: true, 1014: true, 1015: false, 2999: false, 3000: true, 4999: true, 5000: false} {
		if ValidCloseCode(code) != want {
			t.Errorf("ValidCloseCode(%d) = %v", code, !want)
		}
	}
}

func TestHandshake(t *testing.T) {
	// RFC 6455's example key and answer.
	if a := Accept("dGhlIHNhbXBsZSBub25jZQ=="); a != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("Accept = %q", a)
	}
	if long := strings.Repeat("k", 200); len(Accept(long)) != acceptLen {
		t.Fatal("Accept of a long key")
	}
	if k := NewRequestKey(); len(k) != 24 || k == NewRequestKey() {
		t.Fatalf("NewRequestKey %q", k)
	}
	if Key(7, 0) == Key(7, 1) || Key(7, 0) == Key(8, 0) || Key(7, 0) != Key(7, 0) {
		t.Fatal("Key is not a function of its inputs")
	}
	req := string(AppendRequest(nil, "h:1", "/p?q=1", "KEY", "Origin: http://h:1", "X-A: b"))
	wantReq := "GET /p?q=1 HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: KEY\r\n" +
		"Sec-WebSocket-Version: 13\r\nOrigin: http://h:1\r\nX-A: b\r\n\r\n"
	if req != wantReq {
		t.Fatalf("request %q", req)
	}

	key := Key(7, 0)
	good := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + Accept(key) + "\r\n\r\n"
	for i := 0; i < len(good); i++ {
		if n, err := ParseResponse([]byte(good[:i]), key); n != 0 || err != nil {
			t.Fatalf("prefix %d: n=%d err=%v", i, n, err)
		}
	}
	n, err := ParseResponse([]byte(good+"\x81\x00"), key)
	if err != nil || n != len(good) {
		t.Fatalf("n=%d err=%v", n, err)
	}
	odd := "HTTP/1.1 101 x\r\nupgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\nsec-websocket-accept:" + Accept(key) + "  \r\n\r\n"
	if _, err := ParseResponse([]byte(odd), key); err != nil {
		t.Fatalf("case and spacing: %v", err)
	}
	for name, resp := range map[string]string{
		"status":      "HTTP/1.1 200 OK\r\n\r\n",
		"status 1010": "HTTP/1.1 1010 x\r\n\r\n",
		"accept":      "HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: nope\r\n\r\n",
		"no accept":   "HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"upgrade":     "HTTP/1.1 101 x\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + Accept(key) + "\r\n\r\n",
		"connection":  "HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Accept: " + Accept(key) + "\r\n\r\n",
		"extensions":  "HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + Accept(key) + "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
		"protocol":    "HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + Accept(key) + "\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
		"garbage":     "HTTP/1.1 101 x\r\nnot a header\r\n\r\n",
	} {
		if _, err := ParseResponse([]byte(resp), key); !errors.Is(err, ErrBadHandshake) {
			t.Errorf("%s: %v, want ErrBadHandshake", name, err)
		}
	}
	if _, err := ParseResponse(bytes.Repeat([]byte("x"), MaxResponseHead+1), key); err != ErrResponseLarge {
		t.Errorf("large head: %v", err)
	}

	r := bufio.NewReader(strings.NewReader(good + "\x81\x02hi"))
	head, err := ReadHead(r)
	if err != nil || string(head) != good {
		t.Fatalf("ReadHead: %q %v", head, err)
	}
	if h, p, err := ReadFrame(r, nil, 10); err != nil || h.Op != OpText || string(p) != "hi" {
		t.Fatalf("frame after the head: %+v %q %v", h, p, err)
	}
	if _, err := ReadHead(strings.NewReader("HTTP/1.1 101\r\n")); err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated head: %v", err)
	}
}

// The load generator's per-message calls allocate nothing.
func TestHotPathDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 4096)
	p := bytes.Repeat([]byte("x"), 1000)
	server := serverFrame(true, OpBinary, p)
	key := Key(1, 0)
	resp := []byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + Accept(key) + "\r\n\r\n")
	origin := "Origin: http://127.0.0.1:9001"
	for name, fn := range map[string]func(){
		"AppendFrame":      func() { buf = AppendFrame(buf[:0], OpBinary, p, 0x12345678) },
		"AppendPong":       func() { buf = AppendPong(buf[:0], p[:125], 0x12345678) },
		"AppendClose":      func() { buf = AppendClose(buf[:0], 1000, 0x12345678) },
		"AppendCloseReply": func() { buf = AppendCloseReply(buf[:0], []byte{3, 0xE8}, 0x12345678) },
		"Mask":             func() { Mask(p, 0x12345678) },
		"ParseHeader":      func() { _, _, _ = ParseHeader(server) },
		"AppendRequest":    func() { buf = AppendRequest(buf[:0], "127.0.0.1:9001", "/ws", key, origin) },
		"ParseResponse": func() {
			if _, err := ParseResponse(resp, key); err != nil {
				panic(err)
			}
		},
		"ParseResponse incomplete": func() { _, _ = ParseResponse(resp[:40], key) },
	} {
		if n := testing.AllocsPerRun(100, fn); n != 0 {
			t.Errorf("%s allocates %v times per call", name, n)
		}
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	for _, n := range []int{16, 128, 1 << 10, 16 << 10} {
		p := bytes.Repeat([]byte("x"), n)
		buf := make([]byte, 0, n+14)
		b.Run(sizeName(n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				buf = AppendFrame(buf[:0], OpBinary, p, 0x12345678)
			}
		})
	}
}

func BenchmarkParseHeader(b *testing.B) {
	f := serverFrame(true, OpText, make([]byte, 300))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, _ := ParseHeader(f); !ok {
			b.Fatal("not ok")
		}
	}
}

func BenchmarkParseResponse(b *testing.B) {
	key := Key(1, 0)
	resp := []byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + Accept(key) + "\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseResponse(resp, key); err != nil {
			b.Fatal(err)
		}
	}
}

func sizeName(n int) string {
	if n >= 1<<10 {
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
