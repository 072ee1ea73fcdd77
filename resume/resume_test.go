package resume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/internal/looplink"
)

// hangGuard bounds every wait of these tests: never a speed test.
const hangGuard = 60 * time.Second

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// lateHandler lets the handler be set once the hub, which needs the
// server, exists.
type lateHandler struct {
	h atomic.Pointer[engine.Handler]
}

func (l *lateHandler) OnOpen(c *engine.Conn) { (*l.h.Load()).OnOpen(c) }
func (l *lateHandler) OnMessage(c *engine.Conn, typ engine.MessageType, data []byte) {
	(*l.h.Load()).OnMessage(c, typ, data)
}
func (l *lateHandler) OnClose(c *engine.Conn, err error) { (*l.h.Load()).OnClose(c, err) }

type fixture struct {
	srv *engine.Server
	hub *broadcast.Hub
	rs  *Server
}

// newFixture starts a real server on 127.0.0.1:0 with two loops, a hub
// and the protocol, with app (nil: protocol only) behind it.
func newFixture(t testing.TB, opts Options, cfg engine.Config, app engine.Handler) *fixture {
	return newFixtureClock(t, opts, cfg, app, nil)
}

// newFixtureClock is newFixture on a server whose clock is now, if set.
func newFixtureClock(t testing.TB, opts Options, cfg engine.Config, app engine.Handler, now func() time.Duration) *fixture {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	if cfg.Loops == 0 {
		cfg.Loops = 2
	}
	cfg.Logger = quiet
	lh := &lateHandler{}
	srv, err := engine.New(cfg, lh)
	if err != nil {
		t.Fatal(err)
	}
	if now != nil {
		looplink.SetClock(srv, now)
	}
	hub, err := broadcast.New(srv, broadcast.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs := New(hub, opts)
	h := rs.Wrap(app)
	lh.h.Store(&h)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return &fixture{srv: srv, hub: hub, rs: rs}
}

// reply is any server message.
type reply struct {
	Type      string          `json:"type"`
	ID        uint64          `json:"id"`
	Topic     string          `json:"topic"`
	Epoch     string          `json:"epoch"`
	Offset    uint64          `json:"offset"`
	Recovered *bool           `json:"recovered"`
	Pubs      []reply         `json:"pubs"`
	Data      json.RawMessage `json:"data"`
	B64       string          `json:"b64"`
	Code      string          `json:"code"`
	Message   string          `json:"message"`
	Ping      int             `json:"ping"`
	Pong      int             `json:"pong"`
}

type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (b bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

type client struct {
	t    testing.TB
	conn net.Conn
}

func (f *fixture) dial(t testing.TB) *client {
	t.Helper()
	conn, br, _, err := ws.Dialer{Timeout: hangGuard}.Dial(context.Background(), "ws://"+f.srv.Addr().String()+"/")
	if err != nil {
		t.Fatal(err)
	}
	if br != nil {
		// Frames that came with the 101 (a welcome sent in OnOpen).
		conn = bufferedConn{conn, io.MultiReader(br, conn)}
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn}
}

func (c *client) send(msg string) {
	c.t.Helper()
	if err := wsutil.WriteClientText(c.conn, []byte(msg)); err != nil {
		c.t.Fatalf("send %s: %v", msg, err)
	}
}

func (c *client) sendReq(r Request) { c.send(string(AppendRequest(nil, r))) }

// read returns the next server message; a close fails the test.
func (c *client) read() reply {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(hangGuard))
	for {
		f, err := ws.ReadFrame(c.conn)
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		switch f.Header.OpCode {
		case ws.OpText:
			var r reply
			if err := json.Unmarshal(f.Payload, &r); err != nil {
				c.t.Fatalf("server sent invalid JSON %q: %v", f.Payload, err)
			}
			return r
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(f.Payload)
			c.t.Fatalf("closed by server: %d %s", code, reason)
		case ws.OpPing:
			_ = wsutil.WriteClientMessage(c.conn, ws.OpPong, f.Payload)
		default:
			c.t.Fatalf("unexpected frame %v", f.Header.OpCode)
		}
	}
}

// expect reads the next message and checks its type.
func (c *client) expect(typ string) reply {
	c.t.Helper()
	r := c.read()
	if r.Type != typ {
		c.t.Fatalf("got %+v, want a %s", r, typ)
	}
	return r
}

func (c *client) subscribe(topic string, since *broadcast.Position) reply {
	c.t.Helper()
	c.sendReq(Request{Type: TypeSubscribe, ID: 7, Topic: topic, Since: since})
	r := c.expect("subscribed")
	if r.ID != 7 || r.Topic != topic {
		c.t.Fatalf("reply %+v to subscribe %s", r, topic)
	}
	return r
}

func (f *fixture) publish(t testing.TB, topic string, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if err := f.rs.Publish(topic, []byte(`{"n":`+strconv.Itoa(i)+`}`)); err != nil {
			t.Fatal(err)
		}
	}
}

func nOf(t testing.TB, r reply) int {
	t.Helper()
	var v struct{ N int }
	if err := json.Unmarshal(r.Data, &v); err != nil {
		t.Fatalf("data %s: %v", r.Data, err)
	}
	return v.N
}

func waitSubs(t testing.TB, h *broadcast.Hub, topic string, n int) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for h.Subscribers(topic) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d subscribers, want %d", topic, h.Subscribers(topic), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// The scenario: subscribe, receive publications with positions,
// disconnect, publications go on, reconnect with the last position: the
// reply recovers exactly the missed ones, in order, and live ones follow.
func TestReconnectRecoversExactlyWhatWasMissed(t *testing.T) {
	f := newFixture(t, Options{}, engine.Config{}, nil)
	if err := f.rs.Topics("news.*", History{Size: 100}); err != nil {
		t.Fatal(err)
	}
	a := f.dial(t)
	first := a.subscribe("news.eu", nil)
	if first.Epoch == "" || first.Offset != 0 || first.Recovered != nil {
		t.Fatalf("first subscribe: %+v", first)
	}
	f.publish(t, "news.eu", 1, 5)
	var last broadcast.Position
	for i := 1; i <= 5; i++ {
		p := a.expect("pub")
		if p.Topic != "news.eu" || p.Epoch != first.Epoch || p.Offset != uint64(i) || nOf(t, p) != i {
			t.Fatalf("publication %d: %+v", i, p)
		}
		last = broadcast.Position{Epoch: p.Epoch, Offset: p.Offset}
	}
	a.conn.Close()
	waitSubs(t, f.hub, "news.eu", 0)
	f.publish(t, "news.eu", 6, 9) // missed

	b := f.dial(t)
	r := b.subscribe("news.eu", &last)
	if r.Recovered == nil || !*r.Recovered || r.Epoch != first.Epoch || r.Offset != 9 || len(r.Pubs) != 4 {
		t.Fatalf("resubscribe: %+v", r)
	}
	for i, p := range r.Pubs {
		if p.Type != "pub" || p.Offset != uint64(6+i) || nOf(t, p) != 6+i || p.Epoch != first.Epoch {
			t.Fatalf("recovered %d: %+v", i, p)
		}
	}
	f.publish(t, "news.eu", 10, 10)
	if p := b.expect("pub"); p.Offset != 10 || nOf(t, p) != 10 {
		t.Fatalf("live after recovery: %+v", p)
	}
	// Up to date: recovered with nothing to add.
	c := f.dial(t)
	if r := c.subscribe("news.eu", &broadcast.Position{Epoch: first.Epoch, Offset: 10}); r.Recovered == nil || !*r.Recovered || len(r.Pubs) != 0 {
		t.Fatalf("up to date: %+v", r)
	}
	st := f.hub.Stats()
	if st.HistoryTopics != 1 || st.HistoryMessages != 10 || st.HistoryBytes == 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRecoveredFalse(t *testing.T) {
	f := newFixture(t, Options{MaxRecover: 5}, engine.Config{}, nil)
	if err := f.rs.Topics("t", History{Size: 10}); err != nil {
		t.Fatal(err)
	}
	if err := f.rs.Topics("plain", History{}); err != nil {
		t.Fatal(err)
	}
	c := f.dial(t)
	ep := c.subscribe("t", nil).Epoch
	f.publish(t, "t", 1, 20)
	for i := 1; i <= 20; i++ {
		c.expect("pub")
	}
	for _, tc := range []struct {
		name  string
		since broadcast.Position
		ok    bool
	}{
		{"another epoch", broadcast.Position{Epoch: "0123456789abcdef", Offset: 15}, false},
		{"older than the history", broadcast.Position{Epoch: ep, Offset: 9}, false},
		{"more than MaxRecover", broadcast.Position{Epoch: ep, Offset: 14}, false},
		{"beyond the newest", broadcast.Position{Epoch: ep, Offset: 21}, false},
		{"within", broadcast.Position{Epoch: ep, Offset: 15}, true},
	} {
		d := f.dial(t)
		r := d.subscribe("t", &tc.since)
		if r.Recovered == nil || *r.Recovered != tc.ok || r.Offset != 20 || r.Epoch != ep || (len(r.Pubs) > 0) != tc.ok {
			t.Fatalf("%s: %+v", tc.name, r)
		}
	}
	// Reset: a new epoch, and positions of the old one cannot resume.
	f.hub.ResetHistory("t")
	d := f.dial(t)
	if r := d.subscribe("t", &broadcast.Position{Epoch: ep, Offset: 20}); *r.Recovered || r.Epoch == ep || r.Offset != 0 {
		t.Fatalf("after reset: %+v", r)
	}
	// A topic without history: no position, never recovered.
	if r := d.subscribe("plain", &broadcast.Position{Epoch: ep, Offset: 1}); r.Epoch != "" || *r.Recovered {
		t.Fatalf("plain: %+v", r)
	}
	f.publish(t, "plain", 1, 1)
	if p := d.expect("pub"); p.Epoch != "" || p.Offset != 0 || nOf(t, p) != 1 {
		t.Fatalf("plain publication: %+v", p)
	}
}

// Clients resubscribe while a publisher publishes without pause: with the
// client's rule (drop offsets at or below the last one it has), every
// client sees every offset after its position exactly once, in order. Run
// with handlers on the loops and on workers (where subscribing is posted to
// the loop).
func TestResubscribeDuringPublishesLosesNothing(t *testing.T) {
	for _, workers := range []int{0, 2} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			f := newFixture(t, Options{}, engine.Config{Workers: workers}, nil)
			if err := f.rs.Topics("live", History{Size: 100000}); err != nil {
				t.Fatal(err)
			}
			const total, clients = 3000, 8
			ep, _ := f.hub.Position("live")
			published := make(chan int, total)
			go func() {
				for i := 1; i <= total; i++ {
					if err := f.rs.Publish("live", []byte(strconv.Itoa(i))); err != nil {
						t.Error(err)
						return
					}
					published <- i
				}
			}()
			var wg sync.WaitGroup
			for k := 0; k < clients; k++ {
				// Each client starts from a different point, once that
				// much has been published: resubscribes land mid-stream.
				from := k * total / (2 * clients)
				for n := 0; n < from; {
					select {
					case n = <-published:
					case <-time.After(hangGuard):
						t.Fatal("the publisher stalled")
					}
				}
				c := f.dial(t)
				wg.Add(1)
				go func() {
					defer wg.Done()
					c.sendReq(Request{Type: TypeSubscribe, Topic: "live", Since: &broadcast.Position{Epoch: ep.Epoch, Offset: uint64(from)}})
					last := uint64(from)
					for last < total {
						r := c.read()
						var pubs []reply
						switch r.Type {
						case "subscribed":
							if r.Recovered == nil || !*r.Recovered {
								t.Errorf("client from %d: not recovered: %+v", from, r)
								return
							}
							pubs = r.Pubs
						case "pub":
							pubs = []reply{r}
						default:
							t.Errorf("client from %d: %+v", from, r)
							return
						}
						for _, p := range pubs {
							if p.Offset <= last {
								continue // the client's rule: already had it
							}
							if p.Offset != last+1 || string(p.Data) != strconv.FormatUint(p.Offset, 10) {
								t.Errorf("client from %d: got offset %d (%s) after %d", from, p.Offset, p.Data, last)
								return
							}
							last = p.Offset
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

func TestUnsubscribeAndHeartbeat(t *testing.T) {
	w := &welcomer{}
	f := newFixture(t, Options{Ping: 5 * time.Second, Pong: 2 * time.Second}, engine.Config{}, w)
	if err := f.rs.Topics("t", History{Size: 10}); err != nil {
		t.Fatal(err)
	}
	w.rs.Store(f.rs)
	c := f.dial(t)
	if w := c.expect("welcome"); w.Ping != 5000 || w.Pong != 2000 {
		t.Fatalf("welcome %+v", w)
	}
	c.subscribe("t", nil)
	c.send(`{"type":"unsubscribe","id":3,"topic":"t"}`)
	if r := c.expect("unsubscribed"); r.ID != 3 || r.Topic != "t" {
		t.Fatalf("unsubscribed %+v", r)
	}
	waitSubs(t, f.hub, "t", 0)
	f.publish(t, "t", 1, 1)
	c.send(`{"type":"ping","id":4}`)
	if r := c.expect("pong"); r.ID != 4 {
		t.Fatalf("pong %+v", r)
	}
	c.send(`{"type":"ping"}`)
	if r := c.expect("pong"); r.ID != 0 {
		t.Fatalf("pong %+v", r)
	}
	// Unsubscribing again, or from a topic never subscribed, succeeds.
	c.send(`{"type":"unsubscribe","topic":"t"}`)
	c.expect("unsubscribed")
}

// welcomer is an application that sends the welcome on open and echoes
// what is not the protocol's.
type welcomer struct {
	engine.BaseHandler
	rs atomic.Pointer[Server]
}

func (w *welcomer) OnOpen(c *engine.Conn) { _ = w.rs.Load().Welcome(c) }

func TestApplicationMessagesPassThrough(t *testing.T) {
	f := newFixture(t, Options{}, engine.Config{}, echo{})
	c := f.dial(t)
	for _, msg := range []string{`{"type":"chat","text":"hi"}`, `hello`, `[1,2]`, `{"type":3}`} {
		c.send(msg)
		_ = c.conn.SetReadDeadline(time.Now().Add(hangGuard))
		got, err := wsutil.ReadServerText(c.conn)
		if err != nil || string(got) != msg {
			t.Fatalf("echo of %s: %q %v", msg, got, err)
		}
	}
	c.send(`{"type":"ping","id":1}`)
	c.expect("pong")
}

type echo struct{ engine.BaseHandler }

func (echo) OnMessage(c *engine.Conn, typ engine.MessageType, data []byte) { _ = c.Send(typ, data) }

func TestBadInputGetsErrorReplies(t *testing.T) {
	refused := errors.New("not for you")
	f := newFixture(t, Options{
		MaxSubscriptions: 2,
		Authorize: func(c *engine.Conn, topic string) error {
			if topic == "t.secret" {
				return refused
			}
			if topic == "t.panic" {
				panic("a broken hook")
			}
			return nil
		},
	}, engine.Config{}, nil)
	if err := f.rs.Topics("t.*", History{Size: 10}); err != nil {
		t.Fatal(err)
	}
	c := f.dial(t)
	for _, tc := range []struct{ msg, code, inMessage string }{
		{`{"type":"subscribe","id":1}`, CodeBadRequest, "without a topic"},
		{`{"type":"subscribe","id":1,"topic":5}`, CodeBadRequest, `"topic"`},
		{`{"type":"subscribe","id":1,"topic":"a b"}`, CodeBadRequest, "invalid topic"},
		{`{"type":"subscribe","id":1,"topic":"t.a","since":{"epoch":"x"}}`, CodeBadRequest, "epoch and an offset"},
		{`{"type":"subscribe","id":1,"topic":"t.a","since":{"epoch":"x","offset":-1}}`, CodeBadRequest, "offset"},
		{`{"type":"subscribe","id":1,"topic":"t.a","since":{"epoch":"x","offset":1.5}}`, CodeBadRequest, "offset"},
		{`{"type":"subscribe","id":1,"topic":"t.a","since":{"epoch":"x","offset":9007199254740992}}`, CodeBadRequest, "offset"},
		{`{"type":"subscribe","id":0,"topic":"t.a"}`, CodeBadRequest, "id"},
		{`{"type":"subscribe","id":"1","topic":"t.a"}`, CodeBadRequest, "id must"},
		{`{"type":"subscribe","id":1,"topic":"t.a","since":[]}`, CodeBadRequest, `"since"`},
		{`{"type":"subscribe","id":1,"topic":"other"}`, CodeForbidden, "not served"},
		{`{"type":"subscribe","id":1,"topic":"t.secret"}`, CodeForbidden, "not for you"},
		{`{"type":"subscribe","id":1,"topic":"t.panic"}`, CodeForbidden, "authorization failed"},
		{`{"type":"publish","id":1}`, CodeUnknownType, "publish"},
		{`{"type":7}`, CodeBadRequest, "type"},
		{`not json`, CodeBadRequest, "type"},
		{`{"type":"subscribe","id":1,"topic":"t.a"`, CodeBadRequest, "type"},
	} {
		c.send(tc.msg)
		r := c.expect("error")
		if r.Code != tc.code || !strings.Contains(r.Message, tc.inMessage) {
			t.Fatalf("%s: %+v, want %s mentioning %q", tc.msg, r, tc.code, tc.inMessage)
		}
	}
	// Binary frames are the application's; without one, ignored.
	if err := wsutil.WriteClientBinary(c.conn, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	c.subscribe("t.a", nil)
	c.subscribe("t.b", nil)
	c.subscribe("t.a", nil) // already in: no new subscription
	c.send(`{"type":"subscribe","id":9,"topic":"t.c"}`)
	if r := c.expect("error"); r.Code != CodeTooManySubscriptions || r.ID != 9 || r.Topic != "t.c" {
		t.Fatalf("third topic: %+v", r)
	}
	// Still open and serving.
	c.send(`{"type":"ping","id":10}`)
	c.expect("pong")
}

func TestPublicationEncodings(t *testing.T) {
	f := newFixture(t, Options{}, engine.Config{}, nil)
	if err := f.rs.Topics("t", History{Size: 10}); err != nil {
		t.Fatal(err)
	}
	c := f.dial(t)
	c.subscribe("t", nil)
	if err := f.rs.PublishBinary("t", []byte{0, 1, 2, 0xff}); err != nil {
		t.Fatal(err)
	}
	if p := c.expect("pub"); p.B64 != "AAEC/w==" || p.Data != nil || p.Offset != 1 {
		t.Fatalf("binary: %+v", p)
	}
	// Text that is not JSON, published on the hub directly: a JSON string.
	if err := f.hub.Publish("t", engine.TextMessage, []byte("say \"hi\"\n\x01é")); err != nil {
		t.Fatal(err)
	}
	p := c.expect("pub")
	var s string
	if err := json.Unmarshal(p.Data, &s); err != nil || s != "say \"hi\"\n\x01é" || p.Offset != 2 {
		t.Fatalf("text: %+v %q %v", p, s, err)
	}
	if err := f.rs.Publish("t", []byte("{")); !errors.Is(err, ErrNotJSON) {
		t.Fatalf("Publish of bad JSON: %v", err)
	}
	if err := f.rs.Publish("nope", []byte("1")); !errors.Is(err, ErrNotServed) {
		t.Fatalf("Publish to an undeclared topic: %v", err)
	}
}

func TestReconnectByCloseCode(t *testing.T) {
	yes := []engine.StatusCode{1001, 1006, 1011, 1012, 1013, 1014, 3000, 3499, 4000, 4499}
	no := []engine.StatusCode{1000, 1002, 1003, 1007, 1008, 1009, 1010, 3500, 3999, 4500, 4999}
	for _, c := range yes {
		if !Reconnect(c) {
			t.Errorf("Reconnect(%d) = false", c)
		}
	}
	for _, c := range no {
		if Reconnect(c) {
			t.Errorf("Reconnect(%d) = true", c)
		}
	}
}

// The history's age bound, through the protocol, with the server's clock
// moved by the test.
func TestHistoryAgeThroughTheProtocol(t *testing.T) {
	// Covered at the hub (broadcast.TestHistoryAgeBoundAndIdleTTL); here:
	// a recovery across a message past MaxAge answers recovered: false.
	var now atomic.Int64
	now.Store(int64(time.Hour))
	f := newFixtureClock(t, Options{}, engine.Config{}, nil, func() time.Duration { return time.Duration(now.Load()) })
	if err := f.rs.Topics("t", History{Size: 10, MaxAge: time.Minute}); err != nil {
		t.Fatal(err)
	}
	c := f.dial(t)
	ep := c.subscribe("t", nil).Epoch
	f.publish(t, "t", 1, 2)
	now.Add(int64(2 * time.Minute))
	f.publish(t, "t", 3, 3)
	for i := 0; i < 3; i++ {
		c.expect("pub")
	}
	d := f.dial(t)
	if r := d.subscribe("t", &broadcast.Position{Epoch: ep, Offset: 0}); *r.Recovered {
		t.Fatalf("across expired: %+v", r)
	}
	if r := d.subscribe("t", &broadcast.Position{Epoch: ep, Offset: 2}); !*r.Recovered || len(r.Pubs) != 1 || r.Pubs[0].Offset != 3 {
		t.Fatalf("after expired: %+v", r)
	}
}
