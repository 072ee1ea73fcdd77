package broadcast

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/heraldws/herald/engine"
)

// interestRecorder is an InterestBus that records what the hub tells it and
// refuses publishes with err, if set.
type interestRecorder struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (r *interestRecorder) Attach(*Hub) {}

func (r *interestRecorder) Publish([]Message) error { return r.err }

func (r *interestRecorder) Interest(topic string, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, fmt.Sprintf("%s:%t", topic, on))
}

func (r *interestRecorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// The hub tells an InterestBus when a topic gains its first local subscriber
// and loses its last one, and at no other time: not for a second
// subscriber, nor when one of two leaves, nor for a connection's close
// while others remain.
func TestInterestFollowsFirstAndLastSubscriber(t *testing.T) {
	bus := &interestRecorder{}
	h, srv, sub := newHub(t, Options{Bus: bus}, engine.Config{})
	a := connect2(t, srv, sub, "x", "y")
	b := connect2(t, srv, sub, "x")
	waitSubs(t, h, "x", 2)
	waitSubs(t, h, "y", 1)
	want := []string{"x:true", "y:true"}
	if got := bus.got(); !slices.Equal(got, want) {
		t.Fatalf("after two subscribers: %v, want %v", got, want)
	}

	if err := h.Unsubscribe(a.c, "x"); err != nil {
		t.Fatal(err)
	}
	waitSubs(t, h, "x", 1)
	if got := bus.got(); !slices.Equal(got, want) {
		t.Fatalf("after one of two left: %v, want %v", got, want)
	}

	b.net.Close() // the last subscriber of x goes by closing its connection
	waitSubs(t, h, "x", 0)
	if err := h.Unsubscribe(a.c, "y"); err != nil {
		t.Fatal(err)
	}
	waitSubs(t, h, "y", 0)
	connect2(t, srv, sub, "x")
	waitSubs(t, h, "x", 1)
	want = append(want, "x:false", "y:false", "x:true")
	if got := bus.got(); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// A Bus that refuses a batch does not stop local delivery: the subscribers
// get it and the publisher learns, through a *BusError, that other nodes
// did not.
func TestBusFailureStillDeliversLocally(t *testing.T) {
	broker := errors.New("broker away")
	h, srv, sub := newHub(t, Options{Bus: &interestRecorder{err: broker}}, engine.Config{})
	c := connect(t, srv, sub, "news")
	waitSubs(t, h, "news", 1)
	err := h.Publish("news", engine.TextMessage, []byte("local"))
	var be *BusError
	if !errors.As(err, &be) || !errors.Is(err, broker) {
		t.Fatalf("Publish = %v, want a *BusError wrapping %v", err, broker)
	}
	if got := readText(t, c); got != "local" {
		t.Fatalf("local subscriber got %q, want %q", got, "local")
	}
	// An invalid batch is refused before the Bus sees it: not a BusError.
	if err := h.Publish("bad topic", engine.TextMessage, nil); !errors.Is(err, ErrInvalidTopic) || errors.As(err, &be) {
		t.Fatalf("Publish of an invalid topic = %v, want ErrInvalidTopic", err)
	}
}
