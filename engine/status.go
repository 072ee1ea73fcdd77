package engine

import (
	"errors"
	"strconv"

	"github.com/gobwas/ws"

	"github.com/heraldws/herald/codec"
)

// StatusCode is a WebSocket close code (RFC 6455 section 7.4), with the names
// of the IANA "WebSocket Close Code Number Registry".
type StatusCode int

// Close codes. The server sends 1000-1003 and 1007-1014 itself; 1005, 1006
// and 1015 only ever describe a close (CloseError.Code, CloseStatus) and are
// never sent.
const (
	StatusNormalClosure           StatusCode = 1000
	StatusGoingAway               StatusCode = 1001
	StatusProtocolError           StatusCode = 1002
	StatusUnsupportedData         StatusCode = 1003
	StatusNoStatusRcvd            StatusCode = 1005 // a close frame without a code
	StatusAbnormalClosure         StatusCode = 1006 // the connection ended without a close frame
	StatusInvalidFramePayloadData StatusCode = 1007
	StatusPolicyViolation         StatusCode = 1008
	StatusMessageTooBig           StatusCode = 1009
	StatusMandatoryExtension      StatusCode = 1010
	StatusInternalError           StatusCode = 1011
	StatusServiceRestart          StatusCode = 1012
	StatusTryAgainLater           StatusCode = 1013
	StatusBadGateway              StatusCode = 1014
	StatusTLSHandshake            StatusCode = 1015
)

var statusNames = map[StatusCode]string{
	StatusNormalClosure:           "NormalClosure",
	StatusGoingAway:               "GoingAway",
	StatusProtocolError:           "ProtocolError",
	StatusUnsupportedData:         "UnsupportedData",
	StatusNoStatusRcvd:            "NoStatusRcvd",
	StatusAbnormalClosure:         "AbnormalClosure",
	StatusInvalidFramePayloadData: "InvalidFramePayloadData",
	StatusPolicyViolation:         "PolicyViolation",
	StatusMessageTooBig:           "MessageTooBig",
	StatusMandatoryExtension:      "MandatoryExtension",
	StatusInternalError:           "InternalError",
	StatusServiceRestart:          "ServiceRestart",
	StatusTryAgainLater:           "TryAgainLater",
	StatusBadGateway:              "BadGateway",
	StatusTLSHandshake:            "TLSHandshake",
}

// String returns the registry name ("StatusGoingAway") or, for codes without
// one, "StatusCode(4001)".
func (c StatusCode) String() string {
	if name, ok := statusNames[c]; ok {
		return "Status" + name
	}
	return "StatusCode(" + strconv.Itoa(int(c)) + ")"
}

// Sendable reports whether c may be put in a close frame: 1000-1003, 1007-1014
// (registered for the protocol; 1004 is reserved and 1005, 1006 and 1015 only
// describe a close) and 3000-4999 (libraries, frameworks and applications).
func (c StatusCode) Sendable() bool {
	return c >= 0 && c <= 0xffff && codec.ValidCloseCode(ws.StatusCode(c))
}

// CloseStatus returns the close code of err if it is, or wraps, a
// *CloseError, and -1 otherwise: CloseStatus(err) == StatusGoingAway in an
// OnClose tells a client that left politely from one whose network went away.
func CloseStatus(err error) StatusCode {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

// MaxCloseReason is the longest close reason, in bytes: a control frame
// carries at most 125 bytes and the code takes 2.
const MaxCloseReason = ws.MaxControlFramePayloadSize - 2
