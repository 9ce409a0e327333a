# Thin wrapper over CMake. `make demo` and `make test` are the two set-up
# commands; both install what they need first (make deps).

PYTHON  ?= /usr/bin/python3
JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
RELEASE := build/release
TESTB   := build/test

.PHONY: all deps build build-test test unit e2e lint clean

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

# Every test: banned-call lint, unit tests (ASan/UBSan build) and end-to-end
# tests against real PostgreSQL, run as the postgres user.
test: build build-test lint unit e2e

lint:
	@./scripts/lint.sh

unit: build-test
	cd $(TESTB) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j $(JOBS)

e2e: build-test
	PGW_BIN=$(CURDIR)/$(TESTB)/pgwarden $(PYTHON) -m pytest -p no:cacheprovider -v tests/e2e

clean:
	rm -rf build
