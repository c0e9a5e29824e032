#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""compare_ssim_skimage.py: times medimg's SSIM against scikit-image's structural_similarity on the
same image sizes and writes the table into the "## SSIM" section of benchmarks/RESULTS.md.

    /usr/bin/python3 benchmarks/compare_ssim_skimage.py build/benchmarks/medimg-bench \\
        [--python /tmp/skvenv/bin/python] [--repeats 7] [--threads 1 0] [--float32] [--no-write]

What is timed, per case (window uniform | gaussian, output mean | map, side 512 | 2048):
  * scikit-image: structural_similarity(a, b, data_range=1.0, full=<map>) on float32 (side, side)
    arrays; gaussian adds gaussian_weights=True, sigma=1.5, use_sample_covariance=False. One
    worker process per interpreter (Debian's /usr/bin/python3 with skimage 0.19, plus every
    --python given, e.g. a venv with the newest scikit-image), kept alive and fed cases over a pipe,
    so imports are not timed. A sample is the median of 5 calls (512) or 1 call (2048), after a
    warm-up call.
  * medimg: the medimg-bench binary, --benchmark_filter=BM_ssim_<window>_<mean|map>/side:<side>/
    --benchmark_format=json, one process per sample (Google Benchmark picks the iteration count,
    at least --min-time seconds), with OMP_NUM_THREADS set for each --threads value (0 = all cores).
    With --float32, also BM_ssim_<window>_<mean|map>_f32 (SsimOptions::arithmetic = float32: not
    scikit-image's numbers to 1e-13 but to ~1e-5) in columns of their own.
Samples are interleaved (repeat -> case -> every implementation in turn), so a burst of load from
other processes on a shared machine hits all of them alike; the table shows medians over the repeats.
The peer is the faster scikit-image for each case; the ratio is peer time / medimg time.
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

CASES = [(w, m, s) for s in (512, 2048) for w in ("uniform", "gaussian") for m in ("mean", "map")]
HERE = os.path.dirname(os.path.abspath(__file__))


# ---- the worker: runs inside each Python interpreter that has scikit-image ---------------------------
def worker():
    import numpy as np
    import scipy
    import skimage
    from skimage.metrics import structural_similarity

    print(json.dumps({"skimage": skimage.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
                      "python": platform.python_version()}), flush=True)
    images = {}
    for line in sys.stdin:
        case = json.loads(line)
        side = case["side"]
        if side not in images:
            # Smooth waves plus noise in [0, 1], like bench_ssim.cpp (run time does not depend on content).
            rng = np.random.default_rng(7)
            i, j = np.mgrid[0:side, 0:side]
            base = 0.5 + 0.25 * np.sin(0.031 * i) * np.cos(0.017 * j)
            a = base.astype(np.float32)
            b = np.clip(base + 0.1 * (rng.random((side, side)) - 0.5), 0, 1).astype(np.float32)
            images[side] = (a, b)
        a, b = images[side]
        kw = dict(data_range=1.0, full=case["mode"] == "map")
        if case["window"] == "gaussian":
            kw.update(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        structural_similarity(a, b, **kw)  # warm-up
        times = []
        for _ in range(case["calls"]):
            t0 = time.perf_counter()
            structural_similarity(a, b, **kw)
            times.append(time.perf_counter() - t0)
        print(json.dumps({"ms": 1000.0 * statistics.median(times)}), flush=True)


class Peer:
    def __init__(self, python):
        self.python = python
        self.proc = subprocess.Popen([python, os.path.abspath(__file__), "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline()
        if not first:
            raise RuntimeError(f"compare_ssim_skimage: {python} could not start the worker (is scikit-image installed?)")
        self.versions = json.loads(first)
        self.name = "skimage " + self.versions["skimage"]

    def time(self, window, mode, side):
        calls = 5 if side <= 512 else 1
        self.proc.stdin.write(json.dumps({"window": window, "mode": mode, "side": side, "calls": calls}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["ms"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def medimg_time(bench, window, mode, side, threads, min_time, arith="f64"):
    name = f"BM_ssim_{window}_{mode}{'_f32' if arith == 'f32' else ''}/side:{side}/"
    env = dict(os.environ)
    if threads > 0:
        env["OMP_NUM_THREADS"] = str(threads)
    else:
        env.pop("OMP_NUM_THREADS", None)
    cmd = [bench, f"--benchmark_filter=^{re.escape(name)}", "--benchmark_format=json",
           f"--benchmark_min_time={min_time}"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:  # Google Benchmark >= 1.8 wants a unit suffix
        cmd[-1] = f"--benchmark_min_time={min_time}s"
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    doc = json.loads(out.stdout)
    runs = [b for b in doc["benchmarks"] if b["name"].startswith(name)]
    if len(runs) != 1:
        raise RuntimeError(f"compare_ssim_skimage: expected one result for {name}, got {[b['name'] for b in runs]}")
    scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[runs[0]["time_unit"]]
    return runs[0]["real_time"] * scale, doc["context"], runs[0]


def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, shell=True).stdout.strip()
    except OSError:
        return ""


def bench_version(context):
    v = (context or {}).get("library_version")
    return v or sh("pkg-config --modversion benchmark") or sh("dpkg-query -W -f='${Version}' libbenchmark-dev") or "?"


def machine_info(bench):
    model = sh("lscpu | sed -n 's/^Model name: *//p'") or platform.processor()
    cache = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(bench))), "CMakeCache.txt")
    build_type, compiler = "?", "?"
    if os.path.exists(cache):
        text = open(cache).read()
        m = re.search(r"^CMAKE_BUILD_TYPE:\w+=(.*)$", text, re.M)
        build_type = m.group(1) if m else "?"
        m = re.search(r"^CMAKE_CXX_COMPILER:\w+=(.*)$", text, re.M)
        if m:
            compiler = sh(f"'{m.group(1)}' --version | head -1") or m.group(1)
        m = re.search(r"^MEDIMG_NATIVE:\w+=(.*)$", text, re.M)
        if m and m.group(1).upper() in ("ON", "TRUE", "1"):
            build_type += ", -march=native"
    commit = sh(f"git -C '{HERE}' rev-parse --short HEAD")
    if sh(f"git -C '{HERE}' status --porcelain -- ':/include/medimg/metrics/ssim.hpp' ':/benchmarks/bench_ssim.cpp'"):
        commit += " + uncommitted changes"
    return {"model": model, "nproc": sh("nproc"), "build_type": build_type, "compiler": compiler, "commit": commit}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bench", nargs="?", help="path to the medimg-bench binary")
    ap.add_argument("--python", action="append", default=[],
                    help="another interpreter with scikit-image (repeatable); /usr/bin/python3 is always used")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 0],
                    help="medimg thread counts to time (0 = all cores, OpenMP's default)")
    ap.add_argument("--min-time", type=float, default=0.3, help="Google Benchmark's minimum time per sample, seconds")
    ap.add_argument("--float32", action="store_true", help="also time medimg's float32 arithmetic (columns of their own)")
    ap.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--no-write", action="store_true", help="print the section, leave RESULTS.md alone")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker()
    if not args.bench or not os.access(args.bench, os.X_OK):
        ap.error("give the path of the medimg-bench binary (e.g. build/benchmarks/medimg-bench)")

    pythons = ["/usr/bin/python3"] + [p for p in args.python if p != "/usr/bin/python3"]
    peers = [Peer(p) for p in pythons]
    ncores = int(sh("nproc") or os.cpu_count() or 1)
    thread_labels = {t: (t if t > 0 else ncores) for t in args.threads}
    ariths = ["f64", "f32"] if args.float32 else ["f64"]
    runs = [(a, t) for a in ariths for t in args.threads]

    def label(run):
        a, t = run
        n = thread_labels[t]
        return f"{'float32, ' if a == 'f32' else ''}{n} thread{'s' if n > 1 else ''}"
    load_before = os.getloadavg()
    started = datetime.datetime.now().astimezone()

    sk = {(p.python, c): [] for p in peers for c in CASES}
    md = {(r, c): [] for r in runs for c in CASES}
    context, labels = None, {}
    for rep in range(args.repeats):
        for case in CASES:
            for p in peers:
                sk[(p.python, case)].append(p.time(*case))
            for r in runs:
                ms, context, run = medimg_time(args.bench, *case, r[1], args.min_time, r[0])
                md[(r, case)].append(ms)
                labels[case] = run.get("label", "")
        print(f"repeat {rep + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    for p in peers:
        p.close()
    load_after = os.getloadavg()

    info = machine_info(args.bench)
    med = statistics.median
    lines = ["## SSIM", "",
             "medimg `metrics::ssim` vs scikit-image `structural_similarity` on one-channel float32 images,",
             "data_range 1. *uniform* = scikit-image's default (7x7, sample covariance); *gaussian* = Wang et al.",
             "2004 (11x11, sigma 1.5, population covariance). *mean* = the mean only; *map* = also the full SSIM",
             "map (`full=True` / `SsimOptions::full`). Times are medians of "
             f"{args.repeats} interleaved samples (ms); the speed-up is",
             "the faster scikit-image's time divided by medimg's. scikit-image runs on one core; medimg is shown",
             "on one thread and on all cores. While the load average is near or above nproc, the all-cores",
             "column measures contention with other jobs more than medimg; the one-thread column is the fair one.",
             "Produced by `benchmarks/compare_ssim_skimage.py` (see its header for the method); rerun it to update.",
             "",
             f"- date: {started:%Y-%m-%d %H:%M %Z}",
             f"- machine: {info['model']}, nproc {info['nproc']}; load average {load_before[0]:.2f} before, "
             f"{load_after[0]:.2f} after (a shared machine: other jobs ran meanwhile)",
             f"- medimg: commit {info['commit']}, {info['build_type']} build, {info['compiler']}, "
             f"Google Benchmark {bench_version(context)}, "
             f"SSIM loops: {', '.join(sorted(set(v for v in labels.values() if v))) or '?'}"]
    for p in peers:
        v = p.versions
        lines.append(f"- {p.name}: Python {v['python']}, numpy {v['numpy']}, scipy {v['scipy']} ({p.python})")
    lines.append("")
    head = "| case | size | " + " | ".join(f"{p.name} (ms)" for p in peers) + " | " + \
        " | ".join(f"medimg {label(r)} (ms)" for r in runs) + \
        " | " + " | ".join(f"speed-up, {label(r)}" for r in runs) + " |"
    lines.append(head)
    lines.append("|" + " --- |" * (2 + len(peers) + 2 * len(runs)))
    ratios = {r: [] for r in runs}
    for case in CASES:
        window, mode, side = case
        peer_ms = [med(sk[(p.python, case)]) for p in peers]
        best = min(peer_ms)
        cells = [f"{window} {mode}", f"{side}x{side}"] + [f"{x:.2f}" for x in peer_ms]
        cells += [f"{med(md[(r, case)]):.3f}" for r in runs]
        for r in runs:
            x = best / med(md[(r, case)])
            ratios[r].append(x)
            cells.append(f"**{x:.1f}x**")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for r in runs:
        rs = ratios[r]
        lines.append(f"Speed-up, {label(r)}: {min(rs):.1f}x to {max(rs):.1f}x (geometric mean "
                     f"{statistics.geometric_mean(rs):.1f}x).")
    section = "\n".join(lines) + "\n"
    print(section)

    if args.no_write:
        return 0
    text = open(args.results).read() if os.path.exists(args.results) else "# Benchmark results\n\n"
    # Replace the SSIM section (up to the next "## " heading), keeping every other section as it is.
    m = re.search(r"^## SSIM\n.*?(?=^## |\Z)", text, re.M | re.S)
    if m:
        text = text[:m.start()] + section + ("\n" if m.end() < len(text) else "") + text[m.end():]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(args.results + ".tmp", "w") as f:
        f.write(text)
    os.replace(args.results + ".tmp", args.results)
    print(f"wrote the SSIM section of {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
