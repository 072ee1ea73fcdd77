package soak

import (
	"fmt"
	"strconv"
	"time"
)

// SoakOptions configure the soak.
type SoakOptions struct {
	Duration time.Duration // the readers' window
	Baseline time.Duration // readers alone before the hostile load starts
	Ticker   TickerOpts

	Readers    int
	Stalls     int // stalled subscribers, over StallProcs processes
	StallProcs int
	StallHold  time.Duration
	SlowReads  int
	SlowRate   int // bytes/s per slow reader
	PongOnly   int
	PingFlood  int
	PingRate   float64 // pings/s per flooding connection (0: as fast as the socket takes them)
	Streamers  int
	StreamRate int // bytes/s per streamer (0: as fast as the socket takes them)
	ChurnConc  int // connect/upgrade/close cycles in flight
	ChurnRate  int // cycles started per second at most (0: as fast as they complete)
}

// DefaultSoak is the soak of `make bench-soak`: ten minutes, the first one
// with the readers alone, then every hostile kind at once.
func DefaultSoak() SoakOptions {
	return SoakOptions{
		Duration: 10 * time.Minute, Baseline: time.Minute,
		Ticker:  TickerOpts{Interval: 100 * time.Millisecond, Symbols: 20, Size: 128, Budget: 32 << 20, HighWater: 64 << 10, MemoryLimit: 128 << 20},
		Readers: 50, Stalls: 5000, StallProcs: 2, StallHold: 18 * time.Second,
		SlowReads: 200, SlowRate: 1024, PongOnly: 200,
		PingFlood: 4, PingRate: 0, Streamers: 4, StreamRate: 256 << 10,
		ChurnConc: 16, ChurnRate: 200,
	}
}

// readerSrc is the readers' source address; the groups use others, so that
// no address runs out of ephemeral ports.
const readerSrc = "127.0.0.2"

func stallSrc(i int) string { return fmt.Sprintf("127.0.0.%d-%d", 3+3*i, 5+3*i) }

// SoakPlan is the plan of a soak: a baseline with the readers alone, then
// stalled subscribers, slow readers, pong-only non-readers, ping floods,
// never-reading streamers and churn, all at once until the end.
func SoakPlan(o SoakOptions) Plan {
	itoa := strconv.Itoa
	p := Plan{Name: "soak", Ticker: o.Ticker, Readers: o.Readers, ReaderSrc: readerSrc, Duration: o.Duration,
		Sample: time.Second, Interval: 5 * time.Second}
	if o.Stalls > 0 {
		g := Group{Name: "stall", Procs: max(1, o.StallProcs), At: o.Baseline,
			Args: []string{"-scenario", "hold", "-path", "/ws", "-conns", "0", "-stall", itoa(o.Stalls),
				"-stall-hold", o.StallHold.String(), "-redial=true"}}
		for i := 0; i < g.Procs; i++ {
			g.Src = append(g.Src, stallSrc(i))
		}
		p.Groups = append(p.Groups, g)
	}
	if o.SlowReads+o.PongOnly+o.PingFlood+o.Streamers > 0 {
		p.Groups = append(p.Groups, Group{Name: "misc", Procs: 1, At: o.Baseline, Src: []string{"127.0.0.40-41"},
			Args: []string{"-scenario", "hold", "-path", "/ws", "-conns", "0",
				"-slowread", itoa(o.SlowReads), "-slowread-rate", itoa(o.SlowRate),
				"-pongonly", itoa(o.PongOnly),
				"-pingflood", itoa(o.PingFlood), "-ping-rate", strconv.FormatFloat(o.PingRate, 'g', -1, 64),
				"-streamer", itoa(o.Streamers), "-stream-rate", itoa(o.StreamRate),
				"-redial=true"}})
	}
	if o.ChurnConc > 0 {
		p.Groups = append(p.Groups, Group{Name: "churn", Procs: 1, At: o.Baseline, Src: []string{"127.0.0.42-43"},
			Args: []string{"-scenario", "churn", "-path", "/ws", "-conns", "0", "-churn-conc", itoa(o.ChurnConc),
				"-churn-path", "/ws?symbols=S0", "-rate", itoa(o.ChurnRate)}})
	}
	return p
}

// StallOptions configure the stall experiment.
type StallOptions struct {
	Duration   time.Duration
	Ticker     TickerOpts
	Readers    int
	Stalls     int
	StallProcs int
	StallHold  time.Duration
}

// DefaultStall is the stall experiment: the ticker at 20 symbols × 10
// ticks/s with its shipped budget, 50 readers for 30 s, without and then
// with 5,000 stalled subscribers.
func DefaultStall() StallOptions {
	return StallOptions{Duration: 30 * time.Second,
		Ticker:  TickerOpts{Interval: 100 * time.Millisecond, Symbols: 20, Size: 128, Budget: 64 << 20, HighWater: 64 << 10, MemoryLimit: 256 << 20},
		Readers: 50, Stalls: 5000, StallProcs: 2, StallHold: 18 * time.Second}
}

// stallWarmup is how long after the stalled subscribers have connected the
// readers' window opens (in both runs, so they compare). Subscribers that
// read nothing are first served like any other: the kernel takes about two
// seconds of ticks (a 64 KiB send buffer and the client's 4 KB receive
// buffer), then the server's backlogs fill to their bound within half a
// second. The experiment measures readers beside stalled subscribers, so
// the window opens once those have stalled; their coming back after the
// server closes them (-stall-hold) repeats that ramp inside the window.
const stallWarmup = 6 * time.Second

// StallPlans are the experiment's two runs, each on a fresh ticker: the
// readers alone, and the readers with the stalled subscribers connected
// before the window opens (and coming back, -stall-hold, after the server
// closes them).
func StallPlans(o StallOptions) (baseline, stalled Plan) {
	baseline = Plan{Name: "stall-baseline", Ticker: o.Ticker, Readers: o.Readers, ReaderSrc: readerSrc, Duration: o.Duration,
		Warmup: stallWarmup, Sample: 200 * time.Millisecond, Interval: time.Second}
	stalled = baseline
	stalled.Name = "stall-stalled"
	g := Group{Name: "stall", Procs: max(1, o.StallProcs), Before: true,
		Args: []string{"-scenario", "hold", "-path", "/ws", "-conns", "0", "-stall", strconv.Itoa(o.Stalls),
			"-stall-hold", o.StallHold.String(), "-redial=true"}}
	for i := 0; i < g.Procs; i++ {
		g.Src = append(g.Src, stallSrc(i))
	}
	stalled.Groups = []Group{g}
	return baseline, stalled
}
