package engine_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/upgrade"
)

// A server is an http.Handler: mounted on a router, behind the service's
// middleware, it upgrades on its route and hands each connection to its
// event loops. Without an Addr it has no listener of its own.
func ExampleServer_ServeHTTP() {
	srv, err := engine.New(engine.Config{
		Authorize: func(r *upgrade.Request) (any, error) {
			// Runs on net/http's goroutine here: it may call out.
			if user := r.Header.Get("X-User"); user != "" {
				return user, nil
			}
			return nil, upgrade.ErrUnauthorized
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, shout{})
	if err != nil {
		panic(err)
	}
	if err := srv.Start(); err != nil { // the event loops
		panic(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()

	mux := http.NewServeMux()
	mux.Handle("GET /ws", srv)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	web := httptest.NewServer(mux) // http.ListenAndServe(":8080", mux) in a service
	defer web.Close()

	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"X-User": {"ada"}})}
	conn, _, _, err := d.Dial(context.Background(), "ws"+web.URL[len("http"):]+"/ws")
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	_ = wsutil.WriteClientText(conn, []byte("mounted?"))
	answer, _ := wsutil.ReadServerText(conn)
	fmt.Println(string(answer))
	// Output:
	// ada: MOUNTED?
}
