package pool

import "testing"

func TestGetFitsHint(t *testing.T) {
	for _, hint := range []int{0, 1, SmallSize, SmallSize + 1, MediumSize, LargeSize, MaxPooledSize + 1} {
		b := Get(hint)
		if len(b.B) != 0 || cap(b.B) < hint {
			t.Fatalf("Get(%d): len %d cap %d", hint, len(b.B), cap(b.B))
		}
		Put(b)
	}
	Put(nil) // must not panic
}

// TestPoolKeepsReusingAfterCalibration guards against resetting buffers
// before bytebufferpool sees them: it calibrates on their length, and after
// its calibration window it would otherwise drop every buffer but the
// smallest, so each Get would allocate.
func TestPoolKeepsReusingAfterCalibration(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	payload := make([]byte, 2000)
	for i := 0; i < 100000; i++ { // well past bytebufferpool's calibration
		b := Get(len(payload))
		b.B = append(b.B, payload...)
		Put(b)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		b := Get(len(payload))
		b.B = append(b.B, payload...)
		Put(b)
	})
	if allocs > 0.1 {
		t.Fatalf("%.2f allocations per Get/Put after calibration, want 0", allocs)
	}
}

func BenchmarkGetPut(b *testing.B) {
	payload := make([]byte, 1024)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf := Get(len(payload))
		buf.B = append(buf.B, payload...)
		Put(buf)
	}
}
