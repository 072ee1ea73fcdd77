package codec

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

func TestValidCloseCode(t *testing.T) {
	for c := 0; c <= 0xFFFF; c++ {
		code := ws.StatusCode(c)
		want := c >= 1000 && c <= 1003 || c >= 1007 && c <= 1014 || c >= 3000 && c <= 4999
		if got := ValidCloseCode(code); got != want {
			t.Errorf("ValidCloseCode(%d) = %v", c, got)
		}
	}
}

func TestParseClose(t *testing.T) {
	for _, c := range []struct {
		name   string
		in     string
		code   ws.StatusCode
		reason string
		err    error
	}{
		{name: "empty", in: "", code: 1005},
		{name: "one byte", in: "\x03", err: ErrCloseOneByte},
		{name: "code only", in: "\x03\xe8", code: 1000},
		{name: "reason", in: "\x03\xe9going away", code: 1001, reason: "going away"},
		{name: "utf-8 reason", in: "\x0f\xa0€✓", code: 4000, reason: "€✓"},
		{name: "code 0", in: "\x00\x00", err: ErrInvalidCloseCode},
		{name: "code 1005", in: "\x03\xed", err: ErrInvalidCloseCode},
		{name: "code 1006", in: "\x03\xee", err: ErrInvalidCloseCode},
		{name: "code 1015", in: "\x03\xf7", err: ErrInvalidCloseCode},
		{name: "code 5000", in: "\x13\x88", err: ErrInvalidCloseCode},
		{name: "bad reason", in: "\x03\xe8\xc3(", err: ErrInvalidCloseReason},
	} {
		code, reason, err := ParseClose([]byte(c.in))
		if err != c.err {
			t.Errorf("%s: err %v, want %v", c.name, err, c.err)
			continue
		}
		if err != nil {
			continue
		}
		if code != c.code || string(reason) != c.reason {
			t.Errorf("%s: %d %q, want %d %q", c.name, code, reason, c.code, c.reason)
		}
	}
}

func TestAppendClose(t *testing.T) {
	if got := AppendClose(nil, 0, "ignored"); !bytes.Equal(got, []byte{0x88, 0}) {
		t.Errorf("code 0: % x", got)
	}
	if got := AppendClose([]byte("x"), ws.StatusNoStatusRcvd, ""); !bytes.Equal(got, []byte{'x', 0x88, 0}) {
		t.Errorf("code 1005: % x", got)
	}
	if got := AppendClose(nil, 1000, "bye"); !bytes.Equal(got, []byte("\x88\x05\x03\xe8bye")) {
		t.Errorf("1000 bye: % x", got)
	}
	for _, reason := range []string{
		strings.Repeat("a", 123),
		strings.Repeat("a", 124),
		strings.Repeat("a", 500),
		strings.Repeat("€", 100),
		"a" + strings.Repeat("€", 100),
		"ab" + strings.Repeat("𝄞", 100),
		strings.Repeat("é", 70),
	} {
		f := AppendClose(nil, 4321, reason)
		payload := f[2:]
		if f[0] != 0x88 || int(f[1]) != len(payload) || len(payload) > 125 {
			t.Fatalf("frame % x", f[:2])
		}
		got := string(payload[2:])
		if !strings.HasPrefix(reason, got) || !utf8.ValidString(got) || len(got) < 120 && len(got) < len(reason) {
			t.Fatalf("reason of %d bytes cut to %q", len(reason), got)
		}
		// The frame decodes as a valid close frame.
		res, err := decodeSplit(nil, false, maskServerFrame(f, [4]byte{1, 2, 3, 4}), nil)
		if err != nil || res.err != nil || len(res.events) != 1 || res.events[0].Payload != string(payload) {
			t.Fatalf("round trip: %v %v", res, err)
		}
	}
	buf := make([]byte, 0, 128)
	if a := testing.AllocsPerRun(100, func() { AppendClose(buf, 1001, "going away") }); a != 0 {
		t.Fatalf("%v allocations", a)
	}
}
