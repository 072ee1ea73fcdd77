// Package conformance is herald's RFC 6455 and RFC 7692 (permessage-deflate)
// conformance suite. It drives the engine with raw frames, in-process,
// through an echo handler configured as the bench contract's echo target
// (any Origin, messages up to 64 MiB, permessage-deflate negotiated when
// offered); see conformance_test.go for the categories and what every case
// must end with, and deflate_test.go for compression.
//
//	go test -race ./tests/conformance
//	go test ./tests/conformance -args -large-only
//
// (the second runs the cases above 4 MiB, which a race build skips: see
// large_test.go).
//
// The package holds tests only.
package conformance
