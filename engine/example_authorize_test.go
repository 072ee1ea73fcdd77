package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/upgrade"
)

// sessions stands in for a user database or an identity provider: a call
// that may take a while, and that honours its context.
type sessions map[string]string

func (s sessions) user(ctx context.Context, id string) (string, error) {
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	default:
	}
	if u, ok := s[id]; ok {
		return u, nil
	}
	return "", errors.New("unknown session")
}

// With HandshakeWorkers, Authorize runs on a pool of goroutines shared by
// all connections, so it may block (a database, an identity provider)
// without stalling the event loop. r.HTTP() reads the request the net/http
// way (cookies here); r.Context() ends at the handshake timeout, when the
// client goes away or when the server shuts down.
func ExampleConfig_handshakeWorkers() {
	db := sessions{"s3cr3t": "ada"}
	srv, err := engine.New(engine.Config{
		Addr:             "127.0.0.1:0",
		HandshakeWorkers: 4,
		HandshakeTimeout: 5 * time.Second,
		Authorize: func(r *upgrade.Request) (any, error) {
			ck, err := r.HTTP().Cookie("sid")
			if err != nil {
				return nil, upgrade.ErrUnauthorized
			}
			user, err := db.user(r.Context(), ck.Value)
			if err != nil {
				return nil, upgrade.ErrForbidden
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

	url := "ws://" + srv.Addr().String() + "/"
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Cookie": {"sid=s3cr3t"}})}
	conn, _, _, err := d.Dial(context.Background(), url)
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	_ = wsutil.WriteClientText(conn, []byte("hello"))
	answer, _ := wsutil.ReadServerText(conn)
	fmt.Println(string(answer))

	_, _, _, err = ws.Dial(context.Background(), url) // no cookie
	fmt.Println(err)
	// Output:
	// ada: HELLO
	// unexpected HTTP response status: 401
}
