package wsclient

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestAppendFrameMasksAndRoundTrips(t *testing.T) {
	for _, n := range []int{0, 1, 7, 125, 126, 1000, 65535, 65536, 70000} {
		p := bytes.Repeat([]byte("abcdefghij"), n/10+1)[:n]
		key := uint32(0xA1B2C3D4)
		f := AppendFrame(nil, OpBinary, p, key)
		if f[0] != 0x82 || f[1]&0x80 == 0 {
			t.Fatalf("n=%d: header % x: want FIN+binary, masked", n, f[:2])
		}
		// Decode as a server would: strip the mask.
		l := int(f[1] & 0x7F)
		off := 2
		switch l {
		case 126:
			l = int(binary.BigEndian.Uint16(f[2:]))
			off = 4
		case 127:
			l = int(binary.BigEndian.Uint64(f[2:]))
			off = 10
		}
		if l != n {
			t.Fatalf("length %d, want %d", l, n)
		}
		mk := f[off : off+4]
		got := append([]byte(nil), f[off+4:]...)
		for i := range got {
			got[i] ^= mk[i%4]
		}
		if !bytes.Equal(got, p) {
			t.Fatalf("n=%d: unmasked payload differs", n)
		}
		if n > 8 && bytes.Equal(f[off+4:], p) {
			t.Fatalf("n=%d: payload not masked", n)
		}
	}
}

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
	bad := map[string][]byte{
		"masked":        {0x81, 0x80 | 1},
		"rsv":           {0xC1, 1},
		"opcode":        {0x83, 0},
		"long control":  {0x89, 126, 0, 200},
		"fragmented":    {0x09, 0},
		"non-minimal16": {0x82, 126, 0, 5},
		"non-minimal64": {0x82, 127, 0, 0, 0, 0, 0, 0, 0, 5},
	}
	for name, b := range bad {
		if _, _, err := ParseHeader(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestParseResponse(t *testing.T) {
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
	// RFC 6455's example key and answer.
	if a := Accept("dGhlIHNhbXBsZSBub25jZQ=="); a != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("Accept = %q", a)
	}
	for name, resp := range map[string]string{
		"status":     "HTTP/1.1 200 OK\r\n\r\n",
		"accept":     "HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: nope\r\n\r\n",
		"upgrade":    "HTTP/1.1 101 x\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + Accept(key) + "\r\n\r\n",
		"extensions": "HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + Accept(key) + "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
	} {
		if _, err := ParseResponse([]byte(resp), key); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestTickerFields(t *testing.T) {
	msg := FormatTicker(nil, 17, 12345, 1732500000000000000, 128)
	if len(msg) != 128 {
		t.Fatalf("len %d, want 128", len(msg))
	}
	sym, seq, ts, ok := TickerFields(msg)
	if !ok || sym != 17 || seq != 12345 || ts != 1732500000000000000 {
		t.Fatalf("got %d %d %d %v", sym, seq, ts, ok)
	}
	// Field order does not matter; missing fields are reported.
	if _, _, _, ok := TickerFields([]byte(`{"ts":5,"seq":2,"sym":"S3"}`)); !ok {
		t.Fatal("reordered fields rejected")
	}
	for _, m := range []string{`{"sym":"S1","seq":2}`, `{"sym":"X1","seq":2,"ts":3}`, `{"sym":"S","seq":2,"ts":3}`, `{"sym":"S1","seq":"a","ts":3}`} {
		if _, _, _, ok := TickerFields([]byte(m)); ok {
			t.Errorf("%s accepted", m)
		}
	}
	if n := testing.AllocsPerRun(100, func() { TickerFields(msg) }); n != 0 {
		t.Errorf("TickerFields allocates %v times", n)
	}
}
