package nats

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
)

func TestCheckTopic(t *testing.T) {
	for _, tc := range []struct {
		topic string
		rule  string // "" when valid; else a part of the rule named
	}{
		{"S0", ""},
		{"prices.S0", ""},
		{"prices.eu.EUR-USD_1", ""},
		{"a$b", ""}, // '$' only reserved at a token's start
		{strings.Repeat("x", broadcast.MaxTopicLen), ""},
		{"", "empty"},
		{strings.Repeat("x", broadcast.MaxTopicLen+1), "longer than 256"},
		{"a b", "printable ASCII without spaces"},
		{"a\tb", "printable ASCII without spaces"},
		{"a\x00", "printable ASCII without spaces"},
		{"é", "printable ASCII without spaces"},
		{"a*", "wildcards"},
		{"a.>", "wildcards"},
		{"a>b", "wildcards"},
		{".a", "no leading or double dot"},
		{"a..b", "no leading or double dot"},
		{"a.", "no trailing dot"},
		{".", "no leading or double dot"},
		{"$batch", "begin with '$'"},
		{"a.$b", "begin with '$'"},
	} {
		err := CheckTopic(tc.topic)
		if tc.rule == "" {
			if err != nil {
				t.Errorf("CheckTopic(%q) = %v, want nil", tc.topic, err)
			}
			if checkTopicBytes([]byte(tc.topic)) != nil {
				t.Errorf("checkTopicBytes(%q) refuses a valid topic", tc.topic)
			}
			continue
		}
		var te *TopicError
		if !errors.As(err, &te) || te.Topic != tc.topic || !strings.Contains(err.Error(), tc.rule) {
			t.Errorf("CheckTopic(%q) = %v, want a *TopicError naming %q", tc.topic, err, tc.rule)
		}
		if got := checkTopicBytes([]byte(tc.topic)); got == nil || got.Error() != err.Error() {
			t.Errorf("checkTopicBytes(%q) = %v, want %v", tc.topic, got, err)
		}
	}
}

func TestSubjects(t *testing.T) {
	s := newSubjects("herald")
	for _, tc := range []struct{ topic, subject, group, batch string }{
		{"S0", "herald.S0", "", "herald.$batch"},
		{"prices.S0", "herald.prices.S0", "prices", "herald.$batch.prices"},
		{"prices.eu.S0", "herald.prices.eu.S0", "prices.eu", "herald.$batch.prices.eu"},
	} {
		if got := s.topic(tc.topic); got != tc.subject {
			t.Errorf("subject of %q = %q, want %q", tc.topic, got, tc.subject)
		}
		if got := s.topicOf(tc.subject); got != tc.topic {
			t.Errorf("topic of %q = %q, want %q", tc.subject, got, tc.topic)
		}
		if g := group(tc.topic); g != tc.group || s.groupBatch(g) != tc.batch {
			t.Errorf("group of %q = %q (%q), want %q (%q)", tc.topic, g, s.groupBatch(g), tc.group, tc.batch)
		}
	}
	if got := s.topicOf("other.S0"); got != "" {
		t.Errorf("topicOf outside the prefix = %q", got)
	}
}

func encodeBatch(msgs []broadcast.Message) []byte {
	var p []byte
	for i := range msgs {
		p = appendEntry(p, &msgs[i])
	}
	return p
}

func decodeAll(p []byte) ([]broadcast.Message, error) {
	var got []broadcast.Message
	err := decodeBatch(p, func(typ engine.MessageType, topic, data []byte) {
		got = append(got, broadcast.Message{Topic: string(topic), Type: typ, Data: data})
	})
	return got, err
}

func TestBatchRoundTrip(t *testing.T) {
	msgs := []broadcast.Message{
		{Topic: "S0", Type: engine.TextMessage, Data: []byte(`{"sym":"S0"}`)},
		{Topic: "prices.S1", Type: engine.BinaryMessage, Data: []byte{0, 0xff, 1}},
		{Topic: "S0", Type: engine.TextMessage, Data: nil},
		{Topic: strings.Repeat("t", 256), Type: engine.BinaryMessage, Data: bytes.Repeat([]byte{7}, 70000)},
	}
	p := encodeBatch(msgs)
	size := 0
	for i := range msgs {
		size += entrySize(&msgs[i])
	}
	if len(p) != size {
		t.Fatalf("encoded %d bytes, entrySize says %d", len(p), size)
	}
	// The documented layout of the first entry, byte by byte.
	want := append([]byte{1, 0, 2, 'S', '0', 0, 0, 0, 12}, `{"sym":"S0"}`...)
	if !bytes.HasPrefix(p, want) {
		t.Fatalf("first entry % x, want % x", p[:len(want)], want)
	}
	got, err := decodeAll(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(msgs) {
		t.Fatalf("decoded %d entries, want %d", len(got), len(msgs))
	}
	for i := range msgs {
		if got[i].Topic != msgs[i].Topic || got[i].Type != msgs[i].Type || !bytes.Equal(got[i].Data, msgs[i].Data) {
			t.Fatalf("entry %d: got %q %v %d bytes, want %q %v %d bytes", i,
				got[i].Topic, got[i].Type, len(got[i].Data), msgs[i].Topic, msgs[i].Type, len(msgs[i].Data))
		}
	}
}

func TestDecodeBatchRefuses(t *testing.T) {
	good := encodeBatch([]broadcast.Message{{Topic: "a", Type: engine.TextMessage, Data: []byte("x")}})
	for _, tc := range []struct {
		name string
		p    []byte
		rule string
	}{
		{"empty", nil, "at least one entry"},
		{"truncated header", []byte{1, 0}, "truncated entry header"},
		{"unknown type", []byte{3, 0, 1, 'a', 0, 0, 0, 0}, "neither 1 (text) nor 2 (binary)"},
		{"type zero", []byte{0, 0, 1, 'a', 0, 0, 0, 0}, "neither 1 (text) nor 2 (binary)"},
		{"topic past end", []byte{1, 0, 9, 'a'}, "topic runs past the end"},
		{"empty topic", []byte{1, 0, 0, 0, 0, 0, 0}, "empty"},
		{"wildcard topic", []byte{1, 0, 1, '*', 0, 0, 0, 0}, "wildcards"},
		{"reserved topic", []byte{1, 0, 2, '$', 'b', 0, 0, 0, 0}, "'$'"},
		{"truncated data length", []byte{1, 0, 1, 'a', 0, 0}, "truncated data length"},
		{"data past end", []byte{1, 0, 1, 'a', 0, 0, 0, 5, 'x'}, "data runs past the end"},
		{"huge data length", []byte{1, 0, 1, 'a', 0xff, 0xff, 0xff, 0xff}, "data runs past the end"},
		{"bad UTF-8 text", []byte{1, 0, 1, 'a', 0, 0, 0, 1, 0xff}, "not valid UTF-8"},
		{"good then trailing byte", append(good[:len(good):len(good)], 1), "truncated entry header"},
		{"good then bad", append(good[:len(good):len(good)], 9, 0, 1, 'a', 0, 0, 0, 0), "neither 1"},
	} {
		calls := 0
		err := decodeBatch(tc.p, func(engine.MessageType, []byte, []byte) { calls++ })
		var be *BatchError
		if !errors.As(err, &be) || !strings.Contains(err.Error(), tc.rule) {
			t.Errorf("%s: %v, want a *BatchError naming %q", tc.name, err, tc.rule)
		}
		if calls != 0 {
			t.Errorf("%s: %d entries handed over from a refused batch, want none", tc.name, calls)
		}
	}
	// A binary entry may carry anything.
	if _, err := decodeAll([]byte{2, 0, 1, 'a', 0, 0, 0, 1, 0xff}); err != nil {
		t.Errorf("binary entry with non-UTF-8 data: %v", err)
	}
}
