package engine

import (
	"net/http"
	"testing"

	"github.com/heraldws/herald/upgrade"
)

// The options a mounted upgrade shares with the listener: MaxConns answers
// 503 with Retry-After before the hijack, and hooks set to run on handshake
// workers run on net/http's goroutine instead, under the request's context.
func TestMountHonoursMaxConnsAndDeferredHooks(t *testing.T) {
	r := newRecorder()
	s, addr := startMounted(t, Config{
		MaxConns:         2,
		HandshakeWorkers: 2,
		Authorize: func(req *upgrade.Request) (any, error) {
			if req.Context().Done() == nil {
				t.Error("Authorize of a mounted upgrade: a context that never ends, want the request's")
			}
			if req.Query().Get("user") == "" {
				return nil, upgrade.ErrUnauthorized
			}
			return req.Query().Get("user"), nil
		},
	}, r, nil)

	if status, _ := rawHandshake(t, addr, upgradeRequest("/ws", "")); status != http.StatusUnauthorized {
		t.Fatalf("no user: status %d, want 401", status)
	}
	for _, user := range []string{"ann", "bob"} {
		resp, _ := rawReply(t, addr, upgradeRequest("/ws?user="+user, ""))
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("%s: status %d, want 101", user, resp.StatusCode)
		}
		if c := waitOpen(t, r); c.Session() != user {
			t.Fatalf("session %v, want %s", c.Session(), user)
		}
	}
	resp, _ := rawReply(t, addr, upgradeRequest("/ws?user=cy", ""))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over MaxConns: status %d, Retry-After %q; want 503 with one", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if st := s.Stats(); st.ConnLimitRejected != 1 || st.Mounted != 2 {
		t.Fatalf("Stats: ConnLimitRejected %d, Mounted %d; want 1 and 2", st.ConnLimitRejected, st.Mounted)
	}
}
