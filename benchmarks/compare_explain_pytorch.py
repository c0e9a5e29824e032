#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Explaining one 3x224x224 image by ResNet18 (2 classes) on the CPU, medimg vs the Python tools a
# PyTorch user installs for it, interleaved in one run (benchmarks/RESULTS.md, docs/explain.md):
#   predict    a plain forward pass under no_grad (the unit the others are measured in)
#   gradcam    pytorch-grad-cam's GradCAM(model, [model.layer4]) for the predicted class
#   gradcam++  pytorch-grad-cam's GradCAMPlusPlus, the same
#   occlusion  Captum's Occlusion: window (3, 32, 32), strides (3, 16, 16), baseline 0,
#              perturbations_per_eval 32 (medimg: patch 32, stride 16, batches of 32)
# PyTorch runs with 2 threads; the CAM objects are built once, outside the timing. Every
# measurement is its own process; medians of the per-process medians over REPEATS.
# Usage (pip packages grad-cam and captum over a PyTorch, e.g. the venv of make_explain_fixtures.py):
#   /tmp/gcam/bin/python benchmarks/compare_explain_pytorch.py build/benchmarks/medimg-bench [--repeats 3]
import argparse
import json
import os
import statistics
import subprocess
import sys

THREADS = 2
WORKS = ["predict", "gradcam", "gradcam++", "occlusion"]

TORCH_CHILD = r'''
import sys, time, json, torch, torchvision
work, iters = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(%d)
torch.manual_seed(0)
m = torchvision.models.resnet18(num_classes=2).eval()
x = torch.randn(1, 3, 224, 224)
with torch.no_grad():
    c = int(m(x).argmax(1))
if work == "predict":
    def step():
        with torch.no_grad():
            m(x)
elif work in ("gradcam", "gradcam++"):
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    cam = (GradCAM if work == "gradcam" else GradCAMPlusPlus)(model=m, target_layers=[m.layer4])
    def step():
        cam(input_tensor=x, targets=[ClassifierOutputTarget(c)])
else:
    from captum.attr import Occlusion
    occ = Occlusion(m)
    def step():
        occ.attribute(x, target=c, sliding_window_shapes=(3, 32, 32), strides=(3, 16, 16), baselines=0,
                      perturbations_per_eval=32)
step()
ts = []
for _ in range(iters):
    t = time.perf_counter(); step(); ts.append(time.perf_counter() - t)
ts.sort()
print(json.dumps({"seconds": ts[len(ts) // 2], "torch": torch.__version__}))
''' % THREADS


def run(cmd, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(cmd), out.stderr[-2000:]))
    return out.stdout


def torch_seconds(work, iters):
    r = json.loads(run([sys.executable, "-c", TORCH_CHILD, work, str(iters)]).strip().splitlines()[-1])
    return r["seconds"], r["torch"]


def medimg_seconds(bench, work, iters):
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS))
    out = run([bench, "--benchmark_filter=^BM_explain/work:%d/" % WORKS.index(work), "--benchmark_min_time=0",
               "--benchmark_repetitions=%d" % iters, "--benchmark_format=json"], env)
    data = json.loads(out)
    times = [b["real_time"] for b in data["benchmarks"] if b.get("run_type") == "iteration"]
    scale = {"ms": 1e-3, "us": 1e-6, "ns": 1e-9, "s": 1.0}[data["benchmarks"][0]["time_unit"]]
    return statistics.median(times) * scale


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bench")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    mine = {w: [] for w in WORKS}
    theirs = {w: [] for w in WORKS}
    version = "?"
    for _ in range(a.repeats):
        for w in WORKS:
            iters = 3 if w == "occlusion" else 7
            mine[w].append(medimg_seconds(a.bench, w, iters))
            s, version = torch_seconds(w, iters)
            theirs[w].append(s)
    med = {w: (statistics.median(mine[w]), statistics.median(theirs[w])) for w in WORKS}
    print("torch %s, %d threads, medians of %d processes" % (version, THREADS, a.repeats))
    print("| work | medimg ms | x predict | PyTorch tool ms | x predict | medimg speed-up |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for w in WORKS:
        m, t = med[w]
        print("| %s | %.1f | %.2f | %.1f | %.2f | %.2fx |" % (w, m * 1e3, m / med["predict"][0], t * 1e3,
                                                              t / med["predict"][1], t / m))


if __name__ == "__main__":
    main()
