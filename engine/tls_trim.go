package engine

import (
	"bytes"
	"crypto/tls"
	"reflect"
	"unsafe"
)

// crypto/tls keeps what a Conn has read in three buffers that no API
// releases: rawInput (records as they arrive), input (the plaintext of the
// last record, a window on rawInput) and hand (handshake messages). Each
// keeps the capacity of the largest record or message it held: the
// handshake alone leaves about 4 KiB behind on every connection (a
// ClientHello with a post-quantum key share is 1.5 KiB, read into both),
// more than the rest of an idle TLS connection's state. On a server that
// holds hundreds of thousands of idle connections that is the largest
// cost, so herald drops them once they are empty (trimTLS).
//
// It reaches the fields by name and type, found once with reflect; if a
// Go release renames or retypes them, trimming turns itself off (the
// connection works as before, with the memory it costs then), and
// TestTLSTrimActive fails so that the change is noticed.
var tlsBufs = findTLSBufs()

type tlsBufOffsets struct {
	ok                    bool
	rawInput, input, hand uintptr
}

func findTLSBufs() tlsBufOffsets {
	t := reflect.TypeFor[tls.Conn]()
	field := func(name string, typ reflect.Type) (uintptr, bool) {
		f, ok := t.FieldByName(name)
		return f.Offset, ok && f.Type == typ && len(f.Index) == 1
	}
	buf, rdr := reflect.TypeFor[bytes.Buffer](), reflect.TypeFor[bytes.Reader]()
	var o tlsBufOffsets
	var ok1, ok2, ok3 bool
	o.rawInput, ok1 = field("rawInput", buf)
	o.input, ok2 = field("input", rdr)
	o.hand, ok3 = field("hand", buf)
	o.ok = ok1 && ok2 && ok3
	return o
}

// maxIdleTLSRead is the most capacity a connection's read buffers keep
// between reads: a small message's record fits; a large one's buffer is
// dropped once read.
const maxIdleTLSRead = 4 << 10

// trimTLS drops conn's read buffers of more than keep bytes of capacity if
// they are all empty, and reports whether they were. Loop only, once the
// handshake is over: then only the loop reads conn.
func trimTLS(conn *tls.Conn, keep int) bool {
	if !tlsBufs.ok {
		return false
	}
	base := unsafe.Pointer(conn)
	raw := (*bytes.Buffer)(unsafe.Add(base, tlsBufs.rawInput))
	in := (*bytes.Reader)(unsafe.Add(base, tlsBufs.input))
	hand := (*bytes.Buffer)(unsafe.Add(base, tlsBufs.hand))
	if raw.Len() != 0 || in.Len() != 0 || hand.Len() != 0 {
		return false
	}
	if raw.Cap() > keep {
		*raw = bytes.Buffer{}
		in.Reset(nil) // its window is on raw's memory
	}
	if hand.Cap() > keep {
		*hand = bytes.Buffer{}
	}
	return true
}

// tlsReadCap is the capacity conn's read buffers keep, for tests.
func tlsReadCap(conn *tls.Conn) int {
	if !tlsBufs.ok {
		return -1
	}
	base := unsafe.Pointer(conn)
	raw := (*bytes.Buffer)(unsafe.Add(base, tlsBufs.rawInput))
	hand := (*bytes.Buffer)(unsafe.Add(base, tlsBufs.hand))
	return raw.Cap() + hand.Cap()
}
