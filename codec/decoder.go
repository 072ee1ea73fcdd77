package codec

import (
	"encoding/binary"

	"github.com/gobwas/ws"
	"github.com/valyala/bytebufferpool"

	"github.com/heraldws/herald/pool"
)

// DefaultMaxMessageBytes is the message size limit when
// DecoderConfig.MaxMessageBytes is 0: 1 MiB.
const DefaultMaxMessageBytes = 1 << 20

// DecoderConfig holds the limits of a server's decoders. One value is shared,
// by pointer, by every Decoder of the server; do not change it while they
// run.
type DecoderConfig struct {
	// MaxFrameBytes is the largest payload of a single data frame. 0 means
	// MaxMessageBytes. Control frames are bounded by RFC 6455 instead (125
	// bytes).
	MaxFrameBytes int64
	// MaxMessageBytes is the largest message: the sum of its fragments'
	// payloads, and for a compressed message its inflated size (checked
	// while inflating). 0 means DefaultMaxMessageBytes. A compressed frame
	// or message may take slightly more than the limits on the wire (1/4096
	// more, plus 256 bytes): DEFLATE expands what it cannot compress.
	MaxMessageBytes int64
}

// limits returns the effective limits of c, which may be nil.
func (c *DecoderConfig) limits() (frame, message int64) {
	message = DefaultMaxMessageBytes
	if c != nil {
		if c.MaxMessageBytes > 0 {
			message = c.MaxMessageBytes
		}
		frame = c.MaxFrameBytes
	}
	if frame <= 0 {
		frame = message
	}
	return frame, message
}

// Event is what a Decoder produces: a complete message or a control frame.
type Event struct {
	// Op is ws.OpText or ws.OpBinary for a complete message (the opcode of
	// its first frame), ws.OpPing, ws.OpPong or ws.OpClose for a control
	// frame, and 0 when no event is complete yet.
	Op ws.OpCode
	// Payload is the unmasked payload; for a fragmented message, all
	// fragments joined; for a compressed message, inflated. It may be nil
	// when empty. It is valid until the next call to Decode or Release, and
	// no longer than the input it came from (see Decoder). Text has been
	// checked for UTF-8. A close frame's payload has been validated; read
	// it with ParseClose.
	Payload []byte
	// Compressed reports that the message arrived compressed with
	// permessage-deflate (RSV1 on its first frame); Payload holds it
	// inflated. Always false for control frames.
	Compressed bool
}

// Decoder flags.
const (
	flagDeflate    = 1 << iota // permessage-deflate negotiated
	flagPayload                // reading the payload of the current frame
	flagFin                    // the current frame has FIN set
	flagCompressed             // the current message had RSV1 on its first frame
	flagPutMsg                 // msg was handed out in an Event: recycle it on the next call
	flagPutCtl                 // ctl was handed out in an Event: recycle it on the next call
)

// eagerBytes is how much buffer a message gets before its bytes arrive. A
// client declares a frame's length in its header; allocating that much up
// front would let a client pin MaxMessageBytes of memory per connection by
// sending nothing but headers. Beyond eagerBytes a buffer grows to twice what
// has arrived, and never beyond the known end of the message.
const eagerBytes = pool.SmallSize

// Decoder reassembles the frames a client sends into messages and control
// frames, validating them against RFC 6455 as the bytes arrive. It is small
// and holds no buffer between messages, so it can be embedded by value in
// per-connection state; or kept only while a connection is in the middle of
// a frame or a message (see AtRest).
//
// Input may be split anywhere; Decode always consumes all the bytes it needs
// and the caller never gives them back. A frame whose header and payload
// arrive in one call, and which is a whole message or a control frame, is
// unmasked in place in the caller's slice (which Decode therefore modifies)
// and returned as a sub-slice of it. Everything else is copied into a pooled
// buffer, which goes back to the pool on the next Decode or Release call.
//
// With permessage-deflate negotiated (Init, SetDeflate), a compressed
// message is buffered like a fragmented one and inflated when it completes,
// with a decompressor taken from a pool for that call only (see inflate):
// the Decoder itself never holds one.
//
// The zero Decoder is ready to use with the default limits and no extension;
// Init sets a configuration. A Decoder is not safe for concurrent use. It
// holds no pointer into itself, so between calls its value may be moved to
// another variable; the old one must then be Init'ed afresh or dropped, never
// used as it is (both would own the same buffers).
type Decoder struct {
	cfg *DecoderConfig
	msg *bytebufferpool.ByteBuffer // the message being assembled, or just delivered
	ctl *bytebufferpool.ByteBuffer // a control frame split across calls
	err *ProtocolError             // set once the stream is broken

	msgLen int64 // payload bytes of the current message, as declared by its headers so far
	rem    int64 // payload bytes of the current frame not read yet

	mask    [4]byte
	hdr     [ws.MaxHeaderSize]byte // a header split across calls
	hdrN    uint8                  // bytes in hdr
	maskOff uint8                  // payload bytes of the current frame read so far, mod 4
	op      ws.OpCode              // opcode of the current frame
	msgOp   ws.OpCode              // opcode of the current message; 0 when none
	utf8    UTF8State              // validation state of the current text message
	flags   uint8
}

// Init prepares a zero (or released) Decoder. cfg holds the limits and may be
// shared by many decoders; nil means the defaults. deflate is true when
// permessage-deflate (RFC 7692, without client context takeover) was
// negotiated for the connection: RSV1 may then mark a message's first
// frame as compressed, and such messages are inflated.
func (d *Decoder) Init(cfg *DecoderConfig, deflate bool) {
	*d = Decoder{cfg: cfg}
	d.SetDeflate(deflate)
}

// SetDeflate changes whether permessage-deflate is negotiated, as Init's
// deflate does, keeping everything else. Call it only between messages
// (AtRest): it lets one Decoder serve connections with and without
// compression in turn.
func (d *Decoder) SetDeflate(deflate bool) {
	if deflate {
		d.flags |= flagDeflate
	} else {
		d.flags &^= flagDeflate
	}
}

// Release returns the Decoder's pooled buffers, invalidating the payloads of
// earlier events, and resets it to the state Init left it in. Call it when the
// connection closes. It is safe to call more than once.
func (d *Decoder) Release() {
	pool.Put(d.msg)
	pool.Put(d.ctl)
	d.Init(d.cfg, d.flags&flagDeflate != 0)
}

// AtRest reports whether d is between frames and outside any message, with
// no error: nothing it holds is needed to decode what follows. Release then
// leaves it exactly as Init did, losing nothing but the buffers of the last
// event's payload, which must no longer be in use.
//
// A server with many connections can thus keep a Decoder only for those in
// the middle of a frame or a message, and decode every read that starts at
// rest with one shared Decoder, released after the read when AtRest, moved
// to the connection otherwise.
func (d *Decoder) AtRest() bool {
	return d.err == nil && d.hdrN == 0 && d.flags&flagPayload == 0 && d.msgOp == 0
}

// InMessage reports whether a message has begun and not been delivered yet:
// a frame or fragments of it have been read, but not its end.
func (d *Decoder) InMessage() bool {
	return d.msgOp != 0
}

// Decode consumes bytes from p until it has one complete event or p is
// exhausted, and returns the number of bytes consumed. The caller discards
// them and calls Decode again with the rest of p if any is left (n < len(p)
// only when an event is returned).
//
// When ev.Op is 0 no event is complete yet and n == len(p): the Decoder has
// kept what it needs of p. Otherwise ev is a message or a control frame; its
// payload is valid until the next call to Decode or Release, and only as long
// as p is when it was handed over in place. Control frames that arrive in the
// middle of a fragmented message are returned as they come, without
// disturbing the message.
//
// A non-nil err is always a *ProtocolError (one of the Err values of this
// package) telling which close code to send; the stream cannot be resumed and
// every later call returns the same error.
func (d *Decoder) Decode(p []byte) (n int, ev Event, err error) {
	if d.err != nil {
		return len(p), Event{}, d.err
	}
	if d.flags&(flagPutMsg|flagPutCtl) != 0 {
		d.recycle()
	}
	for n < len(p) {
		if d.flags&flagPayload == 0 {
			k, done, perr := d.header(p[n:])
			n += k
			if perr != nil {
				return n, Event{}, d.fail(perr)
			}
			if !done {
				break
			}
			// A control frame or a whole message that is all here is handed
			// over in place.
			if d.rem <= int64(len(p)-n) && (d.op >= ws.OpClose || d.flags&flagFin != 0 && d.op != ws.OpContinuation) {
				end := n + int(d.rem)
				payload := p[n:end:end]
				n = end
				d.rem = 0
				ws.Cipher(payload, d.mask, 0)
				if d.op < ws.OpClose {
					if perr := d.checkText(payload); perr != nil {
						return n, Event{}, d.fail(perr)
					}
				}
				op, compressed, perr := d.complete(payload)
				if perr != nil {
					return n, Event{}, d.fail(perr)
				}
				if compressed {
					if payload, perr = d.inflate(payload, op); perr != nil {
						return n, Event{}, d.fail(perr)
					}
				}
				// Fields one by one: a composite literal here makes the
				// compiler copy the struct through the stack with wide moves
				// that stall on the narrow stores before them.
				ev.Op, ev.Payload, ev.Compressed = op, payload, compressed
				return n, ev, nil
			}
			if d.rem > 0 {
				d.flags |= flagPayload
				continue
			}
			// An empty continuation frame, or an empty first fragment.
			if d.flags&flagFin == 0 {
				continue
			}
		} else {
			k := len(p) - n
			if d.rem < int64(k) {
				k = int(d.rem)
			}
			perr := d.payload(p[n : n+k])
			n += k
			if perr != nil {
				return n, Event{}, d.fail(perr)
			}
			if d.rem > 0 {
				continue
			}
			d.flags &^= flagPayload
			if d.op < ws.OpClose && d.flags&flagFin == 0 {
				continue // more fragments to come
			}
		}
		// The end of a control frame or of a message that was buffered.
		var payload []byte
		if d.op >= ws.OpClose {
			payload = d.ctl.B
			d.flags |= flagPutCtl
		} else if d.msg != nil {
			payload = d.msg.B
			d.flags |= flagPutMsg
		}
		op, compressed, perr := d.complete(payload)
		if perr != nil {
			return n, Event{}, d.fail(perr)
		}
		if compressed {
			if payload, perr = d.inflate(payload, op); perr != nil {
				return n, Event{}, d.fail(perr)
			}
		}
		ev.Op, ev.Payload, ev.Compressed = op, payload, compressed
		return n, ev, nil
	}
	return n, ev, nil
}

// recycle returns buffers handed out in the previous event.
func (d *Decoder) recycle() {
	if d.flags&flagPutMsg != 0 {
		pool.Put(d.msg)
		d.msg = nil
	}
	if d.flags&flagPutCtl != 0 {
		pool.Put(d.ctl)
		d.ctl = nil
	}
	d.flags &^= flagPutMsg | flagPutCtl
}

// fail kills the Decoder with e and drops its buffers: no payload of an
// earlier event can be outstanding, since recycle ran at the start of the
// call.
func (d *Decoder) fail(e *ProtocolError) error {
	d.err = e
	pool.Put(d.msg)
	pool.Put(d.ctl)
	d.msg, d.ctl = nil, nil
	return e
}

// frameHeaderLen returns the length of a client frame header from its second
// byte: the extended length and the mask key.
func frameHeaderLen(b1 byte) int {
	switch b1 & 0x7F {
	case 126:
		return 2 + 2 + 4
	case 127:
		return 2 + 8 + 4
	default:
		return 2 + 4
	}
}

// header reads a frame header from p, resuming a split one. It returns the
// bytes consumed and whether the header is complete, in which case the frame
// is set up. Each rule is checked as soon as the bytes it depends on are
// there: the first two bytes, then the length, then the mask key.
func (d *Decoder) header(p []byte) (int, bool, *ProtocolError) {
	if d.hdrN == 0 && len(p) >= 2 {
		// The usual case: the header starts in this call.
		if e := d.checkStart(p[0], p[1]); e != nil {
			return 0, false, e
		}
		hl := frameHeaderLen(p[1])
		if len(p) >= hl {
			if e := d.checkLength(p[:hl-4]); e != nil {
				return 0, false, e
			}
			d.setup(p[:hl])
			return hl, true, nil
		}
	}
	// Accumulate the header in d.hdr.
	before := int(d.hdrN)
	hl := ws.MaxHeaderSize
	if before >= 2 {
		hl = frameHeaderLen(d.hdr[1])
	}
	k := copy(d.hdr[before:hl], p)
	after := before + k
	if before < 2 && after >= 2 {
		if e := d.checkStart(d.hdr[0], d.hdr[1]); e != nil {
			return k, false, e
		}
		// The header was read as if it were the longest: give back what
		// belongs to the payload.
		hl = frameHeaderLen(d.hdr[1])
		if after > hl {
			k -= after - hl
			after = hl
		}
	}
	d.hdrN = uint8(after)
	if after < 2 {
		return k, false, nil
	}
	if lenEnd := hl - 4; before < lenEnd && after >= lenEnd {
		if e := d.checkLength(d.hdr[:lenEnd]); e != nil {
			return k, false, e
		}
	}
	if after < hl {
		return k, false, nil
	}
	d.hdrN = 0
	d.setup(d.hdr[:hl])
	return k, true, nil
}

// checkStart enforces the rules that the first two bytes of a header decide,
// as soon as they arrive.
func (d *Decoder) checkStart(b0, b1 byte) *ProtocolError {
	op := ws.OpCode(b0 & 0x0F)
	switch {
	case b0&(rsv2Bit|rsv3Bit) != 0:
		return ErrReservedBits
	case op.IsReserved():
		return ErrReservedOpcode
	case b1&maskBit == 0:
		return ErrUnmaskedFrame
	}
	if b0&rsv1Bit != 0 {
		if d.flags&flagDeflate == 0 {
			return ErrReservedBits
		}
		if op == ws.OpContinuation || op.IsControl() {
			return ErrMisplacedRSV1
		}
	}
	switch {
	case op.IsControl():
		if b0&finBit == 0 {
			return ErrControlFragmented
		}
		if b1&0x7F > ws.MaxControlFramePayloadSize {
			return ErrControlTooLong
		}
	case op == ws.OpContinuation:
		if d.msgOp == 0 {
			return ErrUnexpectedContinuation
		}
	default:
		if d.msgOp != 0 {
			return ErrExpectedContinuation
		}
	}
	return nil
}

// frameLength returns the payload length in h, a header up to the end of
// its length field. Non-minimal encodings (a 16- or 64-bit field holding a
// value that fits a shorter one) are accepted: RFC 6455 asks senders to be
// minimal but gives receivers no reason to refuse, and the value is bounded by
// the limits either way. A 64-bit length with the high bit set comes out
// negative.
func frameLength(h []byte) int64 {
	switch l7 := h[1] & 0x7F; l7 {
	case 126:
		return int64(binary.BigEndian.Uint16(h[2:]))
	case 127:
		return int64(binary.BigEndian.Uint64(h[2:]))
	default:
		return int64(l7)
	}
}

// checkLength enforces the rules on the payload length of a header that
// passed checkStart; h ends with the length field.
func (d *Decoder) checkLength(h []byte) *ProtocolError {
	length := frameLength(h)
	if length < 0 {
		return ErrLengthMSB
	}
	op := ws.OpCode(h[0] & 0x0F)
	if op >= ws.OpClose {
		return nil // at most 125 bytes, checked by checkStart
	}
	maxFrame, maxMsg := d.cfg.limits()
	if h[0]&rsv1Bit != 0 || op == ws.OpContinuation && d.flags&flagCompressed != 0 {
		maxFrame, maxMsg = compressedLimit(maxFrame), compressedLimit(maxMsg)
	}
	if length > maxFrame {
		return ErrFrameTooBig
	}
	if op == ws.OpContinuation {
		length += d.msgLen
	}
	if length > maxMsg {
		return ErrMessageTooBig
	}
	return nil
}

// setup prepares the frame whose header h passed checkStart and checkLength.
func (d *Decoder) setup(h []byte) {
	length := frameLength(h)
	op := ws.OpCode(h[0] & 0x0F)
	switch op {
	case ws.OpContinuation:
		d.msgLen += length
	case ws.OpText, ws.OpBinary:
		d.msgOp = op
		d.msgLen = length
		d.utf8 = UTF8Accept
		if h[0]&rsv1Bit != 0 {
			d.flags |= flagCompressed
		}
	}
	d.op = op
	if h[0]&finBit != 0 {
		d.flags |= flagFin
	} else {
		d.flags &^= flagFin
	}
	d.rem = length
	d.maskOff = 0
	copy(d.mask[:], h[len(h)-4:])
}

// payload unmasks and buffers the next chunk of the current frame's payload,
// which does not go past its end.
func (d *Decoder) payload(chunk []byte) *ProtocolError {
	var dst []byte
	if d.op >= ws.OpClose {
		if d.ctl == nil {
			d.ctl = pool.Get(int(d.rem))
		}
		n := len(d.ctl.B)
		d.ctl.B = append(d.ctl.B, chunk...)
		dst = d.ctl.B[n:]
	} else {
		dst = d.msgSpace(len(chunk))
		copy(dst, chunk)
	}
	ws.Cipher(dst, d.mask, int(d.maskOff))
	d.maskOff = uint8((int(d.maskOff) + len(chunk)) & 3)
	d.rem -= int64(len(chunk))
	if d.op < ws.OpClose {
		return d.checkText(dst)
	}
	return nil
}

// msgSpace extends the message buffer by k bytes and returns them. A new or
// outgrown buffer gets room for twice what has arrived (at least eagerBytes),
// capped by the end of the message when this frame is its last, and by the
// message limit. A compressed message's buffer also has room for the bytes
// inflate appends.
func (d *Decoder) msgSpace(k int) []byte {
	b := d.msg
	n := 0
	if b != nil {
		n = len(b.B)
	}
	if b == nil || n+k > cap(b.B) {
		need := int64(n + k)
		want := max(2*need, eagerBytes)
		if d.flags&flagFin != 0 {
			want = min(want, int64(n)+d.rem)
		}
		_, maxMsg := d.cfg.limits()
		extra := int64(0)
		if d.flags&flagCompressed != 0 {
			maxMsg = compressedLimit(maxMsg)
			extra = int64(len(deflateTail))
		}
		want = max(min(want, maxMsg), need) + extra
		nb := pool.Get(int(want))
		if b != nil {
			nb.B = append(nb.B, b.B...)
			pool.Put(b)
		}
		d.msg, b = nb, nb
	}
	b.B = b.B[:n+k]
	return b.B[n:]
}

// checkText validates the next unmasked bytes of a data frame when the
// message is uncompressed text.
func (d *Decoder) checkText(p []byte) *ProtocolError {
	if d.msgOp != ws.OpText || d.flags&flagCompressed != 0 {
		return nil
	}
	s, ok := ValidateUTF8(d.utf8, p)
	d.utf8 = s
	if !ok {
		return ErrInvalidUTF8
	}
	return nil
}

// complete finishes a control frame, or the last frame of a message, whose
// whole payload is p, and returns the event's opcode and Compressed flag. A
// compressed message is still to be inflated (inflate).
func (d *Decoder) complete(p []byte) (ws.OpCode, bool, *ProtocolError) {
	if d.op >= ws.OpClose {
		if d.op == ws.OpClose {
			if _, _, e := parseClose(p); e != nil {
				return 0, false, e
			}
		}
		return d.op, false, nil
	}
	if d.utf8 != UTF8Accept {
		return 0, false, ErrInvalidUTF8 // the text ends inside a character
	}
	op, compressed := d.msgOp, d.flags&flagCompressed != 0
	d.msgOp = 0
	d.msgLen = 0
	d.flags &^= flagCompressed
	return op, compressed, nil
}
