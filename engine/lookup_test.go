package engine

import (
	"errors"
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"
)

func TestServerConnFindsOpenConnectionsByID(t *testing.T) {
	r := newRecorder()
	onLoop := make(chan error, 1)
	r.onMsg = func(c *Conn, _ MessageType, _ []byte) {
		_, err := c.loop.srv.Conn(c.ID())
		onLoop <- err
	}
	// The kicked client does not answer the close: no need to wait long.
	s := startServer(t, Config{CloseTimeout: 100 * time.Millisecond}, r)
	var opened []*Conn
	for range 4 {
		_ = dial(t, s, "/", nil)
		opened = append(opened, waitOpen(t, r))
	}
	for _, want := range opened {
		got, err := s.Conn(want.ID())
		if err != nil || got != want {
			t.Fatalf("Conn(%d) = %p, %v; want %p", want.ID(), got, err, want)
		}
	}
	if got, err := s.Conn(1 << 60); got != nil || err != nil {
		t.Fatalf("Conn(unknown) = %p, %v; want nil, nil", got, err)
	}

	// Kicking a user the way an admin endpoint would: the connection is
	// gone for Conn once closed.
	kicked := opened[0]
	if err := kicked.Close(StatusPolicyViolation, "kicked"); err != nil {
		t.Fatal(err)
	}
	_ = waitClose(t, r)
	if got, err := s.Conn(kicked.ID()); got != nil || err != nil {
		t.Fatalf("Conn(closed) = %p, %v; want nil, nil", got, err)
	}

	// On the loop it refuses rather than wait on the loops.
	conn := dial(t, s, "/", nil)
	_ = waitOpen(t, r)
	if err := wsutil.WriteClientText(conn, []byte("who")); err != nil {
		t.Fatal(err)
	}
	if err := <-onLoop; !errors.Is(err, ErrOnLoop) {
		t.Fatalf("Conn on the loop: err = %v, want ErrOnLoop", err)
	}
}
