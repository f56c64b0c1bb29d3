# Front door. `make run` and `make test` are the two commands in the README;
# both install what is missing (Debian packages) and build first.
SHELL := /bin/bash
.DEFAULT_GOAL := build

EXE      := gpx_inhouse
ARCH     := $(shell uname -m | sed -e 's/x86_64/amd64/' -e 's/aarch64/arm64/')
DIST_BIN := dist/$(EXE)_linux_$(ARCH)
JOBS     := $(shell nproc)
PY       := /usr/bin/python3
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Everything the build, the tests and the benchmarks use, by Debian name.
DEB_PACKAGES := build-essential cmake pkg-config clang libclang-rt-14-dev valgrind \
  libuv1-dev libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler libjansson-dev libcmocka-dev \
  node-llhttp libyajl-dev libssl-dev openssl ca-certificates zlib1g-dev nghttp2-client protobuf-compiler \
  python3-grpcio python3-protobuf python3-pytest python3-h2 \
  golang-go golang-github-hashicorp-go-plugin-dev golang-google-grpc-dev golang-google-protobuf-dev \
  golang-github-golang-protobuf-1-5-dev protoc-gen-go protoc-gen-go-grpc

SAN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1 \
           UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 LSAN_OPTIONS=exitcode=23

include frontend/frontend.mk

.PHONY: deps build dist dist-backend asan test unit arrow-tests tools-tests integration integration-python integration-go \
        fuzz-build fuzz-short fuzz fuzz-long valgrind soak soak-short bench run clean

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; done; \
	if ! command -v npm >/dev/null; then missing="$$missing nodejs npm"; fi; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing </dev/null; \
	fi

build: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DGPX_TESTS=OFF >/dev/null
	cmake --build build -j$(JOBS)

# dist-backend is what `make run` needs; dist adds the UI (frontend/frontend.mk builds module.js).
dist: dist-backend frontend-build
	cp $(FE_MODULE) $(FE_MODULE).map dist/
	@echo "dist/ ready: $$(ls dist | tr '\n' ' ')"

dist-backend: build
	rm -rf dist && mkdir -p dist/img
	cp plugin.json README.md dist/
	cp img/logo.svg dist/img/
	install -m 0755 build/$(EXE) $(DIST_BIN)
	strip $(DIST_BIN)
	@echo "dist/ ready: $$(ls dist | tr '\n' ' ')"

asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DGPX_SANITIZE=ON -DGPX_TESTS=ON >/dev/null
	cmake --build build-asan -j$(JOBS)

unit: asan
	cd build-asan && $(SAN_ENV) ctest --output-on-failure

integration-python: asan
	$(SAN_ENV) PLUGIN_BIN=$(CURDIR)/build-asan/$(EXE) bash tests/integration/run_python.sh

integration-go: asan
	$(SAN_ENV) PLUGIN_BIN=$(CURDIR)/build-asan/$(EXE) bash tests/integration/run_go.sh

integration: integration-python integration-go tools-tests

# The reference backend and the CLI host, each with its own pytest suite (sanitizer builds).
tools-tests: asan
	REFBACKEND_BIN=$(CURDIR)/build-asan/tools/refbackend/refbackend $(SAN_ENV) \
	  $(PY) -m pytest -q tools/refbackend/test_refbackend.py
	GPXHOST_BIN=$(CURDIR)/build-asan/tools/gpxhost/gpxhost PLUGIN_BIN=$(CURDIR)/build-asan/gpx_inhouse \
	  REFBACKEND_BIN=$(CURDIR)/build-asan/tools/refbackend/refbackend $(SAN_ENV) \
	  $(PY) -m pytest -q tools/gpxhost/test_gpxhost.py

# Frames judged by apache-arrow (npm, installed into tests/arrow by npm ci).
arrow-tests: asan
	FRAME_CONVERT=$(CURDIR)/build-asan/tests/frame_convert bash tests/arrow/run.sh

fuzz-build: deps
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DGPX_FUZZ=ON -DGPX_TESTS=OFF >/dev/null
	cmake --build build-fuzz -j$(JOBS)

# A short run of every fuzz target (part of `make test`); `make fuzz` runs longer.
FUZZ_SECONDS ?= 20
fuzz-short: fuzz-build
	bash fuzz/run.sh build-fuzz $(FUZZ_SECONDS)

fuzz: FUZZ_SECONDS = 300
fuzz: fuzz-short

# 10^7 inputs each. fuzz_arrow_roundtrip (~1 ms an input: it builds, writes,
# reads and compares whole frames) goes last with one worker per CPU.
FUZZ_LONG_RUNS ?= 10000000
FUZZ_SLOW_TARGETS = fuzz_arrow_roundtrip
fuzz-long: fuzz-build
	FUZZ_EXCLUDE="$(FUZZ_SLOW_TARGETS)" bash fuzz/run.sh build-fuzz 0 $(FUZZ_LONG_RUNS)
	FUZZ_TARGETS="$(FUZZ_SLOW_TARGETS)" FUZZ_WORKERS=$(JOBS) bash fuzz/run.sh build-fuzz 0 $(FUZZ_LONG_RUNS)

# The whole test suite: unit tests and both independent clients against the
# sanitizer build, the UI's tests, the release dist binary through go-plugin,
# a 2-minute soak, then fuzzing.
test: unit arrow-tests integration dist frontend-test
	PLUGIN_BIN=$(CURDIR)/$(DIST_BIN) bash tests/integration/run_go.sh
	$(MAKE) --no-print-directory soak-short
	$(MAKE) --no-print-directory fuzz-short

valgrind: build
	rm -rf build/valgrind-logs
	VALGRIND=1 VALGRIND_LOG_DIR=$(CURDIR)/build/valgrind-logs PLUGIN_BIN=$(CURDIR)/tests/valgrind-plugin.sh \
	  REFBACKEND_BIN=$(CURDIR)/build/tools/refbackend/refbackend \
	  GPX_VALGRIND_TARGET=$(CURDIR)/build/$(EXE) bash tests/integration/run_python.sh
	VALGRIND_LOG_DIR=$(CURDIR)/build/valgrind-logs bash tests/valgrind-check.sh

# Mixed load (dashboards, alert storms, cancels, faults, settings changes)
# against the release binary, watching RSS and fds (tests/soak/soak.py).
SOAK_SECONDS ?= 1800
soak: dist-backend
	PLUGIN_BIN=$(CURDIR)/$(DIST_BIN) REFBACKEND_BIN=$(CURDIR)/build/tools/refbackend/refbackend \
	  $(PY) tests/soak/soak.py $(SOAK_SECONDS)

# The 2-minute version `make test` runs: 60 s warm-up, RSS bound 5 % (why:
# tests/soak/soak.py), on the release build (dist/ is left alone).
soak-short: build
	SOAK_WARMUP=60 SOAK_MAX_GROWTH=5 PLUGIN_BIN=$(CURDIR)/build/$(EXE) \
	  REFBACKEND_BIN=$(CURDIR)/build/tools/refbackend/refbackend $(PY) tests/soak/soak.py 120

bench: dist-backend
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build -j$(JOBS)
	bash bench/run.sh

run: dist-backend
	bash tools/run_demo.sh $(CURDIR)/$(DIST_BIN) $(CURDIR)/build/tools/refbackend/refbackend \
	  $(CURDIR)/build/tools/gpxhost/gpxhost

clean:
	rm -rf build build-asan build-fuzz dist
