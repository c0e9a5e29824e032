#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# make_metrics_fixtures.py: reference values for tests/cpu/test_evaluation.cpp from scikit-learn
# (roc_auc_score, average_precision_score, brier_score_loss, log_loss), SciPy (the temperature that
# minimises the NLL, by bounded scalar minimisation to 1e-12) and direct O(m n) definitions written
# here (DeLong's structural components and variance, DeLong et al. 1988; the 15-bin ECE / MCE of
# Guo et al. 2017). Run by hand (never by the tests), from the repository root, with Debian's
# python3-sklearn:   /usr/bin/python3 tests/data/make_metrics_fixtures.py
# Also the folds of StratifiedGroupKFold(shuffle=False) for data/folds.hpp (tests/cpu/test_folds.cpp).
# Writes tests/data/metrics/reference.json (doubles printed with repr, which round-trips exactly).
import json
import os

import numpy as np
import scipy
import scipy.optimize
import sklearn
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "metrics", "reference.json")


def delong_direct(scores, labels):
    """DeLong et al. 1988 from the definition: psi(x, y) = 1 if x > y, 1/2 if equal, 0 else."""
    x = scores[labels == 1]
    y = scores[labels == 0]
    m, n = len(x), len(y)
    psi = (x[:, None] > y[None, :]).astype(float) + 0.5 * (x[:, None] == y[None, :])
    v10 = psi.mean(axis=1)  # per positive
    v01 = psi.mean(axis=0)  # per negative
    auc = psi.mean()
    s10 = ((v10 - auc) ** 2).sum() / (m - 1)
    s01 = ((v01 - auc) ** 2).sum() / (n - 1)
    return auc, s10 / m + s01 / n


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def nll(logits, labels, t):
    p = softmax(logits / t)
    return -np.log(p[np.arange(len(labels)), labels]).mean()


def ece_mce(probs, labels, bins=15):
    conf = probs.max(axis=1)
    pred = probs.argmax(axis=1)
    right = (pred == labels).astype(float)
    ece, mce = 0.0, 0.0
    edges = np.linspace(0, 1, bins + 1)
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            gap = abs(right[inside].mean() - conf[inside].mean())
            ece += inside.mean() * gap
            mce = max(mce, gap)
    return ece, mce


def binary_case(rng, n, prevalence, separation, decimals):
    labels = (rng.random(n) < prevalence).astype(int)
    labels[0], labels[1] = 0, 1  # both classes present
    raw = rng.normal(0, 1, n) + separation * labels
    scores = np.round(1 / (1 + np.exp(-raw)), decimals)  # rounded: ties
    auc, var = delong_direct(scores, labels)
    assert abs(auc - roc_auc_score(labels, scores)) < 1e-12
    return {
        "scores": scores.tolist(), "labels": labels.tolist(),
        "roc_auc": roc_auc_score(labels, scores),
        "average_precision": average_precision_score(labels, scores),
        "brier": brier_score_loss(labels, scores),
        "log_loss": log_loss(labels, np.clip(scores, 1e-15, 1 - 1e-15)),
        "delong_variance": var,
    }


def temperature_case(rng, n, k, sharpen):
    labels = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), labels] += 1.2  # informative
    logits *= sharpen  # over- (sharpen > 1) or under-confident
    res = scipy.optimize.minimize_scalar(lambda lt: nll(logits, labels, np.exp(lt)), bounds=(-5, 5), method="bounded",
                                         options={"xatol": 1e-12})
    t = float(np.exp(res.x))
    probs = softmax(logits)
    ece, mce = ece_mce(probs, labels)
    ece_t, mce_t = ece_mce(softmax(logits / t), labels)
    return {
        "logits": logits.reshape(-1).tolist(), "labels": labels.tolist(), "classes": k,
        "temperature": t, "nll_before": nll(logits, labels, 1.0), "nll_after": nll(logits, labels, t),
        "log_loss": log_loss(labels, probs, labels=list(range(k))),
        "ovr_macro_auc": (roc_auc_score(labels, probs, multi_class="ovr", average="macro") if k > 2
                          else roc_auc_score(labels, probs[:, 1])),
        "ece_before": ece, "mce_before": mce, "ece_after": ece_t, "mce_after": mce_t,
    }


def folds_case(rng, groups, k, classes):
    """Groups of random sizes (1-6 samples) with labels that lean to one class per group."""
    names, labels = [], []
    for g in range(groups):
        size = int(rng.integers(1, 7))
        lean = int(rng.integers(0, classes))
        for _ in range(size):
            names.append("patient%03d" % g)
            labels.append(lean if rng.random() < 0.7 else int(rng.integers(0, classes)))
    order = rng.permutation(len(names))  # samples not grouped together in the file
    names = [names[i] for i in order]
    labels = [labels[i] for i in order]
    fold = [-1] * len(names)
    for f, (_, test) in enumerate(StratifiedGroupKFold(n_splits=k).split(np.zeros(len(names)), labels, names)):
        for i in test:
            fold[i] = f
    return {"groups": names, "labels": labels, "k": k, "fold": fold}


def main():
    rng = np.random.default_rng(2026)
    out = {
        "generator": "tests/data/make_metrics_fixtures.py",
        "sklearn": sklearn.__version__, "scipy": scipy.__version__,
        "binary_ties": binary_case(rng, 300, 0.3, 1.2, 2),
        "binary_fine": binary_case(rng, 120, 0.5, 0.8, 6),
        "binary_rare": binary_case(rng, 500, 0.05, 2.0, 3),
        "over_confident": temperature_case(rng, 400, 3, 3.0),
        "under_confident": temperature_case(rng, 300, 2, 0.4),
        "folds_binary": folds_case(rng, 40, 5, 2),
        "folds_three": folds_case(rng, 60, 4, 3),
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f)
        f.write("\n")


if __name__ == "__main__":
    main()
