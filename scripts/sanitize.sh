#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The test suite under sanitizers (docs/reliability.md); run before each release.
#   asan: the whole suite (unit tests and the program tests) built with
#         -DMEDIMG_SANITIZE=address,undefined in build-asan/ and run by ctest; any AddressSanitizer,
#         LeakSanitizer or UndefinedBehaviorSanitizer report fails its test. install.consumer is left
#         out: it builds an uninstrumented consumer of the installed headers. Host code only:
#         the CUDA tests are not built (-DMEDIMG_WITH_CUDA=OFF; device code is not instrumented).
#   tsan: the tests that run threads of their own (the data loader's workers: cpu.loader, and the
#         fit loop: cpu.reliability) built with -DMEDIMG_SANITIZE=thread in build-tsan/, run with
#         OMP_NUM_THREADS=1: GCC's libgomp is not instrumented, so its OpenMP regions would show as
#         false races; the kernels' OpenMP parallelism is not what this run checks.
# Usage: scripts/sanitize.sh [asan|tsan|all]   (default all; JOBS=N build jobs, default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
jobs=${JOBS:-2}
bash scripts/install-deps.sh
gen=()
command -v ninja > /dev/null && gen=(-G Ninja)
started=$(date +%s)

if [ "$what" = asan ] || [ "$what" = all ]; then
  cmake -S . -B build-asan "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMEDIMG_SANITIZE=address,undefined \
    -DMEDIMG_BUILD_BENCHMARKS=OFF -DMEDIMG_WITH_CUDA=OFF > /dev/null
  cmake --build build-asan -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1:check_initialization_order=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -E '^install\.consumer$'
  echo "sanitize: asan+ubsan passed ($(( $(date +%s) - started )) s so far)"
fi

if [ "$what" = tsan ] || [ "$what" = all ]; then
  cmake -S . -B build-tsan "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMEDIMG_SANITIZE=thread \
    -DMEDIMG_BUILD_EXAMPLES=OFF -DMEDIMG_BUILD_BENCHMARKS=OFF -DMEDIMG_WITH_CUDA=OFF > /dev/null
  cmake --build build-tsan -j "$jobs" --target test_loader test_reliability
  # Run directly, not through ctest: ctest's per-test ENVIRONMENT sets OMP_NUM_THREADS=2.
  for t in test_loader test_reliability; do
    OMP_NUM_THREADS=1 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
      build-tsan/tests/$t --report_level=short
  done
  echo "sanitize: tsan passed"
fi
echo "sanitize: done in $(( $(date +%s) - started )) s"
