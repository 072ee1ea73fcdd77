package engine

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"time"

	"github.com/heraldws/herald/codec"
	"github.com/heraldws/herald/upgrade"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultMaxHeaderBytes   = 8 << 10
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultMaxMessageBytes  = codec.DefaultMaxMessageBytes
	DefaultMaxOutboundBytes = 4 << 20
	DefaultMaxOutboundTotal = 256 << 20
	DefaultPingInterval     = 30 * time.Second
	DefaultPongTimeout      = 15 * time.Second
	DefaultCloseTimeout     = 3 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultShutdownTimeout  = 5 * time.Second
	DefaultWorkerQueue      = 1024
	DefaultHandshakeQueue   = 1024
	DefaultReturnMemory     = 8 << 20
	// DefaultCompressionMinSize is Compression.MinSize when it is left
	// zero: below about 512 bytes, a message compressed on its own saves
	// too little to pay for compressing and inflating it (see the README).
	DefaultCompressionMinSize = 512
)

// Compression configures permessage-deflate (RFC 7692). Herald negotiates
// it only without context takeover on either side: every message is
// compressed, and inflated, on its own, so no connection keeps a
// compressor, a decompressor or a sliding window (an idle connection costs
// the same with compression as without), and a broadcast is compressed
// once for all its subscribers. Compressors and decompressors come from
// pools for the time one message takes. The zero value is off; the README
// says why that is the default.
type Compression struct {
	// Enabled accepts a client's permessage-deflate offer when it can be
	// met without context takeover (every valid offer can: browsers',
	// Node's ws, gorilla's and coder/websocket's; one that limits the
	// server's window below 32 KiB gets its messages compressed with
	// Huffman codes only, and broadcasts uncompressed). The client's
	// compressed messages are then inflated for OnMessage, bounded by
	// MaxMessageBytes as they inflate.
	Enabled bool
	// MinSize is the smallest message that Conn.Send and the broadcast hub
	// compress for a connection that negotiated the extension; smaller
	// ones go out as they are. A message that does not get smaller is sent
	// uncompressed whatever its size. Default DefaultCompressionMinSize
	// (512 bytes); 1 compresses everything.
	MinSize int
}

// Config configures a Server. The zero value of every field is replaced by a
// sensible default, so Config{Addr: ":8080"} is a complete configuration.
type Config struct {
	// Addr is the TCP address to listen on, "host:port". Port 0 picks a free
	// port; Server.Addr reports it. Empty means no listener of its own: the
	// server takes connections only through ServeHTTP, mounted on a
	// net/http router (see Server.ServeHTTP).
	Addr string

	// Loops is the number of event loops. Default: GOMAXPROCS, which
	// follows the CPUs the process may use (a container's quota included).
	Loops int

	// ReusePort sets SO_REUSEPORT so that several processes can share Addr.
	ReusePort bool

	// TLS, when set, makes every connection to Addr a TLS connection
	// (wss://): TLS 1.2 or 1.3 (a lower MinVersion is raised to 1.2), ALPN
	// "http/1.1" unless NextProtos names protocols, and whatever the config
	// asks for: certificates, GetCertificate or GetConfigForClient (SNI;
	// they are called at every handshake, so a certificate can be replaced
	// without a restart), session tickets, client certificates (ClientAuth;
	// the client's certificates are on Request.TLS for Authorize and on
	// Conn.TLS). The config is cloned at New: later changes to it are not
	// seen (use GetCertificate or GetConfigForClient for that).
	//
	// The handshake runs on a goroutine that lives for the handshake only,
	// bounded by MaxTLSHandshakes and computing on at most half the loops'
	// CPUs, so that a flood of handshakes leaves the rest to open
	// connections; the records of an open connection are encrypted and
	// decrypted on its loop. A plain HTTP request sent to the port gets
	// net/http's 400 ("Client sent an HTTP request to an HTTPS server.").
	// HandshakeTimeout covers the TLS handshake. Connections handed over by ServeHTTP are not affected:
	// their TLS, if any, is the http.Server's.
	TLS *tls.Config

	// MaxTLSHandshakes bounds the TLS handshakes in flight; a connection
	// that would pass it is closed before its handshake starts (counted in
	// Stats.TLSRefused). Default DefaultMaxTLSHandshakes.
	MaxTLSHandshakes int

	// MaxHeaderBytes bounds the HTTP request head of the handshake; a longer
	// one is answered with 431.
	MaxHeaderBytes int

	// HandshakeTimeout is how long a connection may take to send a complete
	// request head before it is closed, measured from accept. With
	// HandshakeWorkers it also bounds the wait for CheckOrigin and
	// Authorize: the request's Context ends then, and the client gets 503.
	HandshakeTimeout time.Duration

	// MaxMessageBytes bounds a message, summed over its fragments; a larger
	// one closes the connection with 1009. MaxFrameBytes bounds one frame
	// (default: MaxMessageBytes).
	MaxMessageBytes int64
	MaxFrameBytes   int64

	// MaxOutboundBytes bounds the bytes queued for a connection that the
	// peer has not read yet. A send that would pass it closes the connection
	// with 1008. A single message larger than the bound is still sent when
	// nothing else is queued.
	MaxOutboundBytes int

	// MaxOutboundTotal bounds the sum of all connections' backlogs, so that
	// memory is a budget the operator sets, not the number of slow clients
	// times MaxOutboundBytes. It is divided evenly among the loops. While a
	// loop's share is used up, a Send that would leave a backlog closes its
	// connection with 1008 instead of buffering, and the broadcast hub
	// treats every subscriber with a backlog as slow (the topic's policy
	// applies: conflate, drop or close). A subscriber that had no backlog
	// may still start one with one batch, so the total can pass the budget
	// by one batch per such subscriber. Default 256 MiB, or MaxOutboundBytes
	// times Loops if that is more; it must be at least MaxOutboundBytes.
	MaxOutboundTotal int64

	// ReturnMemoryAfter makes memory go back to the OS after a burst: when
	// what the server holds for connections (their backlogs, plus about
	// 1 KiB per open connection) has fallen by at least this many bytes
	// from its peak, and to half of it or less, the server collects garbage
	// twice and returns the free pages (debug.FreeOSMemory), on a goroutine
	// of its own and at most once every 10 s. The same happens once a ramp
	// of connections that stay has ended, when their arrivals (counted at
	// about 1 KiB of handshake and growth garbage each) add up to this many
	// bytes since the last return. Without it the Go runtime keeps a
	// burst's peak for minutes on an idle server, and a ramp's garbage for
	// good. Steady traffic never triggers it. Default 8 MiB; a negative
	// value disables it.
	ReturnMemoryAfter int64

	// SocketSendBuffer sets SO_SNDBUF, the kernel's send buffer, of every
	// connection. Zero keeps the kernel's autotuning, which lets one peer
	// that does not read hold up to net.ipv4.tcp_wmem's maximum (4 MiB by
	// default) of kernel memory before anything is left to the engine —
	// and only then do MaxOutboundBytes, MaxOutboundTotal and WriteTimeout
	// see it. A broadcast server whose clients each get little bandwidth
	// should set it (tens of KiB: the kernel doubles it): kernel memory per
	// connection is then bounded, and a stalled peer is found in seconds.
	// It also bounds a peer's throughput to about twice this per round
	// trip.
	SocketSendBuffer int

	// PingInterval is how long a connection may stay silent before the
	// server pings it; PongTimeout is how long it then has to send anything
	// (a pong, usually) before it is considered dead and closed; bytes that
	// arrived and wait for a busy loop to read them count as sent. A
	// negative PingInterval disables keepalive.
	PingInterval time.Duration
	PongTimeout  time.Duration

	// IdleTimeout closes (1001) a connection that has neither sent nor been
	// sent a data message for this long, whatever sent it (a handler's
	// Send, the broadcast hub). Zero disables it. Pings and pongs do not
	// count as activity.
	IdleTimeout time.Duration

	// WriteTimeout closes (1008) a connection whose outbound backlog — what
	// the server wrote that the peer has not read — has neither drained nor
	// shrunk for this long: a peer that does not read is gone, whatever it
	// sends (its pongs do not keep it alive). A negative value disables it.
	// Default 10 s.
	WriteTimeout time.Duration

	// CloseTimeout is how long the server waits for the peer's close frame
	// after sending its own, before dropping the connection.
	CloseTimeout time.Duration

	// ShutdownTimeout bounds the graceful part of Run's shutdown.
	ShutdownTimeout time.Duration

	// OriginPatterns widens the default same-origin policy: a browser
	// request whose Origin host matches one of these globs (path.Match
	// syntax, case-insensitive; "*" matches any origin) is accepted.
	OriginPatterns []string

	// CheckOrigin, if set, is asked about origins that neither the
	// same-origin rule nor OriginPatterns accept. It runs on the event loop
	// unless HandshakeWorkers is set.
	CheckOrigin func(r *upgrade.Request) bool

	// Authorize, if set, runs for every otherwise valid upgrade. The session
	// it returns stays on the connection (Conn.Session). An error refuses the
	// upgrade: with the status of an *upgrade.RejectError, or 403. It runs
	// on the event loop, where it must not block, unless HandshakeWorkers is
	// set.
	Authorize func(r *upgrade.Request) (session any, err error)

	// HandshakeWorkers > 0 runs CheckOrigin and Authorize on a pool of that
	// many goroutines, shared by all connections, so that they may block
	// (a user database, an identity provider). Meanwhile the connection
	// waits on its loop with no goroutine of its own; the hook gets a
	// context (Request.Context) that ends at HandshakeTimeout, when the
	// client goes away or when the server shuts down, and the client gets
	// 503 if it ends first (the client of a hook that ignores its context
	// is answered all the same, but the hook keeps its worker until it
	// returns: pass the context on). HandshakeQueue bounds the handshakes
	// waiting for a worker (default 1024, at most 1<<20); one more gets 503
	// with Retry-After. Zero runs the hooks on the event loop: the cheapest
	// when they only check a signed token.
	HandshakeWorkers int
	HandshakeQueue   int

	// Subprotocols lists the subprotocols the server speaks, in order of
	// preference; at most 255 (a connection keeps its subprotocol's index
	// in a byte).
	Subprotocols []string

	// HTTPHandler serves requests that are not WebSocket upgrades (a health
	// check, a static page). Without it they get 426 Upgrade Required. It
	// runs on the event loop: it must be quick and must not block. Mounted
	// on net/http (ServeHTTP), the router serves plain HTTP: it is not used.
	HTTPHandler http.Handler

	// Logger receives the server's logs, gnet's included. Default:
	// slog.Default().
	Logger *slog.Logger

	// OnPanic, if set, is called after a panic in a Handler method or a
	// handshake hook has been recovered, logged and counted, with the
	// connection it happened on (nil before the upgrade). It runs where the
	// panic happened (the event loop or a worker): it must not block, and a
	// panic inside it is recovered and logged too.
	OnPanic func(c *Conn, p *PanicError)

	// Compression is permessage-deflate: off unless Compression.Enabled.
	Compression Compression

	// Workers > 0 runs handlers on a pool of that many goroutines instead of
	// the event loop, in order per connection. Use it when handlers block.
	// WorkerQueue bounds the handler calls queued for one connection
	// (default 1024): a connection that sends faster than its handler keeps
	// up is closed with 1013.
	Workers     int
	WorkerQueue int

	// Operational limits (see limits.go and the README's "Limits and what
	// bad input gets"). Each is off at its zero value; every refusal is
	// counted in Stats.

	// MaxConns bounds the server's TCP connections, handshaking and open:
	// one accepted beyond it is answered 503 Service Unavailable with
	// Retry-After once its request head has arrived, and closed
	// (Stats.ConnLimitRejected). It keeps a server from taking on more
	// clients than its memory or its upstreams are sized for, and tells
	// the clients to come back rather than letting them time out. The
	// connections waiting for their 503 count too, for at most
	// HandshakeTimeout. Zero: no limit but the process's open files.
	MaxConns int

	// Path, if set, is the one path that upgrades ("/ws"): an upgrade to
	// another path gets 404 (Stats.PathRejected). Plain HTTP requests go
	// to HTTPHandler whatever their path. Empty: any path upgrades.
	Path string

	// MaxConnsPerIP bounds the connections, handshaking and open, of one
	// client address — an IPv4 address, or an IPv6 /64, since a host is
	// routinely given a whole /64 — so that one client cannot take the
	// server's MaxConns for itself. Beyond it: 429 Too Many Requests with
	// Retry-After (Stats.PerIPRejected). The table behind it holds an
	// entry per address with live connections, never more. Zero: no
	// limit. Behind a proxy, set ProxyProtocol or TrustForwarded, or every
	// client is the proxy.
	MaxConnsPerIP int

	// HandshakeRate bounds the handshakes per second of one client address
	// (as MaxConnsPerIP counts them) with a token bucket that holds
	// HandshakeBurst (default: HandshakeRate rounded up, at least 1).
	// A connection over it gets 429 with Retry-After, the time one token
	// takes to come in whole seconds (Stats.HandshakeRateRejected). The
	// buckets live in a table of fixed size, HandshakeRateTable buckets
	// (default 65,536, about 2.5 MiB), that a flood of spoofed addresses
	// cannot grow: a new address takes the fullest bucket of its set of 8,
	// which forgets nothing unless all 8 belong to clients over their
	// rate. No timer or goroutine: a bucket is refilled when it is next
	// looked at. Zero: no limit.
	HandshakeRate      float64
	HandshakeBurst     int
	HandshakeRateTable int

	// RetryAfter is the Retry-After of the 503 for MaxConns and the 429
	// for MaxConnsPerIP, rounded up to whole seconds. Default 5 s.
	RetryAfter time.Duration

	// ReadRate bounds what each connection may send: messages and payload
	// bytes per second. A connection over it is closed with 1008 and a
	// reason naming the limit (Stats.ReadRateClosed). Conn.SetReadRate
	// changes it for one connection, from OnOpen (a paying client gets
	// more). The zero value is no limit. A connection keeps no state for
	// it until its first message.
	ReadRate ReadRate

	// ProxyProtocol expects every connection to start with a PROXY
	// protocol header, version 1 or 2 (HAProxy's, sent by most load
	// balancers), which gives the client's address. It is accepted only
	// from peers in TrustedProxies; any other peer is closed at once, and
	// a malformed header closes the connection with a logged reason
	// (Stats.ProxyRefused). A LOCAL header (the balancer's own health
	// check) keeps the peer's address.
	ProxyProtocol bool

	// TrustForwarded takes the client's address from the X-Forwarded-For
	// or Forwarded (RFC 7239) header of a handshake, but only when the
	// peer (or the PROXY protocol's address) is in TrustedProxies: the
	// rightmost address that is not itself a trusted proxy. Anyone can
	// write these headers, so an untrusted peer's are ignored.
	TrustForwarded bool

	// TrustedProxies lists the addresses of the proxies and load balancers
	// in front of the server, for ProxyProtocol and TrustForwarded.
	//
	// The client address they give is what Conn.RemoteAddr returns, what
	// the logs name, what the per-address limits count and what the
	// handshake's Request.RemoteAddr holds.
	TrustedProxies []netip.Prefix
}

// maxHandshakeQueue is the most Config.HandshakeQueue may be: the queue is
// a channel allocated at New, 16 bytes an entry.
const maxHandshakeQueue = 1 << 20

// maxSubprotocols is the most Config.Subprotocols may list: a Conn keeps
// the index of its subprotocol in a byte.
const maxSubprotocols = 255

// withDefaults returns a copy of c with defaults applied, or an error that
// names the invalid field and the rule it breaks.
func (c Config) withDefaults() (Config, error) {
	if c.Addr == "" && c.ReusePort {
		return c, errors.New("herald: Config.ReusePort without Config.Addr: a server mounted only has no port to share")
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"Loops", int64(c.Loops)}, {"MaxHeaderBytes", int64(c.MaxHeaderBytes)},
		{"MaxMessageBytes", c.MaxMessageBytes}, {"MaxFrameBytes", c.MaxFrameBytes},
		{"MaxOutboundBytes", int64(c.MaxOutboundBytes)}, {"MaxOutboundTotal", c.MaxOutboundTotal},
		{"Workers", int64(c.Workers)}, {"SocketSendBuffer", int64(c.SocketSendBuffer)},
		{"WorkerQueue", int64(c.WorkerQueue)}, {"Compression.MinSize", int64(c.Compression.MinSize)},
		{"HandshakeWorkers", int64(c.HandshakeWorkers)}, {"HandshakeQueue", int64(c.HandshakeQueue)},
		{"HandshakeTimeout", int64(c.HandshakeTimeout)}, {"PongTimeout", int64(c.PongTimeout)},
		{"IdleTimeout", int64(c.IdleTimeout)}, {"CloseTimeout", int64(c.CloseTimeout)},
		{"ShutdownTimeout", int64(c.ShutdownTimeout)}, {"MaxTLSHandshakes", int64(c.MaxTLSHandshakes)},
	} {
		if f.v < 0 {
			return c, fmt.Errorf("herald: Config.%s is negative (%d): use 0 for the default", f.name, f.v)
		}
	}
	if err := c.checkLimits(); err != nil {
		return c, err
	}
	if len(c.Subprotocols) > maxSubprotocols {
		return c, fmt.Errorf("herald: Config.Subprotocols lists %d subprotocols, more than the %d a server may speak",
			len(c.Subprotocols), maxSubprotocols)
	}
	if c.MaxFrameBytes > 0 && c.MaxMessageBytes > 0 && c.MaxFrameBytes > c.MaxMessageBytes {
		return c, fmt.Errorf("herald: Config.MaxFrameBytes (%d) is larger than Config.MaxMessageBytes (%d): a frame cannot be larger than its message",
			c.MaxFrameBytes, c.MaxMessageBytes)
	}
	c.Addr = strings.TrimPrefix(c.Addr, "tcp://")
	if c.Loops == 0 {
		// GOMAXPROCS, not NumCPU: it honours a container's CPU quota.
		c.Loops = runtime.GOMAXPROCS(0)
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.MaxFrameBytes == 0 || c.MaxFrameBytes > c.MaxMessageBytes {
		c.MaxFrameBytes = c.MaxMessageBytes
	}
	if c.MaxOutboundBytes == 0 {
		c.MaxOutboundBytes = DefaultMaxOutboundBytes
	}
	if c.MaxOutboundTotal == 0 {
		// Never below what each loop's connections may hold one at a time.
		c.MaxOutboundTotal = max(DefaultMaxOutboundTotal, int64(c.MaxOutboundBytes)*int64(c.Loops))
	}
	if c.MaxOutboundTotal < int64(c.MaxOutboundBytes) {
		return c, fmt.Errorf("herald: Config.MaxOutboundTotal (%d) is below Config.MaxOutboundBytes (%d): one connection could never use its own bound",
			c.MaxOutboundTotal, c.MaxOutboundBytes)
	}
	if c.PingInterval == 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.PongTimeout == 0 {
		c.PongTimeout = DefaultPongTimeout
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.WorkerQueue == 0 {
		c.WorkerQueue = DefaultWorkerQueue
	}
	if c.HandshakeQueue == 0 {
		c.HandshakeQueue = DefaultHandshakeQueue
	}
	if c.HandshakeQueue > maxHandshakeQueue {
		return c, fmt.Errorf("herald: Config.HandshakeQueue (%d) is over %d: the queue is allocated up front",
			c.HandshakeQueue, maxHandshakeQueue)
	}
	if c.ReturnMemoryAfter == 0 {
		c.ReturnMemoryAfter = DefaultReturnMemory
	}
	if c.MaxTLSHandshakes == 0 {
		c.MaxTLSHandshakes = DefaultMaxTLSHandshakes
	}
	if c.Compression.MinSize == 0 {
		c.Compression.MinSize = DefaultCompressionMinSize
	}
	return c, nil
}

// sweepEvery picks how often each loop checks its connections' timers: at
// most once a second, and often enough that the shortest timeout fires at
// most a quarter of itself late.
func (c *Config) sweepEvery() time.Duration {
	every := time.Second
	for _, d := range []time.Duration{c.HandshakeTimeout, c.PingInterval, c.PongTimeout, c.IdleTimeout, c.CloseTimeout, c.WriteTimeout} {
		if d > 0 && d/4 < every {
			every = d / 4
		}
	}
	return max(every, 5*time.Millisecond)
}
