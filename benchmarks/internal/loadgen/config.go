// Package loadgen is the harness's WebSocket load generator: a few epoll
// event loops (no goroutine per connection) that open many client
// connections from several source addresses, drive a scenario over them and
// measure it in exact, mergeable HDR histograms.
package loadgen

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Scenarios.
const (
	Hold   = "hold"   // connect, then stay idle
	Echo   = "echo"   // closed-loop echo with a fixed number of messages in flight
	Ticker = "ticker" // receive the server's fan-out
	Churn  = "churn"  // ticker subscribers plus connect/upgrade/close cycles
)

// Config is one loadgen run.
type Config struct {
	Scenario string
	Addr     string // server host:port (IPv4)
	Path     string // request target of the held connections, with its query
	Conns    int    // held connections over all shards
	Shard    int
	Shards   int
	Src      []netip.Addr // source addresses, used round robin (none: the kernel picks)
	Loops    int

	ConnectRate float64 // new connections per second in this process (0: as fast as MaxPending allows)
	MaxPending  int     // connections in connect or handshake at once, per process
	Retries     int     // attempts per held connection before giving up

	Size     int // echo payload bytes (at least 8)
	Inflight int // echo messages in flight per connection

	// Deflate offers permessage-deflate on the scenario's connections (as
	// browsers do) and fails the run if the server declines. Compressed
	// messages are inflated and checked like plain ones; echo messages are
	// sent compressed, each on its own, and their payload is an order book
	// (herald's examples/ticker/book) after the 8-byte timestamp instead
	// of a repeated alphabet, so that they compress like real data.
	Deflate bool

	// TLS, when set, makes every connection wss://: the handshake as this
	// config says (ServerName or InsecureSkipVerify, RootCAs), its
	// ClientSessionCache shared by all of them so that reconnects resume
	// (see tls.go). The hostile kinds do not speak TLS.
	TLS *tls.Config

	ChurnConc int    // churning connections over all shards
	ChurnPath string // request target of the churning connections

	// Hostile adds connections of the hostile and slow client kinds
	// beside the scenario's. They connect with the held connections and
	// are not measured for latency; Result.Kinds counts what they did.
	Hostile Hostile
	// Interval, when positive (and Event is set), reports the window in
	// intervals of this length: an "interval" event with the latency of
	// the messages the held connections received in it and the hostile
	// kinds' counters so far.
	Interval time.Duration

	Duration time.Duration // measured window
	Warmup   time.Duration // traffic before the window when no start time is given
	// StartAt, when set, is called once every connection is up and returns
	// the shared window start.
	StartAt func() (time.Time, error)
	// WindowDone, when set, ends the measured window early once closed:
	// a test ends it when its server has seen the client take everything,
	// instead of betting that a fixed Duration is long enough.
	WindowDone <-chan struct{}
	// ConnectTimeout bounds the connect phase.
	ConnectTimeout time.Duration
	// Event, when set, receives progress events (one JSON object each):
	// "connecting", "connected", "dropped" (held connections lost while
	// waiting for StartAt, with the first errors; from another goroutine,
	// while StartAt runs), "window", "interval".
	Event func(map[string]any)
}

func (c *Config) setDefaults() {
	if c.Path == "" {
		c.Path = "/"
	}
	if c.Shards <= 0 {
		c.Shards = 1
	}
	if c.Loops <= 0 {
		c.Loops = 1
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 512
	}
	if c.Retries <= 0 {
		c.Retries = 3
	}
	if c.Size < 8 {
		c.Size = 8
	}
	if c.Inflight <= 0 {
		c.Inflight = 1
	}
	if c.ChurnPath == "" {
		c.ChurnPath = c.Path
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 120 * time.Second
	}
	c.Hostile.setDefaults(c.Path)
}

func (c *Config) validate() error {
	switch c.Scenario {
	case Hold, Echo, Ticker, Churn:
	default:
		return fmt.Errorf("unknown scenario %q (hold, echo, ticker, churn)", c.Scenario)
	}
	if c.Shard < 0 || c.Shard >= c.Shards {
		return fmt.Errorf("shard %d out of range [0,%d)", c.Shard, c.Shards)
	}
	if c.Conns < 0 || c.ChurnConc < 0 {
		return errors.New("negative connection count")
	}
	if c.Scenario == Churn && c.ChurnConc == 0 {
		return errors.New("churn needs -churn-conc > 0")
	}
	if c.Duration <= 0 {
		return errors.New("duration must be positive")
	}
	if c.TLS != nil && c.Hostile.total() > 0 {
		return errors.New("the hostile client kinds do not speak TLS")
	}
	return c.Hostile.validate()
}

// shardRange is the part [lo, hi) of n that shard i of k owns.
func shardRange(n, i, k int) (lo, hi int) {
	return n * i / k, n * (i + 1) / k
}

// ParseAddrs parses source addresses: a comma-separated list of IPv4
// addresses and ranges "127.0.0.2-127.0.0.9" (or "127.0.0.2-9").
func ParseAddrs(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		from, to, isRange := strings.Cut(part, "-")
		a, err := netip.ParseAddr(from)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("source address %q: want IPv4", from)
		}
		if !isRange {
			out = append(out, a)
			continue
		}
		var b netip.Addr
		if n, err := strconv.Atoi(to); err == nil {
			a4 := a.As4()
			if n < int(a4[3]) || n > 255 {
				return nil, fmt.Errorf("source range %q: bad end", part)
			}
			a4[3] = byte(n)
			b = netip.AddrFrom4(a4)
		} else if b, err = netip.ParseAddr(to); err != nil || !b.Is4() || b.Less(a) {
			return nil, fmt.Errorf("source range %q: bad end", part)
		}
		for x := a; ; x = x.Next() {
			out = append(out, x)
			if len(out) > 1<<16 {
				return nil, fmt.Errorf("source range %q too large", part)
			}
			if x == b {
				break
			}
		}
	}
	return out, nil
}
