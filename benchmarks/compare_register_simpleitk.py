#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Rigid alignment of a 512x512 exam pair, medimg (bench_register.cpp: reg::align, ECC on the
# correlation coefficient, pyramid 512-256-128-64-32, Gaussian smoothing sigma 1 on the coarse
# levels and 0.7 at full size) vs SimpleITK's ImageRegistrationMethod with the same criterion
# (correlation), the same pyramid (shrink 16-8-4-2-1, the same smoothing in pixels), an Euler2D
# transform centred on the image and its regular-step gradient descent; both on the same files
# (medimg-phantoms --pairs 1 --size 512 --seed 7), 2 threads each, medians of 5.
# Usage (SimpleITK from pip, as tests/data/make_register_fixtures.py):
#   /tmp/sitk/bin/python benchmarks/compare_register_simpleitk.py build/benchmarks/medimg-bench build/examples/medimg-phantoms
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import SimpleITK as sitk
from PIL import Image


def simpleitk(ref, tgt):
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
    fixed = sitk.GetImageFromArray(ref.astype(np.float32))
    moving = sitk.GetImageFromArray(tgt.astype(np.float32))
    r = sitk.ImageRegistrationMethod()
    r.SetMetricAsCorrelation()
    r.SetInterpolator(sitk.sitkLinear)
    # minStep 1e-2: its fastest stopping rule that still ends near the optimum here (1e-3 takes
    # 3.6x longer; the tutorial's GradientDescent with a convergence window stops at 1 degree of 10)
    r.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-2, numberOfIterations=200,
                                               gradientMagnitudeTolerance=1e-8)
    r.SetOptimizerScalesFromPhysicalShift()
    r.SetShrinkFactorsPerLevel([16, 8, 4, 2, 1])
    r.SetSmoothingSigmasPerLevel([1, 1, 1, 1, 0.7])
    r.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    init = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler2DTransform(),
                                             sitk.CenteredTransformInitializerFilter.GEOMETRY)
    r.SetInitialTransform(init, inPlace=False)
    times, out = [], None
    for _ in range(5):
        t = time.perf_counter()
        out = r.Execute(fixed, moving)
        times.append(time.perf_counter() - t)
    e = sitk.Euler2DTransform(out.GetNthTransform(0) if out.GetName() == "CompositeTransform" else out)
    return statistics.median(times), math.degrees(e.GetAngle()), e.GetTranslation()


def medimg(bench):
    out = subprocess.run([bench, "--benchmark_filter=^BM_align_rigid/", "--benchmark_repetitions=5", "--benchmark_format=json"],
                         capture_output=True, text=True, check=True, env=dict(os.environ, OMP_NUM_THREADS="2")).stdout
    d = json.loads(out)
    runs = [b for b in d["benchmarks"] if b.get("run_type") == "iteration"]
    scale = {"ms": 1e-3, "us": 1e-6, "ns": 1e-9, "s": 1.0}[runs[0]["time_unit"]]
    return statistics.median(b["real_time"] for b in runs) * scale, runs[0]["angle_deg"]


def main():
    bench, phantoms = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([phantoms, "--out", os.path.join(tmp, "p"), "--pairs", "1", "--size", "512", "--seed", "7"], check=True,
                       stdout=subprocess.DEVNULL)
        ref = np.asarray(Image.open(os.path.join(tmp, "p", "0000_reference.png")), dtype=np.float64) / 65535.0
        tgt = np.asarray(Image.open(os.path.join(tmp, "p", "0000_moved_lesion.png")), dtype=np.float64) / 65535.0
        with open(os.path.join(tmp, "p", "pairs.csv")) as f:
            truth = next(csv.DictReader(f))
    s_time, s_angle, s_t = simpleitk(ref, tgt)
    m_time, m_angle = medimg(bench)
    print("SimpleITK %s; truth: %.3f deg, (%.2f, %.2f) px" % (sitk.Version_VersionString(), float(truth["angle_deg"]),
                                                              float(truth["tx"]), float(truth["ty"])))
    print("| work | medimg ms | SimpleITK ms | ratio |")
    print("| --- | ---: | ---: | ---: |")
    print("| rigid alignment, 512x512 (medimg %.3f deg, SimpleITK %.3f deg) | %.1f | %.1f | %.1fx |" %
          (m_angle, s_angle, m_time * 1e3, s_time * 1e3, s_time / m_time))


if __name__ == "__main__":
    main()
