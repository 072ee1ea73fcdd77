// Package wire is the NATS Bus's wire format, as the nats package documents
// it: how topics map to subjects, and the batch encoding. It depends on
// nothing of herald's, so its fuzz target builds and runs on its own.
package wire

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Header names and values (NATS headers are case-sensitive). A message
// without headers is a single text message.
const (
	HeaderType   = "Herald-Type"  // a single message's type: TypeText (default) or TypeBinary
	HeaderBatch  = "Herald-Batch" // marks a batch; its value is the encoding's version
	TypeText     = "text"
	TypeBinary   = "binary"
	BatchVersion = "1"
)

// MaxTopicLen is the longest topic, in bytes: broadcast.MaxTopicLen (the
// nats package's tests check that they agree).
const MaxTopicLen = 256

// batchToken is the subject token under the prefix that batches of several
// topics travel on. No topic token may begin with '$', so no topic's
// subject can be a batch subject.
const batchToken = "$batch"

// Entry types in a batch: the WebSocket opcodes of text and binary.
const (
	entryText   = 1
	entryBinary = 2
)

// EntryOverhead is an entry's bytes besides its topic and data: type (1),
// topic length (2), data length (4).
const EntryOverhead = 7

// TopicRule returns the rule topic breaks as a subject, or "" if it can be
// one. A topic maps to prefix + "." + topic with its dots as token
// separators, so it is 1 to MaxTopicLen bytes of printable ASCII without
// spaces, made of tokens separated by single dots, none empty, none
// containing the wildcards '*' or '>', none beginning with '$'.
func TopicRule(topic string) string {
	switch {
	case topic == "":
		return "it is empty"
	case len(topic) > MaxTopicLen:
		return fmt.Sprintf("it is longer than %d bytes", MaxTopicLen)
	}
	tokenStart := true
	for i := 0; i < len(topic); i++ {
		c := topic[i]
		switch {
		case c <= ' ' || c >= 0x7f:
			return "only printable ASCII without spaces is allowed"
		case c == '*' || c == '>':
			return "'*' and '>' are NATS wildcards"
		case c == '.' && tokenStart:
			return "a dot separates two non-empty tokens (no leading or double dot)"
		case c == '$' && tokenStart:
			return "a token may not begin with '$', reserved for the bus's batch subjects"
		}
		tokenStart = c == '.'
	}
	if tokenStart {
		return "a dot separates two non-empty tokens (no trailing dot)"
	}
	return ""
}

// topicRuleBytes is TopicRule on bytes, without making a string unless the
// topic is bad.
func topicRuleBytes(topic []byte) string {
	if len(topic) == 0 || len(topic) > MaxTopicLen {
		return TopicRule(string(topic))
	}
	tokenStart := true
	for _, c := range topic {
		if c <= ' ' || c >= 0x7f || c == '*' || c == '>' || (tokenStart && (c == '.' || c == '$')) {
			return TopicRule(string(topic))
		}
		tokenStart = c == '.'
	}
	if tokenStart {
		return TopicRule(string(topic))
	}
	return ""
}

// Subjects maps topics to subjects under one prefix.
type Subjects struct {
	prefix string // "herald.": the prefix and its separating dot
	batch  string // "herald.$batch": the batch subject of the root group
}

// NewSubjects returns the subjects under prefix, which must pass TopicRule.
func NewSubjects(prefix string) Subjects {
	return Subjects{prefix: prefix + ".", batch: prefix + "." + batchToken}
}

// All is the wildcard subject of every topic and batch under the prefix.
func (s Subjects) All() string { return s.prefix + ">" }

// Topic returns the subject single messages of topic travel on.
func (s Subjects) Topic(topic string) string { return s.prefix + topic }

// GroupBatch returns the subject that batches of several topics of group g
// travel on: prefix.$batch for the root group, prefix.$batch.<g> for
// others.
func (s Subjects) GroupBatch(g string) string {
	if g == "" {
		return s.batch
	}
	return s.batch + "." + g
}

// TopicOf returns the topic a subject under the prefix names, or "" if it
// is not under the prefix.
func (s Subjects) TopicOf(subject string) string {
	if !strings.HasPrefix(subject, s.prefix) {
		return ""
	}
	return subject[len(s.prefix):]
}

// Group returns the group of a topic: all its tokens but the last
// ("prices.eu" for "prices.eu.S0", "" for "S0").
func Group(topic string) string {
	if i := strings.LastIndexByte(topic, '.'); i >= 0 {
		return topic[:i]
	}
	return ""
}

// BatchError is why a batch payload cannot be decoded.
type BatchError struct {
	Offset int // where in the payload the fault is
	Rule   string
}

func (e *BatchError) Error() string {
	return fmt.Sprintf("herald/nats: bad batch at byte %d: %s", e.Offset, e.Rule)
}

// AppendEntry appends one batch entry:
//
//	type (1 byte: 1 text, 2 binary) | topic length (2 bytes, big-endian) |
//	topic | data length (4 bytes, big-endian) | data
//
// The topic must pass TopicRule and data be shorter than 4 GiB.
func AppendEntry(dst []byte, topic string, binaryData bool, data []byte) []byte {
	typ := byte(entryText)
	if binaryData {
		typ = entryBinary
	}
	dst = append(dst, typ)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(topic)))
	dst = append(dst, topic...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(data)))
	return append(dst, data...)
}

// EntrySize is the encoded size of an entry.
func EntrySize(topic string, data []byte) int { return EntryOverhead + len(topic) + len(data) }

// DecodeBatch calls fn with each entry of a batch payload, in order, after
// checking the whole payload: either every entry is well formed and fn
// sees them all, or it sees none and the *BatchError says what is wrong.
// Topics must pass TopicRule and text be valid UTF-8, as the hub would
// refuse them. An entry's topic and data alias p; the topic comes as bytes
// so that the caller decides whether it needs a string.
func DecodeBatch(p []byte, fn func(binaryData bool, topic, data []byte)) error {
	if len(p) == 0 {
		return &BatchError{0, "a batch has at least one entry"}
	}
	for pass := 0; pass < 2; pass++ {
		for off := 0; off < len(p); {
			bin, topic, data, next, err := readEntry(p, off)
			if err != nil {
				return err
			}
			if pass == 1 {
				fn(bin, topic, data)
			}
			off = next
		}
	}
	return nil
}

// readEntry reads the entry at p[off:] and returns where the next begins.
func readEntry(p []byte, off int) (bin bool, topic, data []byte, next int, err error) {
	rest := p[off:]
	if len(rest) < 3 {
		return false, nil, nil, 0, &BatchError{off, "truncated entry header"}
	}
	switch rest[0] {
	case entryText:
	case entryBinary:
		bin = true
	default:
		return false, nil, nil, 0, &BatchError{off, fmt.Sprintf("entry type %d is neither 1 (text) nor 2 (binary)", rest[0])}
	}
	n := int(binary.BigEndian.Uint16(rest[1:3]))
	rest = rest[3:]
	if n > len(rest) {
		return false, nil, nil, 0, &BatchError{off, "topic runs past the end"}
	}
	topic = rest[:n]
	if rule := topicRuleBytes(topic); rule != "" {
		return false, nil, nil, 0, &BatchError{off, fmt.Sprintf("topic %q: %s", topic, rule)}
	}
	rest = rest[n:]
	if len(rest) < 4 {
		return false, nil, nil, 0, &BatchError{off, "truncated data length"}
	}
	d := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	if uint64(d) > uint64(len(rest)) {
		return false, nil, nil, 0, &BatchError{off, "data runs past the end"}
	}
	data = rest[:d]
	if !bin && !utf8.Valid(data) {
		return false, nil, nil, 0, &BatchError{off, "text entry is not valid UTF-8"}
	}
	return bin, topic, data, off + EntryOverhead + n + int(d), nil
}
