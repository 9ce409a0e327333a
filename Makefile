# Thin wrapper over CMake. `make demo` and `make test` are the two set-up
# commands; both install what they need first (make deps).

PYTHON  ?= /usr/bin/python3
JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
RELEASE := build/release
TESTB   := build/test
PYTEST  := $(PYTHON) -m pytest -p no:cacheprovider

.PHONY: all deps build build-test test unit e2e e2e-all lint demo demo-stop bench clean

all: build

deps:
	@./scripts/deps.sh

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
test: build build-test lint unit e2e

lint:
	@./scripts/lint.sh

unit: build-test
	cd $(TESTB) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j $(JOBS)

# The slowest fault scenarios run in `make e2e-all` (and `make chaos`).
e2e: build-test
	PGW_BIN=$(CURDIR)/$(TESTB)/pgwarden PGW_BUILD=$(CURDIR)/$(TESTB) \
		$(PYTEST) -v -m "not slow" tests/e2e

e2e-all: build-test
	PGW_BIN=$(CURDIR)/$(TESTB)/pgwarden PGW_BUILD=$(CURDIR)/$(TESTB) $(PYTEST) -v tests/e2e

# A 3-node cluster on 127.0.0.1 with data under ./demo (owned by postgres).
demo: build
	@./scripts/demo.sh start

demo-stop:
	@./scripts/demo.sh stop

bench: build
	PGW_BIN=$(CURDIR)/$(RELEASE)/pgwarden bench/raft_failover
	PGW_BIN=$(CURDIR)/$(RELEASE)/pgwarden bench/failover

clean:
	rm -rf build
