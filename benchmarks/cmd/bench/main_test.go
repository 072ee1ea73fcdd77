package main

import (
	"strings"
	"testing"
)

func TestPickScenarios(t *testing.T) {
	for _, tc := range []struct {
		list, want string
		compressed bool
		err        bool
	}{
		{list: "", want: "hold echo ticker-1 ticker-20 churn"},
		{list: "deflate", want: "hold-z echo-z ticker-1z ticker-20z", compressed: true},
		{list: "echo-z,ticker-20z", want: "echo-z ticker-20z", compressed: true},
		{list: "echo,ticker-1z", want: "echo ticker-1z"},
		{list: "churn-z", err: true},
		{list: "tls", want: "hold-tls echo-tls ticker-1-tls ticker-20-tls"},
		{list: "hold-tls,echo", want: "hold-tls echo"},
		{list: "churn-tls", err: true},
	} {
		scs, err := pickScenarios(true, tc.list)
		if (err != nil) != tc.err {
			t.Errorf("%q: %v", tc.list, err)
			continue
		}
		var names []string
		for _, s := range scs {
			names = append(names, s.Name)
		}
		if got := strings.Join(names, " "); got != tc.want || allCompressed(scs) != tc.compressed {
			t.Errorf("%q: %q (all compressed: %v), want %q (%v)", tc.list, got, allCompressed(scs), tc.want, tc.compressed)
		}
	}
}
