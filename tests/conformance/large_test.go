package conformance

import (
	"flag"
	"testing"
)

// The cases above 4 MiB (the 16 and 64 MiB messages of categories 9 and D)
// are about sizes, not concurrency: the smaller cases run the same code
// paths between the same goroutines. Under the race detector, which
// instruments every byte copied, they cost some 40% of the suite's CPU, so
// a race build skips them and make's unit target runs them once more
// without it, alone:
//
//	go test ./tests/conformance -args -large-only
var largeOnly = flag.Bool("large-only", false, "run only the cases above 4 MiB")

// skipBySize skips tc when this run does not cover its size.
func skipBySize(t *testing.T, tc wsCase) {
	t.Helper()
	switch {
	case tc.slow && testing.Short():
		t.Skip("above 4 MiB: skipped in -short mode")
	case tc.slow && raceEnabled && !*largeOnly:
		t.Skip("above 4 MiB: run without the race detector (go test ./tests/conformance -args -large-only)")
	case !tc.slow && *largeOnly:
		t.Skip("-large-only: 4 MiB or less")
	}
}
