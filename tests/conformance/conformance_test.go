package conformance

// RFC 6455 conformance suite for herald's engine, written from the RFC and
// grouped like the categories of the Autobahn TestSuite fuzzing client:
//
//	1  framing              5  fragmentation        9  limits and performance
//	2  pings and pongs      6  UTF-8 handling      10  miscellaneous
//	3  reserved bits        7  close handling      12  compression (RFC 7692)
//	4  opcodes              H  opening handshake   13  compression offers
//	                                                D  compression errors, limits
//
// Categories 12, 13 and D are in deflate_test.go.
//
// Each Test function starts its own echo server in-process (server_test.go);
// its cases (subtests of "cases") run in parallel against it. Every case
// ends with a close frame with an exact code and the server closing TCP as
// its answer to the close handshake; then a fresh connection must still
// echo, and a bystander connection kept open across the whole group must
// still echo at the end (nothing else on the server may be disturbed by a
// failing client). In -short mode the cases above 4 MiB are skipped; a
// race build leaves them to a run without the race detector (large_test.go).
//
// Nothing here depends on the machine's speed: waits end on what the server
// sends, bounded only by a generous hang guard; the server's keepalive pings
// are answered; the cases that check that a server fails fast never send
// the rest of the message, so the answer they wait for can only come from
// the bytes already sent.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// A step is one thing a case does on its connection: queue writes or expect
// what the server sends next.
type step func(c *wsConn)

// wsCase is one conformance case. Either steps run on one fresh connection,
// or run drives the server itself.
type wsCase struct {
	id    string
	desc  string
	steps []step
	run   func(t *testing.T, addr string)
	bulk  bool // its cost is bytes, not concurrency: see skipBySize
	// offer, if set, is the Sec-WebSocket-Extensions line the steps'
	// connection offers, and answer the server's answer it must get (""
	// for declined); see deflate_test.go.
	offer, answer string
}

func (tc wsCase) name() string { return tc.id + " " + tc.desc }

func send(frames ...frame) step { return sendWith(whole, frames...) }

func sendWith(m wmode, frames ...frame) step {
	return func(c *wsConn) { c.sendFrames(m, frames...) }
}

// sendRaw queues bytes exactly as given.
func sendRaw(m wmode, b []byte) step {
	return func(c *wsConn) { c.sendRawBytes(b, m) }
}

// sendSplitAt writes the encoded frame in pieces cut at the given offsets,
// pausing between pieces.
func sendSplitAt(d time.Duration, f frame, cuts ...int) step {
	return func(c *wsConn) {
		b := f.Bytes()
		prev := 0
		for _, cut := range append(cuts, len(b)) {
			if prev > 0 {
				c.queueSleep(d)
			}
			c.queue(b[prev:cut], whole)
			prev = cut
		}
	}
}

// abort flushes the client's writes and drops the connection without a
// close handshake.
func abort() step {
	return func(c *wsConn) {
		c.flush()
		c.stop()
		c.done = true
	}
}

// pause makes the writer wait before its next write.
func pause(d time.Duration) step {
	return func(c *wsConn) { c.queueSleep(d) }
}

func expectMsg(op byte, p []byte) step {
	return func(c *wsConn) { c.t.Helper(); c.expectEvent(op, p) }
}

func expectText(s string) step { return expectMsg(opText, []byte(s)) }
func expectPong(p []byte) step { return expectMsg(opPong, p) }

// expectClose expects the server's close frame with one of codes, then the
// end of the close handshake and the TCP close.
func expectClose(codes ...int) step {
	return func(c *wsConn) { c.t.Helper(); c.expectClose(codes, nil) }
}

// expectCloseReason is expectClose for one code whose reason must be echoed.
func expectCloseReason(code int, reason string) step {
	return func(c *wsConn) { c.t.Helper(); c.expectClose([]int{code}, &reason) }
}

// expectSilence checks that the server sends nothing for d.
func expectSilence(d time.Duration) step {
	return func(c *wsConn) { c.t.Helper(); c.expectSilence(d) }
}

// expectMsgOrClose accepts either the echo of a message or a close with one
// of codes; it is only for inputs the RFC leaves to the server's judgement.
func expectMsgOrClose(op byte, p []byte, codes ...int) step {
	return func(c *wsConn) {
		c.t.Helper()
		ev, err := c.next()
		if err != nil {
			c.t.Fatalf("want %s or a close with code %s, got %s", describe(op, p), codesString(codes), c.describeErr(err))
		}
		if ev.op == opClose {
			got := closeCode(ev.payload)
			for _, code := range codes {
				if got == code {
					c.t.Logf("server rejected the input with close code %d", got)
					if !c.sentClose {
						c.sendFrames(whole, closeRaw(ev.payload))
					}
					c.expectTCPClose()
					return
				}
			}
			c.t.Fatalf("want %s or a close with code %s, got %s", describe(op, p), codesString(codes), describeEvent(ev))
		}
		if ev.op != op || !bytes.Equal(ev.payload, p) {
			c.t.Fatalf("want %s or a close with code %s, got %s", describe(op, p), codesString(codes), describeEvent(ev))
		}
		c.t.Logf("server accepted the input and echoed it")
	}
}

// runCases runs a group against one server, in parallel, with a bystander
// connection that must survive the whole group.
func runCases(t *testing.T, cases []wsCase) {
	t.Helper()
	seen := make(map[string]bool)
	for _, tc := range cases {
		if seen[tc.id] {
			t.Fatalf("suite error: duplicate case id %s", tc.id)
		}
		seen[tc.id] = true
	}
	runCasesAt(t, startEcho(t), cases)
}

// runCasesAt is runCases against the server at addr.
func runCasesAt(t *testing.T, addr string, cases []wsCase) {
	t.Helper()
	by := dialWS(t, addr)
	roundTrip(by, "bystander before the group")
	// The parallel cases run inside this subtest, which returns once they
	// all finished; the bystander is checked after that (not in a Cleanup,
	// where a fatal failure would hide the cases' own reports).
	t.Run("cases", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name(), func(t *testing.T) {
				t.Parallel()
				runCase(t, addr, tc)
			})
		}
	})
	roundTrip(by, "bystander after the group")
	by.closeNormally()
}

func runCase(t *testing.T, addr string, tc wsCase) {
	skipBySize(t, tc)
	switch {
	case tc.run != nil:
		tc.run(t, addr)
	case tc.offer != "":
		runStepsOn(t, dialDeflateWS(t, addr, tc.offer, tc.answer), tc.steps)
	default:
		runSteps(t, addr, tc.steps)
	}
	checkAlive(t, addr)
}

// runSteps runs steps on a fresh connection; a connection the steps leave
// open is closed with a normal close handshake.
func runSteps(t *testing.T, addr string, steps []step) {
	t.Helper()
	runStepsOn(t, dialWS(t, addr), steps)
}

// runStepsOn runs steps on c, a fresh connection.
func runStepsOn(t *testing.T, c *wsConn, steps []step) {
	t.Helper()
	for i, s := range steps {
		if c.done {
			break
		}
		func() {
			defer func() {
				if t.Failed() {
					t.Logf("(failed at step %d of %d)", i+1, len(steps))
				}
			}()
			s(c)
		}()
	}
	if !c.done {
		if c.sentClose {
			t.Fatalf("case sent a close frame but did not expect the server's answer")
		}
		c.closeNormally()
	}
	c.stop()
}

// roundTrip checks that c still echoes text and binary and answers a ping.
func roundTrip(c *wsConn, label string) {
	c.t.Helper()
	bin := append([]byte{0, 1, 2, 0xfe, 0xff}, label...)
	c.sendFrames(whole, textFrame(label), binFrame(bin), pingFrame([]byte(label)))
	c.expectEvent(opText, []byte(label))
	c.expectEvent(opBinary, bin)
	c.expectEvent(opPong, []byte(label))
}

// checkAlive checks that a fresh connection to addr works end to end.
func checkAlive(t *testing.T, addr string) {
	t.Helper()
	c := dialWS(t, addr)
	roundTrip(c, "fresh connection after the case")
	c.closeNormally()
	c.stop()
}

// Payloads.

const utf8Pattern = "Hello-µ@ßöäüàá-UTF-8!! κόσμε 𝄞 ∑ herald "

// utf8Text returns valid UTF-8 of exactly n bytes mixing 1- to 4-byte
// characters.
func utf8Text(n int) []byte {
	const block = 64 << 10
	if n > block {
		b := bytes.Repeat(utf8Text(block), n/block)
		return append(b, utf8Text(n%block)...)
	}
	rs := []rune(utf8Pattern)
	b := make([]byte, 0, n)
	for i := 0; len(b) < n; i++ {
		r := rs[i%len(rs)]
		if len(b)+utf8.RuneLen(r) > n {
			r = 'x'
		}
		b = utf8.AppendRune(b, r)
	}
	return b
}

// binPayload returns n pseudo-random bytes.
func binPayload(n int, seed uint64) []byte {
	var s [32]byte
	for i := range s {
		s[i] = byte(seed >> (8 * (i % 8)))
	}
	b := make([]byte, n)
	_, _ = mrand.NewChaCha8(s).Read(b)
	return b
}

func payloadFor(op byte, n int) []byte {
	if op == opText {
		return utf8Text(n)
	}
	return binPayload(n, uint64(n)+7)
}

// fragments splits p into frames of at most size bytes, the first with op.
func fragments(op byte, p []byte, size int) []frame {
	var fs []frame
	for first := true; first || len(p) > 0; first = false {
		n := min(size, len(p))
		f := contFrame(p[:n])
		if first {
			f = dataFrame(op, p[:n])
		}
		p = p[n:]
		if len(p) > 0 {
			f = f.NoFin()
		}
		fs = append(fs, f)
	}
	return fs
}

// byteFragments splits p into one fragment per byte.
func byteFragments(op byte, p []byte) []frame { return fragments(op, p, 1) }

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// caseList numbers cases within one sub-group, Autobahn style.
type caseList struct {
	cases []wsCase
}

func (l *caseList) group(prefix string) func(desc string, steps ...step) *wsCase {
	n := 0
	return func(desc string, steps ...step) *wsCase {
		n++
		l.cases = append(l.cases, wsCase{id: fmt.Sprintf("%s.%d", prefix, n), desc: desc, steps: steps})
		return &l.cases[len(l.cases)-1]
	}
}

// Category 1: framing.

func framingCases() []wsCase {
	var l caseList
	sizes := []int{0, 125, 126, 127, 128, 65535, 65536, 65537, 128 << 10}
	for gi, op := range []byte{opText, opBinary} {
		add := l.group(fmt.Sprintf("1.%d", gi+1))
		for _, n := range sizes {
			p := payloadFor(op, n)
			add(fmt.Sprintf("%s %s one write", opName(op), sizeName(n)), send(dataFrame(op, p)), expectMsg(op, p))
		}
		for _, n := range sizes {
			if n > 65536 {
				continue
			}
			p := payloadFor(op, n)
			add(fmt.Sprintf("%s %s written one byte at a time", opName(op), sizeName(n)),
				sendWith(bytewise, dataFrame(op, p)), expectMsg(op, p))
		}
		for _, n := range sizes {
			p := payloadFor(op, n)
			add(fmt.Sprintf("%s %s written in random chunks", opName(op), sizeName(n)),
				sendWith(randomChops(max(n/7, 3)), dataFrame(op, p)), expectMsg(op, p))
		}
		p := payloadFor(op, 65536)
		add(fmt.Sprintf("%s 64KiB written in chunks of 997 bytes", opName(op)),
			sendWith(chopped(997), dataFrame(op, p)), expectMsg(op, p))
		add(fmt.Sprintf("%s 64KiB with pauses between chunks of 8KiB", opName(op)),
			sendWith(slowChops(8<<10, 5*time.Millisecond), dataFrame(op, p)), expectMsg(op, p))
	}

	add := l.group("1.3")
	add("non-minimal 16-bit length for 5 bytes: echoed or 1002",
		send(textFrame("short").LengthField(2)), expectMsgOrClose(opText, []byte("short"), 1002))
	p200 := utf8Text(200)
	add("non-minimal 64-bit length for 200 bytes: echoed or 1002",
		send(textBytes(p200).LengthField(8)), expectMsgOrClose(opText, p200, 1002))
	add("64-bit length with the most significant bit set: 1002 or 1009",
		send(textFrame("x").Declare(1<<63|5)), expectClose(1002, 1009))
	p70k := binPayload(70000, 3)
	add("header written in pieces split inside the 64-bit length field and the mask",
		sendSplitAt(10*time.Millisecond, binFrame(p70k), 1, 2, 5, 9, 12, 15, 100), expectMsg(opBinary, p70k))

	add = l.group("1.4")
	add("unmasked text frame: 1002", send(textFrame("unmasked").Unmasked()), expectClose(1002))
	add("valid text then an unmasked binary frame: echo, then 1002",
		send(textFrame("masked"), binFrame([]byte("unmasked")).Unmasked(), pingFrame(nil)),
		expectText("masked"), expectClose(1002))
	add("unmasked ping: 1002", send(pingFrame([]byte("unmasked")).Unmasked()), expectClose(1002))
	add("unmasked close: 1002", send(closeFrame(1000, "").Unmasked()), expectClose(1002))
	add("unmasked empty text frame: 1002", send(textFrame("").Unmasked()), expectClose(1002))

	add = l.group("1.5")
	var frames []frame
	var expects []step
	for i := range 100 {
		if i%2 == 0 {
			s := fmt.Sprintf("pipelined text %d", i)
			frames = append(frames, textFrame(s))
			expects = append(expects, expectText(s))
		} else {
			b := binPayload(i*13, uint64(i))
			frames = append(frames, binFrame(b))
			expects = append(expects, expectMsg(opBinary, b))
		}
	}
	add("100 text and binary messages in one write, echoed in order", append([]step{send(frames...)}, expects...)...)
	add("100 text and binary messages written in random chunks", append([]step{sendWith(randomChops(50), frames...)}, expects...)...)
	return l.cases
}

// Category 2: pings and pongs.

func pingCases() []wsCase {
	var l caseList
	add := l.group("2")
	bin := []byte{0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff}
	p125 := binPayload(125, 125)
	p126 := binPayload(126, 126)
	add("ping without payload: pong without payload", send(pingFrame(nil)), expectPong(nil))
	add("ping with text payload: pong echoes it", send(pingFrame([]byte("Hello, world!"))), expectPong([]byte("Hello, world!")))
	add("ping with binary payload: pong echoes it", send(pingFrame(bin)), expectPong(bin))
	add("ping with 125-byte payload: pong echoes it", send(pingFrame(p125)), expectPong(p125))
	add("ping with 126-byte payload: 1002", send(pingFrame(p126)), expectClose(1002))
	add("ping with 125-byte payload written one byte at a time", sendWith(bytewise, pingFrame(p125)), expectPong(p125))
	add("unsolicited pong without payload is ignored",
		send(pongFrame(nil), textFrame("after pong")), expectText("after pong"))
	add("unsolicited pong with payload is ignored",
		send(pongFrame([]byte("unsolicited")), textFrame("after pong")), expectText("after pong"))
	add("unsolicited pong then ping: only the ping's pong",
		send(pongFrame([]byte("unsolicited")), pingFrame([]byte("ping payload"))), expectPong([]byte("ping payload")))
	var pings []frame
	var pongs []step
	for i := range 10 {
		p := []byte(fmt.Sprintf("ping %d", i))
		pings = append(pings, pingFrame(p))
		pongs = append(pongs, expectPong(p))
	}
	add("10 pings in one write: 10 pongs in order", append([]step{send(pings...)}, pongs...)...)
	add("10 pings written one byte at a time: 10 pongs in order", append([]step{sendWith(bytewise, pings...)}, pongs...)...)
	add("10 pings in separate writes: 10 pongs in order", append([]step{sendWith(framewise(2*time.Millisecond), pings...)}, pongs...)...)
	add("fragmented ping (two fragments): 1002",
		send(pingFrame([]byte("frag")).NoFin(), contText("ment")), expectClose(1002))
	add("ping with FIN clear and nothing after: 1002", send(pingFrame([]byte("nofin")).NoFin()), expectClose(1002))
	add("fragmented pong: 1002", send(pongFrame([]byte("frag")).NoFin(), contText("ment")), expectClose(1002))
	add("ping after close is ignored",
		send(closeFrame(1000, ""), pingFrame([]byte("after close"))), expectClose(1000))
	add("ping after close in a separate write is ignored",
		send(closeFrame(1000, "")), pause(20*time.Millisecond), send(pingFrame([]byte("after close"))), expectClose(1000))
	add("pong with 126-byte payload: 1002", send(pongFrame(p126)), expectClose(1002))
	add("ping between two messages in one write",
		send(textFrame("one"), pingFrame([]byte("between")), binFrame([]byte("two"))),
		expectText("one"), expectPong([]byte("between")), expectMsg(opBinary, []byte("two")))
	add("ping 125 bytes announced with a 16-bit length: pong or 1002",
		send(pingFrame(p125).LengthField(2)), expectMsgOrClose(opPong, p125, 1002))
	return l.cases
}

// Category 3: reserved bits.

func rsvCases() []wsCase {
	var l caseList
	// RSV values 1..7 as the 3-bit field RSV1 RSV2 RSV3.
	rsvs := []byte{rsv3, rsv2, rsv2 | rsv3, rsv1, rsv1 | rsv3, rsv1 | rsv2, rsv1 | rsv2 | rsv3}
	kinds := []struct {
		name string
		bad  func(r byte) []frame
	}{
		{"text", func(r byte) []frame { return []frame{textFrame("rsv text").WithRSV(r)} }},
		{"binary", func(r byte) []frame { return []frame{binFrame([]byte{1, 2, 3}).WithRSV(r)} }},
		{"ping", func(r byte) []frame { return []frame{pingFrame([]byte("rsv ping")).WithRSV(r)} }},
		{"pong", func(r byte) []frame { return []frame{pongFrame([]byte("rsv pong")).WithRSV(r)} }},
		{"close", func(r byte) []frame { return []frame{closeFrame(1000, "").WithRSV(r)} }},
		{"continuation", func(r byte) []frame {
			return []frame{textFrame("frag").NoFin(), contText("ment").WithRSV(r)}
		}},
	}
	for ki, k := range kinds {
		add := l.group(fmt.Sprintf("3.%d", ki+1))
		for _, r := range rsvs {
			frames := append([]frame{textFrame("valid before")}, k.bad(r)...)
			frames = append(frames, pingFrame([]byte("after")))
			add(fmt.Sprintf("%s with RSV=%d after a valid text: echo, then 1002", k.name, r>>4),
				send(frames...), expectText("valid before"), expectClose(1002))
		}
	}
	add := l.group("3.7")
	for _, r := range rsvs {
		frames := []frame{textFrame("valid before"), textFrame("rsv").WithRSV(r), pingFrame([]byte("after"))}
		add(fmt.Sprintf("text with RSV=%d, all written one byte at a time", r>>4),
			sendWith(bytewise, frames...), expectText("valid before"), expectClose(1002))
	}
	add = l.group("3.8")
	for _, r := range rsvs {
		frames := []frame{textFrame("valid before"), binFrame([]byte("rsv")).WithRSV(r), pingFrame([]byte("after"))}
		add(fmt.Sprintf("binary with RSV=%d, one write per frame with pauses", r>>4),
			sendWith(framewise(10*time.Millisecond), frames...), expectText("valid before"), expectClose(1002))
	}
	return l.cases
}

// Category 4: opcodes.

func opcodeCases() []wsCase {
	var l caseList
	groups := []struct {
		prefix string
		ops    []byte
	}{{"4.1", []byte{3, 4, 5, 6, 7}}, {"4.2", []byte{0xB, 0xC, 0xD, 0xE, 0xF}}}
	for _, g := range groups {
		add := l.group(g.prefix)
		for _, op := range g.ops {
			add(fmt.Sprintf("reserved opcode %d without payload: 1002", op),
				send(dataFrame(op, nil)), expectClose(1002))
			add(fmt.Sprintf("valid text, reserved opcode %d with payload, ping: echo, then 1002", op),
				send(textFrame("valid"), dataFrame(op, []byte("reserved")), pingFrame([]byte("after"))),
				expectText("valid"), expectClose(1002))
			add(fmt.Sprintf("valid text, reserved opcode %d, ping, one byte at a time: echo, then 1002", op),
				sendWith(bytewise, textFrame("valid"), dataFrame(op, []byte("reserved")), pingFrame([]byte("after"))),
				expectText("valid"), expectClose(1002))
		}
	}
	add := l.group("4.3")
	for _, op := range []byte{3, 0xB} {
		add(fmt.Sprintf("reserved opcode %d inside a fragmented text message: 1002", op),
			send(textFrame("frag").NoFin(), dataFrame(op, []byte("reserved")), contText("ment")), expectClose(1002))
	}
	add("reserved opcode 0xF with FIN clear: 1002", send(dataFrame(0xF, []byte("x")).NoFin()), expectClose(1002))
	return l.cases
}

// Category 5: fragmentation.

func fragmentationCases() []wsCase {
	var l caseList
	add := l.group("5")
	add("ping in two fragments: 1002", send(pingFrame([]byte("frag")).NoFin(), contText("ment")), expectClose(1002))
	add("pong in two fragments: 1002", send(pongFrame([]byte("frag")).NoFin(), contText("ment")), expectClose(1002))
	add("text in two fragments", send(textFrame("fragment1").NoFin(), contText("fragment2")), expectText("fragment1fragment2"))
	add("text in two fragments, one byte at a time",
		sendWith(bytewise, textFrame("fragment1").NoFin(), contText("fragment2")), expectText("fragment1fragment2"))
	add("text in two fragments, one write per frame with a pause",
		sendWith(framewise(20*time.Millisecond), textFrame("fragment1").NoFin(), contText("fragment2")), expectText("fragment1fragment2"))
	add("text in two fragments with a ping between: pong comes before the message completes",
		send(textFrame("fragment1").NoFin(), pingFrame([]byte("inside"))), expectPong([]byte("inside")),
		send(contText("fragment2")), expectText("fragment1fragment2"))
	add("same, one byte at a time",
		sendWith(bytewise, textFrame("fragment1").NoFin(), pingFrame([]byte("inside"))), expectPong([]byte("inside")),
		sendWith(bytewise, contText("fragment2")), expectText("fragment1fragment2"))
	add("same, one write per frame with pauses",
		sendWith(framewise(20*time.Millisecond), textFrame("fragment1").NoFin(), pingFrame([]byte("inside"))),
		expectPong([]byte("inside")), pause(20*time.Millisecond), send(contText("fragment2")), expectText("fragment1fragment2"))
	add("continuation (FIN set) with nothing to continue, then text: 1002",
		send(contText("non-continuation payload"), textFrame("Hello, world!")), expectClose(1002))
	add("same, one byte at a time",
		sendWith(bytewise, contText("non-continuation payload"), textFrame("Hello, world!")), expectClose(1002))
	add("same, one write per frame with pauses",
		sendWith(framewise(20*time.Millisecond), contText("non-continuation payload"), textFrame("Hello, world!")), expectClose(1002))
	add("continuation (FIN clear) with nothing to continue, then text: 1002",
		send(contText("non-continuation payload").NoFin(), textFrame("Hello, world!")), expectClose(1002))
	add("same, one byte at a time",
		sendWith(bytewise, contText("non-continuation payload").NoFin(), textFrame("Hello, world!")), expectClose(1002))
	add("same, one write per frame with pauses",
		sendWith(framewise(20*time.Millisecond), contText("non-continuation payload").NoFin(), textFrame("Hello, world!")), expectClose(1002))
	add("complete fragmented message, then a continuation with nothing to continue: echo, then 1002",
		send(textFrame("fragment1").NoFin(), contText("fragment2"), contText("fragment3").NoFin(), contText("fragment4")),
		expectText("fragment1fragment2"), expectClose(1002))
	add("continuation (FIN clear), text (FIN clear), continuation (FIN set): 1002",
		send(contText("fragment1").NoFin(), textFrame("fragment2").NoFin(), contText("fragment3")), expectClose(1002))
	add("continuation (FIN set), text (FIN clear), continuation (FIN set): 1002",
		send(contText("fragment1"), textFrame("fragment2").NoFin(), contText("fragment3")), expectClose(1002))
	add("new text frame inside a fragmented text message: 1002",
		send(textFrame("fragment1").NoFin(), textFrame("fragment2")), expectClose(1002))
	add("new binary frame inside a fragmented text message: 1002",
		send(textFrame("fragment1").NoFin(), binFrame([]byte("fragment2"))), expectClose(1002))
	add("new text frame (FIN clear) inside a fragmented binary message: 1002",
		send(binFrame([]byte("fragment1")).NoFin(), textFrame("fragment2").NoFin(), contText("end")), expectClose(1002))
	add("text in 5 fragments with pings after the 2nd and 4th, one write per frame with pauses",
		sendWith(framewise(10*time.Millisecond), textFrame("fragment1").NoFin(), contText("fragment2").NoFin(), pingFrame([]byte("pongme 1!"))),
		expectPong([]byte("pongme 1!")),
		sendWith(framewise(10*time.Millisecond), contText("fragment3").NoFin(), contText("fragment4").NoFin(), pingFrame([]byte("pongme 2!"))),
		expectPong([]byte("pongme 2!")),
		send(contText("fragment5")), expectText("fragment1fragment2fragment3fragment4fragment5"))
	add("same, one byte at a time",
		sendWith(bytewise, textFrame("fragment1").NoFin(), contText("fragment2").NoFin(), pingFrame([]byte("pongme 1!"))),
		expectPong([]byte("pongme 1!")),
		sendWith(bytewise, contText("fragment3").NoFin(), contText("fragment4").NoFin(), pingFrame([]byte("pongme 2!"))),
		expectPong([]byte("pongme 2!")),
		sendWith(bytewise, contText("fragment5")), expectText("fragment1fragment2fragment3fragment4fragment5"))
	add("fragmented close (FIN clear): 1002", send(closeFrame(1000, "").NoFin()), expectClose(1002))
	add("fragmented close after a fragmented text start: 1002",
		send(textFrame("fragment1").NoFin(), closeFrame(1000, "").NoFin(), contText("x")), expectClose(1002))

	add = l.group("5.30")
	bin := binPayload(1000, 21)
	add("binary in two fragments", send(fragments(opBinary, bin, 600)...), expectMsg(opBinary, bin))
	add("binary in 10 fragments", send(fragments(opBinary, bin, 100)...), expectMsg(opBinary, bin))
	add("binary in 1000 one-byte fragments", send(byteFragments(opBinary, bin)...), expectMsg(opBinary, bin))
	txt := utf8Text(1000)
	add("text in 10 fragments", send(fragments(opText, txt, 100)...), expectMsg(opText, txt))
	add("text in 1000 one-byte fragments (splitting characters)", send(byteFragments(opText, txt)...), expectMsg(opText, txt))
	add("text in 1000 one-byte fragments written in random chunks",
		sendWith(randomChops(40), byteFragments(opText, txt)...), expectMsg(opText, txt))
	add("empty text fragment, empty continuations, final continuation with data",
		send(textFrame("").NoFin(), contText("").NoFin(), contText("").NoFin(), contText("data")), expectText("data"))
	add("text fragment with data, then empty final continuation",
		send(textFrame("data").NoFin(), contText("")), expectText("data"))
	add("fragmented message of empty fragments only", send(binFrame(nil).NoFin(), contFrame(nil).NoFin(), contFrame(nil)), expectMsg(opBinary, nil))
	add("pong inside a fragmented message is ignored",
		send(textFrame("frag").NoFin(), pongFrame([]byte("unsolicited")), contText("ment")), expectText("fragment"))
	add("10 pings inside a fragmented message, answered in order before it completes",
		func() step {
			fs := []frame{binFrame([]byte("a")).NoFin()}
			for i := range 10 {
				fs = append(fs, pingFrame([]byte(fmt.Sprintf("inside %d", i))), contFrame([]byte{byte('b' + i)}).NoFin())
			}
			return send(fs...)
		}(),
		func() step {
			return func(c *wsConn) {
				for i := range 10 {
					c.expectEvent(opPong, []byte(fmt.Sprintf("inside %d", i)))
				}
			}
		}(),
		send(contFrame([]byte("z"))), expectMsg(opBinary, []byte("abcdefghijkz")))
	add("close inside a fragmented message: close echoed, message dropped",
		send(textFrame("fragment1").NoFin(), closeFrame(1000, "")), expectClose(1000))
	add("messages after a fragmented one are echoed in order",
		send(textFrame("one-").NoFin(), contText("two"), textFrame("three"), binFrame([]byte("four")).NoFin(), contFrame([]byte("-five"))),
		expectText("one-two"), expectText("three"), expectMsg(opBinary, []byte("four-five")))

	add = l.group("5.31")
	big := binPayload(65536, 22)
	add("binary message of 65536 one-byte fragments", send(byteFragments(opBinary, big)...), expectMsg(opBinary, big))
	bigText := utf8Text(65536)
	add("text message of 65536 one-byte fragments", send(byteFragments(opText, bigText)...), expectMsg(opText, bigText))
	return l.cases
}

// Category 6: UTF-8.

// utf8Seq is one byte sequence of the UTF-8 decoder stress list.
type utf8Seq struct {
	desc  string
	b     string
	valid bool
}

// utf8Groups is the list of sequences, grouped (6.5 onwards), after Markus
// Kuhn's UTF-8 decoder capability and stress test as used by Autobahn.
var utf8Groups = []struct {
	desc string
	seqs []utf8Seq
}{
	{"valid samples", []utf8Seq{
		{"kosme", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", true},
		{"Hello-µ@ßöäüàá-UTF-8!!", "Hello-µ@ßöäüàá-UTF-8!!", true},
		{"U+1D11E musical symbol", "\xf0\x9d\x84\x9e", true},
		{"mixed lengths", "a\xc2\x80b\xe0\xa0\x80c\xf0\x90\x80\x80d", true},
		{"U+FFFD replacement character", "\xef\xbf\xbd", true},
	}},
	{"first possible sequence of each length", []utf8Seq{
		{"U+0000", "\x00", true},
		{"U+0080", "\xc2\x80", true},
		{"U+0800", "\xe0\xa0\x80", true},
		{"U+10000", "\xf0\x90\x80\x80", true},
		{"5 bytes U+200000", "\xf8\x88\x80\x80\x80", false},
		{"6 bytes U+4000000", "\xfc\x84\x80\x80\x80\x80", false},
	}},
	{"last possible sequence of each length", []utf8Seq{
		{"U+007F", "\x7f", true},
		{"U+07FF", "\xdf\xbf", true},
		{"U+FFFF", "\xef\xbf\xbf", true},
		{"4 bytes U+1FFFFF", "\xf7\xbf\xbf\xbf", false},
		{"5 bytes U+3FFFFFF", "\xfb\xbf\xbf\xbf\xbf", false},
		{"6 bytes U+7FFFFFFF", "\xfd\xbf\xbf\xbf\xbf\xbf", false},
	}},
	{"other boundaries", []utf8Seq{
		{"U+D7FF", "\xed\x9f\xbf", true},
		{"U+E000", "\xee\x80\x80", true},
		{"U+FFFD", "\xef\xbf\xbd", true},
		{"U+10FFFF", "\xf4\x8f\xbf\xbf", true},
		{"U+110000", "\xf4\x90\x80\x80", false},
		{"F5 lead byte", "\xf5\x80\x80\x80", false},
		{"above U+10FFFF inside text", "abc\xf4\x90\x80\x80def", false},
	}},
	{"unexpected continuation bytes", []utf8Seq{
		{"80", "\x80", false},
		{"BF", "\xbf", false},
		{"2 continuation bytes", "\x80\xbf", false},
		{"3 continuation bytes", "\x80\xbf\x80", false},
		{"4 continuation bytes", "\x80\xbf\x80\xbf", false},
		{"5 continuation bytes", "\x80\xbf\x80\xbf\x80", false},
		{"6 continuation bytes", "\x80\xbf\x80\xbf\x80\xbf", false},
		{"7 continuation bytes", "\x80\xbf\x80\xbf\x80\xbf\x80", false},
		{"all 64 continuation bytes", rangeString(0x80, 0xbf, ""), false},
		{"continuation byte after valid text", "valid\x80", false},
	}},
	{"lonely start characters", []utf8Seq{
		{"2-byte leads C0-DF each followed by a space", rangeString(0xc0, 0xdf, " "), false},
		{"3-byte leads E0-EF each followed by a space", rangeString(0xe0, 0xef, " "), false},
		{"4-byte leads F0-F7 each followed by a space", rangeString(0xf0, 0xf7, " "), false},
		{"5-byte leads F8-FB each followed by a space", rangeString(0xf8, 0xfb, " "), false},
		{"6-byte leads FC-FD each followed by a space", rangeString(0xfc, 0xfd, " "), false},
		{"C3 followed by ASCII", "\xc3\x28", false},
	}},
	{"sequences with the last byte missing (truncated at the end of the message)", []utf8Seq{
		{"2-byte U+0000 overlong", "\xc0", false},
		{"3-byte U+0000 overlong", "\xe0\x80", false},
		{"4-byte U+0000 overlong", "\xf0\x80\x80", false},
		{"5-byte U+0000", "\xf8\x80\x80\x80", false},
		{"6-byte U+0000", "\xfc\x80\x80\x80\x80", false},
		{"2-byte U+07FF", "\xdf", false},
		{"3-byte U+FFFF", "\xef\xbf", false},
		{"4-byte U+1FFFFF", "\xf7\xbf\xbf", false},
		{"5-byte U+3FFFFFF", "\xfb\xbf\xbf\xbf", false},
		{"6-byte U+7FFFFFFF", "\xfd\xbf\xbf\xbf\xbf", false},
		{"U+0080 truncated", "\xc2", false},
		{"U+0800 truncated", "\xe0\xa0", false},
		{"U+10000 truncated", "\xf0\x90\x80", false},
		{"U+10FFFF truncated", "\xf4\x8f\xbf", false},
		{"truncated after valid text", "kosme \xce\xba\xe1\xbd", false},
	}},
	{"concatenation of incomplete sequences", []utf8Seq{
		{"all ten", "\xc0\xe0\x80\xf0\x80\x80\xf8\x80\x80\x80\xfc\x80\x80\x80\x80\xdf\xef\xbf\xf7\xbf\xbf\xfb\xbf\xbf\xbf\xfd\xbf\xbf\xbf\xbf", false},
	}},
	{"impossible bytes", []utf8Seq{
		{"FE", "\xfe", false},
		{"FF", "\xff", false},
		{"FE FE FF FF", "\xfe\xfe\xff\xff", false},
	}},
	{"overlong ASCII slash", []utf8Seq{
		{"2 bytes", "\xc0\xaf", false},
		{"3 bytes", "\xe0\x80\xaf", false},
		{"4 bytes", "\xf0\x80\x80\xaf", false},
		{"5 bytes", "\xf8\x80\x80\x80\xaf", false},
		{"6 bytes", "\xfc\x80\x80\x80\x80\xaf", false},
	}},
	{"maximum overlong sequences", []utf8Seq{
		{"2 bytes U+007F", "\xc1\xbf", false},
		{"3 bytes U+07FF", "\xe0\x9f\xbf", false},
		{"4 bytes U+FFFF", "\xf0\x8f\xbf\xbf", false},
		{"5 bytes U+1FFFFF", "\xf8\x87\xbf\xbf\xbf", false},
		{"6 bytes U+3FFFFFF", "\xfc\x83\xbf\xbf\xbf\xbf", false},
	}},
	{"overlong NUL", []utf8Seq{
		{"2 bytes", "\xc0\x80", false},
		{"3 bytes", "\xe0\x80\x80", false},
		{"4 bytes", "\xf0\x80\x80\x80", false},
		{"5 bytes", "\xf8\x80\x80\x80\x80", false},
		{"6 bytes", "\xfc\x80\x80\x80\x80\x80", false},
	}},
	{"single UTF-16 surrogates", []utf8Seq{
		{"U+D800", "\xed\xa0\x80", false},
		{"U+DB7F", "\xed\xad\xbf", false},
		{"U+DB80", "\xed\xae\x80", false},
		{"U+DBFF", "\xed\xaf\xbf", false},
		{"U+DC00", "\xed\xb0\x80", false},
		{"U+DF80", "\xed\xbe\x80", false},
		{"U+DFFF", "\xed\xbf\xbf", false},
		{"surrogate inside text", "kosme \xed\xa0\x80 edited", false},
	}},
	{"paired UTF-16 surrogates", []utf8Seq{
		{"U+D800 U+DC00", "\xed\xa0\x80\xed\xb0\x80", false},
		{"U+D800 U+DFFF", "\xed\xa0\x80\xed\xbf\xbf", false},
		{"U+DB7F U+DC00", "\xed\xad\xbf\xed\xb0\x80", false},
		{"U+DB7F U+DFFF", "\xed\xad\xbf\xed\xbf\xbf", false},
		{"U+DB80 U+DC00", "\xed\xae\x80\xed\xb0\x80", false},
		{"U+DB80 U+DFFF", "\xed\xae\x80\xed\xbf\xbf", false},
		{"U+DBFF U+DC00", "\xed\xaf\xbf\xed\xb0\x80", false},
		{"U+DBFF U+DFFF", "\xed\xaf\xbf\xed\xbf\xbf", false},
	}},
	{"noncharacters (valid UTF-8)", []utf8Seq{
		{"U+FFFE", "\xef\xbf\xbe", true},
		{"U+FFFF", "\xef\xbf\xbf", true},
		{"U+FDD0", "\xef\xb7\x90", true},
		{"U+FDEF", "\xef\xb7\xaf", true},
		{"U+1FFFE", "\xf0\x9f\xbf\xbe", true},
		{"U+1FFFF", "\xf0\x9f\xbf\xbf", true},
		{"U+10FFFE", "\xf4\x8f\xbf\xbe", true},
		{"U+10FFFF", "\xf4\x8f\xbf\xbf", true},
	}},
}

// rangeString is the bytes lo..hi, each followed by sep.
func rangeString(lo, hi byte, sep string) string {
	var b strings.Builder
	for c := int(lo); c <= int(hi); c++ {
		b.WriteByte(byte(c))
		b.WriteString(sep)
	}
	return b.String()
}

// validPrefix reports whether p can be extended into valid UTF-8, that is
// whether a streaming validator must still wait for more bytes.
func validPrefix(p []byte) bool {
	need := 0
	var lo, hi byte
	for _, b := range p {
		if need > 0 {
			if b < lo || b > hi {
				return false
			}
			need--
			lo, hi = 0x80, 0xbf
			continue
		}
		lo, hi = 0x80, 0xbf
		switch {
		case b < 0x80:
		case b >= 0xc2 && b <= 0xdf:
			need = 1
		case b == 0xe0:
			need, lo = 2, 0xa0
		case b == 0xed:
			need, hi = 2, 0x9f
		case b >= 0xe1 && b <= 0xef:
			need = 2
		case b == 0xf0:
			need, lo = 3, 0x90
		case b >= 0xf1 && b <= 0xf3:
			need = 3
		case b == 0xf4:
			need, hi = 3, 0x8f
		default:
			return false
		}
	}
	return true
}

// utf8Variant is one way of sending a text payload.
type utf8Variant struct {
	name   string
	mode   wmode
	frames []frame
	// failFast: the payload is invalid before its end and the rest of the
	// announced length is never sent, so the server's answer can only come
	// from the bytes it has.
	failFast bool
}

func utf8Variants(p []byte, valid bool) []utf8Variant {
	vs := []utf8Variant{
		{name: "one frame", frames: []frame{textBytes(p)}},
		{name: "one frame written one byte at a time", mode: bytewise, frames: []frame{textBytes(p)}},
	}
	if len(p) > 1 {
		vs = append(vs, utf8Variant{name: "one fragment per byte", frames: byteFragments(opText, p)})
		for k := 1; k < len(p); k++ {
			vs = append(vs, utf8Variant{
				name:   fmt.Sprintf("two fragments split at %d", k),
				frames: []frame{textBytes(p[:k]).NoFin(), contFrame(p[k:])},
			})
		}
	}
	if !valid && !validPrefix(p) {
		const rest = 64 << 10
		vs = append(vs,
			utf8Variant{
				name:     "fail fast: frame announces 64KiB more than is sent",
				frames:   []frame{textBytes(p).Declare(uint64(len(p) + rest))},
				failFast: true,
			},
			utf8Variant{
				name:     "fail fast: second fragment announces 64KiB more than is sent",
				frames:   []frame{textFrame("ok").NoFin(), contFrame(p).NoFin().Declare(uint64(len(p) + rest))},
				failFast: true,
			})
	}
	return vs
}

// utf8SeqCase sends one sequence in every variant, each on a fresh
// connection: valid ones are echoed, invalid ones get 1007.
func utf8SeqCase(id string, s utf8Seq) wsCase {
	p := []byte(s.b)
	verdict := "1007"
	if s.valid {
		verdict = "echoed"
	}
	return wsCase{
		id:   id,
		desc: fmt.Sprintf("%s (%x): %s", s.desc, truncateForName(p), verdict),
		run: func(t *testing.T, addr string) {
			if utf8.Valid(p) != s.valid {
				t.Fatalf("suite error: %q marked valid=%v", p, s.valid)
			}
			for _, v := range utf8Variants(p, s.valid) {
				ok := t.Run(v.name, func(t *testing.T) {
					steps := []step{sendWith(v.mode, v.frames...)}
					if s.valid {
						steps = append(steps, expectMsg(opText, p))
					} else {
						steps = append(steps, expectClose(1007))
					}
					runSteps(t, addr, steps)
				})
				if !ok {
					// One failing variant says enough about this sequence;
					// the rest would mostly wait out the same hang guard.
					break
				}
			}
		},
	}
}

func truncateForName(p []byte) []byte {
	if len(p) > 12 {
		return p[:12]
	}
	return p
}

func utf8Cases() []wsCase {
	var l caseList
	hello := []byte("Hello-µ@ßöäüàá-UTF-8!!")
	kosmeBad := []byte("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64")

	add := l.group("6.1")
	add("empty text frame", send(textFrame("")), expectText(""))
	add("text message of three empty fragments", send(textFrame("").NoFin(), contText("").NoFin(), contText("")), expectText(""))
	add("empty, non-empty, empty fragments", send(textFrame("").NoFin(), contText("middle").NoFin(), contText("")), expectText("middle"))

	add = l.group("6.2")
	add("valid UTF-8 in one frame", send(textBytes(hello)), expectMsg(opText, hello))
	add("valid UTF-8 in one fragment per byte", send(byteFragments(opText, hello)...), expectMsg(opText, hello))
	add("valid UTF-8 in one frame written one byte at a time", sendWith(bytewise, textBytes(hello)), expectMsg(opText, hello))
	add("valid UTF-8 split into two fragments at every byte boundary", func(c *wsConn) {
		for k := 1; k < len(hello); k++ {
			c.sendFrames(whole, textBytes(hello[:k]).NoFin(), contFrame(hello[k:]))
			c.expectEvent(opText, hello)
		}
	})

	add = l.group("6.3")
	add("invalid UTF-8 (surrogate) in one frame: 1007", send(textBytes(kosmeBad)), expectClose(1007))
	add("invalid UTF-8 in one fragment per byte: 1007", send(byteFragments(opText, kosmeBad)...), expectClose(1007))
	add("invalid UTF-8 in one frame written one byte at a time: 1007", sendWith(bytewise, textBytes(kosmeBad)), expectClose(1007))

	// Fail fast: the server must answer 1007 as soon as the bytes it has are
	// invalid. The rest of the message is never sent, so the answer arrives
	// before it by construction; a server that waits for it never answers
	// and fails at the hang guard.
	kosme := "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
	add = l.group("6.4")
	add("fragment 1 valid, fragment 2 (FIN clear) is U+110000, fragment 3 never sent: 1007",
		send(textFrame(kosme).NoFin()), pause(20*time.Millisecond), send(contText("\xf4\x90\x80\x80").NoFin()), expectClose(1007))
	add("fragment 1 ends with F4, fragment 2 (FIN clear) starts 90, fragment 3 never sent: 1007",
		send(textFrame(kosme+"\xf4").NoFin()), pause(20*time.Millisecond), send(contText("\x90\x80\x80").NoFin()), expectClose(1007))
	add("one frame, only the bytes up to U+110000 sent: 1007",
		send(textFrame(kosme+"\xf4\x90\x80\x80").Declare(uint64(len(kosme)+4+6))), expectClose(1007))
	add("one frame, only the bytes up to F4 90 sent: 1007",
		send(textFrame(kosme+"\xf4\x90").Declare(uint64(len(kosme)+4+6))), expectClose(1007))
	add("same, the prefix written one byte at a time with pauses",
		sendWith(slowChops(1, 2*time.Millisecond), textFrame(kosme+"\xf4\x90").Declare(uint64(len(kosme)+4+6))), expectClose(1007))
	add("1 MiB frame, 100 KiB valid then a surrogate, rest never sent: 1007",
		send(textBytes(append(utf8Text(100<<10), "\xed\xa0"...)).Declare(1<<20)), expectClose(1007))
	add("16 MiB frame announced, 0xFF after 10 bytes, rest never sent: 1007",
		send(textFrame("0123456789\xff").Declare(16<<20)), expectClose(1007))
	add("fragment 1 ends with E2 82, fragment 2 (FIN clear, 64 KiB announced) starts 28: 1007",
		send(textFrame("euro \xe2\x82").NoFin(), contText("\x28").NoFin().Declare(64<<10)), expectClose(1007))
	add("fragment 1 ends with F0, fragment 2 starts 80 (overlong), rest never sent: 1007",
		send(textFrame("abc\xf0").NoFin(), contText("\x80").NoFin().Declare(64<<10)), expectClose(1007))
	add("fragment 1 ends with ED, fragment 2 starts A0 (surrogate), rest never sent: 1007",
		send(textFrame("abc\xed").NoFin(), contText("\xa0").NoFin().Declare(64<<10)), expectClose(1007))
	add("valid 1 MiB fragment, then a fragment starting with a lone continuation byte, rest never sent: 1007",
		send(textBytes(utf8Text(1<<20)).NoFin(), contText("\x80").NoFin().Declare(1<<20)), expectClose(1007))

	cases := l.cases
	for gi, g := range utf8Groups {
		for si, s := range g.seqs {
			tc := utf8SeqCase(fmt.Sprintf("6.%d.%d", gi+5, si+1), s)
			tc.desc = g.desc + ": " + tc.desc
			cases = append(cases, tc)
		}
	}
	return cases
}

// Category 7: close handling.

var validCloseCodes = []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999}
var invalidCloseCodes = []int{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535}

func closeCases() []wsCase {
	var l caseList
	add := l.group("7.1")
	add("text, then close 1000: echo, then close 1000",
		send(textFrame("Hello World!")), expectText("Hello World!"), send(closeFrame(1000, "")), expectClose(1000))
	add("two close frames: one close echoed, the second ignored",
		send(closeFrame(1000, ""), closeFrame(1001, "second")), expectClose(1000))
	add("close, then ping: no pong", send(closeFrame(1000, ""), pingFrame([]byte("after close"))), expectClose(1000))
	add("close, then text: no echo", send(closeFrame(1000, ""), textFrame("after close")), expectClose(1000))
	add("text fragment, close, final continuation: close echoed, no message",
		send(textFrame("fragment1").NoFin(), closeFrame(1000, ""), contText("fragment2")), expectClose(1000))
	big := utf8Text(256 << 10)
	add("256 KiB text, close, ping in one write: echo, close, no pong",
		send(textBytes(big), closeFrame(1000, ""), pingFrame([]byte("after close"))), expectMsg(opText, big), expectClose(1000))
	add("close, then data in a later write: ignored",
		send(closeFrame(1000, "")), pause(50*time.Millisecond), send(textFrame("late"), binFrame([]byte("late"))), expectClose(1000))
	add("close written one byte at a time", sendWith(bytewise, closeFrame(1000, "bytewise")), expectCloseReason(1000, "bytewise"))
	add("close after a ping in one write: pong, then close",
		send(pingFrame([]byte("p")), closeFrame(1000, "")), expectPong([]byte("p")), expectClose(1000))
	add("invalid frame after close is ignored",
		send(closeFrame(1000, ""), dataFrame(5, []byte("reserved"))), expectClose(1000))

	add = l.group("7.3")
	add("close without payload: echoed without code", send(closeFrame(closeEmpty, "")), expectClose(closeEmpty))
	add("close with a 1-byte payload: 1002", send(closeRaw([]byte{0x03})), expectClose(1002))
	add("close 1000 without reason", send(closeFrame(1000, "")), expectClose(1000))
	add("close 1000 with reason: reason echoed", send(closeFrame(1000, "Hello World!")), expectCloseReason(1000, "Hello World!"))
	r123 := strings.Repeat("*", 123)
	add("close 1000 with a 123-byte reason: echoed", send(closeFrame(1000, r123)), expectCloseReason(1000, r123))
	add("close 1000 with a 124-byte reason (126-byte frame): 1002", send(closeFrame(1000, r123+"*")), expectClose(1002))
	r123u := strings.Repeat("µ", 61) + "x"
	add("close 1000 with a 123-byte multi-byte UTF-8 reason: echoed", send(closeFrame(1000, r123u)), expectCloseReason(1000, r123u))

	add = l.group("7.5")
	add("close reason with a surrogate (invalid UTF-8): 1002",
		send(closeFrame(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64")), expectClose(1002))
	add("close reason ending in a truncated sequence: 1002", send(closeFrame(1000, "ok\xe2\x82")), expectClose(1002))
	add("close reason with an overlong sequence: 1002", send(closeFrame(1000, "\xc0\xaf")), expectClose(1002))

	add = l.group("7.7")
	for _, code := range validCloseCodes {
		add(fmt.Sprintf("close %d: echoed with %d", code, code), send(closeFrame(code, "")), expectClose(code))
	}
	add = l.group("7.9")
	for _, code := range invalidCloseCodes {
		add(fmt.Sprintf("close %d: 1002", code), send(closeFrame(code, "")), expectClose(1002))
	}
	add = l.group("7.13")
	add("close 5000 with reason: 1002", send(closeFrame(5000, "out of range")), expectClose(1002))
	add("close 1005 with reason: 1002", send(closeFrame(1005, "reserved")), expectClose(1002))
	add("close 3000 with reason, one write per byte with pauses",
		sendWith(slowChops(1, time.Millisecond), closeFrame(3000, "app")), expectCloseReason(3000, "app"))
	return l.cases
}

// Category 9: limits and performance.

func limitCases() []wsCase {
	var l caseList
	sizes := []int{64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20}
	for gi, op := range []byte{opText, opBinary} {
		add := l.group(fmt.Sprintf("9.%d", gi+1))
		for _, n := range sizes {
			tc := add(fmt.Sprintf("%s %s in one frame", opName(op), sizeName(n)), bigEcho(op, n, 0, whole))
			tc.bulk = n > 1<<20
		}
	}
	for gi, op := range []byte{opText, opBinary} {
		add := l.group(fmt.Sprintf("9.%d", gi+3))
		for _, frag := range []int{64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20} {
			tc := add(fmt.Sprintf("%s 4MiB in fragments of %s", opName(op), sizeName(frag)), bigEcho(op, 4<<20, frag, whole))
			// One of them under the race detector: fragments gathered
			// into a message that outgrows its buffers several times.
			tc.bulk = frag != 64<<10
		}
	}
	for gi, op := range []byte{opText, opBinary} {
		add := l.group(fmt.Sprintf("9.%d", gi+5))
		for _, chunk := range []int{64, 1 << 10, 16 << 10, 128 << 10} {
			tc := add(fmt.Sprintf("%s 1MiB in one frame written in chunks of %s", opName(op), sizeName(chunk)),
				bigEcho(op, 1<<20, 0, chopped(chunk)))
			tc.bulk = chunk < 16<<10
		}
	}
	for gi, op := range []byte{opText, opBinary} {
		add := l.group(fmt.Sprintf("9.%d", gi+7))
		add(fmt.Sprintf("1000 %s messages of 16 bytes in one write, echoed in order", opName(op)), manyMessages(op, 1000, true))
		add(fmt.Sprintf("1000 %s round trips of 16 bytes, one at a time", opName(op)), manyMessages(op, 1000, false))
	}
	add := l.group("9.9")
	for _, op := range []byte{opText, opBinary} {
		tc := add(fmt.Sprintf("%s 16MiB in fragments of 64KiB", opName(op)), bigEcho(op, 16<<20, 64<<10, whole))
		tc.bulk = true
	}

	// Too big: the server must refuse from the header alone; the payload is
	// never sent.
	add = l.group("9.10")
	add("text frame announcing 64 MiB + 1, payload never sent: 1009",
		send(textFrame("").Declare(contractMaxMessage+1)), expectClose(1009))
	add("binary frame announcing 64 MiB + 1, payload never sent: 1009",
		send(binFrame(nil).Declare(contractMaxMessage+1)), expectClose(1009))
	add("binary frame announcing 2^63-1 bytes, payload never sent: 1009",
		send(binFrame(nil).Declare(1<<63-1)), expectClose(1009))
	add("binary frame announcing 1 GiB after a valid echo: echo, then 1009",
		send(binFrame([]byte("small")), binFrame(nil).Declare(1<<30)), expectMsg(opBinary, []byte("small")), expectClose(1009))
	add("1 KiB fragment, then a continuation announcing the rest up to 64 MiB + 1: 1009",
		send(binFrame(binPayload(1<<10, 1)).NoFin(), contFrame(nil).Declare(contractMaxMessage-1<<10+1)), expectClose(1009))
	add("text fragment of 1 MiB, continuation announcing 63 MiB + 1: 1009",
		send(textBytes(utf8Text(1<<20)).NoFin(), contFrame(nil).NoFin().Declare(contractMaxMessage-1<<20+1)), expectClose(1009))
	// Exactly at the limit is allowed: no 1009 from the header. Silence for
	// a while would not prove it (a slow server could still refuse after
	// the wait), so the whole message is sent and must come back: a server
	// that refused would have answered 1009 instead of the echo.
	tc := add("binary frame announcing exactly 64 MiB: not refused, echoed whole",
		bigEcho(opBinary, contractMaxMessage, 0, whole))
	tc.bulk = true
	tc = add("1 KiB fragment, then a final continuation announcing exactly the rest of 64 MiB: not refused, echoed whole",
		func(c *wsConn) {
			c.t.Helper()
			p := binPayload(contractMaxMessage, 1)
			c.sendFrames(whole, binFrame(p[:1<<10]).NoFin(), contFrame(p[1<<10:]))
			c.expectEvent(opBinary, p)
		})
	tc.bulk = true
	return l.cases
}

// bigEcho sends an n-byte message, in fragments of frag bytes if frag > 0,
// and expects it back intact.
func bigEcho(op byte, n, frag int, m wmode) step {
	return func(c *wsConn) {
		c.t.Helper()
		p := payloadFor(op, n)
		frames := []frame{dataFrame(op, p)}
		if frag > 0 {
			frames = fragments(op, p, frag)
		}
		start := time.Now()
		c.sendFrames(m, frames...)
		c.expectEvent(op, p)
		c.t.Logf("%s echoed in %v", sizeName(n), time.Since(start).Round(time.Millisecond))
	}
}

// manyMessages sends count small messages, all at once or one round trip at
// a time.
func manyMessages(op byte, count int, pipelined bool) step {
	return func(c *wsConn) {
		c.t.Helper()
		msgs := make([][]byte, count)
		frames := make([]frame, count)
		for i := range msgs {
			msgs[i] = []byte(fmt.Sprintf("message %07d", i))[:15]
			msgs[i] = append(msgs[i], byte('a'+i%26))
			frames[i] = dataFrame(op, msgs[i])
		}
		start := time.Now()
		if pipelined {
			c.sendFrames(whole, frames...)
			for _, p := range msgs {
				c.expectEvent(op, p)
			}
		} else {
			for i, p := range msgs {
				c.sendFrames(whole, frames[i])
				c.expectEvent(op, p)
			}
		}
		c.t.Logf("%d messages in %v", count, time.Since(start).Round(time.Millisecond))
	}
}

// Category 10: miscellaneous.

func miscCases() []wsCase {
	var l caseList
	add := l.group("10.1")
	txt := utf8Text(65536)
	add("text 64KiB sent in fragments of 1300 bytes: echo, reassembled whatever its framing",
		send(fragments(opText, txt, 1300)...), func(c *wsConn) {
			ev, err := c.next()
			if err != nil {
				c.t.Fatalf("want the echo, got %s", c.describeErr(err))
			}
			if ev.op != opText || !bytes.Equal(ev.payload, txt) {
				c.t.Fatalf("want %s, got %s", describe(opText, txt), describeEvent(ev))
			}
			c.t.Logf("server echoed in %d frame(s)", ev.frames)
		})
	bin := binPayload(1<<20, 10)
	add("binary 1MiB in fragments of 4KiB: echo", send(fragments(opBinary, bin, 4<<10)...), expectMsg(opBinary, bin))
	add("idle for 300 ms between messages", send(textFrame("first")), expectText("first"),
		expectSilence(300*time.Millisecond), send(textFrame("second")), expectText("second"))
	add("client half-written frame then TCP close: server unaffected",
		sendRaw(whole, textFrame("never finished").Bytes()[:5]), abort())
	add("client drops TCP in the middle of a fragmented message: server unaffected",
		send(textFrame("frag").NoFin()), abort())
	return l.cases
}

// Handshake and garbage.

// rawRequest is an upgrade request with a fresh key; edit changes lines.
func rawRequest(addr string, edit func(lines []string) []string) string {
	lines := []string{
		"GET /echo HTTP/1.1",
		"Host: " + addr,
		"Upgrade: websocket",
		"Connection: Upgrade",
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
		"Sec-WebSocket-Version: 13",
	}
	if edit != nil {
		lines = edit(lines)
	}
	return strings.Join(lines, "\r\n") + "\r\n\r\n"
}

func without(prefix string) func([]string) []string {
	return func(lines []string) []string {
		var out []string
		for _, l := range lines {
			if !strings.HasPrefix(strings.ToLower(l), strings.ToLower(prefix)) {
				out = append(out, l)
			}
		}
		return out
	}
}

func replacing(prefix, with string) func([]string) []string {
	return func(lines []string) []string {
		out := without(prefix)(lines)
		if strings.HasPrefix(prefix, "GET") {
			return append([]string{with}, out...)
		}
		return append(out, with)
	}
}

// expectHTTPError sends req and expects a status in want, and, when
// mustClose, the server closing TCP after the response.
func expectHTTPError(t *testing.T, addr, req string, m wmode, mustClose bool, want ...int) *wsConn {
	t.Helper()
	c := dialTCP(t, addr)
	c.queue([]byte(req), m)
	resp := c.readResponse()
	ok := false
	for _, code := range want {
		ok = ok || resp.StatusCode == code
	}
	if !ok {
		t.Fatalf("sent %q: want status %v, got %q", truncate(req, 120), want, resp.Status)
	}
	if resp.ContentLength > 0 || resp.ContentLength == -1 {
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(resp.Body); err != nil && !isClosedErr(err) {
			t.Fatalf("reading the %d response body: %s", resp.StatusCode, c.describeErr(err))
		}
	}
	if mustClose {
		c.expectTCPClose()
	}
	return c
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func handshakeCases() []wsCase {
	var cs []wsCase
	add := func(id, desc string, run func(t *testing.T, addr string)) {
		cs = append(cs, wsCase{id: id, desc: desc, run: run})
	}
	add("H.1", "garbage instead of a request: 400 and TCP close", func(t *testing.T, addr string) {
		expectHTTPError(t, addr, "GARBAGE\r\n\r\n", whole, true, 400)
	})
	add("H.2", "binary junk then a blank line: 400 and TCP close", func(t *testing.T, addr string) {
		junk := string(bytes.ReplaceAll(binPayload(200, 99), []byte("\n"), []byte("x"))) + "\r\n\r\n"
		expectHTTPError(t, addr, junk, whole, true, 400)
	})
	add("H.3", "garbage written one byte at a time: 400 and TCP close", func(t *testing.T, addr string) {
		expectHTTPError(t, addr, "HELLO THERE\r\nnot: a websocket\r\n\r\n", bytewise, true, 400)
	})
	add("H.4", "missing Sec-WebSocket-Key: 400", func(t *testing.T, addr string) {
		expectHTTPError(t, addr, rawRequest(addr, without("Sec-WebSocket-Key")), whole, false, 400)
	})
	add("H.5", "Sec-WebSocket-Key that is not 16 bytes in base64: 400", func(t *testing.T, addr string) {
		expectHTTPError(t, addr, rawRequest(addr, replacing("Sec-WebSocket-Key", "Sec-WebSocket-Key: dGVzdA==")), whole, false, 400)
	})
	add("H.6", "Sec-WebSocket-Version 8: 426 or 400 with Sec-WebSocket-Version: 13", func(t *testing.T, addr string) {
		c := dialTCP(t, addr)
		c.queue([]byte(rawRequest(addr, replacing("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8"))), whole)
		resp := c.readResponse()
		if resp.StatusCode != 426 && resp.StatusCode != 400 {
			t.Fatalf("want status 426 (or 400), got %q", resp.Status)
		}
		if !headerHasToken(resp.Header, "Sec-WebSocket-Version", "13") {
			t.Fatalf("want a Sec-WebSocket-Version: 13 header (RFC 6455 4.2.2), got %q", resp.Header.Values("Sec-WebSocket-Version"))
		}
	})
	add("H.7", "POST instead of GET: 4xx", func(t *testing.T, addr string) {
		expectHTTPError(t, addr, rawRequest(addr, replacing("GET", "POST /echo HTTP/1.1")), whole, false, 400, 405)
	})
	add("H.8", "HTTP/1.0 upgrade request: 4xx or 505", func(t *testing.T, addr string) {
		expectHTTPError(t, addr, rawRequest(addr, replacing("GET", "GET /echo HTTP/1.0")), whole, false, 400, 426, 505)
	})
	add("H.9", "no Upgrade header: not upgraded", func(t *testing.T, addr string) {
		c := dialTCP(t, addr)
		c.queue([]byte(rawRequest(addr, without("Upgrade"))), whole)
		if resp := c.readResponse(); resp.StatusCode == 101 {
			t.Fatalf("server upgraded a request without Upgrade: websocket")
		}
	})
	add("H.10", "Connection header without the upgrade token: not upgraded", func(t *testing.T, addr string) {
		c := dialTCP(t, addr)
		c.queue([]byte(rawRequest(addr, replacing("Connection", "Connection: keep-alive"))), whole)
		if resp := c.readResponse(); resp.StatusCode == 101 {
			t.Fatalf("server upgraded a request whose Connection header lacks upgrade")
		}
	})
	add("H.11", "request header of 64 KiB: 4xx and TCP close", func(t *testing.T, addr string) {
		req := rawRequest(addr, func(l []string) []string {
			return append(l, "X-Padding: "+strings.Repeat("a", 64<<10))
		})
		expectHTTPError(t, addr, req, whole, true, 400, 413, 414, 431)
	})
	add("H.12", "request written one byte at a time: 101, then echo", func(t *testing.T, addr string) {
		c := dialTCP(t, addr)
		key := "dGhlIHNhbXBsZSBub25jZQ=="
		c.queue([]byte(rawRequest(addr, nil)), bytewise)
		c.expectUpgrade(key)
		roundTrip(c, "after a bytewise handshake")
		c.closeNormally()
	})
	add("H.13", "request and first frames in one write: 101, then echo", func(t *testing.T, addr string) {
		c := dialTCP(t, addr)
		key := "dGhlIHNhbXBsZSBub25jZQ=="
		b := []byte(rawRequest(addr, nil))
		b = append(b, textFrame("pipelined after the request").Bytes()...)
		b = append(b, pingFrame([]byte("pipelined ping")).Bytes()...)
		c.queue(b, whole)
		c.expectUpgrade(key)
		c.expectEvent(opText, []byte("pipelined after the request"))
		c.expectEvent(opPong, []byte("pipelined ping"))
		c.closeNormally()
	})
	add("H.14", "any path and query, foreign Origin, odd header case: 101", func(t *testing.T, addr string) {
		c := dialTCP(t, addr)
		key := "x3JJHMbDL1EzLkh9GBhXDw=="
		req := "GET /some/deep/path?with=query&x=1 HTTP/1.1\r\nhost: " + addr + "\r\nupgrade: WebSocket\r\n" +
			"connection: keep-alive, Upgrade\r\nsec-websocket-key: " + key + "\r\nsec-websocket-version: 13\r\n" +
			"Origin: http://elsewhere.example:8080\r\nUser-Agent: conformance\r\n\r\n"
		c.queue([]byte(req), whole)
		c.expectUpgrade(key)
		roundTrip(c, "after an unusual handshake")
		c.closeNormally()
	})
	add("H.15", "partial request, then the client closes: server unaffected", func(t *testing.T, addr string) {
		c := dialTCP(t, addr)
		c.queue([]byte(rawRequest(addr, nil)[:30]), whole)
		c.flush()
		c.stop()
	})
	add("H.16", "50 connections at once, each echoing", func(t *testing.T, addr string) {
		conns := make([]*wsConn, 50)
		for i := range conns {
			conns[i] = dialWS(t, addr)
			conns[i].sendFrames(whole, textFrame(fmt.Sprintf("conn %d", i)))
		}
		for i, c := range conns {
			c.expectEvent(opText, []byte(fmt.Sprintf("conn %d", i)))
		}
		for _, c := range conns {
			c.closeNormally()
		}
	})
	return cs
}

// The tests.

func TestFraming(t *testing.T) {
	t.Parallel()
	runCases(t, framingCases())
}

func TestPingPong(t *testing.T) {
	t.Parallel()
	runCases(t, pingCases())
}

func TestReservedBits(t *testing.T) {
	t.Parallel()
	runCases(t, rsvCases())
}

func TestOpcodes(t *testing.T) {
	t.Parallel()
	runCases(t, opcodeCases())
}

func TestFragmentation(t *testing.T) {
	t.Parallel()
	runCases(t, fragmentationCases())
}

func TestUTF8(t *testing.T) {
	t.Parallel()
	runCases(t, utf8Cases())
}

func TestCloseHandling(t *testing.T) {
	t.Parallel()
	runCases(t, closeCases())
}

func TestLimits(t *testing.T) {
	t.Parallel()
	runCases(t, limitCases())
}

func TestMisc(t *testing.T) {
	t.Parallel()
	runCases(t, miscCases())
}

func TestHandshake(t *testing.T) {
	t.Parallel()
	runCases(t, handshakeCases())
}

// TestShutdown covers the server-initiated close: Shutdown sends 1001 to
// every client and waits for the close handshakes, or until its context
// ends.
func TestShutdown(t *testing.T) {
	t.Parallel()
	t.Run("7.20.1 Shutdown closes every client with 1001 and completes the handshakes", func(t *testing.T) {
		t.Parallel()
		srv, addr := startServer(t, nil)
		idle := dialWS(t, addr)
		mid := dialWS(t, addr)
		// Pings are answered inside a fragmented message: the pong says the
		// server has seen the fragment.
		mid.sendFrames(whole, textFrame("half a message").NoFin(), pingFrame([]byte("fragment seen")))
		mid.expectEvent(opPong, []byte("fragment seen"))
		busy := dialWS(t, addr)
		roundTrip(busy, "before shutdown")

		done := make(chan error, 1)
		start := time.Now()
		go func() {
			err, _ := srv.shutdown(context.Background())
			done <- err
		}()
		for _, c := range []*wsConn{idle, mid, busy} {
			c.expectClose([]int{1001}, nil)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Shutdown after every client answered: %v", err)
			}
			t.Logf("Shutdown returned after %v", time.Since(start).Round(time.Millisecond))
		case <-time.After(hangGuard):
			t.Fatalf("Shutdown did not return (waited %v) although every client answered its close", hangGuard)
		}
		if conn, err := net.DialTimeout("tcp", addr, hangGuard); err == nil {
			conn.Close()
			t.Fatalf("server still accepts connections after Shutdown returned")
		}
	})
	t.Run("7.20.2 Shutdown with a client that never answers returns when its context ends", func(t *testing.T) {
		t.Parallel()
		srv, addr := startServer(t, nil)
		c := dialWS(t, addr)
		roundTrip(c, "before shutdown")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			err, _ := srv.shutdown(ctx)
			done <- err
		}()
		ev, err := c.next()
		if err != nil {
			t.Fatalf("want close 1001, got %s", c.describeErr(err))
		}
		if ev.op != opClose || closeCode(ev.payload) != 1001 {
			t.Fatalf("want close 1001, got %s", describeEvent(ev))
		}
		// Never answer. Shutdown must wait for the handshake while its
		// context lives (the server's own close timeout is far beyond the
		// hang guard), and let go of the connection once it ends.
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned (%v) while a client had not answered its close and the context was live", err)
		default:
		}
		cancel()
		c.expectTCPClose()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Shutdown whose context ended returned %v, want the context's error", err)
			}
		case <-time.After(hangGuard):
			t.Fatalf("Shutdown did not return (waited %v) after its context ended", hangGuard)
		}
	})
}

// TestSuiteTables checks the suite's own tables. (The client's masking and
// accept key are wsframe's, tested there.)
func TestSuiteTables(t *testing.T) {
	for _, g := range utf8Groups {
		for _, s := range g.seqs {
			if utf8.Valid([]byte(s.b)) != s.valid {
				t.Errorf("%s / %s: marked valid=%v, utf8.Valid says otherwise", g.desc, s.desc, s.valid)
			}
			if s.valid && !validPrefix([]byte(s.b)) {
				t.Errorf("%s / %s: valid but validPrefix is false", g.desc, s.desc)
			}
		}
	}
	for _, n := range []int{0, 1, 2, 3, 4, 5, 100, 65535, 65536, 65537, 200000} {
		if p := utf8Text(n); len(p) != n || !utf8.Valid(p) {
			t.Errorf("utf8Text(%d): %d bytes, valid=%v", n, len(p), utf8.Valid(p))
		}
	}
}
