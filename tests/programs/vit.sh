#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A Vision Transformer through the programs (ctest: programs.vit): medimg-train with
# model.name=vit_tiny_patch16_224 and the recipe of configs/vit.yaml on a tiny phantom set at
# 32 px (a 2x2 patch grid), then medimg-predict --explain rollout and gradcam (overlays written),
# medimg-evaluate --report (its Grad-CAM gallery reads the ViT's tokens), and the checkpoint as
# model.pretrained of a ViT for 48 px inputs (its position grid resampled, said on one line).
# rollout on a ResNet checkpoint is refused in one line.
# Usage: vit.sh BIN_DIR
set -uo pipefail
bin=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cd "$work" || exit 1
"$bin/medimg-phantoms" --out data --size 32 --train 24 --val 12 --test 12 > /dev/null || fail "medimg-phantoms"
cat > v.yaml <<YAML
data: {train: data/train, val: data/val, test: data/test, image_size: 32, resize: 32, channels: 1, mean: [0.3], std: [0.25],
       augment: {random_resized_crop: false}}
train: {epochs: 1, batch_size: 8, seed: 3}
runtime: {workers: 2}
output: {dir: out}
YAML
"$bin/medimg-train" --config "$root/configs/vit.yaml" --set "data.train=data/train" --set "data.val=data/val" \
  --set "data.test=data/test" --set data.image_size=32 --set data.resize=32 --set data.channels=1 --set "data.mean=[0.3]" \
  --set "data.std=[0.25]" --set data.augment.random_resized_crop=false --set train.epochs=1 --set train.batch_size=8 \
  --set output.dir=out > train.log 2>&1 || { cat train.log; fail "medimg-train vit_tiny_patch16_224"; }
grep -q "model vit_tiny_patch16_224" train.log || { cat train.log; fail "the model line does not name the ViT"; }
grep -q "adamw" train.log || { cat train.log; fail "configs/vit.yaml's optimizer was not used"; }
ck=out/checkpoints/best.safetensors
[ -s $ck ] || fail "no checkpoint"
img=data/test/lesao/0000.png
"$bin/medimg-predict" --checkpoint $ck --image $img --explain rollout --explain-out maps > p.log 2>&1 || { cat p.log; fail "--explain rollout"; }
[ -s maps/0000_rollout.png ] || { cat p.log; fail "no rollout overlay"; }
grep -q "rollout for" p.log || { cat p.log; fail "predict did not report the rollout"; }
"$bin/medimg-predict" --checkpoint $ck --image $img --explain gradcam --explain-out maps > g.log 2>&1 || { cat g.log; fail "--explain gradcam on a ViT"; }
grep -q "gradcam at blocks.11.norm1" g.log || { cat g.log; fail "Grad-CAM did not use the last block's norm1"; }
"$bin/medimg-evaluate" --config v.yaml --checkpoint $ck --report rep > e.log 2>&1 || { cat e.log; fail "medimg-evaluate --report"; }
[ -s rep/report.html ] || fail "no report"
# the checkpoint as pretrained weights of a ViT made for 48 px: the 2x2 grid resampled to 3x3
"$bin/medimg-train" --config "$root/configs/vit.yaml" --set "data.train=data/train" --set "data.val=data/val" --set data.test= \
  --set data.image_size=48 --set data.resize=48 --set data.channels=1 --set "data.mean=[0.3]" --set "data.std=[0.25]" \
  --set data.augment.random_resized_crop=false --set train.epochs=1 --set train.batch_size=8 --set "model.pretrained=$ck" \
  --set output.dir=out48 > t48.log 2>&1 || { cat t48.log; fail "pretrained ViT at another size"; }
grep -q "pos_embed \[1,5,192\] -> \[1,10,192\] (grid 2x2 resampled to 3x3, bicubic)" t48.log || { cat t48.log; fail "the grid resampling was not reported"; }
# rollout needs a ViT
cat > r.yaml <<YAML
data: {train: data/train, val: data/val, test: "", image_size: 32, resize: 32, channels: 1, mean: [0.3], std: [0.25]}
train: {epochs: 1, batch_size: 8, seed: 3}
output: {dir: rout}
YAML
"$bin/medimg-train" --config r.yaml > r.log 2>&1 || { cat r.log; fail "medimg-train resnet18"; }
"$bin/medimg-predict" --checkpoint rout/checkpoints/best.safetensors --image $img --explain rollout > bad.log 2>&1 &&
  fail "rollout on a ResNet succeeded"
grep -q "attention rollout needs a Vision Transformer" bad.log || { cat bad.log; fail "unclear rollout refusal"; }
[ "$(wc -l < bad.log)" -eq 1 ] || { cat bad.log; fail "the refusal is not one line"; }
echo "vit: passed"
