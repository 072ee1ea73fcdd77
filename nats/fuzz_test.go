package nats

import (
	"bytes"
	"testing"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
)

// FuzzDecodeBatch feeds the batch decoder arbitrary payloads, as any NATS
// client may publish them: it must never panic nor hand over an entry of a
// payload it refuses, and what it accepts must encode back to the same
// bytes with every entry valid for the hub.
func FuzzDecodeBatch(f *testing.F) {
	f.Add(encodeBatch([]broadcast.Message{{Topic: "S0", Type: engine.TextMessage, Data: []byte(`{"seq":1}`)}}))
	f.Add(encodeBatch([]broadcast.Message{
		{Topic: "prices.S0", Type: engine.TextMessage, Data: []byte("a")},
		{Topic: "prices.S1", Type: engine.BinaryMessage, Data: []byte{0xff, 0}},
	}))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 1, 'a', 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{1, 0xff, 0xff, 'a'})
	f.Fuzz(func(t *testing.T, p []byte) {
		var got []broadcast.Message
		err := decodeBatch(p, func(typ engine.MessageType, topic, data []byte) {
			got = append(got, broadcast.Message{Topic: string(topic), Type: typ, Data: data})
		})
		if err != nil {
			if len(got) != 0 {
				t.Fatalf("%d entries handed over from a refused payload", len(got))
			}
			return
		}
		if len(got) == 0 {
			t.Fatal("an accepted payload without entries")
		}
		for _, m := range got {
			if CheckTopic(m.Topic) != nil || !broadcast.ValidTopic(m.Topic) {
				t.Fatalf("accepted topic %q", m.Topic)
			}
		}
		if again := encodeBatch(got); !bytes.Equal(again, p) {
			t.Fatalf("re-encoded %x, decoded from %x", again, p)
		}
	})
}
