package upgrade

import (
	"crypto/sha1"
	"encoding/base64"
	"math/rand/v2"
	"testing"
)

// TestAcceptKeyRFC: the worked example of RFC 6455 §1.3.
func TestAcceptKeyRFC(t *testing.T) {
	const key, want = "dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
	if got := string(appendAccept(nil, key)); got != want {
		t.Fatalf(
			"accept for %q is %q, want %q",
			key, got, want)
	}
	if got := string(appendAccept([]byte("x: "), key)); got != "x: "+want {
		t.Fatalf(
			"appendAccept does not append: %q",
			got)
	}
}

// TestAcceptKeyMatchesDefinition checks random keys against the definition
// written the obvious way.
func TestAcceptKeyMatchesDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 1000; i++ {
		var raw [16]byte
		for j := range raw {
			raw[j] = byte(rng.UintN(256))
		}
		key := base64.StdEncoding.EncodeToString(raw[:])
		if !validKey(key) {
			t.Fatalf(
				"validKey(%q) is false",
				key)
		}
		h := sha1.New()
		h.Write([]byte(key + websocketGUID))
		want := base64.StdEncoding.EncodeToString(h.Sum(nil))
		if got := string(appendAccept(nil, key)); got != want {
			t.Fatalf(
				"accept for %q is %q, want %q",
				key, got, want)
		}
	}
}

func TestAcceptKeyDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { buf = appendAccept(buf[:0], testKey) }); n != 0 {
		t.Fatalf(
			"appendAccept allocates %v times",
			n)
	}
}

func TestValidKey(t *testing.T) {
	for _, k := range []string{testKey, "AAAAAAAAAAAAAAAAAAAAAA==", "+/+/+/+/+/+/+/+/+/+/+w=="} {
		if !validKey(k) {
			t.Fatalf(
				"validKey(%q) is false",
				k)
		}
	}
	for _, k := range []string{
		"",
		"dGhlIHNhbXBsZSBub25jZQ=",    // too short
		"dGhlIHNhbXBsZSBub25jZQ===",  // too long
		"dGhlIHNhbXBsZSBub25jZQ",     // unpadded
		"dGhlIHNhbXBsZSBub25jZ!==",   // outside the alphabet
		"dGhlIHNhbXBsZSBub25jZQ-_",   // URL alphabet, no padding
		"dGhlIHNhbXBsZSBub25j ZQ==",  // space
		"dGhlIHNhbXBsZSBub25jZQ=A",   // bad padding
		"dGhlIHNhbXBsZSBub25jZ-_==",  // URL alphabet
		"ZGhlIHNhbXBsZSBub25jZQ==Q=", // 26 bytes
	} {
		if validKey(k) {
			t.Fatalf(
				"validKey(%q) is true",
				k)
		}
	}
}

// TestReply101 compares the whole 101 byte for byte with what RFC 6455
// §4.2.2 and the clients herald is tested against expect: the status line,
// Upgrade, Connection, the accept key, then the subprotocol and the
// extension when they were negotiated, and the empty line.
func TestReply101(t *testing.T) {
	const fixed = "HTTP/1.1 101 Switching Protocols\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + testAccept + "\r\n"
	const answer = "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	cases := []struct {
		name string
		cfg  Config
		data string
		want string
	}{
		{
			name: "plain",
			data: wsHead(),
			want: fixed + "\r\n",
		},
		{
			name: "subprotocol",
			cfg:  Config{Subprotocols: []string{"chat.v2", "chat.v1"}},
			data: wsHead("Sec-WebSocket-Protocol: chat.v1, chat.v2"),
			want: fixed + "Sec-WebSocket-Protocol: chat.v2\r\n\r\n",
		},
		{
			name: "no common subprotocol",
			cfg:  Config{Subprotocols: []string{"chat.v2"}},
			data: wsHead("Sec-WebSocket-Protocol: mqtt"),
			want: fixed + "\r\n",
		},
		{
			name: "compression",
			cfg:  Config{Compression: true},
			data: wsHead("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"),
			want: fixed + answer + "\r\n\r\n",
		},
		{
			// An accepted server_max_window_bits is repeated (RFC 7692
			// 7.1.2.1), a smaller window too; an invalid one declines its
			// offer.
			name: "compression with window bits",
			cfg:  Config{Compression: true},
			data: wsHead("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16, permessage-deflate; server_max_window_bits=10"),
			want: fixed + answer + "; server_max_window_bits=10\r\n\r\n",
		},
		{
			name: "compression declined",
			cfg:  Config{Compression: true},
			data: wsHead("Sec-WebSocket-Extensions: x-webkit-deflate-frame"),
			want: fixed + "\r\n",
		},
		{
			name: "both",
			cfg:  Config{Subprotocols: []string{"chat"}, Compression: true},
			data: wsHead("Sec-WebSocket-Protocol: chat", "Sec-WebSocket-Extensions: permessage-deflate"),
			want: fixed + "Sec-WebSocket-Protocol: chat\r\n" + answer + "\r\n\r\n",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := stepWhole(newTest(t, tc.cfg), tc.data)
			defer release(res)
			if res.Kind != Upgraded {
				t.Fatalf(
					"got %v %d: %v",
					res.Kind, res.Status, res.Err)
			}
			if got := string(res.Response.B); got != tc.want {
				t.Fatalf(
					"101 is\n%q\nwant\n%q",
					got, tc.want)
			}
			checkReply(t, res)
		})
	}
}
