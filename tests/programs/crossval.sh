#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# medimg-crossval end to end (ctest: programs.crossval): 3 folds of a tiny phantom set with a
# groups CSV, 1 epoch each. Requires: every pooled image exactly once in oof.csv; the images of a
# group in one fold; folds.csv with one row per fold; report.html with the per-fold section and
# its figures embedded (tests/programs/report.sh opens such a page in a browser); a second run resumes (every fold "done
# earlier") and writes the same oof.csv; a fold whose result is removed is redone from its last
# checkpoint with the same numbers. Then patients in subfolders of the class folders: without
# --group-by-folder a note says how to keep them whole, with it each patient's images share a fold;
# with MEDIMG_TEST_NIFTI=1 a .nii.gz volume among them is read in every fold (its links once lost
# the .nii.gz and the volume was dropped without a word).
# Usage: crossval.sh BIN_DIR [DATA_DIR]
set -uo pipefail
bin=$(cd "$1" && pwd)
data_dir=${2:+$(cd "$2" && pwd)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cd "$work" || exit 1
"$bin/medimg-phantoms" --out data --size 32 --train 24 --val 12 --test 2 > /dev/null || fail "medimg-phantoms"
cat > cv.yaml <<YAML
data: {train: data/train, val: data/val, test: "", image_size: 32, resize: 32, channels: 1, mean: [0.3], std: [0.25],
       augment: {random_resized_crop: false}}
train: {epochs: 1, batch_size: 8, optimizer: adam, seed: 3}
runtime: {workers: 2}
output: {dir: out}
YAML
# Groups: slices 0000-0002 of each training class folder form one "patient" per class.
{ echo "path,group"
  for c in normal lesao; do for i in 0000 0001 0002; do echo "data/train/$c/$i.png,patient_$c"; done; done; } > groups.csv
"$bin/medimg-crossval" --config cv.yaml --folds 3 --groups groups.csv > run1.log 2>&1 || { cat run1.log; fail "the first run failed"; }
oof=out/crossval/oof.csv
[ "$(($(wc -l < $oof) - 1))" -eq 36 ] || fail "oof.csv has $(($(wc -l < $oof) - 1)) rows, expected 36"
[ "$(tail -n +2 $oof | cut -d, -f3 | sort | uniq -d | wc -l)" -eq 0 ] || fail "an image appears twice in oof.csv"
for c in normal lesao; do
  n=$(grep -E "/data/train/$c/000[012]\.png," $oof | cut -d, -f2 | sort -u | wc -l)
  [ "$n" -eq 1 ] || fail "the group patient_$c is split over $n folds"
done
[ "$(($(wc -l < out/crossval/folds.csv) - 1))" -eq 3 ] || fail "folds.csv does not have 3 rows"
grep -q "^out-of-fold (pooled, 36 predictions): ROC AUC" run1.log || { cat run1.log; fail "no pooled out-of-fold line"; }
rep=out/crossval/report.html
[ -s $rep ] || fail "no report.html"
grep -q "Cross-validation folds" $rep || fail "the report has no per-fold section"
[ "$(grep -o '<img src="data:image/png;base64,' $rep | wc -l)" -ge 7 ] || fail "the report has fewer than 7 embedded figures"
cp $oof oof1.csv
"$bin/medimg-crossval" --config cv.yaml --folds 3 --groups groups.csv > run2.log 2>&1 || { cat run2.log; fail "the second run failed"; }
[ "$(grep -c 'done earlier' run2.log)" -eq 3 ] || { cat run2.log; fail "the second run did not resume every fold"; }
cmp -s $oof oof1.csv || fail "a resumed run changed oof.csv"
rm out/crossval/r0/fold1/test_probabilities.json
"$bin/medimg-crossval" --config cv.yaml --folds 3 --groups groups.csv > run3.log 2>&1 || { cat run3.log; fail "the third run failed"; }
grep -q "fold 1: train .* (resuming)" run3.log || { cat run3.log; fail "fold 1 was not redone from its checkpoint"; }
cmp -s $oof oof1.csv || fail "redoing fold 1 changed oof.csv"

# Patients in subfolders: train/<class>/p<k>/<slice>.png, val likewise, p1 and p2 under both classes.
mkdir -p nested
for split in train val; do
  for c in normal lesao; do
    for k in 1 2 3; do
      mkdir -p "nested/$split/$c/p$k$split"
      for i in 0 1; do cp "data/$split/$c/$(printf '%04d' $((2 * k - 2 + i))).png" "nested/$split/$c/p$k$split/000$i.png"; done
    done
  done
done
mkdir -p nested/train/normal/p1train/sub  # deeper folders belong to their patient
cp data/train/normal/0010.png nested/train/normal/p1train/sub/0002.png
cp data/train/lesao/0011.png nested/train/lesao/0011.png  # straight in the class folder: its own group
expected=26
if [ "${MEDIMG_TEST_NIFTI:-0}" = 1 ] && [ -n "$data_dir" ]; then
  cp "$data_dir/nifti/oblique_sform.nii.gz" nested/train/lesao/p2train/vol.nii.gz
  slices=5
  expected=$((expected + 1))
fi
sed -e 's#data/train#nested/train#; s#data/val#nested/val#; s#dir: out#dir: out_nested#' cv.yaml > nested.yaml
"$bin/medimg-crossval" --config nested.yaml --folds 3 > run4.log 2>&1 || { cat run4.log; fail "the nested run failed"; }
grep -q "^crossval: $expected images (train + val pooled)" run4.log || { cat run4.log; fail "expected $expected pooled files"; }
grep -q "^note: 25 of the images lie in subfolders of their class folders; if a subfolder holds one patient, --group-by-folder" run4.log ||
  [ "$expected" -ne 26 ] || { cat run4.log; fail "no note about --group-by-folder"; }
rm -rf out_nested
"$bin/medimg-crossval" --config nested.yaml --folds 3 --group-by-folder > run5.log 2>&1 || { cat run5.log; fail "the --group-by-folder run failed"; }
grep -q "groups by subfolder" run5.log || { cat run5.log; fail "no 'groups by subfolder'"; }
! grep -q "^note: .* lie in subfolders" run5.log || fail "the subfolder note printed with --group-by-folder"
oof=out_nested/crossval/oof.csv
[ "$(tail -n +2 $oof | cut -d, -f3 | sed 's/\[[0-9]*\]$//' | sort -u | wc -l)" -eq "$expected" ] ||
  fail "oof.csv holds $(tail -n +2 $oof | cut -d, -f3 | sed 's/\[[0-9]*\]$//' | sort -u | wc -l) files, expected $expected"
for p in p1train p2train p3train p1val p2val p3val; do  # one patient: one fold, across both classes
  n=$(grep "/$p/" $oof | cut -d, -f2 | sort -u | wc -l)
  [ "$n" -eq 1 ] || fail "patient $p is split over $n folds"
done
if [ "$expected" -eq 27 ]; then
  [ "$(grep -c '/vol.nii.gz\[' $oof)" -eq $slices ] || fail "the .nii.gz volume's $slices slices are not all out of fold"
fi
echo "crossval: passed (36 out-of-fold predictions, groups whole, resume reproduces oof.csv; $expected nested files, patients whole)"
