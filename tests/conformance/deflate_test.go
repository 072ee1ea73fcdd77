package conformance

// permessage-deflate (RFC 7692) in the categories of the Autobahn
// TestSuite's cases 12 and 13, and what they leave out:
//
//	12  compressed messages of many sizes, whole and auto-fragmented, of
//	    five kinds of data, with the default offer
//	13  the same JSON messages with each offer combination of case 13
//	    (context takeover and window bits asked of the server), plus the
//	    offers browsers and gorilla/websocket send
//	D   what a compressed message can get wrong, and the limits: RSV1
//	    where it may not be, invalid or truncated DEFLATE data, invalid
//	    UTF-8 once inflated (failing fast), deflate bombs, a client that
//	    takes its context over although told not to
//
// The server under test is the bench contract's echo target, which
// negotiates permessage-deflate (Config.Compression on, messages of 512
// bytes and more compressed). Herald answers every offer it accepts with
// server_no_context_takeover and client_no_context_takeover: no
// connection keeps a compressor or a window. So the client compresses
// each message on its own, and inflates each of the server's on its own;
// both with the standard library's compress/flate (wsframe), which is not
// the server's implementation. Autobahn's offers 13.3, 13.5 and 13.7 limit
// the server's window to 2^8: herald accepts them, repeats the window, and
// compresses with Huffman codes only, which never refer back (the engine's
// tests check that; compress/flate cannot be held to a window).

import (
	"bytes"
	"compress/flate"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/heraldws/herald/internal/wsframe"
)

// The answers herald gives to an accepted offer.
const (
	answerDeflate   = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	answerDeflate15 = answerDeflate + "; server_max_window_bits=15"
	answerDeflate8  = answerDeflate + "; server_max_window_bits=8"
	// offerDefault is Autobahn's default offer (cases 12 and 13.1).
	offerDefault = "permessage-deflate; client_no_context_takeover; client_max_window_bits"
	// minCompressed is the echo target's Compression.MinSize (the
	// engine's default): smaller echoes come back uncompressed.
	minCompressed = 512
)

// dialDeflateWS connects, offers the extensions line offer and checks the
// server's answer (answer "" for declined); the connection speaks
// permessage-deflate if it was accepted.
func dialDeflateWS(t testing.TB, addr, offer, answer string) *wsConn {
	t.Helper()
	c := dialTCP(t, addr)
	key := wsframe.NewRequestKey()
	c.queue(wsframe.AppendRequest(nil, addr, "/", key, "Sec-WebSocket-Extensions: "+offer), whole)
	resp := c.readResponse()
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != wsframe.Accept(key) {
		t.Fatalf("offer %q: status %d, accept %q", offer, resp.StatusCode, resp.Header.Get("Sec-WebSocket-Accept"))
	}
	got := strings.Join(resp.Header.Values("Sec-WebSocket-Extensions"), ", ")
	if got != answer {
		t.Fatalf("offer %q: answered %q, want %q", offer, got, answer)
	}
	c.deflate = answer != ""
	return c
}

// compressed is a message compressed on its own by the client at level,
// in one frame (frag 0) or in fragments of frag bytes, RSV1 on the first.
func compressed(op byte, p []byte, frag, level int) []frame {
	z := wsframe.Deflate(p, level)
	if frag == 0 {
		return []frame{dataFrame(op, z).WithRSV(rsv1)}
	}
	fs := fragments(op, z, frag)
	fs[0] = fs[0].WithRSV(rsv1)
	return fs
}

// sendCompressed sends p compressed at the default level. It compresses
// when the case runs, not when the suite is listed: a run that skips a
// case (skipBySize) does not pay for its compression.
func sendCompressed(op byte, p []byte, frag int) step {
	return later(func() step { return send(compressed(op, p, frag, flate.DefaultCompression)...) })
}

// later is the step mk makes, made when the case runs.
func later(mk func() step) step {
	return func(c *wsConn) { mk()(c) }
}

// expectEcho expects the message echoed; want is whether the server must
// have compressed it, or nil when either is right.
func expectEcho(op byte, p []byte, want *bool) step {
	return func(c *wsConn) {
		c.t.Helper()
		ev, err := c.next()
		if err != nil {
			c.t.Fatalf("want %s, got %s", describe(op, p), c.describeErr(err))
		}
		if ev.op != op || !bytes.Equal(ev.payload, p) {
			c.t.Fatalf("want %s, got %s%s", describe(op, p), describeEvent(ev), firstDiff(p, ev.payload))
		}
		if want != nil && ev.compressed != *want {
			c.t.Fatalf("%s: echo compressed %v, want %v", describe(op, p), ev.compressed, *want)
		}
	}
}

var yes, no = true, false

// compressionOf is what the echo of n bytes of a data set must be: plain
// below the server's MinSize, compressed from it up when the data
// compresses, either for data that may not.
func compressionOf(n int, compressible bool) *bool {
	switch {
	case n < minCompressed:
		return &no
	case compressible:
		return &yes
	}
	return nil
}

// A data set of Autobahn case 12, generated: the messages are windows of
// LEN bytes moving through it, as there.
type dataSet struct {
	desc         string
	op           byte
	compressible bool
	data         []byte
}

const dataSetSize = 512 << 10

func dataSets() []dataSet {
	rng := mrand.New(mrand.NewPCG(12, 7))
	words := func(vocab []string, sep string) []byte {
		var b bytes.Buffer
		for b.Len() < dataSetSize {
			b.WriteString(vocab[rng.IntN(len(vocab))])
			b.WriteString(sep)
		}
		return b.Bytes()[:dataSetSize]
	}
	faust := strings.Fields("Habe nun, ach! Philosophie, Juristerei und Medizin, Und leider auch Theologie Durchaus " +
		"studiert, mit heißem Bemühn. Da steh ich nun, ich armer Tor! Und bin so klug als wie zuvor; Heiße Magister, " +
		"heiße Doktor gar Und ziehe schon an die zehen Jahr Herauf, herab und quer und krumm Meine Schüler an der Nase herum")
	bitmap := make([]byte, dataSetSize)
	for i := range bitmap {
		x, y := i%512, i/512
		bitmap[i] = byte((x*y)>>6 + x/3 + rng.IntN(8))
	}
	pdf := make([]byte, 0, dataSetSize)
	for len(pdf) < dataSetSize {
		if rng.IntN(2) == 0 {
			pdf = fmt.Appendf(pdf, "%d 0 obj << /Type /Page /Parent 3 0 R /Contents %d 0 R >> endobj\n", rng.IntN(900), rng.IntN(900))
		} else {
			chunk := make([]byte, 64+rng.IntN(64))
			for k := range chunk {
				chunk[k] = byte(rng.Uint32())
			}
			pdf = append(pdf, chunk...)
		}
	}
	var json bytes.Buffer
	for json.Len() < dataSetSize {
		fmt.Fprintf(&json, `{"id":%d,"name":"item-%d","tags":["a","b%d"],"price":%.2f,"stock":%t},`,
			rng.IntN(1e6), rng.IntN(5000), rng.IntN(9), rng.Float64()*100, rng.IntN(2) == 0)
	}
	var html bytes.Buffer
	for html.Len() < dataSetSize {
		fmt.Fprintf(&html, `<div class="row r%d"><a href="/page/%d">Link %d</a><span>%d items</span></div>`+"\n",
			rng.IntN(7), rng.IntN(1000), rng.IntN(1000), rng.IntN(50))
	}
	return []dataSet{
		{"human-readable text, German (binary, as Autobahn sends it)", opBinary, true, words(faust, " ")},
		{"bitmap", opBinary, false, bitmap},
		{"PDF-like: text and random bytes", opBinary, false, pdf[:dataSetSize]},
		{"JSON", opText, true, json.Bytes()[:dataSetSize]},
		{"HTML", opText, true, html.Bytes()[:dataSetSize]},
	}
}

// window is the k-th message of n bytes of a data set.
func (d dataSet) window(k, n int) []byte {
	start := (k * 7919 * 13) % (len(d.data) - n)
	return d.data[start : start+n]
}

// msgSizes is Autobahn's list for cases 12 and 13: (size, auto-fragment).
type msgSize struct{ n, frag int }

var msgSizes = []msgSize{
	{16, 0}, {64, 0}, {256, 0}, {1024, 0}, {4096, 0}, {8192, 0}, {16384, 0}, {32768, 0}, {65536, 0}, {131072, 0},
	{8192, 256}, {16384, 256}, {32768, 256}, {65536, 256}, {131072, 256}, {131072, 1024}, {131072, 4096}, {131072, 32768},
}

// bulk tells the sizes from 32 KiB up: compressing and inflating them is
// most of what a race build of the suite would spend, on the code paths
// and goroutines the smaller sizes (whole and in fragments) take too. They
// run in the suite's run without the race detector (skipBySize).
func (s msgSize) bulk() bool { return s.n >= 32<<10 }

// messagesPerCase is how many messages each case sends and expects back
// (Autobahn sends 1000; the sizes and fragmentations are what matter).
const messagesPerCase = 4

func echoMessages(d dataSet, n, frag int) []step {
	var steps []step
	for k := range messagesPerCase {
		p := d.window(k, n)
		steps = append(steps, sendCompressed(d.op, p, frag), expectEcho(d.op, p, compressionOf(n, d.compressible)))
	}
	return steps
}

func fragDesc(frag int) string {
	if frag == 0 {
		return "one frame"
	}
	return "fragments of " + sizeName(frag)
}

// Category 12: compressed messages with the default offer.

func compressionCases() []wsCase {
	var l caseList
	for di, d := range dataSets() {
		add := l.group(fmt.Sprintf("12.%d", di+1))
		for _, s := range msgSizes {
			tc := add(fmt.Sprintf("%s: %d messages of %s, %s", d.desc, messagesPerCase, sizeName(s.n), fragDesc(s.frag)),
				echoMessages(d, s.n, s.frag)...)
			tc.offer, tc.answer = offerDefault, answerDeflate
			tc.bulk = s.bulk()
		}
	}
	return l.cases
}

// Category 13: each offer combination.

func offerCases() []wsCase {
	var json dataSet
	for _, d := range dataSets() {
		if d.desc == "JSON" {
			json = d
		}
	}
	offers := []struct {
		desc, offer, answer string
	}{
		{"13.1 default offer", offerDefault, answerDeflate},
		{"13.2 server_no_context_takeover", offerDefault + "; server_no_context_takeover", answerDeflate},
		{"13.3 server_max_window_bits=8", offerDefault + "; server_max_window_bits=8", answerDeflate8},
		{"13.4 server_max_window_bits=15", offerDefault + "; server_max_window_bits=15", answerDeflate15},
		{"13.5 server_no_context_takeover, server_max_window_bits=8", offerDefault + "; server_no_context_takeover; server_max_window_bits=8", answerDeflate8},
		{"13.6 server_no_context_takeover, server_max_window_bits=15", offerDefault + "; server_no_context_takeover; server_max_window_bits=15", answerDeflate15},
		{"13.7 three offers, the first with server_max_window_bits=8", offerDefault + "; server_no_context_takeover; server_max_window_bits=8, " +
			offerDefault + "; server_no_context_takeover, " + offerDefault, answerDeflate8},
		{"13.8 the offer of browsers and Node's ws", "permessage-deflate; client_max_window_bits", answerDeflate},
		{"13.9 the offer of gorilla/websocket", "permessage-deflate; server_no_context_takeover; client_no_context_takeover", answerDeflate},
		{"13.10 an offer with a parameter RFC 7692 does not define", "permessage-deflate; mem_level=8", ""},
	}
	var l caseList
	for _, o := range offers {
		id, desc, _ := strings.Cut(o.desc, " ")
		add := l.group(id)
		if o.answer == "" {
			// Declined: the connection works uncompressed, and RSV1 is a
			// reserved bit on it.
			p := json.window(0, 4096)
			tc := add(fmt.Sprintf("%s: declined; plain messages echo, a compressed one gets 1002", desc),
				send(dataFrame(opText, p)), expectEcho(opText, p, &no),
				sendCompressed(opText, p, 0), expectClose(1002))
			tc.offer = o.offer
			continue
		}
		for _, s := range msgSizes {
			tc := add(fmt.Sprintf("%s: %d JSON messages of %s, %s", desc, messagesPerCase, sizeName(s.n), fragDesc(s.frag)),
				echoMessages(json, s.n, s.frag)...)
			tc.offer, tc.answer = o.offer, o.answer
			tc.bulk = s.bulk()
		}
	}
	return l.cases
}

// Category D: what a compressed message can get wrong, and the limits.

// bomb is a compressed payload of about mib KiB that inflates to mib MiB
// of zeros: one MiB compressed once, repeated, each copy ending with the
// flush marker the next needs. first, if set, is a message of its own put
// before it.
func bomb(mib int, first []byte) []byte {
	seg := bombSegment()
	var b []byte
	if first != nil {
		b = append(wsframe.Deflate(first, flate.DefaultCompression), 0, 0, 0xff, 0xff)
	}
	b = append(b, bytes.Repeat(seg, mib)...)
	return b[:len(b)-4]
}

// bombSegment is one MiB of zeros compressed, with its flush marker:
// compressed once for every bomb of the run.
var bombSegment = sync.OnceValue(func() []byte {
	return append(wsframe.Deflate(make([]byte, 1<<20), flate.BestCompression), 0, 0, 0xff, 0xff)
})

func deflateCases() []wsCase {
	json := []byte(strings.Repeat(`{"sym":"S1","seq":1234,"px":101.25},`, 100))
	z := wsframe.Deflate(json, flate.DefaultCompression)
	var l caseList
	add := l.group("D.1")
	withOffer := func(tc *wsCase) { tc.offer, tc.answer = offerDefault, answerDeflate }

	// D.1: RSV1 where RFC 7692 6.1 forbids it.
	withOffer(add("RSV1 on a continuation frame: 1002",
		send(dataFrame(opText, z[:10]).WithRSV(rsv1).NoFin(), contFrame(z[10:]).WithRSV(rsv1)), expectClose(1002)))
	withOffer(add("RSV1 on a continuation of an uncompressed message: 1002",
		send(textFrame("plain ").NoFin(), contText("more").WithRSV(rsv1)), expectClose(1002)))
	withOffer(add("RSV1 on a ping: 1002", send(pingFrame([]byte("p")).WithRSV(rsv1)), expectClose(1002)))
	withOffer(add("RSV1 on a pong: 1002", send(pongFrame([]byte("p")).WithRSV(rsv1)), expectClose(1002)))
	withOffer(add("RSV1 on a close: 1002", send(closeFrame(1000, "").WithRSV(rsv1)), expectClose(1002)))
	withOffer(add("RSV1 on a ping inside a compressed message: 1002",
		send(dataFrame(opText, z[:10]).WithRSV(rsv1).NoFin(), pingFrame(nil).WithRSV(rsv1)), expectClose(1002)))
	withOffer(add("RSV2 with the extension: 1002", send(dataFrame(opText, z).WithRSV(rsv2)), expectClose(1002)))
	add("RSV1 without an offer: 1002", send(dataFrame(opText, z).WithRSV(rsv1)), expectClose(1002))

	// D.2: data that does not inflate.
	add = l.group("D.2")
	withOffer(add("garbage: 1007", send(dataFrame(opBinary, []byte{0xff, 0xff, 0xff, 0xff}).WithRSV(rsv1)), expectClose(1007)))
	withOffer(add("reserved block type: 1007", send(dataFrame(opBinary, []byte{0x07, 0x00}).WithRSV(rsv1)), expectClose(1007)))
	withOffer(add("truncated in the middle of a block: 1007",
		send(dataFrame(opText, z[:len(z)/2]).WithRSV(rsv1)), expectClose(1007)))
	withOffer(add("stored block whose length check fails: 1007",
		send(dataFrame(opBinary, []byte{0x00, 0x05, 0x00, 0x00, 0x00, 'a', 'b', 'c', 'd', 'e'}).WithRSV(rsv1)), expectClose(1007)))
	// A client that keeps its window across messages although the answer
	// said client_no_context_takeover: its second message refers back into
	// the first, which the server has not kept.
	var zb bytes.Buffer
	w, _ := flate.NewWriter(&zb, flate.BestCompression)
	_, _ = w.Write(json)
	_ = w.Flush()
	first := bytes.TrimSuffix(bytes.Clone(zb.Bytes()), []byte{0, 0, 0xff, 0xff})
	zb.Reset()
	_, _ = w.Write(json)
	_ = w.Flush()
	second := bytes.TrimSuffix(zb.Bytes(), []byte{0, 0, 0xff, 0xff})
	withOffer(add("client context takeover despite client_no_context_takeover: the first echoes, the second gets 1007",
		send(dataFrame(opText, first).WithRSV(rsv1)), expectEcho(opText, json, &yes),
		send(dataFrame(opText, second).WithRSV(rsv1)), expectClose(1007)))

	// D.3: UTF-8 is checked on the inflated text, failing fast.
	add = l.group("D.3")
	withOffer(add("invalid UTF-8 once inflated: 1007", sendCompressed(opText, []byte("valid, then \xc3\x28"), 0), expectClose(1007)))
	withOffer(add("text ends inside a character once inflated: 1007", sendCompressed(opText, []byte("ends in \xe2\x82"), 0), expectClose(1007)))
	withOffer(add("invalid UTF-8 in a fragmented compressed text: 1007", sendCompressed(opText, append(bytes.Clone(json), 0xff), 7), expectClose(1007)))
	withOffer(add("binary is not checked", sendCompressed(opBinary, []byte{0xff, 0xfe, 0xc3, 0x28}, 0),
		expectEcho(opBinary, []byte{0xff, 0xfe, 0xc3, 0x28}, &no)))
	// The first byte is invalid and 1 GiB of zeros follows: a server that
	// inflated before checking would meet the 64 MiB limit first (1009).
	withOffer(add("invalid UTF-8 at the start of a text that inflates to 1 GiB: 1007 at once",
		later(func() step { return send(dataFrame(opText, bomb(1024, []byte{0xff})).WithRSV(rsv1)) }), expectClose(1007)))

	// D.4: the limits apply to the inflated size.
	add = l.group("D.4")
	// Each inflates up to the 64 MiB limit before its 1009: bulk, run
	// without the race detector. A race build still meets a bomb in D.3
	// (refused at its first byte), and the codec's own tests refuse bombs
	// at a small limit under it.
	tc := add("1 MiB that inflates to 1 GiB: 1009", later(func() step { return send(dataFrame(opBinary, bomb(1024, nil)).WithRSV(rsv1)) }), expectClose(1009))
	tc.bulk = true
	withOffer(tc)
	tc = add("a bomb in 1000-byte fragments: 1009", later(func() step { return send(fragmentsRSV1(opBinary, bomb(1024, nil), 1000)...) }), expectClose(1009))
	tc.bulk = true
	withOffer(tc)
	tc = add("a text bomb: 1009", later(func() step { return send(dataFrame(opText, bomb(256, nil)).WithRSV(rsv1)) }), expectClose(1009))
	tc.bulk = true
	withOffer(tc)
	atLimit := make([]byte, contractMaxMessage)
	tc = add("inflates to exactly the 64 MiB limit: echoed", sendCompressed(opBinary, atLimit, 0), expectEcho(opBinary, atLimit, &yes))
	tc.bulk = true
	withOffer(tc)
	overLimit := make([]byte, contractMaxMessage+1)
	tc = add("inflates to one byte over the 64 MiB limit: 1009", sendCompressed(opBinary, overLimit, 0), expectClose(1009))
	tc.bulk = true
	withOffer(tc)

	// D.5: odd but valid compressed messages.
	add = l.group("D.5")
	empty := wsframe.Deflate(nil, flate.DefaultCompression)
	withOffer(add("empty message compressed (one byte 0x00)", send(dataFrame(opText, empty).WithRSV(rsv1)), expectEcho(opText, nil, &no)))
	withOffer(add("empty payload with RSV1: an empty message", send(dataFrame(opBinary, nil).WithRSV(rsv1)), expectEcho(opBinary, nil, &no)))
	var fb bytes.Buffer
	fw, _ := flate.NewWriter(&fb, flate.DefaultCompression)
	_, _ = fw.Write(json)
	_ = fw.Close()
	withOffer(add("ends with a final block (BFINAL set) instead of a flush", send(dataFrame(opText, fb.Bytes()).WithRSV(rsv1)),
		expectEcho(opText, json, &yes)))
	withOffer(add("stored blocks only (level 0)", send(compressed(opText, json, 0, flate.NoCompression)...), expectEcho(opText, json, &yes)))
	withOffer(add("Huffman only", send(compressed(opText, json, 0, flate.HuffmanOnly)...), expectEcho(opText, json, &yes)))
	withOffer(add("compressed message written one byte at a time", sendWith(bytewise, compressed(opText, json, 0, 6)...),
		expectEcho(opText, json, &yes)))
	bytewiseFrames := compressed(opText, json, 1, 6)
	withOffer(add("compressed message in 1-byte fragments with pings between",
		send(interleavePings(bytewiseFrames)...), expectPongs(len(bytewiseFrames)-1), expectEcho(opText, json, &yes)))
	withOffer(add("compressed and plain messages alternating",
		sendCompressed(opText, json, 0), send(textFrame("plain")), sendCompressed(opBinary, json, 100), send(binFrame(json)),
		expectEcho(opText, json, &yes), expectEcho(opText, []byte("plain"), &no),
		expectEcho(opBinary, json, &yes), expectEcho(opBinary, json, &yes)))
	withOffer(add("uncompressed messages on a deflate connection: echoed, compressed from 512 bytes",
		send(textFrame("short"), dataFrame(opText, json)), expectEcho(opText, []byte("short"), &no), expectEcho(opText, json, &yes)))
	return l.cases
}

// fragmentsRSV1 splits an already compressed payload into frames of size
// bytes, RSV1 on the first.
func fragmentsRSV1(op byte, z []byte, size int) []frame {
	fs := fragments(op, z, size)
	fs[0] = fs[0].WithRSV(rsv1)
	return fs
}

// interleavePings puts a ping after every frame but the last.
func interleavePings(fs []frame) []frame {
	var out []frame
	for i, f := range fs {
		out = append(out, f)
		if i < len(fs)-1 {
			out = append(out, pingFrame([]byte(fmt.Sprint(i))))
		}
	}
	return out
}

// expectPongs expects the pongs of interleavePings, in order.
func expectPongs(n int) step {
	return func(c *wsConn) {
		c.t.Helper()
		for i := range n {
			c.expectEvent(opPong, []byte(fmt.Sprint(i)))
		}
	}
}

func TestCompression(t *testing.T) {
	t.Parallel()
	runCases(t, compressionCases())
}

func TestCompressionOffers(t *testing.T) {
	t.Parallel()
	runCases(t, offerCases())
}

func TestCompressionErrors(t *testing.T) {
	t.Parallel()
	runCases(t, deflateCases())
}
