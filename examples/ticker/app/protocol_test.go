package app

import (
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// reply is any message of the subscribe protocol the ticker sends.
type reply struct {
	Type      string          `json:"type"`
	Topic     string          `json:"topic"`
	Code      string          `json:"code"`
	Epoch     string          `json:"epoch"`
	Offset    uint64          `json:"offset"`
	Recovered *bool           `json:"recovered"`
	Pubs      []reply         `json:"pubs"`
	Data      json.RawMessage `json:"data"`
}

// protoClient is a client of the ticker that offers the subprotocol.
type protoClient struct {
	t    *testing.T
	conn io.ReadWriter
}

func dialProtocol(t *testing.T, addr string) *protoClient {
	t.Helper()
	conn, br, hs, err := ws.Dialer{Timeout: hangGuard, Protocols: []string{Subprotocol}}.Dial(context.Background(), "ws://"+addr+"/ws")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if hs.Protocol != Subprotocol {
		t.Fatalf("subprotocol %q, want %q", hs.Protocol, Subprotocol)
	}
	_ = conn.SetDeadline(time.Now().Add(hangGuard))
	c := &protoClient{t: t, conn: conn}
	if br != nil {
		c.conn = struct {
			io.Reader
			io.Writer
		}{io.MultiReader(br, conn), conn}
	}
	if r := c.read(); r.Type != "welcome" {
		t.Fatalf("first message %+v, want the welcome", r)
	}
	return c
}

func (c *protoClient) send(msg string) {
	c.t.Helper()
	if err := wsutil.WriteClientText(c.conn, []byte(msg)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *protoClient) read() reply {
	c.t.Helper()
	data, op, err := wsutil.ReadServerData(c.conn)
	if err != nil {
		c.t.Fatal(err)
	}
	var r reply
	if op != ws.OpText || json.Unmarshal(data, &r) != nil {
		c.t.Fatalf("not a protocol message (%v): %s", op, data)
	}
	return r
}

// nextOf reads until a message of type typ, skipping publications.
func (c *protoClient) nextOf(typ string) reply {
	c.t.Helper()
	for {
		if r := c.read(); r.Type == typ {
			return r
		} else if r.Type != "pub" {
			c.t.Fatalf("got %+v, want %s", r, typ)
		}
	}
}

// checkTick checks that a publication carries a tick of sym.
func checkTick(t *testing.T, p reply, sym string) tick {
	t.Helper()
	var m tick
	if err := json.Unmarshal(p.Data, &m); err != nil || m.Sym != sym || m.Seq < 1 {
		t.Fatalf("publication %+v: data %s is not a tick of %s (%v)", p, p.Data, sym, err)
	}
	return m
}

// A client that offers herald.json.v1 speaks the subscribe protocol: it
// subscribes to ticks.S<k>, gets each tick with its position, and after a
// reconnect recovers exactly what it missed, in order.
func TestProtocolRecoversMissedTicks(t *testing.T) {
	tk := startTickerHistory(t, 3, 64, 1000)
	addr := tk.Addr().String()

	c := dialProtocol(t, addr)
	c.send(`{"type":"subscribe","id":1,"topic":"ticks.S1"}`)
	sub := c.nextOf("subscribed")
	if sub.Topic != "ticks.S1" || sub.Epoch == "" || sub.Recovered != nil {
		t.Fatalf("subscribed %+v", sub)
	}
	var last reply
	var lastTick tick
	for i := 0; i < 5; i++ {
		p := c.read()
		if p.Type != "pub" || p.Topic != "ticks.S1" || p.Epoch != sub.Epoch || p.Offset <= sub.Offset {
			t.Fatalf("publication %+v after %+v", p, sub)
		}
		m := checkTick(t, p, "S1")
		if i > 0 && (p.Offset != last.Offset+1 || m.Seq != lastTick.Seq+1) {
			t.Fatalf("offset %d seq %d after offset %d seq %d", p.Offset, m.Seq, last.Offset, lastTick.Seq)
		}
		last, lastTick = p, m
	}

	// Away while ten more ticks are published; then back from the last
	// position seen.
	c2 := dialProtocol(t, addr)
	for {
		pos, err := tk.Hub().Position("ticks.S1")
		if err != nil {
			t.Fatal(err)
		}
		if pos.Offset >= last.Offset+10 {
			break
		}
		c2.send(`{"type":"ping"}`)
		c2.nextOf("pong") // a round trip to the server, not a sleep
	}
	c2.send(`{"type":"subscribe","id":2,"topic":"ticks.S1","since":{"epoch":"` + last.Epoch + `","offset":` + jsonUint(last.Offset) + `}}`)
	rec := c2.nextOf("subscribed")
	if rec.Recovered == nil || !*rec.Recovered || rec.Epoch != last.Epoch || len(rec.Pubs) < 10 {
		t.Fatalf("resubscribe: %+v, want recovered with at least 10 publications", rec)
	}
	for i, p := range rec.Pubs {
		m := checkTick(t, p, "S1")
		if p.Offset != last.Offset+uint64(i)+1 || m.Seq != lastTick.Seq+int64(i)+1 {
			t.Fatalf("recovered %d: offset %d seq %d after offset %d seq %d", i, p.Offset, m.Seq, last.Offset, lastTick.Seq)
		}
	}
	if top := rec.Pubs[len(rec.Pubs)-1].Offset; top != rec.Offset {
		t.Fatalf("recovered up to %d, the reply's position is %d", top, rec.Offset)
	}

	// From another epoch (a restarted server's): not recovered.
	c2.send(`{"type":"subscribe","id":3,"topic":"ticks.S2","since":{"epoch":"0000","offset":7}}`)
	if r := c2.nextOf("subscribed"); r.Recovered == nil || *r.Recovered || len(r.Pubs) != 0 {
		t.Fatalf("from another epoch: %+v, want recovered false", r)
	}
}

// Only the ticker's symbols are topics; a client that does not offer the
// subprotocol is the bench contract's, whatever it sends.
func TestProtocolRefusals(t *testing.T) {
	tk := startTickerHistory(t, 3, 64, 100)
	addr := tk.Addr().String()
	c := dialProtocol(t, addr)
	for _, tc := range []struct{ msg, code string }{
		{`{"type":"subscribe","id":1,"topic":"ticks.S3"}`, "forbidden"},
		{`{"type":"subscribe","id":2,"topic":"S0"}`, "forbidden"},
		{`{"type":"subscribe","id":3,"topic":"ticks.S01"}`, "forbidden"},
		{`hello`, "bad_request"},
		{`{"type":"buy"}`, "bad_request"},
	} {
		c.send(tc.msg)
		if r := c.nextOf("error"); r.Code != tc.code {
			t.Fatalf("%s: error %+v, want %s", tc.msg, r, tc.code)
		}
	}

	plain := dialTicker(t, addr, "")
	if err := wsutil.WriteClientText(plain, []byte(`{"type":"subscribe","id":1,"topic":"ticks.S0"}`)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 9; i++ {
		data, _, err := wsutil.ReadServerData(plain)
		if err != nil {
			t.Fatal(err)
		}
		var m tick
		if err := json.Unmarshal(data, &m); err != nil || m.Sym == "" {
			t.Fatalf("a client without the subprotocol got %s, want plain ticks", data)
		}
	}
}

func jsonUint(v uint64) string {
	b, _ := json.Marshal(v)
	return string(b)
}
