#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# DICOM end to end (ctest: programs.dicom; docs/formats.md): medimg-phantoms --format dicom writes
# CT slices in HU, medimg-train trains on them with the brain window (an extension-less DICOM
# file and a multi-frame one among them), medimg-predict and medimg-evaluate (--report) run on
# DICOM, and nothing any program printed or wrote contains a DICOM patient attribute: the files
# carry recognisable fakes (the fixtures' "Fixture^Jane" ..., the phantoms' "Phantom^Synthetic").
# Usage: dicom.sh BIN_DIR TESTS_DATA_DIR
set -uo pipefail
bin=$1
data=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
passes=0
check() {  # check NAME COMMAND...: the command must succeed
  local name=$1
  shift
  if "$@" >> "$work/all.log" 2>&1; then passes=$((passes + 1)); else fails=$((fails + 1)); echo "FAIL: $name"; tail -5 "$work/all.log"; fi
}

check "phantoms --format dicom" "$bin/medimg-phantoms" --out "$work/data" --format dicom --size 32 --train 24 --val 8 --test 8
cp "$data/dicom/ct_hu.dcm" "$work/data/train/normal/IM0001"       # no extension: found by its 'DICM'
cp "$data/dicom/mf_frames.dcm" "$work/data/train/lesao/frames.dcm"  # three frames: three samples
cat > "$work/dicom.yaml" <<YAML
data: {train: $work/data/train, val: $work/data/val, test: $work/data/test, image_size: 32, resize: 32, channels: 1,
       window: brain, mean: [0.3], std: [0.3], augment: {random_resized_crop: false}}
train: {epochs: 2, batch_size: 8}
runtime: {workers: 2}
output: {dir: $work/out}
YAML
check "train on DICOM" "$bin/medimg-train" --config "$work/dicom.yaml"
grep -q "^train: 28 images" "$work/all.log" || { echo "FAIL: the training split is not 24 + 1 + 3 samples:"; grep "^train:" "$work/all.log"; fails=$((fails + 1)); }
ckpt=$work/out/checkpoints/best.safetensors
check "predict a DICOM folder" "$bin/medimg-predict" --checkpoint "$ckpt" --image "$work/data/test/lesao" --json
check "predict a multi-frame file" "$bin/medimg-predict" --checkpoint "$ckpt" --image "$data/dicom/mf_frames.dcm"
grep -qF "mf_frames.dcm[2]" "$work/all.log" || { echo "FAIL: predict does not name the frames of a multi-frame file"; fails=$((fails + 1)); }
check "predict with an explanation" "$bin/medimg-predict" --checkpoint "$ckpt" --image "$work/data/train/normal/IM0001" --explain gradcam \
  --explain-out "$work/maps" --json
check "evaluate with a report" "$bin/medimg-evaluate" --config "$work/dicom.yaml" --checkpoint "$ckpt" --split test --json --report "$work/report"
[ -s "$work/report/report.html" ] || { echo "FAIL: no report"; fails=$((fails + 1)); }

check "compare two DICOM exams under one window" "$bin/medimg-compare" --reference "$work/data/test/normal/0000.dcm" \
  --target "$work/data/test/normal/0001.dcm" --intensity brain --json
grep -qF '"intensity":"brain"' "$work/all.log" || { echo "FAIL: compare --json does not state the window"; fails=$((fails + 1)); }
check "anonymize a folder" "$bin/medimg-anonymize" "$work/data/test" "$work/anon"
[ "$(find "$work/anon" -name '*.dcm' | wc -l)" -eq 8 ] || { echo "FAIL: anonymize did not copy the 8 test files"; fails=$((fails + 1)); }
check "predict an anonymized copy" "$bin/medimg-predict" --checkpoint "$ckpt" --image "$work/anon/lesao/0000.dcm"

# Privacy: no patient, study or institution value of the inputs in anything written or printed
# (the anonymized copies included).
for s in "Fixture^Jane" "MEDIMG-FIXTURE-0001" "19700101" "1 Fixture Street" "Fixture General Hospital" "Referrer^Fixture" \
         "ACC-FIXTURE-42" "Phantom^Synthetic" "PHANTOM-"; do
  if grep -rlaF -- "$s" "$work/out" "$work/maps" "$work/report" "$work/anon" "$work/all.log" > "$work/hits" 2>/dev/null; then
    echo "FAIL: '$s' appears in:"; sed 's/^/    /' "$work/hits"; fails=$((fails + 1))
  else
    passes=$((passes + 1))
  fi
done
echo "dicom: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
