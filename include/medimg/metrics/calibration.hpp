// SPDX-License-Identifier: MIT
// metrics/calibration.hpp: are the probabilities honest? Scores of probabilities against labels,
// and temperature scaling, the one-parameter fix (Guo et al. 2017, "On Calibration of Modern
// Neural Networks", arXiv:1706.04599):
//   brier_score        binary: mean (p_1 - y)^2 (scikit-learn's brier_score_loss); more classes:
//                      mean sum_c (p_c - [y = c])^2 (Brier 1950's multi-class score);
//   log_loss           mean -log p_y, p clipped to [1e-15, 1 - 1e-15] (scikit-learn 1.2's log_loss);
//   nll_at_temperature mean -log softmax(z / T)_y, from logits (exact log-sum-exp, no clipping);
//   fit_temperature    the T minimising that NLL on validation logits, solved to machine precision
//                      (the NLL is convex in beta = 1/T: safeguarded Newton on its derivative);
//   calibration_bins   the reliability diagram: 15 equal-width bins of confidence (max p), with
//                      ECE = sum_b |B_b| / N |acc_b - conf_b| and MCE = max_b |acc_b - conf_b|
//                      (Guo et al.: bin b holds confidences in (b / 15, (b + 1) / 15]).
// Probabilities and logits are N x K row-major vectors; labels are N values in [0, K).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "medimg/error.hpp"

namespace medimg::metrics {

namespace detail {
inline void check_rows(const char* fn, std::size_t values, const std::vector<std::int64_t>& labels, std::int64_t k) {
    MEDIMG_CHECK(k >= 2, ValueError, fn, ": need at least 2 classes, got ", k);
    MEDIMG_CHECK(!labels.empty() && values == labels.size() * static_cast<std::size_t>(k), ShapeError, fn, ": ", values,
                 " values for ", labels.size(), " samples x ", k, " classes (need at least one sample)");
    for (std::size_t i = 0; i < labels.size(); ++i)
        MEDIMG_CHECK(labels[i] >= 0 && labels[i] < k, ValueError, fn, ": label[", i, "] = ", labels[i], " is not in [0, ", k, ")");
}
}  // namespace detail

inline double brier_score(const std::vector<double>& probs, const std::vector<std::int64_t>& labels, std::int64_t k) {
    detail::check_rows("metrics::brier_score", probs.size(), labels, k);
    double s = 0;
    for (std::size_t i = 0; i < labels.size(); ++i) {
        const double* p = probs.data() + i * static_cast<std::size_t>(k);
        if (k == 2) {
            const double d = p[1] - (labels[i] == 1 ? 1.0 : 0.0);
            s += d * d;
        } else {
            for (std::int64_t c = 0; c < k; ++c) {
                const double d = p[c] - (labels[i] == c ? 1.0 : 0.0);
                s += d * d;
            }
        }
    }
    return s / static_cast<double>(labels.size());
}

inline double log_loss(const std::vector<double>& probs, const std::vector<std::int64_t>& labels, std::int64_t k) {
    detail::check_rows("metrics::log_loss", probs.size(), labels, k);
    constexpr double eps = 1e-15;
    double s = 0;
    for (std::size_t i = 0; i < labels.size(); ++i) {
        const double* p = probs.data() + i * static_cast<std::size_t>(k);
        double total = 0;  // scikit-learn renormalises each row after clipping
        for (std::int64_t c = 0; c < k; ++c) total += std::clamp(p[c], eps, 1 - eps);
        s -= std::log(std::clamp(p[labels[i]], eps, 1 - eps) / total);
    }
    return s / static_cast<double>(labels.size());
}

/// softmax(z / T) of every row. logits: N x K -> N x K.
inline std::vector<double> softmax_rows(const std::vector<double>& logits, std::int64_t k, double temperature = 1.0) {
    MEDIMG_CHECK(k >= 1 && logits.size() % static_cast<std::size_t>(k) == 0 && temperature > 0 && std::isfinite(temperature),
                 ValueError, "metrics::softmax_rows: ", logits.size(), " logits are not rows of ", k,
                 " classes, or the temperature ", temperature, " is not positive");
    std::vector<double> p(logits.size());
    for (std::size_t r = 0; r < logits.size(); r += static_cast<std::size_t>(k)) {
        double mx = -std::numeric_limits<double>::infinity(), z = 0;
        for (std::int64_t c = 0; c < k; ++c) mx = std::max(mx, logits[r + c] / temperature);
        for (std::int64_t c = 0; c < k; ++c) z += (p[r + c] = std::exp(logits[r + c] / temperature - mx));
        for (std::int64_t c = 0; c < k; ++c) p[r + c] /= z;
    }
    return p;
}

/// Probabilities standing in for logits: log p entry by entry (p floored at 1e-300). A row's
/// log-probabilities differ from its logits by one constant, which softmax ignores at any T.
inline std::vector<double> log_probabilities(const std::vector<double>& probs) {
    std::vector<double> out(probs.size());
    for (std::size_t i = 0; i < probs.size(); ++i) out[i] = std::log(std::max(probs[i], 1e-300));
    return out;
}
/// Probabilities recalibrated by temperature T: softmax(log p / T) per row of k.
inline std::vector<double> with_temperature(const std::vector<double>& probs, std::int64_t k, double temperature) {
    return softmax_rows(log_probabilities(probs), k, temperature);
}

namespace detail {
/// f(b) = mean(lse(b z) - b z_y) and its first two derivatives in b = 1 / T:
/// f' = mean(E_p[z] - z_y), f'' = mean(Var_p[z]) >= 0, p = softmax(b z).
struct NllDerivs {
    double f, d1, d2;
};
inline NllDerivs nll_in_beta(const std::vector<double>& z, const std::vector<std::int64_t>& y, std::int64_t k, double b) {
    NllDerivs r{0, 0, 0};
    for (std::size_t i = 0; i < y.size(); ++i) {
        const double* row = z.data() + i * static_cast<std::size_t>(k);
        double mx = -std::numeric_limits<double>::infinity();
        for (std::int64_t c = 0; c < k; ++c) mx = std::max(mx, b * row[c]);
        double s = 0, m1 = 0, m2 = 0;
        for (std::int64_t c = 0; c < k; ++c) {
            const double e = std::exp(b * row[c] - mx);
            s += e;
            m1 += e * row[c];
            m2 += e * row[c] * row[c];
        }
        m1 /= s;
        m2 /= s;
        r.f += mx + std::log(s) - b * row[y[i]];
        r.d1 += m1 - row[y[i]];
        r.d2 += std::max(0.0, m2 - m1 * m1);
    }
    const double n = static_cast<double>(y.size());
    return {r.f / n, r.d1 / n, r.d2 / n};
}
}  // namespace detail

/// Mean NLL of the labels under softmax(logits / T).
inline double nll_at_temperature(const std::vector<double>& logits, const std::vector<std::int64_t>& labels, std::int64_t k,
                                 double temperature = 1.0) {
    detail::check_rows("metrics::nll_at_temperature", logits.size(), labels, k);
    MEDIMG_CHECK(temperature > 0 && std::isfinite(temperature), ValueError, "metrics::nll_at_temperature: temperature must be > 0, got ",
                 temperature);
    return detail::nll_in_beta(logits, labels, k, 1.0 / temperature).f;
}

/// The temperature T > 0 minimising nll_at_temperature on these logits (validation data).
/// Solved in b = 1/T, where the NLL is convex: a bracket [lo, hi] with f'(lo) < 0 < f'(hi) is
/// found by doubling, then Newton steps that leave the bracket are replaced by bisection, until
/// the bracket is below 1e-15 relative or f' is 0. The result lies in [kMinT, kMaxT]: logits that
/// separate the classes perfectly would drive T to 0 (returned as kMinT), logits that carry no
/// information to infinity (kMaxT).
inline constexpr double kMinTemperature = 1e-3, kMaxTemperature = 1e3;
inline double fit_temperature(const std::vector<double>& logits, const std::vector<std::int64_t>& labels, std::int64_t k) {
    detail::check_rows("metrics::fit_temperature", logits.size(), labels, k);
    for (std::size_t i = 0; i < logits.size(); ++i)
        MEDIMG_CHECK(std::isfinite(logits[i]), ValueError, "metrics::fit_temperature: logit ", i, " is not finite (", logits[i], ")");
    const auto d = [&](double b) { return detail::nll_in_beta(logits, labels, k, b); };
    double lo = 1.0 / kMaxTemperature, hi = 1.0;
    if (d(lo).d1 >= 0) return kMaxTemperature;  // no information: the flattest softmax allowed
    for (;;) {
        const auto v = d(hi);
        if (v.d1 > 0) break;
        // f' == 0 with f ~ 0: every softmax has saturated on the right class (separable logits)
        if (v.d1 == 0) return v.f < 1e-12 ? kMinTemperature : 1.0 / hi;
        lo = hi;
        hi *= 2;
        if (hi >= 1.0 / kMinTemperature) return kMinTemperature;  // separable: as sharp as allowed
    }
    double b = 0.5 * (lo + hi);
    for (int it = 0; it < 200 && hi - lo > 1e-15 * hi; ++it) {
        const auto v = d(b);
        if (v.d1 == 0) break;
        (v.d1 < 0 ? lo : hi) = b;
        const double newton = v.d2 > 0 ? b - v.d1 / v.d2 : std::numeric_limits<double>::quiet_NaN();
        b = (newton > lo && newton < hi) ? newton : 0.5 * (lo + hi);
    }
    return 1.0 / b;
}

/// One bin of the reliability diagram.
struct CalibrationBin {
    double lo, hi;              // the bin holds confidences in (lo, hi] (the first also 0)
    std::int64_t count = 0;
    double confidence = 0;      // mean max-probability in the bin
    double accuracy = 0;        // fraction of the bin whose arg-max is the label
};
struct Calibration {
    std::vector<CalibrationBin> bins;
    double ece = 0, mce = 0;
};
inline Calibration calibration_bins(const std::vector<double>& probs, const std::vector<std::int64_t>& labels, std::int64_t k,
                                    int bins = 15) {
    detail::check_rows("metrics::calibration_bins", probs.size(), labels, k);
    MEDIMG_CHECK(bins >= 1, ValueError, "metrics::calibration_bins: need at least 1 bin, got ", bins);
    Calibration c;
    for (int b = 0; b < bins; ++b) c.bins.push_back({static_cast<double>(b) / bins, static_cast<double>(b + 1) / bins});
    for (std::size_t i = 0; i < labels.size(); ++i) {
        const double* p = probs.data() + i * static_cast<std::size_t>(k);
        const auto pred = std::max_element(p, p + k) - p;
        const double conf = p[pred];
        int b = static_cast<int>(std::ceil(conf * bins)) - 1;  // (b / bins, (b + 1) / bins]
        b = std::clamp(b, 0, bins - 1);
        // ceil can be off by one where conf * bins rounds across an edge: place it by the edges
        while (b > 0 && conf <= c.bins[static_cast<std::size_t>(b)].lo) --b;
        while (b < bins - 1 && conf > c.bins[static_cast<std::size_t>(b)].hi) ++b;
        auto& bin = c.bins[static_cast<std::size_t>(b)];
        ++bin.count;
        bin.confidence += conf;
        bin.accuracy += pred == labels[i] ? 1.0 : 0.0;
    }
    const double n = static_cast<double>(labels.size());
    for (auto& bin : c.bins) {
        if (bin.count == 0) continue;
        bin.confidence /= static_cast<double>(bin.count);
        bin.accuracy /= static_cast<double>(bin.count);
        const double gap = std::abs(bin.accuracy - bin.confidence);
        c.ece += static_cast<double>(bin.count) / n * gap;
        c.mce = std::max(c.mce, gap);
    }
    return c;
}

}  // namespace medimg::metrics
