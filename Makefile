# SPDX-License-Identifier: MIT
# A thin front over CMake: `make demo` and `make test` are the README's two commands.
BUILD ?= build
GENERATOR := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")

.PHONY: all deps configure build demo test bench clean

all: build

deps:
	@bash scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD) $(GENERATOR) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS) >/dev/null

build: configure
	cmake --build $(BUILD)

demo: configure
	cmake --build $(BUILD) --target medimg-phantoms medimg-train medimg-predict medimg-compare
	BUILD=$(BUILD) bash scripts/demo.sh

test: build
	@bash scripts/install-deps.sh --tests || echo "make test: chromium could not be installed; programs.report skips its browser check"
	ctest --test-dir $(BUILD) --output-on-failure

bench: configure
	cmake --build $(BUILD) --target medimg-bench
	./$(BUILD)/benchmarks/medimg-bench

clean:
	rm -rf $(BUILD)
