// SPDX-License-Identifier: MIT
// metrics/intervals.hpp: point estimates with their 95% confidence intervals, so that a result
// reads "AUC 0.89 (95% CI 0.85-0.93)":
//   wilson          a proportion k / n by Wilson's score interval (Wilson 1927; Newcombe 1998,
//                   method 3, no continuity correction): sensitivity, specificity, PPV, NPV.
//   delong_auc      ROC AUC with DeLong et al.'s (1988) variance, computed by Sun & Xu's (2014)
//                   O(n log n) algorithm (mid-ranks within each class and overall); the interval
//                   is AUC +- z sqrt(var), clipped to [0, 1], as pROC's ci.auc(method="delong").
//   bootstrap_auc   ROC AUC with a stratified percentile bootstrap: positives and negatives are
//                   resampled separately (so every replicate has both), seeded, B replicates.
// Not here: intervals for differences of two AUCs, Clopper-Pearson, BCa bootstrap.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "medimg/core/rng.hpp"
#include "medimg/error.hpp"

namespace medimg::metrics {

/// The normal quantile for a two-sided 95% interval, Phi^-1(0.975).
inline constexpr double kZ95 = 1.959963984540054;

/// A point estimate and its interval [lo, hi]; all NaN when the estimate is undefined.
struct Interval {
    double value = std::numeric_limits<double>::quiet_NaN();
    double lo = std::numeric_limits<double>::quiet_NaN();
    double hi = std::numeric_limits<double>::quiet_NaN();
};

/// k successes out of n: k / n with Wilson's score interval at quantile z. n = 0: all NaN.
///   centre = (p + z^2 / 2n) / (1 + z^2 / n),  half = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2)
inline Interval wilson(std::int64_t k, std::int64_t n, double z = kZ95) {
    MEDIMG_CHECK(k >= 0 && n >= 0 && k <= n && z > 0, ValueError, "metrics::wilson: need 0 <= k <= n and z > 0, got k ", k,
                 ", n ", n, ", z ", z);
    Interval r;
    if (n == 0) return r;
    const double N = static_cast<double>(n), p = static_cast<double>(k) / N, z2 = z * z;
    const double centre = (p + z2 / (2 * N)) / (1 + z2 / N);
    const double half = z / (1 + z2 / N) * std::sqrt(p * (1 - p) / N + z2 / (4 * N * N));
    r.value = p;
    r.lo = std::max(0.0, centre - half);
    r.hi = std::min(1.0, centre + half);
    return r;
}

namespace detail {
inline void check_scores(const char* fn, const std::vector<double>& scores, const std::vector<bool>& positive) {
    MEDIMG_CHECK(scores.size() == positive.size(), ShapeError, fn, ": ", scores.size(), " scores but ", positive.size(), " labels");
    for (std::size_t i = 0; i < scores.size(); ++i)
        MEDIMG_CHECK(!std::isnan(scores[i]), ValueError, fn, ": score ", i, " is nan (the model's outputs are not finite?)");
}

/// Mid-ranks (1-based, ties share the mean of their ranks) of v, in v's order. O(n log n).
inline std::vector<double> mid_ranks(const std::vector<double>& v) {
    std::vector<std::size_t> order(v.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return v[a] < v[b]; });
    std::vector<double> r(v.size());
    for (std::size_t i = 0; i < order.size();) {
        std::size_t j = i;
        while (j < order.size() && v[order[j]] == v[order[i]]) ++j;
        const double mid = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2.0;
        for (std::size_t k = i; k < j; ++k) r[order[k]] = mid;
        i = j;
    }
    return r;
}
}  // namespace detail

/// ROC AUC and its DeLong variance. Sun & Xu 2014: with X the m positive scores, Y the n
/// negative ones, T_X / T_Y their mid-ranks within their class and T_Z within all m + n,
///   AUC = (sum T_Z(X) - m (m + 1) / 2) / (m n),  V10_i = (T_Z(x_i) - T_X(x_i)) / n,
///   V01_j = 1 - (T_Z(y_j) - T_Y(y_j)) / m,  var = S10 / m + S01 / n
/// with S10, S01 the sample variances (divisor m - 1, n - 1) of V10, V01.
struct DelongAuc {
    Interval auc;              // value = AUC; [lo, hi] = AUC -+ z sqrt(variance), clipped to [0, 1]
    double variance = std::numeric_limits<double>::quiet_NaN();
    std::int64_t positives = 0, negatives = 0;
};
/// Requires scores and labels of the same length, no NaN score. Fewer than 2 positives or 2
/// negatives: the AUC (when defined) with NaN variance and interval.
inline DelongAuc delong_auc(const std::vector<double>& scores, const std::vector<bool>& positive, double z = kZ95) {
    detail::check_scores("metrics::delong_auc", scores, positive);
    std::vector<double> x, y;
    for (std::size_t i = 0; i < scores.size(); ++i) (positive[i] ? x : y).push_back(scores[i]);
    DelongAuc r;
    const auto m = static_cast<std::int64_t>(x.size()), n = static_cast<std::int64_t>(y.size());
    r.positives = m;
    r.negatives = n;
    if (m == 0 || n == 0) return r;
    std::vector<double> z_all(x);
    z_all.insert(z_all.end(), y.begin(), y.end());
    const auto tz = detail::mid_ranks(z_all), tx = detail::mid_ranks(x), ty = detail::mid_ranks(y);
    const double M = static_cast<double>(m), N = static_cast<double>(n);
    double sum_pos = 0;
    for (std::int64_t i = 0; i < m; ++i) sum_pos += tz[static_cast<std::size_t>(i)];
    const double auc = (sum_pos - M * (M + 1) / 2) / (M * N);
    r.auc.value = auc;
    if (m < 2 || n < 2) return r;
    double s10 = 0, s01 = 0;
    for (std::int64_t i = 0; i < m; ++i) {
        const double v = (tz[static_cast<std::size_t>(i)] - tx[static_cast<std::size_t>(i)]) / N - auc;
        s10 += v * v;
    }
    for (std::int64_t j = 0; j < n; ++j) {
        const double v = 1.0 - (tz[static_cast<std::size_t>(m + j)] - ty[static_cast<std::size_t>(j)]) / M - auc;
        s01 += v * v;
    }
    r.variance = s10 / (M - 1) / M + s01 / (N - 1) / N;
    const double half = z * std::sqrt(r.variance);
    r.auc.lo = std::max(0.0, auc - half);
    r.auc.hi = std::min(1.0, auc + half);
    return r;
}

namespace detail {
/// The q-quantile of sorted, non-empty v by linear interpolation (numpy's default).
inline double quantile_sorted(const std::vector<double>& v, double q) {
    const double at = q * static_cast<double>(v.size() - 1);
    const auto i = static_cast<std::size_t>(std::floor(at));
    const std::size_t j = std::min(i + 1, v.size() - 1);
    return v[i] + (at - static_cast<double>(i)) * (v[j] - v[i]);
}

/// One stratified bootstrap replicate: |x| draws with replacement from the positive scores x, then
/// |y| from the negative ones y, into s (positives first) with their labels in pos.
inline void stratified_resample(const std::vector<double>& x, const std::vector<double>& y, Rng& rng, std::vector<double>& s,
                                std::vector<bool>& pos) {
    s.resize(x.size() + y.size());
    pos.resize(s.size());
    std::size_t k = 0;
    for (std::size_t i = 0; i < x.size(); ++i, ++k) s[k] = x[rng.next_u64() % x.size()], pos[k] = true;
    for (std::size_t j = 0; j < y.size(); ++j, ++k) s[k] = y[rng.next_u64() % y.size()], pos[k] = false;
}
}  // namespace detail

/// ROC AUC with a stratified percentile bootstrap interval: `replicates` resamples drawn with
/// replacement within the positives and within the negatives (Rng(seed): the same seed gives the
/// same interval), the interval is the (alpha/2, 1 - alpha/2) quantiles of the replicate AUCs
/// (linear interpolation, numpy's default), alpha = 0.05. value is the AUC of the data itself.
inline Interval bootstrap_auc(const std::vector<double>& scores, const std::vector<bool>& positive, std::int64_t replicates = 2000,
                              std::uint64_t seed = 0, double alpha = 0.05) {
    detail::check_scores("metrics::bootstrap_auc", scores, positive);
    MEDIMG_CHECK(replicates >= 1 && alpha > 0 && alpha < 1, ValueError,
                 "metrics::bootstrap_auc: need replicates >= 1 and alpha in (0, 1), got ", replicates, " and ", alpha);
    std::vector<double> x, y;
    for (std::size_t i = 0; i < scores.size(); ++i) (positive[i] ? x : y).push_back(scores[i]);
    Interval r;
    if (x.empty() || y.empty()) return r;
    r.value = delong_auc(scores, positive).auc.value;
    Rng rng(seed);
    std::vector<double> aucs;
    aucs.reserve(static_cast<std::size_t>(replicates));
    std::vector<double> s;
    std::vector<bool> pos;
    for (std::int64_t b = 0; b < replicates; ++b) {
        detail::stratified_resample(x, y, rng, s, pos);
        aucs.push_back(delong_auc(s, pos).auc.value);
    }
    std::sort(aucs.begin(), aucs.end());
    r.lo = detail::quantile_sorted(aucs, alpha / 2);
    r.hi = detail::quantile_sorted(aucs, 1 - alpha / 2);
    return r;
}

}  // namespace medimg::metrics
