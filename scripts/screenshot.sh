#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A report page as a person sees it, for docs/: headless Chromium at 1280 px wide, cropped to the
# page's content and reduced to 256 colours (the PNG in docs/images stays small).
# Needs chromium and python3-pil (Debian). Usage: bash scripts/screenshot.sh REPORT.html OUT.png
# (docs/images/crossval-report.png: build/demo/cv/crossval/report.html after the README's
# medimg-crossval command.)
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: screenshot.sh REPORT.html OUT.png" >&2; exit 2; }
page=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$tmp/profile" \
  --window-size=1280,6000 --screenshot="$tmp/shot.png" "file://$page" > /dev/null 2>&1
/usr/bin/python3 - "$tmp/shot.png" "$2" <<'PY'
import sys
from PIL import Image, ImageChops
im = Image.open(sys.argv[1]).convert("RGB")
box = ImageChops.difference(im, Image.new("RGB", im.size, (255, 255, 255))).getbbox()
im = im.crop((0, 0, im.size[0], min(im.size[1], box[3] + 16)))
im.quantize(colors=256, method=Image.FASTOCTREE, dither=Image.NONE).save(sys.argv[2], optimize=True)
print(f"{sys.argv[2]}: {im.size[0]} x {im.size[1]}")
PY
