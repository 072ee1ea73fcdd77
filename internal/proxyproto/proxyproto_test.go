package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

func v2Header(cmd, fam byte, addrs []byte) []byte {
	b := append([]byte(nil), v2Sig...)
	b = append(b, 0x20|cmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(addrs)))
	return append(b, addrs...)
}

func TestParse(t *testing.T) {
	v4 := v2Header(1, 0x11, []byte{192, 0, 2, 1, 198, 51, 100, 2, 0x1f, 0x90, 0, 80})
	v6addrs := make([]byte, 36)
	copy(v6addrs, netip.MustParseAddr("2001:db8::1").AsSlice())
	copy(v6addrs[16:], netip.MustParseAddr("2001:db8::2").AsSlice())
	binary.BigEndian.PutUint16(v6addrs[32:], 4711)
	v6 := v2Header(1, 0x21, append(v6addrs, 0x04, 0, 1, 'x')) // a TLV after the addresses
	for _, tc := range []struct {
		name string
		in   []byte
		src  string
		n    int
		err  bool
	}{
		{"v1 tcp4", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 8080 80\r\nGET /"), "192.0.2.1:8080", 43, false},
		{"v1 tcp6", []byte("PROXY TCP6 2001:db8::1 2001:db8::2 4711 443\r\n"), "[2001:db8::1]:4711", 45, false},
		{"v1 unknown", []byte("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"), "", 35, false},
		{"v2 inet", v4, "192.0.2.1:8080", 28, false},
		{"v2 inet6 with tlv", v6, "[2001:db8::1]:4711", len(v6), false},
		{"v2 local", v2Header(0, 0x00, nil), "", 16, false},
		{"v1 family mismatch", []byte("PROXY TCP4 2001:db8::1 192.0.2.2 1 2\r\n"), "", 0, true},
		{"v1 bad port", []byte("PROXY TCP4 192.0.2.1 192.0.2.2 65536 2\r\n"), "", 0, true},
		{"v1 double space", []byte("PROXY TCP4  192.0.2.1 192.0.2.2 1 2\r\n"), "", 0, true},
		{"v1 CR inside an unknown line", []byte("PROXY UNKNOWN x\ry\r\n"), "", 0, true},
		{"v1 bare LF", []byte("PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n"), "", 0, true},
		{"v1 too long", append([]byte("PROXY TCP4 "), bytes.Repeat([]byte{'1'}, 200)...), "", 0, true},
		{"http instead", []byte("GET / HTTP/1.1\r\n"), "", 0, true},
		{"v2 version 1", append(append([]byte(nil), v2Sig...), 0x11, 0x11, 0, 0), "", 0, true},
		{"v2 short addresses", v2Header(1, 0x11, []byte{1, 2, 3}), "", 0, true},
		{"v2 over the limit", append(append([]byte(nil), v2Sig...), 0x21, 0x11, 0xff, 0xff), "", 0, true},
	} {
		h, n, err := Parse(tc.in)
		if tc.err {
			if err == nil || !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: (%+v, %d, %v), want an ErrMalformed", tc.name, h, n, err)
			}
			continue
		}
		if err != nil || n != tc.n {
			t.Errorf("%s: n %d err %v, want n %d", tc.name, n, err, tc.n)
			continue
		}
		if got := h.Source.String(); tc.src != "" && got != tc.src || tc.src == "" && !h.Local {
			t.Errorf("%s: source %s local %v, want %q", tc.name, got, h.Local, tc.src)
		}
		for i := range n {
			if _, m, err := Parse(tc.in[:i]); m != 0 || err != nil {
				t.Errorf("%s: a prefix of %d bytes gave (%d, %v), want need-more", tc.name, i, m, err)
				break
			}
		}
	}
}

func TestClientAddr(t *testing.T) {
	trusted := func(a netip.Addr) bool { return netip.MustParsePrefix("10.0.0.0/8").Contains(a) }
	for _, tc := range []struct {
		name      string
		fwd, xff  []string
		want      string
		wantFound bool
	}{
		{"xff rightmost untrusted", nil, []string{"6.6.6.6, 192.0.2.1, 10.0.0.2"}, "192.0.2.1", true},
		{"xff lines in order", nil, []string{"6.6.6.6", "192.0.2.1", "10.0.0.2, 10.0.0.3"}, "192.0.2.1", true},
		{"xff all trusted", nil, []string{"10.0.0.1, 10.0.0.2"}, "", false},
		{"xff garbage before untrusted", nil, []string{"192.0.2.1, junk, 10.0.0.2"}, "", false},
		{"xff v6 with port", nil, []string{"[2001:db8::1]:4711"}, "2001:db8::1", true},
		{"forwarded wins", []string{`for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711"`}, []string{"6.6.6.6"}, "2001:db8:cafe::17", true},
		{"forwarded trusted hop", []string{"for=192.0.2.60, for=10.1.2.3;by=10.0.0.1"}, nil, "192.0.2.60", true},
		{"forwarded unknown", []string{"for=192.0.2.60, for=unknown"}, nil, "", false},
		{"forwarded quoted comma", []string{`for="192.0.2.1";x="a,b"`}, nil, "192.0.2.1", true},
		{"none", nil, nil, "", false},
	} {
		a, ok := ClientAddr(tc.fwd, tc.xff, trusted)
		if ok != tc.wantFound || ok && a.String() != tc.want {
			t.Errorf("%s: (%v, %v), want (%s, %v)", tc.name, a, ok, tc.want, tc.wantFound)
		}
	}
}
