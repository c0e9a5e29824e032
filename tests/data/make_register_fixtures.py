#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""make_register_fixtures.py: writes tests/data/register/, image pairs moved by known transforms,
with the ground truth, SimpleITK's registration of each pair and scikit-image's
phase_cross_correlation for the pure translations. tests/cpu/test_register.cpp recovers every
transform with medimg's reg::align and compares.

Run by hand, never by the tests, in a virtual environment with SimpleITK, scikit-image, numpy and
Pillow from pip (SimpleITK is not in Debian 12):
    python3 -m venv /tmp/sitk && /tmp/sitk/bin/pip install SimpleITK scikit-image numpy pillow
    /tmp/sitk/bin/python tests/data/make_register_fixtures.py build/examples/medimg-phantoms
Inputs are deterministic (medimg-phantoms' seeded slices); rerunning rewrites identical files,
except SimpleITK's timings.

The convention (register/transform.hpp, and ITK's): a transform maps a reference pixel x (x the
column, y the row) to the target, W(x) = A (x - c) + c + t, c the image centre ((W-1)/2, (H-1)/2).
A target is made from its reference so that W is the truth: target(y) = reference(W^-1(y)),
sampled with cubic splines (skimage.transform.warp, order 3), 0 outside the reference; a pure
translation is applied as a phase ramp instead (scipy.ndimage.fourier_shift: a periodic shift,
the model phase correlation assumes, over a background that is dark at the edges anyway).

Files written (8-bit greyscale PNGs, read by medimg as k / 255), 128 x 128:
    ref_<n>.png            two phantom slices (a normal one and one with a lesion)
    <case>.png             the moved targets
    cases.json             per case: reference, target, motion, truth {angle_deg, tx, ty, A},
                           simpleitk {angle_deg, tx, ty, A, seconds}, and for translations
                           skimage_phase {tx, ty} (upsample_factor 100)
"""
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import SimpleITK as sitk
from PIL import Image
from skimage.registration import phase_cross_correlation
from scipy.ndimage import fourier_shift
from skimage.transform import warp

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "register")
SIDE = 128

# (name, reference index, motion, angle in degrees, tx, ty, extra affine part [[a b] [c d]] or None)
CASES = [
    ("translation_a", 0, "translation", 0.0, 3.3, -2.6, None),
    ("translation_b", 1, "translation", 0.0, -11.7, 7.25, None),
    ("rigid_small", 0, "rigid", 2.5, 1.5, -0.75, None),
    ("rigid_7deg", 1, "rigid", -7.0, -4.0, 6.5, None),
    ("rigid_12deg", 0, "rigid", 12.0, 9.0, -5.0, None),
    ("rigid_15deg", 1, "rigid", -15.0, -12.8, -12.8, None),
    ("rigid_15deg_b", 0, "rigid", 15.0, 12.8, 3.0, None),
    ("affine_scale", 0, "affine", 4.0, 3.0, -2.0, [[1.06, 0.0], [0.0, 0.95]]),
    ("affine_shear", 1, "affine", -6.0, -5.0, 4.0, [[1.0, 0.08], [-0.03, 1.04]]),
]


def truth_matrix(angle_deg, extra):
    th = math.radians(angle_deg)
    R = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    return R if extra is None else R @ np.array(extra)


def move(ref, A, t):
    """target(y) = ref(W^-1(y)), W(x) = A (x - c) + c + t."""
    c = np.array([(SIDE - 1) / 2, (SIDE - 1) / 2])
    Ainv = np.linalg.inv(A)

    def inverse_map(coords):  # output (col, row) -> input (col, row)
        return (Ainv @ (coords - c - t).T).T + c

    return warp(ref, inverse_map, order=3, mode="constant", cval=0.0, preserve_range=True)


def simpleitk(ref, tgt, motion):
    fixed = sitk.GetImageFromArray(ref.astype(np.float32))
    moving = sitk.GetImageFromArray(tgt.astype(np.float32))
    if motion == "translation":
        tx = sitk.TranslationTransform(2)
    elif motion == "rigid":
        tx = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler2DTransform(),
                                               sitk.CenteredTransformInitializerFilter.GEOMETRY)
    else:
        tx = sitk.CenteredTransformInitializer(fixed, moving, sitk.AffineTransform(2),
                                               sitk.CenteredTransformInitializerFilter.GEOMETRY)
    r = sitk.ImageRegistrationMethod()
    r.SetMetricAsCorrelation()
    r.SetInterpolator(sitk.sitkLinear)
    r.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-5, numberOfIterations=500,
                                               gradientMagnitudeTolerance=1e-8)
    r.SetOptimizerScalesFromPhysicalShift()
    r.SetShrinkFactorsPerLevel([4, 2, 1])
    r.SetSmoothingSigmasPerLevel([2, 1, 0])
    r.SetInitialTransform(tx, inPlace=False)
    start = time.perf_counter()
    out = r.Execute(fixed, moving)
    seconds = time.perf_counter() - start
    out = out.GetNthTransform(0) if hasattr(out, "GetNthTransform") and out.GetName() == "CompositeTransform" else out
    c = np.array([(SIDE - 1) / 2, (SIDE - 1) / 2])
    # every ITK transform here is x -> A (x - center) + center + translation; re-express about c
    if motion == "translation":
        A, t = np.eye(2), np.array(out.GetOffset())
    else:
        kind = sitk.Euler2DTransform(out) if motion == "rigid" else sitk.AffineTransform(out)
        A = np.array(kind.GetMatrix()).reshape(2, 2)
        center = np.array(kind.GetCenter())
        # A (x - center) + center + T = A (x - c) + c + [T + A (c - center) - (c - center)]
        t = np.array(kind.GetTranslation()) + A @ (c - center) - (c - center)
    return A, t, seconds


def describe(A, t):
    return {"angle_deg": math.degrees(math.atan2(A[1, 0], A[0, 0])), "tx": float(t[0]), "ty": float(t[1]),
            "A": [float(v) for v in A.reshape(-1)]}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_register_fixtures.py PATH/TO/medimg-phantoms")
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.argv[1], "--out", os.path.join(tmp, "p"), "--size", str(SIDE), "--train", "4", "--val", "2",
                        "--test", "2", "--seed", "11"], check=True, stdout=subprocess.DEVNULL)
        refs = [np.asarray(Image.open(os.path.join(tmp, "p", "train", c, "0000.png")), dtype=np.float64) / 65535.0
                for c in ("normal", "lesao")]
    refs = [np.round(r * 255) / 255 for r in refs]  # as the 8-bit files will hold them
    for i, r in enumerate(refs):
        Image.fromarray(np.round(r * 255).astype(np.uint8)).save(os.path.join(OUT, f"ref_{i}.png"), optimize=True)
    cases = []
    for name, ri, motion, angle, tx, ty, extra in CASES:
        A = truth_matrix(angle, extra)
        t = np.array([tx, ty])
        if motion == "translation":
            moved = np.real(np.fft.ifft2(fourier_shift(np.fft.fft2(refs[ri]), (ty, tx))))
        else:
            moved = move(refs[ri], A, t)
        tgt = np.clip(np.round(moved * 255) / 255, 0, 1)
        Image.fromarray(np.round(tgt * 255).astype(np.uint8)).save(os.path.join(OUT, name + ".png"), optimize=True)
        sA, st, secs = simpleitk(refs[ri], tgt, motion)
        case = {"name": name, "reference": f"ref_{ri}.png", "target": name + ".png", "motion": motion,
                "truth": describe(A, t), "simpleitk": dict(describe(sA, st), seconds=secs)}
        if motion == "translation":
            shift, _, _ = phase_cross_correlation(refs[ri], tgt, upsample_factor=100)
            # the shift that registers the target to the reference: target moved by -t
            case["skimage_phase"] = {"tx": float(-shift[1]), "ty": float(-shift[0])}
        cases.append(case)
        print(name, json.dumps({k: case[k] for k in case if k in ("truth", "simpleitk", "skimage_phase")}))
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"side": SIDE, "cases": cases}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
