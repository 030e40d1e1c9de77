# UIMS: make run starts the whole fabric; make test runs every test.
GO        ?= go
FUZZTIME  ?= 60s
BIN       ?= bin/uims

.PHONY: all build run test test-short vet fuzz bench loadhttp vectors clean chaos

all: build

build:
	$(GO) build -o $(BIN) .

run: build
	./$(BIN) run

# Installs what the tests need when it can (redis-server, python3), then runs
# every test with the race detector.
test:
	scripts/test.sh

test-short:
	$(GO) test -short ./...

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)

# Runs every fuzz target for FUZZTIME (default 60s each).
fuzz:
	scripts/fuzz.sh $(FUZZTIME)

# A short benchmark run; see docs/BENCHMARKS.md for the full one.
bench: build
	./$(BIN) bench --quick --out bin/bench
	$(GO) test -run='^$$' -bench=. -benchtime=2000x ./miap/...

# The same figures from outside (docs/BENCHMARKS.md, "From outside (HTTP)"):
# uims run in the background (temporary data folder, free ports), 64 clients
# posting to its web API for 10 s beside a trivial server of the same API
# shape, every accepted message checked delivered, then uims run stopped.
# DURATION, CLIENTS, SIZE, TOKENS and OUT (bin/loadhttp) override.
loadhttp: build
	BIN=$(BIN) scripts/loadhttp.sh

# Rewrites miap/testdata/vectors.json after a deliberate protocol change.
vectors:
	$(GO) test ./miap/ -run 'TestVectors$$' -args -update

clean:
	rm -rf bin

# The chaos suite's full version (docs/RELIABILITY.md, "Chaos suite"): every
# scenario with a 60 s fault and 2000 messages; `go test ./...` runs the short
# one (3 s, 200 messages).
chaos:
	CHAOS_DURATION=$${CHAOS_DURATION:-60s} CHAOS_MESSAGES=$${CHAOS_MESSAGES:-2000} $(GO) test -run TestChaos -count=1 -v -timeout 60m ./internal/chaos/
