#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Data-parallel scaling on one machine (docs/distributed.md): ResNet18 (MODEL) on 128 px (SIZE)
# phantoms, global batch 16, three epochs, as 1 process x 2 threads, 2 ranks x 1 thread, and 2
# ranks x 1 thread with SyncBatchNorm, twice each; then medimg-allreduce. Quote the medians of the
# epoch lines 2 and 3 ("img/s" is training throughput; "all-reduce wait" the exposed communication).
# Usage: benchmarks/dist/scaling.sh BUILD_DIR   (run on a quiet machine; not part of the tests)
set -u
build=$(cd "${1:-build}" && pwd)
B=$build/examples
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
size=${SIZE:-128}
"$B/medimg-phantoms" --out data --size "$size" --train 128 --val 16 --test 2 > /dev/null
cat > c.yaml <<YAML
data: {train: data/train, val: data/val, test: "", image_size: $size, resize: $size, channels: 1, mean: [0.3], std: [0.25]}
model: {name: ${MODEL:-resnet18}}
train: {epochs: 3, batch_size: 16, optimizer: sgd, lr: 0.001, momentum: 0.9, seed: 1}
runtime: {threads: 2, workers: 1}
output: {dir: one}
YAML
lscpu | grep "Model name"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
two=(mpirun -np 2 --bind-to none "$B/medimg-train" --config c.yaml --set runtime.distributed=mpi --set runtime.threads=1
     --set train.batch_size=8)
for _ in 1 2; do
    "$B/medimg-train" --config c.yaml | grep "^epoch [23]" | sed "s/^/1 x 2 threads: /"
    "${two[@]}" --set output.dir=two | grep "^epoch [23]" | sed "s/^/2 ranks x 1: /"
    "${two[@]}" --set output.dir=sync --set model.sync_bn=true | grep "^epoch [23]" | sed "s/^/2 ranks x 1, SyncBatchNorm: /"
done
mpirun -np 2 --bind-to none "$build/benchmarks/medimg-allreduce" 44.7 25 1
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
