// Package book builds the ticker's "book" messages: order-book snapshots of
// about a requested size whose numbers change with every message, so that
// they compress the way real market data does (a few to one) rather than
// the way a run of one repeated byte does (hundreds to one). Byte counts
// measured with permessage-deflate are only meaningful with such a payload.
//
// A message is derived from (symbol, sequence number, timestamp, size)
// alone, so that herald's ticker, the Go peer servers of the benchmarks
// (which call this package) and the Node peers (a port of it in
// benchmarks/peers/node/common.mjs) send the same bytes for the same
// inputs. The format, for symbol 3, sequence 12:
//
//	{"sym":"S3","seq":12,"ts":1700000000000000000,"mid":103.2314,
//	 "levels":[[103.2309,9043,103.2319,49619],[103.2289,20633,103.2342,12389],...]}
//
// on one line, without spaces. Each level is [bid price, bid quantity, ask
// price, ask quantity]. Prices are fixed-point with four decimals; levels
// are added until the message is within 24 bytes of size, so a message is
// about size bytes (from 24 bytes under to 10 over for the usual sizes;
// always at least one level, so never under about 100 bytes).
//
// The numbers come from mulberry32, a 32-bit generator that ports exactly
// to JavaScript (Math.imul), seeded with
// seed = uint32(k)·0x9E3779B1 + uint32(seq)·0x85EBCA77 (mod 2³²), and drawn
// in this order: the mid's offset, the bid's and the ask's distance from
// it, then per level the bid quantity, the bid's step down, the ask
// quantity, the ask's step up. All prices are integers in 1/10,000.
package book

import (
	"fmt"
	"strconv"
)

// The payloads of a ticker's -payload flag, in herald's ticker and the
// benchmarks' peers alike.
const (
	// Pad fills a tick with "pad":"xxx…": the bench contract's plain tick,
	// which compresses to almost nothing.
	Pad = "pad"
	// Book fills it with the order book of Append.
	Book = "book"
)

// IsBook checks a -payload value: it reports whether it asks for Book, and
// refuses what is neither Book nor Pad ("" is Pad).
func IsBook(payload string) (bool, error) {
	switch payload {
	case "", Pad:
		return false, nil
	case Book:
		return true, nil
	}
	return false, fmt.Errorf("-payload %q: want %s or %s", payload, Pad, Book)
}

// Append appends the book message of symbol k ("S<k>") with sequence
// number seq and publish time ts (Unix ns), of about size bytes, to dst.
// It does not allocate when dst has room.
func Append(dst []byte, k int, seq uint64, ts int64, size int) []byte {
	start := len(dst)
	r := rng(uint32(k)*0x9E3779B1 + uint32(seq)*0x85EBCA77)
	mid := int64(1_000_000+(k%50)*10_000) + int64(r.next()%20001) - 10_000
	bid := mid - 1 - int64(r.next()%5)
	ask := mid + 1 + int64(r.next()%5)

	dst = append(dst, `{"sym":"S`...)
	dst = strconv.AppendInt(dst, int64(k), 10)
	dst = append(dst, `","seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	dst = append(dst, `,"mid":`...)
	dst = appendPrice(dst, mid)
	dst = append(dst, `,"levels":[`...)
	for i := 0; ; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		bidQty := 1 + r.next()%50_000
		dst = append(dst, '[')
		dst = appendPrice(dst, bid)
		dst = append(dst, ',')
		dst = strconv.AppendUint(dst, uint64(bidQty), 10)
		bid -= 1 + int64(r.next()%25)
		askQty := 1 + r.next()%50_000
		dst = append(dst, ',')
		dst = appendPrice(dst, ask)
		dst = append(dst, ',')
		dst = strconv.AppendUint(dst, uint64(askQty), 10)
		dst = append(dst, ']')
		ask += 1 + int64(r.next()%25)
		// "]}" closes the message.
		if len(dst)-start+2 >= size-24 {
			break
		}
	}
	return append(dst, "]}"...)
}

// appendPrice appends p/10,000 with exactly four decimals.
func appendPrice(dst []byte, p int64) []byte {
	dst = strconv.AppendInt(dst, p/10_000, 10)
	frac := p % 10_000
	dst = append(dst, '.', byte('0'+frac/1000), byte('0'+frac/100%10), byte('0'+frac/10%10), byte('0'+frac%10))
	return dst
}

// rng is mulberry32's state.
type rng uint32

func (r *rng) next() uint32 {
	*r += 0x6D2B79F5
	t := uint32(*r)
	t = (t ^ t>>15) * (t | 1)
	t ^= t + (t^t>>7)*(t|61)
	return t ^ t>>14
}
