package resume_test

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/resume"
)

// app is an application with messages of its own besides the protocol's.
type app struct{ engine.BaseHandler }

func (app) OnMessage(c *engine.Conn, typ engine.MessageType, data []byte) {
	_ = c.SendText("app: " + string(data))
}

// late is a Handler set after the server is created.
type late struct{ engine.Handler }

// The protocol on a server: news topics keep their last 1,000 messages for
// 10 minutes; a connection may subscribe to the topics Authorize allows.
func Example() {
	// The hub needs the server, the handler needs the hub: the server's
	// handler is filled in before Start.
	h := &late{}
	srv, err := engine.New(engine.Config{Addr: "127.0.0.1:0"}, h)
	if err != nil {
		panic(err)
	}
	hub, err := broadcast.New(srv, broadcast.Options{})
	if err != nil {
		panic(err)
	}
	rs := resume.New(hub, resume.Options{
		Authorize: func(c *engine.Conn, topic string) error {
			if strings.HasPrefix(topic, "news.private.") {
				return errors.New("not for you")
			}
			return nil
		},
	})
	if err := rs.Topics("news.*", resume.History{Size: 1000, MaxAge: 10 * time.Minute}); err != nil {
		panic(err)
	}
	h.Handler = rs.Wrap(app{}) // protocol messages answered, the rest to app
	if err := srv.Start(); err != nil {
		panic(err)
	}
	defer srv.Shutdown(context.Background())

	// From any goroutine: every subscriber gets it with its position.
	_ = rs.Publish("news.eu", []byte(`{"title":"…"}`))
}
