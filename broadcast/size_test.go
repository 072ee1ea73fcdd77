package broadcast

import (
	"testing"
	"unsafe"
)

// TestMemberSize pins the size of a hub member, which every subscribed
// connection pays on top of its Conn: the allocator rounds it up to a size
// class (64, 80, 96, 112, ...), so a field that pushes it past 64 bytes
// costs 16 bytes per subscriber, 16 MB at a million. What only a slow
// subscriber needs belongs in lag.
func TestMemberSize(t *testing.T) {
	const max = 64
	if n := unsafe.Sizeof(member{}); n > max {
		t.Fatalf("member is %d bytes, over the %d-byte size class", n, max)
	} else {
		t.Logf("member is %d bytes", n)
	}
}
