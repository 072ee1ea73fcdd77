// Package nats is a broadcast.Bus over a NATS broker: hubs on different
// processes or nodes that share a broker (and a subject prefix) form one
// cluster, and a publish on any of them reaches the subscribers of all.
//
//	bus, err := nats.Connect(nats.Options{URL: "nats://10.0.0.5:4222"})
//	hub, err := broadcast.New(srv, broadcast.Options{Bus: bus})
//
// It lives in its own module, so that a service that does not use NATS
// does not download its client.
//
// # Wire format
//
// Any backend can publish to herald subscribers with a plain NATS client
// (Go, Python, Node, the nats CLI), without linking herald.
//
// A topic travels on the subject Prefix + "." + topic ("herald.S0"). The
// topic's dots are NATS token separators: "prices.S0" travels on
// "herald.prices.S0", so a NATS subscriber of "herald.prices.>" sees it.
// A topic that cannot be a subject that way is refused with a *TopicError
// naming the rule (see CheckTopic): empty tokens, spaces and control
// characters, the wildcards '*' and '>', and tokens beginning with '$'
// (reserved for batches).
//
// A single message is the NATS message's payload, as is. The header
// Herald-Type says its type: "text" (the default when the header is
// absent; the payload must be valid UTF-8) or "binary". So
//
//	nats pub herald.S0 hello
//
// reaches every WebSocket subscribed to S0 as the text message "hello".
//
// A batch is several herald messages in one NATS message, marked by the
// header Herald-Batch: 1 (the encoding's version). Its payload is a
// sequence of one or more entries, nothing before, between or after them:
//
//	type         1 byte: 1 text, 2 binary (the WebSocket opcodes)
//	topic length 2 bytes, big-endian
//	topic        that many bytes
//	data length  4 bytes, big-endian
//	data         that many bytes
//
// A receiver takes a batch whole or not at all: an unknown version, a
// truncated entry, a bad topic or invalid UTF-8 text rejects the NATS
// message (Stats.Rejected, logged at most once a second).
//
// # Batches and interest
//
// One Hub.PublishBatch crosses the broker as one NATS message, so a node
// receives it as one batch and its subscribers get one write for all of
// it, as on the publishing node. Routing needs one subject per NATS
// message, so the subject depends on what the batch holds:
//
//   - one message: its topic's subject, as a single message;
//   - several messages of one topic: its topic's subject, as a batch;
//   - several topics of one group: the group's batch subject, as a batch.
//     A topic's group is its tokens but the last ("prices.eu" for
//     "prices.eu.S0"; the root group for "S0"). The batch subject is
//     Prefix + ".$batch" for the root group and Prefix + ".$batch." +
//     group for others ("herald.$batch.prices.eu");
//   - topics of several groups: one batch per group, in the order the
//     groups first appear.
//
// A node subscribes only to what its local subscribers need: for each topic
// with a local subscriber (broadcast.InterestBus), the topic's subject and
// its group's batch subject; it unsubscribes when the last one leaves. So
// single messages reach exactly the nodes with subscribers of their topic,
// and batches of several topics reach the nodes with a subscriber of any
// topic of the group: the trade-off that keeps a tick of 20 symbols one
// message and one write per subscriber. A node that needs only some of a
// group's topics receives the others and drops them without encoding
// them. Name topics so that what is published together is a group
// ("prices.eu.*") and what is subscribed apart is not. Options.Wildcard
// subscribes to everything under the prefix with one subscription instead.
//
// No two of a node's subscriptions match the same subject, and the
// connection uses NoEcho, so a node never receives a message twice nor
// its own publishes back (it delivered them locally). Every subscription
// feeds one queue, so messages from one publisher arrive in the order it
// published them; a publish that spans several groups keeps the order per
// group, hence per topic.
//
// # When the broker is away
//
// Local delivery never depends on the broker: Hub.Publish delivers locally
// and reports a Bus failure as a *broadcast.BusError. While the connection
// is down, nats.go reconnects forever and holds publishes in its reconnect
// buffer (Options.ReconnectBuffer, 8 MiB by default; a publish is taken
// while less than that is held, so the bound is that plus one message).
// They are sent when it returns (Stats.Held); a publish that finds the
// buffer full fails at once (Stats.Failed). Publish never waits for the
// broker beyond Options.WriteTimeout. On reconnection nats.go restores the
// subscriptions; messages other nodes publish before this node's
// subscriptions are back are not received (NATS core delivers at most
// once), and nor are the messages in flight when the connection broke.
// Messages arriving faster than the hub takes them wait in a queue of
// Options.ReceiveQueue messages; past it they are dropped and the event
// counted (Stats.SlowConsumer) and logged, as is a broker that drops this
// node as a slow consumer (a disconnection).
package nats
