//go:build !amd64 && !arm64

package engine

// currentG is not available on this architecture: every Send goes through
// the loop's inbox, which is correct everywhere, just one hop slower.
func currentG() uintptr { return 0 }

const canDetectLoop = false
