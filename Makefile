# Thin wrapper over CMake. `make test` and `make demo` work on a fresh Debian machine.
#   TORCH=wheel   LibTorch of the PyTorch wheel (venv under ~/.cache/halsal, made on first use)
#   TORCH=debian  Debian's libtorch-dev 1.13 (CPU, the compatibility floor)
TORCH ?= wheel
BUILD ?= build$(if $(filter-out wheel,$(TORCH)),-$(TORCH),)
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
CMAKE_ARGS ?=
CTEST_ARGS ?=

.PHONY: all deps configure build test test-asan demo bench install clean format

all: build

deps:
	bash scripts/install-deps.sh $(TORCH) $(BUILD)/torch-init.cmake

configure: deps
	cmake -S . -B $(BUILD) -G Ninja -C $(BUILD)/torch-init.cmake -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_ARGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer with LeakSanitizer on
# (suppressions, each with its reason: tests/lsan.supp). Not part of .ci/run: it takes long here.
# The consumer and compile-fail entries build other projects and are left out.
ASAN_BUILD ?= build-asan$(if $(filter-out wheel,$(TORCH)),-$(TORCH),)
test-asan:
	bash scripts/install-deps.sh $(TORCH) $(ASAN_BUILD)/torch-init.cmake
	cmake -S . -B $(ASAN_BUILD) -G Ninja -C $(ASAN_BUILD)/torch-init.cmake -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1" -DHALSAL_SANITIZE=ON -DHALSAL_TEST_TIME_SCALE=8 $(CMAKE_ARGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=0 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=1 \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS) -E '^(consumer|compile_fail)[.]' $(CTEST_ARGS)

# OpenMP threads that spin while they wait made the demo up to 15x slower on a 2-core machine
# shared with another job; passive waiting avoids that (an OMP_WAIT_POLICY of the caller wins).
demo: configure
	cmake --build $(BUILD) -j $(JOBS) --target halsal_demo
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} $(BUILD)/examples/halsal_demo $(DEMO_ARGS)

# C++ against Python eager on the same LibTorch (use the wheel's: TORCH=wheel, the default):
# builds bench/ and runs bench/compare.py (3 rounds, in each every network timed by every program back to back, each
# program leading in turn; the ratios are medians of the rounds' own ratios; BENCH_ARGS adds flags,
# e.g. BENCH_ARGS="--only resnet50 --rounds 5"). Tables: docs/performance.md.
BENCH_ARGS ?=
BENCH_PYTHON ?= $(or $(HALSAL_CACHE),$(HOME)/.cache/halsal)/venv/bin/python
bench: deps
	cmake -S . -B $(BUILD) -G Ninja -C $(BUILD)/torch-init.cmake -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DHALSAL_BUILD_BENCH=ON $(CMAKE_ARGS)
	cmake --build $(BUILD) -j $(JOBS) --target bench_models bench_data
	$(BENCH_PYTHON) bench/compare.py --bench $(BUILD)/bench/bench_models --data-bench $(BUILD)/bench/bench_data --python $(BENCH_PYTHON) --out $(BUILD)/bench-out $(BENCH_ARGS)

install: build
	cmake --install $(BUILD) --prefix $(or $(PREFIX),/usr/local)

format:
	clang-format -i $$(git ls-files '*.hpp' '*.cpp')

clean:
	rm -rf build build-*
