package nats

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
)

// Header names and values of the wire format (NATS headers are
// case-sensitive). A message without headers is a single text message.
const (
	// HeaderType marks a single message's type: "text" (the default when
	// absent) or "binary".
	HeaderType = "Herald-Type"
	// HeaderBatch marks a batch: the payload is a sequence of entries in
	// the encoding whose version is the header's value ("1").
	HeaderBatch = "Herald-Batch"

	typeText     = "text"
	typeBinary   = "binary"
	batchVersion = "1"
)

// batchToken is the subject token under the prefix that batches of several
// topics travel on. Topics may not have a token that begins with '$', so no
// topic's subject can be a batch subject.
const batchToken = "$batch"

// Entry types in a batch: the WebSocket opcodes of text and binary.
const (
	entryText   = 1
	entryBinary = 2
)

// entryOverhead is an entry's bytes besides its topic and data: type (1),
// topic length (2), data length (4).
const entryOverhead = 7

// maxEntryData is the largest data an entry can carry (its length is 32
// bits); NATS's max_payload is far below it anyway.
const maxEntryData = 1<<32 - 1

// TopicError is why a topic cannot cross the bus: the rule it breaks.
type TopicError struct {
	Topic string
	Rule  string
}

func (e *TopicError) Error() string {
	return fmt.Sprintf("herald/nats: topic %q cannot be a NATS subject: %s", e.Topic, e.Rule)
}

// CheckTopic returns a *TopicError if topic cannot cross the bus, naming
// the rule it breaks, or nil. A topic maps to the subject prefix + "." +
// topic, with its dots as NATS token separators ("prices.S0" is two
// tokens, so subscribers of "herald.prices.>" get it). So a topic is a
// valid hub topic (1 to 256 bytes of printable ASCII without spaces) made
// of one or more tokens separated by single dots, where no token is empty
// (no leading, trailing or double dot), none contains the NATS wildcards
// '*' or '>', and none begins with '$', which the bus reserves for its
// batch subjects.
func CheckTopic(topic string) error {
	switch {
	case topic == "":
		return &TopicError{topic, "it is empty"}
	case len(topic) > broadcast.MaxTopicLen:
		return &TopicError{topic, fmt.Sprintf("it is longer than %d bytes", broadcast.MaxTopicLen)}
	}
	tokenStart := true
	for i := 0; i < len(topic); i++ {
		c := topic[i]
		switch {
		case c <= ' ' || c >= 0x7f:
			return &TopicError{topic, "only printable ASCII without spaces is allowed"}
		case c == '*' || c == '>':
			return &TopicError{topic, "'*' and '>' are NATS wildcards"}
		case c == '.' && tokenStart:
			return &TopicError{topic, "a dot separates two non-empty tokens (no leading or double dot)"}
		case c == '$' && tokenStart:
			return &TopicError{topic, "a token may not begin with '$', reserved for the bus's batch subjects"}
		}
		tokenStart = c == '.'
	}
	if tokenStart {
		return &TopicError{topic, "a dot separates two non-empty tokens (no trailing dot)"}
	}
	return nil
}

// subjects maps topics to subjects under one prefix.
type subjects struct {
	prefix string // "herald.": the prefix and its separating dot
	batch  string // "herald.$batch": the batch subject of the root group
}

func newSubjects(prefix string) subjects {
	return subjects{prefix: prefix + ".", batch: prefix + "." + batchToken}
}

// topic returns the subject single messages of topic travel on.
func (s subjects) topic(topic string) string { return s.prefix + topic }

// group returns the group of a topic: all its tokens but the last
// ("prices.eu" for "prices.eu.S0", "" for "S0"). A batch of several topics
// travels on its group's batch subject.
func group(topic string) string {
	if i := strings.LastIndexByte(topic, '.'); i >= 0 {
		return topic[:i]
	}
	return ""
}

// groupBatch returns the subject that batches of several topics of group g
// travel on: prefix.$batch for the root group, prefix.$batch.<g> for others.
func (s subjects) groupBatch(g string) string {
	if g == "" {
		return s.batch
	}
	return s.batch + "." + g
}

// topicOf returns the topic a subject under the prefix names, or "" if it
// is not under the prefix.
func (s subjects) topicOf(subject string) string {
	if !strings.HasPrefix(subject, s.prefix) {
		return ""
	}
	return subject[len(s.prefix):]
}

// BatchError is why a batch payload cannot be decoded.
type BatchError struct {
	Offset int // where in the payload the fault is
	Rule   string
}

func (e *BatchError) Error() string {
	return fmt.Sprintf("herald/nats: bad batch at byte %d: %s", e.Offset, e.Rule)
}

// errEmptyBatch is a batch without entries.
var errEmptyBatch = &BatchError{0, "a batch has at least one entry"}

// appendEntry appends one batch entry:
//
//	type (1 byte: 1 text, 2 binary) | topic length (2 bytes, big-endian) |
//	topic | data length (4 bytes, big-endian) | data
func appendEntry(dst []byte, m *broadcast.Message) []byte {
	typ := byte(entryText)
	if m.Type == engine.BinaryMessage {
		typ = entryBinary
	}
	dst = append(dst, typ)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.Topic)))
	dst = append(dst, m.Topic...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(m.Data)))
	return append(dst, m.Data...)
}

// entrySize is the encoded size of m as a batch entry.
func entrySize(m *broadcast.Message) int { return entryOverhead + len(m.Topic) + len(m.Data) }

// decodeBatch calls fn with each entry of a batch payload, in order, after
// checking the whole payload: either every entry is well formed and fn sees
// them all, or it sees none and the error says what is wrong. An entry's
// topic and data alias p. Topics are checked with CheckTopic and text with
// utf8, as the hub would refuse them. The topic is passed as bytes so that
// the caller decides whether it needs a string.
func decodeBatch(p []byte, fn func(typ engine.MessageType, topic, data []byte)) error {
	if len(p) == 0 {
		return errEmptyBatch
	}
	for pass := 0; pass < 2; pass++ {
		for off := 0; off < len(p); {
			typ, topic, data, next, err := readEntry(p, off)
			if err != nil {
				return err
			}
			if pass == 1 {
				fn(typ, topic, data)
			}
			off = next
		}
	}
	return nil
}

// readEntry reads the entry at p[off:] and returns where the next begins.
func readEntry(p []byte, off int) (typ engine.MessageType, topic, data []byte, next int, err error) {
	rest := p[off:]
	if len(rest) < 3 {
		return 0, nil, nil, 0, &BatchError{off, "truncated entry header"}
	}
	switch rest[0] {
	case entryText:
		typ = engine.TextMessage
	case entryBinary:
		typ = engine.BinaryMessage
	default:
		return 0, nil, nil, 0, &BatchError{off, fmt.Sprintf("entry type %d is neither 1 (text) nor 2 (binary)", rest[0])}
	}
	n := int(binary.BigEndian.Uint16(rest[1:3]))
	rest = rest[3:]
	if n > len(rest) {
		return 0, nil, nil, 0, &BatchError{off, "topic runs past the end"}
	}
	topic = rest[:n]
	if err := checkTopicBytes(topic); err != nil {
		return 0, nil, nil, 0, &BatchError{off, err.Error()}
	}
	rest = rest[n:]
	if len(rest) < 4 {
		return 0, nil, nil, 0, &BatchError{off, "truncated data length"}
	}
	d := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	if uint64(d) > uint64(len(rest)) {
		return 0, nil, nil, 0, &BatchError{off, "data runs past the end"}
	}
	data = rest[:d]
	if typ == engine.TextMessage && !utf8.Valid(data) {
		return 0, nil, nil, 0, &BatchError{off, "text entry is not valid UTF-8"}
	}
	return typ, topic, data, off + entryOverhead + n + int(d), nil
}

// checkTopicBytes is CheckTopic on bytes, without making a string unless
// the topic is bad.
func checkTopicBytes(topic []byte) error {
	if len(topic) == 0 || len(topic) > broadcast.MaxTopicLen {
		return CheckTopic(string(topic))
	}
	tokenStart := true
	for _, c := range topic {
		if c <= ' ' || c >= 0x7f || c == '*' || c == '>' || (tokenStart && (c == '.' || c == '$')) {
			return CheckTopic(string(topic))
		}
		tokenStart = c == '.'
	}
	if tokenStart {
		return CheckTopic(string(topic))
	}
	return nil
}

// errNotUTF8 is a single text message that is not valid UTF-8.
var errNotUTF8 = errors.New("herald/nats: text message is not valid UTF-8")
