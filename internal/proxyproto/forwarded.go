package proxyproto

import (
	"net/netip"
	"strings"
)

// ClientAddr finds the client's address in a request's Forwarded (RFC
// 7239) lines, or, without them, its X-Forwarded-For lines: the rightmost
// address that trusted does not accept. Every proxy appends the address it
// got the request from, so the entries right of that one were written by
// trusted proxies and it is the last one a trusted proxy vouches for;
// anything to its left came from the client and may be forged.
//
// ok is false when there is no such address: no entries, all of them
// trusted, or an entry that is not an IP address (RFC 7239's "unknown" and
// obfuscated identifiers included) met before an untrusted one. The caller
// then keeps the peer's address.
func ClientAddr(forwarded, xff []string, trusted func(netip.Addr) bool) (addr netip.Addr, ok bool) {
	var entries []string
	if len(forwarded) > 0 {
		for _, line := range forwarded {
			for _, el := range splitQuoted(line, ',') {
				entries = append(entries, forwardedFor(el))
			}
		}
	} else {
		for _, line := range xff {
			for _, el := range strings.Split(line, ",") {
				entries = append(entries, strings.TrimSpace(el))
			}
		}
	}
	for i := len(entries) - 1; i >= 0; i-- {
		a, good := parseNode(entries[i])
		if !good {
			return netip.Addr{}, false
		}
		if !trusted(a) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// forwardedFor returns the for= value of one Forwarded element, unquoted,
// or "" if it has none.
func forwardedFor(el string) string {
	for _, pair := range splitQuoted(el, ';') {
		k, v, found := strings.Cut(strings.TrimSpace(pair), "=")
		if !found || !strings.EqualFold(k, "for") {
			continue
		}
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = strings.ReplaceAll(v[1:len(v)-1], `\`, "")
		}
		return v
	}
	return ""
}

// splitQuoted splits s on sep outside double quotes.
func splitQuoted(s string, sep byte) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == sep && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// parseNode reads an address as the headers write it: "192.0.2.1",
// "192.0.2.1:4711", "2001:db8::1", "[2001:db8::1]" or "[2001:db8::1]:4711".
func parseNode(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Zone() == "" {
		return ap.Addr().Unmap(), true
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil && a.Is6() && a.Zone() == "" {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}
