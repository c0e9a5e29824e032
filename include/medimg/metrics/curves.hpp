// SPDX-License-Identifier: MIT
// metrics/curves.hpp: a binary score against its truth, at every threshold and at chosen ones.
//   roc_curve / pr_curve    the points of the ROC and precision-recall curves, one per distinct
//                           score (scikit-learn's roc_curve(drop_intermediate=False) and
//                           precision_recall_curve orders: thresholds descending);
//   average_precision       PR AUC as scikit-learn defines it: sum_n (R_n - R_{n-1}) P_n over the
//                           distinct thresholds (a step function; no trapezoids);
//   operating_point         counts at one threshold (positive when score >= threshold) and
//                           sensitivity, specificity, PPV, NPV with Wilson intervals;
//   youden_threshold        the threshold maximising J = sensitivity + specificity - 1 (choose it on
//                           validation data, report it on test data);
//   threshold_for_sensitivity  the highest threshold whose sensitivity reaches a target;
//   roc_band                a pointwise 95% band around the ROC curve: the sensitivity at fixed
//                           false-positive rates over stratified bootstrap replicates (pROC's
//                           ci.se; Fawcett 2006's "vertical averaging" of bootstrap curves).
// Not here: smoothed (binormal) curves, simultaneous bands, cost-weighted thresholds.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "medimg/metrics/intervals.hpp"

namespace medimg::metrics {

struct CurvePoint {
    double threshold;  // scores >= threshold count as positive
    std::int64_t tp, fp;
};

namespace detail {
/// Cumulative (tp, fp) at each distinct score, highest first.
inline std::vector<CurvePoint> cumulative_counts(const char* fn, const std::vector<double>& scores, const std::vector<bool>& positive) {
    check_scores(fn, scores, positive);
    std::vector<std::size_t> order(scores.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
    std::vector<CurvePoint> out;
    std::int64_t tp = 0, fp = 0;
    for (std::size_t i = 0; i < order.size();) {
        std::size_t j = i;
        for (; j < order.size() && scores[order[j]] == scores[order[i]]; ++j) (positive[order[j]] ? tp : fp) += 1;
        out.push_back({scores[order[i]], tp, fp});
        i = j;
    }
    return out;
}
}  // namespace detail

/// A curve: x[i], y[i] at threshold[i] (descending; the ROC curve starts at (0, 0) with threshold
/// +inf, the PR curve ends at recall 0, precision 1, as scikit-learn's).
struct Curve {
    std::vector<double> x, y, threshold;
};

/// ROC: x = false-positive rate, y = true-positive rate. Empty when a class is missing.
inline Curve roc_curve(const std::vector<double>& scores, const std::vector<bool>& positive) {
    const auto pts = detail::cumulative_counts("metrics::roc_curve", scores, positive);
    Curve c;
    if (pts.empty() || pts.back().tp == 0 || pts.back().fp == 0) return c;
    const double P = static_cast<double>(pts.back().tp), N = static_cast<double>(pts.back().fp);
    c.x.push_back(0);
    c.y.push_back(0);
    c.threshold.push_back(std::numeric_limits<double>::infinity());
    for (const auto& p : pts) {
        c.x.push_back(static_cast<double>(p.fp) / N);
        c.y.push_back(static_cast<double>(p.tp) / P);
        c.threshold.push_back(p.threshold);
    }
    return c;
}

/// Precision-recall: x = recall, y = precision, in order of increasing threshold (scikit-learn's
/// precision_recall_curve), closed by (recall 0, precision 1). Empty without positives.
inline Curve pr_curve(const std::vector<double>& scores, const std::vector<bool>& positive) {
    const auto pts = detail::cumulative_counts("metrics::pr_curve", scores, positive);
    Curve c;
    if (pts.empty() || pts.back().tp == 0) return c;
    const double P = static_cast<double>(pts.back().tp);
    for (auto it = pts.rbegin(); it != pts.rend(); ++it) {
        c.x.push_back(static_cast<double>(it->tp) / P);
        c.y.push_back(static_cast<double>(it->tp) / static_cast<double>(it->tp + it->fp));
        c.threshold.push_back(it->threshold);
    }
    c.x.push_back(0);
    c.y.push_back(1);
    return c;
}

/// Average precision (scikit-learn's average_precision_score): sum over distinct thresholds,
/// highest first, of (recall_n - recall_{n-1}) * precision_n. NaN without positives.
inline double average_precision(const std::vector<double>& scores, const std::vector<bool>& positive) {
    const auto pts = detail::cumulative_counts("metrics::average_precision", scores, positive);
    if (pts.empty() || pts.back().tp == 0) return std::numeric_limits<double>::quiet_NaN();
    const double P = static_cast<double>(pts.back().tp);
    double ap = 0, recall = 0;
    for (const auto& p : pts) {
        const double r = static_cast<double>(p.tp) / P;
        ap += (r - recall) * static_cast<double>(p.tp) / static_cast<double>(p.tp + p.fp);
        recall = r;
    }
    return ap;
}

/// Counts at one threshold and the four rates with Wilson 95% intervals.
struct OperatingPoint {
    double threshold = 0;
    std::int64_t tp = 0, fp = 0, tn = 0, fn = 0;
    Interval sensitivity, specificity, ppv, npv;
};
inline OperatingPoint operating_point(const std::vector<double>& scores, const std::vector<bool>& positive, double threshold) {
    detail::check_scores("metrics::operating_point", scores, positive);
    OperatingPoint o;
    o.threshold = threshold;
    for (std::size_t i = 0; i < scores.size(); ++i) {
        const bool said = scores[i] >= threshold;
        if (positive[i]) (said ? o.tp : o.fn) += 1;
        else (said ? o.fp : o.tn) += 1;
    }
    o.sensitivity = wilson(o.tp, o.tp + o.fn);
    o.specificity = wilson(o.tn, o.tn + o.fp);
    o.ppv = wilson(o.tp, o.tp + o.fp);
    o.npv = wilson(o.tn, o.tn + o.fn);
    return o;
}

/// The distinct score maximising Youden's J = TPR - FPR (the highest such threshold on ties).
/// Requires both classes.
inline double youden_threshold(const std::vector<double>& scores, const std::vector<bool>& positive) {
    const auto c = roc_curve(scores, positive);
    MEDIMG_CHECK(!c.x.empty(), ValueError, "metrics::youden_threshold: needs positive and negative samples");
    std::size_t best = 1;
    for (std::size_t i = 1; i < c.x.size(); ++i)
        if (c.y[i] - c.x[i] > c.y[best] - c.x[best]) best = i;
    return c.threshold[best];
}

/// The highest distinct score at which sensitivity >= target (target in (0, 1]). Requires positives.
inline double threshold_for_sensitivity(const std::vector<double>& scores, const std::vector<bool>& positive, double target) {
    MEDIMG_CHECK(target > 0 && target <= 1, ValueError, "metrics::threshold_for_sensitivity: target must be in (0, 1], got ", target);
    const auto pts = detail::cumulative_counts("metrics::threshold_for_sensitivity", scores, positive);
    MEDIMG_CHECK(!pts.empty() && pts.back().tp > 0, ValueError, "metrics::threshold_for_sensitivity: needs positive samples");
    const double P = static_cast<double>(pts.back().tp);
    for (const auto& p : pts)
        if (static_cast<double>(p.tp) / P >= target) return p.threshold;
    return pts.back().threshold;
}

/// The true-positive rate of the ROC curve c (roc_curve's output) at false-positive rate f in
/// [0, 1], along the plotted curve: the highest point where the curve rises straight up at f,
/// otherwise linear between the two points around f (the segment a tie of scores draws).
inline double tpr_at(const Curve& c, double f) {
    MEDIMG_CHECK(!c.x.empty(), ValueError, "metrics::tpr_at: the ROC curve is empty (a class is missing)");
    // the last point with x <= f: x is non-decreasing, so every point of a vertical run at f is before it
    const auto it = std::upper_bound(c.x.begin(), c.x.end(), f);
    const auto i = static_cast<std::size_t>(std::max<std::ptrdiff_t>(it - c.x.begin() - 1, 0));
    if (c.x[i] >= f || i + 1 == c.x.size()) return c.y[i];
    const double t = (f - c.x[i]) / (c.x[i + 1] - c.x[i]);
    return c.y[i] + t * (c.y[i + 1] - c.y[i]);
}

/// A band around the ROC curve: at each false-positive rate fpr[i], [lo[i], hi[i]].
struct RocBand {
    std::vector<double> fpr, lo, hi;
};

/// Pointwise percentile band of the ROC curve: `replicates` stratified bootstrap resamples
/// (positives and negatives drawn separately, Rng(seed)), each one's tpr_at at `points` evenly
/// spaced false-positive rates 0, 1/(points-1), ..., 1; lo and hi are the alpha/2 and 1 - alpha/2
/// quantiles there. Pointwise: each rate's interval holds 95% of the replicate curves at that
/// rate, not 95% of whole curves. Empty when a class is missing. Requires points >= 2.
inline RocBand roc_band(const std::vector<double>& scores, const std::vector<bool>& positive, std::int64_t replicates = 2000,
                        std::uint64_t seed = 0, int points = 101, double alpha = 0.05) {
    detail::check_scores("metrics::roc_band", scores, positive);
    MEDIMG_CHECK(replicates >= 1 && points >= 2 && alpha > 0 && alpha < 1, ValueError,
                 "metrics::roc_band: need replicates >= 1, points >= 2 and alpha in (0, 1), got ", replicates, ", ", points,
                 " and ", alpha);
    std::vector<double> x, y;
    for (std::size_t i = 0; i < scores.size(); ++i) (positive[i] ? x : y).push_back(scores[i]);
    RocBand band;
    if (x.empty() || y.empty()) return band;
    const auto P = static_cast<std::size_t>(points);
    std::vector<std::vector<double>> at(P);  // at[i]: the replicates' TPR at fpr[i]
    Rng rng(seed);
    std::vector<double> s;
    std::vector<bool> pos;
    for (std::int64_t b = 0; b < replicates; ++b) {
        detail::stratified_resample(x, y, rng, s, pos);
        const auto c = roc_curve(s, pos);
        for (std::size_t i = 0; i < P; ++i) at[i].push_back(tpr_at(c, static_cast<double>(i) / static_cast<double>(P - 1)));
    }
    for (std::size_t i = 0; i < P; ++i) {
        std::sort(at[i].begin(), at[i].end());
        band.fpr.push_back(static_cast<double>(i) / static_cast<double>(P - 1));
        band.lo.push_back(detail::quantile_sorted(at[i], alpha / 2));
        band.hi.push_back(detail::quantile_sorted(at[i], 1 - alpha / 2));
    }
    return band;
}

}  // namespace medimg::metrics
