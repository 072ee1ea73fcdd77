package loadgen

import "testing"

func TestTickerFields(t *testing.T) {
	msg := FormatTicker(nil, 17, 12345, 1732500000000000000, 128)
	if len(msg) != 128 {
		t.Fatalf("len %d, want 128", len(msg))
	}
	sym, seq, ts, ok := TickerFields(msg)
	if !ok || sym != 17 || seq != 12345 || ts != 1732500000000000000 {
		t.Fatalf("got %d %d %d %v", sym, seq, ts, ok)
	}
	// Field order does not matter; missing fields are reported.
	if _, _, _, ok := TickerFields([]byte(`{"ts":5,"seq":2,"sym":"S3"}`)); !ok {
		t.Fatal("reordered fields rejected")
	}
	for _, m := range []string{`{"sym":"S1","seq":2}`, `{"sym":"X1","seq":2,"ts":3}`, `{"sym":"S","seq":2,"ts":3}`, `{"sym":"S1","seq":"a","ts":3}`} {
		if _, _, _, ok := TickerFields([]byte(m)); ok {
			t.Errorf("%s accepted", m)
		}
	}
	if n := testing.AllocsPerRun(100, func() { TickerFields(msg) }); n != 0 {
		t.Errorf("TickerFields allocates %v times", n)
	}
}
