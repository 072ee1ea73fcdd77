package tick

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/heraldws/herald/examples/ticker/book"
)

func TestAppendSizeAndShape(t *testing.T) {
	for _, size := range []int{0, 40, 64, 128, 1000} {
		for _, seq := range []uint64{1, 9, 10, 123456789} {
			msg := Append(nil, "S12", seq, 1732500000123456789, size)
			var m struct {
				Sym string `json:"sym"`
				Seq uint64 `json:"seq"`
				TS  int64  `json:"ts"`
				Pad string `json:"pad"`
			}
			if err := json.Unmarshal(msg, &m); err != nil {
				t.Fatalf("%q: %v", msg, err)
			}
			if m.Sym != "S12" || m.Seq != seq || m.TS != 1732500000123456789 {
				t.Errorf("%q decodes to %+v", msg, m)
			}
			bare := len(Append(nil, "S12", seq, 1732500000123456789, 0))
			if want := max(size, bare); len(msg) != want {
				t.Errorf("size %d seq %d: %d bytes, want %d", size, seq, len(msg), want)
			}
		}
	}
	got := string(Append(nil, "S0", 1, 1700000000000000000, 60))
	want := `{"sym":"S0","seq":1,"ts":1700000000000000000,"pad":"xxxxxx"}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestFilter(t *testing.T) {
	cases := []struct {
		param string
		want  []bool
	}{
		{"", []bool{true, true, true, true}},
		{"S1", []bool{false, true, false, false}},
		{"S0,S3", []bool{true, false, false, true}},
		{" S2 , S9,x,S01,S-1,S+1", []bool{false, false, true, false}},
	}
	for _, c := range cases {
		if got := Filter(c.param, 4); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Filter(%q) = %v, want %v", c.param, got, c.want)
		}
	}
}

func TestFeed(t *testing.T) {
	f := NewFeed(2, 128)
	before := time.Now().UnixNano()
	for i := uint64(1); i <= 3; i++ {
		for k := 0; k < f.Len(); k++ {
			var m struct {
				Sym string `json:"sym"`
				Seq uint64 `json:"seq"`
				TS  int64  `json:"ts"`
			}
			msg := f.Next(k)
			if err := json.Unmarshal(msg, &m); err != nil {
				t.Fatal(err)
			}
			if m.Sym != Symbol(k) || m.Seq != i || m.TS < before || len(msg) != 128 {
				t.Errorf("message %d of %s: %s", i, Symbol(k), msg)
			}
		}
	}
}

// A feed of the book payload sends herald's order book for each symbol,
// sequence number and time; an unknown payload is refused.
func TestFeedOf(t *testing.T) {
	for _, tc := range []struct {
		payload string
		book    bool
		err     bool
	}{{"", false, false}, {Pad, false, false}, {Book, true, false}, {"zeros", false, true}} {
		f, err := NewFeedOf(2, 1024, tc.payload)
		if (err != nil) != tc.err {
			t.Fatalf("payload %q: %v", tc.payload, err)
		}
		if err != nil {
			continue
		}
		for i := uint64(1); i <= 2; i++ {
			msg := f.Next(1)
			var m struct {
				Seq uint64 `json:"seq"`
				TS  int64  `json:"ts"`
			}
			if err := json.Unmarshal(msg, &m); err != nil || m.Seq != i {
				t.Fatalf("payload %q: %s: %v", tc.payload, msg, err)
			}
			if isBook := string(msg) == string(book.Append(nil, 1, i, m.TS, 1024)); isBook != tc.book {
				t.Fatalf("payload %q: book %v: %.80s", tc.payload, isBook, msg)
			}
		}
	}
}
