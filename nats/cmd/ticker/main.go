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
// (from the nats directory). Any NATS client then reaches the browsers:
//
//	nats pub herald.S0 '{"sym":"S0","seq":1,"ts":0,"px":123.45}'
//
// -cpuprofile FILE writes a CPU profile (pprof) of the whole run, up to
// the shutdown, to compare where a node and a single process spend
// their time.
package main

import (
	"flag"
	"log/slog"
	"os"
	"runtime/pprof"

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

// join connects to the broker at url with the bus's defaults: prefix
// "herald", a subscription per symbol with local subscribers.
func join(url string, logger *slog.Logger) (app.Cluster, error) {
	bus, err := heraldnats.Connect(heraldnats.Options{URL: url, Logger: logger})
	if err != nil {
		return nil, err
	}
	return cluster{bus}, nil
}

// cluster is the bus as the ticker sees it. Embedding keeps the bus's
// Interest method, so the hub still tells it which symbols have local
// subscribers.
type cluster struct{ *heraldnats.Bus }

// Report is the bus's counters, for /stats.
func (c cluster) Report() any { return c.Stats() }
