package loadgen

import (
	"testing"

	"github.com/klauspost/compress/flate"

	"github.com/heraldws/herald/examples/ticker/book"
)

// BenchmarkInflate is the load generator's cost of one compressed 1 KiB
// book tick, inflating it and reading its fields: new is a message never
// seen (inflateNow), repeated the same message again, as each of a
// broadcast's subscribers after the first gets it.
func BenchmarkInflate(b *testing.B) {
	msgs := make([][]byte, memoSize)
	for i := range msgs {
		msgs[i] = deflate(book.Append(nil, i%20, uint64(i+1), 1732500000123456789, 1024), flate.BestSpeed)
	}
	b.Run("new", func(b *testing.B) {
		var f flater
		benchInflate(b, msgs, f.inflateNow)
	})
	b.Run("repeated", func(b *testing.B) {
		var f flater
		benchInflate(b, msgs[:1], f.inflate)
	})
}

func benchInflate(b *testing.B, msgs [][]byte, inflate func([]byte, *history) ([]byte, error)) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		out, err := inflate(msgs[i%len(msgs)], nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, _, ok := TickerFields(out); !ok {
			b.Fatal("no ticker fields")
		}
	}
}
