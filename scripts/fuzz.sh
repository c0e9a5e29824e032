#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the libFuzzer targets of tests/fuzz/ with clang++ -fsanitize=fuzzer,address,undefined into
# build-fuzz/ and runs each for SECONDS (default 60), one after the other, starting from the
# committed seed corpus (tests/fuzz/corpus/<target>/; new inputs go to build-fuzz/corpus/<target>/).
# Installs clang and libclang-rt (Debian 12: clang-14) with apt-get when they are missing.
# A crash, sanitizer report, leak, timeout (> 10 s per input) or out-of-memory (> 2 GB) leaves the
# input in build-fuzz/artifacts/<target>/ and makes this script exit 1; the summary lists, per
# target, the executions, the corpus size and the findings (record long runs in docs/reliability.md).
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]     e.g. scripts/fuzz.sh 600 fuzz_config
# fuzz_dicom and fuzz_nifti need GDCM and nifticlib (scripts/install-deps.sh installs both).
# Reproduce a finding: build-fuzz/<target> build-fuzz/artifacts/<target>/crash-...
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(fuzz_image fuzz_safetensors fuzz_checkpoint fuzz_metadata fuzz_config fuzz_torch_pth fuzz_dicom fuzz_nifti)

# Tools: clang++ with the libFuzzer and sanitizer runtimes.
CXX=${CXX_FUZZ:-}
if [ -z "$CXX" ]; then
  for c in clang++ clang++-14 clang++-15 clang++-16; do command -v "$c" > /dev/null && { CXX=$c; break; }; done
fi
has_fuzzer() { [ -n "$CXX" ] && echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' |
  "$CXX" -x c++ -fsanitize=fuzzer,address,undefined - -o /tmp/medimg-fuzz-probe.$$ 2> /dev/null; }
if ! has_fuzzer; then
  echo "fuzz: installing clang-14 and libclang-rt-14-dev"
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq && "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev ||
    { echo "fuzz: could not install clang" >&2; exit 1; }
  CXX=clang++-14
  has_fuzzer || { echo "fuzz: $CXX cannot build -fsanitize=fuzzer programs" >&2; exit 1; }
fi
rm -f /tmp/medimg-fuzz-probe.$$
bash scripts/install-deps.sh  # the library's own dependencies (Eigen, nlohmann-json, stb, yaml-cpp, libjpeg-turbo, zlib)

out=build-fuzz
mkdir -p "$out/logs"
# No -fopenmp: single-threaded kernels keep each execution deterministic and cheap. Every sanitizer
# report stops the run; nothing is suppressed. libjpeg-turbo, yaml-cpp and zlib are Debian's shared
# libraries, linked as they are (not instrumented; ASan still checks what they do through memcpy,
# malloc and the other intercepted calls, and OSS-Fuzz fuzzes all three upstream).
flags=(-std=c++17 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
       -Iinclude -I/usr/include/eigen3)
for t in "${targets[@]}"; do
  [ -f "tests/fuzz/$t.cpp" ] || { echo "fuzz: no tests/fuzz/$t.cpp" >&2; exit 2; }
  if [ ! -x "$out/$t" ] || [ -n "$(find include tests/fuzz/$t.cpp scripts/fuzz.sh -newer "$out/$t" -print -quit)" ]; then
    echo "fuzz: building $out/$t"
    extra=()  # the medical formats' readers link their libraries (docs/formats.md)
    [ "$t" = fuzz_dicom ] && extra=(-I/usr/include/gdcm-3.0 -DMEDIMG_WITH_DICOM=1 -lgdcmMSFF -lgdcmDICT -lgdcmDSED -lgdcmCommon)
    [ "$t" = fuzz_nifti ] && extra=(-I/usr/include/nifti -DMEDIMG_WITH_NIFTI=1 -lnifti2 -lznz -lm)
    "$CXX" "${flags[@]}" "tests/fuzz/$t.cpp" -o "$out/$t" "${extra[@]}" -lyaml-cpp -ljpeg -lz || exit 1
  fi
done

status=0
printf '%-18s %8s %12s %10s %8s  %s\n' target seconds executions exec/s corpus findings > "$out/summary.txt"
for t in "${targets[@]}"; do
  mkdir -p "$out/corpus/$t" "$out/artifacts/$t"
  echo "fuzz: running $t for $secs s"
  maxlen=65536  # images, safetensors, checkpoints, .pth: room for the seeds and bigger headers
  [ "$t" = fuzz_config ] && maxlen=8192  # a config is a few hundred bytes; longer inputs only slow YAML down
  [ "$t" = fuzz_metadata ] && maxlen=4096  # key=value lines over a valid checkpoint's metadata
  # GDCM 3.0.21 leaks about 22 KB in its libjpeg error path on every corrupt JPEG frame
  # (docs/formats.md): leak detection is off for fuzz_dicom, on for the others.
  leaks=1
  [ "$t" = fuzz_dicom ] && leaks=0
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=$leaks \
    "$out/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=$maxlen -print_final_stats=1 \
      -artifact_prefix="$out/artifacts/$t/" "$out/corpus/$t" "tests/fuzz/corpus/$t" > "$out/logs/$t.log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/logs/$t.log" | grep -o '[0-9]*$' | tail -1)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$out/logs/$t.log" | grep -o '[0-9]*$' | tail -1)
  units=$(find "$out/corpus/$t" -type f | wc -l)
  findings=$(find "$out/artifacts/$t" -type f | wc -l)
  [ "$rc" -ne 0 ] && { status=1; tail -n 40 "$out/logs/$t.log"; }
  printf '%-18s %8s %12s %10s %8s  %s\n' "$t" "$secs" "${execs:-?}" "${rate:-?}" "$units" "$findings (exit $rc)" >> "$out/summary.txt"
done
cat "$out/summary.txt"
exit $status
