#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The demo (`make demo`): the prototype's whole workflow on generated data, with the programs a
# user runs. 1) medimg-phantoms writes 16-bit phantom slices to build/demo/data (never touching a
# data/ folder of yours); 2) medimg-train trains ResNet18 from scratch on the CPU (configs/demo.yaml);
# 3) medimg-predict classifies a held-out image and shows where the model looked (Grad-CAM);
# 4) medimg-compare aligns a follow-up exam (the same phantom with a lesion, in another pose) to its
#    normal reference and shows where they differ.
# Research software: not for clinical diagnosis.
set -euo pipefail
BUILD=${BUILD:-build}
bin=$BUILD/examples
demo=$BUILD/demo
if [ ! -d "$demo/data" ]; then
  "$bin/medimg-phantoms" --out "$demo/data" --size 64 --train 600 --val 200 --test 200
else
  echo "using the existing $demo/data"
fi
rm -rf "$demo/artifacts"
start=$(date +%s)
"$bin/medimg-train" --config configs/demo.yaml --set "data.train=$demo/data/train" --set "data.val=$demo/data/val" \
  --set "data.test=$demo/data/test" --set "output.dir=$demo/artifacts"
echo "training took $(( $(date +%s) - start )) s"
echo
echo "== medimg-predict on a held-out lesion slice, with a Grad-CAM overlay =="
"$bin/medimg-predict" --checkpoint "$demo/artifacts/checkpoints/best.safetensors" --image "$demo/data/test/lesao/0003.png" \
  --explain gradcam --explain-out "$demo/explanations"
echo
echo "== medimg-compare: a normal exam vs a follow-up with a lesion, taken in another pose =="
# the same phantom twice: without a lesion, then with one, turned and shifted (pairs.csv: the truth)
[ -d "$demo/pairs" ] || "$bin/medimg-phantoms" --out "$demo/pairs" --pairs 8 --size 128
"$bin/medimg-compare" --reference "$demo/pairs/0000_reference.png" --target "$demo/pairs/0000_moved_lesion.png" \
  --panel "$demo/compare-panel.png" --ssim-map "$demo/ssim-map.png" --diff-map "$demo/diff-map.png"
echo
echo "artifacts: $demo/artifacts/metrics.csv, $demo/artifacts/checkpoints/{best,last}.safetensors, $demo/compare-panel.png,"
echo "           $demo/{ssim,diff}-map.png, $demo/explanations/0003_gradcam.png"
