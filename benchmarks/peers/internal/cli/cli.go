// Package cli is the command line shared by the Go peers: the mode, its
// flags, the line printed once listening and the shutdown signals.
//
//	<peer> echo   -addr HOST:PORT [-compression] [-tls-cert FILE -tls-key FILE]
//	<peer> ticker -addr HOST:PORT -interval D -symbols K -size B [-payload book] [-compression] [-tls-cert FILE -tls-key FILE]
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/heraldws/herald/benchmarks/peers/internal/tick"
)

// The two modes of the bench contract.
const (
	Echo   = "echo"
	Ticker = "ticker"
)

// MaxMessage is the largest message a peer must accept in echo mode.
const MaxMessage = 64 << 20

// ShutdownGrace bounds how long a peer waits for its clients to answer the
// 1001 close before it exits anyway.
const ShutdownGrace = 1500 * time.Millisecond

// Options is a parsed command line.
type Options struct {
	Mode     string
	Addr     string
	Interval time.Duration // ticker only
	Symbols  int           // ticker only
	Size     int           // ticker only
	Payload  string        // ticker only: tick.Pad or tick.Book
	// Compression negotiates permessage-deflate with clients that offer
	// it, configured as the library's users would for the mode.
	Compression bool
	// TLSCert and TLSKey, both set or neither, are the PEM certificate
	// (chain) and key files of wss://: the peer then serves TLS as its
	// library's users do; without them it is plaintext.
	TLSCert, TLSKey string
}

// TLS reports whether the peer serves wss://.
func (o Options) TLS() bool { return o.TLSCert != "" }

// Parse reads a peer's command line (without the program name). On a usage
// error it prints the usage to stderr and exits with status 2.
func Parse(impl string, args []string) Options {
	opts, err := parse(impl, args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		os.Exit(2)
	}
	return opts
}

func parse(impl string, args []string, stderr io.Writer) (Options, error) {
	usage := func() {
		fmt.Fprintf(stderr, "usage:\n  %[1]s echo -addr HOST:PORT [-compression] [-tls-cert FILE -tls-key FILE]\n  %[1]s ticker -addr HOST:PORT -interval D -symbols K -size B [-payload book] [-compression] [-tls-cert FILE -tls-key FILE]\n", impl)
	}
	if len(args) == 0 || (args[0] != Echo && args[0] != Ticker) {
		usage()
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			return Options{}, flag.ErrHelp
		}
		return Options{}, errors.New("missing mode")
	}
	opts := Options{Mode: args[0]}
	fs := flag.NewFlagSet(impl+" "+opts.Mode, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&opts.Addr, "addr", "127.0.0.1:9001", "address to listen on (HOST:PORT; port 0 picks a free one)")
	fs.BoolVar(&opts.Compression, "compression", false, "negotiate permessage-deflate with clients that offer it")
	fs.StringVar(&opts.TLSCert, "tls-cert", "", "PEM certificate (chain) file: serve wss:// (with -tls-key)")
	fs.StringVar(&opts.TLSKey, "tls-key", "", "PEM private key file of -tls-cert")
	if opts.Mode == Ticker {
		fs.DurationVar(&opts.Interval, "interval", 100*time.Millisecond, "time between ticks")
		fs.IntVar(&opts.Symbols, "symbols", 1, "number of symbols, S0..S<K-1>; each tick publishes one message per symbol")
		fs.IntVar(&opts.Size, "size", 128, "approximate size of a message in bytes")
		fs.StringVar(&opts.Payload, "payload", tick.Pad, `what fills a message to -size: "pad" (x's) or "book" (an order book that compresses like market data)`)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return Options{}, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments: %q\n", fs.Args())
		usage()
		return Options{}, errors.New("unexpected arguments")
	}
	if (opts.TLSCert == "") != (opts.TLSKey == "") {
		fmt.Fprintln(stderr, "-tls-cert and -tls-key go together")
		return Options{}, errors.New("bad TLS flags")
	}
	if opts.Mode == Ticker && (opts.Interval <= 0 || opts.Symbols <= 0 || opts.Size < 0) {
		fmt.Fprintln(stderr, "-interval and -symbols must be positive, -size not negative")
		return Options{}, errors.New("bad ticker flags")
	}
	if _, err := tick.NewFeedOf(1, 0, opts.Payload); opts.Mode == Ticker && err != nil {
		fmt.Fprintln(stderr, err)
		return Options{}, err
	}
	return opts, nil
}

// Feed returns the ticker's feed: -symbols messages of about -size bytes
// of -payload.
func (o Options) Feed() *tick.Feed {
	f, err := tick.NewFeedOf(o.Symbols, o.Size, o.Payload)
	if err != nil {
		Fatal(err) // Parse checked it
	}
	return f
}

// Ready prints the one line the harness waits for:
// "<impl> <mode> listening on HOST:PORT".
func Ready(impl, mode, addr string) {
	fmt.Printf("%s %s listening on %s\n", impl, mode, addr)
}

// Fatal prints err to stderr and exits with status 1.
func Fatal(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

// SignalContext returns a context that is cancelled on SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
