#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# medimg-train under mpirun (ctest: dist.train; docs/distributed.md), two processes of one thread:
#   resume   a run stopped after epoch 1 and resumed on 2 ranks ends with the metrics of the
#            uninterrupted 2-rank run (the seconds column aside); resumed on 1 process instead it
#            runs on, saying that the global batch changed;
#   kill     SIGKILL of rank 1 during training ends the job (mpirun exits non-zero within 60 s),
#            rank 0 says in one line that it was stopped, last.safetensors still loads;
#   hang     SIGSTOP of rank 1: rank 0's watchdog ends the job after runtime.dist_timeout (3 s
#            here) with one line naming the wait (rank 1, continued and ended by mpirun, may add
#            a line of its own: stopped by the launcher, or its own watchdog's);
#   refusals runtime.distributed mpi without mpirun, ranks whose configurations differ, more
#            ranks than images in a split: one line each (from rank 0), exit status non-zero.
# Usage: train.sh BIN_DIR MPIEXEC
set -uo pipefail
bin=$(cd "$1" && pwd)
mpiexec=$2
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2> /dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
T="$bin/medimg-train"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
run2() { "$mpiexec" -np 2 "$@"; }
cd "$work" || exit 1
"$bin/medimg-phantoms" --out data --size 32 --train 16 --val 8 --test 4 > /dev/null || fail "medimg-phantoms"
cat > d.yaml <<YAML
data: {train: data/train, val: data/val, test: data/test, image_size: 32, resize: 32, channels: 1, mean: [0.3], std: [0.25],
       augment: {random_resized_crop: true, hflip: true}}
model: {name: resnet18, sync_bn: true}
train: {epochs: 2, batch_size: 4, optimizer: adam, lr: 0.001, scheduler: cosine, seed: 4}
runtime: {threads: 1, workers: 1, distributed: mpi}
output: {dir: full}
YAML
# Only the lines of medimg-train itself (mpirun adds its own boxed report when a rank fails).
ours() { grep -a '^medimg-train:' "$1"; }
one_line() {  # FILE PATTERN: exactly one line of ours, matching
    local n
    n=$(ours "$1" | wc -l)
    [ "$n" = 1 ] || { cat "$1"; fail "$2: expected one line from medimg-train, got $n"; }
    ours "$1" | grep -q -- "$3" || { cat "$1"; fail "$2: the line does not say '$3'"; }
}
metrics_sans_seconds() { cut -d, -f1-7 "$1"; }

# --- resume ---------------------------------------------------------------------------------------
run2 "$T" --config d.yaml > full.log 2>&1 || { cat full.log; fail "the uninterrupted 2-rank run"; }
grep -q "2 processes (global batch 8, SyncBatchNorm)" full.log || { cat full.log; fail "the model line does not report 2 processes"; }
[ "$(grep -c '^epoch' full.log)" = 2 ] || { cat full.log; fail "rank 0 alone should print the epoch lines (2)"; }
grep -q "^test (best checkpoint)" full.log || { cat full.log; fail "no test report"; }
run2 "$T" --config d.yaml --set output.dir=part --stop-after-epoch 1 > part1.log 2>&1 || { cat part1.log; fail "the run stopped after epoch 1"; }
cp -r part part_copy
run2 "$T" --config d.yaml --set output.dir=part --resume > part2.log 2>&1 || { cat part2.log; fail "--resume on 2 ranks"; }
grep -q "resuming after epoch 1" part2.log || { cat part2.log; fail "no resume line"; }
diff <(metrics_sans_seconds full/metrics.csv) <(metrics_sans_seconds part/metrics.csv) > /dev/null ||
    { paste -d'\n' full/metrics.csv part/metrics.csv; fail "resumed on 2 ranks, the metrics differ from the uninterrupted run"; }
"$T" --config d.yaml --set output.dir=part_copy --set runtime.distributed=none --resume > one.log 2>&1 ||
    { cat one.log; fail "--resume on 1 process of a 2-rank run"; }
grep -q "note: trained on 2 processes before, 1 now: the global batch is 4 (was 8)" one.log ||
    { cat one.log; fail "resuming on another number of processes is not said"; }
[ "$(wc -l < part_copy/metrics.csv)" = 3 ] || fail "the 1-process resume did not add epoch 2"
echo "resume: on 2 ranks equal to the uninterrupted run; on 1 process it runs on and says so"

# --- kill -----------------------------------------------------------------------------------------
rank_pid() {  # the pid of medimg-train rank $1 of the job whose config is $2
    for p in $(pgrep -f "medimg-train --config $2"); do
        if tr '\0' '\n' < "/proc/$p/environ" 2> /dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1"; then echo "$p"; return; fi
    done
}
sed -e 's/epochs: 2/epochs: 200/' -e 's/dir: full/dir: long/' d.yaml > k.yaml
run2 "$T" --config "$work/k.yaml" > kill.log 2>&1 &
job=$!
pids+=("$job")
for _ in $(seq 600); do [ -s long/checkpoints/last.safetensors ] && break; sleep 0.1; done
[ -s long/checkpoints/last.safetensors ] || { cat kill.log; fail "kill: no checkpoint after 60 s"; }
victim=$(rank_pid 1 "$work/k.yaml")
[ -n "$victim" ] || fail "kill: rank 1 not found"
start=$(date +%s)
kill -9 "$victim"
for _ in $(seq 600); do kill -0 "$job" 2> /dev/null || break; sleep 0.1; done
kill -0 "$job" 2> /dev/null && fail "kill: the job still runs 60 s after rank 1 was killed"
wait "$job"
rc=$?
[ "$rc" != 0 ] || { cat kill.log; fail "kill: mpirun exited 0"; }
one_line kill.log "kill" "rank 0: stopped by the launcher"
"$bin/medimg-predict" --checkpoint long/checkpoints/last.safetensors --image data/val/lesao/0000.png > /dev/null 2>&1 ||
    fail "kill: last.safetensors does not load"
echo "kill: the job ended $(($(date +%s) - start)) s after rank 1 was killed (exit $rc); the last checkpoint loads"

# --- hang -----------------------------------------------------------------------------------------
sed -e 's/dir: long/dir: hang/' k.yaml > h.yaml
run2 "$T" --config "$work/h.yaml" --set runtime.dist_timeout=3 > hang.log 2>&1 &
job=$!
pids+=("$job")
for _ in $(seq 600); do [ -s hang/checkpoints/last.safetensors ] && break; sleep 0.1; done
victim=$(rank_pid 1 "$work/h.yaml")
[ -n "$victim" ] || { cat hang.log; fail "hang: rank 1 not found"; }
pids+=("$victim")
start=$(date +%s)
kill -STOP "$victim"
for _ in $(seq 600); do kill -0 "$job" 2> /dev/null || break; sleep 0.1; done
kill -0 "$job" 2> /dev/null && fail "hang: the job still runs 60 s after rank 1 stopped"
wait "$job"
rc=$?
[ "$rc" != 0 ] || { cat hang.log; fail "hang: mpirun exited 0"; }
# rank 0's watchdog line
ours hang.log | grep -q "rank 0: waited [0-9]* s in MPI_[A-Za-z]* for the other ranks (runtime.dist_timeout): a rank died or hangs" ||
    { cat hang.log; fail "hang: no watchdog line from rank 0"; }
# rank 1, continued by mpirun, says it was stopped, or its own watchdog (the stop counted as waiting) speaks first
[ "$(ours hang.log | grep -cv -e 'rank 0: waited' -e 'rank 1: stopped by the launcher' -e 'rank 1: waited [0-9]* s in MPI_')" = 0 ] ||
    { cat hang.log; fail "hang: other lines from medimg-train"; }
echo "hang: the job ended $(($(date +%s) - start)) s after rank 1 stopped (exit $rc)"

# --- refusals -------------------------------------------------------------------------------------
"$T" --config d.yaml > solo.log 2>&1 && fail "runtime.distributed mpi without mpirun was accepted"
one_line solo.log "without mpirun" "'runtime.distributed' is mpi but this process was not started by an MPI launcher"
"$mpiexec" -np 1 "$T" --config d.yaml --set output.dir=x : -np 1 "$T" --config d.yaml --set output.dir=x --set train.lr=0.5 \
    > differ.log 2>&1 && fail "ranks with different configurations were accepted"
one_line differ.log "configs differ" "the configuration (file and --set) differs between ranks (rank 1 against rank 0)"
mkdir -p tiny/normal tiny/lesao
cp data/val/normal/0000.png tiny/normal/ 2> /dev/null || cp "$(ls data/val/normal/* | head -1)" tiny/normal/
cp "$(ls data/val/lesao/* | head -1)" tiny/lesao/
"$mpiexec" -np 3 "$T" --config d.yaml --set output.dir=x --set data.val=tiny > big.log 2>&1 && fail "more ranks than images were accepted"
one_line big.log "world > data" "3 ranks but data.val ('tiny') holds 2 images; every rank needs at least one image of each split"
echo "refusals: one line each"
