package nats

import (
	"fmt"
	"testing"

	"github.com/heraldws/herald/broadcast"
)

// BenchmarkPublishTick is the bus's cost of one 20-symbol tick of 128-byte
// messages: encoding the batch and handing it to the connection.
func BenchmarkPublishTick(b *testing.B) {
	ns := startBroker(b, 0)
	n := startNode(b, ns.ClientURL(), Options{})
	tick := make([]broadcast.Message, 20)
	for k := range tick {
		tick[k] = text(fmt.Sprintf("S%d", k), fmt.Sprintf("%-128d", k))
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := n.bus.Publish(tick); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClusterTick is one tick published on one node and written to a
// subscriber of all 20 symbols on another, through the broker: publish to
// the last frame read.
func BenchmarkClusterTick(b *testing.B) {
	ns := startBroker(b, 0)
	pub, recv := startNode(b, ns.ClientURL(), Options{}), startNode(b, ns.ClientURL(), Options{})
	syms := make([]string, 20)
	tick := make([]broadcast.Message, 20)
	for k := range tick {
		syms[k] = fmt.Sprintf("S%d", k)
		tick[k] = text(syms[k], fmt.Sprintf("%-128d", k))
	}
	c := recv.dial(b, syms...)
	syncAll(b, recv)
	b.ReportAllocs()
	for b.Loop() {
		if err := pub.hub.PublishBatch(tick); err != nil {
			b.Fatal(err)
		}
		for range tick {
			c.next(b)
		}
	}
}
