// Package proxyproto parses the PROXY protocol header (HAProxy's, versions
// 1 and 2) that a load balancer sends at the start of a connection to
// give the client's address, and the X-Forwarded-For and Forwarded
// (RFC 7239) headers that HTTP proxies add. It decides nothing about
// trust: the caller accepts either only from its trusted proxies.
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

// Header is a parsed PROXY header.
type Header struct {
	Version int // 1 or 2
	// Local is set for a v2 LOCAL command (the balancer's own connection,
	// a health check) and a v1 "UNKNOWN" one: the connection's own peer
	// address stands.
	Local bool
	// Source and Destination are the client's and the address it
	// connected to; invalid when Local or when v2 carried no IP address
	// (AF_UNSPEC, AF_UNIX).
	Source, Destination netip.AddrPort
}

// Limits of the format.
const (
	// MaxV1 is the longest v1 header, CRLF included (the specification's
	// 107 bytes).
	MaxV1 = 107
	// MaxV2 is the longest v2 header accepted: 16 bytes and up to 2032 of
	// addresses and TLVs. The format allows 64 KiB; balancers send a few
	// hundred bytes at most, and a connection that has not sent its
	// header holds what it sent in the server's buffer.
	MaxV2 = 2048
)

var (
	v1Prefix = []byte("PROXY ")
	// v2Sig is the 12-byte signature that starts a v2 header.
	v2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// ErrMalformed is wrapped by every parse error.
var ErrMalformed = errors.New("malformed PROXY protocol header")

type parseError struct{ detail string }

func (e *parseError) Error() string { return ErrMalformed.Error() + ": " + e.detail }
func (e *parseError) Unwrap() error { return ErrMalformed }

func fail(detail string) (Header, int, error) { return Header{}, 0, &parseError{detail} }

// Parse reads a PROXY header at the start of b. It returns the header and
// its length n; n == 0 with a nil error means b is an incomplete header
// (call again with more bytes). An error means b does not start with a
// valid header, decided from the bytes seen, so more bytes never undo it.
// Bytes after the header are not looked at.
func Parse(b []byte) (Header, int, error) {
	if len(b) == 0 {
		return Header{}, 0, nil
	}
	switch b[0] {
	case 'P':
		return parseV1(b)
	case '\r':
		return parseV2(b)
	}
	return fail("no PROXY header")
}

func parseV1(b []byte) (Header, int, error) {
	n := min(len(b), len(v1Prefix))
	if !bytes.Equal(b[:n], v1Prefix[:n]) {
		return fail("v1: no \"PROXY \"")
	}
	end := bytes.IndexByte(b[:min(len(b), MaxV1)], '\n')
	if end < 0 {
		if len(b) >= MaxV1 {
			return fail("v1: no end of line within 107 bytes")
		}
		if i := bytes.IndexByte(b, '\r'); i >= 0 && i+1 < len(b) {
			return fail("v1: CR without LF")
		}
		return Header{}, 0, nil
	}
	if end == 0 || b[end-1] != '\r' {
		return fail("v1: line does not end with CRLF")
	}
	line := string(b[len(v1Prefix) : end-1])
	// A CR inside the line is refused even after UNKNOWN, whose rest is
	// otherwise ignored: the same bytes seen before their LF arrived were
	// already refused, and more bytes must never undo an error.
	if strings.IndexByte(line, '\r') >= 0 {
		return fail("v1: CR without LF")
	}
	fields := splitSpaces(line)
	h := Header{Version: 1}
	if len(fields) > 0 && fields[0] == "UNKNOWN" {
		h.Local = true
		return h, end + 1, nil
	}
	if len(fields) != 5 {
		return fail("v1: want TCP4|TCP6 src dst sport dport")
	}
	var want4 bool
	switch fields[0] {
	case "TCP4":
		want4 = true
	case "TCP6":
	default:
		return fail("v1: unknown protocol " + strconv.Quote(fields[0]))
	}
	src, err1 := netip.ParseAddr(fields[1])
	dst, err2 := netip.ParseAddr(fields[2])
	if err1 != nil || err2 != nil || src.Zone() != "" || dst.Zone() != "" {
		return fail("v1: bad address")
	}
	if src.Is4() != want4 || dst.Is4() != want4 {
		return fail("v1: address family does not match " + fields[0])
	}
	sp, ok1 := parsePort(fields[3])
	dp, ok2 := parsePort(fields[4])
	if !ok1 || !ok2 {
		return fail("v1: bad port")
	}
	h.Source = netip.AddrPortFrom(src, sp)
	h.Destination = netip.AddrPortFrom(dst, dp)
	return h, end + 1, nil
}

// splitSpaces splits on single spaces; an empty field (two spaces) is kept
// as "" so that it fails the checks.
func splitSpaces(s string) []string {
	var out []string
	for {
		i := bytes.IndexByte([]byte(s), ' ')
		if i < 0 {
			return append(out, s)
		}
		out = append(out, s[:i])
		s = s[i+1:]
		if len(out) > 6 {
			return out
		}
	}
}

func parsePort(s string) (uint16, bool) {
	if s == "" || len(s) > 5 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	if n > 65535 {
		return 0, false
	}
	return uint16(n), true
}

func parseV2(b []byte) (Header, int, error) {
	n := min(len(b), len(v2Sig))
	if !bytes.Equal(b[:n], v2Sig[:n]) {
		return fail("v2: bad signature")
	}
	if len(b) > 12 && b[12]>>4 != 2 {
		return fail("v2: version " + strconv.Itoa(int(b[12]>>4)))
	}
	if len(b) > 12 && b[12]&0xf > 1 {
		return fail("v2: unknown command " + strconv.Itoa(int(b[12]&0xf)))
	}
	if len(b) > 13 && (b[13]>>4 > 3 || b[13]&0xf > 2) {
		return fail("v2: unknown family or transport")
	}
	if len(b) < 16 {
		return Header{}, 0, nil
	}
	size := 16 + int(binary.BigEndian.Uint16(b[14:16]))
	if size > MaxV2 {
		return fail("v2: header of " + strconv.Itoa(size) + " bytes, over " + strconv.Itoa(MaxV2))
	}
	fam := b[13] >> 4
	need := 16
	switch fam {
	case 1:
		need += 12
	case 2:
		need += 36
	case 3:
		need += 216
	}
	if size < need {
		return fail("v2: addresses longer than the header")
	}
	if len(b) < size {
		return Header{}, 0, nil
	}
	h := Header{Version: 2}
	if b[12]&0xf == 0 {
		h.Local = true
		return h, size, nil
	}
	a := b[16:size]
	switch fam {
	case 1:
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:10]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[4:8])), binary.BigEndian.Uint16(a[10:12]))
	case 2:
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[0:16])), binary.BigEndian.Uint16(a[32:34]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[16:32])), binary.BigEndian.Uint16(a[34:36]))
	}
	return h, size, nil
}
