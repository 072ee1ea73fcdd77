package broadcast

import (
	"testing"
	"time"

	"github.com/heraldws/herald/engine"
)

// TestLatencyBuckets: each observation lands in the first bucket whose
// bound it does not pass, and past the last bound in the overflow bucket.
func TestLatencyBuckets(t *testing.T) {
	for _, tc := range []struct {
		d      time.Duration
		bucket int
	}{
		{0, 0},
		{100 * time.Microsecond, 0},
		{100*time.Microsecond + 1, 1},
		{time.Millisecond, 3},
		{3 * time.Millisecond, 5},
		{5 * time.Second, len(LatencyBuckets) - 1},
		{time.Minute, len(LatencyBuckets)},
	} {
		var h latencyHist
		h.observe(tc.d)
		var l Latency
		h.addTo(&l)
		if l.Counts[tc.bucket] != 1 || l.Count() != 1 || l.Sum != tc.d {
			t.Errorf("%v: counts %v, sum %v; want bucket %d", tc.d, l.Counts, l.Sum, tc.bucket)
		}
	}
}

// TestPublishLatencyPerBatchAndLoop: every batch a loop writes is
// observed once on that loop, however many subscribers it has there.
func TestPublishLatencyPerBatchAndLoop(t *testing.T) {
	h, srv, sub := newHub(t, Options{}, engine.Config{})
	for range 6 {
		connect(t, srv, sub, "t")
	}
	waitSubs(t, h, "t", 6)
	loops := 0
	for _, sh := range *h.shards.Load() {
		if sh != nil && sh.subscribed.Load() > 0 {
			loops++
		}
	}
	const batches = 5
	for range batches {
		if err := h.Publish("t", engine.TextMessage, []byte("tick")); err != nil {
			t.Fatal(err)
		}
	}
	want := uint64(batches * loops)
	deadline := time.Now().Add(60 * time.Second) // a hang guard
	for h.Stats().Deliveries < batches*6 || h.Stats().PublishLatency.Count() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%d observations, want %d", h.Stats().PublishLatency.Count(), want)
		}
		time.Sleep(time.Millisecond)
	}
	if st := h.Stats(); st.PublishLatency.Count() != want || st.Deliveries != batches*6 {
		t.Fatalf("%d observations for %d deliveries; want %d: one per batch and loop", st.PublishLatency.Count(), st.Deliveries, want)
	}
}
