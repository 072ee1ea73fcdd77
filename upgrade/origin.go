package upgrade

import (
	"fmt"
	"net/url"
	"path"
	"strings"
)

// originPattern is a compiled Config.OriginPatterns entry.
type originPattern struct {
	glob   string // lower-cased
	scheme bool   // the glob holds "://": match it against scheme://host
}

func compileOriginPatterns(ps []string) (pats []originPattern, any bool, err error) {
	for _, p := range ps {
		g := strings.ToLower(p)
		if _, err := path.Match(g, ""); err != nil {
			return nil, false, fmt.Errorf("upgrade: bad origin pattern %q: %w", p, err)
		}
		if g == "*" {
			any = true
		}
		pats = append(pats, originPattern{glob: g, scheme: strings.Contains(g, "://")})
	}
	return pats, any, nil
}

// The Origin policy (see the package documentation): originByRule applies
// the rules, and askCheckOrigin asks Config.CheckOrigin about what they did
// not accept, returning a description of the origin for Error.Detail when
// the request may not proceed.

// askCheckOrigin asks Config.CheckOrigin about a request whose Origin the
// rules did not accept.
func (u *Upgrader) askCheckOrigin(r *Request) (ok bool, detail string, err error) {
	if check := u.cfg.CheckOrigin; check != nil {
		ok, err := callCheckOrigin(check, r.share())
		if err != nil || ok {
			return ok, "", err
		}
	}
	return false, originDetail(r), nil
}

// originDetail describes a refused request's Origin for Error.Detail.
func originDetail(r *Request) string {
	vals := r.Header["Origin"]
	if len(vals) > 1 {
		return fmt.Sprintf("%d Origin headers", len(vals))
	}
	return fmt.Sprintf("origin %q, host %q", vals[0], r.Host)
}

// originByRule reports whether the Origin policy accepts r without asking
// CheckOrigin: no Origin, the same host, or a matching pattern.
func (u *Upgrader) originByRule(r *Request) bool {
	vals := r.Header["Origin"]
	if len(vals) == 0 || u.anyOrigin {
		return true
	}
	origin := vals[0]
	var host, scheme string
	if len(vals) == 1 {
		host, scheme = splitOrigin(origin)
	}
	if host != "" && strings.EqualFold(host, r.Host) {
		return true
	}
	if len(vals) == 1 {
		var hostTarget, schemeTarget string
		for _, p := range u.origins {
			var target string
			switch {
			case host == "":
				// "null", or no host to speak of: only a pattern naming the
				// whole origin ("null") or "*" can match.
				if hostTarget == "" {
					hostTarget = strings.ToLower(origin)
				}
				target = hostTarget
			case p.scheme:
				if schemeTarget == "" {
					schemeTarget = strings.ToLower(scheme + "://" + host)
				}
				target = schemeTarget
			default:
				if hostTarget == "" {
					hostTarget = strings.ToLower(host)
				}
				target = hostTarget
			}
			if m, _ := path.Match(p.glob, target); m {
				return true
			}
		}
	}
	return false
}

// callCheckOrigin runs the hook, turning a panic into a *PanicError.
func callCheckOrigin(f func(*Request) bool, r *Request) (ok bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			ok, err = false, recovered(hookCheckOrigin, p)
		}
	}()
	return f(r), nil
}

// splitOrigin returns the host and scheme of an Origin, or "" for an Origin
// without a host ("null") or one that does not parse. Browsers send
// "scheme://host[:port]", which is split by hand (url.Parse allocates);
// anything else goes through url.Parse.
func splitOrigin(origin string) (host, scheme string) {
	if i := strings.Index(origin, "://"); i > 0 {
		scheme, host = origin[:i], origin[i+3:]
		simple := host != ""
		for j := 0; j < len(scheme) && simple; j++ {
			c := scheme[j]
			simple = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || j > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')
		}
		for j := 0; j < len(host) && simple; j++ {
			c := host[j]
			simple = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == ':'
		}
		if simple {
			return host, strings.ToLower(scheme)
		}
	}
	o, err := url.Parse(origin)
	if err != nil || o.Host == "" {
		return "", ""
	}
	return o.Host, o.Scheme
}
