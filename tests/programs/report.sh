#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# medimg-evaluate --report end to end (ctest: programs.report): a tiny phantom set, 2 epochs,
# then the report. Requires: report.html written, self-contained (every <img> a data: URI, no
# http(s) or file reference), the figures the page promises (ROC, PR, confusion, reliability,
# loss, accuracy, and the gallery); a report folder that cannot be made fails before evaluating.
# Then, where Debian's chromium is installed (scripts/install-deps.sh --tests), opens the page
# headless: every image must have decoded (the page's own check, data-loaded="n/n") and the
# screenshot must not be blank (many colours, a good share of non-white pixels). Without chromium
# that part is skipped with a message.
# Usage: report.sh BIN_DIR
set -uo pipefail
bin=$(cd "$1" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cd "$work" || exit 1
"$bin/medimg-phantoms" --out data --size 32 --train 24 --val 12 --test 16 > /dev/null || fail "medimg-phantoms"
cat > r.yaml <<YAML
data: {train: data/train, val: data/val, test: data/test, image_size: 32, resize: 32, channels: 1, mean: [0.3], std: [0.25],
       augment: {random_resized_crop: false}}
train: {epochs: 2, batch_size: 8, optimizer: adam, seed: 3}
runtime: {workers: 2}
output: {dir: out}
YAML
"$bin/medimg-train" --config r.yaml > train.log 2>&1 || { cat train.log; fail "medimg-train"; }
"$bin/medimg-evaluate" --config r.yaml --checkpoint out/checkpoints/best.safetensors --report rep > eval.log 2>&1 ||
  { cat eval.log; fail "medimg-evaluate --report"; }
html=rep/report.html
[ -s $html ] || fail "no $html"
grep -q "medimg-evaluate: report: rep/report.html" eval.log || { cat eval.log; fail "the report's line is missing"; }
imgs=$(grep -o '<img ' $html | wc -l)
uris=$(grep -o '<img src="data:image/png;base64,' $html | wc -l)
[ "$imgs" -ge 6 ] || fail "the report has $imgs images, expected at least 6"
[ "$imgs" -eq "$uris" ] || fail "$((imgs - uris)) of $imgs images are not embedded"
! grep -qE 'https?://|file:|src="[^d]' $html || fail "the report refers to something outside itself"
for want in "ROC curve of p(lesao)" "Precision against recall" "Confusion matrix and calibration" \
            "equal-width confidence bins" "Cross-entropy loss per epoch" "not for clinical diagnosis" "False negatives"; do
  grep -q "$want" $html || fail "the report lacks '$want'"
done
# a folder that cannot be made: one line, before any evaluation
touch afile
"$bin/medimg-evaluate" --config r.yaml --checkpoint out/checkpoints/best.safetensors --report afile > bad.log 2>&1 &&
  fail "--report onto a file succeeded"
grep -q "cannot create the folder 'afile'" bad.log || { cat bad.log; fail "unclear --report error"; }
[ "$(wc -l < bad.log)" -eq 1 ] || { cat bad.log; fail "--report error is not one line"; }

browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "report: passed ($imgs embedded images); the headless-browser check SKIPPED: chromium is not installed (bash scripts/install-deps.sh --tests)"
  exit 0
fi
flags=(--headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$work/chrome" --virtual-time-budget=5000)
timeout 120 "$browser" "${flags[@]}" --dump-dom "file://$work/$html" > dom.html 2> chrome.log || { tail -5 chrome.log; fail "chromium --dump-dom"; }
loaded=$(grep -o 'data-loaded="[0-9]*/[0-9]*"' dom.html | head -1)
[ "$loaded" = "data-loaded=\"$imgs/$imgs\"" ] || fail "chromium decoded $loaded of $imgs images"
timeout 120 "$browser" "${flags[@]}" --window-size=1280,2400 --screenshot="$work/shot.png" "file://$work/$html" > /dev/null 2>> chrome.log ||
  { tail -5 chrome.log; fail "chromium --screenshot"; }
[ -s shot.png ] || fail "no screenshot"
# The screenshot decoded with Python's standard library (zlib): distinct colours and ink.
python3 - shot.png <<'PY' || fail "the screenshot looks blank"
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, w = 8, b"", 0
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8]); body = data[pos + 8:pos + 8 + n]; pos += 12 + n
    if kind == b"IHDR": w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
    elif kind == b"IDAT": idat += body
assert depth == 8 and ctype in (2, 6), f"unexpected PNG type {depth}/{ctype}"
bpp = 3 if ctype == 2 else 4
raw, stride, prev, rows = zlib.decompress(idat), w * bpp, bytearray(w * bpp), []
for y in range(h):
    f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0; b = prev[i]; c = prev[i - bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    rows.append(bytes(line)); prev = line
colours, ink = set(), 0
for r in rows[::4]:
    for x in range(0, w, 4):
        px = r[x * bpp:x * bpp + 3]; colours.add(px); ink += px != b"\xff\xff\xff"
share = ink / (len(rows[::4]) * len(range(0, w, 4)))
print(f"screenshot {w}x{h}: {len(colours)} colours, {share:.1%} non-white")
assert len(colours) > 200 and share > 0.05, "blank"
PY
echo "report: passed ($imgs embedded images, all decoded by chromium, the screenshot is not blank)"
