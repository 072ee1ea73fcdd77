package upgrade

import (
	"errors"
	"testing"
)

func TestOriginPolicy(t *testing.T) {
	cases := []struct {
		name     string
		patterns []string
		check    func(*Request) bool
		origins  []string // Origin header lines
		ok       bool
		asked    bool // CheckOrigin must have been called
	}{
		{
			name: "no Origin",
			ok:   true,
		},
		{
			name:    "same host",
			origins: []string{"https://example.com"},
			ok:      true,
		},
		{
			name:    "same host, other case",
			origins: []string{"HTTPS://Example.COM"},
			ok:      true,
		},
		{
			name:    "same host, other port",
			origins: []string{"https://example.com:8443"},
		},
		{
			name:    "other host",
			origins: []string{"https://evil.com"},
		},
		{
			name:    "suffix trick",
			origins: []string{"https://example.com.evil.com"},
		},
		{
			name:     "host pattern",
			patterns: []string{"*.example.org"},
			origins:  []string{"https://app.EXAMPLE.org"},
			ok:       true,
		},
		{
			name:     "host pattern misses",
			patterns: []string{"*.example.org"},
			origins:  []string{"https://example.org"},
		},
		{
			name:     "port pattern",
			patterns: []string{"localhost:*"},
			origins:  []string{"http://localhost:5173"},
			ok:       true,
		},
		{
			name:     "star accepts any",
			patterns: []string{"*"},
			origins:  []string{"https://evil.com"},
			ok:       true,
		},
		{
			name:     "star accepts null",
			patterns: []string{"*"},
			origins:  []string{"null"},
			ok:       true,
		},
		{
			name:     "scheme pattern",
			patterns: []string{"https://*.example.org"},
			origins:  []string{"https://a.example.org"},
			ok:       true,
		},
		{
			name:     "scheme pattern, other scheme",
			patterns: []string{"https://*.example.org"},
			origins:  []string{"http://a.example.org"},
		},
		{
			name:    "null",
			origins: []string{"null"},
		},
		{
			name:     "null by pattern",
			patterns: []string{"null"},
			origins:  []string{"null"},
			ok:       true,
		},
		{
			name:     "host pattern does not match null",
			patterns: []string{"*.example.org"},
			origins:  []string{"null"},
		},
		{
			name:    "unparsable",
			origins: []string{"http://[::1"},
		},
		{
			name:    "two Origins",
			origins: []string{"https://example.com", "https://evil.com"},
		},
		{
			name:    "CheckOrigin widens",
			check:   func(r *Request) bool { return r.Origin() == "https://partner.net" },
			origins: []string{"https://partner.net"},
			ok:      true,
			asked:   true,
		},
		{
			name:    "CheckOrigin refuses",
			check:   func(r *Request) bool { return false },
			origins: []string{"https://evil.com"},
			asked:   true,
		},
		{
			name:    "CheckOrigin may accept null",
			check:   func(r *Request) bool { return r.Origin() == "null" },
			origins: []string{"null"},
			ok:      true,
			asked:   true,
		},
		{
			name:    "CheckOrigin is not asked for the same host",
			check:   func(r *Request) bool { panic("asked") },
			origins: []string{"https://example.com"},
			ok:      true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			asked := false
			cfg := Config{OriginPatterns: tc.patterns}
			if tc.check != nil {
				cfg.CheckOrigin = func(r *Request) bool {
					asked = true
					return tc.check(r)
				}
			}
			u := newTest(t, cfg)
			var extra []string
			for _, o := range tc.origins {
				extra = append(extra, "Origin: "+o)
			}
			res := stepWhole(u, wsHead(extra...))
			defer release(res)
			checkReply(t, res)
			if tc.ok && res.Kind != Upgraded {
				t.Fatalf(
					"refused: %v",
					res.Err)
			}
			if !tc.ok && (res.Status != 403 || !errors.Is(res.Err, ErrOriginNotAllowed)) {
				t.Fatalf(
					"got %v %d %v, want 403",
					res.Kind, res.Status, res.Err)
			}
			if asked != tc.asked {
				t.Fatalf(
					"CheckOrigin asked: %v",
					asked)
			}
		})
	}
}
