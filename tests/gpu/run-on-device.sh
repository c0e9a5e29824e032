#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs the CUDA tests and the GPU benchmarks on a GPU machine (no network) from a bundle made by
# tests/gpu/pack.sh, and writes a summary. Made for the device tool's H100/H200 machines: nvcc 13,
# PyTorch in python3, cuDNN and cuBLAS as Python wheels (nvidia-cudnn-cu13, nvidia-cublas), whose
# lib folders go on LD_LIBRARY_PATH. Run from the repository root (tests/data and benchmarks/ are
# read from there). Budget: under 6 minutes (each step has a timeout; see the numbers below).
# Usage: tests/gpu/run-on-device.sh [BUNDLE_DIR] [OUT_DIR]
#   BUNDLE_DIR  default build-gpu/bundle;  OUT_DIR  default $OUT (the device tool's) or gpu-results
# Writes OUT_DIR/{summary.md, env.txt, test_cuda.log, train_gpu.log, train_gpu_metrics.csv, bench_gpu.json,
#   bench_gpu.txt, bench_pytorch.jsonl}.
set -uo pipefail
bundle=${1:-build-gpu/bundle}
out=${2:-${OUT:-gpu-results}}
mkdir -p "$out"
t0=$(date +%s)
log() { echo "[run-on-device $(($(date +%s) - t0))s] $*"; }

# ---- libraries: the wheels' lib folders (cuDNN, cuBLAS, the CUDA runtime), then the toolkit ----
libdirs=$(python3 - <<'PY' 2>/dev/null
import importlib, os, sys, glob
seen = []
def add(d):
    if d and os.path.isdir(d) and d not in seen:
        seen.append(d)
for name in ("nvidia.cudnn", "nvidia.cublas", "nvidia.cuda_runtime", "nvidia.cu13"):
    try:
        m = importlib.import_module(name)
    except Exception:
        continue
    paths = list(getattr(m, "__path__", []) or [])
    if getattr(m, "__file__", None):
        paths.append(os.path.dirname(m.__file__))
    for p in paths:
        add(os.path.join(p, "lib"))
# Fallback: wherever the sonames are under site-packages/nvidia.
for sp in sys.path:
    for so in ("libcudnn.so.9", "libcublas.so.13", "libcudart.so.13"):
        for f in glob.glob(os.path.join(sp, "nvidia", "**", so), recursive=True):
            add(os.path.dirname(f))
print(":".join(seen))
PY
)
# bundle/lib last: its libgomp is a fallback; the machine's own runtime libraries come first.
export LD_LIBRARY_PATH="${libdirs}:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}:$bundle/lib"
export MEDIMG_TEST_DATA_DIR="$PWD/tests/data"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "bundle: $bundle ($(tr '\n' ' ' < "$bundle/COMMIT" 2>/dev/null))"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
  echo "nvcc: $(nvcc --version 2>/dev/null | tail -1)"
  echo "python3: $(python3 -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, "cudnn", torch.backends.cudnn.version())' 2>&1)"
  echo "LD_LIBRARY_PATH: $LD_LIBRARY_PATH"
  echo "missing libraries:"
  for exe in "$bundle"/bin/*; do ldd "$exe" | grep "not found" | sed "s|^|  $(basename "$exe"): |"; done
} > "$out/env.txt" 2>&1
cat "$out/env.txt"

# ---- 1. the CUDA tests (~1-2 min) ----
log "test_cuda"
timeout 170 "$bundle/bin/test_cuda" --log_level=test_suite --report_level=detailed --color_output=false \
  > "$out/test_cuda.log" 2>&1
tests_rc=$?
tail -5 "$out/test_cuda.log"
log "test_cuda exit code $tests_rc (0 = all passed, 77 = skipped: no device, 124 = timed out)"

# ---- 1b. medimg-train on the GPU, end to end (~20-40 s): the fit loop with pinned staging, the
# on-device accuracy count and gradient clipping, on phantom slices written to a scratch folder
# (not under $out: PNGs and checkpoints would not come back). metrics.csv and the log do. ----
log "medimg-train on the GPU (phantom data, 2 epochs)"
scratch=$(mktemp -d)
{ timeout 20 "$bundle/bin/medimg-phantoms" --out "$scratch/data" --size 64 --train 256 --val 64 --test 64 &&
  timeout 60 "$bundle/bin/medimg-train" --config configs/demo.yaml --set runtime.device=cuda --set train.epochs=2 \
    --set train.grad_clip_norm=5 --set "data.train=$scratch/data/train" --set "data.val=$scratch/data/val" \
    --set "data.test=$scratch/data/test" --set "output.dir=$scratch/artifacts"; } > "$out/train_gpu.log" 2>&1
train_rc=$?
cp "$scratch/artifacts/metrics.csv" "$out/train_gpu_metrics.csv" 2>/dev/null
tail -4 "$out/train_gpu.log"
log "medimg-train exit code $train_rc"
# The same in fp16 (mixed precision with dynamic loss scaling), one epoch (~15 s).
log "medimg-train on the GPU in fp16 (1 epoch)"
timeout 30 "$bundle/bin/medimg-train" --config configs/demo.yaml --set runtime.device=cuda --set runtime.precision=fp16 \
  --set train.epochs=1 --set "data.train=$scratch/data/train" --set "data.val=$scratch/data/val" \
  --set "data.test=$scratch/data/test" --set "output.dir=$scratch/artifacts-fp16" > "$out/train_gpu_fp16.log" 2>&1
train16_rc=$?
rm -rf "$scratch"
tail -3 "$out/train_gpu_fp16.log"
log "medimg-train (fp16) exit code $train16_rc"

# ---- 2. medimg's GPU benchmark (~1-1.5 min) ----
log "medimg-bench-gpu"
timeout 130 "$bundle/bin/medimg-bench-gpu" --benchmark_out="$out/bench_gpu.json" --benchmark_out_format=json \
  > "$out/bench_gpu.txt" 2>&1
bench_rc=$?
cat "$out/bench_gpu.txt" | tail -12
log "medimg-bench-gpu exit code $bench_rc"

# ---- 3. PyTorch on the same workloads (~1-1.5 min; --quick if little time is left) ----
left=$((330 - ($(date +%s) - t0)))
quick=""
[ "$left" -lt 90 ] && quick="--quick"
log "bench_gpu_pytorch.py $quick (${left}s left)"
timeout $((left > 20 ? left - 10 : 10)) python3 benchmarks/bench_gpu_pytorch.py $quick > "$out/bench_pytorch.jsonl" 2> "$out/bench_pytorch.err"
torch_rc=$?
log "bench_gpu_pytorch.py exit code $torch_rc"

# ---- 4. the summary ----
python3 tests/gpu/summarize.py "$out" "$tests_rc" "$bench_rc" "$torch_rc" > "$out/summary.md"
{
  echo
  echo "## medimg-train on the GPU (phantom slices, 2 epochs, grad_clip_norm 5)"
  echo "exit code $train_rc"
  echo '```'
  tail -4 "$out/train_gpu.log"
  echo '```'
  echo
  echo "## medimg-train on the GPU in fp16 (dynamic loss scaling, 1 epoch)"
  echo "exit code $train16_rc"
  echo '```'
  tail -3 "$out/train_gpu_fp16.log"
  echo '```'
} >> "$out/summary.md"
cat "$out/summary.md"
log "done"
[ "$tests_rc" -eq 0 ] && [ "$train_rc" -eq 0 ] && [ "$train16_rc" -eq 0 ]
