package engine

import (
	"testing"
	"unsafe"
)

// TestConnSize pins the size of a Conn, which every idle connection pays:
// the allocator rounds it up to a size class (..., 128, 144, 160, 176, 192,
// ...), so a field that pushes it past 144 bytes costs 16 bytes on every
// connection. Keep what only a handshake, a partial frame or a close needs
// out of it.
func TestConnSize(t *testing.T) {
	const max = 144
	if n := unsafe.Sizeof(Conn{}); n > max {
		t.Fatalf("Conn is %d bytes, over the %d-byte size class", n, max)
	} else {
		t.Logf("Conn is %d bytes", n)
	}
}

// TestTLSRecSize pins the size of herald's TLS record state, which every
// idle TLS 1.3 connection pays (tls_record.go): at 208 bytes it fills its
// size class, so a field more costs 16 bytes on each of them.
func TestTLSRecSize(t *testing.T) {
	const max = 208
	if n := unsafe.Sizeof(tlsRec{}); n > max {
		t.Fatalf("tlsRec is %d bytes, over the %d-byte size class", n, max)
	} else {
		t.Logf("tlsRec is %d bytes", n)
	}
}
