//go:build race

package upgrade

// raceEnabled: the race detector's instrumentation allocates.
const raceEnabled = true
