// Command ticker is herald's main example, examples/ticker, in the build
// that can join a cluster: the same flags, page and behaviour, plus
//
//	-nats URL       join a cluster through the NATS broker at URL
//	-publish=false  only deliver what other nodes publish
//	-reuseport      share -addr with the other nodes on this host
//
// It lives in the nats module because the core module carries no broker
// client; both builds share the ticker's code (examples/ticker/app). Three
// nodes on one port, one of them publishing:
//
//	go run github.com/nats-io/nats-server/v2@v2.15.3 &
//	go run ./cmd/ticker -nats nats://127.0.0.1:4222 -reuseport &
//	go run ./cmd/ticker -nats nats://127.0.0.1:4222 -reuseport -publish=false &
//	go run ./cmd/ticker -nats nats://127.0.0.1:4222 -reuseport -publish=false &
//
// (from the nats directory). With a broker that runs JetStream
// (nats-server -js), the ticks' history that the page resumes from lives
// in the stream HERALD_HISTORY: a tick has the same position on every
// node, so a page whose node dies recovers what it missed on another.
// Any NATS client reaches the browsers:
//
//	nats pub herald.S0 '{"sym":"S0","seq":1,"ts":0,"px":123.45}'
//
// -cpuprofile FILE writes a CPU profile (pprof) of the whole run, up to
// the shutdown, to compare where a node and a single process spend
// their time.
package main

import (
	"errors"
	"flag"
	"log/slog"
	"os"
	"runtime/pprof"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldws/herald/examples/ticker/app"
	heraldnats "github.com/heraldws/herald/nats"
)

func main() {
	var prof profile
	// A flag.Func starts the profile while the ticker's flags are parsed
	// (app.Main parses them), so that it covers the whole run.
	flag.Func("cpuprofile", "write a CPU profile (pprof) of the run to this file", prof.start)
	app.Main(join)
	prof.stop()
}

// profile is the CPU profile -cpuprofile asked for.
type profile struct{ f *os.File }

func (p *profile) start(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return err
	}
	p.f = f
	return nil
}

// stop ends the profile, if one was started, and closes its file.
func (p *profile) stop() {
	if p.f != nil {
		pprof.StopCPUProfile()
		p.f.Close()
	}
}

// join connects to the broker at opts.NATS with the bus's defaults: prefix
// "herald", a subscription per symbol with local subscribers. If the
// broker runs JetStream, the ticks' history (opts.History per symbol)
// lives there, in the stream HERALD_HISTORY, so that every node gives a
// tick the same position and a page recovers on whichever node it
// reaches; without JetStream the nodes keep no history.
func join(opts app.Options, logger *slog.Logger) (app.Cluster, error) {
	bus, err := heraldnats.Connect(heraldnats.Options{URL: opts.NATS, Logger: logger})
	if err != nil {
		return nil, err
	}
	c := cluster{Bus: bus}
	if opts.History > 0 {
		c.stream, err = heraldnats.ConnectStream(heraldnats.StreamOptions{URL: opts.NATS, Size: opts.History, Logger: logger})
		if err != nil && !noJetStream(err) {
			_ = bus.Close()
			return nil, err
		}
		// Without JetStream the ticker says what that means (app.New).
	}
	return c, nil
}

// noJetStream reports whether err says the broker runs without JetStream.
func noJetStream(err error) bool {
	return errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) ||
		errors.Is(err, nats.ErrNoResponders) // nobody answers JetStream's API
}

// cluster is the bus as the ticker sees it, and the stream that keeps the
// ticks' history if the broker has JetStream. Embedding keeps the bus's
// Interest method, so the hub still tells it which symbols have local
// subscribers.
type cluster struct {
	*heraldnats.Bus
	stream *heraldnats.Stream
}

// Stream is the ticks' history in the broker, or nil.
func (c cluster) Stream() app.Stream {
	if c.stream == nil {
		return nil // not a nil *Stream in an interface
	}
	return c.stream
}

// Report is the bus's counters, and the stream's, for /stats.
func (c cluster) Report() any {
	if c.stream == nil {
		return c.Stats()
	}
	return struct {
		heraldnats.Stats
		History heraldnats.StreamStats
	}{c.Stats(), c.stream.Stats()}
}

// Close leaves the broker: the stream, then the bus.
func (c cluster) Close() error {
	var err error
	if c.stream != nil {
		err = c.stream.Close()
	}
	return errors.Join(err, c.Bus.Close())
}
