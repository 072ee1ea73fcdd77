# herald's build entry points. `make test` is what CI runs (.ci/run).
GO        ?= go
FUZZTIME  ?= 10s
PKGS      := ./...

.PHONY: test check vet fmt unit fuzz interop bench bench-memory

## test: everything CI checks — vet, gofmt, unit tests with -race, short fuzz
## runs, and interop with real clients (installs what it needs).
test: check unit fuzz interop

check: vet fmt

vet:
	$(GO) vet $(PKGS)

fmt:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

unit:
	$(GO) test -race -count=1 $(PKGS)

# Each fuzz target runs briefly on top of its checked-in seed corpus.
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzDecoder$$' -fuzztime=$(FUZZTIME) ./codec
	$(GO) test -run='^$$' -fuzz='^FuzzValidateUTF8$$' -fuzztime=$(FUZZTIME) ./codec
	$(GO) test -run='^$$' -fuzz='^FuzzStep$$' -fuzztime=$(FUZZTIME) ./upgrade

interop:
	bash tests/interop/setup.sh
	bash tests/interop/run.sh

## bench: Go benchmarks (ns/op, allocs/op) of every package.
bench:
	$(GO) test -run='^$$' -bench=. -benchmem $(PKGS)

## bench-memory: RSS and Go heap per idle upgraded connection at 15k connections.
bench-memory:
	$(GO) test -run='^$$' -bench=IdleConnMemory -benchtime=1x -v ./engine
