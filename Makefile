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

.PHONY: test-windows winetools browser all build build-windows package packagers run run-dynamics test chaos unit mappings-test fuzz-short fuzz fmt vet vulncheck tidy peers clean
MAPPING_SETS := $(wildcard configs/mappings/*/)

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ehrbridge

build-windows:
	GOOS=windows GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN).exe ./cmd/ehrbridge

# package: the .deb, .rpm, Windows .zip and .msi in dist/ (installs the
# Debian packaging tools it needs: rpm, wixl, zip; msitools, whose msiinfo
# the packaging tests read the .msi with).
package: build build-windows packagers
	rm -rf dist
	sh installer/packaging/package.sh $(VERSION) dist

packagers:
	@command -v rpmbuild >/dev/null && command -v wixl >/dev/null && command -v msiinfo >/dev/null && command -v zip >/dev/null \
	  && command -v fakeroot >/dev/null && command -v systemd-analyze >/dev/null || { \
	  echo "installing Debian rpm, wixl, msitools, zip, fakeroot, systemd"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq rpm wixl msitools zip fakeroot systemd >/dev/null; }

run: build
	./$(BIN) run --config $(CONFIG)

# run-dynamics: the same demo with the CRM sandbox's Dataverse side as the
# CRM and the Dataverse mappings.
run-dynamics: build
	./$(BIN) run --config configs/ehrbridge-dynamics.yaml

# test: formatting, vet, every Go test (race detector on, real peers
# included, the browser tests required: EHRBRIDGE_REQUIRE_BROWSER), lint and tests of every shipped mapping set, then a short
# fuzz run of each fuzz target. govulncheck runs first when its database
# can be reached (see vulncheck).
test: peers packagers winetools browser vet
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './$(PEERS)/*')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	@$(MAKE) --no-print-directory vulncheck
	EHRBRIDGE_REQUIRE_BROWSER=1 $(GO) test -race -count=1 -timeout 15m ./...
	$(MAKE) mappings-test
	$(MAKE) fuzz-short
	$(MAKE) test-windows

# test-windows: the Windows builds of the packages with Windows code
# paths (the admin named pipe and its caller's token, the Event Log and
# its audit source, the log file's locking and replacement) and of the pipeline and mappings,
# run under Wine on this Linux machine (internal/winetest/run.sh installs
# Debian's wine64 and MinGW). Wine lacks one behaviour of Windows' pipe
# file system that go-winio's listener relies on, so the test that serves
# the pipe through it runs on a Windows host only (TestAdminPipeNamesTheCaller).
WINDOWS_TEST_PKGS ?= ./checkpoint ./internal/logadmin ./internal/daemon ./internal/admin ./installer ./internal/pipeline ./hl7 ./mappings
test-windows: winetools
	sh internal/winetest/run.sh $(WINDOWS_TEST_PKGS)

# winetools: Debian's Wine 8 and MinGW, before the Go tests too, so that
# the packaging tests install the .msi under Wine (TestMSIServiceUnderWine).
winetools:
	@command -v wine >/dev/null && command -v x86_64-w64-mingw32-gcc >/dev/null || { \
	  echo "installing Debian wine64 and gcc-mingw-w64-x86-64-win32"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wine64 gcc-mingw-w64-x86-64-win32 >/dev/null; }

# browser: Debian's chromium, which the console's browser tests drive
# headless (internal/browsertest); make test sets EHRBRIDGE_REQUIRE_BROWSER
# so that they fail, not skip, without it.
browser:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian chromium"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# chaos: the fault runs at scale (not part of `make test`, which runs them
# with 20 and 10 kills each): the real binary against the sandbox running
# apart, inbound to both CRMs (retransmits, drop-after-commit, 503 and
# request-limit windows) and write-back from both (an EHR that hangs up
# before its ACK and answers AE, note edits racing the filing), sharing
# KILLS SIGKILLs. Prints one line per run with its lost / duplicated /
# stale / differing-ACK / notes-filed-twice counts; exits 1 unless all are 0.
KILLS ?= 1000
chaos: peers
	@EHRBRIDGE_CHAOS_KILLS=$(KILLS) $(GO) test -count=1 -timeout 0 -v \
	  -run '^(TestExactlyOnceToSalesforce|TestExactlyOnceToDataverse|TestWritebackCrash|TestWritebackCrashDataverse)$$' \
	  ./tests > chaos.log 2>&1; status=$$?; \
	  grep -E '^chaos: |^--- (PASS|FAIL)' chaos.log; \
	  if [ $$status -ne 0 ]; then echo "chaos: FAILED (go test output in chaos.log)"; exit 1; fi; \
	  echo "chaos: all counts zero (go test output in chaos.log)"

# mappings-test: `ehrbridge lint` and `ehrbridge test` on each shipped set.
mappings-test: build
	@for set in $(MAPPING_SETS); do \
	  ./$(BIN) lint $$set && ./$(BIN) test $$set || exit 1; \
	done

unit:
	$(GO) test -count=1 ./...

# Each fuzz target for a few seconds: catches regressions on the seed
# corpus and a little beyond. `make fuzz` runs them for FUZZTIME each.
# The fuzz targets: package, target, executions for fuzz-short (about 10 s
# each on the CI machine).
FUZZ_TARGETS := ./hl7:FuzzParse:30000 ./hl7/mllp:FuzzReadFrame:40000 ./internal/config:FuzzParse:30000 \
	./mappings:FuzzCompile:20000 ./mappings:FuzzMap:80000 ./mappings:FuzzMapFHIR:80000 \
	./internal/sandbox:FuzzParseSOQL:40000 ./internal/sandbox:FuzzOData:60000 ./internal/workbench:FuzzTree:40000

# fuzz-short gives each target a number of executions, not a time: with a
# time budget, Go 1.26's fuzzing coordinator can fail a target whose worker
# is mid-run when the time is up ("context deadline exceeded", no failing
# input; go.dev/issue/75804, fixed in Go 1.27).
fuzz-short:
	@for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; n=$${rest#*:}; \
	  echo "$(GO) test -run '^$$' -fuzz '^'$$name'$$' -fuzztime $${n}x $$pkg"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $${n}x -fuzzminimizetime 5s $$pkg || exit 1; \
	done

# fuzz: each target for FUZZTIME (default 2m), for a longer search. A
# target failing with a bare "context deadline exceeded" and no failing
# input hit the Go 1.26 flake described above: run it again.
fuzz:
	@for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; \
	  echo "$(GO) test -run '^$$' -fuzz '^'$$name'$$' -fuzztime $(FUZZTIME) $$pkg"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg || exit 1; \
	done

# vet: go vet for Linux, and for Windows: the Windows build (service
# control, Event Log) must compile and vet clean too.
vet:
	$(GO) vet ./...
	GOOS=windows GOARCH=amd64 $(GO) vet ./...

# vulncheck: govulncheck (installed at GOVULNCHECK_VERSION through the
# module proxy when missing) checks the code and its modules against the Go
# vulnerability database. Known vulnerabilities reachable from our code fail
# the target. When the tool cannot be installed, or the database cannot be
# reached within VULNCHECK_TIMEOUT seconds (a machine without internet
# access), it prints one line "govulncheck skipped: <reason>" and succeeds:
# the dependency versions in go.mod are then the check (README, "Dependencies").
GOVULNCHECK_VERSION ?= v1.9.0
VULNCHECK_TIMEOUT   ?= 300
vulncheck:
	@gv=$$(command -v govulncheck || true); \
	if [ -z "$$gv" ] && [ -x "$$($(GO) env GOPATH)/bin/govulncheck" ]; then gv="$$($(GO) env GOPATH)/bin/govulncheck"; fi; \
	if [ -z "$$gv" ]; then \
	  if timeout 300 $(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION) >/dev/null 2>&1; then \
	    gv="$$($(GO) env GOPATH)/bin/govulncheck"; \
	  else echo "govulncheck skipped: govulncheck $(GOVULNCHECK_VERSION) could not be installed from the module proxy"; exit 0; fi; \
	fi; \
	out=$$(timeout $(VULNCHECK_TIMEOUT) "$$gv" ./... 2>&1); rc=$$?; \
	case $$rc in \
	  0) echo "govulncheck: no known vulnerability reachable";; \
	  3) echo "$$out"; echo "govulncheck: known vulnerabilities are reachable (above): update the modules named"; exit 1;; \
	  124) echo "govulncheck skipped: no answer within $(VULNCHECK_TIMEOUT) s";; \
	  *) if echo "$$out" | grep -q 'fetching vulnerabilities'; then \
	       echo "govulncheck skipped: the vulnerability database cannot be reached from this machine"; \
	     else echo "govulncheck skipped: it failed: $$(echo "$$out" | tail -n 1)"; fi;; \
	esac

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
