package broadcast

import (
	"context"
	"net"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/heraldws/herald/engine"
)

// Connections mounted on net/http are subscribers like native ones: the
// subscriptions OnOpen makes are in effect before the client reads the 101,
// and every publish reaches them in order, once.
func TestFanOutToMountedConnections(t *testing.T) {
	h, srv, sub := newHub(t, Options{}, engine.Config{})
	hs := httptest.NewServer(srv) // the server is the whole http.Handler
	t.Cleanup(hs.Close)
	const clients = 3
	var conns []net.Conn
	for i := 0; i < clients; i++ {
		conns = append(conns, connect(t, srv, sub, "news"))
		conn, _, _, err := ws.Dialer{Timeout: 60 * time.Second}.Dial(context.Background(), "ws://"+hs.Listener.Addr().String()+"/news")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		// No wait for the hub: the subscription was made before the 101.
		if err := h.Publish("news", engine.TextMessage, []byte("first")); err != nil {
			t.Fatal(err)
		}
		if got := readText(t, conn); got != "first" {
			t.Fatalf("mounted client's first message %q, want %q", got, "first")
		}
		conns = append(conns, conn)
	}
	// Every client got each "first" published since it joined: the
	// native client of round i all clients-i of them, the mounted one the
	// rest after the one read above.
	for k, conn := range conns {
		firsts := clients - k/2 - k%2
		for j := 0; j < firsts; j++ {
			if got := readText(t, conn); got != "first" {
				t.Fatalf("client %d: %q, want %q", k, got, "first")
			}
		}
	}
	for n := 0; n < 100; n++ {
		if err := h.Publish("news", engine.TextMessage, []byte(strconv.Itoa(n))); err != nil {
			t.Fatal(err)
		}
	}
	for i, conn := range conns {
		for n := 0; n < 100; n++ {
			if got := readText(t, conn); got != strconv.Itoa(n) {
				t.Fatalf("client %d: message %q, want %d", i, got, n)
			}
		}
	}
	if st := srv.Stats(); st.Mounted != clients || st.Open != 2*clients {
		t.Fatalf("stats: Mounted %d Open %d, want %d and %d", st.Mounted, st.Open, clients, 2*clients)
	}
}
