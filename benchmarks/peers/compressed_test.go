package peers_test

import (
	"bufio"
	"bytes"
	"net"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/heraldws/herald/codec"
	"github.com/heraldws/herald/internal/wsframe"
)

// opText is the text opcode, the ticks' frame type.
const opText = 1

// compressedTicks is how many compressed ticks each peer is read for.
const compressedTicks = 200

// TestCompressedBytesOnIdenticalMessages compares the bytes a compressed
// tick takes on the wire, herald against every peer, on the very same
// messages. The harness's wire_bytes_per_msg compares runs whose ticks
// differ (each server's sequence numbers and timestamps fill the order
// book), which moves a 1 KiB tick's compressed size by a byte or so between
// runs; here each peer's compressed frame is inflated and compressed again
// the way herald's hub compresses a broadcast (codec.AppendSmallestFrame:
// once per message, for every subscriber), so the difference left is the
// compressors'. Herald's own ticker is read the same way, to check that
// what it writes is exactly that frame. Bytes are deterministic: this is
// not a speed measurement.
func TestCompressedBytesOnIdenticalMessages(t *testing.T) {
	peers := append(peersUnderTest(t), heraldTicker(t))
	args := []string{"-interval", "20ms", "-symbols", "20", "-size", "1024", "-payload", "book", "-compression"}
	for _, p := range peers {
		t.Run(p.name, func(t *testing.T) {
			pr := start(t, p, "ticker", args...)
			frames := readCompressedTicks(t, pr.addr, compressedTicks)
			var theirs, ours int
			for _, f := range frames {
				raw, err := wsframe.Inflate(f, 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				twin := codec.AppendSmallestFrame(nil, opText, raw)
				h, _, err := wsframe.ParseHeaderDeflate(twin)
				if err != nil || !h.Compressed {
					t.Fatalf("the twin of a %d-byte tick: %v (compressed %v)", len(raw), err, h.Compressed)
				}
				payload := twin[h.Size:]
				if p.name == "herald" && !bytes.Equal(payload, f) {
					t.Fatalf("herald's tick (%d bytes) is not the hub's twin (%d bytes)", len(f), len(payload))
				}
				theirs += len(f)
				ours += len(payload)
			}
			n := float64(len(frames))
			ratio := float64(ours) / float64(theirs)
			t.Logf("%s: %.1f B of compressed payload per tick, herald %.1f B on the same ticks (%.4f×)", p.name, float64(theirs)/n, float64(ours)/n, ratio)
			if ours > theirs {
				t.Errorf("herald's compressed ticks take %d bytes, %s's %d: more on the same messages", ours, p.name, theirs)
			}
			_ = pr.cmd.Process.Kill()
		})
	}
}

// heraldTicker builds examples/ticker, herald's side of the contract.
func heraldTicker(t *testing.T) peer {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "herald-ticker")
	build := exec.Command("go", "build", "-o", bin, "./examples/ticker")
	build.Dir = filepath.Join("..", "..") // the repository root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/ticker: %v\n%s", err, out)
	}
	return peer{name: "herald", cmd: func(args ...string) *exec.Cmd {
		return exec.Command(bin, args[1:]...) // no mode argument: it is a ticker
	}}
}

// readCompressedTicks subscribes to every symbol, offering
// permessage-deflate, and returns the payloads of the first n compressed
// data frames, as they came off the wire.
func readCompressedTicks(t *testing.T, addr string, n int) [][]byte {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second)) // a hang guard
	key := wsframe.NewRequestKey()
	req := wsframe.AppendRequest(nil, addr, "/ws", key, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
	if _, err := conn.Write(req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	head, err := wsframe.ReadHead(br)
	if err != nil {
		t.Fatal(err)
	}
	if _, ext, err := wsframe.ParseResponseExtensions(head, key); err != nil || !bytes.HasPrefix(ext, []byte("permessage-deflate")) {
		t.Fatalf("handshake: %v, extensions %q", err, ext)
	}
	var frames [][]byte
	for len(frames) < n {
		h, payload, err := wsframe.ReadFrameDeflate(br, nil, 1<<20)
		if err != nil {
			t.Fatalf("after %d ticks: %v", len(frames), err)
		}
		if h.Compressed && h.Fin {
			frames = append(frames, append([]byte(nil), payload...))
		}
	}
	return frames
}
