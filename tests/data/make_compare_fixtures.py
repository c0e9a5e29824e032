#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""make_compare_fixtures.py: writes tests/data/compare/, the "real-looking" image pair that
tests/cpu/test_compare.cpp runs medimg-compare's logic on, with scikit-image's numbers for it; and
prints the viridis polynomial that include/medimg/metrics/colormap.hpp evaluates.

Run by hand, never by the tests, with Debian's interpreter (python3-skimage 0.19.3, numpy, scipy,
Pillow; matplotlib optional, only to report the colour-map fit error):
    /usr/bin/python3 tests/data/make_compare_fixtures.py
    /usr/bin/python3 tests/data/make_compare_fixtures.py --doc-picture build/examples/medimg-compare
The second form also runs medimg-compare on the pair and lays its outputs side by side in
docs/images/compare-example.png (reference | target | SSIM map | difference map, 2x enlarged).
Inputs are deterministic (skimage.data.camera(), which ships with scikit-image, and numpy's
default_rng with a fixed seed); rerunning rewrites identical files.

Files written (8-bit greyscale PNGs, read by medimg as k / 255):
    reference.png   camera() rows 32..479, 4x4 block means -> 112 x 128 (H x W, not square on
                    purpose so that a swapped H/W shows up)
    target.png      reference blurred (Gaussian, sigma 1), plus a bright Gaussian blob (amplitude
                    0.35, sigma 6 px, centre row 40 col 85), plus N(0, 0.02) noise, clipped to [0, 1]
    mask.png        255 inside a disk of radius 20 around the blob's centre, 0 elsewhere
    expected.txt    "key value" lines: skimage SSIM (both conventions), MAE, and the masked versions
                    (the mean of skimage's full SSIM map over mask pixels inside the cropped region,
                    and the MAE over mask pixels), each on the float64 images k / 255
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage import data
from skimage.metrics import structural_similarity

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "compare")

# ---- viridis anchors and the fit colormap.hpp uses ----------------------------------------------
# Eleven colours of viridis at t = 0, 0.1, ..., 1 (van der Walt & Smith, matplotlib 1.5, 2015,
# https://bids.github.io/colormap/; the same hex codes are printed by R's viridisLite::viridis(11)
# and by matplotlib.colormaps["viridis"](np.linspace(0, 1, 11))). A least-squares polynomial of
# degree 7 per channel through these anchors is what colormap.hpp evaluates; only these eleven
# published colours enter the fit.
VIRIDIS_ANCHORS = ["#440154", "#482475", "#414487", "#355f8d", "#2a788e", "#21918c",
                   "#22a884", "#44bf70", "#7ad151", "#bddf26", "#fde725"]
VIRIDIS_DEGREE = 7


def viridis_fit():
    t = np.linspace(0.0, 1.0, len(VIRIDIS_ANCHORS))
    rgb = np.array([[int(h[i:i + 2], 16) / 255.0 for i in (1, 3, 5)] for h in VIRIDIS_ANCHORS])
    # Coefficients of t^0 .. t^7 (np.polyfit returns the highest power first).
    return [np.polyfit(t, rgb[:, c], VIRIDIS_DEGREE)[::-1] for c in range(3)], t, rgb


def report_viridis():
    coeffs, t, rgb = viridis_fit()
    print("viridis fit, coefficients of t^0 .. t^%d (paste into colormap.hpp):" % VIRIDIS_DEGREE)
    for name, c in zip("rgb", coeffs):
        print("  %s: {%s}" % (name, ", ".join("%.17g" % v for v in c)))
    at = np.stack([np.polynomial.polynomial.polyval(t, c) for c in coeffs], 1)
    print("  largest error at the anchors: %.3f / 255" % (np.abs(at - rgb).max() * 255))
    try:  # the full published table, only to measure the fit; nothing from it is stored
        import matplotlib
        tt = np.linspace(0.0, 1.0, 256)
        full = matplotlib.colormaps["viridis"](tt)[:, :3]
        fit = np.clip(np.stack([np.polynomial.polynomial.polyval(tt, c) for c in coeffs], 1), 0, 1)
        print("  largest error against matplotlib %s's 256 colours: %.3f / 255"
              % (matplotlib.__version__, np.abs(fit - full).max() * 255))
    except ImportError:
        print("  (matplotlib not installed: fit error against the full table not measured)")


# ---- the image pair -------------------------------------------------------------------------------
def make_images():
    cam = data.camera().astype(np.float64)                      # (512, 512) uint8 -> float
    ref = cam[32:480].reshape(112, 4, 128, 4).mean(axis=(1, 3))  # (112, 128), 4x4 block means
    ref_u8 = np.clip(np.round(ref), 0, 255).astype(np.uint8)
    r = ref_u8 / 255.0
    rows, cols = np.mgrid[0:112, 0:128]
    blob = 0.35 * np.exp(-((rows - 40.0) ** 2 + (cols - 85.0) ** 2) / (2 * 6.0 ** 2))
    noise = np.random.default_rng(20240611).normal(0.0, 0.02, size=r.shape)
    tgt = np.clip(ndi.gaussian_filter(r, 1.0, mode="reflect") + blob + noise, 0.0, 1.0)
    tgt_u8 = np.round(tgt * 255.0).astype(np.uint8)
    mask_u8 = np.where((rows - 40) ** 2 + (cols - 85) ** 2 <= 20 ** 2, 255, 0).astype(np.uint8)
    return ref_u8, tgt_u8, mask_u8


def doc_picture(program):
    """docs/images/compare-example.png from medimg-compare's own outputs on the fixture pair."""
    from PIL import ImageDraw
    ref, tgt = os.path.join(OUT, "reference.png"), os.path.join(OUT, "target.png")
    with tempfile.TemporaryDirectory() as tmp:
        smap, dmap = os.path.join(tmp, "ssim.png"), os.path.join(tmp, "diff.png")
        out = subprocess.run([program, "--reference", ref, "--target", tgt, "--json", "--ssim-map", smap,
                              "--diff-map", dmap], capture_output=True, text=True, check=True).stdout
        res = json.loads(out)
        panels = [Image.open(p).convert("RGB") for p in (ref, tgt, smap, dmap)]
    coeffs, _, _ = viridis_fit()
    scale, gap, top, bar = 2, 8, 34, 30
    w, h = panels[0].width * scale, panels[0].height * scale
    canvas = Image.new("RGB", (4 * w + 5 * gap, top + h + bar + gap), "white")
    draw = ImageDraw.Draw(canvas)
    titles = ["reference", "target", "SSIM map (uniform 7x7)", "|reference - target|"]
    notes = ["", "SSIM %.4f, MAE %.4f" % (res["ssim"], res["mae"]), "0 .. 1", "0 .. %.3f" % res["max_abs_diff"]]
    for k, (p, t, n) in enumerate(zip(panels, titles, notes)):
        x = gap + k * (w + gap)
        canvas.paste(p.resize((w, h), Image.NEAREST), (x, top))
        draw.text((x, 4), t, fill="black")
        draw.text((x, 18), n, fill="black")
        if k >= 2:  # the colour bar of this map: viridis from the left (0) to the right (top of range)
            for i in range(w):
                t01 = i / (w - 1)
                rgb = [int(round(255 * min(1.0, max(0.0, np.polynomial.polynomial.polyval(t01, c))))) for c in coeffs]
                draw.line([(x + i, top + h + 6), (x + i, top + h + 18)], fill=tuple(rgb))
            lo, hi = ("0", "1") if k == 2 else ("0", "%.3f" % res["max_abs_diff"])
            draw.text((x, top + h + 20), lo, fill="black")
            draw.text((x + w - 6 * len(hi), top + h + 20), hi, fill="black")
    path = os.path.join(HERE, "..", "..", "docs", "images", "compare-example.png")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    canvas.save(path, optimize=True)
    print("wrote %s (%d bytes): ssim %.6f, mae %.6f, max |diff| %.6f"
          % (os.path.normpath(path), os.path.getsize(path), res["ssim"], res["mae"], res["max_abs_diff"]))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--doc-picture":
        return doc_picture(sys.argv[2])
    report_viridis()
    os.makedirs(OUT, exist_ok=True)
    ref_u8, tgt_u8, mask_u8 = make_images()
    for name, img in (("reference", ref_u8), ("target", tgt_u8), ("mask", mask_u8)):
        Image.fromarray(img, mode="L").save(os.path.join(OUT, name + ".png"), optimize=True)
        back = np.asarray(Image.open(os.path.join(OUT, name + ".png")))
        assert back.dtype == np.uint8 and np.array_equal(back, img)

    a, b = ref_u8 / 255.0, tgt_u8 / 255.0  # float64 k / 255, as the prototype read them
    m = mask_u8 > 0
    lines = ["# written by tests/data/make_compare_fixtures.py (scikit-image 0.19, data_range=1.0)",
             "height %d" % a.shape[0], "width %d" % a.shape[1]]
    conventions = {
        "uniform": dict(),  # skimage default: 7x7 uniform, sample covariance
        "gaussian": dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False),
    }
    for name, kw in conventions.items():
        mean, smap = structural_similarity(a, b, data_range=1.0, full=True, **kw)
        pad = 3 if name == "uniform" else 5  # skimage's crop: (win_size - 1) // 2
        inner = np.zeros_like(m)
        inner[pad:-pad, pad:-pad] = True
        sel = m & inner
        lines.append("ssim_%s %.17g" % (name, mean))
        lines.append("masked_ssim_%s %.17g" % (name, smap[sel].mean()))
        lines.append("masked_ssim_pixels_%s %d" % (name, sel.sum()))
        # medimg reads pixels as float32; the same SSIM on those values shows the effect is tiny.
        a32 = (ref_u8.astype(np.float32) / np.float32(255)).astype(np.float64)
        b32 = (tgt_u8.astype(np.float32) / np.float32(255)).astype(np.float64)
        d = abs(structural_similarity(a32, b32, data_range=1.0, **kw) - mean)
        print("ssim %s %.12f (float32 pixels change it by %.1e)" % (name, mean, d))
    diff = np.abs(a - b)
    lines.append("mae %.17g" % diff.mean())
    lines.append("max_abs_diff %.17g" % diff.max())
    lines.append("masked_mae %.17g" % diff[m].mean())
    lines.append("masked_pixels %d" % m.sum())
    with open(os.path.join(OUT, "expected.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
