package nats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
)

// Three herald servers, each with subscribers of its own, publish at once:
// single messages, batches of one topic, of several topics of a group, and
// of several groups. Every subscriber of every node gets every message of
// its topics exactly once, its own node's through local delivery and the
// others' through the broker; in publish order per publisher where its
// topics are one group, per topic otherwise.
func TestClusterExactlyOnceInOrder(t *testing.T) {
	ns := startBroker(t, 0)
	nodes := []*node{startNode(t, ns.ClientURL(), Options{}), startNode(t, ns.ClientURL(), Options{}), startNode(t, ns.ClientURL(), Options{})}
	type sub struct {
		c       *client
		topics  []string
		inOrder bool // all its topics in one group: publish order per publisher holds
	}
	subsets := []sub{
		{topics: []string{"a", "b"}, inOrder: true},
		{topics: []string{"b"}, inOrder: true},
		{topics: []string{"g.x", "g.y"}, inOrder: true},
		{topics: []string{"a", "g.y"}}, // two groups: per topic
	}
	var subs []sub
	for _, n := range nodes {
		for _, s := range subsets {
			s.c = n.dial(t, s.topics...)
			subs = append(subs, s)
		}
	}
	syncAll(t, nodes...)

	const rounds = 200
	plan := func(origin string) (batches [][]broadcast.Message) {
		k := 0
		m := func(topic string) broadcast.Message {
			k++
			return text(topic, payload(origin, k, topic))
		}
		for r := 0; r < rounds; r++ {
			switch r % 4 {
			case 0:
				batches = append(batches, []broadcast.Message{m("a")})
			case 1:
				batches = append(batches, []broadcast.Message{m("a"), m("b")})
			case 2:
				batches = append(batches, []broadcast.Message{m("b"), m("b")})
			case 3:
				batches = append(batches, []broadcast.Message{m("g.x"), m("a"), m("g.y")})
			}
		}
		return batches
	}
	plans := make([][][]broadcast.Message, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		plans[i] = plan("n" + strconv.Itoa(i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, b := range plans[i] {
				if err := n.hub.PublishBatch(b); err != nil {
					t.Errorf("node %d: %v", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()

	for si, s := range subs {
		// What it must get, per publisher, in publish order.
		want := map[string][]string{}
		total := 0
		for i := range nodes {
			origin := "n" + strconv.Itoa(i)
			for _, b := range plans[i] {
				for _, m := range b {
					if slices.Contains(s.topics, m.Topic) {
						want[origin] = append(want[origin], string(m.Data))
						total++
					}
				}
			}
		}
		got := map[string][]string{}
		for range total {
			p := s.c.next(t)
			origin := p[:strings.IndexByte(p, '/')]
			got[origin] = append(got[origin], p)
		}
		for origin, w := range want {
			g := got[origin]
			if !s.inOrder {
				w, g = byTopic(w), byTopic(g)
			}
			if !slices.Equal(g, w) {
				t.Fatalf("subscriber %d (node %d, %v) from %s: got %d messages, want %d; first difference at %d",
					si, si/len(subsets), s.topics, origin, len(g), len(w), firstDiff(g, w))
			}
		}
	}
	// Each node sent 5 NATS messages per 4 rounds (a spread batch is two)
	// and received exactly the other two nodes' (each subject once).
	for i, n := range nodes {
		st := n.bus.Stats()
		if st.Sent != rounds/4*5 || st.Published != rounds/4*8 || st.Received != 2*rounds/4*5 ||
			st.Delivered != 2*rounds/4*8 || st.Failed != 0 || st.Rejected != 0 {
			t.Errorf("node %d: %+v, want Sent %d, Published %d, Received %d, Delivered %d, none failed or rejected",
				i, st, rounds/4*5, rounds/4*8, 2*rounds/4*5, 2*rounds/4*8)
		}
		// a, b, g.x, g.y and the batch subjects of the root group and g.
		want := []string{"herald.$batch", "herald.$batch.g", "herald.a", "herald.b", "herald.g.x", "herald.g.y"}
		if got := brokerSubs(t, ns, n); st.Subscriptions != len(want) || !slices.Equal(sorted(got), want) {
			t.Errorf("node %d subscribes to %v (%d counted), want %v", i, got, st.Subscriptions, want)
		}
	}
}

// byTopic orders payloads by topic, keeping their order within a topic.
func byTopic(ps []string) []string {
	out := slices.Clone(ps)
	slices.SortStableFunc(out, func(a, b string) int {
		return strings.Compare(a[strings.LastIndexByte(a, '/'):], b[strings.LastIndexByte(b, '/'):])
	})
	return out
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// A tick of 20 symbols crosses the broker as one NATS message and reaches a
// remote subscriber as one batch of the hub: one write for the tick.
func TestTickCrossesAsOneMessage(t *testing.T) {
	ns := startBroker(t, 0)
	pub, recv := startNode(t, ns.ClientURL(), Options{}), startNode(t, ns.ClientURL(), Options{})
	var syms []string
	var tick []broadcast.Message
	for k := range 20 {
		syms = append(syms, "S"+strconv.Itoa(k))
		tick = append(tick, text(syms[k], fmt.Sprintf(`{"sym":"S%d","seq":1}`, k)))
	}
	c := recv.dial(t, syms...)
	syncAll(t, recv)
	before := recv.hub.Stats()
	if err := pub.hub.PublishBatch(tick); err != nil {
		t.Fatal(err)
	}
	for _, m := range tick {
		if got := c.next(t); got != string(m.Data) {
			t.Fatalf("got %s, want %s", got, m.Data)
		}
	}
	// The hub counts a write once it is made, which may be after the client
	// read it.
	waitFor(t, "the writes to be counted", func() bool { return recv.hub.Stats().Deliveries-before.Deliveries >= 20 })
	after := recv.hub.Stats()
	if sent, st := pub.bus.Stats().Sent, recv.bus.Stats(); sent != 1 || st.Received != 1 || st.Delivered != 20 {
		t.Fatalf("sent %d NATS messages, received %d, delivered %d; want 1, 1, 20", sent, st.Received, st.Delivered)
	}
	if b, d := after.Batches-before.Batches, after.Deliveries-before.Deliveries; b != 1 || d != 20 {
		t.Fatalf("the receiving hub ran %d batches for %d deliveries, want 1 batch (one write) for 20", b, d)
	}
}

// A node that joins while another publishes gets, from the moment its
// interest is in effect, every message in order: a contiguous run ending
// with the last one.
func TestLateJoiner(t *testing.T) {
	ns := startBroker(t, 0)
	pub, early := startNode(t, ns.ClientURL(), Options{}), startNode(t, ns.ClientURL(), Options{})
	ce := early.dial(t, "a")
	syncAll(t, early)
	const n = 1000 // within the receive queue, whatever the receiver's pace
	published := make(chan struct{})
	go func() {
		defer close(published)
		for k := 0; k < n; k++ {
			if err := pub.hub.Publish("a", engine.TextMessage, []byte(strconv.Itoa(k))); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	late := startNode(t, ns.ClientURL(), Options{})
	cl := late.dial(t, "a")
	<-published
	syncAll(t, late)
	if err := pub.hub.Publish("a", engine.TextMessage, []byte(strconv.Itoa(n))); err != nil {
		t.Fatal(err)
	}
	for k := 0; k <= n; k++ {
		if got := ce.next(t); got != strconv.Itoa(k) {
			t.Fatalf("early subscriber got %s, want %d", got, k)
		}
	}
	first, _ := strconv.Atoi(cl.next(t))
	for k := first + 1; k <= n; k++ {
		if got := cl.next(t); got != strconv.Itoa(k) {
			t.Fatalf("late subscriber, from %d on: got %s, want %d", first, got, k)
		}
	}
	// The late node publishes too: the others get it.
	if err := late.hub.Publish("a", engine.TextMessage, []byte("late")); err != nil {
		t.Fatal(err)
	}
	if got := ce.next(t); got != "late" {
		t.Fatalf("early subscriber got %s, want the late node's message", got)
	}
	if got := cl.next(t); got != "late" {
		t.Fatalf("late subscriber got %s from its own node, want it once", got)
	}
}

// The broker goes away mid-stream and comes back on the same port. Local
// delivery never stops; publishes made meanwhile fill the reconnect buffer
// up to its bound (counted as held, sent on return) and fail past it
// (counted as failed, reported as a BusError); subscriptions are restored
// and remote delivery resumes, never twice and never out of order.
func TestBrokerRestart(t *testing.T) {
	ns := startBroker(t, 0)
	port := brokerPort(ns)
	const bufBytes = 1024
	a := startNode(t, ns.ClientURL(), Options{ReconnectBuffer: bufBytes})
	b := startNode(t, ns.ClientURL(), Options{})
	ca, cb := a.dial(t, "a"), b.dial(t, "a")
	syncAll(t, a, b)

	// 100-byte messages: "PUB herald.a 100\r\n" + 100 + "\r\n" on the wire.
	const size, wire = 100, 120
	msg := func(k int) []byte { return fmt.Appendf(nil, "%-*d", size, k) }
	num := func(p string) int { k, _ := strconv.Atoi(strings.TrimSpace(p)); return k }
	publish := func(k int) error { return a.hub.Publish("a", engine.TextMessage, msg(k)) }

	const before, during, after = 10, 40, 10
	k := 0
	for ; k < before; k++ {
		if err := publish(k); err != nil {
			t.Fatal(err)
		}
	}
	// Both have them before the broker goes: what is in flight when a
	// connection breaks is lost.
	for j := range before {
		if got := num(cb.next(t)); got != j {
			t.Fatalf("remote subscriber got %d, want %d", got, j)
		}
	}
	ns.Shutdown()
	waitFor(t, "both nodes to see the broker go", func() bool {
		return a.bus.Stats().Disconnects > 0 && b.bus.Stats().Disconnects > 0
	})
	failed := 0
	for ; k < before+during; k++ {
		var be *broadcast.BusError
		switch err := publish(k); {
		case err == nil:
		case errors.As(err, &be) && errors.Is(err, nats.ErrReconnectBufExceeded):
			failed++
		default:
			t.Fatalf("publish during the outage: %v", err)
		}
	}
	// Local delivery went on: a's subscriber has everything so far.
	for j := 0; j < before+during; j++ {
		if got := num(ca.next(t)); got != j {
			t.Fatalf("local subscriber during the outage got %d, want %d", got, j)
		}
	}
	st := a.bus.Stats()
	held := during - failed
	// A publish is taken while less than the bound is held.
	if int(st.Held) != held || int(st.Failed) != failed || held*wire < bufBytes || (held-1)*wire >= bufBytes {
		t.Fatalf("during the outage: %d held, %d failed (stats %+v); want %d-byte publishes held up to %d bytes and the rest failed",
			held, failed, st, wire, bufBytes)
	}

	startBroker(t, port)
	waitFor(t, "both nodes to reconnect", func() bool {
		return a.bus.Stats().Reconnects > 0 && b.bus.Stats().Reconnects > 0
	})
	syncEventually(t, a, b)
	for ; k < before+during+after; k++ {
		if err := publish(k); err != nil {
			t.Fatal(err)
		}
	}
	// The remote subscriber: some of what was held (the broker may pass it
	// on before b resubscribed), then everything after; in order, once.
	last := before - 1
	seen := before
	for last < before+during+after-1 {
		got := num(cb.next(t))
		if got <= last {
			t.Fatalf("remote subscriber got %d after %d", got, last)
		}
		if got > before+during && got != last+1 {
			t.Fatalf("remote subscriber got %d after %d: a message published after the outage is missing", got, last)
		}
		last = got
		seen++
	}
	for j := before + during; j < before+during+after; j++ {
		if got := num(ca.next(t)); got != j {
			t.Fatalf("local subscriber after the outage got %d, want %d", got, j)
		}
	}
	// And the other way: b's publishes reach a again.
	if err := b.hub.Publish("a", engine.TextMessage, msg(-1)); err != nil {
		t.Fatal(err)
	}
	if got := num(ca.next(t)); got != -1 {
		t.Fatalf("a's subscriber got %d, want b's message", got)
	}
	if st := a.bus.Stats(); st.Published != uint64(before+held+after) || int(st.Failed) != failed || st.Subscriptions != 2 {
		t.Fatalf("a after the outage: %+v, want %d published, %d failed, 2 subscriptions", st, before+held+after, failed)
	}
	t.Logf("remote subscriber got %d of %d messages (%d held, %d failed during the outage)", seen, k, held, failed)
}

// syncEventually syncs nodes that just reconnected: a ping in flight while
// the connection was re-established is answered with an error, not lost.
func syncEventually(t testing.TB, nodes ...*node) {
	t.Helper()
	for _, n := range nodes {
		var err error
		waitFor(t, "Sync after reconnecting", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
			defer cancel()
			err = n.bus.Sync(ctx)
			return err == nil
		})
	}
}

// A backend that is not herald publishes with a plain NATS client,
// following the wire format: single messages without headers, binary with
// Herald-Type, a batch encoded by hand from the documentation. Messages
// that break the format are counted and dropped, whole.
func TestForeignPublisher(t *testing.T) {
	ns := startBroker(t, 0)
	nodes := []*node{startNode(t, ns.ClientURL(), Options{}), startNode(t, ns.ClientURL(), Options{})}
	var clients []*client
	for _, n := range nodes {
		clients = append(clients, n.dial(t, "news", "prices.S0", "prices.S1"))
	}
	syncAll(t, nodes...)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	// A batch, byte by byte from the documented layout.
	batch := []byte{1, 0, 9}
	batch = append(batch, "prices.S0"...)
	batch = append(batch, 0, 0, 0, 2, 'h', 'i')
	batch = append(batch, 2, 0, 9)
	batch = append(batch, "prices.S1"...)
	batch = append(batch, 0, 0, 0, 1, 0xff)
	type want struct {
		data   string
		binary bool
	}
	for _, tc := range []struct {
		name string
		msg  *nats.Msg
		want []want // nil: refused
	}{
		{"plain text", &nats.Msg{Subject: "herald.news", Data: []byte("hello")}, []want{{"hello", false}}},
		{"text header", &nats.Msg{Subject: "herald.news", Data: []byte("t"), Header: nats.Header{"Herald-Type": {"text"}}}, []want{{"t", false}}},
		{"binary", &nats.Msg{Subject: "herald.news", Data: []byte{0, 0xff}, Header: nats.Header{"Herald-Type": {"binary"}}}, []want{{"\x00\xff", true}}},
		{"batch", &nats.Msg{Subject: "herald.$batch.prices", Data: batch, Header: nats.Header{"Herald-Batch": {"1"}}},
			[]want{{"hi", false}, {"\xff", true}}},
		{"invalid UTF-8 text", &nats.Msg{Subject: "herald.news", Data: []byte{0xff}}, nil},
		{"unknown type", &nats.Msg{Subject: "herald.news", Data: []byte("x"), Header: nats.Header{"Herald-Type": {"xml"}}}, nil},
		{"unknown batch version", &nats.Msg{Subject: "herald.news", Data: batch, Header: nats.Header{"Herald-Batch": {"2"}}}, nil},
		{"truncated batch", &nats.Msg{Subject: "herald.news", Data: batch[:len(batch)-1], Header: nats.Header{"Herald-Batch": {"1"}}}, nil},
		{"batch subject without batch", &nats.Msg{Subject: "herald.$batch.prices", Data: []byte("x")}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rejected := make([]uint64, len(nodes))
			for i, n := range nodes {
				rejected[i] = n.bus.Stats().Rejected
			}
			if err := nc.PublishMsg(tc.msg); err != nil {
				t.Fatal(err)
			}
			// A good message behind it: the broker keeps one publisher's
			// order, so once it arrives the first one has been handled.
			if err := nc.Publish("herald.news", []byte("marker")); err != nil {
				t.Fatal(err)
			}
			for i, c := range clients {
				for _, w := range append(tc.want, want{"marker", false}) {
					if data, binary := c.nextFrame(t); data != w.data || binary != w.binary {
						t.Fatalf("node %d: got %q (binary %t), want %q (binary %t)", i, data, binary, w.data, w.binary)
					}
				}
				wantRejected := rejected[i]
				if tc.want == nil {
					wantRejected++
				}
				if got := nodes[i].bus.Stats().Rejected; got != wantRejected {
					t.Fatalf("node %d: %d rejected, want %d", i, got, wantRejected)
				}
			}
		})
	}
}

// Topics that cannot be NATS subjects are refused with the rule they break:
// a publish still reaches local subscribers and reports a BusError, and a
// local subscriber of one makes no broker subscription.
func TestInvalidTopicsRefused(t *testing.T) {
	ns := startBroker(t, 0)
	n := startNode(t, ns.ClientURL(), Options{})
	c := n.dial(t, "a*b")
	syncAll(t, n)
	if st := n.bus.Stats(); st.Subscriptions != 0 || len(brokerSubs(t, ns, n)) != 0 {
		t.Fatalf("a subscriber of an invalid topic made broker subscriptions: %+v", st)
	}
	err := n.hub.Publish("a*b", engine.TextMessage, []byte("local"))
	var be *broadcast.BusError
	var te *TopicError
	if !errors.As(err, &be) || !errors.As(err, &te) || te.Topic != "a*b" || !strings.Contains(err.Error(), "wildcards") {
		t.Fatalf("Publish(\"a*b\") = %v, want a BusError wrapping a TopicError naming the wildcards", err)
	}
	if got := c.next(t); got != "local" {
		t.Fatalf("local subscriber got %q", got)
	}
	for _, topic := range []string{"", ".a", "a.", "a..b", "$x", "a.>", "a b"} {
		err := n.bus.Publish([]broadcast.Message{text("ok", "x"), text(topic, "x")})
		if !errors.As(err, &te) || te.Topic != topic {
			t.Errorf("Publish of %q = %v, want a TopicError", topic, err)
		}
	}
	if st := n.bus.Stats(); st.Published != 0 || st.Failed != 1+7*2 {
		t.Fatalf("after refused publishes: %+v, want none published and every message failed", st)
	}
	for _, opts := range []Options{
		{Prefix: "a..b"}, {Prefix: "herald.>"}, {WriteTimeout: -1}, {ReceiveQueue: -1},
	} {
		if _, err := Connect(opts); err == nil || !strings.Contains(err.Error(), "Options.") {
			t.Errorf("Connect(%+v) = %v, want an error naming the option", opts, err)
		}
	}
}

// A node receives only what its local subscribers need: nothing of a
// topic it has no subscriber of, and it stops receiving a topic when the
// last one leaves. A batch of several topics reaches the nodes with a
// subscriber of any topic of its group, and only those.
func TestInterest(t *testing.T) {
	ns := startBroker(t, 0)
	url := ns.ClientURL()
	pub, bx, cy := startNode(t, url, Options{}), startNode(t, url, Options{}), startNode(t, url, Options{})
	x := bx.dial(t, "x", "p.a")
	y := cy.dial(t, "y")
	syncAll(t, pub, bx, cy)
	if got, want := sorted(brokerSubs(t, ns, cy)), []string{"herald.$batch", "herald.y"}; !slices.Equal(got, want) {
		t.Fatalf("the y node subscribes to %v, want %v", got, want)
	}
	if got := brokerSubs(t, ns, pub); len(got) != 0 {
		t.Fatalf("a node without subscribers subscribes to %v", got)
	}

	// Ten on x, a batch of group p, then one on y: the broker keeps the
	// publisher's order, so once y arrives the y node has received all it
	// ever will of the others.
	for k := range 10 {
		if err := pub.hub.Publish("x", engine.TextMessage, []byte(strconv.Itoa(k))); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.hub.PublishBatch([]broadcast.Message{text("p.a", "pa"), text("p.b", "pb")}); err != nil {
		t.Fatal(err)
	}
	if err := pub.hub.Publish("y", engine.TextMessage, []byte("y")); err != nil {
		t.Fatal(err)
	}
	for k := range 10 {
		if got := x.next(t); got != strconv.Itoa(k) {
			t.Fatalf("x subscriber got %s, want %d", got, k)
		}
	}
	if got := x.next(t); got != "pa" {
		t.Fatalf("x subscriber got %s, want its p.a message (and not p.b)", got)
	}
	if got := y.next(t); got != "y" {
		t.Fatalf("y subscriber got %s", got)
	}
	if st := cy.bus.Stats(); st.Received != 1 || st.Delivered != 1 {
		t.Fatalf("the y node received %d NATS messages (delivered %d), want only its y message", st.Received, st.Delivered)
	}
	if st := bx.bus.Stats(); st.Received != 11 || st.Delivered != 12 {
		t.Fatalf("the x node received %d NATS messages, delivered %d; want the 10 on x and the p batch (two messages)", st.Received, st.Delivered)
	}

	// The last subscriber of x leaves: the node unsubscribes from x and
	// keeps p.a (and the root group's batch subject, which y's node has
	// too).
	x.conn.Close()
	waitFor(t, "the x subscriber to leave", func() bool { return bx.hub.Topics() == 0 })
	syncAll(t, bx)
	if got := brokerSubs(t, ns, bx); len(got) != 0 {
		t.Fatalf("after its last subscriber left, the node still subscribes to %v", got)
	}
	if st := bx.bus.Stats(); st.Subscriptions != 0 {
		t.Fatalf("the node counts %d subscriptions, want 0", st.Subscriptions)
	}
	x2 := bx.dial(t, "p.a")
	syncAll(t, bx)
	if err := pub.hub.Publish("x", engine.TextMessage, []byte("nobody")); err != nil {
		t.Fatal(err)
	}
	if err := pub.hub.Publish("p.a", engine.TextMessage, []byte("again")); err != nil {
		t.Fatal(err)
	}
	if got := x2.next(t); got != "again" {
		t.Fatalf("p.a subscriber got %s", got)
	}
	if st := bx.bus.Stats(); st.Received != 12 {
		t.Fatalf("the node received %d NATS messages, want 12: none on x once nobody there listens", st.Received)
	}
}

// With Options.Wildcard a node holds one subscription for every topic and
// batch under the prefix, and receives everything once.
func TestWildcard(t *testing.T) {
	ns := startBroker(t, 0)
	pub := startNode(t, ns.ClientURL(), Options{})
	w := startNode(t, ns.ClientURL(), Options{Wildcard: true})
	c := w.dial(t, "p.a", "S0")
	syncAll(t, w)
	if got := brokerSubs(t, ns, w); !slices.Equal(got, []string{"herald.>"}) || w.bus.Stats().Subscriptions != 1 {
		t.Fatalf("wildcard node subscribes to %v", got)
	}
	if err := pub.hub.Publish("elsewhere", engine.TextMessage, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := pub.hub.PublishBatch([]broadcast.Message{text("p.a", "1"), text("p.b", "2"), text("S0", "3")}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"1", "3"} {
		if got := c.next(t); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	if st := w.bus.Stats(); st.Received != 3 || st.Delivered != 4 {
		t.Fatalf("wildcard node received %d NATS messages, delivered %d; want 3 and 4", st.Received, st.Delivered)
	}
}

// A receive queue that overflows is a slow consumer: nats.go drops what
// does not fit, and the bus counts the event.
func TestSlowConsumerCounted(t *testing.T) {
	ns := startBroker(t, 0)
	pub := startNode(t, ns.ClientURL(), Options{})
	stall := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(stall) }) }
	defer release()
	slow := startNode(t, ns.ClientURL(), Options{ReceiveQueue: 1, pause: func() { <-stall }})
	c := slow.dial(t, "a")
	syncAll(t, slow)
	// The receiver takes the first and stalls; the second fills the queue;
	// the rest overflow.
	for k := range 10 {
		if err := pub.hub.Publish("a", engine.TextMessage, []byte(strconv.Itoa(k))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a slow-consumer notice", func() bool { return slow.bus.Stats().SlowConsumer > 0 })
	release()
	// The ten may still be in the publisher's connection buffer (its
	// flusher runs when it gets the CPU): once the broker has answered a
	// ping from the publisher, it has routed them all to the slow node;
	// once it has answered one from the slow node, they have all been
	// queued there or dropped. Then, once the queue is empty and all that
	// was taken is delivered, there is room again. Without the first
	// ping, the ten's stragglers could arrive with "after" in one burst
	// that the one-message queue drops.
	syncAll(t, pub, slow)
	waitFor(t, "the receiver to catch up", func() bool {
		st := slow.bus.Stats()
		return len(slow.bus.inbox) == 0 && st.Delivered == st.Received
	})
	if err := pub.hub.Publish("a", engine.TextMessage, []byte("after")); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) == 0 || got[len(got)-1] != "after" {
		got = append(got, c.next(t))
	}
	// Some were dropped; what arrived is in order, and the receiver goes on.
	last := -1
	for _, g := range got[:len(got)-1] {
		k, _ := strconv.Atoi(g)
		if k <= last {
			t.Fatalf("got %v: out of order", got)
		}
		last = k
	}
	if len(got) > 10 {
		t.Fatalf("got %v: nothing dropped, yet a slow consumer was counted", got)
	}
}

// A batch over the broker's max_payload is split between entries into NATS
// messages that fit, in order; a single message over it fails.
func TestBatchSplitAtMaxPayload(t *testing.T) {
	ns := startBroker(t, 0, func(o *server.Options) { o.MaxPayload = 1024 })
	pub, recv := startNode(t, ns.ClientURL(), Options{}), startNode(t, ns.ClientURL(), Options{})
	c := recv.dial(t, "big")
	syncAll(t, recv)
	var batch []broadcast.Message
	for k := range 10 {
		batch = append(batch, text("big", fmt.Sprintf("%-300d", k)))
	}
	if err := pub.hub.PublishBatch(batch); err != nil {
		t.Fatal(err)
	}
	for _, m := range batch {
		if got := c.next(t); got != string(m.Data) {
			t.Fatalf("got %q, want %q", strings.TrimSpace(got), strings.TrimSpace(string(m.Data)))
		}
	}
	// Three 310-byte entries and the header fit in 1024 bytes: 4 messages.
	if st := pub.bus.Stats(); st.Sent != 4 || st.Published != 10 {
		t.Fatalf("%+v, want 10 messages in 4 NATS messages", st)
	}
	err := pub.hub.Publish("big", engine.TextMessage, make([]byte, 2000))
	if !errors.Is(err, nats.ErrMaxPayload) {
		t.Fatalf("a message over max_payload: %v, want ErrMaxPayload", err)
	}
	if st := pub.bus.Stats(); st.Failed != 1 {
		t.Fatalf("%+v, want 1 failed", st)
	}
}
