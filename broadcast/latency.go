package broadcast

import (
	"sync/atomic"
	"time"
)

// LatencyBuckets are the upper bounds of Stats.PublishLatency's buckets:
// from a tenth of a millisecond, where a loop that keeps up writes a
// publish, to seconds, where a fan-out to a million sockets on a few cores
// ends.
var LatencyBuckets = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second,
}

// Latency is a histogram of publish → written: from Publish (or a batch's
// arrival from the Bus) to the end of the loop's flush that wrote it to
// its subscribers, once per batch and loop, not per subscriber.
type Latency struct {
	// Counts[i] counts the observations over LatencyBuckets[i-1] and up to
	// LatencyBuckets[i]; the last one those over every bound.
	Counts [len(LatencyBuckets) + 1]uint64
	Sum    time.Duration // of every observation
}

// Count is the number of observations.
func (l Latency) Count() uint64 {
	var n uint64
	for _, c := range l.Counts {
		n += c
	}
	return n
}

// latencyHist is a loop's Latency, written by its loop only; atomic so
// that Stats can read it.
type latencyHist struct {
	counts [len(LatencyBuckets) + 1]atomic.Uint64
	sum    atomic.Int64
}

func (h *latencyHist) observe(d time.Duration) {
	i := 0
	for i < len(LatencyBuckets) && d > LatencyBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

func (h *latencyHist) addTo(l *Latency) {
	for i := range h.counts {
		l.Counts[i] += h.counts[i].Load()
	}
	l.Sum += time.Duration(h.sum.Load())
}
