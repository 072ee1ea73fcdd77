package loadgen

import "strconv"

// The ticker messages of the bench contract: one JSON text message per
// symbol with "sym":"S<k>", "seq":<n> and "ts":<Unix ns at publish>.

// TickerFields scans a ticker message for "sym":"S<k>", "seq":<n> and
// "ts":<ns> without decoding JSON. ok is false when any is missing.
func TickerFields(p []byte) (sym int, seq int64, ts int64, ok bool) {
	i := index(p, `"sym":"S`)
	if i < 0 {
		return
	}
	v, n := parseUint(p[i+8:])
	if n == 0 || i+8+n >= len(p) || p[i+8+n] != '"' {
		return
	}
	sym = int(v)
	i = index(p, `"seq":`)
	if i < 0 {
		return
	}
	v, n = parseUint(p[i+6:])
	if n == 0 {
		return
	}
	seq = int64(v)
	i = index(p, `"ts":`)
	if i < 0 {
		return
	}
	v, n = parseUint(p[i+5:])
	if n == 0 {
		return
	}
	ts = int64(v)
	return sym, seq, ts, true
}

func parseUint(b []byte) (uint64, int) {
	var v uint64
	i := 0
	for i < len(b) && i < 19 && b[i] >= '0' && b[i] <= '9' {
		v = v*10 + uint64(b[i]-'0')
		i++
	}
	return v, i
}

// index is bytes.Index for a short constant needle, without the allocation
// of converting it.
func index(p []byte, needle string) int {
	n := len(needle)
	first := needle[0]
	for i := 0; i+n <= len(p); i++ {
		if p[i] == first && string(p[i:i+n]) == needle {
			return i
		}
	}
	return -1
}

// FormatTicker renders a ticker message the way the bench contract
// describes it, padded with a "pad" field to about size bytes. Servers and
// tests that need one use it.
func FormatTicker(b []byte, sym int, seq, ts int64, size int) []byte {
	start := len(b)
	b = append(b, `{"sym":"S`...)
	b = strconv.AppendInt(b, int64(sym), 10)
	b = append(b, `","seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, `,"pad":"`...)
	for len(b)-start < size-2 {
		b = append(b, 'x')
	}
	b = append(b, `"}`...)
	return b
}
