package resume

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
)

// Client message types.
const (
	TypeSubscribe   = "subscribe"
	TypeUnsubscribe = "unsubscribe"
	TypePing        = "ping"
)

// Limits of a client message's fields.
const (
	// MaxID is the largest request id: 2^53-1, exact in JavaScript.
	MaxID = 1<<53 - 1
	// MaxEpoch is the longest epoch, in bytes.
	MaxEpoch = 64
)

// Request is a decoded client message.
type Request struct {
	Type  string              // TypeSubscribe, TypeUnsubscribe or TypePing
	ID    uint64              // 0 when absent
	Topic string              // for subscribe and unsubscribe
	Since *broadcast.Position // for subscribe, when given
}

// ErrNotProtocol is what DecodeRequest returns for a message that is not
// one of the protocol's client messages: not a JSON object, without a
// string "type", or of another type. It belongs to the application.
var ErrNotProtocol = errors.New("resume: not a protocol message")

// wireRequest is a client message as JSON has it. Pointers tell absent
// members from zero ones; integers are parsed from their raw text, exact,
// and strings ("1") or fractions refused.
type wireRequest struct {
	Type  *string          `json:"type"`
	ID    *json.RawMessage `json:"id"`
	Topic *string          `json:"topic"`
	Since *struct {
		Epoch  *string          `json:"epoch"`
		Offset *json.RawMessage `json:"offset"`
	} `json:"since"`
}

// probe reads the type of a message only.
type probe struct {
	Type *string `json:"type"`
}

// DecodeRequest decodes a client message. A message that is not a protocol
// message gets ErrNotProtocol; a protocol message with a bad member gets an
// error that says which (a bad_request reply).
func DecodeRequest(data []byte) (Request, error) {
	var r Request
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' || !utf8.Valid(data) {
		return r, ErrNotProtocol
	}
	var p probe
	if err := json.Unmarshal(data, &p); err != nil || p.Type == nil {
		// Not JSON, or no string "type": not ours. A JSON object with a
		// "type" of another JSON type fails here too.
		return r, ErrNotProtocol
	}
	switch *p.Type {
	case TypeSubscribe, TypeUnsubscribe, TypePing:
	default:
		return r, ErrNotProtocol
	}
	r.Type = *p.Type
	var w wireRequest
	if err := json.Unmarshal(data, &w); err != nil {
		return r, fmt.Errorf("malformed %s: %v", r.Type, jsonError(err))
	}
	if w.ID != nil {
		id, err := strconv.ParseUint(string(*w.ID), 10, 64)
		if err != nil || id == 0 || id > MaxID {
			return r, fmt.Errorf("id must be an integer from 1 to 2^53-1, not %s", *w.ID)
		}
		r.ID = id
	}
	if r.Type == TypePing {
		return r, nil
	}
	if w.Topic == nil {
		return r, fmt.Errorf("%s without a topic", r.Type)
	}
	if !broadcast.ValidTopic(*w.Topic) {
		return r, fmt.Errorf("invalid topic %q: 1 to %d bytes of printable ASCII without spaces", clip(*w.Topic), broadcast.MaxTopicLen)
	}
	r.Topic = *w.Topic
	if r.Type == TypeUnsubscribe || w.Since == nil {
		return r, nil
	}
	s := w.Since
	if s.Epoch == nil || s.Offset == nil {
		return r, errors.New("since needs an epoch and an offset")
	}
	if len(*s.Epoch) > MaxEpoch {
		return r, fmt.Errorf("epoch is over %d bytes", MaxEpoch)
	}
	off, err := strconv.ParseUint(string(*s.Offset), 10, 64)
	if err != nil || off > MaxID {
		return r, fmt.Errorf("offset must be an integer from 0 to 2^53-1, not %s", clip(string(*s.Offset)))
	}
	r.Since = &broadcast.Position{Epoch: *s.Epoch, Offset: off}
	return r, nil
}

// jsonError shortens encoding/json's errors to what a client needs.
func jsonError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("member %q must be %s", te.Field, wantType(te.Field))
	}
	return err.Error()
}

func wantType(field string) string {
	if field == "since" {
		return "an object"
	}
	return "a string"
}

// clip shortens what an error reply quotes from the request.
func clip(s string) string {
	if len(s) > 64 {
		s = s[:64]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		return s + "…"
	}
	return s
}

// AppendRequest appends r as JSON: what a client sends.
func AppendRequest(dst []byte, r Request) []byte {
	dst = append(dst, `{"type":`...)
	dst = appendString(dst, r.Type)
	if r.ID != 0 {
		dst = append(dst, `,"id":`...)
		dst = strconv.AppendUint(dst, r.ID, 10)
	}
	if r.Topic != "" {
		dst = append(dst, `,"topic":`...)
		dst = appendString(dst, r.Topic)
	}
	if r.Since != nil {
		dst = append(dst, `,"since":{"epoch":`...)
		dst = appendString(dst, r.Since.Epoch)
		dst = append(dst, `,"offset":`...)
		dst = strconv.AppendUint(dst, r.Since.Offset, 10)
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// Envelope is the protocol's broadcast.Envelope: a publication,
// {"type":"pub","topic":…,"epoch":…,"offset":…,"data":…}. A text message
// that is JSON goes in "data" as it is; other text, as a JSON string;
// binary, base64 in "b64".
func Envelope(dst []byte, m *broadcast.Message, pos broadcast.Position) []byte {
	dst = append(dst, `{"type":"pub","topic":`...)
	dst = appendString(dst, m.Topic)
	if pos.Epoch != "" {
		dst = append(dst, `,"epoch":`...)
		dst = appendString(dst, pos.Epoch)
		dst = append(dst, `,"offset":`...)
		dst = strconv.AppendUint(dst, pos.Offset, 10)
	}
	switch {
	case m.Type == engine.BinaryMessage:
		dst = append(dst, `,"b64":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, m.Data)
		dst = append(dst, '"')
	case json.Valid(m.Data):
		dst = append(dst, `,"data":`...)
		dst = append(dst, bytes.TrimSpace(m.Data)...)
	default:
		dst = append(dst, `,"data":`...)
		dst = appendString(dst, string(m.Data))
	}
	return append(dst, '}')
}

// appendString appends s as a JSON string. s is valid UTF-8 (topics are
// ASCII, text payloads were validated).
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b >= 0x20 && b != '"' && b != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch b {
		case '"', '\\':
			dst = append(dst, '\\', b)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
