// Package pool holds herald's reusable memory: byte buffers sorted into size
// classes, and a worker pool that runs blocking handlers in order per
// connection.
//
// Buffers come from github.com/valyala/bytebufferpool. One bytebufferpool.Pool
// calibrates its default size to what it sees most, so mixing 100-byte control
// frames with 16 MiB messages in one pool would make every small Get return a
// huge buffer. Herald keeps one pool per size class instead.
package pool

import "github.com/valyala/bytebufferpool"

// Size classes. A buffer is returned to the class its capacity fits, so a
// buffer that grew while in use moves to a larger class instead of bloating a
// small one.
const (
	SmallSize  = 4 << 10  // control frames, handshakes, small messages
	MediumSize = 64 << 10 // typical messages
	LargeSize  = 1 << 20  // big messages
	// MaxPooledSize is the largest capacity kept for reuse. Larger buffers
	// (a 64 MiB echo, say) are left to the garbage collector so that one huge
	// message does not pin its memory forever.
	MaxPooledSize = 16 << 20
)

var classes [4]bytebufferpool.Pool

func classFor(size int) int {
	switch {
	case size <= SmallSize:
		return 0
	case size <= MediumSize:
		return 1
	case size <= LargeSize:
		return 2
	default:
		return 3
	}
}

// Get returns an empty buffer from the class that fits sizeHint, the number of
// bytes the caller expects to write. Return it with Put when done.
func Get(sizeHint int) *bytebufferpool.ByteBuffer {
	b := classes[classFor(sizeHint)].Get()
	if sizeHint > cap(b.B) {
		b.B = make([]byte, 0, sizeHint)
	}
	return b
}

// Put returns b to the class its capacity fits. b must not be used afterwards.
// A nil b is ignored, so callers can Put unconditionally.
func Put(b *bytebufferpool.ByteBuffer) {
	if b == nil {
		return
	}
	c := cap(b.B)
	if c > MaxPooledSize {
		return
	}
	// No Reset here: bytebufferpool calibrates on len(b.B) at Put time and
	// resets the buffer itself; resetting first would teach it that every
	// buffer is empty and make it drop all but the smallest.
	classes[classFor(c)].Put(b)
}
