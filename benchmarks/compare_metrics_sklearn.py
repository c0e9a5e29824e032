#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# ROC AUC on 100,000 scores and a 2,000-replicate stratified bootstrap on 1,000, medimg
# (bench_metrics.cpp: with DeLong's variance) vs scikit-learn's roc_auc_score (the AUC alone, and
# the bootstrap as a user writes it with NumPy), the same score distribution; medians of 5.
# Usage: /usr/bin/python3 benchmarks/compare_metrics_sklearn.py build/benchmarks/medimg-bench
import json
import statistics
import subprocess
import sys
import time

import numpy as np
import sklearn
from sklearn.metrics import roc_auc_score


def data(n):
    rng = np.random.default_rng(3)
    pos = np.arange(n) % 4 == 0
    return rng.normal(pos.astype(float), 1.0), pos


def sk_auc(n):
    s, p = data(n)
    ts = []
    for _ in range(5):
        t = time.perf_counter(); roc_auc_score(p, s); ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def sk_bootstrap(n, b):
    s, p = data(n)
    x, y = s[p], s[~p]
    rng = np.random.default_rng(1)
    lab = np.r_[np.ones(len(x)), np.zeros(len(y))]
    ts = []
    for _ in range(3):
        t = time.perf_counter()
        aucs = [roc_auc_score(lab, np.r_[rng.choice(x, len(x)), rng.choice(y, len(y))]) for _ in range(b)]
        np.percentile(aucs, [2.5, 97.5])
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def medimg(bench, name):
    out = subprocess.run([bench, "--benchmark_filter=^%s/" % name, "--benchmark_repetitions=5", "--benchmark_format=json"],
                         capture_output=True, text=True, check=True).stdout
    d = json.loads(out)
    times = [b["real_time"] for b in d["benchmarks"] if b.get("run_type") == "iteration"]
    return statistics.median(times) * {"ms": 1e-3, "us": 1e-6, "ns": 1e-9, "s": 1.0}[d["benchmarks"][0]["time_unit"]]


def main():
    bench = sys.argv[1]
    rows = [("ROC AUC, 100,000 scores (medimg: with DeLong variance)", medimg(bench, "BM_delong_auc"), sk_auc(100000)),
            ("bootstrap AUC, 1,000 scores x 2,000", medimg(bench, "BM_bootstrap_auc"), sk_bootstrap(1000, 2000))]
    print("scikit-learn %s, NumPy %s" % (sklearn.__version__, np.__version__))
    print("| work | medimg ms | scikit-learn ms | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for name, m, s in rows:
        print("| %s | %.1f | %.1f | %.1fx |" % (name, m * 1e3, s * 1e3, s / m))


if __name__ == "__main__":
    main()
