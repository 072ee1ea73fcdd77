package broadcast

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/heraldws/herald/codec"
	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/internal/looplink"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// subscriber is a handler that subscribes every connection to the topics
// named in its request path ("/a,b,c").
type subscriber struct {
	engine.BaseHandler
	hub    *Hub
	opened chan *engine.Conn
}

func (s *subscriber) OnOpen(c *engine.Conn) {
	topics := strings.Split(strings.TrimPrefix(c.Request().Path, "/"), ",")
	if err := s.hub.Subscribe(c, topics...); err != nil {
		_ = c.Close(engine.StatusPolicyViolation, err.Error())
	}
	if s.opened != nil {
		s.opened <- c
	}
}

// newHub starts a server with two loops and a hub on it.
func newHub(t testing.TB, opts Options, cfg engine.Config) (*Hub, *engine.Server, *subscriber) {
	return newHubWithClock(t, opts, cfg, nil)
}

// newHubWithClock is newHub on a server whose timer clock is now, if set.
func newHubWithClock(t testing.TB, opts Options, cfg engine.Config, now func() time.Duration) (*Hub, *engine.Server, *subscriber) {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	cfg.Loops = 2
	cfg.Logger = quiet
	h := &subscriber{opened: make(chan *engine.Conn, 10000)}
	srv, err := engine.New(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	if now != nil {
		looplink.SetClock(srv, now)
	}
	if h.hub, err = New(srv, opts); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // a hang guard
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return h.hub, srv, h
}

// connect opens a client subscribed to topics and waits until the hub has
// registered it.
func connect(t testing.TB, srv *engine.Server, sub *subscriber, topics ...string) net.Conn {
	t.Helper()
	conn, _ := connectBoth(t, srv, sub, topics...)
	return conn
}

// connectBoth is connect that also returns the server's side of the
// connection. Tests must not run clients in parallel with it: it takes the
// next connection the handler opened.
func connectBoth(t testing.TB, srv *engine.Server, sub *subscriber, topics ...string) (net.Conn, *engine.Conn) {
	t.Helper()
	conn, _, _, err := ws.Dialer{Timeout: 5 * time.Second}.Dial(context.Background(),
		"ws://"+srv.Addr().String()+"/"+strings.Join(topics, ","))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	select {
	case c := <-sub.opened:
		return conn, c
	case <-time.After(60 * time.Second): // a hang guard
		t.Fatal("not opened")
	}
	return nil, nil
}

// backlog reads, on c's loop, the bytes the server holds for c.
func backlog(t testing.TB, c *engine.Conn) int {
	t.Helper()
	n := make(chan int, 1)
	lc := looplink.ConnOf(c)
	if err := lc.Loop().Post(func() { n <- lc.Buffered() }); err != nil {
		t.Fatal(err)
	}
	return <-n
}

// liveHeap is the heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// waitSubs waits until topic has n subscribers.
func waitSubs(t testing.TB, h *Hub, topic string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second) // a hang guard
	for h.Subscribers(topic) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d subscribers, want %d", topic, h.Subscribers(topic), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func readText(t testing.TB, conn net.Conn) string {
	t.Helper()
	// A hang guard, not a speed test: generous for a loaded machine.
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	for {
		f, err := ws.ReadFrame(conn)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		switch f.Header.OpCode {
		case ws.OpText, ws.OpBinary:
			return string(f.Payload)
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(f.Payload)
			t.Fatalf("closed by server: %d %s", code, reason)
		}
	}
}

func TestFanOutInOrderExactlyOnceAcrossLoops(t *testing.T) {
	h, srv, sub := newHub(t, Options{}, engine.Config{})
	const clients, msgs = 40, 300
	conns := make([]net.Conn, clients)
	loops := map[int]bool{}
	for i := range conns {
		var c *engine.Conn
		conns[i], c = connectBoth(t, srv, sub, "prices")
		loops[looplink.ConnOf(c).Loop().Index()] = true
	}
	waitSubs(t, h, "prices", clients)
	if len(loops) != 2 {
		t.Fatalf("connections landed on %d loops, want 2", len(loops))
	}
	go func() {
		for i := 0; i < msgs; i++ {
			if err := h.Publish("prices", engine.TextMessage, []byte(strconv.Itoa(i))); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for _, conn := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < msgs; i++ {
				if got := readText(t, conn); got != strconv.Itoa(i) {
					t.Errorf("message %d: got %q", i, got)
					return
				}
			}
		}()
	}
	wg.Wait()
	// A delivery is counted just after its write: settle every loop first.
	looplink.Sweep(srv)
	looplink.Sweep(srv)
	if st := h.Stats(); st.Deliveries != clients*msgs || st.Published != msgs {
		t.Fatalf("stats %+v", st)
	}
}

func TestBatchGoesOutInOneWritePerSubscriber(t *testing.T) {
	h, srv, sub := newHub(t, Options{}, engine.Config{})
	conn := connect(t, srv, sub, "S0", "S1", "S2")
	other := connect(t, srv, sub, "S1")
	gappy := connect(t, srv, sub, "S0", "S2") // its frames are not contiguous in the batch
	waitSubs(t, h, "S1", 2)
	waitSubs(t, h, "S2", 2)
	batch := []Message{
		{Topic: "S0", Type: engine.TextMessage, Data: []byte("a")},
		{Topic: "S1", Type: engine.TextMessage, Data: []byte("b")},
		{Topic: "S2", Type: engine.BinaryMessage, Data: []byte("c")},
		{Topic: "nobody", Type: engine.TextMessage, Data: []byte("d")},
	}
	if err := h.PublishBatch(batch); err != nil {
		t.Fatal(err)
	}
	// All three frames arrive in one segment: 3 frames of 3 bytes.
	buf := make([]byte, 64)
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	n, err := conn.Read(buf)
	if err != nil || n != 9 {
		t.Fatalf("first read: %d bytes %v, want the whole batch (9 bytes)", n, err)
	}
	if got := string(buf[:n]); got != "\x81\x01a\x81\x01b\x82\x01c" {
		t.Fatalf("batch bytes %q", got)
	}
	if got := readText(t, other); got != "b" {
		t.Fatalf("S1-only subscriber got %q", got)
	}
	_ = gappy.SetReadDeadline(time.Now().Add(60 * time.Second))
	if n, err := gappy.Read(buf); err != nil || string(buf[:n]) != "\x81\x01a\x82\x01c" {
		t.Fatalf("S0,S2 subscriber read %q %v, want both frames in one write", buf[:n], err)
	}
}

func TestUnsubscribeAndCloseDuringPublish(t *testing.T) {
	h, srv, sub := newHub(t, Options{}, engine.Config{})
	stay := connect(t, srv, sub, "t")
	var leavers []clientPair
	for i := 0; i < 20; i++ {
		leavers = append(leavers, connect2(t, srv, sub, "t"))
	}
	waitSubs(t, h, "t", 21)
	const msgs = 2000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < msgs; i++ {
			_ = h.Publish("t", engine.TextMessage, []byte(strconv.Itoa(i)))
		}
	}()
	// While messages fly: half the leavers drop their TCP connection, half
	// are unsubscribed from this goroutine (through their loop's inbox).
	for i, l := range leavers {
		if i%2 == 0 {
			l.net.Close()
		} else if err := h.Unsubscribe(l.c, "t"); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < msgs; i++ {
		if got := readText(t, stay); got != strconv.Itoa(i) {
			t.Fatalf("message %d: got %q", i, got)
		}
	}
	<-done
	waitSubs(t, h, "t", 1)
}

func TestUnsubscribeKeepsOtherTopics(t *testing.T) {
	h, srv, sub := newHub(t, Options{}, engine.Config{})
	first := connect2(t, srv, sub, "x", "y")
	second := connect2(t, srv, sub, "x", "y")
	waitSubs(t, h, "y", 2)
	if err := h.Unsubscribe(second.c, "y"); err != nil {
		t.Fatal(err)
	}
	waitSubs(t, h, "y", 1)
	_ = h.Publish("y", engine.TextMessage, []byte("only-first"))
	_ = h.Publish("x", engine.TextMessage, []byte("both"))
	if got := readText(t, first.net); got != "only-first" {
		t.Fatalf("first client got %q", got)
	}
	if got := readText(t, second.net); got != "both" {
		t.Fatalf("unsubscribed client got %q, want only the x message", got)
	}
	if h.Topics() != 2 {
		t.Fatalf("Topics = %d", h.Topics())
	}
	// The last subscriber leaving removes the topic.
	_ = h.Unsubscribe(first.c, "y")
	waitSubs(t, h, "y", 0)
	if h.Topics() != 1 {
		t.Fatalf("Topics = %d after the last unsubscribe", h.Topics())
	}
}

type clientPair struct {
	net net.Conn
	c   *engine.Conn
}

func connect2(t testing.TB, srv *engine.Server, sub *subscriber, topics ...string) clientPair {
	t.Helper()
	conn, _, _, err := ws.Dialer{Timeout: 5 * time.Second}.Dial(context.Background(),
		"ws://"+srv.Addr().String()+"/"+strings.Join(topics, ","))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	select {
	case c := <-sub.opened:
		return clientPair{net: conn, c: c}
	case <-time.After(60 * time.Second): // a hang guard
		t.Fatal("not opened")
	}
	return clientPair{}
}

func TestConcurrentPublishers(t *testing.T) {
	h, srv, sub := newHub(t, Options{}, engine.Config{})
	const publishers, each = 8, 200
	conn := connect(t, srv, sub, "a")
	waitSubs(t, h, "a", 1)
	var wg sync.WaitGroup
	for p := 0; p < publishers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				_ = h.Publish("a", engine.TextMessage, []byte(fmt.Sprintf("%d:%d", p, i)))
			}
		}()
	}
	// Per publisher, order is kept; across publishers, any interleaving.
	next := make([]int, publishers)
	for i := 0; i < publishers*each; i++ {
		var p, n int
		if _, err := fmt.Sscanf(readText(t, conn), "%d:%d", &p, &n); err != nil {
			t.Fatal(err)
		}
		if n != next[p] {
			t.Fatalf("publisher %d: got %d, want %d", p, n, next[p])
		}
		next[p]++
	}
	wg.Wait()
}

func TestInvalidInput(t *testing.T) {
	h, srv, sub := newHub(t, Options{}, engine.Config{})
	conn := connect(t, srv, sub, "ok")
	for _, topic := range []string{"", "has space", "tab\t", strings.Repeat("x", MaxTopicLen+1), "ctl\x01", "é"} {
		if err := h.Publish(topic, engine.TextMessage, nil); err == nil {
			t.Errorf("Publish(%q) accepted", topic)
		}
	}
	if err := h.Publish("ok", engine.MessageType(9), nil); !errors.Is(err, ErrInvalidType) {
		t.Errorf("bad type: %v", err)
	}
	if err := h.Publish("ok", engine.TextMessage, []byte("bad \xff utf-8")); !errors.Is(err, ErrInvalidUTF8) {
		t.Errorf("invalid UTF-8 text: %v", err)
	}
	// A batch with one bad message is refused whole: nothing reaches the wire.
	err := h.PublishBatch([]Message{
		{Topic: "ok", Type: engine.TextMessage, Data: []byte("fine")},
		{Topic: "ok", Type: engine.TextMessage, Data: []byte{0xc0, 0x80}},
	})
	if !errors.Is(err, ErrInvalidUTF8) {
		t.Errorf("batch with invalid UTF-8: %v", err)
	}
	if err := h.Publish("ok", engine.BinaryMessage, []byte{0xff}); err != nil {
		t.Errorf("binary message refused: %v", err)
	}
	if got := readText(t, conn); got != "\xff" {
		t.Errorf("first message on the wire is %q, want the binary one", got)
	}
	// A subscription to an invalid topic is refused; the handler closes.
	bad, br, _, err := ws.Dialer{Timeout: 5 * time.Second}.Dial(context.Background(), "ws://"+srv.Addr().String()+"/a,,b")
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	var r io.Reader = bad
	if br != nil { // the close frame came with the 101
		r = br
	}
	f, err := ws.ReadFrame(r)
	if err != nil || f.Header.OpCode != ws.OpClose {
		t.Fatalf("invalid subscription: %v %v", f.Header.OpCode, err)
	}
}

// stall is a slow-consumer scenario: a hub with a small high-water mark,
// one subscriber of every topic that never reads and one that does, and far
// more published than the first can buffer. The publisher waits for the
// reader to get each batch, exactly, before the next, so the reader is never
// slow itself: only the stalled subscriber could hold it back, and must not.
// Whatever the policies, what the server holds for the stalled subscriber
// stays within the high-water mark and one batch (a subscriber under the
// mark gets its whole batch in one write), and the process's heap does not
// grow with what was published.
type stall struct {
	policy   Policy            // the hub's default
	policies map[string]Policy // per topic, set before anyone subscribes
	topics   []string
	batches  int
	batch    func(i int) []Message
}

func (sc stall) run(t *testing.T) (h *Hub, stalled, reader net.Conn) {
	// The stalled subscriber must meet the hub's policy, not the engine's
	// WriteTimeout, however long the run takes on a busy machine; and a
	// subscriber closed by the policy reads its close frame only after the
	// run, so the close handshake must not time out first.
	const highWater = 256 << 10
	h, srv, sub := newHub(t, Options{HighWater: highWater, Policy: sc.policy},
		engine.Config{MaxOutboundBytes: 16 << 20, WriteTimeout: -1, CloseTimeout: time.Hour})
	for topic, p := range sc.policies {
		if err := h.SetPolicy(topic, p); err != nil {
			t.Fatal(err)
		}
	}
	stalled, stalledConn := connectBoth(t, srv, sub, sc.topics...)
	reader = connect(t, srv, sub, sc.topics...)
	waitSubs(t, h, sc.topics[len(sc.topics)-1], 2)
	heapBefore := liveHeap()
	maxBacklog, largestBatch := 0, 0
	for i := 0; i < sc.batches; i++ {
		batch := sc.batch(i)
		if err := h.PublishBatch(batch); err != nil {
			t.Fatal(err)
		}
		size := 0
		for _, m := range batch {
			size += codec.HeaderLen(len(m.Data)) + len(m.Data)
			if got := readText(t, reader); got != string(m.Data) {
				t.Fatalf("batch %d: reader got %.20q, want %.20q", i, got, m.Data)
			}
		}
		largestBatch = max(largestBatch, size)
		maxBacklog = max(maxBacklog, backlog(t, stalledConn))
	}
	if bound := highWater + largestBatch; maxBacklog > bound {
		t.Fatalf("the server held up to %d bytes for the stalled subscriber, over the high-water mark and one batch (%d)", maxBacklog, bound)
	}
	if maxBacklog == 0 {
		t.Fatal("the stalled subscriber never had a backlog: the test did not stall it")
	}
	if grown := int64(liveHeap()) - int64(heapBefore); grown > 8<<20 {
		t.Fatalf("the heap grew by %d bytes while 32 MiB went to a subscriber that never reads", grown)
	}
	return h, stalled, reader
}

// slowCase stalls a subscriber of one topic with 2000 messages of 16 KiB
// (32 MiB: far more than the kernel buffers of the stalled connection hold,
// so the hub sees its backlog grow).
func slowCase(t *testing.T, policy Policy) (*Hub, net.Conn, net.Conn) {
	payload := []byte(strings.Repeat("p", 16<<10))
	return stall{
		policy:  policy,
		topics:  []string{"tick"},
		batches: 2000,
		batch: func(int) []Message {
			return []Message{{Topic: "tick", Type: engine.TextMessage, Data: payload}}
		},
	}.run(t)
}

func TestSlowConsumerDropNewest(t *testing.T) {
	h, _, _ := slowCase(t, DropNewest)
	st := h.Stats()
	if st.Dropped == 0 || st.SlowClosed != 0 {
		t.Fatalf("stats %+v: want drops and no closes", st)
	}
}

func TestSlowConsumerConflate(t *testing.T) {
	h, stalled, _ := slowCase(t, Conflate)
	if st := h.Stats(); st.Conflated == 0 {
		t.Fatalf("stats %+v: want conflation", st)
	}
	// One last value, published once while the subscriber is still slow,
	// and then the topic goes quiet: once the client drains, the value
	// must reach it without another publish to carry it (the loop's sweep
	// sends it), after what was buffered and instead of the thousands it
	// missed.
	if err := h.Publish("tick", engine.TextMessage, []byte("final")); err != nil {
		t.Fatal(err)
	}
	count := 0
	for readText(t, stalled) != "final" {
		count++
	}
	if count >= 2000 {
		t.Fatalf("stalled client got %d messages: nothing was conflated", count)
	}
}

// A subscriber of two topics gets each batch's two frames as one run; when
// it stalls, each frame still follows its own topic's policy.
func TestSlowConsumerPolicyPerTopicWithinARun(t *testing.T) {
	pad := strings.Repeat("p", 16<<10)
	const batches = 1000 // 32 MiB: far more than the stalled client's kernel buffers
	h, stalled, _ := stall{
		policies: map[string]Policy{"price": Conflate, "trade": DropNewest},
		topics:   []string{"price", "trade"},
		batches:  batches,
		batch: func(i int) []Message {
			return []Message{
				{Topic: "price", Type: engine.TextMessage, Data: []byte(fmt.Sprintf("price %d %s", i, pad))},
				{Topic: "trade", Type: engine.TextMessage, Data: []byte(fmt.Sprintf("trade %d %s", i, pad))},
			}
		},
	}.run(t)
	st := h.Stats()
	if st.Conflated == 0 || st.Dropped == 0 || st.SlowClosed != 0 {
		t.Fatalf("stats %+v: want price frames conflated and trade frames dropped", st)
	}
	// Draining, the stalled client gets the last price: kept by conflation
	// and sent by the loop once the client has drained, with no publish to
	// carry it (or written directly, if the kernel had taken enough of the
	// backlog for the subscriber to count as drained by then). The stats
	// above show that each topic kept its own policy within the runs: with
	// one policy for a whole run, one of the two counts would be zero.
	lastPrice := fmt.Sprintf("price %d ", batches-1)
	for !strings.HasPrefix(readText(t, stalled), lastPrice) {
	}
}

func TestSlowConsumerClosed(t *testing.T) {
	h, stalled, _ := slowCase(t, CloseSlow)
	if h.Stats().SlowClosed != 1 {
		t.Fatalf("SlowClosed = %d", h.Stats().SlowClosed)
	}
	// The stalled client finds a 1013 close after what was buffered.
	_ = stalled.SetReadDeadline(time.Now().Add(60 * time.Second))
	for {
		f, err := ws.ReadFrame(stalled)
		if err != nil {
			t.Fatal(err)
		}
		if f.Header.OpCode == ws.OpClose {
			if code, _ := ws.ParseCloseFrameData(f.Payload); code != 1013 {
				t.Fatalf("close code %d", code)
			}
			break
		}
	}
	waitSubs(t, h, "tick", 1)
}

func TestLocalBusFansOutAcrossHubs(t *testing.T) {
	var bus LocalBus
	h1, srv1, sub1 := newHub(t, Options{Bus: bus.Port()}, engine.Config{})
	h2, srv2, sub2 := newHub(t, Options{Bus: bus.Port()}, engine.Config{})
	c1 := connect(t, srv1, sub1, "news")
	c2 := connect(t, srv2, sub2, "news")
	waitSubs(t, h1, "news", 1)
	waitSubs(t, h2, "news", 1)
	if err := h1.Publish("news", engine.TextMessage, []byte("from-1")); err != nil {
		t.Fatal(err)
	}
	if err := h2.Publish("news", engine.TextMessage, []byte("from-2")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []net.Conn{c1, c2} {
		got := []string{readText(t, c), readText(t, c)}
		if got[0] == got[1] || !(got[0] == "from-1" || got[0] == "from-2") {
			t.Fatalf("got %q: each hub must deliver each publish once", got)
		}
	}
}

// SetPolicy may change a topic's policy while loops apply it to a slow
// subscriber: every message published to the slow subscriber then meets
// exactly one of the policies set (never a torn or default one), and the
// last one set is in force afterwards.
func TestSetPolicyWhileDelivering(t *testing.T) {
	h, stalled, reader := slowCase(t, DropNewest)
	before := h.Stats()
	const msgs = 200
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < msgs; i++ {
			_ = h.SetPolicy("tick", []Policy{DropNewest, Conflate}[i%2])
		}
	}()
	for i := 0; i < msgs; i++ {
		if err := h.Publish("tick", engine.TextMessage, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		if got := readText(t, reader); got != strconv.Itoa(i) {
			t.Fatalf("reader got %q, want %d", got, i)
		}
	}
	<-done
	if err := h.SetPolicy("tick", Conflate); err != nil {
		t.Fatal(err)
	}
	if err := h.Publish("tick", engine.TextMessage, []byte("last")); err != nil {
		t.Fatal(err)
	}
	_ = readText(t, reader)
	// Every loop has delivered every batch, the stalled subscriber's too
	// (its loop may lag the reader's), and counted it: two sweeps, as a
	// flush runs at the end of the drain the first one joined.
	looplink.Sweep(h.srv)
	looplink.Sweep(h.srv)
	after := h.Stats()
	// Each message met the policy in force or, while the kernel took some
	// of the stalled subscriber's backlog and it counted as drained, was
	// written to it (deliveries beyond the reader's own). None closed it:
	// a torn or unset policy would have (CloseSlow is the default).
	handled := int64(after.Dropped-before.Dropped) + int64(after.Conflated-before.Conflated)
	written := int64(after.Deliveries-before.Deliveries) - (msgs + 1)
	if handled+written < msgs+1 || after.SlowClosed != 0 {
		t.Fatalf("of %d messages to the slow subscriber %d were dropped or conflated and %d written; %d closes, want every message accounted for and no close",
			msgs+1, handled, written, after.SlowClosed)
	}
	// Conflate, set last, keeps "last" for the subscriber until it drains
	// (DropNewest would lose it while the subscriber is slow).
	for readText(t, stalled) != "last" {
	}
	if err := h.SetPolicy("bad topic", Conflate); err == nil {
		t.Fatal("SetPolicy accepted an invalid topic")
	}
	if err := h.SetPolicy("tick", Policy(7)); err == nil {
		t.Fatal("SetPolicy accepted an invalid policy")
	}
}
