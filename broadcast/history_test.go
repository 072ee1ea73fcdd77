package broadcast

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/internal/looplink"
)

// recovered collects what Recover passes back.
type recoveredMsgs struct {
	offsets []uint64
	data    []string
}

func recoverAll(t *testing.T, h *Hub, topic string, since *Position, max int) (Position, bool, recoveredMsgs) {
	t.Helper()
	var r recoveredMsgs
	cur, ok, err := h.Recover(topic, since, max, func(off uint64, typ engine.MessageType, p []byte) {
		r.offsets = append(r.offsets, off)
		r.data = append(r.data, string(p))
	})
	if err != nil {
		t.Fatalf("Recover(%s): %v", topic, err)
	}
	return cur, ok, r
}

func publishN(t *testing.T, h *Hub, topic string, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if err := h.Publish(topic, engine.TextMessage, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
}

func TestHistoryPositionsAndCountBound(t *testing.T) {
	h, _, _ := newHub(t, Options{}, engine.Config{})
	if _, _, err := h.Recover("news", &Position{}, 0, nil); err != ErrNoHistory {
		t.Fatalf("before SetHistory: %v, want ErrNoHistory", err)
	}
	if err := h.SetHistory("news", HistoryOptions{Size: 4}); err != nil {
		t.Fatal(err)
	}
	start, err := h.Position("news")
	if err != nil || start.Offset != 0 || len(start.Epoch) != 16 {
		t.Fatalf("Position before any publish: %+v %v", start, err)
	}
	publishN(t, h, "news", 1, 10) // nobody subscribed: the history keeps them anyway
	cur, ok, r := recoverAll(t, h, "news", &Position{Epoch: start.Epoch, Offset: 7}, 0)
	if !ok || cur != (Position{start.Epoch, 10}) || fmt.Sprint(r.offsets) != "[8 9 10]" || fmt.Sprint(r.data) != "[8 9 10]" {
		t.Fatalf("from 7: cur %+v ok %v got %v %v", cur, ok, r.offsets, r.data)
	}
	// The oldest kept is 7: from 6 recovers 7..10, from 5 cannot.
	if _, ok, r := recoverAll(t, h, "news", &Position{start.Epoch, 6}, 0); !ok || fmt.Sprint(r.offsets) != "[7 8 9 10]" {
		t.Fatalf("from 6: %v %v", ok, r.offsets)
	}
	for _, since := range []Position{{start.Epoch, 5}, {start.Epoch, 11}, {"other", 9}} {
		if _, ok, r := recoverAll(t, h, "news", &since, 0); ok || r.offsets != nil {
			t.Fatalf("from %+v: recovered %v %v, want not", since, ok, r.offsets)
		}
	}
	if _, ok, _ := recoverAll(t, h, "news", &Position{start.Epoch, 10}, 0); !ok {
		t.Fatal("up to date: not recovered")
	}
	if _, ok, _ := recoverAll(t, h, "news", &Position{start.Epoch, 7}, 2); ok {
		t.Fatal("3 missed with max 2: recovered")
	}
	st := h.Stats()
	if st.HistoryTopics != 1 || st.HistoryMessages != 4 || st.HistoryBytes <= 0 {
		t.Fatalf("stats %+v", st)
	}
	h.ResetHistory("news")
	after, _ := h.Position("news")
	if after.Epoch == start.Epoch || after.Offset != 0 {
		t.Fatalf("after reset: %+v, was %+v", after, start)
	}
	if st := h.Stats(); st.HistoryMessages != 0 {
		t.Fatalf("after reset: %+v", st)
	}
}

func TestHistoryAgeBoundAndIdleTTL(t *testing.T) {
	var now atomic.Int64
	now.Store(int64(time.Hour))
	h, srv, sub := newHubWithClock(t, Options{}, engine.Config{}, func() time.Duration { return time.Duration(now.Load()) })
	if err := h.SetHistory("t.*", HistoryOptions{Size: 100, MaxAge: time.Minute, IdleTTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	// A subscriber makes a shard, whose loop runs the history's sweep.
	connect(t, srv, sub, "other")
	waitSubs(t, h, "other", 1)
	ep, _ := h.Position("t.a")
	publishN(t, h, "t.a", 1, 3) // at 0 s
	now.Add(int64(40 * time.Second))
	publishN(t, h, "t.a", 4, 5) // at 40 s
	now.Add(int64(30 * time.Second))
	// At 70 s: 1..3 are older than a minute.
	if _, ok, _ := recoverAll(t, h, "t.a", &Position{ep.Epoch, 0}, 0); ok {
		t.Fatal("recovered across expired messages")
	}
	if _, ok, r := recoverAll(t, h, "t.a", &Position{ep.Epoch, 3}, 0); !ok || fmt.Sprint(r.offsets) != "[4 5]" {
		t.Fatalf("from 3: %v %v", ok, r.offsets)
	}
	looplink.Sweep(srv)
	if st := h.Stats(); st.HistoryMessages != 2 {
		t.Fatalf("after a sweep at 70 s: %+v, want 2 messages", st)
	}
	now.Add(int64(time.Minute))
	looplink.Sweep(srv)
	if st := h.Stats(); st.HistoryMessages != 0 || st.HistoryBytes != 0 || st.HistoryTopics != 1 {
		t.Fatalf("after every message expired: %+v", st)
	}
	// Empty, but not idle for an hour yet: the epoch stays, the offset too.
	if cur, _ := h.Position("t.a"); cur != (Position{ep.Epoch, 5}) {
		t.Fatalf("position %+v", cur)
	}
	if _, ok, _ := recoverAll(t, h, "t.a", &Position{ep.Epoch, 5}, 0); !ok {
		t.Fatal("up to date, all expired: not recovered")
	}
	now.Add(int64(time.Hour))
	looplink.Sweep(srv)
	if st := h.Stats(); st.HistoryTopics != 0 {
		t.Fatalf("after IdleTTL: %+v", st)
	}
	if cur, _ := h.Position("t.a"); cur.Epoch == ep.Epoch || cur.Offset != 0 {
		t.Fatalf("after IdleTTL: %+v, want a new epoch", cur)
	}
}

func TestHistoryPatterns(t *testing.T) {
	h, _, _ := newHub(t, Options{}, engine.Config{})
	for _, bad := range []string{"", "a*b", "**", "a b*"} {
		if err := h.SetHistory(bad, HistoryOptions{Size: 1}); err == nil {
			t.Fatalf("pattern %q accepted", bad)
		}
	}
	if err := h.SetHistory("a", HistoryOptions{Size: -1}); err == nil {
		t.Fatal("negative size accepted")
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(h.SetHistory("*", HistoryOptions{Size: 1}))
	must(h.SetHistory("a.*", HistoryOptions{Size: 3}))
	must(h.SetHistory("a.x", HistoryOptions{}.withEnvelopeOnly()))
	publishN(t, h, "a.y", 1, 5)
	publishN(t, h, "b", 1, 5)
	publishN(t, h, "a.x", 1, 5)
	if _, _, r := recoverAll(t, h, "a.y", &Position{mustPos(t, h, "a.y").Epoch, 0}, 0); r.offsets != nil {
		t.Fatal("a.y recovered from 0 with 3 kept")
	}
	if st := h.Stats(); st.HistoryTopics != 2 || st.HistoryMessages != 4 {
		t.Fatalf("stats %+v: want a.y (3) and b (1)", st)
	}
	if _, err := h.Position("a.x"); err != ErrNoHistory {
		t.Fatalf("a.x (envelope only): %v", err)
	}
	must(h.SetHistory("a.*", HistoryOptions{})) // a.y now falls under *, and keeps its history
	if st := h.Stats(); st.HistoryTopics != 2 {
		t.Fatalf("a.* removed: %+v", st)
	}
	must(h.SetHistory("*", HistoryOptions{}))
	if st := h.Stats(); st.HistoryTopics != 0 || st.HistoryMessages != 0 {
		t.Fatalf("* removed: %+v", st)
	}
}

func (o HistoryOptions) withEnvelopeOnly() HistoryOptions {
	o.Envelope = func(dst []byte, m *Message, pos Position) []byte { return append(dst, m.Data...) }
	return o
}

func mustPos(t *testing.T, h *Hub, topic string) Position {
	t.Helper()
	p, err := h.Position(topic)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// An envelope is built once per message with its position; subscribers
// receive it, and the history keeps it.
func TestHistoryEnvelope(t *testing.T) {
	h, srv, sub := newHub(t, Options{}, engine.Config{})
	var calls atomic.Int64
	env := func(dst []byte, m *Message, pos Position) []byte {
		calls.Add(1)
		return fmt.Appendf(dst, "%s@%d:%s", m.Topic, pos.Offset, m.Data)
	}
	if err := h.SetHistory("e", HistoryOptions{Size: 10, Envelope: env}); err != nil {
		t.Fatal(err)
	}
	a, b := connect(t, srv, sub, "e"), connect(t, srv, sub, "e")
	waitSubs(t, h, "e", 2)
	if err := h.Publish("e", engine.BinaryMessage, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, a); got != "e@1:x" {
		t.Fatalf("a got %q", got)
	}
	if got := readText(t, b); got != "e@1:x" {
		t.Fatalf("b got %q", got)
	}
	if calls.Load() != 1 {
		t.Fatalf("envelope built %d times", calls.Load())
	}
	_, ok, r := recoverAll(t, h, "e", &Position{mustPos(t, h, "e").Epoch, 0}, 0)
	if !ok || fmt.Sprint(r.data) != "[e@1:x]" {
		t.Fatalf("history: %v %v", ok, r.data)
	}
}

// An Envelope that panics costs its message only: the offset stays free,
// the hub's locks are released, the panic is counted.
func TestHistoryEnvelopePanicCostsItsMessage(t *testing.T) {
	h, srv, sub := newHub(t, Options{}, engine.Config{})
	env := func(dst []byte, m *Message, pos Position) []byte {
		if string(m.Data) == "boom" {
			panic("a broken envelope")
		}
		return fmt.Appendf(dst, "%d:%s", pos.Offset, m.Data)
	}
	if err := h.SetHistory("e", HistoryOptions{Size: 10, Envelope: env}); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, srv, sub, "e")
	waitSubs(t, h, "e", 1)
	for _, d := range []string{"a", "boom", "b"} {
		if err := h.Publish("e", engine.TextMessage, []byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"1:a", "2:b"} {
		if got := readText(t, conn); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if st := h.Stats(); st.EnvelopePanics != 1 || st.HistoryMessages != 2 {
		t.Fatalf("stats %+v", st)
	}
}
