package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestTopicRule(t *testing.T) {
	for _, tc := range []struct {
		topic string
		rule  string // "" when valid; else a part of the rule named
	}{
		{"S0", ""},
		{"prices.S0", ""},
		{"prices.eu.EUR-USD_1", ""},
		{"a$b", ""}, // '$' only reserved at a token's start
		{strings.Repeat("x", MaxTopicLen), ""},
		{"", "empty"},
		{strings.Repeat("x", MaxTopicLen+1), "longer than 256"},
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
		rule := TopicRule(tc.topic)
		if tc.rule == "" && rule != "" || !strings.Contains(rule, tc.rule) {
			t.Errorf("TopicRule(%q) = %q, want %q", tc.topic, rule, tc.rule)
		}
		if got := topicRuleBytes([]byte(tc.topic)); got != rule {
			t.Errorf("topicRuleBytes(%q) = %q, want %q as TopicRule", tc.topic, got, rule)
		}
	}
}

func TestSubjects(t *testing.T) {
	s := NewSubjects("herald")
	for _, tc := range []struct{ topic, subject, group, batch string }{
		{"S0", "herald.S0", "", "herald.$batch"},
		{"prices.S0", "herald.prices.S0", "prices", "herald.$batch.prices"},
		{"prices.eu.S0", "herald.prices.eu.S0", "prices.eu", "herald.$batch.prices.eu"},
	} {
		if got := s.Topic(tc.topic); got != tc.subject {
			t.Errorf("subject of %q = %q, want %q", tc.topic, got, tc.subject)
		}
		if got := s.TopicOf(tc.subject); got != tc.topic {
			t.Errorf("topic of %q = %q, want %q", tc.subject, got, tc.topic)
		}
		if g := Group(tc.topic); g != tc.group || s.GroupBatch(g) != tc.batch {
			t.Errorf("group of %q = %q (%q), want %q (%q)", tc.topic, g, s.GroupBatch(g), tc.group, tc.batch)
		}
	}
	if got := s.TopicOf("other.S0"); got != "" {
		t.Errorf("TopicOf outside the prefix = %q", got)
	}
	if got := s.All(); got != "herald.>" {
		t.Errorf("All = %q", got)
	}
}

// entry is a decoded batch entry.
type entry struct {
	topic  string
	binary bool
	data   []byte
}

func encode(es []entry) []byte {
	var p []byte
	for _, e := range es {
		p = AppendEntry(p, e.topic, e.binary, e.data)
	}
	return p
}

func decode(p []byte) ([]entry, error) {
	var got []entry
	err := DecodeBatch(p, func(binary bool, topic, data []byte) {
		got = append(got, entry{string(topic), binary, data})
	})
	return got, err
}

func TestBatchRoundTrip(t *testing.T) {
	es := []entry{
		{"S0", false, []byte(`{"sym":"S0"}`)},
		{"prices.S1", true, []byte{0, 0xff, 1}},
		{"S0", false, nil},
		{strings.Repeat("t", 256), true, bytes.Repeat([]byte{7}, 70000)},
	}
	p := encode(es)
	size := 0
	for _, e := range es {
		size += EntrySize(e.topic, e.data)
	}
	if len(p) != size {
		t.Fatalf("encoded %d bytes, EntrySize says %d", len(p), size)
	}
	// The documented layout of the first entry, byte by byte.
	want := append([]byte{1, 0, 2, 'S', '0', 0, 0, 0, 12}, `{"sym":"S0"}`...)
	if !bytes.HasPrefix(p, want) {
		t.Fatalf("first entry % x, want % x", p[:len(want)], want)
	}
	got, err := decode(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(es) {
		t.Fatalf("decoded %d entries, want %d", len(got), len(es))
	}
	for i := range es {
		if got[i].topic != es[i].topic || got[i].binary != es[i].binary || !bytes.Equal(got[i].data, es[i].data) {
			t.Fatalf("entry %d: got %q %t %d bytes, want %q %t %d bytes", i,
				got[i].topic, got[i].binary, len(got[i].data), es[i].topic, es[i].binary, len(es[i].data))
		}
	}
}

func TestDecodeBatchRefuses(t *testing.T) {
	good := encode([]entry{{"a", false, []byte("x")}})
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
		err := DecodeBatch(tc.p, func(bool, []byte, []byte) { calls++ })
		var be *BatchError
		if !errors.As(err, &be) || !strings.Contains(err.Error(), tc.rule) {
			t.Errorf("%s: %v, want a *BatchError naming %q", tc.name, err, tc.rule)
		}
		if calls != 0 {
			t.Errorf("%s: %d entries handed over from a refused batch, want none", tc.name, calls)
		}
	}
	// A binary entry may carry anything.
	if _, err := decode([]byte{2, 0, 1, 'a', 0, 0, 0, 1, 0xff}); err != nil {
		t.Errorf("binary entry with non-UTF-8 data: %v", err)
	}
}
