package codec

import "github.com/gobwas/ws"

// ProtocolError is a violation of RFC 6455 by the peer. Code is the status
// code the connection should be closed with and Reason a short description
// that fits in a close frame.
//
// The Decoder and ParseClose only ever return the predeclared values below,
// so callers may compare errors with == as well as with errors.As.
type ProtocolError struct {
	Code   ws.StatusCode // 1002 (protocol error), 1007 (invalid payload) or 1009 (too big)
	Reason string        // the rule that was broken, at most 123 bytes
}

// Error implements the error interface.
func (e *ProtocolError) Error() string {
	return "websocket: " + e.Reason
}

func protocolErr(reason string) *ProtocolError {
	return &ProtocolError{Code: ws.StatusProtocolError, Reason: reason}
}

// Errors returned by Decoder.Decode and ParseClose. Returning one of them
// allocates nothing.
var (
	// ErrUnmaskedFrame: a client frame without a mask (1002).
	ErrUnmaskedFrame = protocolErr("unmasked client frame")
	// ErrReservedBits: RSV2 or RSV3 set, or RSV1 set without a negotiated
	// extension that defines it (1002).
	ErrReservedBits = protocolErr("reserved bits set")
	// ErrMisplacedRSV1: RSV1 set on a continuation or control frame while
	// permessage-deflate is negotiated; it may only mark a message's first
	// frame (RFC 7692 6.1, 1002).
	ErrMisplacedRSV1 = protocolErr("rsv1 on a continuation or control frame")
	// ErrReservedOpcode: opcode 0x3-0x7 or 0xB-0xF (1002).
	ErrReservedOpcode = protocolErr("reserved opcode")
	// ErrControlFragmented: a control frame without FIN (1002).
	ErrControlFragmented = protocolErr("fragmented control frame")
	// ErrControlTooLong: a control frame payload over 125 bytes (1002).
	ErrControlTooLong = protocolErr("control frame payload over 125 bytes")
	// ErrUnexpectedContinuation: a continuation frame with no message in
	// progress (1002).
	ErrUnexpectedContinuation = protocolErr("continuation frame without a message")
	// ErrExpectedContinuation: a text or binary frame while a fragmented
	// message is in progress (1002).
	ErrExpectedContinuation = protocolErr("new data frame inside a fragmented message")
	// ErrLengthMSB: a 64-bit payload length with its most significant bit
	// set (1002).
	ErrLengthMSB = protocolErr("64-bit payload length with the high bit set")
	// ErrFrameTooBig: a data frame payload over DecoderConfig.MaxFrameBytes
	// (1009).
	ErrFrameTooBig = &ProtocolError{Code: ws.StatusMessageTooBig, Reason: "frame too big"}
	// ErrMessageTooBig: a message over DecoderConfig.MaxMessageBytes (1009).
	ErrMessageTooBig = &ProtocolError{Code: ws.StatusMessageTooBig, Reason: "message too big"}
	// ErrInvalidUTF8: a text message that is not valid UTF-8, compressed
	// or not (1007).
	ErrInvalidUTF8 = &ProtocolError{Code: ws.StatusInvalidFramePayloadData, Reason: "invalid utf-8 in text message"}
	// ErrInflatedTooBig: a compressed message that inflates to more than
	// DecoderConfig.MaxMessageBytes (1009), found while inflating: a
	// deflate bomb costs no more than the limit.
	ErrInflatedTooBig = &ProtocolError{Code: ws.StatusMessageTooBig, Reason: "inflated message too big"}
	// ErrInvalidDeflate: a compressed message whose payload is not valid
	// DEFLATE data or ends in the middle of a block (1007).
	ErrInvalidDeflate = &ProtocolError{Code: ws.StatusInvalidFramePayloadData, Reason: "invalid deflate data"}
	// ErrCloseOneByte: a close frame with a 1-byte payload (1002).
	ErrCloseOneByte = protocolErr("close frame payload of 1 byte")
	// ErrInvalidCloseCode: a close code that may not be sent (1002); see
	// ValidCloseCode.
	ErrInvalidCloseCode = protocolErr("invalid close code")
	// ErrInvalidCloseReason: a close reason that is not valid UTF-8 (1002).
	ErrInvalidCloseReason = protocolErr("invalid utf-8 in close reason")
)
