#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds what tests/gpu/run-on-device.sh runs on a GPU machine and gathers it into one folder that
# the device tool can carry (the GPU machine has nvcc, PyTorch and cuDNN/cuBLAS wheels, but not
# Boost, yaml-cpp or Google Benchmark):
#   <build>/bundle/bin   test_cuda (Boost.Test compiled in), medimg-bench-gpu, medimg-train,
#                        medimg-phantoms (writes the data of run-on-device.sh's GPU training run)
#   <build>/bundle/lib   the shared libraries they need that are neither system nor CUDA ones
#                        (libbenchmark, libyaml-cpp, libgomp); CUDA, cuBLAS and cuDNN come from
#                        the machine's wheels (run-on-device.sh sets LD_LIBRARY_PATH)
# Usage: tests/gpu/pack.sh [BUILD_DIR]   (default build-gpu, ignored by git as build-*/)
# Then carry "build-gpu/bundle" and run tests/gpu/run-on-device.sh there (docs/gpu.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build-gpu}
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMEDIMG_WITH_CUDA=ON \
  -DMEDIMG_BUILD_TESTS=ON -DMEDIMG_BUILD_EXAMPLES=ON -DMEDIMG_BUILD_BENCHMARKS=ON \
  -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON >/dev/null  # the device machine has no OpenMPI: a medimg-train without it
cmake --build "$build" -j "${JOBS:-2}" --target test_cuda medimg-bench-gpu medimg-train medimg-phantoms
bundle=$build/bundle
rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/lib"
cp "$build/tests/test_cuda" "$build/benchmarks/medimg-bench-gpu" "$build/examples/medimg-train" \
  "$build/examples/medimg-phantoms" "$bundle/bin/"
for exe in "$bundle"/bin/*; do
  ldd "$exe" | awk '/=> \// {print $3}' | grep -E 'libbenchmark|libyaml-cpp|libgomp' || true
done | sort -u | while read -r lib; do cp -L "$lib" "$bundle/lib/"; done
git -C "$root" rev-parse --short HEAD > "$bundle/COMMIT" 2>/dev/null || true
git -C "$root" status --porcelain | grep -q . && echo "+ uncommitted changes" >> "$bundle/COMMIT" || true
du -sh "$bundle"
ls -l "$bundle/bin" "$bundle/lib"
