// Package tick builds the messages of the bench contract's ticker mode, so
// that every Go peer emits byte-identical messages (the Node peers build the
// same shape in node/common.mjs).
//
// A message is one JSON object with its fields in this order:
//
//	{"sym":"S0","seq":1,"ts":1732500000000000000,"pad":"xxxx"}
//
// "pad" fills the message up to the requested size; when the other fields
// alone are already longer, "pad" is empty and the message is longer than
// asked.
//
// With the "book" payload (-payload book) a message is instead the order
// book of herald's examples/ticker/book for the symbol, sequence number and
// time: the same generator herald's ticker uses, so that byte counts under
// permessage-deflate compare the same content.
package tick

import (
	"strconv"
	"strings"
	"time"

	"github.com/heraldws/herald/examples/ticker/book"
)

// The payloads of the ticker's -payload flag.
const (
	Pad  = book.Pad  // "pad":"xxxx…", the default
	Book = book.Book // an order book whose numbers change every message
)

// Symbol returns the name of symbol k: "S<k>".
func Symbol(k int) string { return "S" + strconv.Itoa(k) }

// Filter returns which of the k symbols a connection subscribes to, given the
// value of its "symbols" query parameter: empty means all of them, otherwise
// a comma-separated list of names such as "S0,S3". Names that are not among
// the k symbols are ignored.
func Filter(param string, k int) []bool {
	subs := make([]bool, k)
	if param == "" {
		for i := range subs {
			subs[i] = true
		}
		return subs
	}
	for _, name := range strings.Split(param, ",") {
		num, ok := strings.CutPrefix(strings.TrimSpace(name), "S")
		if !ok {
			continue
		}
		i, err := strconv.Atoi(num)
		if err != nil || i < 0 || i >= k || Symbol(i) != "S"+num {
			continue
		}
		subs[i] = true
	}
	return subs
}

// fixed is the length of every part of a message except the values of sym,
// seq, ts and pad: {"sym":"","seq":,"ts":,"pad":""}.
const fixed = len(`{"sym":"","seq":,"ts":,"pad":""}`)

// Append appends the message for sym with sequence number seq and publish
// time ts (Unix nanoseconds), padded to size bytes, to dst.
func Append(dst []byte, sym string, seq uint64, ts int64, size int) []byte {
	var num [20]byte
	seqDigits := len(strconv.AppendUint(num[:0], seq, 10))
	tsDigits := len(strconv.AppendInt(num[:0], ts, 10))
	pad := size - fixed - len(sym) - seqDigits - tsDigits
	dst = append(dst, `{"sym":"`...)
	dst = append(dst, sym...)
	dst = append(dst, `","seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	dst = append(dst, `,"pad":"`...)
	for ; pad > 0; pad-- {
		dst = append(dst, 'x')
	}
	return append(dst, `"}`...)
}

// Feed holds the per-symbol sequence numbers of a ticker.
type Feed struct {
	syms []string
	seq  []uint64
	size int
	book bool
}

// NewFeed returns a feed of k symbols, S0..S<k-1>, whose messages are size
// bytes long, padded with "pad".
func NewFeed(k, size int) *Feed {
	f := &Feed{syms: make([]string, k), seq: make([]uint64, k), size: size}
	for i := range f.syms {
		f.syms[i] = Symbol(i)
	}
	return f
}

// NewFeedOf returns a feed of k symbols whose messages are about size
// bytes of payload: Pad ("" too) or Book.
func NewFeedOf(k, size int, payload string) (*Feed, error) {
	isBook, err := book.IsBook(payload)
	if err != nil {
		return nil, err
	}
	f := NewFeed(k, size)
	f.book = isBook
	return f, nil
}

// Len returns the number of symbols.
func (f *Feed) Len() int { return len(f.syms) }

// Next advances symbol k's sequence number (the first message of a symbol has
// seq 1) and returns its message in a new slice, stamped with the current
// time. The slice is never reused, so it may be handed to an asynchronous
// writer.
func (f *Feed) Next(k int) []byte {
	f.seq[k]++
	buf := make([]byte, 0, max(f.size+16, 64))
	if f.book {
		return book.Append(buf, k, f.seq[k], time.Now().UnixNano(), f.size)
	}
	return Append(buf, f.syms[k], f.seq[k], time.Now().UnixNano(), f.size)
}
