package engine

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"

	"github.com/heraldws/herald/upgrade"
)

// Log lines read well in JSON: addresses are strings, not objects of their
// fields, and an error's text is not repeated inside itself.
func TestLogLinesReadWellInJSON(t *testing.T) {
	logs := &logBuffer{}
	h := newRecorder()
	h.onMsg = func(*Conn, MessageType, []byte) { panic("boom") }
	s := startServer(t, Config{
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Authorize: func(r *upgrade.Request) (any, error) {
			if r.Path == "/deny" {
				return nil, upgrade.ErrUnauthorized
			}
			return nil, nil
		},
	}, h)

	// A refused upgrade, logged at Debug.
	conn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second)) // a hang guard
	_, _ = conn.Write([]byte(upgradeRequest("/deny", "")))
	if line, _ := bufio.NewReader(conn).ReadString('\n'); !strings.Contains(line, " 401 ") {
		t.Fatalf("status line %q, want 401", line)
	}
	// A panic in OnMessage, logged at Error with the connection's address.
	wc := dial(t, s, "/", nil)
	if err := wsutil.WriteClientText(wc, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if code := expectClose(t, wc); code != 1011 {
		t.Fatalf("close code %d, want 1011", code)
	}

	want := map[string]bool{"herald: handshake rejected": false, "herald: recovered a panic in user code": false}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, line)
		}
		msg, _ := rec["msg"].(string)
		if _, ok := want[msg]; !ok {
			continue
		}
		want[msg] = true
		if remote, ok := rec["remote"].(string); !ok || !strings.HasPrefix(remote, "127.0.0.1:") {
			t.Errorf("%q: remote = %#v, want the address as a string", msg, rec["remote"])
		}
		if e, ok := rec["err"].(string); ok && strings.Count(e, "unauthorized") != 1 {
			t.Errorf("%q: err %q repeats itself", msg, e)
		}
	}
	for msg, seen := range want {
		if !seen {
			t.Errorf("no %q line in:\n%s", msg, logs)
		}
	}
}
