package wsframe

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestParseHeaderDeflate: with permessage-deflate, RSV1 marks the first
// frame of a data message as compressed, and is an error anywhere else;
// without it, RSV1 is a reserved bit.
func TestParseHeaderDeflate(t *testing.T) {
	for _, tc := range []struct {
		name       string
		b0         byte
		compressed bool
		err        error // with deflate
		plainErr   error // without
	}{
		{"text", 0x80 | RSV1 | OpText, true, nil, ErrReserved},
		{"binary, not final", RSV1 | OpBinary, true, nil, ErrReserved},
		{"plain text", 0x80 | OpText, false, nil, nil},
		{"continuation", 0x80 | RSV1 | OpContinuation, false, ErrRSV1, ErrReserved},
		{"ping", 0x80 | RSV1 | OpPing, false, ErrRSV1, ErrReserved},
		{"close", 0x80 | RSV1 | OpClose, false, ErrRSV1, ErrReserved},
		{"rsv2", 0x80 | RSV2 | OpText, false, ErrReserved, ErrReserved},
		{"rsv1 and rsv3", 0x80 | RSV1 | RSV3 | OpText, false, ErrReserved, ErrReserved},
	} {
		h, ok, err := ParseHeaderDeflate([]byte{tc.b0, 3})
		if err != tc.err || (err == nil && (!ok || h.Compressed != tc.compressed)) {
			t.Errorf("%s: %+v %v %v, want compressed %v, %v", tc.name, h, ok, err, tc.compressed, tc.err)
		}
		if _, _, err := ParseHeader([]byte{tc.b0, 3}); err != tc.plainErr {
			t.Errorf("%s without deflate: %v, want %v", tc.name, err, tc.plainErr)
		}
	}
	r := bufio.NewReader(bytes.NewReader([]byte{0x80 | RSV1 | OpText, 2, 'h', 'i', 0x80 | RSV1 | OpPing, 0}))
	if h, p, err := ReadFrameDeflate(r, nil, 10); err != nil || !h.Compressed || string(p) != "hi" {
		t.Fatalf("ReadFrameDeflate: %+v %q %v", h, p, err)
	}
	if _, err := ReadHeaderDeflate(r, 10); !errors.Is(err, ErrRSV1) {
		t.Fatalf("ReadHeaderDeflate of a compressed ping: %v", err)
	}
}

// TestDeflateRoundTrip: Inflate reads what Deflate writes, at every level,
// and refuses what passes its limit or is not DEFLATE.
func TestDeflateRoundTrip(t *testing.T) {
	msg := []byte(strings.Repeat("héllo, wörld ", 500))
	for _, level := range []int{0, 1, 6, 9, -2} {
		z := Deflate(msg, level)
		if bytes.HasSuffix(z, []byte{0, 0, 0xff, 0xff}) {
			t.Fatalf("level %d: the flush marker was not removed", level)
		}
		got, err := Inflate(z, int64(len(msg)))
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("level %d: %d bytes back, %v", level, len(got), err)
		}
		if _, err := Inflate(z, int64(len(msg)-1)); err != ErrInflatedTooBig {
			t.Fatalf("level %d: one byte over the limit: %v", level, err)
		}
	}
	if _, err := Inflate([]byte{0xff, 0xff}, 100); err == nil {
		t.Fatal("garbage inflated")
	}
	if _, err := Inflate(Deflate(msg, 6)[:20], 1<<20); err == nil {
		t.Fatal("a truncated message inflated")
	}
}

// TestParseResponseExtensions: a client that offered extensions reads the
// answer instead of refusing it.
func TestParseResponseExtensions(t *testing.T) {
	key := NewRequestKey()
	head := "HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + Accept(key) + "\r\n"
	const ext = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	n, got, err := ParseResponseExtensions([]byte(head+"Sec-WebSocket-Extensions: "+ext+"\r\n\r\nrest"), key)
	if err != nil || string(got) != ext || n != len(head)+len("Sec-WebSocket-Extensions: ")+len(ext)+4 {
		t.Fatalf("n=%d ext=%q err=%v", n, got, err)
	}
	if _, got, err := ParseResponseExtensions([]byte(head+"\r\n"), key); err != nil || got != nil {
		t.Fatalf("declined: ext=%q err=%v", got, err)
	}
	if _, _, err := ParseResponseExtensions([]byte(head+"Sec-WebSocket-Extensions: a\r\nSec-WebSocket-Extensions: b\r\n\r\n"), key); !errors.Is(err, ErrBadHandshake) {
		t.Fatalf("two answers: %v", err)
	}
	if _, err := ParseResponse([]byte(head+"Sec-WebSocket-Extensions: "+ext+"\r\n\r\n"), key); !errors.Is(err, ErrBadHandshake) {
		t.Fatalf("ParseResponse takes an answer that was not offered: %v", err)
	}
}
