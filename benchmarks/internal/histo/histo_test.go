package histo

import (
	"math/rand/v2"
	"testing"
)

func TestMergeIsExact(t *testing.T) {
	all, a, b := New(), New(), New()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 100000; i++ {
		v := int64(rng.ExpFloat64()*50_000) + 1
		Record(all, v)
		if i%3 == 0 {
			Record(a, v)
		} else {
			Record(b, v)
		}
	}
	ea, err := Encode(a)
	if err != nil {
		t.Fatal(err)
	}
	eb, _ := Encode(b)
	m, err := Merge(ea, eb, "")
	if err != nil {
		t.Fatal(err)
	}
	if !m.Equals(all) {
		t.Fatalf("merged histogram differs from the one that saw every value")
	}
	for _, q := range []float64{50, 99, 99.9, 99.99, 100} {
		if m.ValueAtQuantile(q) != all.ValueAtQuantile(q) {
			t.Errorf("q%v: %d vs %d", q, m.ValueAtQuantile(q), all.ValueAtQuantile(q))
		}
	}
}

func TestEncodeRoundTripAndClamp(t *testing.T) {
	h := New()
	Record(h, 0)           // below range: counted as the lowest value
	Record(h, 1<<62)       // above range: clamped
	Record(h, 123_456_789) // 123 ms
	e, err := Encode(h)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Decode(e)
	if err != nil {
		t.Fatal(err)
	}
	if d.TotalCount() != 3 || !d.Equals(h) {
		t.Fatalf("round trip: %d values", d.TotalCount())
	}
	if _, err := Decode("not base64!"); err == nil {
		t.Fatal("garbage decoded")
	}
	s := Summarize(d)
	if s.Count != 3 || s.P50 < 123_000 || s.P50 > 123_500 {
		t.Fatalf("summary %+v", s)
	}
	if e, _ := Encode(New()); e != "" {
		t.Fatal("empty histogram should encode to the empty string")
	}
}

func TestCDFIsMonotonic(t *testing.T) {
	h := New()
	for i := int64(1); i <= 10000; i++ {
		Record(h, i*1000)
	}
	pts := CDF(h, 60)
	if len(pts) < 20 {
		t.Fatalf("%d points", len(pts))
	}
	for i := 1; i < len(pts); i++ {
		if pts[i].Quantile < pts[i-1].Quantile || pts[i].ValueUS < pts[i-1].ValueUS {
			t.Fatalf("not monotonic at %d: %+v %+v", i, pts[i-1], pts[i])
		}
	}
}
