package loadgen

import (
	"context"
	"testing"
	"time"
)

// A window whose loop lags behind its intervals (every interval's end is
// already past when it gets there, as on a busy machine) still ends at
// WindowDone: one more interval at most, not the rest of the Duration.
func TestLaggingWindowEndsAtWindowDone(t *testing.T) {
	done := make(chan struct{})
	after := 0
	e := &engine{cfg: Config{Interval: time.Microsecond, WindowDone: done, Event: func(map[string]any) {
		select {
		case <-done:
			after++
		default:
			close(done) // at the first interval
		}
	}}}
	start := time.Now()
	// A window that missed WindowDone would report the rest of its
	// intervals, some 50,000 of them.
	if !e.window(context.Background(), start, start.Add(50*time.Millisecond)) {
		t.Fatal("the window reported its context ended")
	}
	if after > 1 {
		t.Fatalf("%d intervals reported after WindowDone, want at most 1", after)
	}
}
