// SPDX-License-Identifier: MIT
// metrics/classification.hpp: the evaluation numbers a classifier of exams is judged by,
// computed from per-sample class probabilities (N, C) and true labels (N):
//   accuracy; confusion matrix (rows = true class, columns = predicted, as scikit-learn);
//   per class (one-vs-rest): sensitivity = TP / (TP + FN), specificity = TN / (TN + FP);
//   ROC AUC: binary = AUC of p(class 1); more classes = macro mean of one-vs-rest AUCs
//   (sklearn.metrics.roc_auc_score(multi_class="ovr", average="macro")). AUC is computed exactly
//   as the Mann-Whitney statistic with ties counted 1/2 (intervals.hpp adds its DeLong interval); a class absent from the labels has no
//   defined AUC (NaN, and the macro mean skips it, as documented in docs/evaluation.md).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "medimg/error.hpp"
#include "medimg/metrics/intervals.hpp"

namespace medimg::metrics {

struct ClassificationReport {
    std::int64_t num_classes = 0, count = 0;
    double accuracy = 0.0;
    std::vector<std::vector<std::int64_t>> confusion;  // [true][predicted]
    std::vector<double> sensitivity, specificity, auc;  // per class, one-vs-rest
    double macro_auc = std::numeric_limits<double>::quiet_NaN();  // binary: auc of class 1
};

/// AUC of `scores` for separating positives from negatives (Mann-Whitney U / (P * N)).
/// Returns NaN when either group is empty.
inline double roc_auc(const std::vector<double>& scores, const std::vector<bool>& positive) {
    MEDIMG_CHECK(scores.size() == positive.size(), ShapeError, "roc_auc: ", scores.size(), " scores but ", positive.size(), " labels");
    // A NaN score has no rank: sorting it is undefined (checked here to keep this function's name in the message).
    for (std::size_t i = 0; i < scores.size(); ++i)
        MEDIMG_CHECK(!std::isnan(scores[i]), ValueError, "roc_auc: score ", i, " is nan (the model's outputs are not finite?)");
    return delong_auc(scores, positive).auc.value;  // mid-ranks, O(n log n): metrics/intervals.hpp
}

/// probs: N x C row-major probabilities (or any scores); labels: N values in [0, C).
/// The prediction is the arg-max (first on ties).
inline ClassificationReport classification_report(const std::vector<double>& probs, const std::vector<std::int64_t>& labels,
                                                   std::int64_t num_classes) {
    const auto N = static_cast<std::int64_t>(labels.size());
    MEDIMG_CHECK(num_classes >= 2, ValueError, "classification_report: need at least 2 classes, got ", num_classes);
    MEDIMG_CHECK(static_cast<std::int64_t>(probs.size()) == N * num_classes, ShapeError, "classification_report: ", probs.size(),
                 " scores for ", N, " samples x ", num_classes, " classes");
    ClassificationReport r;
    r.num_classes = num_classes;
    r.count = N;
    r.confusion.assign(static_cast<std::size_t>(num_classes), std::vector<std::int64_t>(static_cast<std::size_t>(num_classes), 0));
    std::int64_t right = 0;
    for (std::int64_t i = 0; i < N; ++i) {
        const auto y = labels[static_cast<std::size_t>(i)];
        MEDIMG_CHECK(y >= 0 && y < num_classes, ValueError, "classification_report: label[", i, "] = ", y, " is not in [0, ", num_classes, ")");
        const double* row = probs.data() + i * num_classes;
        const auto pred = std::max_element(row, row + num_classes) - row;
        ++r.confusion[static_cast<std::size_t>(y)][static_cast<std::size_t>(pred)];
        right += pred == y;
    }
    r.accuracy = N ? static_cast<double>(right) / static_cast<double>(N) : std::numeric_limits<double>::quiet_NaN();
    const double nan = std::numeric_limits<double>::quiet_NaN();
    double auc_sum = 0.0;
    int auc_n = 0;
    for (std::int64_t c = 0; c < num_classes; ++c) {
        const auto uc = static_cast<std::size_t>(c);
        std::int64_t tp = r.confusion[uc][uc], fn = 0, fp = 0;
        for (std::int64_t k = 0; k < num_classes; ++k)
            if (k != c) fn += r.confusion[uc][static_cast<std::size_t>(k)], fp += r.confusion[static_cast<std::size_t>(k)][uc];
        const std::int64_t tn = N - tp - fn - fp;
        r.sensitivity.push_back(tp + fn ? static_cast<double>(tp) / static_cast<double>(tp + fn) : nan);
        r.specificity.push_back(tn + fp ? static_cast<double>(tn) / static_cast<double>(tn + fp) : nan);
        std::vector<double> s(static_cast<std::size_t>(N));
        std::vector<bool> pos(static_cast<std::size_t>(N));
        for (std::int64_t i = 0; i < N; ++i) {
            s[static_cast<std::size_t>(i)] = probs[static_cast<std::size_t>(i * num_classes + c)];
            pos[static_cast<std::size_t>(i)] = labels[static_cast<std::size_t>(i)] == c;
        }
        r.auc.push_back(roc_auc(s, pos));
        if (!std::isnan(r.auc.back())) auc_sum += r.auc.back(), ++auc_n;
    }
    r.macro_auc = num_classes == 2 ? r.auc[1] : (auc_n ? auc_sum / auc_n : nan);
    return r;
}

}  // namespace medimg::metrics
