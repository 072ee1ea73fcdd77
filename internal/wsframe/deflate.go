package wsframe

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
)

// The client side of permessage-deflate (RFC 7692) for tests and load
// generators, on the standard library's compress/flate: an implementation
// independent of the server's. Messages are compressed on their own (what
// herald's answer, client_no_context_takeover, asks of a client).

// DeflateOffer is the permessage-deflate offer that browsers and Node's ws
// send.
const DeflateOffer = "permessage-deflate; client_max_window_bits"

// Deflate compresses p as a message of its own at compress/flate's level,
// as RFC 7692 7.2.1 describes: flushed, without the trailing 00 00 ff ff.
// Put it in a frame (or in fragments) with RSV1 on the first.
func Deflate(p []byte, level int) []byte {
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, level)
	if err != nil {
		panic(fmt.Sprintf("wsframe: Deflate: %v", err))
	}
	_, _ = w.Write(p)
	_ = w.Flush()
	return bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})
}

// ErrInflatedTooBig: a compressed server message inflates to more than the
// reader's limit.
var ErrInflatedTooBig = errors.New("server message inflates past the reader's limit")

// Inflate inflates the payload of a compressed message (all its fragments
// joined), reading at most max bytes (ErrInflatedTooBig beyond), as RFC
// 7692 7.2.2 describes: 00 00 ff ff appended, then inflated. A payload that
// is not valid DEFLATE, or ends inside a block, is an error.
func Inflate(p []byte, max int64) ([]byte, error) {
	tail := []byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff} // and an empty final block
	r := flate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader(tail)))
	out, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("inflating a %d-byte compressed message: %w", len(p), err)
	}
	if int64(len(out)) > max {
		return nil, ErrInflatedTooBig
	}
	return out, nil
}
