package nats

import (
	"errors"
	"strings"
	"testing"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/nats/internal/wire"
)

// Every topic that can cross the bus is a topic the hub accepts, so a
// delivery from the broker is never refused by the hub for its topic.
func TestTopicRulesWithinTheHub(t *testing.T) {
	if wire.MaxTopicLen != broadcast.MaxTopicLen {
		t.Fatalf("wire.MaxTopicLen %d, broadcast.MaxTopicLen %d", wire.MaxTopicLen, broadcast.MaxTopicLen)
	}
	topics := []string{"", strings.Repeat("x", 256), strings.Repeat("x", 257), "a.b", "é"}
	for c := 0; c < 256; c++ {
		topics = append(topics, string([]byte{byte(c)}), "a"+string([]byte{byte(c)})+"b")
	}
	for _, topic := range topics {
		if CheckTopic(topic) == nil && !broadcast.ValidTopic(topic) {
			t.Errorf("%q crosses the bus but the hub refuses it", topic)
		}
	}
}

func TestCheckTopicNamesTheRule(t *testing.T) {
	if err := CheckTopic("prices.S0"); err != nil {
		t.Fatal(err)
	}
	err := CheckTopic("prices..S0")
	var te *TopicError
	if !errors.As(err, &te) || te.Topic != "prices..S0" || te.Rule != wire.TopicRule("prices..S0") ||
		!strings.Contains(err.Error(), "double dot") {
		t.Fatalf("CheckTopic(\"prices..S0\") = %v, want a *TopicError naming the rule", err)
	}
}
