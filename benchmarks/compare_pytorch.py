#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The classification models on the CPU, medimg vs PyTorch, interleaved in one run (benchmarks/RESULTS.md):
# resnet18 (default), densenet121, efficientnet_b0, vit_tiny_patch16_224 and vit_small_patch16_224
# (--models; one RESULTS.md section per model list).
# Workloads: training step (forward + cross-entropy + backward + Adam) at batch 32 on 3x224x224
# and (CNNs) 3x128x128; inference at batch 1 and 32 on 3x224x224. PyTorch runs with 2 threads in its
# default layout and channels_last (and frozen TorchScript for inference); its best mode is the
# peer. The ViTs are timm's (timm.create_model; its attention calls
# torch.nn.functional.scaled_dot_product_attention where torch has it), measured only with the
# interpreters that have timm, in the default layout (channels_last only concerns the patch
# convolution) and frozen TorchScript. Every measurement is its own process, so peak RSS is per workload. Medians of REPEATS.
# --python may be given several times (Debian's python3-torch and a newest-PyTorch virtual
# environment): each runs every mode, and the fastest (interpreter, mode) per workload is the peer.
# Also the compile time of examples/train.cpp (includes medimg.hpp, trains ResNet18) with the
# project's Release flags, and (unless --no-epoch) one training epoch end to end, what a user waits
# for: phantom slices at 128x128 (medimg-phantoms: 400 train + 100 validation, 16-bit PNGs), ResNet18
# from scratch, Adam 1e-3, batch 32, no augmentation, decode + normalise + step + validation +
# checkpoint. medimg: `medimg-train` for one epoch, the process's wall time. PyTorch: the
# prototype's loop (torchvision resnet18, a Dataset decoding the same PNGs with PIL + numpy, a
# DataLoader with 0 or 2 workers, torch.save of the weights), timed after `import torch` (its
# import time, ~1-2 s, is left out in PyTorch's favour). Each is run once more beside a busy
# process pinned to core 0 (`taskset -c 0`): the slowdown factor busy / quiet shows how each
# shares the machine.
# Usage: /usr/bin/python3 benchmarks/compare_pytorch.py build/benchmarks/medimg-bench
#            [--python /usr/bin/python3 --python VENV/bin/python] [--repeats 3] [--models resnet18,...] [--write]
import argparse
import datetime
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time

THREADS = 2
WORKLOADS = [("train", 32, 224), ("train", 32, 128), ("infer", 1, 224), ("infer", 32, 224)]

TORCH_CHILD = r'''
import sys, time, json, resource, torch, torchvision
kind, n, side, mode, iters, arch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6]
torch.set_num_threads(%d)
torch.manual_seed(0)
if arch.startswith("vit_") and arch != "vit_b_16":
    import timm
    m = timm.create_model(arch, num_classes=2)
else:
    m = getattr(torchvision.models, arch)(num_classes=2)
x = torch.randn(n, 3, side, side)
y = torch.arange(n) %% 2
if mode in ("channels_last", "frozen_cl"):
    m = m.to(memory_format=torch.channels_last)
    x = x.to(memory_format=torch.channels_last)
if kind == "train":
    m.train()
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    def step():
        loss = torch.nn.functional.cross_entropy(m(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
else:
    m.eval()
    if mode.startswith("frozen"):
        with torch.no_grad():
            m = torch.jit.freeze(torch.jit.trace(m, x))
    def step():
        with torch.no_grad():
            m(x)
for _ in range(2): step()
ts = []
for _ in range(iters):
    t = time.perf_counter(); step(); ts.append(time.perf_counter() - t)
ts.sort()
print(json.dumps({"seconds": ts[len(ts) // 2], "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
''' % THREADS


TORCH_EPOCH = r'''
import sys, os, time
import numpy as np, torch, torchvision
from PIL import Image
root, out, workers, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(%d)
t0 = time.perf_counter()
torch.manual_seed(0)
classes = ["normal", "lesao"]
def items(split):
    return [(os.path.join(root, split, c, f), i) for i, c in enumerate(classes) for f in sorted(os.listdir(os.path.join(root, split, c)))]
class Slices(torch.utils.data.Dataset):
    def __init__(self, items): self.items = items
    def __len__(self): return len(self.items)
    def __getitem__(self, i):
        path, label = self.items[i]
        a = np.asarray(Image.open(path), dtype=np.float32) / 65535.0  # 16-bit gray
        x = (torch.from_numpy(a)[None].expand(3, -1, -1) - 0.3) / 0.25
        return x.contiguous(), label
train = torch.utils.data.DataLoader(Slices(items("train")), batch_size=32, shuffle=True, num_workers=workers)
val = torch.utils.data.DataLoader(Slices(items("val")), batch_size=32, num_workers=workers)
m = torchvision.models.resnet18(num_classes=2)
if mode == "channels_last":
    m = m.to(memory_format=torch.channels_last)
opt = torch.optim.Adam(m.parameters(), 1e-3)
m.train()
for x, y in train:
    if mode == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    loss = torch.nn.functional.cross_entropy(m(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
m.eval()
correct = 0
with torch.no_grad():
    for x, y in val:
        correct += int((m(x).argmax(1) == y).sum())
torch.save(m.state_dict(), os.path.join(out, "best.pt"))
torch.save(m.state_dict(), os.path.join(out, "last.pt"))
print(time.perf_counter() - t0)
''' % THREADS

EPOCH_CONFIG = """data:
  train: {data}/train
  val: {data}/val
  test: ""
  classes: [normal, lesao]
  image_size: 128
  resize: none
  channels: 3
  mean: [0.3, 0.3, 0.3]
  std: [0.25, 0.25, 0.25]
  augment:
    random_resized_crop: false
    hflip: false
model:
  name: resnet18
train:
  batch_size: 32
  epochs: 1
  optimizer: adam
  lr: 0.001
  scheduler: none
  seed: 42
runtime:
  threads: %d
  workers: 2
output:
  dir: {out}
""" % THREADS


class Busy:
    """A busy loop pinned to core 0 while the block runs (the shared-machine condition)."""
    def __enter__(self):
        self.p = subprocess.Popen(["taskset", "-c", "0", "sh", "-c", "while :; do :; done"])
        time.sleep(0.5)
    def __exit__(self, *exc):
        self.p.kill()
        self.p.wait()


def epoch_rows(examples, pythons, versions, repeats):
    """One training epoch end to end, medimg vs each PyTorch (workers, layout), quiet and busy."""
    import shutil
    import tempfile
    tmp = tempfile.mkdtemp(prefix="medimg-epoch-")
    try:
        data = os.path.join(tmp, "data")
        subprocess.run([os.path.join(examples, "medimg-phantoms"), "--out", data, "--size", "128", "--train", "400",
                        "--val", "100", "--test", "2"], check=True, capture_output=True)
        out = os.path.join(tmp, "out")
        cfg = os.path.join(tmp, "epoch.yaml")
        with open(cfg, "w") as f:
            f.write(EPOCH_CONFIG.format(data=data, out=out))

        def medimg_epoch():
            shutil.rmtree(out, ignore_errors=True)
            t = time.perf_counter()
            run_child([os.path.join(examples, "medimg-train"), "--config", cfg])
            return time.perf_counter() - t

        def torch_epoch(py, workers, mode):
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            o, _ = run_child([py, "-c", TORCH_EPOCH, data, out, str(workers), mode])
            return float(o.strip().splitlines()[-1])

        peers = [(py, w, m) for py in pythons for (w, m) in [(0, "default"), (2, "default"), (2, "channels_last")]]
        res = {}
        for cond in ("quiet", "busy"):
            med, peer = [], {p: [] for p in peers}
            for _ in range(repeats):
                if cond == "busy":
                    with Busy():
                        med.append(medimg_epoch())
                        for p in peers:
                            peer[p].append(torch_epoch(*p))
                else:
                    med.append(medimg_epoch())
                    for p in peers:
                        peer[p].append(torch_epoch(*p))
            res[cond] = (statistics.median(med), {p: statistics.median(v) for p, v in peer.items()})
            print("epoch %s: medimg %.1f s; PyTorch %s" % (cond, res[cond][0], ", ".join(
                "%s %d workers %s %.1f s" % (versions[p[0]], p[1], p[2], t) for p, t in res[cond][1].items())), flush=True)
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_child(cmd, env=None):
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(cmd), out.stderr[-2000:]))
    return out.stdout, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def torch_run(python, arch, kind, n, side, mode, iters):
    out, _ = run_child([python, "-c", TORCH_CHILD, kind, str(n), str(side), mode, str(iters), arch])
    r = json.loads(out.strip().splitlines()[-1])
    return n / r["seconds"], r["rss_mib"]


def medimg_run(bench, arch, kind, n, side, iters):
    name = "BM_%s_%s" % (arch, "train_step" if kind == "train" else "inference")
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS))
    out, _ = run_child(["/usr/bin/time", "-f", "%M", bench, "--benchmark_filter=^%s/N:%d/side:%d/" % (name, n, side),
                        "--benchmark_min_time=0", "--benchmark_repetitions=%d" % iters, "--benchmark_format=json"], env)
    data = json.loads(out)
    times = [b["real_time"] for b in data["benchmarks"] if b.get("run_type") == "iteration"]
    unit = data["benchmarks"][0]["time_unit"]
    scale = {"ms": 1e-3, "us": 1e-6, "ns": 1e-9, "s": 1.0}[unit]
    return n / (statistics.median(times) * scale)


def medimg_rss(bench, arch, kind, n, side):
    name = "BM_%s_%s" % (arch, "train_step" if kind == "train" else "inference")
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS))
    out = subprocess.run(["/usr/bin/time", "-f", "%M", bench, "--benchmark_filter=^%s/N:%d/side:%d/" % (name, n, side),
                          "--benchmark_min_time=0", "--benchmark_repetitions=1"], capture_output=True, text=True, env=env)
    return int(out.stderr.strip().splitlines()[-1]) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bench")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--python", action="append", help="a Python with torch + torchvision (repeatable)")
    ap.add_argument("--models", default="resnet18", help="comma-separated architectures (resnet18, densenet121, efficientnet_b0)")
    ap.add_argument("--write", action="store_true", help="replace the CPU section of benchmarks/RESULTS.md")
    ap.add_argument("--no-epoch", action="store_true", help="leave out the end-to-end epoch rows")
    ap.add_argument("--examples", help="folder of medimg-train / medimg-phantoms (default: the bench's build/examples)")
    a = ap.parse_args()
    pythons = a.python or ["/usr/bin/python3"]
    versions = {py: subprocess.run([py, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True).stdout.strip()
                for py in pythons}
    has_timm = {py: subprocess.run([py, "-c", "import timm"], capture_output=True).returncode == 0 for py in pythons}
    rows = []
    for arch, (kind, n, side) in [(m, w) for m in a.models.split(",") for w in WORKLOADS]:
        vit = arch.startswith("vit_")
        if vit and (kind, side) == ("train", 128):
            continue  # a ViT at 128 resamples its 14x14 position grid: not a workload timm users time
        modes = (["default"] if vit else ["default", "channels_last"]) + \
            ((["frozen"] if vit else ["frozen", "frozen_cl"]) if kind == "infer" else [])
        peers = [(py, m) for py in pythons if has_timm[py] or not vit for m in modes]
        iters = 3 if (kind == "train" and side == 224) else 5
        med, peer = [], {p: [] for p in peers}
        peer_rss = {}
        for _ in range(a.repeats):  # interleaved: medimg, then each PyTorch (interpreter, mode), per repeat
            med.append(medimg_run(a.bench, arch, kind, n, side, iters))
            for p in peers:
                ips, rss = torch_run(p[0], arch, kind, n, side, p[1], iters)
                peer[p].append(ips)
                peer_rss[p] = rss
        best = max(peers, key=lambda p: statistics.median(peer[p]))
        mi, pi = statistics.median(med), statistics.median(peer[best])
        mrss = medimg_rss(a.bench, arch, kind, n, side)
        others = ", ".join("%s %s %.1f" % (versions[p[0]], p[1], statistics.median(peer[p])) for p in peers)
        mode = "%s, %s" % (versions[best[0]], best[1])
        rows.append((arch, kind, n, side, mi, pi, mode, mi / pi, mrss, peer_rss[best], others))
        print("%-15s %-5s N=%-2d %3d: medimg %.1f img/s, PyTorch %.1f img/s (%s), ratio %.2fx; peak RSS %.0f vs %.0f MiB [%s]"
              % (arch, kind, n, side, mi, pi, mode, mi / pi, mrss, peer_rss[best], others), flush=True)
    epoch = None
    if not a.no_epoch:
        examples = a.examples or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(a.bench))), "examples")
        epoch = epoch_rows(examples, pythons, versions, a.repeats)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cxx = os.environ.get("CXX", "c++")
    t0 = time.perf_counter()
    cc = subprocess.run([cxx, "-std=c++17", "-O3", "-DNDEBUG", "-fopenmp", "-I" + os.path.join(root, "include"),
                         "-I/usr/include/eigen3", "-c", os.path.join(root, "examples", "train.cpp"), "-o", os.devnull],
                        capture_output=True, text=True)
    compile_s = time.perf_counter() - t0 if cc.returncode == 0 else float("nan")
    print("compile time of examples/train.cpp: %.1f s" % compile_s, flush=True)
    cpu = re.sub(r"\s+", " ", subprocess.run(["sh", "-c", "lscpu | grep 'Model name' | cut -d: -f2"], capture_output=True, text=True).stdout).strip()
    pretty = {"resnet18": "ResNet18", "densenet121": "DenseNet-121", "efficientnet_b0": "EfficientNet-B0",
              "vit_tiny_patch16_224": "ViT-Tiny/16", "vit_small_patch16_224": "ViT-Small/16"}
    title = "## %s on the CPU (medimg vs PyTorch)" % " and ".join(pretty.get(m, m) for m in a.models.split(","))
    lines = [title, "",
             "%s; %s, %d cores; PyTorch %s, %d threads each; medians of %d interleaved repeats; load average %s at the end; %s." %
             (datetime.date.today().isoformat(), cpu, os.cpu_count(), " and ".join(versions[py] for py in pythons), THREADS,
              a.repeats, "%.2f" % os.getloadavg()[0], platform.platform()),
             "Written by `benchmarks/compare_pytorch.py` (each measurement its own process).", "",
             "| model | workload | medimg img/s | PyTorch img/s (best: version, mode) | medimg / PyTorch | peak RSS medimg / PyTorch (MiB) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for arch, kind, n, side, mi, pi, mode, ratio, mr, pr, _ in rows:
        what = "training step" if kind == "train" else "inference"
        lines.append("| %s | %s, batch %d, 3x%dx%d | %.1f | %.1f (%s) | %.2fx | %.0f / %.0f (%.2fx) |"
                     % (arch, what, n, side, side, mi, pi, mode, ratio, mr, pr, mr / pr))
    if epoch:
        lines += ["", "One training epoch end to end at 128x128 (400 + 100 phantom slices; decode, step, validation, "
                  "checkpoint), seconds, medians; *busy*: beside a busy process pinned to core 0:", "",
                  "| condition | medimg (s) | PyTorch (best: version, workers, layout) (s) | medimg time / PyTorch time |",
                  "| --- | --- | --- | --- |"]
        for cond in ("quiet", "busy"):
            mt, peer = epoch[cond]
            best = min(peer, key=peer.get)
            lines.append("| %s | %.1f | %.1f (%s, %d workers, %s) | %.2fx |" % (cond, mt, peer[best], versions[best[0]], best[1],
                                                                             best[2], mt / peer[best]))
        best_q = min(epoch["quiet"][1], key=epoch["quiet"][1].get)
        lines += ["", "Slowdown beside the busy process (busy / quiet time): medimg %.2fx, PyTorch (%s, %d workers, %s) %.2fx."
                  % (epoch["busy"][0] / epoch["quiet"][0], versions[best_q[0]], best_q[1], best_q[2],
                     epoch["busy"][1][best_q] / epoch["quiet"][1][best_q]),
                  "Every PyTorch epoch (quiet / busy, s): " + ", ".join(
                      "%s %d workers %s %.1f / %.1f" % (versions[p[0]], p[1], p[2], epoch["quiet"][1][p], epoch["busy"][1][p])
                      for p in epoch["quiet"][1])]
    lines += ["", "Every PyTorch (version, mode), img/s:", ""]
    for arch, kind, n, side, _, _, _, _, _, _, others in rows:
        lines.append("- %s %s batch %d at %d: %s" % (arch, kind, n, side, others))
    lines += ["", "Compile time of `examples/train.cpp` (includes `medimg.hpp`, trains ResNet18; `-O3 -fopenmp`, "
              "one translation unit): %.1f s." % compile_s]
    table = "\n".join(lines) + "\n"
    print(table)
    if a.write:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
        text = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
        start = text.find(title + "\n")
        if start >= 0:
            end = text.find("\n## ", start + 1)
            text = text[:start] + table + ("\n" + text[end + 1:] if end >= 0 else "")
        else:
            text = text.rstrip("\n") + "\n\n" + table
        open(path, "w").write(text)


if __name__ == "__main__":
    main()
