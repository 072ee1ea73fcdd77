# herald's build entry points. `make test` is what CI runs (.ci/run).
GO        ?= go
# A count, not a duration: Go 1.26's fuzz coordinator can report a spurious
# "context deadline exceeded" when a wall-clock -fuzztime ends mid-run
# (golang/go#75804); a count has no deadline to race. ~5 s each on 2 cores
# (FuzzInflate, whose inputs may inflate to its 64 KiB limit, some more):
# enough to meet again, in seconds, what a change breaks in a parser. The
# seed corpora run in every unit run too. FUZZTIME=1000000x for a longer look.
FUZZTIME  ?= 100000x
# FuzzTLSFeed drives a real server through sockets and handshakes, some
# hundreds of inputs a second: fewer of them.
TLSFUZZTIME ?= 5000x
PKGS      := ./...
# The NATS Bus and the ticker's cluster build: a module of their own, so
# that the core's go.mod carries no broker client. ./... at the root does
# not reach into it; these targets do, explicitly.
NATSMOD   := nats
# The Prometheus collector: its own module too, so that the core's go.mod
# carries no metrics library.
PROMMOD   := prom
# The notify example: its own module, since its /metrics imports prom.
NOTIFYMOD := examples/notify

.PHONY: test check vet fmt unit conformance fuzz interop harness clients bench bench-quick bench-deflate bench-soak bench-stall bench-fleet bench-c1m bench-go bench-memory

## test: everything CI checks — vet, gofmt, every package's tests with -race
## (the RFC 6455 conformance suite in tests/conformance among them), short
## fuzz runs, interop with real clients and browsers, and the benchmark
## harness's own tests (installs what it needs: Chromium, npm packages),
## and the JavaScript client's tests.
test: check unit fuzz interop harness clients

check: vet fmt

vet:
	$(GO) vet $(PKGS)
	cd $(NATSMOD) && $(GO) vet ./...
	cd $(PROMMOD) && $(GO) vet ./...
	cd $(NOTIFYMOD) && $(GO) vet ./...

fmt:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Every package of the root module, tests/conformance included, then the
# nats, prom and notify example modules'. The conformance suite's bulk
# cases (large and compressed messages, bombs) run without the race
# detector, which would make them most of the suite's CPU for no
# concurrency the smaller cases lack (tests/conformance/large_test.go).
unit:
	$(GO) test -race -count=1 $(PKGS)
	$(GO) test -count=1 ./tests/conformance -args -large-only
	cd $(NATSMOD) && $(GO) test -race -count=1 ./...
	cd $(PROMMOD) && $(GO) test -race -count=1 ./...
	cd $(NOTIFYMOD) && $(GO) test -race -count=1 ./...

## conformance: the RFC 6455 conformance suite alone (part of unit).
conformance:
	$(GO) test -race -count=1 ./tests/conformance
	$(GO) test -count=1 ./tests/conformance -args -large-only

# Each fuzz target runs briefly on top of its checked-in seed corpus.
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzDecoder$$' -fuzztime=$(FUZZTIME) ./codec
	$(GO) test -run='^$$' -fuzz='^FuzzValidateUTF8$$' -fuzztime=$(FUZZTIME) ./codec
	$(GO) test -run='^$$' -fuzz='^FuzzInflate$$' -fuzztime=$(FUZZTIME) ./codec
	$(GO) test -run='^$$' -fuzz='^FuzzStep$$' -fuzztime=$(FUZZTIME) ./upgrade
	$(GO) test -run='^$$' -fuzz='^FuzzParseHeader$$' -fuzztime=$(FUZZTIME) ./internal/wsframe
	$(GO) test -run='^$$' -fuzz='^FuzzProxyHeader$$' -fuzztime=$(FUZZTIME) ./internal/proxyproto
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeRequest$$' -fuzztime=$(FUZZTIME) ./resume
	$(GO) test -run='^$$' -fuzz='^FuzzTLSFeed$$' -fuzztime=$(TLSFUZZTIME) ./engine
	cd $(NATSMOD) && $(GO) test -run='^$$' -fuzz='^FuzzDecodeBatch$$' -fuzztime=$(FUZZTIME) ./internal/wire

interop:
	bash tests/interop/setup.sh
	bash tests/interop/run.sh

# The harness's tests: histogram merging, result parsing, limit checks, the
# peers' contract, the hostile client kinds, a tiny end-to-end run against
# the echo example, the short soak (stalled subscribers against the
# ticker's budget) and a tiny fleet run (3 ticker processes on one port,
# nats-server, 2,000 connections, ticks to all of them).
harness:
	bash benchmarks/peers/setup.sh
	$(MAKE) -C benchmarks test

## clients: the JavaScript client's tests (clients/js): unit tests on a
## fake WebSocket and mock timers, and tests against a real server
## (clients/js/testserver, built with $(GO)): recovery, 1,000 clients
## reconnecting after a 1012 spread over the backoff window, and the
## README's example run as written. Node >= 20; a Node
## without a global WebSocket (20) gets --experimental-websocket.
clients:
	cd clients/js && GO=$(GO) node $$(node -e 'process.exit(typeof WebSocket === "function" ? 1 : 0)' && echo --experimental-websocket) \
		--test test/client.test.js test/integration.test.js test/storm.test.js test/readme.test.js

## bench: herald against gorilla, nbio, gws, uWebSockets.js and ws, every
## scenario (see benchmarks/README.md); bench-quick: the same, smaller.
bench:
	$(MAKE) -C benchmarks bench

bench-quick:
	$(MAKE) -C benchmarks bench-quick

## bench-deflate: the same servers with permessage-deflate (echo-z,
## ticker-1z, ticker-20z, hold-z; BENCH_FLAGS=-quick for the smaller counts).
bench-deflate:
	$(MAKE) -C benchmarks bench-deflate

## bench-soak: the ticker example for 10 minutes under slow and hostile
## clients, its RSS against its budget and its readers' latency over time
## (SOAK_FLAGS="-duration 3m" for a shorter one); bench-stall: the readers'
## p99 alone and beside 5,000 stalled subscribers. Neither is part of test.
bench-soak:
	$(MAKE) -C benchmarks bench-soak

bench-stall:
	$(MAKE) -C benchmarks bench-stall

## bench-fleet: CONNS connections (default 50000) over herald ticker
## processes sharing one port and a NATS broker, memory sampled on the way
## up, then ticks through the broker to all of them (results/fleet;
## FLEET_FLAGS=-tune as root raises the kernel settings it needs);
## bench-c1m: the same with a million. Neither is part of test.
bench-fleet:
	$(MAKE) -C benchmarks bench-fleet

bench-c1m:
	$(MAKE) -C benchmarks bench-c1m

## bench-go: Go benchmarks (ns/op, allocs/op) of every package.
bench-go:
	$(GO) test -run='^$$' -bench=. -benchmem $(PKGS)

## bench-memory: RSS and Go heap per idle upgraded connection at 15k connections.
bench-memory:
	$(GO) test -run='^$$' -bench=IdleConnMemory -benchtime=1x -v ./engine
