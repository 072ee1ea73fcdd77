package nats_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
	heraldnats "github.com/heraldws/herald/nats"
)

// prices subscribes every connection to the symbol in its query.
type prices struct {
	engine.BaseHandler
	hub *broadcast.Hub
}

func (p *prices) OnOpen(c *engine.Conn) {
	if err := p.hub.Subscribe(c, "prices."+c.Request().Query().Get("sym")); err != nil {
		_ = c.Close(engine.StatusPolicyViolation, "bad symbol")
	}
}

// startNode starts a herald server whose hub joins the cluster on the
// broker at url.
func startNode(url string) (*engine.Server, *broadcast.Hub, *heraldnats.Bus) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	bus, err := heraldnats.Connect(heraldnats.Options{URL: url, Logger: quiet})
	if err != nil {
		panic(err)
	}
	h := &prices{}
	srv, err := engine.New(engine.Config{Addr: "127.0.0.1:0", Logger: quiet}, h)
	if err != nil {
		panic(err)
	}
	if h.hub, err = broadcast.New(srv, broadcast.Options{Bus: bus}); err != nil {
		panic(err)
	}
	if err := srv.Start(); err != nil {
		panic(err)
	}
	return srv, h.hub, bus
}

func Example() {
	// A broker in the process, standing in for nats-server.
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		panic(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		panic("no broker")
	}
	defer ns.Shutdown()

	// Two herald nodes on the broker; a browser connects to the first.
	srvA, _, busA := startNode(ns.ClientURL())
	srvB, hubB, busB := startNode(ns.ClientURL())
	defer func() {
		for _, s := range []*engine.Server{srvA, srvB} {
			_ = s.Shutdown(context.Background())
		}
		busA.Close()
		busB.Close()
	}()
	conn, _, _, err := ws.Dial(context.Background(), "ws://"+srvA.Addr().String()+"/?sym=EURUSD")
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	// Node A now subscribes to the topic on the broker; Sync waits until
	// that is in effect.
	if err := busA.Sync(context.Background()); err != nil {
		panic(err)
	}

	// A publish on node B reaches the subscriber on node A...
	if err := hubB.Publish("prices.EURUSD", engine.TextMessage, []byte(`{"bid":1.0841}`)); err != nil {
		panic(err)
	}
	msg, _ := wsutil.ReadServerText(conn)
	fmt.Println(string(msg))
	// ...and so does any backend with a plain NATS client: the subject is
	// the prefix and the topic, the payload the message, text by default.
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	if err := nc.Publish("herald.prices.EURUSD", []byte(`{"bid":1.0842}`)); err != nil {
		panic(err)
	}

	msg, _ = wsutil.ReadServerText(conn)
	fmt.Println(string(msg))

	st := busA.Stats()
	fmt.Println(st.Delivered, "delivered through the broker;", st.Subscriptions, "broker subscriptions")
	// Output:
	// {"bid":1.0841}
	// {"bid":1.0842}
	// 2 delivered through the broker; 2 broker subscriptions
}
