package codec_test

import (
	"fmt"

	"github.com/gobwas/ws"

	"github.com/heraldws/herald/codec"
)

// An engine feeds a connection's Decoder whatever bytes arrived, in any split,
// and handles the events until the input is used up.
func ExampleDecoder() {
	cfg := &codec.DecoderConfig{MaxMessageBytes: 64 << 10} // shared by all connections
	var d codec.Decoder                                    // embedded in the connection state
	d.Init(cfg, false)
	defer d.Release() // when the connection closes

	// A browser sends a masked "Hello" (the example of RFC 6455, section
	// 5.7), then a ping; they arrive in three reads that split both frames.
	reads := [][]byte{
		{0x81, 0x85, 0x37, 0xfa},
		{0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58, 0x89, 0x82},
		{0x01, 0x02, 0x03, 0x04, 0x69, 0x6b},
	}
	var out []byte // what the engine would write back
	for _, p := range reads {
		for len(p) > 0 {
			n, ev, err := d.Decode(p)
			p = p[n:] // consumed: never fed again
			if err != nil {
				pe := err.(*codec.ProtocolError)
				out = codec.AppendClose(out, pe.Code, pe.Reason)
				break
			}
			switch ev.Op {
			case 0:
				// Nothing complete yet; the Decoder kept what it needs.
			case ws.OpText, ws.OpBinary:
				// ev.Payload is valid until the next Decode call: use or copy it.
				fmt.Printf("message %q\n", ev.Payload)
			case ws.OpPing:
				fmt.Printf("ping %q\n", ev.Payload)
				out = codec.AppendFrame(out, ws.OpPong, ev.Payload)
			case ws.OpClose:
				code, _, _ := codec.ParseClose(ev.Payload)
				out = codec.AppendClose(out, code, "")
			}
		}
	}
	fmt.Printf("reply % x\n", out)
	// Output:
	// message "Hello"
	// ping "hi"
	// reply 8a 02 68 69
}
