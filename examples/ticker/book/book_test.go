package book

import (
	"bytes"
	"compress/flate"
	"encoding/json"
	"testing"
)

// The exact bytes of one message: the Node port and any other builder are
// checked against this package, and this package against this golden
// string, so a change of the format is a deliberate one.
func TestAppendGolden(t *testing.T) {
	got := string(Append(nil, 3, 12, 1700000000000000000, 200))
	const want = `{"sym":"S3","seq":12,"ts":1700000000000000000,"mid":103.2314,"levels":[[103.2309,9043,103.2319,49619],[103.2289,20633,103.2342,12389],[103.2277,38297,103.2357,33560],[103.2263,38756,103.2382,39359]]}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// Every message is valid JSON with the contract's fields, about the size
// asked, different from its neighbours, and compresses like market data:
// a few to one, not hundreds.
func TestAppendShapeSizeAndEntropy(t *testing.T) {
	for _, tc := range []struct {
		size         int
		minLen       int
		maxLen       int
		minZ, maxZ   float64 // compressed ÷ plain, flate level 1
		wantOneLevel bool
	}{
		{size: 0, minLen: 90, maxLen: 120, wantOneLevel: true, minZ: 0.5, maxZ: 1},
		{size: 512, minLen: 512 - 24, maxLen: 512 + 10, minZ: 0.3, maxZ: 0.7},
		{size: 1024, minLen: 1024 - 24, maxLen: 1024 + 10, minZ: 0.3, maxZ: 0.6},
		{size: 16384, minLen: 16384 - 24, maxLen: 16384 + 10, minZ: 0.3, maxZ: 0.6},
	} {
		var prev []byte
		for seq := uint64(1); seq <= 50; seq++ {
			k := int(seq % 7)
			msg := Append(nil, k, seq, 1732500000123456789+int64(seq), tc.size)
			var m struct {
				Sym    string      `json:"sym"`
				Seq    uint64      `json:"seq"`
				TS     int64       `json:"ts"`
				Mid    float64     `json:"mid"`
				Levels [][]float64 `json:"levels"`
			}
			if err := json.Unmarshal(msg, &m); err != nil {
				t.Fatalf("size %d: %v: %s", tc.size, err, msg)
			}
			if m.Seq != seq || m.TS != 1732500000123456789+int64(seq) || m.Sym != "S"+string(rune('0'+k)) || m.Mid < 98 || m.Mid > 151 {
				t.Fatalf("size %d: %+v", tc.size, m)
			}
			if len(msg) < tc.minLen || len(msg) > tc.maxLen {
				t.Errorf("size %d seq %d: %d bytes", tc.size, seq, len(msg))
			}
			if tc.wantOneLevel != (len(m.Levels) == 1) {
				t.Errorf("size %d: %d levels", tc.size, len(m.Levels))
			}
			for i, l := range m.Levels {
				if len(l) != 4 || l[0] >= m.Mid || l[2] <= m.Mid || (i > 0 && (l[0] >= m.Levels[i-1][0] || l[2] <= m.Levels[i-1][2])) {
					t.Fatalf("size %d: level %d %v is not a book (mid %v)", tc.size, i, l, m.Mid)
				}
			}
			if bytes.Equal(msg, prev) {
				t.Fatalf("size %d: seq %d repeats the message before it", tc.size, seq)
			}
			prev = msg
			var z bytes.Buffer
			w, _ := flate.NewWriter(&z, flate.BestSpeed)
			w.Write(msg)
			w.Flush()
			if r := float64(z.Len()) / float64(len(msg)); r < tc.minZ || r > tc.maxZ {
				t.Errorf("size %d seq %d: compresses to %.2f of its size", tc.size, seq, r)
			}
		}
	}
}

func TestAppendDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 2048)
	if n := testing.AllocsPerRun(100, func() { buf = Append(buf[:0], 7, 99, 1, 1024) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
