// Package codec is herald's WebSocket framing layer (RFC 6455): it turns the
// bytes a client sent into complete messages and control frames, and turns
// payloads into server frames. It also validates UTF-8 incrementally and
// parses and builds close frames.
//
// # Layering
//
// The package is framing only. It holds no connection state beyond what one
// Decoder needs to resume a frame, it does no I/O, it starts no goroutine and
// it knows nothing about the event loop, handshakes or handlers. The engine
// owns the connection: it feeds each Decoder the bytes that arrived, acts on
// the events (delivers messages, answers pings, echoes closes) and writes
// the frames this package encodes.
//
// # Compression
//
// permessage-deflate (RFC 7692) is supported in the one form that keeps
// nothing between messages: no context takeover on either side (package
// upgrade negotiates only that). A Decoder told that it was negotiated
// (Init, SetDeflate) inflates compressed messages (RSV1 on the first frame)
// when they complete, with a decompressor from a pool for that call only;
// MaxMessageBytes bounds the inflated size while inflating (a deflate bomb
// is refused with 1009 once it passes the limit), invalid DEFLATE data is
// 1007, and compressed text is checked for UTF-8 as it is inflated,
// stopping at the first bad byte (1007). AppendCompressedFrame compresses a
// message into a frame with a pooled compressor. The flate implementation
// is klauspost/compress's, chosen by measurement (deflate_bench_test.go).
//
// # Decoding
//
// A Decoder is a small value (well under 100 bytes) meant to be embedded in a
// per-connection struct. It accepts input split anywhere, down to one byte
// per call, and always consumes everything it is given, so the caller never
// keeps unread bytes around:
//
//   - a frame that arrives whole, and is a whole message or a control frame,
//     is unmasked in place and returned as a slice of the input: no copy, no
//     allocation;
//   - a header split across calls waits in a 14-byte array inside the Decoder;
//   - a payload split across calls, and every fragmented message, is copied
//     (already unmasked) into a buffer from herald's pool package that goes
//     back to the pool on the next Decode or Release call.
//
// An idle Decoder holds no buffer.
//
// Every rule of RFC 6455 that a server must enforce on client frames is
// checked, each with its close code (see ProtocolError): masking, reserved
// bits and opcodes, control frame limits, fragmentation order, size limits
// (checked from the header, before any payload is buffered) and UTF-8 in text
// messages and close reasons. Invalid UTF-8 fails fast, at the first byte
// that can never be valid, even in the middle of a frame whose remainder has
// not arrived. Each rule is checked as soon as the bytes it depends on have
// arrived, so the same input gives the same events and the same error however
// it is split. Lengths encoded in more bytes than needed are accepted: RFC
// 6455 asks senders for the minimal encoding but gives receivers no reason to
// refuse another, and the limits bound the value either way.
//
// # Encoding
//
// Server frames are never masked. AppendHeader, AppendFrame and PutHeader
// write into caller memory and never allocate; EncodeFrame returns a pooled
// buffer for callers that want one.
package codec
