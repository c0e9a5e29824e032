#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""make_ssim_fixtures.py: writes tests/data/ssim/*.txt, the scikit-image reference values that
tests/cpu/test_ssim.cpp checks medimg::metrics::ssim / ms_ssim against.

Run by hand, never by the tests, with Debian's interpreter (python3-skimage 0.19.3, numpy, scipy):
    /usr/bin/python3 tests/data/make_ssim_fixtures.py
Inputs are deterministic (numpy default_rng, fixed seed); rerunning rewrites identical files.

File format (one case per file, whitespace-separated tokens, listed in index.txt):
    # comment lines
    name <case>
    shape <rank> <d0> <d1> [<d2>]          (H, W) or (C, H, W), row-major
    encoding dec | u8 | u16                dec: one value per token, 17 significant digits;
                                           u8 / u16: one token per image row of 2 / 4 hex digits
                                           per pixel, pixel = k / 255 or k / 65535 (exact in
                                           float64 on both sides, as 8- and 16-bit images are read)
    ssim_uniform <v>                       skimage default (7x7 uniform, sample covariance)
    ssim_gaussian <v> | none               Wang et al. 2004 (11-tap Gaussian, sigma 1.5,
                                           population covariance); none when a side is < 11
    ms_ssim <v>                            optional; this script's MS-SSIM (see ms_ssim below)
    a <values>   b <values>                the two images
    map_uniform <values>, map_gaussian <values>   optional full SSIM maps (dec), shape as the images
    end
Every value uses data_range=1.0 (images in [0, 1]). Multichannel cases are (C, H, W), reduced as
skimage does with channel_axis=0 (mean of per-channel SSIM).
"""
import os

import numpy as np
from scipy import ndimage as ndi
from skimage.metrics import structural_similarity

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ssim")
rng = np.random.default_rng(20240607)


def sk_uniform(a, b, full=False):
    kw = dict(channel_axis=0) if a.ndim == 3 else {}
    return structural_similarity(a, b, data_range=1.0, full=full, **kw)


def sk_gaussian(a, b, full=False):
    kw = dict(channel_axis=0) if a.ndim == 3 else {}
    return structural_similarity(a, b, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, full=full, **kw)


# --- MS-SSIM reference (numpy + scipy.ndimage only), the definition medimg implements -------------
# tf.image.ssim_multiscale / pytorch-msssim: at each of 5 scales the 11-tap Gaussian (sigma 1.5)
# SSIM and contrast-structure (cs) maps over the valid region (= skimage's Gaussian SSIM with its
# border crop), population covariance, K1 0.01, K2 0.03; means over that region; cs at scales 0-3
# and SSIM at scale 4, each clamped at 0 (relu), combined as prod(v_j ** w_j) with
# w = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) (Wang, Simoncelli & Bovik 2003). Between scales a
# 2x2 mean; an odd side first repeats its last row/column (TF's SYMMETRIC pad).
MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _ssim_cs(x, y):
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    f = lambda im: ndi.gaussian_filter(im, 1.5, truncate=3.5, mode="reflect")[5:-5, 5:-5]
    mx, my = f(x), f(y)
    vx, vy, vxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
    cs = (2 * vxy + c2) / (vx + vy + c2)
    s = (2 * mx * my + c1) / (mx * mx + my * my + c1) * cs
    return s.mean(), cs.mean()


def _down2(x):
    x = np.pad(x, ((0, x.shape[0] % 2), (0, x.shape[1] % 2)), mode="symmetric")
    return 0.25 * ((x[0::2, 0::2] + x[0::2, 1::2]) + (x[1::2, 0::2] + x[1::2, 1::2]))


def ms_ssim_2d(x, y):
    vals = []
    for level in range(5):
        s, cs = _ssim_cs(x, y)
        if level == 0:  # the finest scale is exactly skimage's Gaussian SSIM
            assert abs(s - sk_gaussian(x, y)) < 1e-12
        if level < 4:
            vals.append(max(cs, 0.0))
            x, y = _down2(x), _down2(y)
        else:
            vals.append(max(s, 0.0))
    return float(np.prod([v ** w for v, w in zip(vals, MS_WEIGHTS)]))


# --- inputs -------------------------------------------------------------------------------------
def smooth_field(shape, sigma=2.0):
    """Structured image in [0.05, 0.95]: smoothed noise plus a bright rectangle (edges)."""
    f = ndi.gaussian_filter(rng.standard_normal(shape), sigma)
    f = (f - f.min()) / (f.max() - f.min())
    h, w = shape
    f[h // 4: h // 2 + 1, w // 3: (2 * w) // 3 + 1] += 0.5
    f = (f - f.min()) / (f.max() - f.min())
    return 0.05 + 0.9 * f


def add_noise(a, s):
    return np.clip(a + s * rng.standard_normal(a.shape), 0.0, 1.0)


def q8(x):
    return np.round(np.clip(x, 0, 1) * 255).astype(np.int64)


def fmt(v):
    return repr(float(v)) if np.isfinite(v) else "nan"


def dec_block(x):
    flat = x.reshape(-1)
    lines = []
    for i in range(0, flat.size, 8):
        lines.append(" ".join("%.17g" % v for v in flat[i:i + 8]))
    return "\n".join(lines)


def hex_block(k, digits):
    w = k.shape[-1]
    rows = k.reshape(-1, w)
    return "\n".join("".join("%0*x" % (digits, int(v)) for v in row) for row in rows)


def write_case(name, a, b, encoding="dec", maps=False, ms=False, scale=None):
    """a, b: float64 images, or int arrays when encoding is u8/u16 (pixel = k / scale)."""
    if encoding == "dec":
        fa, fb = a.astype(np.float64), b.astype(np.float64)
        blk_a, blk_b = dec_block(fa), dec_block(fb)
    else:
        digits, scale = (2, 255.0) if encoding == "u8" else (4, 65535.0)
        assert a.min() >= 0 and a.max() < 16 ** digits and b.min() >= 0 and b.max() < 16 ** digits
        fa, fb = a.astype(np.float64) / scale, b.astype(np.float64) / scale
        blk_a, blk_b = hex_block(a, digits), hex_block(b, digits)
    assert fa.shape == fb.shape and fa.ndim in (2, 3)
    hw = fa.shape[-2:]
    su = sk_uniform(fa, fb)
    sg = sk_gaussian(fa, fb) if min(hw) >= 11 else None
    out = ["# generated by tests/data/make_ssim_fixtures.py (skimage 0.19.3); do not edit",
           "name " + name,
           "shape %d %s" % (fa.ndim, " ".join(str(d) for d in fa.shape)),
           "encoding " + encoding,
           "ssim_uniform " + fmt(su),
           "ssim_gaussian " + (fmt(sg) if sg is not None else "none")]
    if ms:
        out.append("ms_ssim " + fmt(ms_ssim_2d(fa, fb)))
    out += ["a", blk_a, "b", blk_b]
    if maps:
        out += ["map_uniform", dec_block(sk_uniform(fa, fb, full=True)[1])]
        if sg is not None:
            out += ["map_gaussian", dec_block(sk_gaussian(fa, fb, full=True)[1])]
    out.append("end")
    with open(os.path.join(OUT, name + ".txt"), "w") as f:
        f.write("\n".join(out) + "\n")
    print("%-24s uniform %.12f gaussian %s" % (name, su, "%.12f" % sg if sg is not None else "none"))
    return name


def main():
    os.makedirs(OUT, exist_ok=True)
    names = []
    # Smallest legal size for the default 7x7 window (a single pixel survives the crop).
    a = rng.random((7, 7))
    names.append(write_case("min_7x7_noise", a, add_noise(a, 0.1)))
    # Odd, non-square, with both full maps (elementwise check of the reflect border).
    a = smooth_field((11, 13), 1.5)
    names.append(write_case("noise_11x13", a, add_noise(a, 0.05), maps=True))
    a = smooth_field((32, 48))
    names.append(write_case("noise_32x48", a, add_noise(a, 0.08)))
    a = q8(smooth_field((63, 65)))
    names.append(write_case("blur_63x65", a, q8(ndi.gaussian_filter(a / 255.0, 1.0)), encoding="u8"))
    a = q8(smooth_field((128, 96), 3.0))
    names.append(write_case("shift_128x96", a, np.roll(a, (2, -3), axis=(0, 1)), encoding="u8"))
    a = q8(smooth_field((48, 40)))
    names.append(write_case("contrast_48x40", a, q8(0.5 + 0.6 * (a / 255.0 - 0.5)), encoding="u8"))
    a = q8(smooth_field((32, 32)))
    names.append(write_case("inverted_32x32", a, 255 - a, encoding="u8"))
    names.append(write_case("constant_both_16x16", np.full((16, 16), 0.25), np.full((16, 16), 0.75)))
    names.append(write_case("constant_same_12x14", np.full((12, 14), 0.5), np.full((12, 14), 0.5)))
    b = smooth_field((20, 24))
    names.append(write_case("constant_one_20x24", np.full((20, 24), 0.4), b))
    # 16-bit-like: a narrow band of a 16-bit range (CT-style counts), scaled by 1/65535.
    a = np.round(1000 + 3000 * smooth_field((40, 56))).astype(np.int64)
    b = np.clip(a + np.round(60 * rng.standard_normal(a.shape)), 0, 65535).astype(np.int64)
    names.append(write_case("u16_40x56", a, b, encoding="u16"))
    # Three channels (C, H, W).
    a = np.stack([smooth_field((24, 20)) for _ in range(3)])
    names.append(write_case("rgb_3x24x20", a, add_noise(a, 0.06)))
    # MS-SSIM: just above the 161-pixel minimum; odd sides exercise the pad-then-pool rule.
    a = q8(smooth_field((161, 170), 3.0))
    names.append(write_case("ms_161x170", a, q8(add_noise(a / 255.0, 0.1)), encoding="u8", ms=True))
    with open(os.path.join(OUT, "index.txt"), "w") as f:
        f.write("# fixture files read by tests/cpu/test_ssim.cpp, one per line\n")
        f.write("\n".join(n + ".txt" for n in names) + "\n")


if __name__ == "__main__":
    main()
