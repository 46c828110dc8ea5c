# Thin wrapper over CMake. `make test` and `make demo` work on a fresh Debian machine.
#   TORCH=wheel   LibTorch of the PyTorch wheel (venv under ~/.cache/halsal, made on first use)
#   TORCH=debian  Debian's libtorch-dev 1.13 (CPU, the compatibility floor)
TORCH ?= wheel
BUILD ?= build$(if $(filter-out wheel,$(TORCH)),-$(TORCH),)
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
CMAKE_ARGS ?=
CTEST_ARGS ?=

.PHONY: all deps configure build test demo install clean format

all: build

deps:
	bash scripts/install-deps.sh $(TORCH) $(BUILD)/torch-init.cmake

configure: deps
	cmake -S . -B $(BUILD) -G Ninja -C $(BUILD)/torch-init.cmake -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_ARGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

# OpenMP threads that spin while they wait made the demo up to 15x slower on a 2-core machine
# shared with another job; passive waiting avoids that (an OMP_WAIT_POLICY of the caller wins).
demo: configure
	cmake --build $(BUILD) -j $(JOBS) --target halsal_demo
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} $(BUILD)/examples/halsal_demo $(DEMO_ARGS)

install: build
	cmake --install $(BUILD) --prefix $(or $(PREFIX),/usr/local)

format:
	clang-format -i $$(git ls-files '*.hpp' '*.cpp')

clean:
	rm -rf build build-*
