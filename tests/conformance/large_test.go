package conformance

import (
	"flag"
	"testing"
)

// The bulk cases are about sizes, not concurrency: the messages above
// 1 MiB and most of the 4 MiB ones of category 9, the 1 MiB ones written
// in small chunks, the compressed messages of 32 KiB and more of
// categories 12 and 13 and the bombs of D.4 that inflate to the limit.
// Smaller cases run the same code paths between the same goroutines.
// Under the race detector, which instruments every byte copied, compressed
// or inflated, the bulk cases cost most of the suite's CPU, so a race
// build skips them and make's unit target runs them once more without it,
// alone:
//
//	go test ./tests/conformance -args -large-only
var largeOnly = flag.Bool("large-only", false, "run only the bulk cases (sizes, not concurrency)")

// skipBySize skips tc when this run does not cover its size.
func skipBySize(t *testing.T, tc wsCase) {
	t.Helper()
	switch {
	case tc.bulk && testing.Short():
		t.Skip("bulk: skipped in -short mode")
	case tc.bulk && raceEnabled && !*largeOnly:
		t.Skip("bulk: run without the race detector (go test ./tests/conformance -args -large-only)")
	case !tc.bulk && *largeOnly:
		t.Skip("-large-only: not a bulk case")
	}
}
