# Thin wrapper over CMake. `make demo` and `make test` are the two set-up
# commands; both install what they need first (make deps).

PYTHON  ?= /usr/bin/python3
JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
RELEASE := build/release
TESTB   := build/test
# build/tools/bin: programs scripts/deps.sh takes out of Debian packages
# without installing them (promtool)
PYTEST  := PATH=$(CURDIR)/build/tools/bin:$$PATH $(PYTHON) -m pytest -p no:cacheprovider

.PHONY: all deps build build-test test unit e2e e2e-all chaos chaos-quick lint demo demo-stop bench clean
.PHONY: deploy-deps deb deb-test

all: build

deps:
	@./scripts/deps.sh

# The HCL parser the deploy/gcp checks use (Terraform itself is not needed):
# npm ci from deploy/gcp/package-lock.json, again only when the lock changes.
deploy-deps: deploy/gcp/node_modules/.package-lock.json

deploy/gcp/node_modules/.package-lock.json: deploy/gcp/package.json deploy/gcp/package-lock.json
	cd deploy/gcp && npm ci --no-audit --no-fund

$(RELEASE)/Makefile: CMakeLists.txt
	cmake -S . -B $(RELEASE) -DCMAKE_BUILD_TYPE=Release

$(TESTB)/Makefile: CMakeLists.txt
	cmake -S . -B $(TESTB) -DCMAKE_BUILD_TYPE=Debug -DPGW_SANITIZE=ON

build: deps $(RELEASE)/Makefile
	cmake --build $(RELEASE) -j $(JOBS)

build-test: deps $(TESTB)/Makefile
	cmake --build $(TESTB) -j $(JOBS)

# Every test: banned-call lint, unit tests and end-to-end tests (real
# PostgreSQL, real pgwarden processes as the postgres user), all against the
# AddressSanitizer/UBSan build.
test: build build-test deploy-deps lint unit e2e fuzz-short chaos-quick

lint:
	@./scripts/lint.sh

unit: build-test
	cd $(TESTB) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j $(JOBS)

# The slowest fault scenarios run in `make e2e-all` (and `make chaos`).
e2e: build-test deploy-deps
	PGW_BIN=$(CURDIR)/$(TESTB)/pgwarden PGW_BUILD=$(CURDIR)/$(TESTB) \
		$(PYTEST) -v -rfE --durations=15 -m "not slow" tests/e2e

e2e-all: build-test deploy-deps
	PGW_BIN=$(CURDIR)/$(TESTB)/pgwarden PGW_BUILD=$(CURDIR)/$(TESTB) $(PYTEST) -v tests/e2e

# Network partitions, latency, frozen processes and full disks with every
# node in its own network namespace behind HAProxy (needs root); prints the
# report table at the end. PGW_CHAOS_RUNS=5 repeats every scenario 5 times.
chaos: build-test
	PGW_BIN=$(CURDIR)/$(TESTB)/pgwarden PGW_BUILD=$(CURDIR)/$(TESTB) \
		$(PYTEST) -v tests/chaos

# The short subset `make test` runs: a minority partition of the primary, an
# isolated replica and the network lab's own checks (about a minute).
chaos-quick: build-test
	PGW_BIN=$(CURDIR)/$(TESTB)/pgwarden PGW_BUILD=$(CURDIR)/$(TESTB) \
		$(PYTEST) -v -rfE -m "not slow" tests/chaos

# A 3-node cluster on 127.0.0.1 with data under ./demo (owned by postgres).
demo: build
	@./scripts/demo.sh start

demo-stop:
	@./scripts/demo.sh stop

bench: build
	PGW_BIN=$(CURDIR)/$(RELEASE)/pgwarden bench/raft_failover
	PGW_BIN=$(CURDIR)/$(RELEASE)/pgwarden PGW_BUILD=$(CURDIR)/$(RELEASE) bench/failover
	PGW_BIN=$(CURDIR)/$(RELEASE)/pgwarden bench/sync_stall
	PGW_RAFT_TLS_BENCH=$(CURDIR)/$(RELEASE)/raft_tls_bench bench/raft_tls
	PGW_BUILD=$(CURDIR)/$(RELEASE) bench/http_probe --self
	PGW_BIN=$(CURDIR)/$(RELEASE)/pgwarden PGW_BUILD=$(CURDIR)/$(RELEASE) bench/probe_flood

# Debian package: build/release/pgwarden_<version>_amd64.deb (CPack).
deb: build
	cd $(RELEASE) && cpack -G DEB

# Installs that package into a clean Debian 12 root (debootstrap, cached in
# build/deb-test) and runs pgwarden there.
deb-test: deb
	PGW_DEB=$$(ls -t $(CURDIR)/$(RELEASE)/pgwarden_*_amd64.deb | head -1) \
		PGW_DEB_CACHE=$(CURDIR)/build/deb-test $(PYTEST) -v tests/e2e/test_deb.py

clean:
	rm -rf build

# libFuzzer targets (tests/fuzz, clang): `make fuzz` runs each for
# PGW_FUZZ_SECONDS, `make fuzz-short` for 20 s; both first replay the
# reproducers in tests/fuzz/crashes and fail on any crash. Corpora grow in
# build/fuzz/corpus, crash inputs land in build/fuzz/artifacts.
FUZZB            := build/fuzz
PGW_FUZZ_SECONDS ?= 300

.PHONY: fuzz fuzz-short fuzz-build

$(FUZZB)/Makefile: CMakeLists.txt
	CC=clang cmake -S . -B $(FUZZB) -DCMAKE_BUILD_TYPE=Debug -DPGW_FUZZ=ON

fuzz-build: deps $(FUZZB)/Makefile
	cmake --build $(FUZZB) --target pgw_fuzzers -j $(JOBS)

fuzz: fuzz-build
	tests/fuzz/run.sh $(FUZZB) $(PGW_FUZZ_SECONDS)

fuzz-short: fuzz-build
	tests/fuzz/run.sh $(FUZZB) 20
