// SPDX-License-Identifier: MIT
// data/folds.hpp: cross-validation folds that keep every group (a patient, a volume, a block of
// slices) inside one fold and keep each fold's class mix close to the whole's: the semantics and
// the greedy algorithm of scikit-learn's StratifiedGroupKFold (1.2). Groups, in sorted order (or
// shuffled by a seeded Rng), are ordered by the spread of their class counts (population standard
// deviation, largest first, stable); each goes to the fold that minimises the mean over classes of
// the standard deviation across folds of (class count in fold / class count overall), ties within
// numpy.isclose's tolerance going to the fold with fewer samples. Without shuffling the folds
// equal scikit-learn's exactly (tests/data/make_metrics_fixtures.py); with it they are another
// valid draw (medimg's Rng is not NumPy's).
// Leakage guard: check_folds refuses a sample in two folds and a group split across folds, naming it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "medimg/core/rng.hpp"
#include "medimg/error.hpp"

namespace medimg::data {

/// The fold (0 .. k - 1) of every sample. labels: N class indices; groups: N group names (use a
/// distinct name per sample for plain stratified k-fold). Errors (ValueError, one line): sizes
/// differ, k < 2, fewer groups than k, or a class with fewer samples than k (a fold would lack it).
inline std::vector<int> stratified_group_kfold(const std::vector<std::int64_t>& labels, const std::vector<std::string>& groups, int k,
                                               bool shuffle = false, std::uint64_t seed = 0) {
    MEDIMG_CHECK(labels.size() == groups.size(), ValueError, "stratified_group_kfold: ", labels.size(), " labels but ", groups.size(),
                 " group names");
    MEDIMG_CHECK(k >= 2, ValueError, "stratified_group_kfold: need at least 2 folds, got ", k);
    // Classes and groups as numpy.unique numbers them: sorted values.
    std::map<std::int64_t, std::size_t> class_index;
    for (auto y : labels) class_index.emplace(y, 0);
    std::size_t c = 0;
    for (auto& [y, i] : class_index) i = c++;
    const std::size_t C = class_index.size();
    std::vector<double> class_count(C, 0.0);
    for (auto y : labels) class_count[class_index[y]] += 1;
    for (const auto& [y, i] : class_index)
        MEDIMG_CHECK(class_count[i] >= k, ValueError, "stratified_group_kfold: class ", y, " has ", static_cast<std::int64_t>(class_count[i]),
                     " samples, fewer than the ", k, " folds (each fold needs one of every class)");
    std::map<std::string, std::size_t> group_index;
    for (const auto& g : groups) group_index.emplace(g, 0);
    std::size_t gi = 0;
    for (auto& [g, i] : group_index) i = gi++;
    const std::size_t G = group_index.size();
    MEDIMG_CHECK(G >= static_cast<std::size_t>(k), ValueError, "stratified_group_kfold: ", G, " groups cannot fill ", k,
                 " folds (each fold needs at least one group)");
    std::vector<std::vector<double>> counts(G, std::vector<double>(C, 0.0));  // per group, per class
    std::vector<std::size_t> sample_group(labels.size());
    for (std::size_t s = 0; s < labels.size(); ++s) {
        sample_group[s] = group_index[groups[s]];
        counts[sample_group[s]][class_index[labels[s]]] += 1;
    }
    std::vector<std::size_t> order(G);  // group ids in the order they are considered
    std::iota(order.begin(), order.end(), 0);
    if (shuffle) {
        Rng rng(seed);
        for (std::size_t i = G; i > 1; --i) std::swap(order[i - 1], order[rng.next_u64() % i]);
    }
    const auto spread = [&](const std::vector<double>& v) {  // numpy.std: population, mean first
        double m = 0, s = 0;
        for (double x : v) m += x;
        m /= static_cast<double>(v.size());
        for (double x : v) s += (x - m) * (x - m);
        return std::sqrt(s / static_cast<double>(v.size()));
    };
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return spread(counts[a]) > spread(counts[b]); });

    std::vector<std::vector<double>> fold_counts(static_cast<std::size_t>(k), std::vector<double>(C, 0.0));
    std::vector<int> group_fold(G, -1);
    std::vector<double> column(static_cast<std::size_t>(k));
    for (std::size_t g : order) {
        int best = -1;
        double best_eval = std::numeric_limits<double>::infinity(), best_samples = std::numeric_limits<double>::infinity();
        for (int f = 0; f < k; ++f) {
            auto& fc = fold_counts[static_cast<std::size_t>(f)];
            for (std::size_t j = 0; j < C; ++j) fc[j] += counts[g][j];
            double eval = 0;
            for (std::size_t j = 0; j < C; ++j) {
                for (int h = 0; h < k; ++h) column[static_cast<std::size_t>(h)] = fold_counts[static_cast<std::size_t>(h)][j] / class_count[j];
                eval += spread(column);
            }
            eval /= static_cast<double>(C);
            for (std::size_t j = 0; j < C; ++j) fc[j] -= counts[g][j];
            double samples = 0;
            for (double v : fc) samples += v;
            const bool close = std::abs(eval - best_eval) <= 1e-8 + 1e-5 * std::abs(best_eval);  // numpy.isclose
            if (eval < best_eval || (close && samples < best_samples)) {
                best = f;
                best_eval = eval;
                best_samples = samples;
            }
        }
        for (std::size_t j = 0; j < C; ++j) fold_counts[static_cast<std::size_t>(best)][j] += counts[g][j];
        group_fold[g] = best;
    }
    std::vector<int> fold(labels.size());
    for (std::size_t s = 0; s < labels.size(); ++s) fold[s] = group_fold[sample_group[s]];
    return fold;
}

/// The leakage guard: every sample (by its path) in exactly one fold, every group inside one fold.
/// paths, groups, fold: one entry per sample. Throws ValueError naming the file or the group.
inline void check_folds(const std::vector<std::string>& paths, const std::vector<std::string>& groups, const std::vector<int>& fold) {
    MEDIMG_CHECK(paths.size() == groups.size() && paths.size() == fold.size(), ValueError, "check_folds: ", paths.size(),
                 " paths, ", groups.size(), " groups and ", fold.size(), " fold numbers");
    std::map<std::string, int> file_fold, group_fold;
    for (std::size_t i = 0; i < paths.size(); ++i) {
        const auto [f, new_file] = file_fold.emplace(paths[i], fold[i]);
        MEDIMG_CHECK(new_file, ValueError, "check_folds: '", paths[i], "' appears twice (folds ", f->second, " and ", fold[i],
                     "): the same image would be trained on and tested");
        const auto [g, new_group] = group_fold.emplace(groups[i], fold[i]);
        MEDIMG_CHECK(new_group || g->second == fold[i], ValueError, "check_folds: group '", groups[i], "' is split across folds ",
                     g->second, " and ", fold[i], " ('", paths[i], "'): its images would leak between training and testing");
    }
}

}  // namespace medimg::data
