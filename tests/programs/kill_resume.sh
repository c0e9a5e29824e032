#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Kill-and-resume test of medimg-train (ctest: programs.kill_resume). Trains a tiny ResNet18 once
# without interruption (the reference), then trains it again while killing the process with
# SIGKILL several times, restarting with --resume whenever last.safetensors exists (from scratch
# otherwise), until the run finishes. Requires:
#   - after every kill: best/last checkpoints that exist load (medimg-predict reads them whole and
#     loads the weights) and metrics.csv is complete (header plus rows 1..n, no torn line);
#   - at the end: metrics.csv identical to the reference's except the wall-clock seconds column,
#     and best.safetensors and last.safetensors byte-identical to the reference's (weights,
#     optimizer state, schedule, metrics in the metadata);
#   - no temporary checkpoint files left behind once the run has finished.
# The kills: one early (usually before the first checkpoint exists, so the restart is without
# --resume), one while last.safetensors is being replaced (its *.tmp-* file exists), the rest at
# random moments. Delays come from $RANDOM seeded by KILL_SEED (default below); the moments themselves
# depend on the machine's speed, so they are printed.
# Usage: kill_resume.sh BIN_DIR [KILLS]
set -uo pipefail
bin=$1
kills=${2:-4}
RANDOM=${KILL_SEED:-8}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
T="$bin/medimg-train"
P="$bin/medimg-predict"
fail() { echo "FAIL: $*"; exit 1; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

"$bin/medimg-phantoms" --out "$work/data" --size 32 --train 16 --val 8 --test 2 > /dev/null || fail "medimg-phantoms"
img=$work/data/val/lesao/0000.png
# Augmentation (random crops, flips), a cosine schedule and Adam: every RNG stream and every piece
# of optimizer/scheduler state has to survive the restarts for the results to match.
cat > "$work/cfg.yaml" <<YAML
data: {train: $work/data/train, val: $work/data/val, test: "", image_size: 32, resize: 32, channels: 1,
       mean: [0.3], std: [0.25], augment: {random_resized_crop: true, hflip: true, brightness: 0.2}}
train: {epochs: 5, batch_size: 4, optimizer: adam, scheduler: cosine, warmup_epochs: 1, seed: 3}
runtime: {workers: 2}
output: {dir: $work/out}
YAML
ck=$work/out/checkpoints

# The reference, in the same output folder (the config, stored in the checkpoints, must match);
# then moved aside.
t0=$(now_ms)
"$T" --config "$work/cfg.yaml" > "$work/ref.log" 2>&1 || { cat "$work/ref.log"; fail "the reference run failed"; }
t_ref=$(($(now_ms) - t0))
mv "$work/out" "$work/ref"
echo "reference run: ${t_ref} ms"

# Checks that whatever a kill left behind is usable.
check_state() {
  local what=$1 f
  for f in best last; do
    if [ -e "$ck/$f.safetensors" ]; then
      "$P" --checkpoint "$ck/$f.safetensors" --image "$img" > "$work/predict.log" 2>&1 ||
        { cat "$work/predict.log"; fail "$what: $f.safetensors does not load"; }
    fi
  done
  if [ -e "$work/out/metrics.csv" ]; then
    awk -F, 'NR == 1 { ok = ($0 == "epoch,train_loss,train_acc,val_loss,val_acc,val_auc,lr,seconds"); next }
             { ok = ok && NF == 8 && $1 == NR - 1 } END { exit !(ok && NR >= 2) }' "$work/out/metrics.csv" ||
      { cat "$work/out/metrics.csv"; fail "$what: metrics.csv is torn or incomplete"; }
  fi
}

# start: launches medimg-train in the background (--resume when last.safetensors exists).
start() {
  local resume=()
  [ -e "$ck/last.safetensors" ] && resume=(--resume)
  echo "  start ${resume[*]:-(from scratch)}" >> "$work/kills.log"
  "$T" --config "$work/cfg.yaml" "${resume[@]}" >> "$work/run.log" 2>&1 &
  pid=$!
}
# kill_now WHAT: SIGKILL the running trainer (if it is still running) and check what it left.
kill_now() {
  if kill -9 "$pid" 2> /dev/null; then
    wait "$pid" 2> /dev/null
    echo "  killed: $1" >> "$work/kills.log"
  else
    wait "$pid" || fail "medimg-train failed before it could be killed ($1): $(tail -n 3 "$work/run.log")"
    echo "  finished before the kill: $1" >> "$work/kills.log"
  fi
  check_state "after kill ($1)"
}

for ((k = 1; k <= kills; ++k)); do
  start
  if [ "$k" -eq 1 ]; then
    delay=$((RANDOM % 300))  # ms; start-up alone takes longer, so usually no checkpoint exists yet
    sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
    kill_now "early, after $delay ms"
  elif [ "$k" -eq 2 ]; then
    # Poll until last.safetensors is being replaced (it exists and a temporary file is beside
    # it), then kill: the rename has not happened, so the old last must still load.
    caught=
    deadline=$(($(now_ms) + 3 * t_ref))
    while [ "$(now_ms)" -lt "$deadline" ] && kill -0 "$pid" 2> /dev/null; do
      if [ -e "$ck/last.safetensors" ] && compgen -G "$ck/last.safetensors.tmp-*" > /dev/null; then caught=1; break; fi
      sleep 0.002
    done
    kill_now "during a write of last.safetensors${caught:+ (temporary file seen)}"
  else
    delay=$((RANDOM % t_ref))
    sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
    kill_now "after $delay ms"
  fi
done
# Run to completion.
start
wait "$pid" || { tail -n 5 "$work/run.log"; fail "the final resumed run failed"; }
check_state "final"
sed 's/^/kill_resume:/' "$work/kills.log"

# The results must equal the reference's.
cut -d, -f1-7 "$work/ref/metrics.csv" > "$work/ref.csv"
cut -d, -f1-7 "$work/out/metrics.csv" > "$work/out.csv"
diff "$work/ref.csv" "$work/out.csv" || fail "metrics.csv differs from the uninterrupted run's (seconds column excluded)"
for f in best last; do
  cmp "$work/ref/checkpoints/$f.safetensors" "$ck/$f.safetensors" ||
    fail "$f.safetensors differs from the uninterrupted run's"
done
leftovers=$(find "$ck" -name '*.tmp*' | wc -l)
[ "$leftovers" -eq 0 ] || { ls -la "$ck"; fail "$leftovers temporary files left in $ck"; }
echo "kill_resume: passed ($kills kills; metrics.csv rows and checkpoints identical to the uninterrupted run)"
