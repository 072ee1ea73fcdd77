package proxyproto

import "testing"

// FuzzProxyHeader checks that Parse never panics, never claims more bytes
// than it was given or more than the format allows, and decides the same
// whatever the split: every prefix of a header is "need more", and bytes
// after a header or an error change nothing.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.2 8080 80\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::1 2001:db8::2 4711 443\r\nGET / HTTP/1.1\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(v2Header(1, 0x11, []byte{192, 0, 2, 1, 198, 51, 100, 2, 0x1f, 0x90, 0, 80}))
	f.Add(v2Header(1, 0x21, make([]byte, 40)))
	f.Add(v2Header(0, 0x00, nil))
	f.Add(v2Header(1, 0x31, make([]byte, 216)))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add([]byte("PROXY UNKNOWN x\ry"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := Parse(b)
		if n < 0 || n > len(b) || n > MaxV2 {
			t.Fatalf("n = %d for %d bytes", n, len(b))
		}
		if err != nil && n != 0 {
			t.Fatalf("error %v with n = %d", err, n)
		}
		more := append(append([]byte(nil), b...), "\r\nPROXY x"...)
		h2, n2, err2 := Parse(more)
		switch {
		case err != nil:
			if err2 == nil {
				t.Fatalf("an error (%v) undone by more bytes", err)
			}
		case n > 0:
			if err2 != nil || n2 != n || h2 != h {
				t.Fatalf("more bytes after the header changed it: %+v %d %v, then %+v %d %v", h, n, err, h2, n2, err2)
			}
			for i := range n {
				if _, m, e := Parse(b[:i]); m != 0 || e != nil {
					t.Fatalf("prefix of %d of a %d-byte header: %d %v", i, n, m, e)
				}
			}
			if h.Version == 1 && n > MaxV1 {
				t.Fatalf("v1 header of %d bytes", n)
			}
		}
	})
}
