package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/gobwas/ws"

	"github.com/heraldws/herald/pool"
)

type streamCase struct {
	name      string
	stream    []byte
	allowRSV1 bool
	cfg       *DecoderConfig
	want      []ev
	err       *ProtocolError
}

func first(op ws.OpCode, s string) []byte { return frame(byte(op), s) } // FIN clear

func streamCases() []streamCase {
	big := strings.Repeat("0123456789abcdef", 4096) // 64 KiB
	var cases []streamCase
	add := func(c streamCase) { cases = append(cases, c) }

	// Valid streams.
	add(streamCase{name: "text", stream: textFrame("hello"), want: []ev{msg(ws.OpText, "hello")}})
	add(streamCase{name: "binary", stream: binFrame("\x00\xff\x80"), want: []ev{msg(ws.OpBinary, "\x00\xff\x80")}})
	add(streamCase{name: "empty text", stream: textFrame(""), want: []ev{msg(ws.OpText, "")}})
	add(streamCase{name: "empty binary", stream: binFrame(""), want: []ev{msg(ws.OpBinary, "")}})
	add(streamCase{name: "utf8 text", stream: textFrame("héllo € 𝄞 ✓"), want: []ev{msg(ws.OpText, "héllo € 𝄞 ✓")}})
	add(streamCase{name: "125 bytes", stream: binFrame(big[:125]), want: []ev{msg(ws.OpBinary, big[:125])}})
	add(streamCase{name: "126 bytes", stream: textFrame(big[:126]), want: []ev{msg(ws.OpText, big[:126])}})
	add(streamCase{name: "65535 bytes", stream: textFrame(big[:65535]), want: []ev{msg(ws.OpText, big[:65535])}})
	add(streamCase{name: "65536 bytes", stream: binFrame(big), want: []ev{msg(ws.OpBinary, big)}})
	add(streamCase{
		name:   "non-minimal 16-bit length",
		stream: mkFrame(bFin|byte(ws.OpText), []byte("hi"), fopt{lenSize: 2}),
		want:   []ev{msg(ws.OpText, "hi")},
	})
	add(streamCase{
		name:   "non-minimal 64-bit length",
		stream: mkFrame(bFin|byte(ws.OpBinary), []byte("hi"), fopt{lenSize: 8}),
		want:   []ev{msg(ws.OpBinary, "hi")},
	})
	add(streamCase{name: "ping", stream: pingFrame("are you there"), want: []ev{msg(ws.OpPing, "are you there")}})
	add(streamCase{name: "ping 125", stream: pingFrame(big[:125]), want: []ev{msg(ws.OpPing, big[:125])}})
	add(streamCase{name: "empty pong", stream: pongFrame(""), want: []ev{msg(ws.OpPong, "")}})
	add(streamCase{name: "empty close", stream: frame(bFin|byte(ws.OpClose), ""), want: []ev{msg(ws.OpClose, "")}})
	for _, code := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999} {
		add(streamCase{
			name:   "close " + string(binary.BigEndian.AppendUint16(nil, code)),
			stream: closeFrame(code, "bye ✓"),
			want:   []ev{msg(ws.OpClose, string(binary.BigEndian.AppendUint16(nil, code))+"bye ✓")},
		})
	}
	add(streamCase{
		name:   "close 123-byte reason",
		stream: closeFrame(1000, big[:123]),
		want:   []ev{msg(ws.OpClose, "\x03\xe8"+big[:123])},
	})
	add(streamCase{
		name:   "fragmented text, character split across fragments",
		stream: cat(first(ws.OpText, "ab\xe2"), contFrame(false, "\x82"), contFrame(true, "\xacz")),
		want:   []ev{msg(ws.OpText, "ab€z")},
	})
	add(streamCase{
		name: "fragmented binary with interleaved control frames",
		stream: cat(first(ws.OpBinary, "one,"), pingFrame("p1"), contFrame(false, "two,"),
			pongFrame(""), pingFrame("p2"), contFrame(true, "three")),
		want: []ev{msg(ws.OpPing, "p1"), msg(ws.OpPong, ""), msg(ws.OpPing, "p2"), msg(ws.OpBinary, "one,two,three")},
	})
	add(streamCase{
		name:   "close inside a fragmented message",
		stream: cat(first(ws.OpText, "half"), closeFrame(1000, "")),
		want:   []ev{msg(ws.OpClose, "\x03\xe8")},
	})
	add(streamCase{
		name:   "empty fragments",
		stream: cat(first(ws.OpText, ""), contFrame(false, ""), contFrame(false, "x"), contFrame(false, ""), contFrame(true, "")),
		want:   []ev{msg(ws.OpText, "x")},
	})
	add(streamCase{
		name:   "all fragments empty",
		stream: cat(first(ws.OpBinary, ""), contFrame(true, "")),
		want:   []ev{msg(ws.OpBinary, "")},
	})
	add(streamCase{
		name:   "big fragmented message",
		stream: cat(first(ws.OpText, big[:40000]), pingFrame("x"), contFrame(false, big[40000:40001]), contFrame(true, big[40001:])),
		want:   []ev{msg(ws.OpPing, "x"), msg(ws.OpText, big)},
	})
	add(streamCase{
		name:      "compressed message is inflated",
		stream:    frame(bFin|bRsv1|byte(ws.OpText), deflateStd("héllo, héllo")),
		allowRSV1: true,
		want:      []ev{{Op: ws.OpText, Payload: "héllo, héllo", Compressed: true}},
	})
	zf := deflateStd("\u00e9t\u00e9 \u00e9t\u00e9")
	add(streamCase{
		name:      "compressed fragmented message",
		stream:    cat(frame(bRsv1|byte(ws.OpText), zf[:3]), pingFrame(""), contFrame(true, zf[3:])),
		allowRSV1: true,
		want:      []ev{msg(ws.OpPing, ""), {Op: ws.OpText, Payload: "\u00e9t\u00e9 \u00e9t\u00e9", Compressed: true}},
	})
	add(streamCase{
		name:      "uncompressed message with deflate negotiated",
		stream:    cat(textFrame("plain"), frame(bFin|bRsv1|byte(ws.OpBinary), deflateStd("z"))),
		allowRSV1: true,
		want:      []ev{msg(ws.OpText, "plain"), {Op: ws.OpBinary, Payload: "z", Compressed: true}},
	})
	add(streamCase{
		name:   "many messages",
		stream: cat(textFrame("a"), binFrame("bb"), pingFrame("c"), textFrame(""), textFrame(big[:300]), closeFrame(1001, "")),
		want: []ev{msg(ws.OpText, "a"), msg(ws.OpBinary, "bb"), msg(ws.OpPing, "c"), msg(ws.OpText, ""),
			msg(ws.OpText, big[:300]), msg(ws.OpClose, "\x03\xe9")},
	})
	add(streamCase{
		name:   "truncated stream",
		stream: cat(textFrame("done"), first(ws.OpText, "part"), contFrame(true, "ial")[:5]),
		want:   []ev{msg(ws.OpText, "done")},
	})
	add(streamCase{
		name:   "message at the frame limit",
		stream: cat(first(ws.OpBinary, "12345"), contFrame(true, "67890")),
		cfg:    &DecoderConfig{MaxFrameBytes: 5, MaxMessageBytes: 10},
		want:   []ev{msg(ws.OpBinary, "1234567890")},
	})
	add(streamCase{
		name:   "control frames ignore the data limits",
		stream: pingFrame(big[:100]),
		cfg:    &DecoderConfig{MaxMessageBytes: 10},
		want:   []ev{msg(ws.OpPing, big[:100])},
	})

	// Protocol errors.
	add(streamCase{
		name:   "unmasked",
		stream: mkFrame(bFin|byte(ws.OpText), []byte("hi"), fopt{unmasked: true}),
		err:    ErrUnmaskedFrame,
	})
	add(streamCase{
		name:   "events before an error are kept",
		stream: cat(textFrame("ok"), mkFrame(bFin|byte(ws.OpText), []byte("hi"), fopt{unmasked: true})),
		want:   []ev{msg(ws.OpText, "ok")},
		err:    ErrUnmaskedFrame,
	})
	add(streamCase{name: "rsv2", stream: frame(bFin|bRsv2|byte(ws.OpText), "x"), err: ErrReservedBits})
	add(streamCase{name: "rsv3", stream: frame(bFin|bRsv3|byte(ws.OpText), "x"), err: ErrReservedBits})
	add(streamCase{name: "rsv2 with deflate", stream: frame(bFin|bRsv2|byte(ws.OpText), "x"), allowRSV1: true, err: ErrReservedBits})
	add(streamCase{name: "rsv1 without deflate", stream: frame(bFin|bRsv1|byte(ws.OpText), "x"), err: ErrReservedBits})
	add(streamCase{
		name:      "rsv1 on a continuation",
		stream:    cat(frame(bRsv1|byte(ws.OpText), "x"), frame(bFin|bRsv1, "y")),
		allowRSV1: true,
		err:       ErrMisplacedRSV1,
	})
	add(streamCase{name: "rsv1 on a ping", stream: frame(bFin|bRsv1|byte(ws.OpPing), ""), allowRSV1: true, err: ErrMisplacedRSV1})
	add(streamCase{name: "rsv1 on a close", stream: frame(bFin|bRsv1|byte(ws.OpClose), ""), allowRSV1: true, err: ErrMisplacedRSV1})
	for _, op := range []byte{3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF} {
		add(streamCase{name: "reserved opcode " + string("0123456789ABCDEF"[op]), stream: frame(bFin|op, "x"), err: ErrReservedOpcode})
	}
	add(streamCase{name: "fragmented ping", stream: frame(byte(ws.OpPing), "x"), err: ErrControlFragmented})
	add(streamCase{name: "fragmented close", stream: frame(byte(ws.OpClose), ""), err: ErrControlFragmented})
	add(streamCase{name: "ping 126", stream: pingFrame(big[:126]), err: ErrControlTooLong})
	add(streamCase{
		name:   "ping with a 16-bit length",
		stream: mkFrame(bFin|byte(ws.OpPing), []byte("x"), fopt{lenSize: 2}),
		err:    ErrControlTooLong,
	})
	add(streamCase{name: "lone continuation", stream: contFrame(true, "x"), err: ErrUnexpectedContinuation})
	add(streamCase{
		name:   "continuation after a complete message",
		stream: cat(textFrame("a"), contFrame(false, "b")),
		want:   []ev{msg(ws.OpText, "a")},
		err:    ErrUnexpectedContinuation,
	})
	add(streamCase{
		name:   "text inside a fragmented message",
		stream: cat(first(ws.OpText, "a"), textFrame("b")),
		err:    ErrExpectedContinuation,
	})
	add(streamCase{
		name:   "binary inside a fragmented message, after a ping",
		stream: cat(first(ws.OpText, "a"), pingFrame(""), first(ws.OpBinary, "b")),
		want:   []ev{msg(ws.OpPing, "")},
		err:    ErrExpectedContinuation,
	})
	add(streamCase{
		name:   "64-bit length with the high bit",
		stream: []byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4, 'a', 'b', 'c', 'd', 'e'},
		err:    ErrLengthMSB,
	})
	add(streamCase{
		name:   "frame too big",
		stream: binFrame("12345678901"),
		cfg:    &DecoderConfig{MaxFrameBytes: 10},
		err:    ErrFrameTooBig,
	})
	add(streamCase{
		name:   "frame over the message limit",
		stream: textFrame("12345678901"),
		cfg:    &DecoderConfig{MaxMessageBytes: 10},
		err:    ErrFrameTooBig,
	})
	add(streamCase{
		name:   "message too big",
		stream: cat(first(ws.OpBinary, "123456"), pingFrame(""), contFrame(true, "789012")),
		cfg:    &DecoderConfig{MaxMessageBytes: 10},
		want:   []ev{msg(ws.OpPing, "")},
		err:    ErrMessageTooBig,
	})
	add(streamCase{
		name:   "frame over the default limit, header only",
		stream: []byte{0x82, 0xff, 0, 0, 0, 0, 0, 0x10, 0, 1, 1, 2, 3, 4},
		err:    ErrFrameTooBig,
	})
	add(streamCase{
		name:   "frame over a large frame limit but over the message limit",
		stream: cat(first(ws.OpText, big[:8]), contFrame(true, big[:8])),
		cfg:    &DecoderConfig{MaxFrameBytes: 100, MaxMessageBytes: 10},
		err:    ErrMessageTooBig,
	})
	for name, s := range map[string]string{
		"invalid byte":        "ab\xffcd",
		"lone continuation":   "\x80",
		"overlong 2-byte":     "\xc0\x80",
		"overlong 3-byte":     "\xe0\x80\x80",
		"overlong 4-byte":     "\xf0\x80\x80\x80",
		"surrogate":           "\xed\xa0\x80",
		"above U+10FFFF":      "\xf4\x90\x80\x80",
		"F5 lead":             "\xf5\x80\x80\x80",
		"truncated at end":    "ok\xe2\x82",
		"lead then ascii":     "\xe2(",
		"truncated 4-byte":    "\xf0\x9d\x84",
		"invalid after valid": strings.Repeat("€", 50) + "\xc3\x28",
	} {
		add(streamCase{name: "utf-8 " + name, stream: textFrame(s), err: ErrInvalidUTF8})
	}
	add(streamCase{
		name:   "utf-8 split character broken in the next fragment",
		stream: cat(first(ws.OpText, "ab\xe2\x82"), contFrame(true, "(")),
		err:    ErrInvalidUTF8,
	})
	add(streamCase{
		name:   "utf-8 message ends inside a character",
		stream: cat(first(ws.OpText, "ab\xe2"), contFrame(false, "\x82"), contFrame(true, "")),
		err:    ErrInvalidUTF8,
	})
	add(streamCase{
		name:   "utf-8 invalid in a later fragment after a ping",
		stream: cat(first(ws.OpText, "fine"), pingFrame("x"), contFrame(true, "\xff")),
		want:   []ev{msg(ws.OpPing, "x")},
		err:    ErrInvalidUTF8,
	})
	add(streamCase{
		name:   "binary is not checked",
		stream: binFrame("\xff\xfe\xed\xa0\x80"),
		want:   []ev{msg(ws.OpBinary, "\xff\xfe\xed\xa0\x80")},
	})
	add(streamCase{name: "close 1 byte", stream: frame(bFin|byte(ws.OpClose), "\x03"), err: ErrCloseOneByte})
	for _, code := range []uint16{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		add(streamCase{
			name:   "close code " + string(binary.BigEndian.AppendUint16(nil, code)),
			stream: closeFrame(code, ""),
			err:    ErrInvalidCloseCode,
		})
	}
	add(streamCase{name: "close reason not utf-8", stream: closeFrame(1000, "bad \xff"), err: ErrInvalidCloseReason})
	add(streamCase{name: "close reason ends mid-character", stream: closeFrame(1000, "\xe2\x82"), err: ErrInvalidCloseReason})
	return cases
}

func TestDecodeStreams(t *testing.T) {
	for _, c := range streamCases() {
		t.Run(c.name, func(t *testing.T) {
			want := result{events: c.want}
			if c.err != nil {
				want.err = c.err
			}
			checkAllSplits(t, c.cfg, c.allowRSV1, c.stream, want)
		})
	}
}

func TestErrorCodes(t *testing.T) {
	codes := map[*ProtocolError]ws.StatusCode{
		ErrUnmaskedFrame:          1002,
		ErrReservedBits:           1002,
		ErrMisplacedRSV1:          1002,
		ErrReservedOpcode:         1002,
		ErrControlFragmented:      1002,
		ErrControlTooLong:         1002,
		ErrUnexpectedContinuation: 1002,
		ErrExpectedContinuation:   1002,
		ErrLengthMSB:              1002,
		ErrFrameTooBig:            1009,
		ErrMessageTooBig:          1009,
		ErrInvalidUTF8:            1007,
		ErrCloseOneByte:           1002,
		ErrInvalidCloseCode:       1002,
		ErrInvalidCloseReason:     1002,
	}
	for e, code := range codes {
		if e.Code != code {
			t.Errorf("%q: code %d, want %d", e.Reason, e.Code, code)
		}
		if len(e.Reason) == 0 || len(e.Reason) > maxCloseReason {
			t.Errorf("%q: reason does not fit a close frame", e.Reason)
		}
		if !strings.Contains(e.Error(), e.Reason) {
			t.Errorf("Error() = %q", e.Error())
		}
		var pe *ProtocolError
		if !errors.As(error(e), &pe) || pe != e {
			t.Errorf("errors.As failed for %q", e.Reason)
		}
	}
}

// decodeOne feeds p in one call and returns what Decode returned.
func decodeOne(d *Decoder, p []byte) (int, Event, error) {
	return d.Decode(append([]byte(nil), p...))
}

func TestUTF8FailsFast(t *testing.T) {
	// A 1000-byte text frame whose 4th payload byte is invalid: the error
	// comes with the header and 4 bytes, before the rest arrives.
	payload := []byte(strings.Repeat("a", 1000))
	payload[3] = 0xff
	f := mkFrame(bFin|byte(ws.OpText), payload, fopt{})
	hl := len(f) - len(payload)
	for _, split := range []int{0, 1, 2, hl} {
		var d Decoder
		d.Init(nil, false)
		if split > 0 {
			if _, e, err := decodeOne(&d, f[:split]); err != nil || e.Op != 0 {
				t.Fatalf("split %d: %v %v", split, e, err)
			}
		}
		_, _, err := decodeOne(&d, f[split:hl+4])
		if err != ErrInvalidUTF8 {
			t.Fatalf("split %d: err %v, want ErrInvalidUTF8 before the frame is complete", split, err)
		}
		if d.msg != nil {
			t.Fatalf("buffer kept after the error")
		}
		d.Release()
	}

	// A non-final fragment: its last bytes start a character that the next
	// fragment's first payload byte breaks. The error comes with that byte.
	var d Decoder
	defer d.Release()
	d.Init(nil, false)
	if _, e, err := decodeOne(&d, first(ws.OpText, "ab\xe2\x82")); err != nil || e.Op != 0 {
		t.Fatalf("first fragment: %v %v", e, err)
	}
	next := mkFrame(bFin, []byte("(and then a lot more that has not arrived)"), fopt{})
	_, _, err := decodeOne(&d, next[:7]) // 2-byte header, key, 1 payload byte
	if err != ErrInvalidUTF8 {
		t.Fatalf("continuation: err %v, want ErrInvalidUTF8", err)
	}

	// The first invalid byte of a frame that is not final either.
	d.Init(nil, false)
	long := mkFrame(byte(ws.OpText), []byte("\xc0"+strings.Repeat("x", 500)), fopt{})
	if _, _, err := decodeOne(&d, long[:10]); err != ErrInvalidUTF8 {
		t.Fatalf("non-final frame: err %v, want ErrInvalidUTF8", err)
	}
}

func TestLimitsFromHeader(t *testing.T) {
	cfg := &DecoderConfig{MaxMessageBytes: 1000}
	// The header of a 1001-byte frame is enough to fail, and nothing is
	// buffered for it.
	h := mkFrame(bFin|byte(ws.OpBinary), make([]byte, 1001), fopt{})[:8]
	var d Decoder
	d.Init(cfg, false)
	if _, _, err := decodeOne(&d, h); err != ErrFrameTooBig {
		t.Fatalf("err %v, want ErrFrameTooBig", err)
	}
	if d.msg != nil {
		t.Fatal("buffer allocated for an over-limit frame")
	}

	// Fragments: the header of the one that crosses the limit fails.
	d.Init(cfg, false)
	if _, _, err := decodeOne(&d, first(ws.OpBinary, strings.Repeat("x", 600))); err != nil {
		t.Fatal(err)
	}
	cont := mkFrame(bFin, make([]byte, 401), fopt{})[:8]
	if _, _, err := decodeOne(&d, cont); err != ErrMessageTooBig {
		t.Fatalf("err %v, want ErrMessageTooBig", err)
	}
	if d.msg != nil {
		t.Fatal("buffer kept after the error")
	}

	// The default: 1 MiB.
	d.Init(nil, false)
	h = []byte{0x82, 0xff, 0, 0, 0, 0, 0, 0x10, 0, 1}
	if _, _, err := decodeOne(&d, h); err != ErrFrameTooBig {
		t.Fatalf("default limit: err %v, want ErrFrameTooBig", err)
	}
	ok := mkFrame(bFin|byte(ws.OpBinary), make([]byte, DefaultMaxMessageBytes), fopt{})
	d.Init(nil, false)
	if _, e, err := decodeOne(&d, ok); err != nil || len(e.Payload) != DefaultMaxMessageBytes {
		t.Fatalf("1 MiB frame: %d bytes, %v", len(e.Payload), err)
	}
}

// A message split across calls must not make the Decoder reserve what the
// header claims before the bytes arrive.
func TestBufferGrowsWithInput(t *testing.T) {
	cfg := &DecoderConfig{MaxMessageBytes: 64 << 20}
	f := mkFrame(bFin|byte(ws.OpBinary), make([]byte, 32<<20), fopt{})
	var d Decoder
	defer d.Release()
	d.Init(cfg, false)
	if _, _, err := decodeOne(&d, f[:14+10]); err != nil {
		t.Fatal(err)
	}
	if c := cap(d.msg.B); c > 1<<20 {
		t.Fatalf("%d bytes reserved for 10 bytes of payload", c)
	}
	// The rest in 1 MiB chunks: the whole message arrives intact.
	rest := f[14+10:]
	var got []byte
	for len(rest) > 0 {
		k := min(len(rest), 1<<20)
		n, e, err := decodeOne(&d, rest[:k])
		if err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
		if e.Op != 0 {
			got = e.Payload
		}
	}
	if len(got) != 32<<20 {
		t.Fatalf("message of %d bytes", len(got))
	}
	for i, b := range got {
		if b != 0 {
			t.Fatalf("byte %d = %#x", i, b)
		}
	}
}

func TestBuffersAreReturned(t *testing.T) {
	var d Decoder
	d.Init(nil, false)

	// A whole frame is handed over in place: no buffer.
	in := textFrame("in place")
	_, e, err := d.Decode(in)
	if err != nil || d.msg != nil || d.ctl != nil {
		t.Fatalf("whole frame: %v, buffers %v %v", err, d.msg, d.ctl)
	}
	if &e.Payload[0] != &in[len(in)-len("in place")] {
		t.Fatal("payload is not a slice of the input")
	}

	// A split frame is buffered, delivered, and the buffer goes back on the
	// next call.
	f := textFrame("split across two reads")
	if _, _, err := decodeOne(&d, f[:9]); err != nil || d.msg == nil {
		t.Fatalf("first half: %v, buffer %v", err, d.msg)
	}
	if !d.InMessage() {
		t.Fatal("InMessage false inside a message")
	}
	if _, e, err := decodeOne(&d, f[9:]); err != nil || string(e.Payload) != "split across two reads" {
		t.Fatalf("second half: %q %v", e.Payload, err)
	}
	if d.InMessage() {
		t.Fatal("InMessage true after the message")
	}
	if _, _, err := d.Decode(nil); err != nil || d.msg != nil {
		t.Fatalf("buffer kept after delivery: %v", d.msg)
	}

	// A split ping in the middle of a fragmented message: its own buffer,
	// returned on the next call while the message keeps its buffer.
	if _, _, err := decodeOne(&d, first(ws.OpText, "frag")); err != nil {
		t.Fatal(err)
	}
	p := pingFrame("ping")
	if _, _, err := decodeOne(&d, p[:7]); err != nil || d.ctl == nil {
		t.Fatalf("split ping: %v, buffer %v", err, d.ctl)
	}
	if _, e, err := decodeOne(&d, p[7:]); err != nil || string(e.Payload) != "ping" {
		t.Fatalf("ping: %q %v", e.Payload, err)
	}
	if _, _, err := d.Decode(nil); err != nil || d.ctl != nil || d.msg == nil {
		t.Fatalf("after the ping: ctl %v, msg %v", d.ctl, d.msg)
	}
	if string(d.msg.B) != "frag" {
		t.Fatalf("message buffer disturbed: %q", d.msg.B)
	}

	// Release drops everything, twice is fine, and the Decoder starts over.
	d.Release()
	if d.msg != nil || d.ctl != nil || d.InMessage() {
		t.Fatal("Release kept state")
	}
	d.Release()
	if _, e, err := decodeOne(&d, textFrame("again")); err != nil || string(e.Payload) != "again" {
		t.Fatalf("after Release: %q %v", e.Payload, err)
	}
}

func TestDeliveredPayloadStable(t *testing.T) {
	// A buffered payload stays intact while the caller reads it, until the
	// next Decode call.
	var d Decoder
	defer d.Release()
	d.Init(nil, false)
	f := binFrame(strings.Repeat("z", 5000))
	decodeOne(&d, f[:100])
	_, e, err := decodeOne(&d, f[100:])
	if err != nil || !bytes.Equal(e.Payload, bytes.Repeat([]byte("z"), 5000)) {
		t.Fatalf("payload wrong: %v", err)
	}
}

func TestZeroDecoderUsesDefaults(t *testing.T) {
	var d Decoder
	defer d.Release()
	if _, e, err := decodeOne(&d, textFrame("zero value")); err != nil || string(e.Payload) != "zero value" {
		t.Fatalf("%q %v", e.Payload, err)
	}
	if _, _, err := decodeOne(&d, frame(bFin|bRsv1|byte(ws.OpText), "x")); err != ErrReservedBits {
		t.Fatalf("rsv1 on a zero Decoder: %v", err)
	}
}

func TestDecodeEmptyInput(t *testing.T) {
	var d Decoder
	d.Init(nil, false)
	n, e, err := d.Decode(nil)
	if n != 0 || e.Op != 0 || err != nil {
		t.Fatalf("Decode(nil) = %d %v %v", n, e, err)
	}
}

func TestDecodeAllocs(t *testing.T) {
	for _, c := range []struct {
		name  string
		frame []byte
	}{
		{"text 16", textFrame(strings.Repeat("x", 16))},
		{"text 1K utf-8", textFrame(strings.Repeat("é€x", 170))},
		{"binary 64K", binFrame(strings.Repeat("y", 64<<10))},
		{"ping", pingFrame("hi")},
		{"close", closeFrame(1000, "bye")},
	} {
		orig := c.frame
		buf := make([]byte, len(orig))
		var d Decoder
		d.Init(nil, false)
		allocs := testing.AllocsPerRun(100, func() {
			copy(buf, orig)
			n, e, err := d.Decode(buf)
			if err != nil || e.Op == 0 || n != len(buf) {
				t.Fatalf("%s: %d %v %v", c.name, n, e.Op, err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per decode", c.name, allocs)
		}
		d.Release()
	}
}

func TestDecodeSplitAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	// This measures the Decoder, not the pool: skip if the pool itself
	// allocates on a warm Get and Put.
	if a := testing.AllocsPerRun(100, func() { pool.Put(pool.Get(1000)) }); a != 0 {
		t.Skipf("pool.Get and pool.Put allocate %v times per round trip", a)
	}
	f := textFrame(strings.Repeat("x", 1000))
	var d Decoder
	defer d.Release()
	d.Init(nil, false)
	allocs := testing.AllocsPerRun(1000, func() {
		d.Decode(f[:500])
		if _, e, err := d.Decode(f[500:]); err != nil || e.Op != ws.OpText {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per split decode with a warm pool", allocs)
	}
}

// TestAtRest: a Decoder is at rest exactly between frames outside a
// message, with no error.
func TestAtRest(t *testing.T) {
	text := textFrame("hello")
	frag := first(ws.OpText, "he")
	steps := []struct {
		name string
		in   []byte
		want bool
	}{
		{"fresh", nil, true},
		{"a header's first byte", text[:1], false},
		{"the rest of the header", text[1:6], false},
		{"part of the payload", text[6:8], false},
		{"the end of the message", text[8:], true},
		{"a first fragment", frag, false},
		{"a ping inside the message", pingFrame("p"), false},
		{"the last fragment", contFrame(true, "llo"), true},
		{"a whole ping", pingFrame("p"), true},
		{"a protocol error", frame(bFin|0x3, ""), false},
	}
	var d Decoder
	d.Init(nil, false)
	defer d.Release()
	for _, s := range steps {
		p := append([]byte(nil), s.in...)
		for len(p) > 0 {
			n, _, err := d.Decode(p)
			p = p[n:]
			if err != nil {
				break
			}
		}
		if got := d.AtRest(); got != s.want {
			t.Fatalf("after %s: AtRest %v, want %v", s.name, got, s.want)
		}
	}
}
