package broadcast_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
)

// prices subscribes every connection to the symbols it asks for in its
// query ("?sym=EURUSD"). Subscribing in OnOpen takes effect before the
// client can read the 101, so it misses nothing published after it
// connected.
type prices struct {
	engine.BaseHandler
	hub *broadcast.Hub
}

func (p *prices) OnOpen(c *engine.Conn) {
	sym := c.Request().Query().Get("sym")
	if err := p.hub.Subscribe(c, "prices."+sym); err != nil {
		_ = c.Close(engine.StatusPolicyViolation, "bad symbol")
	}
}

func Example() {
	h := &prices{}
	srv, err := engine.New(engine.Config{
		Addr:   "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, h)
	if err != nil {
		panic(err)
	}
	// A ticker wants the newest price, not every price: a subscriber that
	// falls behind gets the latest per topic once it catches up.
	h.hub, err = broadcast.New(srv, broadcast.Options{Policy: broadcast.Conflate})
	if err != nil {
		panic(err)
	}
	if err := srv.Start(); err != nil {
		panic(err)
	}
	defer srv.Shutdown(context.Background())

	conn, _, _, err := ws.Dial(context.Background(), "ws://"+srv.Addr().String()+"/?sym=EURUSD")
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	// From any goroutine: one encoding for all subscribers, one write per
	// subscriber for the whole batch.
	err = h.hub.PublishBatch([]broadcast.Message{
		{Topic: "prices.EURUSD", Type: engine.TextMessage, Data: []byte(`{"bid":1.0841}`)},
		{Topic: "prices.USDJPY", Type: engine.TextMessage, Data: []byte(`{"bid":151.20}`)},
		{Topic: "prices.EURUSD", Type: engine.TextMessage, Data: []byte(`{"bid":1.0842}`)},
	})
	if err != nil {
		panic(err)
	}
	for range 2 {
		msg, _ := wsutil.ReadServerText(conn)
		fmt.Println(string(msg))
	}
	fmt.Println(h.hub.Subscribers("prices.EURUSD"), "subscriber")
	// Output:
	// {"bid":1.0841}
	// {"bid":1.0842}
	// 1 subscriber
}
