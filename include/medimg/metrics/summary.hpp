// SPDX-License-Identifier: MIT
// metrics/summary.hpp: every figure medimg-evaluate reports, with its 95% interval, from one
// pass's probabilities: accuracy (Wilson), ROC AUC per class one-vs-rest (DeLong; optionally a
// stratified bootstrap), average precision, Brier score, log loss, ECE / MCE (15 bins), and for
// two classes the operating point at a threshold on p(class 1) with sensitivity, specificity,
// PPV and NPV (Wilson). docs/evaluation.md says what each means and how it is computed.
#pragma once

#include <cstdint>
#include <vector>

#include "medimg/metrics/calibration.hpp"
#include "medimg/metrics/classification.hpp"
#include "medimg/metrics/curves.hpp"
#include "medimg/metrics/intervals.hpp"

namespace medimg::metrics {

struct SummaryOptions {
    double threshold = 0.5;           // two classes: "class 1" when p(class 1) >= threshold
    std::int64_t bootstrap = 0;       // > 0: also a stratified bootstrap interval with this many replicates
    std::uint64_t bootstrap_seed = 0;
    int calibration_bins = 15;        // Guo et al.'s 15 equal-width bins
};

struct ClassFigures {
    DelongAuc auc;                    // one-vs-rest
    Interval auc_bootstrap;           // NaN unless SummaryOptions::bootstrap > 0
    double average_precision = 0;     // PR AUC, one-vs-rest
};

struct Summary {
    std::int64_t count = 0, num_classes = 0;
    Interval accuracy;                // Wilson
    std::vector<ClassFigures> per_class;
    double macro_auc = 0;             // binary: the AUC of class 1; else the mean over classes present
    OperatingPoint at_threshold;      // two classes only (class 1 positive)
    double brier = 0, log_loss = 0;
    Calibration calibration;          // ECE, MCE and the reliability bins
};

/// probs: N x K row-major probabilities; labels: N values in [0, K).
inline Summary summarize(const std::vector<double>& probs, const std::vector<std::int64_t>& labels, std::int64_t k,
                         const SummaryOptions& o = {}) {
    const auto report = classification_report(probs, labels, k);  // checks shapes and labels
    Summary s;
    s.count = report.count;
    s.num_classes = k;
    std::int64_t right = 0;
    for (std::int64_t c = 0; c < k; ++c) right += report.confusion[static_cast<std::size_t>(c)][static_cast<std::size_t>(c)];
    s.accuracy = wilson(right, report.count);
    s.macro_auc = report.macro_auc;
    for (std::int64_t c = 0; c < k; ++c) {
        std::vector<double> score(labels.size());
        std::vector<bool> pos(labels.size());
        for (std::size_t i = 0; i < labels.size(); ++i) {
            score[i] = probs[i * static_cast<std::size_t>(k) + static_cast<std::size_t>(c)];
            pos[i] = labels[i] == c;
        }
        ClassFigures f;
        f.auc = delong_auc(score, pos);
        if (o.bootstrap > 0) f.auc_bootstrap = bootstrap_auc(score, pos, o.bootstrap, o.bootstrap_seed + static_cast<std::uint64_t>(c));
        f.average_precision = average_precision(score, pos);
        if (k == 2 && c == 1) s.at_threshold = operating_point(score, pos, o.threshold);
        s.per_class.push_back(f);
    }
    s.brier = brier_score(probs, labels, k);
    s.log_loss = log_loss(probs, labels, k);
    s.calibration = calibration_bins(probs, labels, k, o.calibration_bins);
    return s;
}

}  // namespace medimg::metrics
