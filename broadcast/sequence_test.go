package broadcast

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/heraldws/herald/engine"
)

// fakeSequencer is a broker's stream in miniature: it numbers each
// topic's messages and delivers them to every hub, in one order.
type fakeSequencer struct {
	mu      sync.Mutex
	epoch   string
	offsets map[string]uint64
	hubs    []*Hub
	refuse  error
}

func (s *fakeSequencer) Sequence(msgs []Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuse != nil {
		return s.refuse
	}
	pos := make([]Position, len(msgs))
	for i := range msgs {
		s.offsets[msgs[i].Topic]++
		pos[i] = Position{Epoch: s.epoch, Offset: s.offsets[msgs[i].Topic]}
	}
	for _, h := range s.hubs {
		if err := h.DeliverSequenced(msgs, pos); err != nil {
			return err
		}
	}
	return nil
}

func TestSequencedHistoryIsTheSameOnEveryHub(t *testing.T) {
	seq := &fakeSequencer{epoch: "E1", offsets: map[string]uint64{}}
	h1, _, _ := newHub(t, Options{}, engine.Config{})
	h2, srv2, sub2 := newHub(t, Options{}, engine.Config{})
	seq.hubs = []*Hub{h1, h2}
	for _, h := range seq.hubs {
		if err := h.SetHistory("s.*", HistoryOptions{Size: 10, Sequencer: seq}); err != nil {
			t.Fatal(err)
		}
	}
	if err := h1.SetHistory("x", HistoryOptions{Sequencer: seq}); err == nil {
		t.Fatal("a Sequencer without a history accepted")
	}
	if p := mustPos(t, h2, "s.a"); p != (Position{}) {
		t.Fatalf("before any message: %+v, want the empty epoch", p)
	}
	conn := connect(t, srv2, sub2, "s.a")
	waitSubs(t, h2, "s.a", 1)
	publishN(t, h1, "s.a", 1, 3)
	for i := 1; i <= 3; i++ {
		if got := readText(t, conn); got != fmt.Sprint(i) {
			t.Fatalf("subscriber on the other hub: %q, want %d", got, i)
		}
	}
	for _, h := range seq.hubs {
		if cur, ok, r := recoverAll(t, h, "s.a", &Position{"E1", 1}, 0); !ok || cur != (Position{"E1", 3}) || fmt.Sprint(r.data) != "[2 3]" {
			t.Fatalf("recover: %v %+v %v", ok, cur, r.data)
		}
	}
	// A replay is skipped: nothing new kept, nothing sent.
	if err := h2.DeliverSequenced([]Message{{Topic: "s.a", Type: engine.TextMessage, Data: []byte("2")}}, []Position{{"E1", 2}}); err != nil {
		t.Fatal(err)
	}
	if st := h2.Stats(); st.HistoryMessages != 3 {
		t.Fatalf("after a replay: %+v", st)
	}
	// A gap: the history starts again at the offset that arrived.
	if err := h2.DeliverSequenced([]Message{{Topic: "s.a", Type: engine.TextMessage, Data: []byte("6")}}, []Position{{"E1", 6}}); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, conn); got != "6" {
		t.Fatalf("after the replay: %q, want 6", got)
	}
	if _, ok, _ := recoverAll(t, h2, "s.a", &Position{"E1", 3}, 0); ok {
		t.Fatal("recovered across a gap")
	}
	if _, ok, r := recoverAll(t, h2, "s.a", &Position{"E1", 5}, 0); !ok || fmt.Sprint(r.offsets) != "[6]" {
		t.Fatalf("after the gap: %v %v", ok, r.offsets)
	}
	// Another epoch starts the history again.
	if err := h2.DeliverSequenced([]Message{{Topic: "s.a", Type: engine.TextMessage, Data: []byte("n")}}, []Position{{"E2", 1}}); err != nil {
		t.Fatal(err)
	}
	if cur := mustPos(t, h2, "s.a"); cur != (Position{"E2", 1}) {
		t.Fatalf("after a new epoch: %+v", cur)
	}
	// A refusal delivers nothing, and says so.
	seq.refuse = errors.New("broker away")
	err := h1.Publish("s.a", engine.TextMessage, []byte("lost"))
	var se *SequenceError
	if !errors.As(err, &se) {
		t.Fatalf("refused: %v", err)
	}
	if err := h2.DeliverSequenced([]Message{{Topic: "s.a"}}, nil); err == nil {
		t.Fatal("positions missing: accepted")
	}
}
