#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# End-to-end bad-input tests of the programs (ctest: programs.bad_inputs). Each case runs a
# program on one bad input and requires: exit status 1, exactly one line on stderr, starting
# with the program's name and containing the expected fragment (the file, key or value at fault),
# and that no existing file was changed. With MARKDOWN=FILE it also writes the table of
# docs/errors.md from what the programs really printed.
# Usage: bad_inputs.sh BIN_DIR TESTS_DATA_DIR
set -uo pipefail
bin=$1
data=$2
work=$(mktemp -d)
here=$(cd "$(dirname "$0")" && pwd)
trap 'rm -rf "$work"' EXIT
fails=0
passes=0
md=${MARKDOWN:-}
[ -n "$md" ] && printf '| bad input | command | what the user sees (stderr, exit 1) |\n| --- | --- | --- |\n' > "$md"

# A tiny valid data set, config and checkpoint to break things around.
"$bin/medimg-phantoms" --out "$work/data" --size 32 --train 8 --val 4 --test 4 > /dev/null
cat > "$work/ok.yaml" <<YAML
data: {train: $work/data/train, val: $work/data/val, test: "", image_size: 32, resize: 32, channels: 1,
       mean: [0.3], std: [0.25], augment: {random_resized_crop: false}}
train: {epochs: 1, batch_size: 4}
runtime: {workers: 0}
output: {dir: $work/out}
YAML
"$bin/medimg-train" --config "$work/ok.yaml" > "$work/train.log" 2>&1 || { echo "setup: training the reference model failed"; cat "$work/train.log"; exit 1; }
ckpt=$work/out/checkpoints/best.safetensors
sum_before=$(md5sum "$ckpt" | cut -d' ' -f1)

# Every case runs under `timeout`, so that a program that blocks (on a FIFO, say) fails its case
# instead of hanging the suite: `limit` seconds (300; the special-file cases set 20).
limit=300
# For the table: control characters in a command (a file name with a newline) as \xNN, as the
# programs print them.
escape_controls() {
  local t=$1
  t=${t//$'\n'/\\x0a}; t=${t//$'\r'/\\x0d}; t=${t//$'\t'/\\x09}; t=${t//$'\e'/\\x1b}
  printf '%s' "$t"
}

# expect NAME FRAGMENT -- COMMAND...: the first word of COMMAND named medimg-* is the program.
expect() {
  local name=$1 fragment=$2
  shift 3
  timeout -k 5 "$limit" "$@" > "$work/stdout" 2> "$work/stderr" < /dev/null
  local rc=$? lines
  lines=$(wc -l < "$work/stderr")
  local prog=""
  for a in "$@"; do case $(basename -- "$a") in medimg-*) prog=$(basename -- "$a"); break ;; esac; done
  if [ "$rc" -eq 1 ] && [ "$lines" -eq 1 ] && grep -q "^$prog: " "$work/stderr" && grep -qF -- "$fragment" "$work/stderr"; then
    passes=$((passes + 1))
  else
    fails=$((fails + 1))
    echo "FAIL: $name: rc=$rc, $lines stderr lines, expected '$fragment':"
    sed 's/^/    /' "$work/stderr"
  fi
  if [ -n "$md" ]; then
    local shown="" a
    for a in "$@"; do shown+="${shown:+ }${a:-''}"; done  # an empty argument shown as ''
    shown=${shown//$work/…}
    shown=${shown//$bin\//}
    shown=${shown//$data/tests\/data}
    shown=${shown//$here/tests\/programs}
    shown=$(escape_controls "$shown")
    local msg
    msg=$(head -c 400 "$work/stderr" | tr -d '\n')
    msg=${msg//$work/…}
    msg=${msg//$data/tests\/data}
    # The non-UTF-8 bytes of the odd-path cases, spelled out so that the table is UTF-8.
    printf '| %s | `%s` | `%s` |\n' "$name" "$shown" "$msg" | LC_ALL=C sed 's/\xff/\\xff/g; s/\xfe/\\xfe/g; s/\xe3/\\xe3/g' >> "$md"
  fi
}

# accept NAME -- COMMAND...: an input that looks odd but is valid must work (exit 0, nothing on stderr).
accept() {
  local name=$1
  shift 2
  if timeout -k 5 "$limit" "$@" > "$work/stdout" 2> "$work/stderr" < /dev/null && [ ! -s "$work/stderr" ]; then
    passes=$((passes + 1))
  else
    fails=$((fails + 1))
    echo "FAIL: $name: expected success:"
    sed 's/^/    /' "$work/stderr"
  fi
}

T="$bin/medimg-train"
P="$bin/medimg-predict"
E="$bin/medimg-evaluate"
cfg() { sed "$1" "$work/ok.yaml" > "$work/$2.yaml"; echo "$work/$2.yaml"; }

expect "config file missing" "cannot open" -- "$T" --config "$work/nope.yaml"
expect "unknown config key" "unknown key 'train.lerning_rate'" -- "$T" --config "$(cfg 's/epochs: 1/lerning_rate: 1/' unknown)"
expect "wrong type" "'train.epochs' must be an integer" -- "$T" --config "$(cfg 's/epochs: 1/epochs: many/' type)"
expect "negative learning rate" "'train.lr' must be > 0, got -0.1" -- "$T" --config "$work/ok.yaml" --set train.lr=-0.1
expect "dropout for a model without any" "'model.dropout' is set but resnet18 has none" -- "$T" --config "$work/ok.yaml" --set model.dropout=0.3
expect "resize neither none nor a number" "'data.resize' must be none or an integer, got 'off'" -- "$T" --config "$work/ok.yaml" --set data.resize=off
expect "image smaller than the crop with resize: none" "': center_crop: crop 48 x 48 is larger than the image [1,32,32]" -- "$T" --config "$work/ok.yaml" --set data.resize=none --set data.image_size=48 --set output.dir="$work/out-nr"
expect "unknown sampler" "'data.sampler' must be one of shuffle, balanced; got 'oversample'" -- "$T" --config "$work/ok.yaml" --set data.sampler=oversample
expect "malformed YAML" "not valid YAML" -- "$T" --config "$(cfg 's/epochs: 1,/epochs: [1,/' yaml)"
{ cat "$work/ok.yaml"; echo "train: {epochs: 2}"; } > "$work/dup.yaml"
expect "a key given twice" "key 'train' appears twice (lines" -- "$T" --config "$work/dup.yaml"
expect "unknown option" "unknown option '--lr'" -- "$T" --config "$work/ok.yaml" --lr 0.1
expect "missing data folder" "does not exist or is not a folder" -- "$T" --config "$work/ok.yaml" --set data.train="$work/missing"
mkdir -p "$work/partial/normal" && cp "$work/data/train/normal/0000.png" "$work/partial/normal/"
expect "missing class folder" "lesao' is missing" -- "$T" --config "$work/ok.yaml" --set data.train="$work/partial"
mkdir -p "$work/partial/lesao" && touch "$work/partial/lesao/readme.txt"
expect "empty class folder" "holds no images" -- "$T" --config "$work/ok.yaml" --set data.train="$work/partial"
cp -r "$work/data/train" "$work/corrupt" && cp "$data/images/truncated.png" "$work/corrupt/lesao/0001.png"
expect "truncated image in the training set" "corrupt/lesao/0001.png" -- "$T" --config "$work/ok.yaml" --set data.train="$work/corrupt" --set output.dir="$work/out2"
expect "unwritable output folder" "cannot create output folder" -- "$T" --config "$work/ok.yaml" --set output.dir=/proc/medimg-out
expect "CUDA asked for in a CPU build" "no CUDA backend" -- "$T" --config "$work/ok.yaml" --set runtime.device=cuda
expect "checkpoint missing" "nope.safetensors" -- "$P" --checkpoint "$work/nope.safetensors" --image "$data/images/gray8.png"
head -c 5000 "$ckpt" > "$work/cut.safetensors"
expect "checkpoint truncated mid-file" "cut.safetensors" -- "$P" --checkpoint "$work/cut.safetensors" --image "$data/images/gray8.png"
python3 - "$ckpt" "$work/nan.safetensors" << 'PY'
import json, struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", b[:8])[0]
start = 8 + n + json.loads(b[8:8 + n])["fc.bias"]["data_offsets"][0]
b[start:start + 4] = struct.pack("<f", float("nan"))  # one NaN weight
open(sys.argv[2], "wb").write(b)
PY
expect "checkpoint holding NaN" "nan.safetensors: 'fc.bias' holds nan at element 0 of [2]" -- "$P" --checkpoint "$work/nan.safetensors" --image "$data/images/gray8.png"
expect "image missing" "no_such.png" -- "$P" --checkpoint "$ckpt" --image "$work/no_such.png"
# --explain (docs/explain.md): methods, layers, classes, folders; tiny images are explained, not refused.
expect "unknown explanation method" "--explain: unknown method 'heatmap' (gradcam, gradcam++, occlusion or rollout)" -- "$P" --checkpoint "$ckpt" --image "$data/images/gray8.png" --explain heatmap
expect "rollout on a model without attention" "--explain rollout: attention rollout needs a Vision Transformer (vit_*); this model has no attention (use gradcam, gradcam++ or occlusion)" -- "$P" --checkpoint "$ckpt" --image "$data/images/gray8.png" --explain rollout
expect "unknown layer to explain" "unknown layer 'layer9'; valid names: conv1, bn1, layer1," -- "$P" --checkpoint "$ckpt" --image "$data/images/gray8.png" --explain gradcam --explain-layer layer9 --explain-out "$work/maps"
expect "layer with no spatial output" "layer 'fc' gives a [1,2] output with no spatial dimensions" -- "$P" --checkpoint "$ckpt" --image "$data/images/gray8.png" --explain gradcam++ --explain-layer fc --explain-out "$work/maps"
expect "a layer for occlusion" "occlusion works on the input image, not on a layer" -- "$P" --checkpoint "$ckpt" --image "$data/images/gray8.png" --explain occlusion --explain-layer layer4
expect "class to explain unknown" "'tumour' is not a class of this checkpoint (normal, lesao)" -- "$P" --checkpoint "$ckpt" --image "$data/images/gray8.png" --explain gradcam --explain-class tumour --explain-out "$work/maps"
expect "explanation folder not creatable" "--explain-out: cannot create folder '/proc/medimg-maps'" -- "$P" --checkpoint "$ckpt" --image "$data/images/gray8.png" --explain gradcam --explain-out /proc/medimg-maps
expect "explain option without --explain" "--explain-layer needs --explain" -- "$P" --checkpoint "$ckpt" --image "$data/images/gray8.png" --explain-layer layer4
expect "occlusion patch of 0 pixels" "--explain-patch: expected a whole number in [1, 4096], got '0'" -- "$P" --checkpoint "$ckpt" --image "$data/images/gray8.png" --explain occlusion --explain-patch 0
expect "unknown calibration mode" "--calibration: unknown mode 'platt' (none or temperature)" -- "$P" --checkpoint "$ckpt" --image "$data/images/gray8.png" --calibration platt
expect "calibration asked of a checkpoint without one" "holds no temperature" -- "$P" --checkpoint "$work/out/checkpoints/last.safetensors" --image "$data/images/gray8.png" --calibration temperature
expect "evaluate: calibration asked of a checkpoint without one" "holds no temperature" -- "$E" --config "$work/ok.yaml" --checkpoint "$work/out/checkpoints/last.safetensors" --split val --calibration temperature
printf 'P5\n1 1\n255\n\200' > "$work/one.pgm"
accept "explain a 1x1 image (gradcam)" -- "$P" --checkpoint "$ckpt" --image "$work/one.pgm" --explain gradcam --explain-out "$work/maps"
[ -s "$work/maps/one_gradcam.png" ] || { echo "FAIL: no overlay for the 1x1 image"; fails=$((fails + 1)); }
accept "explain a 7x5 image (occlusion, --json)" -- "$P" --checkpoint "$ckpt" --image "$data/images/gray8.png" --explain occlusion --explain-out "$work/maps" --json
grep -qF '"explanation":{"method":"occlusion","class":' "$work/stdout" || { echo "FAIL: predict --json --explain: no explanation object:"; cat "$work/stdout"; fails=$((fails + 1)); }
expect "zero-byte image" "empty.png" -- "$P" --checkpoint "$ckpt" --image "$data/images/empty.png"
expect "truncated PNG" "truncated.png" -- "$P" --checkpoint "$ckpt" --image "$data/images/truncated.png"
expect "corrupt PNG (CRC)" "corrupt_crc.png" -- "$P" --checkpoint "$ckpt" --image "$data/images/corrupt_crc.png"
expect "decompression bomb (100000x100000 PNG)" "bomb.png" -- "$P" --checkpoint "$ckpt" --image "$data/images/bomb.png"
expect "unsupported format (GIF)" "image.gif" -- "$P" --checkpoint "$ckpt" --image "$data/images/image.gif"
expect "not an image" "notes.txt" -- "$P" --checkpoint "$ckpt" --image "$data/images/notes.txt"
# DICOM (docs/formats.md): each hostile file is one line naming it; the fixtures are tests/data/dicom.
if [ "${MEDIMG_TEST_DICOM:-0}" = 1 ]; then  # set by ctest when the programs read DICOM
  head -c 3000 "$data/dicom/ct_hu.dcm" > "$work/cut.dcm"
  expect "DICOM cut short" "cut.dcm: truncated: element (7FE0,0010)" -- "$P" --checkpoint "$ckpt" --image "$work/cut.dcm"
  python3 - "$data/dicom/ct_hu.dcm" "$work/lying.dcm" "$work/huge.dcm" << 'PY'
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
p = b.rfind(b"\xe0\x7f\x10\x00")                    # Pixel Data, explicit VR OW: the length at +8
lying = bytearray(b); lying[p + 8:p + 12] = struct.pack("<I", 0xFFFFFFF0)
open(sys.argv[2], "wb").write(lying)
for e in (0x10, 0x11):                                 # Rows, Columns: US, the value at +8
    i = b.find(b"\x28\x00" + bytes([e]) + b"\x00US")
    b[i + 8:i + 10] = struct.pack("<H", 65535)
open(sys.argv[3], "wb").write(b)
PY
  expect "DICOM with a length of 4 GB" "lying.dcm: truncated: element (7FE0,0010) at byte" -- "$P" --checkpoint "$ckpt" --image "$work/lying.dcm"
  expect "DICOM of 65535 x 65535 pixels" "huge.dcm: 65535 rows x 65535 columns" -- "$P" --checkpoint "$ckpt" --image "$work/huge.dcm"
  expect "DICOM in a transfer syntax GDCM cannot decode" "1.2.840.10008.1.2.4.201 (High-Throughput JPEG 2000" -- "$P" --checkpoint "$ckpt" --image "$data/dicom/htj2k.dcm"
  expect "DICOM without pixel data" "no_pixels.dcm: holds no pixel data" -- "$P" --checkpoint "$ckpt" --image "$data/dicom/no_pixels.dcm"
  expect "PNG named .dcm" "png.dcm: not a DICOM file: no 'DICM' at byte 128" -- "$P" --checkpoint "$ckpt" --image "$(cp "$data/images/gray8.png" "$work/png.dcm"; echo "$work/png.dcm")"
  A="$bin/medimg-anonymize"
  expect "anonymize: output exists" "anonymize: '$work/cut.dcm' already exists; refusing to overwrite it" -- "$A" "$data/dicom/ct_hu.dcm" "$work/cut.dcm"
  expect "anonymize: a hostile input" "dicom: $work/lying.dcm: truncated" -- "$A" "$work/lying.dcm" "$work/anon.dcm"
  [ ! -e "$work/anon.dcm" ] || { echo "FAIL: a refused anonymization left $work/anon.dcm behind"; fails=$((fails + 1)); }
  expect "anonymize: one argument" "expected IN and OUT, got 1 argument" -- "$A" "$data/dicom/ct_hu.dcm"
  expect "compare: an unknown intensity" "compare: '--intensity' must be file, minmax, brain" -- "$bin/medimg-compare" --reference "$data/dicom/ct_hu.dcm" --target "$data/dicom/ct_implicit.dcm" --intensity liver
fi
# NIfTI (docs/formats.md): made from a fixture (tests/data/nifti) with Python's standard library.
if [ "${MEDIMG_TEST_NIFTI:-0}" = 1 ]; then
  python3 - "$data/nifti/int16_scaled_las.nii" "$work" << 'PY'
import gzip, struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
out = sys.argv[2]
open(out + "/cut.nii", "wb").write(b[:600])                       # the voxels cut short
huge = bytearray(b); huge[42:48] = struct.pack("<3h", 30000, 30000, 30000)
open(out + "/huge.nii", "wb").write(huge)                          # 2.7e13 voxels claimed
bomb = bytearray(b); bomb[40:48] = struct.pack("<4h", 3, 1024, 1024, 1024)
open(out + "/bomb.nii.gz", "wb").write(gzip.compress(bytes(bomb[:352]) + bytes(1 << 20)))  # 2^30 voxels in 1 KB of gzip
series = bytearray(b); series[40:50] = struct.pack("<5h", 4, 7, 6, 5, 3)
open(out + "/series.nii", "wb").write(series)                      # a 4-D series of 3 volumes
PY
  expect "NIfTI cut short" "cut.nii: truncated" -- "$P" --checkpoint "$ckpt" --image "$work/cut.nii"
  expect "NIfTI of 30000^3 voxels" "huge.nii: dims 30000 x 30000 x 30000" -- "$P" --checkpoint "$ckpt" --image "$work/huge.nii"
  expect "NIfTI gzip bomb" "bomb.nii.gz: dims 1024 x 1024 x 1024" -- "$P" --checkpoint "$ckpt" --image "$work/bomb.nii.gz"
  expect "NIfTI series of 3 volumes" "series.nii: 4-D with 3 volumes" -- "$P" --checkpoint "$ckpt" --image "$work/series.nii"
fi
expect "unknown window preset" "'data.window' must be file, minmax, brain, subdural, bone, lung, abdomen or [center, width]; got 'liver'" -- "$T" --config "$work/ok.yaml" --set data.window=liver
expect "window narrower than 1" "'data.window' must have a width >= 1 and finite numbers; got center 40, width 0.5" -- "$T" --config "$work/ok.yaml" --set "data.window=[40, 0.5]"
expect "volume slices every 0" "'data.volume_slices' must be all, middle, every N or range [a, b]; got 'every 0'" -- "$T" --config "$work/ok.yaml" --set "data.volume_slices=every 0"
expect "checkpoint for other classes" "other classes" -- "$E" --config "$work/ok.yaml" --checkpoint "$ckpt" --split val --set "data.classes=[normal,lesao,other]"
expect "unknown split" "--split must be" -- "$E" --config "$work/ok.yaml" --checkpoint "$ckpt" --split nope
expect "threshold outside [0, 1]" "--threshold: expected a number in [0, 1], got '1.5'" -- "$E" --config "$work/ok.yaml" --checkpoint "$ckpt" --split val --threshold 1.5
expect "target sensitivity above 1" "--threshold: sensitivity=S needs S in (0, 1], got '2'" -- "$E" --config "$work/ok.yaml" --checkpoint "$ckpt" --split val --threshold sensitivity=2
accept "threshold chosen on validation (youden, --json)" -- "$E" --config "$work/ok.yaml" --checkpoint "$ckpt" --split val --threshold youden --json
grep -qF '"threshold_rule":"Youden'"'"'s J on the val split"' "$work/stdout" || { echo "FAIL: evaluate --threshold youden: no rule in the JSON:"; cat "$work/stdout"; fails=$((fails + 1)); }
expect "bootstrap count not whole" "--bootstrap: expected a whole number in [0, 1000000], got '2.5'" -- "$E" --config "$work/ok.yaml" --checkpoint "$ckpt" --split val --bootstrap 2.5
accept "evaluate with a bootstrap interval (--json)" -- "$E" --config "$work/ok.yaml" --checkpoint "$ckpt" --split val --bootstrap 200 --json
grep -qF '"roc_auc_bootstrap_ci":[' "$work/stdout" || { echo "FAIL: evaluate --bootstrap --json: no bootstrap interval:"; cat "$work/stdout"; fails=$((fails + 1)); }
# Without a usable GPU (a CPU build, or a CUDA build on a machine without a device) cuda is refused.
: > "$work/not_a_folder"
expect "evaluate: --report onto a file" "--report: cannot create the folder '$work/not_a_folder'" -- "$E" --config "$work/ok.yaml" --checkpoint "$ckpt" --split val --report "$work/not_a_folder"
expect "evaluate: CUDA asked for, none usable" "no CUDA backend" -- "$E" --config "$work/ok.yaml" --checkpoint "$ckpt" --split val --set runtime.device=cuda
expect "predict: CUDA asked for, none usable" "no CUDA backend" -- "$P" --config "$work/ok.yaml" --set runtime.device=cuda --checkpoint "$ckpt" --image "$data/images/gray8.png"
# Mixed precision is a GPU feature: on the CPU (auto without a GPU, or a CPU build) it is refused.
expect "bf16 with device cpu" "'runtime.precision' is bf16, which needs runtime.device cuda or auto" -- "$T" --config "$work/ok.yaml" --set runtime.precision=bf16
expect "fp16 when auto finds no GPU" "'runtime.precision' is fp16 but medimg-train runs on the CPU here" -- "$T" --config "$work/ok.yaml" --set runtime.device=auto --set runtime.precision=fp16
expect "evaluate: bf16 when auto finds no GPU" "'runtime.precision' is bf16 but medimg-evaluate runs on the CPU here" -- "$E" --config "$work/ok.yaml" --checkpoint "$ckpt" --split val --set runtime.device=auto --set runtime.precision=bf16
expect "checkpoint of another architecture (--resume)" "holds a resnet18 but the model is a resnet34" -- "$T" --config "$work/ok.yaml" --resume --set model.name=resnet34
expect "pretrained weights of another depth" "missing 'layer1.2.conv1.weight'" -- "$T" --config "$work/ok.yaml" --set model.name=resnet34 --set model.pretrained="$ckpt" --set output.dir="$work/out3"
expect "pretrained .pth in the legacy format" "legacy torch.save format" -- "$T" --config "$work/ok.yaml" --set model.pretrained="$data/pth/legacy.pth" --set output.dir="$work/out3"
expect "pretrained .pth holding a pickled module" "global 'torch.nn.modules.container.Sequential' at byte 2 is not on the allow-list" -- "$T" --config "$work/ok.yaml" --set model.pretrained="$data/pth/whole_model.pth" --set output.dir="$work/out3"

# Odd but valid: 16-bit images are read at full precision (not an error; docs/data.md), and paths
# with spaces or bytes that are not UTF-8 are only bytes to medimg. A message naming such a path
# prints its bytes as they are.
accept "16-bit grey PNG" -- "$P" --checkpoint "$ckpt" --image "$data/images/gray16.png"
accept "16-bit RGB PNG" -- "$P" --checkpoint "$ckpt" --image "$data/images/rgb16.png"
accept "16-bit PGM" -- "$P" --checkpoint "$ckpt" --image "$data/images/gray16.pgm"
odd="$work/data set $(printf '\xff\xfe') ç"
mkdir -p "$odd" && cp -r "$work/data/train" "$work/data/val" "$odd/"
accept "space and non-UTF-8 path (train)" -- "$T" --config "$work/ok.yaml" --set data.train="$odd/train" --set data.val="$odd/val" --set output.dir="$odd/out"
accept "space and non-UTF-8 path (predict)" -- "$P" --checkpoint "$odd/out/checkpoints/best.safetensors" --image "$odd/val/normal/0000.png"
accept "space and non-UTF-8 path (predict --json)" -- "$P" --checkpoint "$ckpt" --image "$odd/val/normal/0000.png" --json
grep -qF '"image":"'"$work"'/data set \\xff\\xfe ç/val/normal/0000.png"' "$work/stdout" || { echo "FAIL: predict --json: the path's non-UTF-8 bytes are not written as \\xNN:"; cat "$work/stdout"; fails=$((fails + 1)); }
expect "missing image at a non-UTF-8 path" "$odd/nope.png" -- "$P" --checkpoint "$ckpt" --image "$odd/nope.png"
expect "class name that is not UTF-8" "is not valid UTF-8" -- "$T" --config "$work/ok.yaml" --set "data.classes=[normal, $(printf 'les\xe3o')]"

# A full disk: a tmpfs just large enough for the existing run (unshare -rm: a private mount
# namespace, no root needed). Resuming must fail on the checkpoint write with one line, leave
# best/last byte for byte as they were and no temporary file behind.
if unshare -rm true 2> /dev/null; then
  full="$work/full" && mkdir -p "$full" "$work/seed"
  sed -e "s#dir: $work/out#dir: $full/run#" -e 's/epochs: 1/epochs: 2/' "$work/ok.yaml" > "$work/full.yaml"
  cp -r "$work/out" "$work/seed/run"
  expect "full disk while writing a checkpoint" "No space left on device" -- unshare -rm bash "$here/on_full_disk.sh" 190m "$full" "$work/seed" run/checkpoints -- "$T" --config "$work/full.yaml" --resume
  if [ -x "$bin/medimg-compare" ]; then
    mkdir -p "$work/seed2" && head -c 60000 /dev/zero > "$work/seed2/filler" && cp "$data/images/gray8.png" "$work/seed2/old_map.png"
    expect "full disk while writing a map" "No space left on device" -- unshare -rm bash "$here/on_full_disk.sh" 64k "$full" "$work/seed2" . -- "$bin/medimg-compare" --reference "$work/data/val/normal/0000.png" --target "$work/data/val/lesao/0000.png" --ssim-map "$full/old_map.png"
  fi
else
  echo "bad_inputs: unshare -rm is not permitted here; the two full-disk cases are skipped"
fi

if [ -x "$bin/medimg-crossval" ]; then
  X="$bin/medimg-crossval"
  printf 'path,group\n%s,p1\n' "$work/data/train/normal/nope.png" > "$work/groups.csv"
  expect "crossval: groups CSV naming an unknown file" "groups.csv:2: '$work/data/train/normal/nope.png' is not an image of the train or val split" -- "$X" --config "$work/ok.yaml" --folds 3 --groups "$work/groups.csv" --set output.dir="$work/cv"
  expect "crossval: more folds than the smallest class" "class 0 has 6 samples, fewer than the 7 folds" -- "$X" --config "$work/ok.yaml" --folds 7 --set output.dir="$work/cv"
  expect "crossval: one fold" "--folds 1 leaves no images to train on: fold f is the test set and fold f+1 the validation set, so at least 3 folds are needed" -- "$X" --config "$work/ok.yaml" --folds 1 --set output.dir="$work/cv"
  expect "crossval: two folds" "--folds 2 leaves no images to train on: fold f is the test set and fold f+1 the validation set, so at least 3 folds are needed" -- "$X" --config "$work/ok.yaml" --folds 2 --set output.dir="$work/cv"
  [ ! -e "$work/cv" ] || { echo "FAIL: a refused cross-validation left $work/cv behind"; fails=$((fails + 1)); }
fi

if [ -x "$bin/medimg-compare" ]; then
  C="$bin/medimg-compare"
  expect "compare: images of different sizes, not aligned" "gray8.png" -- "$C" --reference "$data/images/gray8.png" --target "$work/data/val/normal/0000.png" --align none
  printf 'P5\n16 16\n255\n' > "$work/flat.pgm"; head -c 256 /dev/zero | tr '\0' '\140' >> "$work/flat.pgm"
  expect "compare: a flat target cannot be aligned" "the target is constant where the images overlap" -- "$C" --reference "$work/data/val/normal/0000.png" --target "$work/flat.pgm"
  expect "compare: unknown motion" "unknown motion 'elastic' for --align" -- "$C" --reference "$work/data/val/normal/0000.png" --target "$work/data/val/lesao/0000.png" --align elastic
  expect "compare: --any-angle with a translation" "--any-angle needs --align rigid or affine (it turns the images), not --align translation" -- "$C" --reference "$work/data/val/normal/0000.png" --target "$work/data/val/lesao/0000.png" --align translation --any-angle
  expect "compare: missing file" "missing.png" -- "$C" --reference "$work/missing.png" --target "$data/images/gray8.png"
fi

# Every program's --help names every option it accepts (cli::parse checks it when --help is asked).
for prog in medimg-train medimg-predict medimg-evaluate medimg-crossval medimg-phantoms medimg-compare medimg-anonymize; do
  [ -x "$bin/$prog" ] && accept "$prog --help names every option" -- "$bin/$prog" --help
done
accept "train --print-config" -- "$T" --config "$work/ok.yaml" --set train.lr=0.25 --print-config
grep -qE '^ +lr: 0\.25$' "$work/stdout" || { echo "FAIL: --print-config does not show the --set value:"; cat "$work/stdout"; fails=$((fails + 1)); }
expect "train: --stop-after-epoch below 0" "--stop-after-epoch: expected a whole number in [0, 1000000000], got '-1'" -- "$T" --config "$work/ok.yaml" --stop-after-epoch -1

# Number arguments (#22 item 3): every program reads them through cli::number / io::parse_number,
# so text that is not wholly one number in range is one line naming the flag and the value, never
# std::stoi's "stoi" (medimg-phantoms used it).
PH="$bin/medimg-phantoms"
expect "phantoms: --size too large for a double" "--size: expected a whole number in [32, 1024], got '1e400'" -- "$PH" --out "$work/ph" --size 1e400
expect "phantoms: --size not a number" "--size: expected a whole number in [32, 1024], got 'abc'" -- "$PH" --out "$work/ph" --size abc
expect "phantoms: --size empty" "--size: expected a whole number in [32, 1024], got ''" -- "$PH" --out "$work/ph" --size ''
expect "phantoms: --size with trailing text" "--size: expected a whole number in [32, 1024], got '12abc'" -- "$PH" --out "$work/ph" --size 12abc
expect "phantoms: --size negative" "--size: expected a whole number in [32, 1024], got '-64'" -- "$PH" --out "$work/ph" --size -64
expect "phantoms: --size huge" "--size: expected a whole number in [32, 1024], got '99999999999999999999'" -- "$PH" --out "$work/ph" --size 99999999999999999999
expect "phantoms: --size in hexadecimal" "--size: expected a whole number in [32, 1024], got '0x40'" -- "$PH" --out "$work/ph" --size 0x40
expect "phantoms: --train not a number" "--train: expected a whole number in [2, 1000000], got 'many'" -- "$PH" --out "$work/ph" --train many
expect "phantoms: --seed beyond 2^53" "--seed: expected a whole number in [0, 9007199254740992], got '18446744073709551616'" -- "$PH" --out "$work/ph" --seed 18446744073709551616
[ ! -e "$work/ph" ] || { echo "FAIL: a refused medimg-phantoms left $work/ph behind"; fails=$((fails + 1)); }
expect "train: --stop-after-epoch not a number" "--stop-after-epoch: expected a whole number in [0, 1000000000], got 'two'" -- "$T" --config "$work/ok.yaml" --stop-after-epoch two
expect "train: --stop-after-epoch 1e400" "--stop-after-epoch: expected a whole number in [0, 1000000000], got '1e400'" -- "$T" --config "$work/ok.yaml" --stop-after-epoch 1e400
expect "predict: --explain-patch with trailing text" "--explain-patch: expected a whole number in [1, 4096], got '12abc'" -- "$P" --checkpoint "$ckpt" --image "$data/images/gray8.png" --explain occlusion --explain-patch 12abc
expect "evaluate: --bootstrap empty" "--bootstrap: expected a whole number in [0, 1000000], got ''" -- "$E" --config "$work/ok.yaml" --checkpoint "$ckpt" --split val --bootstrap ''
expect "evaluate: --seed negative" "--seed: expected a whole number in [0, 9007199254740992], got '-1'" -- "$E" --config "$work/ok.yaml" --checkpoint "$ckpt" --split val --seed -1
expect "evaluate: --threshold nan" "--threshold: expected a number in [0, 1], got 'nan'" -- "$E" --config "$work/ok.yaml" --checkpoint "$ckpt" --split val --threshold nan
if [ -x "$bin/medimg-compare" ]; then
  expect "compare: --threshold not a number" "option --threshold needs a number in (-1, 1], got '0.5x'" -- "$bin/medimg-compare" --reference "$data/images/gray8.png" --target "$data/images/gray8.png" --threshold 0.5x
  expect "compare: --pixel-spacing 1e400" "option --pixel-spacing needs a positive number of millimetres, got '1e400'" -- "$bin/medimg-compare" --reference "$data/images/gray8.png" --target "$data/images/gray8.png" --pixel-spacing 1e400
fi
if [ -x "$bin/medimg-crossval" ]; then
  expect "crossval: --folds 1e400" "--folds: expected a whole number in [1, 100], got '1e400'" -- "$bin/medimg-crossval" --config "$work/ok.yaml" --folds 1e400 --set output.dir="$work/cv"
fi
# Numbers in a checkpoint's metadata are text too: a damaged one is named with its key.
python3 - "$ckpt" "$work/meta.safetensors" << 'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
h["__metadata__"]["image_size"] = "32px"
t = json.dumps(h).encode()
t += b" " * (-(8 + len(t)) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(t)) + t + b[8 + n:])
PY
expect "checkpoint metadata number damaged" "meta.safetensors: metadata 'image_size' must be a whole number, got '32px'" -- "$P" --checkpoint "$work/meta.safetensors" --image "$data/images/gray8.png"
# Checkpoint metadata (#22 item 2): every value is range-checked as the config checks the same
# setting, before it sizes a model or a resize; one line naming the key and the file.
with_meta() {  # with_meta OUT KEY VALUE: the reference checkpoint with one metadata value replaced
  python3 - "$ckpt" "$1" "$2" "$3" << 'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
h["__metadata__"][sys.argv[3]] = sys.argv[4]
t = json.dumps(h).encode()
t += b" " * (-(8 + len(t)) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(t)) + t + b[8 + n:])
PY
}
with_meta "$work/meta-size.safetensors" image_size 100000
expect "checkpoint metadata: image size out of range" "meta-size.safetensors: metadata 'image_size' must be >= 32 and <= 4096, got 100000" -- "$P" --checkpoint "$work/meta-size.safetensors" --image "$data/images/gray8.png"
with_meta "$work/meta-classes.safetensors" classes '["normal", "lesao", "other"]'
expect "checkpoint metadata: classes unlike the head" "meta-classes.safetensors: metadata 'classes' lists 3 classes but the head 'fc.weight' has 2 outputs [2,512]" -- "$P" --checkpoint "$work/meta-classes.safetensors" --image "$data/images/gray8.png"
with_meta "$work/meta-arch.safetensors" architecture resnet9000
expect "checkpoint metadata: unknown architecture" "make_model: unknown architecture 'resnet9000'" -- "$E" --config "$work/ok.yaml" --checkpoint "$work/meta-arch.safetensors" --split val
with_meta "$work/meta-arch2.safetensors" architecture "resnet18; rm"
expect "checkpoint metadata: architecture not a name" "meta-arch2.safetensors: metadata 'architecture' must be a model name of 1 to 64 letters" -- "$E" --config "$work/ok.yaml" --checkpoint "$work/meta-arch2.safetensors" --split val
with_meta "$work/meta-resize.safetensors" resize 1000000
expect "checkpoint metadata: resize out of range" "meta-resize.safetensors: metadata 'resize' must be >= 32 and <= 8192, got 1e+06" -- "$P" --checkpoint "$work/meta-resize.safetensors" --image "$data/images/gray8.png"
with_meta "$work/meta-std.safetensors" normalize_std '[0]'
expect "checkpoint metadata: std of 0" "meta-std.safetensors: metadata 'normalize_std' must be > 0, got 0" -- "$P" --checkpoint "$work/meta-std.safetensors" --image "$data/images/gray8.png"

# Bounded memory (#22 item 1): each hostile input below is refused in one line while the program
# runs under a 2 GiB address-space limit (prlimit --as), which the normal run fits. Before the
# checks each of them asked for gigabytes: stb_image inflated the whole IDAT, resize allocated
# its output, the safetensors reader read the whole file. The files are built here, small or sparse.
# (Not with sanitizer builds, whose shadow memory does not fit such a limit.)
if command -v prlimit > /dev/null && ! ldd "$P" 2> /dev/null | grep -qE 'lib[amt]san'; then
  as2g=(prlimit --as=$((2 << 30)))
  OMP_NUM_THREADS=1 accept "2 GiB address space: a normal prediction" -- "${as2g[@]}" "$P" --checkpoint "$ckpt" --image "$data/images/gray8.png"
  python3 - "$work" << 'PY'
import struct, sys, zlib
out = sys.argv[1]
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
def png(w, h, idat, interlace=0):
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, interlace)) +
            chunk(b"IDAT", idat) + chunk(b"IEND", b""))
# 1 x 1 declared (2 bytes of scanline), 3 GiB of zeros deflated (about 3 MB): the IDAT bomb.
z = zlib.compressobj(9)
zero = bytes(1 << 20)
idat = b"".join(z.compress(zero) for _ in range(3 << 10)) + z.flush()
open(out + "/idat_bomb.png", "wb").write(png(1, 1, idat))
open(out + "/idat_bomb_adam7.png", "wb").write(png(1, 1, idat, 1))
# Valid but extreme: 1 row of 1,000,000 pixels, and 3,000,000 rows of 1 pixel.
open(out + "/thin.png", "wb").write(png(1000000, 1, zlib.compress(b"\0" + bytes(range(256)) * 3906 + bytes(64), 9)))
open(out + "/tall.png", "wb").write(png(1, 3000000, zlib.compress(b"\0\x80" * 3000000, 9)))
PY
  OMP_NUM_THREADS=1 expect "PNG whose data inflates past its header (3 GiB into 1 x 1), 2 GiB address space" "idat_bomb.png: corrupt PNG: the image data inflates to more than the 2 bytes its header declares (1 x 1)" -- "${as2g[@]}" "$P" --checkpoint "$ckpt" --image "$work/idat_bomb.png"
  OMP_NUM_THREADS=1 expect "the same, interlaced" "idat_bomb_adam7.png: corrupt PNG: the image data inflates to more than the 2 bytes its header declares (1 x 1)" -- "${as2g[@]}" "$P" --checkpoint "$ckpt" --image "$work/idat_bomb_adam7.png"
  OMP_NUM_THREADS=1 expect "a 1000000 x 1 image resized (shorter side 32), 2 GiB address space" "thin.png': resize_shorter_side: Resize(32) of a 1 x 1000000 image (aspect ratio 1000000:1) would be 32 x 32000000, more than the limit of 67108864 pixels" -- "${as2g[@]}" "$P" --checkpoint "$ckpt" --image "$work/thin.png"
  cp -r "$work/data/train" "$work/tall" && cp "$work/tall.png" "$work/tall/lesao/0001.png"
  OMP_NUM_THREADS=1 expect "a 1 x 3000000 image in the training set, 2 GiB address space" "tall/lesao/0001.png': resize: 3000000 x 1 -> 32 x 32 needs 3000000 x 32" -- "${as2g[@]}" "$T" --config "$work/ok.yaml" --set data.train="$work/tall" --set output.dir="$work/out-tall"
  cp "$ckpt" "$work/padded.safetensors" && truncate -s 3G "$work/padded.safetensors"  # sparse: no disk used
  OMP_NUM_THREADS=1 expect "checkpoint padded with zeros to 3 GiB, 2 GiB address space" "padded.safetensors: data buffer has " -- "${as2g[@]}" "$P" --checkpoint "$work/padded.safetensors" --image "$data/images/gray8.png"
  printf 'PK\003\004' > "$work/huge.pth" && truncate -s 17G "$work/huge.pth"  # a ZIP signature, then sparse zeros
  OMP_NUM_THREADS=1 expect "pretrained .pth of 17 GiB, 2 GiB address space" "huge.pth: file of 18253611008 bytes exceeds the limit of 17179869184 (TorchStateDict::max_file_bytes; refused before reading)" -- "${as2g[@]}" "$T" --config "$work/ok.yaml" --set model.pretrained="$work/huge.pth" --set output.dir="$work/out-pth"
  printf 'PK\003\004' > "$work/junk.pth" && truncate -s 3G "$work/junk.pth"  # within the size limit, no archive
  OMP_NUM_THREADS=1 expect "pretrained .pth: 3 GiB without a ZIP directory, 2 GiB address space" "junk.pth: no end of central directory record (the file is truncated, or not a ZIP archive)" -- "${as2g[@]}" "$T" --config "$work/ok.yaml" --set model.pretrained="$work/junk.pth" --set output.dir="$work/out-pth"
  python3 - "$data/pth/tiny_model.pth" "$work/gap.pth" << 'PY'
import struct, sys
# A real torch.save file with 3 GiB (sparse) inserted before its central directory, whose offset
# in the end record is moved to match: every structure is sound, but the directory accounts for
# none of the inserted bytes.
# torch.save writes ZIP64 end records too: their offsets move as well.
b = bytearray(open(sys.argv[1], "rb").read())
eocd = b.rindex(b"PK\x05\x06")
gap = 3 << 30
if eocd >= 20 and b[eocd - 20:eocd - 16] == b"PK\x06\x07":
    z = struct.unpack_from("<Q", b, eocd - 12)[0]  # the ZIP64 record's offset, in the locator
    cd = struct.unpack_from("<Q", b, z + 48)[0]
    struct.pack_into("<Q", b, z + 48, cd + gap)
    struct.pack_into("<Q", b, eocd - 12, z + gap)
else:
    cd = struct.unpack_from("<I", b, eocd + 16)[0]
if struct.unpack_from("<I", b, eocd + 16)[0] != 0xFFFFFFFF:
    struct.pack_into("<I", b, eocd + 16, cd + gap)
with open(sys.argv[2], "wb") as f:
    f.write(b[:cd])
    f.seek(cd + gap)
    f.write(b[cd:])
PY
  OMP_NUM_THREADS=1 expect "pretrained .pth with 3 GiB inside that its directory does not account for, 2 GiB address space" "that the archive does not account for (the central directory is at 3221227282; data prepended or inserted)" -- "${as2g[@]}" "$T" --config "$work/ok.yaml" --set model.pretrained="$work/gap.pth" --set output.dir="$work/out-pth"
  for d in out-tall out-pth; do [ ! -e "$work/$d/checkpoints/last.safetensors" ] || { echo "FAIL: a refused training left $work/$d/checkpoints/last.safetensors"; fails=$((fails + 1)); }; done
fi

# Out of memory is named as such (not "std::bad_alloc"): two images at the pixel limit (8192 x
# 8192) compared under a 1 GiB address-space limit.
# (Not with sanitizer builds, whose shadow memory does not fit such a limit.)
if command -v prlimit > /dev/null && [ -x "$bin/medimg-compare" ] && ! ldd "$bin/medimg-compare" 2> /dev/null | grep -qE 'lib[amt]san'; then
  python3 - "$work/big.png" << 'PY'
import struct, sys, zlib
w = h = 8192
raw = zlib.compress(b"".join(b"\0" + bytes([(y // 64) % 256]) * w for y in range(h)), 9)
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
PY
  OMP_NUM_THREADS=1 expect "out of memory (compare, 1 GiB address space)" "out of memory: this input and these settings need more memory than the system would give" -- prlimit --as=$((1 << 30)) "$bin/medimg-compare" --reference "$work/big.png" --target "$work/big.png"
fi

# Special files (#22 item 4): a FIFO, socket or device is refused, saying what it is, before it
# is opened (io/input_file.hpp): opening a FIFO would wait for a writer forever. limit=20 makes a
# regression fail its case instead of hanging the suite. A folder scan skips such entries.
mkfifo "$work/fifo.png" "$work/fifo.yaml" "$work/fifo.safetensors" "$work/fifo.pth" "$work/fifo.csv" "$work/fifo.dcm" "$work/fifo.nii"
python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$work/socket.png"
limit=20 expect "image is a FIFO" "image: $work/fifo.png: is a FIFO (named pipe), not a regular file" -- "$P" --checkpoint "$ckpt" --image "$work/fifo.png"
limit=20 expect "image is a socket" "image: $work/socket.png: is a socket, not a regular file" -- "$P" --checkpoint "$ckpt" --image "$work/socket.png"
limit=20 expect "image is a device" "image: /dev/zero: is a character device, not a regular file" -- "$P" --checkpoint "$ckpt" --image /dev/zero
limit=20 expect "checkpoint is a FIFO" "safetensors: $work/fifo.safetensors: is a FIFO (named pipe), not a regular file" -- "$P" --checkpoint "$work/fifo.safetensors" --image "$data/images/gray8.png"
limit=20 expect "checkpoint is a folder" "safetensors: $work/out/checkpoints: is a folder, not a regular file" -- "$P" --checkpoint "$work/out/checkpoints" --image "$data/images/gray8.png"
limit=20 expect "config is a FIFO" "config: $work/fifo.yaml: is a FIFO (named pipe), not a regular file" -- "$T" --config "$work/fifo.yaml"
limit=20 expect "config is a device" "config: /dev/stdin: is a character device, not a regular file" -- "$E" --config /dev/stdin --checkpoint "$ckpt"
limit=20 expect "pretrained weights are a FIFO" "pth: $work/fifo.pth: is a FIFO (named pipe), not a regular file" -- "$T" --config "$work/ok.yaml" --set model.pretrained="$work/fifo.pth" --set output.dir="$work/out-fifo"
if [ -x "$bin/medimg-compare" ]; then
  limit=20 expect "compare: reference is a FIFO" "image: $work/fifo.png: is a FIFO (named pipe), not a regular file" -- "$bin/medimg-compare" --reference "$work/fifo.png" --target "$data/images/gray8.png"
  limit=20 expect "compare: mask is a FIFO" "image: $work/fifo.png: is a FIFO (named pipe), not a regular file" -- "$bin/medimg-compare" --reference "$work/data/val/normal/0000.png" --target "$work/data/val/lesao/0000.png" --mask "$work/fifo.png"
fi
if [ -x "$bin/medimg-crossval" ]; then
  limit=20 expect "crossval: groups CSV is a FIFO" "--groups: $work/fifo.csv: is a FIFO (named pipe), not a regular file" -- "$bin/medimg-crossval" --config "$work/ok.yaml" --folds 3 --groups "$work/fifo.csv" --set output.dir="$work/cv"
fi
if [ "${MEDIMG_TEST_DICOM:-0}" = 1 ]; then
  limit=20 expect "DICOM image is a FIFO" "dicom: $work/fifo.dcm: is a FIFO (named pipe), not a regular file" -- "$P" --checkpoint "$ckpt" --image "$work/fifo.dcm"
  limit=20 expect "anonymize: input is a FIFO" "dicom: $work/fifo.dcm: is a FIFO (named pipe), not a regular file" -- "$bin/medimg-anonymize" "$work/fifo.dcm" "$work/anon-fifo.dcm"
  [ ! -e "$work/anon-fifo.dcm" ] || { echo "FAIL: a refused anonymization left $work/anon-fifo.dcm behind"; fails=$((fails + 1)); }
fi
if [ "${MEDIMG_TEST_NIFTI:-0}" = 1 ]; then
  limit=20 expect "NIfTI image is a FIFO" "nifti: $work/fifo.nii: is a FIFO (named pipe), not a regular file" -- "$P" --checkpoint "$ckpt" --image "$work/fifo.nii"
fi
[ ! -e "$work/out-fifo" ] || { echo "FAIL: training refused on its pretrained weights left $work/out-fifo behind"; fails=$((fails + 1)); }
# A FIFO, a socket and a dangling link among a class's images: skipped (never opened), training works.
cp -r "$work/data/train" "$work/special" && mkfifo "$work/special/lesao/0100.png"
python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$work/special/normal/0100.png"
ln -s "$work/nowhere.png" "$work/special/normal/0101.png"
limit=120 accept "a FIFO, a socket and a dangling link in a class folder are skipped" -- "$T" --config "$work/ok.yaml" --set data.train="$work/special" --set output.dir="$work/out-special"
grep -q "3 non-image files skipped" "$work/stdout" || { echo "FAIL: the special files were not counted as skipped:"; cat "$work/stdout"; fails=$((fails + 1)); }
limit=60 accept "predict on a folder holding a FIFO skips it" -- "$P" --checkpoint "$ckpt" --image "$work/special/lesao"
# A folder of patients: predict walks the subfolders as training does (ImageFolder's order).
mkdir -p "$work/patients/p2" "$work/patients/p1/.ipynb_checkpoints"
cp "$work/data/val/lesao/0000.png" "$work/patients/p2/a.png" && cp "$work/data/val/lesao/0001.png" "$work/patients/p1/b.png"
cp "$work/data/val/lesao/0001.png" "$work/patients/p1/.ipynb_checkpoints/b-checkpoint.png"
limit=60 accept "predict on a folder of patient subfolders" -- "$P" --checkpoint "$ckpt" --image "$work/patients" --json
[ "$(grep -o '"image":"[^"]*"' "$work/stdout" | sed 's/.*patients\///; s/"$//' | tr '\n' ' ')" = "p1/b.png p2/a.png " ] ||
  { echo "FAIL: predict did not walk the patient subfolders in order:"; cat "$work/stdout"; fails=$((fails + 1)); }

# Names with control characters (#22 item 4): every message prints them as \xNN (medimg::Error
# escapes its message), so it stays one line; the file itself is found and read as it is named.
nl_name=$'two\nlines.png'
expect "image name with a newline, missing" "image: $work/$(escape_controls "$nl_name"): file not found" -- "$P" --checkpoint "$ckpt" --image "$work/$nl_name"
cp "$data/images/truncated.png" "$work/$nl_name"
expect "image name with a newline, truncated" "$(escape_controls "$nl_name"): truncated PNG" -- "$P" --checkpoint "$ckpt" --image "$work/$nl_name"
esc_name=$'red\e[31m\tname.yaml'
expect "config name with an escape and a tab, missing" "config: cannot open '$work/$(escape_controls "$esc_name")'" -- "$T" --config "$work/$esc_name"
cp -r "$work/data/train" "$work/named" && cp "$data/images/truncated.png" "$work/named/lesao/$(printf 'bad\r\nimage.png')"
# (9 images in batches of 3: a last batch of one would be left out unread, bad image and all)
expect "training image name with CR LF, truncated" "named/lesao/bad\\x0d\\x0aimage.png: truncated PNG" -- "$T" --config "$work/ok.yaml" --set data.train="$work/named" --set output.dir="$work/out-named" --set train.batch_size=3
if [ -x "$bin/medimg-compare" ]; then
  expect "compare: reference name with a newline, missing" "image: $work/$(escape_controls "$nl_name")x: file not found" -- "$bin/medimg-compare" --reference "$work/${nl_name}x" --target "$data/images/gray8.png"
fi
accept "image name with a newline, valid" -- "$P" --checkpoint "$ckpt" --image "$(cp "$data/images/gray8.png" "$work/ok$nl_name"; echo "$work/ok$nl_name")"

# Format detection (#22 item 6): 'DICM' at byte 128 decides, whatever the 128-byte preamble looks
# like (PS3.10 7.1 leaves it free; dual TIFF/DICOM files put a TIFF header there). A DICOM file
# whose preamble starts like a PNG, a JPEG or a TIFF is read as DICOM, by any name.
if [ "${MEDIMG_TEST_DICOM:-0}" = 1 ]; then
  python3 - "$data/dicom/ct_hu.dcm" "$data/images/gray8.png" "$work" << 'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
png = open(sys.argv[2], "rb").read()
out = sys.argv[3]
for name, head in (("png_preamble.png", png), ("jpeg_preamble.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"),
                   ("1.2.840.113619.2.55.3", b"II*\x00\x08\x00\x00\x00")):
    d = bytearray(b); d[:len(head)] = head
    open(out + "/" + name, "wb").write(d)
cut = bytearray(b[:3000]); cut[:len(png)] = png
open(out + "/cut_png_preamble.png", "wb").write(cut)
PY
  accept "DICOM with a PNG preamble, named .png" -- "$P" --checkpoint "$ckpt" --image "$work/png_preamble.png"
  accept "DICOM with a JPEG preamble, named .jpg" -- "$P" --checkpoint "$ckpt" --image "$work/jpeg_preamble.jpg"
  accept "DICOM with a TIFF preamble, named by UID" -- "$P" --checkpoint "$ckpt" --image "$work/1.2.840.113619.2.55.3"
  expect "DICOM with a PNG preamble, cut short" "dicom: $work/cut_png_preamble.png: truncated: element (7FE0,0010)" -- "$P" --checkpoint "$ckpt" --image "$work/cut_png_preamble.png"
fi

[ "$(md5sum "$ckpt" | cut -d' ' -f1)" = "$sum_before" ] || { echo "FAIL: an existing checkpoint was modified"; fails=$((fails + 1)); }
echo "bad_inputs: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
