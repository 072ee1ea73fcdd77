package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/heraldws/herald/examples/ticker/app"
)

func startBroker(t *testing.T, jetStream bool) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		JetStream: jetStream, StoreDir: t.TempDir()})
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

// startNode starts a ticker node joined to the broker at url.
func startNode(t *testing.T, url string, publish bool) (*app.Ticker, app.Cluster) {
	t.Helper()
	opts := app.Options{Addr: "127.0.0.1:0", Loops: 1, Interval: 20 * time.Millisecond, Symbols: 3, Size: 64,
		Publish: publish, NATS: url, History: 100}
	c, err := join(opts, quiet)
	if err != nil {
		t.Fatal(err)
	}
	n, err := app.New(opts, quiet, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		_ = n.Shutdown(ctx)
	})
	return n, c
}

type pub struct {
	Type      string          `json:"type"`
	Epoch     string          `json:"epoch"`
	Offset    uint64          `json:"offset"`
	Recovered *bool           `json:"recovered"`
	Pubs      []pub           `json:"pubs"`
	Data      json.RawMessage `json:"data"`
}

// subscribe connects to a node with the subscribe protocol and subscribes
// to topic, from since if it is not empty; it returns the connection and
// the subscribed reply.
func subscribe(t *testing.T, addr, topic, since string) (io.ReadWriter, pub) {
	t.Helper()
	conn, br, _, err := ws.Dialer{Timeout: hangGuard, Protocols: []string{app.Subprotocol}}.Dial(context.Background(), "ws://"+addr+"/ws")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(hangGuard))
	var rw io.ReadWriter = conn
	if br != nil {
		rw = struct {
			io.Reader
			io.Writer
		}{io.MultiReader(br, conn), conn}
	}
	req := `{"type":"subscribe","topic":"` + topic + `"` + since + `}`
	if err := wsutil.WriteClientText(rw, []byte(req)); err != nil {
		t.Fatal(err)
	}
	for {
		if p := readPub(t, rw); p.Type == "subscribed" {
			return rw, p
		}
	}
}

func readPub(t *testing.T, r io.ReadWriter) pub {
	t.Helper()
	data, _, err := wsutil.ReadServerData(r)
	if err != nil {
		t.Fatal(err)
	}
	var p pub
	if err := json.Unmarshal(data, &p); err != nil {
		t.Fatalf("%v: %s", err, data)
	}
	return p
}

// With a broker that runs JetStream, the ticks' history is the broker's:
// a tick has the same position on every node, so a client that saw ticks
// on the publishing node resumes on another node from its last position
// and recovers what it missed there, in order.
func TestHistoryInJetStream(t *testing.T) {
	ns := startBroker(t, true)
	a, ca := startNode(t, ns.ClientURL(), true)
	b, cb := startNode(t, ns.ClientURL(), false)
	for i, c := range []app.Cluster{ca, cb} {
		if sc, ok := c.(app.StreamCluster); !ok || sc.Stream() == nil {
			t.Fatalf("node %d: no stream with a JetStream broker", i)
		}
	}

	conn, sub := subscribe(t, a.Addr().String(), "ticks.S2", "")
	var last pub
	for last.Offset < sub.Offset+3 {
		if last = readPub(t, conn); last.Type != "pub" || last.Epoch == "" {
			t.Fatalf("got %+v, want a positioned publication", last)
		}
	}
	// Ten more ticks while the client is away, as node B reads them.
	probe, _ := subscribe(t, b.Addr().String(), "ticks.S0", "")
	for {
		pos, err := b.Hub().Position("ticks.S2")
		if err != nil {
			t.Fatal(err)
		}
		if pos.Epoch == last.Epoch && pos.Offset >= last.Offset+10 {
			break
		}
		// A round trip to B, not a sleep.
		if err := wsutil.WriteClientText(probe, []byte(`{"type":"ping"}`)); err != nil {
			t.Fatal(err)
		}
		for readPub(t, probe).Type != "pong" {
		}
	}
	_, rec := subscribe(t, b.Addr().String(), "ticks.S2", fmt.Sprintf(`,"since":{"epoch":%q,"offset":%d}`, last.Epoch, last.Offset))
	if rec.Recovered == nil || !*rec.Recovered || rec.Epoch != last.Epoch || len(rec.Pubs) < 10 {
		t.Fatalf("resume on the other node: %+v, want recovered with 10 publications or more", rec)
	}
	var prevSeq int64
	for i, p := range rec.Pubs {
		var m struct {
			Sym string `json:"sym"`
			Seq int64  `json:"seq"`
		}
		if err := json.Unmarshal(p.Data, &m); err != nil || m.Sym != "S2" || p.Offset != last.Offset+uint64(i)+1 ||
			(i > 0 && m.Seq != prevSeq+1) {
			t.Fatalf("recovered %d: %+v (%v), after offset %d", i, p, err, last.Offset)
		}
		prevSeq = m.Seq
	}
}

// Without JetStream the nodes keep no history (each would number only
// the ticks it happened to receive): protocol clients get live ticks
// without positions.
func TestNoHistoryWithoutJetStream(t *testing.T) {
	ns := startBroker(t, false)
	a, c := startNode(t, ns.ClientURL(), true)
	if sc, ok := c.(app.StreamCluster); !ok || sc.Stream() != nil {
		t.Fatalf("a stream without JetStream: %v", ok)
	}
	conn, sub := subscribe(t, a.Addr().String(), "ticks.S0", "")
	if sub.Epoch != "" {
		t.Fatalf("subscribed %+v: a position without a history", sub)
	}
	if p := readPub(t, conn); p.Type != "pub" || p.Epoch != "" || len(p.Data) == 0 {
		t.Fatalf("publication %+v, want live ticks without positions", p)
	}
}

// The ticks' history is stored off the ticking goroutine: with the broker
// gone, a store waits for its timeout, and the plain ticks must not wait
// with it. A client of the bench contract still gets every tick, in
// order, from the node that publishes them.
func TestPlainTicksDoNotWaitForTheHistory(t *testing.T) {
	ns := startBroker(t, true)
	a, _ := startNode(t, ns.ClientURL(), true)
	if err := followTicks(a.Addr().String(), 3, 5); err != nil {
		t.Fatal(err)
	}
	ns.Shutdown()
	// 100 ticks of each symbol at 20 ms: 2 s of ticking. A store that
	// waited for the broker's absence (5 s each) on the ticking goroutine
	// would take minutes.
	start := time.Now()
	if err := followTicks(a.Addr().String(), 3, 100); err != nil {
		t.Fatal(err)
	}
	t.Logf("100 ticks without the broker in %v", time.Since(start))
}
