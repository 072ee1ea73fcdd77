package broadcast

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/heraldws/herald/codec"
	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/internal/loadclient"
	"github.com/heraldws/herald/internal/wsframe"
)

// deflateConfig is a server that accepts permessage-deflate and compresses
// messages of 256 bytes and more.
var deflateConfig = engine.Config{Compression: engine.Compression{Enabled: true, MinSize: 256}}

// dialSub opens a client subscribed to topics, offering permessage-deflate
// if deflate, and waits until the server has opened it.
func dialSub(t testing.TB, srv *engine.Server, sub *subscriber, deflate bool, topics ...string) net.Conn {
	t.Helper()
	dial := loadclient.Dial
	if deflate {
		dial = loadclient.DialDeflate
	}
	conn, err := dial(srv.Addr().String(), "/"+strings.Join(topics, ","), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	select {
	case c := <-sub.opened:
		if c.Compression() != deflate {
			t.Fatalf("Compression() is %v, want %v", c.Compression(), deflate)
		}
	case <-time.After(60 * time.Second): // a hang guard
		t.Fatal("not opened")
	}
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second)) // a hang guard
	return conn
}

// jsonOf returns n bytes of JSON-like text that compresses well.
func jsonOf(n int, seed int) []byte {
	return []byte(strings.Repeat(fmt.Sprintf(`{"sym":"S%d","px":101.25},`, seed), n/20+1)[:n])
}

// TestCompressedOncePerMessage: a batch reaches every subscriber that
// negotiated permessage-deflate with its large message compressed and its
// small one plain, in one write, byte for byte the same frames for all of
// them (the twin is encoded once per publish), and every other subscriber
// with plain frames. However many deflate subscribers there are, a message
// is compressed once.
func TestCompressedOncePerMessage(t *testing.T) {
	h, srv, sub := newHub(t, Options{}, deflateConfig)
	const zsubs, plainSubs = 12, 4
	var zconns, plain []net.Conn
	for range zsubs {
		zconns = append(zconns, dialSub(t, srv, sub, true, "big", "small"))
	}
	for range plainSubs {
		plain = append(plain, dialSub(t, srv, sub, false, "big", "small"))
	}
	waitSubs(t, h, "small", zsubs+plainSubs)
	big, small := jsonOf(4000, 1), []byte(`{"sym":"S2","px":3}`)
	batch := []Message{
		{Topic: "big", Type: engine.TextMessage, Data: big},
		{Topic: "small", Type: engine.BinaryMessage, Data: small},
	}
	zwant := codec.AppendFrame(codec.AppendSmallestFrame(nil, ws.OpText, big), ws.OpBinary, small)
	plainWant := codec.AppendFrame(codec.AppendFrame(nil, ws.OpText, big), ws.OpBinary, small)
	if zwant[0]&wsframe.RSV1 == 0 || len(zwant) >= len(plainWant)/2 {
		t.Fatalf("the test's message does not compress: %d bytes for %d", len(zwant), len(plainWant))
	}
	for round := 1; round <= 3; round++ {
		if err := h.PublishBatch(batch); err != nil {
			t.Fatal(err)
		}
		for i, conn := range zconns {
			readExactly(t, fmt.Sprintf("round %d, deflate subscriber %d", round, i), conn, zwant)
		}
		for i, conn := range plain {
			readExactly(t, fmt.Sprintf("round %d, plain subscriber %d", round, i), conn, plainWant)
		}
		if st := h.Stats(); st.Compressed != uint64(round) {
			t.Fatalf("round %d: %d messages compressed, want %d: once per publish, for %d subscribers", round, st.Compressed, round, zsubs)
		}
	}
	// The compressed frame is what a client inflates back to the message.
	r := bufio.NewReader(bytes.NewReader(zwant))
	hdr, p, err := wsframe.ReadFrameDeflate(r, nil, 1<<20)
	if err != nil || !hdr.Compressed {
		t.Fatalf("%+v %v", hdr, err)
	}
	if got, err := wsframe.Inflate(p, 1<<20); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("inflated %d bytes (%v), want the message", len(got), err)
	}
}

// readExactly reads len(want) bytes in ONE read and compares them: the
// batch must come in one write, as one segment on loopback.
func readExactly(t *testing.T, what string, conn net.Conn, want []byte) {
	t.Helper()
	buf := make([]byte, len(want)+64)
	n, err := conn.Read(buf)
	if err != nil || !bytes.Equal(buf[:n], want) {
		t.Fatalf("%s: read %d bytes (%v), want the batch's %d bytes in one write", what, n, err, len(want))
	}
}

// TestNoTwinWithoutDeflateSubscribers: nothing is compressed for a topic
// none of whose subscribers negotiated permessage-deflate, even when other
// topics have such subscribers.
func TestNoTwinWithoutDeflateSubscribers(t *testing.T) {
	h, srv, sub := newHub(t, Options{}, deflateConfig)
	plain := dialSub(t, srv, sub, false, "a")
	z := dialSub(t, srv, sub, true, "b")
	waitSubs(t, h, "a", 1)
	waitSubs(t, h, "b", 1)
	msg := jsonOf(2000, 3)
	if err := h.Publish("a", engine.TextMessage, msg); err != nil {
		t.Fatal(err)
	}
	readExactly(t, "plain subscriber of a", plain, codec.AppendFrame(nil, ws.OpText, msg))
	if st := h.Stats(); st.Compressed != 0 {
		t.Fatalf("%d messages compressed for a topic without deflate subscribers", st.Compressed)
	}
	if err := h.Publish("b", engine.TextMessage, msg); err != nil {
		t.Fatal(err)
	}
	readExactly(t, "deflate subscriber of b", z, codec.AppendSmallestFrame(nil, ws.OpText, msg))
	if st := h.Stats(); st.Compressed != 1 {
		t.Fatalf("%d messages compressed, want 1", st.Compressed)
	}
}

// TestSlowDeflateSubscriberConflated: a deflate subscriber that stops
// reading gets its topic's policy on the compressed twins: conflated to the
// latest, which comes out compressed once it drains, and inflates to the
// message published. A plain subscriber beside it gets every message.
func TestSlowDeflateSubscriberConflated(t *testing.T) {
	const highWater = 256 << 10
	h, srv, sub := newHub(t, Options{HighWater: highWater, Policy: Conflate, LowWater: highWater / 4},
		engine.Config{Compression: engine.Compression{Enabled: true, MinSize: 256},
			MaxOutboundBytes: 16 << 20, WriteTimeout: -1, CloseTimeout: time.Hour, SocketSendBuffer: 64 << 10,
			PingInterval: -1})
	stalled := dialSub(t, srv, sub, true, "tick")
	reader := dialSub(t, srv, sub, false, "tick")
	waitSubs(t, h, "tick", 2)
	// Text from a vocabulary of a few hundred random words compresses to
	// about 40%: 600 messages of 8 KiB are about 2 MB of twins, far more
	// than the stalled client's kernel buffers hold (its receive buffer
	// does not grow while it reads nothing).
	rng := rand.New(rand.NewPCG(1, 2))
	words := make([]string, 300)
	for i := range words {
		w := make([]byte, 3+rng.IntN(6))
		for k := range w {
			w[k] = byte('a' + rng.IntN(26))
		}
		words[i] = string(w)
	}
	msg := func(i int) []byte {
		b := []byte(fmt.Sprintf("tick %07d", i))
		for len(b) < 8<<10 {
			b = append(append(b, ' '), words[rng.IntN(len(words))]...)
		}
		return b
	}
	const n = 600
	published := make(map[string]bool, n)
	for i := range n {
		m := msg(i)
		published[string(m[:12])] = true
		if err := h.Publish("tick", engine.TextMessage, m); err != nil {
			t.Fatal(err)
		}
		if got := readText(t, reader); got != string(m) {
			t.Fatalf("reader: message %d differs", i)
		}
	}
	if st := h.Stats(); st.Conflated == 0 || st.Compressed != n {
		t.Fatalf("stats %+v: want conflation, and %d messages compressed once each", st, n)
	}
	// One more, published while the subscriber is still slow: it is
	// conflated (kept as the latest twin) and must reach the client,
	// compressed, once it drains.
	final := msg(n)
	if err := h.Publish("tick", engine.TextMessage, final); err != nil {
		t.Fatal(err)
	}
	_ = stalled.SetReadDeadline(time.Now().Add(60 * time.Second)) // a hang guard
	r := bufio.NewReaderSize(stalled, 64<<10)
	count, compressed := 0, 0
	for {
		hdr, p, err := wsframe.ReadFrameDeflate(r, nil, 1<<20)
		if err != nil {
			t.Fatalf("stalled client, frame %d: %v", count, err)
		}
		if hdr.Op == wsframe.OpPing {
			continue
		}
		if hdr.Compressed {
			compressed++
			if p, err = wsframe.Inflate(p, 1<<20); err != nil {
				t.Fatalf("stalled client, frame %d: %v", count, err)
			}
		}
		if bytes.Equal(p, final) {
			if !hdr.Compressed {
				t.Fatal("the conflated message came uncompressed")
			}
			break
		}
		if len(p) < 12 || !published[string(p[:12])] {
			t.Fatalf("stalled client, frame %d: %.20q was never published", count, p)
		}
		count++
	}
	if count >= n || compressed != count+1 {
		t.Fatalf("stalled client got %d messages, %d of them compressed: want fewer than %d (conflated), all compressed", count, compressed, n)
	}
}

// TestNarrowWindowSubscriberGetsPlainFrames: a subscriber that limited the
// server's window (server_max_window_bits=8, as the Autobahn TestSuite's
// cases 13.3 and 13.5 offer) cannot take the compressed twin, which refers
// back up to 32 KiB: it gets the plain frames, beside a subscriber that
// gets the twin.
func TestNarrowWindowSubscriberGetsPlainFrames(t *testing.T) {
	h, srv, sub := newHub(t, Options{}, deflateConfig)
	z := dialSub(t, srv, sub, true, "t")
	narrow, err := loadclient.DialOffer(srv.Addr().String(), "/t", 0, "permessage-deflate; server_max_window_bits=8")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { narrow.Close() })
	select {
	case c := <-sub.opened:
		if !c.Compression() {
			t.Fatal("Compression() is false for a narrow window")
		}
	case <-time.After(60 * time.Second): // a hang guard
		t.Fatal("not opened")
	}
	_ = narrow.SetDeadline(time.Now().Add(60 * time.Second)) // a hang guard
	waitSubs(t, h, "t", 2)
	msg := jsonOf(4000, 5)
	if err := h.Publish("t", engine.TextMessage, msg); err != nil {
		t.Fatal(err)
	}
	readExactly(t, "deflate subscriber", z, codec.AppendSmallestFrame(nil, ws.OpText, msg))
	readExactly(t, "narrow-window subscriber", narrow, codec.AppendFrame(nil, ws.OpText, msg))
}
