package engine_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/internal/testpki"
)

// subscribeAll subscribes every connection to one topic as it opens.
type subscribeAll struct {
	engine.BaseHandler
	hub    *broadcast.Hub
	opened chan struct{}
}

func (h *subscribeAll) OnOpen(c *engine.Conn) {
	_ = h.hub.Subscribe(c, "news")
	h.opened <- struct{}{}
}

// The hub's batches reach TLS subscribers, encrypted for each connection:
// small messages, and one over a record's 16 KiB.
func TestTLSBroadcast(t *testing.T) {
	pki, err := testpki.NewLoopback()
	if err != nil {
		t.Fatal(err)
	}
	const subs = 4
	h := &subscribeAll{opened: make(chan struct{}, subs)}
	s, err := engine.New(engine.Config{Addr: "127.0.0.1:0", Loops: 2, TLS: pki.ServerConfig()}, h)
	if err != nil {
		t.Fatal(err)
	}
	if h.hub, err = broadcast.New(s, broadcast.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	var conns []net.Conn
	for range subs {
		tc, err := tls.Dial("tcp", s.Addr().String(), pki.ClientConfig())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tc.Close() })
		_ = tc.SetDeadline(time.Now().Add(60 * time.Second)) // a hang guard
		br, _, err := ws.Dialer{}.Upgrade(tc, &url.URL{Scheme: "wss", Host: "localhost", Path: "/"})
		if err != nil {
			t.Fatal(err)
		}
		if br != nil {
			t.Fatal("frames before the first publish")
		}
		conns = append(conns, tc)
		<-h.opened
	}
	msgs := make([]string, 0, 51)
	for i := range 50 {
		msgs = append(msgs, fmt.Sprintf("message %d", i))
	}
	msgs = append(msgs, string(make([]byte, 40000)))
	for _, m := range msgs {
		if err := h.hub.Publish("news", engine.BinaryMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	for i, conn := range conns {
		for _, want := range msgs {
			f, err := ws.ReadFrame(conn)
			if err != nil {
				t.Fatalf("subscriber %d: %v", i, err)
			}
			if string(f.Payload) != want {
				t.Fatalf("subscriber %d: got %d bytes, want %q...", i, len(f.Payload), want[:min(len(want), 12)])
			}
		}
	}
}
