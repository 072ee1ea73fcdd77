package nats

import (
	"fmt"

	"github.com/heraldws/herald/nats/internal/wire"
)

// Headers of the wire format (NATS headers are case-sensitive). A message
// without headers is a single text message.
const (
	// HeaderType marks a single message's type: "text" (the default when
	// absent) or "binary".
	HeaderType = wire.HeaderType
	// HeaderBatch marks a batch: the payload is a sequence of entries in
	// the encoding whose version is the header's value ("1").
	HeaderBatch = wire.HeaderBatch
)

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
	if rule := wire.TopicRule(topic); rule != "" {
		return &TopicError{Topic: topic, Rule: rule}
	}
	return nil
}
