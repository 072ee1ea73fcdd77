package engine_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/upgrade"
)

// shout answers every text message in upper case, signed with the user
// name that Authorize put in the session. Handlers run on the event loop:
// they must not block, and Send from there writes directly.
type shout struct {
	engine.BaseHandler
}

func (shout) OnMessage(c *engine.Conn, typ engine.MessageType, data []byte) {
	if typ == engine.TextMessage {
		_ = c.SendText(c.Session().(string) + ": " + strings.ToUpper(string(data)))
	}
}

func Example() {
	srv, err := engine.New(engine.Config{
		Addr: "127.0.0.1:0",
		// Authenticate at the upgrade: the session stays on the connection.
		Authorize: func(r *upgrade.Request) (any, error) {
			user := r.Query().Get("user")
			if user == "" {
				return nil, upgrade.ErrUnauthorized
			}
			return user, nil
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, shout{})
	if err != nil {
		panic(err)
	}
	if err := srv.Start(); err != nil {
		panic(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()

	// A client, here gobwas/ws's.
	conn, _, _, err := ws.Dial(context.Background(), "ws://"+srv.Addr().String()+"/?user=ada")
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	_ = wsutil.WriteClientText(conn, []byte("is anyone there?"))
	answer, _ := wsutil.ReadServerText(conn)
	fmt.Println(string(answer))
	// Output:
	// ada: IS ANYONE THERE?
}
