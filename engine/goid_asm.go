//go:build amd64 || arm64

package engine

// currentG returns the address of the running goroutine's runtime
// descriptor. The engine compares it with the one recorded for each event
// loop, so that Conn.Send called from a handler running on the loop writes
// directly instead of queueing. The value is only compared, never
// dereferenced.
func currentG() uintptr

const canDetectLoop = true
