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

// Run serves until its context ends, then shuts down gracefully: every
// client gets close 1001 and the loops stop. A main function passes a
// context from signal.NotifyContext; here a cancel stands in for SIGTERM.
func ExampleServer_Run() {
	srv, err := engine.New(engine.Config{
		Addr:   "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, engine.BaseHandler{})
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	for srv.Addr() == nil { // Run has not started listening yet
		time.Sleep(time.Millisecond)
	}

	conn, _, _, err := ws.Dial(context.Background(), "ws://"+srv.Addr().String()+"/")
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	stop() // SIGTERM
	f, _ := ws.ReadFrame(conn)
	code, reason := ws.ParseCloseFrameData(f.Payload)
	fmt.Println(code, reason)
	_ = ws.WriteFrame(conn, ws.MaskFrameInPlace(ws.NewCloseFrame(f.Payload)))
	fmt.Println("Run returned:", <-done)
	// Output:
	// 1001 server shutting down
	// Run returned: <nil>
}

// Close ends a connection with a code and a reason the client sees. Codes
// that may not be sent, and reasons that do not fit a close frame, are
// refused before anything reaches the wire.
func ExampleConn_Close() {
	srv, err := engine.New(engine.Config{
		Addr:   "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, onOpen(func(c *engine.Conn) {
		fmt.Println(c.Close(engine.StatusAbnormalClosure, "")) // 1006 only describes a close
		fmt.Println(c.Close(4000, "room closed"))
	}))
	if err != nil {
		panic(err)
	}
	if err := srv.Start(); err != nil {
		panic(err)
	}
	defer srv.Shutdown(context.Background())

	conn, br, _, err := ws.Dial(context.Background(), "ws://"+srv.Addr().String()+"/")
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	var r io.Reader = conn
	if br != nil { // the close frame came with the 101
		r = br
	}
	f, _ := ws.ReadFrame(r)
	code, reason := ws.ParseCloseFrameData(f.Payload)
	fmt.Println(code, reason)
	// Output:
	// herald: Close: code 1006 may not be sent in a close frame (RFC 6455 section 7.4: use 1000-1003, 1007-1014 or 3000-4999)
	// <nil>
	// 4000 room closed
}

// onOpen is a Handler that only implements OnOpen.
type onOpen func(c *engine.Conn)

func (f onOpen) OnOpen(c *engine.Conn)                            { f(c) }
func (onOpen) OnMessage(*engine.Conn, engine.MessageType, []byte) {}
func (onOpen) OnClose(*engine.Conn, error)                        {}
