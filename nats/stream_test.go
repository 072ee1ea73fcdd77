package nats

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/resume"
)

// histNode is a herald server whose protocol topics keep their history in
// a JetStream stream.
type histNode struct {
	srv    *engine.Server
	hub    *broadcast.Hub
	rs     *resume.Server
	stream *Stream
}

type lateHandler struct {
	h atomic.Pointer[engine.Handler]
}

func (l *lateHandler) OnOpen(c *engine.Conn) { (*l.h.Load()).OnOpen(c) }
func (l *lateHandler) OnMessage(c *engine.Conn, typ engine.MessageType, data []byte) {
	(*l.h.Load()).OnMessage(c, typ, data)
}
func (l *lateHandler) OnClose(c *engine.Conn, err error) { (*l.h.Load()).OnClose(c, err) }

func startJetStream(t testing.TB) *server.Server {
	t.Helper()
	dir := t.TempDir()
	return startBroker(t, 0, func(o *server.Options) { o.JetStream = true; o.StoreDir = dir })
}

func startHistNode(t testing.TB, ns *server.Server) *histNode {
	t.Helper()
	stream, err := ConnectStream(StreamOptions{URL: ns.ClientURL(), Size: 1000, Memory: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	lh := &lateHandler{}
	n := &histNode{stream: stream}
	if n.srv, err = engine.New(engine.Config{Addr: "127.0.0.1:0", Loops: 2, Logger: quiet}, lh); err != nil {
		t.Fatal(err)
	}
	if n.hub, err = broadcast.New(n.srv, broadcast.Options{}); err != nil {
		t.Fatal(err)
	}
	n.rs = resume.New(n.hub, resume.Options{})
	if err := n.rs.Topics("news.*", resume.History{Size: 1000, Sequencer: stream}); err != nil {
		t.Fatal(err)
	}
	h := n.rs.Wrap(nil)
	lh.h.Store(&h)
	if err := stream.Attach(n.hub); err != nil {
		t.Fatal(err)
	}
	if err := n.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		_ = n.srv.Shutdown(ctx)
		_ = stream.Close()
	})
	select {
	case <-stream.Ready():
	case <-time.After(hangGuard):
		t.Fatal("the stream's replay did not finish")
	}
	return n
}

func (n *histNode) publish(t testing.TB, topic string, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if err := n.rs.Publish(topic, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
}

// waitPosition waits until the node has read the topic up to offset.
func (n *histNode) waitPosition(t testing.TB, topic string, offset uint64) broadcast.Position {
	t.Helper()
	var p broadcast.Position
	waitFor(t, fmt.Sprintf("%s at offset %d", topic, offset), func() bool {
		p, _ = n.hub.Position(topic)
		return p.Offset >= offset
	})
	return p
}

type protoReply struct {
	Type      string          `json:"type"`
	Topic     string          `json:"topic"`
	Epoch     string          `json:"epoch"`
	Offset    uint64          `json:"offset"`
	Recovered *bool           `json:"recovered"`
	Pubs      []protoReply    `json:"pubs"`
	Data      json.RawMessage `json:"data"`
	B64       string          `json:"b64"`
}

type protoClient struct {
	t    testing.TB
	conn net.Conn
}

func (n *histNode) dialProto(t testing.TB) *protoClient {
	t.Helper()
	conn, _, _, err := ws.Dialer{Timeout: hangGuard}.Dial(context.Background(), "ws://"+n.srv.Addr().String()+"/")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &protoClient{t: t, conn: conn}
}

func (c *protoClient) read() protoReply {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(hangGuard))
	for {
		f, err := ws.ReadFrame(c.conn)
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		switch f.Header.OpCode {
		case ws.OpText:
			var r protoReply
			if err := json.Unmarshal(f.Payload, &r); err != nil {
				c.t.Fatalf("%q: %v", f.Payload, err)
			}
			return r
		case ws.OpPing:
			_ = wsutil.WriteClientMessage(c.conn, ws.OpPong, f.Payload)
		default:
			c.t.Fatalf("unexpected frame %v", f.Header.OpCode)
		}
	}
}

func (c *protoClient) subscribe(topic string, since *broadcast.Position) protoReply {
	c.t.Helper()
	msg := resume.AppendRequest(nil, resume.Request{Type: resume.TypeSubscribe, Topic: topic, Since: since})
	if err := wsutil.WriteClientText(c.conn, msg); err != nil {
		c.t.Fatal(err)
	}
	r := c.read()
	if r.Type != "subscribed" {
		c.t.Fatalf("reply %+v", r)
	}
	return r
}

// Publish on node A, the client goes away, more is published (on B too),
// the client comes back on node B with its last position: it recovers
// exactly what it missed, with the positions node A gave it.
func TestStreamResumeOnAnotherNode(t *testing.T) {
	ns := startJetStream(t)
	a, b := startHistNode(t, ns), startHistNode(t, ns)

	ca := a.dialProto(t)
	if r := ca.subscribe("news.eu", nil); r.Epoch != "" || r.Offset != 0 {
		t.Fatalf("before any message: %+v", r)
	}
	a.publish(t, "news.eu", 1, 5)
	var last broadcast.Position
	for i := 1; i <= 5; i++ {
		p := ca.read()
		if p.Type != "pub" || p.Offset != uint64(i) || string(p.Data) != strconv.Itoa(i) || p.Epoch == "" {
			t.Fatalf("publication %d on A: %+v", i, p)
		}
		last = broadcast.Position{Epoch: p.Epoch, Offset: p.Offset}
	}
	ca.conn.Close()
	a.publish(t, "news.eu", 6, 7)
	b.publish(t, "news.eu", 8, 9) // B continues the same offsets
	b.waitPosition(t, "news.eu", 9)

	cb := b.dialProto(t)
	r := cb.subscribe("news.eu", &last)
	if r.Recovered == nil || !*r.Recovered || r.Epoch != last.Epoch || r.Offset != 9 || len(r.Pubs) != 4 {
		t.Fatalf("resubscribe on B: %+v", r)
	}
	for i, p := range r.Pubs {
		if p.Offset != uint64(6+i) || string(p.Data) != strconv.Itoa(6+i) {
			t.Fatalf("recovered %d: %+v", i, p)
		}
	}
	a.publish(t, "news.eu", 10, 10)
	if p := cb.read(); p.Type != "pub" || p.Offset != 10 || string(p.Data) != "10" {
		t.Fatalf("live on B after A published: %+v", p)
	}
	// Binary crosses the stream as binary.
	if err := a.rs.PublishBinary("news.eu", []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	if p := cb.read(); p.Type != "pub" || p.Offset != 11 || p.B64 != "AQI=" {
		t.Fatalf("binary on B: %+v", p)
	}
	// A client ahead of a node (it came from one that has read further)
	// is recovered with nothing to add.
	if r := cb.subscribe("news.eu", &broadcast.Position{Epoch: last.Epoch, Offset: 12}); r.Recovered == nil || !*r.Recovered || len(r.Pubs) != 0 {
		t.Fatalf("ahead: %+v", r)
	}
	// A node that starts now replays the stream and agrees.
	c := startHistNode(t, ns)
	if p := c.waitPosition(t, "news.eu", 11); p != (broadcast.Position{Epoch: last.Epoch, Offset: 11}) {
		t.Fatalf("late node: %+v", p)
	}
}

// Two nodes publish to one topic at once: offsets are given once each, and
// every node holds the same history in the same order.
func TestStreamConcurrentPublishersAgree(t *testing.T) {
	ns := startJetStream(t)
	nodes := []*histNode{startHistNode(t, ns), startHistNode(t, ns)}
	const each = 100
	var wg sync.WaitGroup
	for k, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := n.rs.Publish("news.x", []byte(fmt.Sprintf(`"%d-%d"`, k, i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var histories []string
	for _, n := range nodes {
		p := n.waitPosition(t, "news.x", 2*each)
		var got []string
		next := uint64(1)
		_, ok, err := n.hub.Recover("news.x", &broadcast.Position{Epoch: p.Epoch}, 0, func(off uint64, _ engine.MessageType, payload []byte) {
			if off != next {
				t.Errorf("offset %d, want %d", off, next)
			}
			next++
			got = append(got, string(payload))
		})
		if err != nil || !ok || len(got) != 2*each {
			t.Fatalf("recover: %v %v, %d messages", ok, err, len(got))
		}
		histories = append(histories, fmt.Sprint(got))
	}
	if histories[0] != histories[1] {
		t.Fatal("the nodes' histories differ")
	}
	t.Logf("publishes retried after a conflict: %d and %d", nodes[0].stream.Stats().Conflicts, nodes[1].stream.Stats().Conflicts)
}

// BenchmarkStreamPublish is a sequenced publish through JetStream on
// loopback: a stored message with its compare-and-set, acknowledged, one
// node publishing (no contention).
func BenchmarkStreamPublish(b *testing.B) {
	ns := startJetStream(b)
	n := startHistNode(b, ns)
	payload := []byte(`{"sym":"S0","seq":1,"ts":1700000000000000000,"px":101.25}`)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := n.rs.Publish("news.bench", payload); err != nil {
			b.Fatal(err)
		}
	}
}
