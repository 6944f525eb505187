# ehrbridge — build, run and test. The two set-up commands on a fresh
# machine are `make run` and `make test`; everything they need is
# installed from here.

GO       ?= go
BIN      := bin/ehrbridge
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
CONFIG   ?= configs/ehrbridge.yaml
FUZZTIME ?= 2m
PEERS    := internal/interop/node
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build build-windows run run-dynamics test unit mappings-test fuzz-short fuzz fmt vet tidy peers clean
MAPPING_SETS := $(wildcard configs/mappings/*/)

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ehrbridge

build-windows:
	GOOS=windows GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN).exe ./cmd/ehrbridge

run: build
	./$(BIN) run --config $(CONFIG)

# run-dynamics: the same demo with the CRM sandbox's Dataverse side as the
# CRM and the Dataverse mappings.
run-dynamics: build
	./$(BIN) run --config configs/ehrbridge-dynamics.yaml

# test: formatting, vet, every Go test (race detector on, real peers
# included), lint and tests of every shipped mapping set, then a short
# fuzz run of each fuzz target.
test: peers vet
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './$(PEERS)/*')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) test -race -count=1 -timeout 15m ./...
	$(MAKE) mappings-test
	$(MAKE) fuzz-short

# mappings-test: `ehrbridge lint` and `ehrbridge test` on each shipped set.
mappings-test: build
	@for set in $(MAPPING_SETS); do \
	  ./$(BIN) lint $$set && ./$(BIN) test $$set || exit 1; \
	done

unit:
	$(GO) test -count=1 ./...

# Each fuzz target for a few seconds: catches regressions on the seed
# corpus and a little beyond. `make fuzz` runs them for FUZZTIME each.
fuzz-short:
	$(MAKE) fuzz FUZZTIME=10s

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./hl7
	$(GO) test -run '^$$' -fuzz '^FuzzReadFrame$$' -fuzztime $(FUZZTIME) ./hl7/mllp
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/config
	$(GO) test -run '^$$' -fuzz '^FuzzCompile$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./mappings
	$(GO) test -run '^$$' -fuzz '^FuzzMap$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./mappings
	$(GO) test -run '^$$' -fuzz '^FuzzMapFHIR$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./mappings
	$(GO) test -run '^$$' -fuzz '^FuzzParseSOQL$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./connectors/sandbox
	$(GO) test -run '^$$' -fuzz '^FuzzOData$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./connectors/sandbox

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

tidy:
	$(GO) mod tidy

# peers installs the third-party programs the interop tests run against:
# npm packages from the committed package-lock.json, and Debian's
# python3-hl7. Re-runs npm only when the lock file changed.
peers: $(PEERS)/node_modules/.installed
	@/usr/bin/python3 -c 'import hl7.client' 2>/dev/null || { \
	  echo "installing Debian python3-hl7"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-hl7 >/dev/null; }

$(PEERS)/node_modules/.installed: $(PEERS)/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || { \
	  echo "installing Debian nodejs and npm"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nodejs npm >/dev/null; }
	cd $(PEERS) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

clean:
	rm -rf bin $(PEERS)/node_modules
