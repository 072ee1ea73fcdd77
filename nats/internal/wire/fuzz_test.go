package wire

import (
	"bytes"
	"testing"
)

// FuzzDecodeBatch feeds the batch decoder arbitrary payloads, as any NATS
// client may publish them: it must never panic nor hand over an entry of a
// payload it refuses, and what it accepts must encode back to the same
// bytes with every topic valid.
func FuzzDecodeBatch(f *testing.F) {
	f.Add(encode([]entry{{"S0", false, []byte(`{"seq":1}`)}}))
	f.Add(encode([]entry{{"prices.S0", false, []byte("a")}, {"prices.S1", true, []byte{0xff, 0}}}))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 1, 'a', 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{1, 0xff, 0xff, 'a'})
	f.Fuzz(func(t *testing.T, p []byte) {
		got, err := decode(p)
		if err != nil {
			if len(got) != 0 {
				t.Fatalf("%d entries handed over from a refused payload", len(got))
			}
			return
		}
		if len(got) == 0 {
			t.Fatal("an accepted payload without entries")
		}
		for _, e := range got {
			if TopicRule(e.topic) != "" {
				t.Fatalf("accepted topic %q", e.topic)
			}
		}
		if again := encode(got); !bytes.Equal(again, p) {
			t.Fatalf("re-encoded %x, decoded from %x", again, p)
		}
	})
}
