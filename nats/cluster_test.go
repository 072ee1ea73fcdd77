package nats

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
)

// hangGuard bounds every wait: it ends a test whose condition never comes,
// and is no speed requirement.
const hangGuard = 60 * time.Second

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startBroker runs a NATS server in the test process, on port (0: any), and
// waits until it takes connections. The test's end shuts it down.
func startBroker(t testing.TB, port int, configure ...func(*server.Options)) *server.Server {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true}
	if port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	for _, c := range configure {
		c(opts)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(hangGuard) {
		t.Fatal("the NATS server did not start")
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

func brokerPort(ns *server.Server) int { return ns.Addr().(*net.TCPAddr).Port }

// node is one herald server of a cluster: an engine.Server, its hub and its
// NATS bus. Its connections subscribe to the topics named in their path
// ("/a,b").
type node struct {
	engine.BaseHandler
	srv *engine.Server
	hub *broadcast.Hub
	bus *Bus
}

func (n *node) OnOpen(c *engine.Conn) {
	topics := strings.Split(strings.TrimPrefix(c.Request().Path, "/"), ",")
	if err := n.hub.Subscribe(c, topics...); err != nil {
		_ = c.Close(engine.StatusPolicyViolation, err.Error())
	}
}

// startNode starts a node on the broker at url. Reconnection is quick so
// that a restarted broker is found soon.
func startNode(t testing.TB, url string, opts Options) *node {
	t.Helper()
	opts.URL = url
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	opts.NATS = append([]nats.Option{nats.ReconnectWait(10 * time.Millisecond)}, opts.NATS...)
	bus, err := Connect(opts)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{bus: bus}
	// No keepalive: the test clients read only when a test expects a
	// message, so they answer no ping, and on a busy machine a test can
	// outlast PingInterval + PongTimeout (45 s) and lose its clients to a
	// pong timeout (TestSlowConsumerCounted did: "read: EOF" after 45 s).
	cfg := engine.Config{Addr: "127.0.0.1:0", Loops: 2, Logger: quiet, PingInterval: -1}
	if n.srv, err = engine.New(cfg, n); err != nil {
		t.Fatal(err)
	}
	if n.hub, err = broadcast.New(n.srv, broadcast.Options{Bus: bus}); err != nil {
		t.Fatal(err)
	}
	if err := n.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		_ = n.srv.Shutdown(ctx)
		_ = bus.Close()
	})
	return n
}

// sync waits until every node's interest is in effect at the broker.
func syncAll(t testing.TB, nodes ...*node) {
	t.Helper()
	for _, n := range nodes {
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		err := n.bus.Sync(ctx)
		cancel()
		if err != nil {
			t.Fatalf("Sync: %v", err)
		}
	}
}

// client is a WebSocket client of a node.
type client struct {
	conn net.Conn
	r    io.Reader // frames that came with the 101 first
}

// dial connects a client subscribed to topics. Subscriptions made in
// OnOpen are in effect when the 101 arrives.
func (n *node) dial(t testing.TB, topics ...string) *client {
	t.Helper()
	conn, br, _, err := ws.Dialer{Timeout: hangGuard}.Dial(context.Background(),
		"ws://"+n.srv.Addr().String()+"/"+strings.Join(topics, ","))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &client{conn: conn, r: conn}
	if br != nil {
		c.r = io.MultiReader(br, conn)
	}
	return c
}

// next returns the next data message's payload and whether it was binary.
func (c *client) nextFrame(t testing.TB) (string, bool) {
	t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(hangGuard))
	for {
		f, err := ws.ReadFrame(c.r)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		switch f.Header.OpCode {
		case ws.OpText, ws.OpBinary:
			return string(f.Payload), f.Header.OpCode == ws.OpBinary
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(f.Payload)
			t.Fatalf("closed by the server: %d %s", code, reason)
		}
	}
}

func (c *client) next(t testing.TB) string {
	t.Helper()
	s, _ := c.nextFrame(t)
	return s
}

// waitFor waits until cond holds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// text makes a text message.
func text(topic, data string) broadcast.Message {
	return broadcast.Message{Topic: topic, Type: engine.TextMessage, Data: []byte(data)}
}

// payload names a message by its publisher, its number there and its topic.
func payload(origin string, k int, topic string) string {
	return fmt.Sprintf("%s/%d/%s", origin, k, topic)
}

// brokerSubs returns the subjects the broker holds for a node's connection.
func brokerSubs(t testing.TB, ns *server.Server, n *node) []string {
	t.Helper()
	cid, err := n.bus.nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	cz, err := ns.Connz(&server.ConnzOptions{CID: cid, Subscriptions: true})
	if err != nil || len(cz.Conns) != 1 {
		t.Fatalf("Connz(%d): %v, %d connections", cid, err, len(cz.Conns))
	}
	return cz.Conns[0].Subs
}
