// SPDX-License-Identifier: MIT
// report/evaluation.hpp: the evaluation report of medimg-evaluate --report and medimg-crossval, as
// one self-contained HTML page (report/html.hpp) built from the predicted probabilities:
//   a summary table (every figure with its 95% interval), the ROC curve with a pointwise bootstrap
//   band and the operating points, the precision-recall curve, the confusion matrix, the
//   reliability diagram before and after calibration, the training curves, per-fold results (cross-
//   validation), and a gallery of the worst false negatives and false positives.
//   EvaluationInput in;  in.classes = {...};  in.probs = ...;  in.labels = ...;
//   evaluation_report(in).save(dir + "/report.html");
// The caller supplies what only it knows (the training logs, the gallery's thumbnails with their
// explanations); worst_errors picks the gallery's images. docs/evaluation.md shows a report.
// Deliberately not here: running a model (the programs do), multi-page reports, PDF.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "medimg/metrics/summary.hpp"
#include "medimg/report/figures.hpp"
#include "medimg/report/html.hpp"

namespace medimg::report {

/// One fold of a cross-validation, as its row of folds.csv.
struct FoldResult {
    std::string name;                 // "r0/fold2"
    std::int64_t images = 0;
    metrics::Interval accuracy, auc;  // Wilson; DeLong (binary) or the macro AUC without interval
    double ece = 0, temperature = 1;
};

struct EvaluationInput {
    std::string title = "medimg evaluation report";
    std::vector<std::pair<std::string, std::string>> about;  // what was evaluated: config, checkpoint, split...
    std::vector<std::string> classes;
    std::vector<double> probs;          // N x K, the probabilities reported (calibrated when calibrated)
    std::vector<double> uncalibrated;   // N x K before calibration; empty when none was applied
    double temperature = 1.0;
    std::string calibration_name;       // the calibration in words; empty: "temperature <T>"
    std::vector<std::int64_t> labels;   // N
    metrics::SummaryOptions options;    // the threshold (two classes), bootstrap, bins
    std::string threshold_rule = "given";
    std::int64_t band_replicates = 1000;  // for the ROC band (0: no band)
    std::vector<TrainingRun> training;  // metrics.csv of the run(s); may be empty
    std::string training_note;          // said when `training` is empty (where the log was looked for)
    std::vector<FoldResult> folds;      // cross-validation only
    metrics::Interval pooled_auc;       // cross-validation: the out-of-fold AUC
    std::vector<Thumbnail> false_negatives, false_positives;  // or, more than two classes: errors in false_positives
    std::string gallery_note;           // how the thumbnails were made (explanation method, layer)
};

/// The gallery's images: with two classes (class 1 positive, "p" its probability), the positives
/// below `threshold` by increasing p (the surest misses first) and the negatives at or above it by
/// decreasing p; with more, the wrong arg-max predictions by decreasing confidence (in .second).
/// At most `count` of each.
inline std::pair<std::vector<std::size_t>, std::vector<std::size_t>> worst_errors(const std::vector<double>& probs,
                                                                                  const std::vector<std::int64_t>& labels,
                                                                                  std::int64_t k, double threshold, std::size_t count) {
    metrics::detail::check_rows("report::worst_errors", probs.size(), labels, k);
    const auto K = static_cast<std::size_t>(k);
    std::vector<std::size_t> fn, fp;
    std::vector<double> key(labels.size());
    for (std::size_t i = 0; i < labels.size(); ++i) {
        const double* p = probs.data() + i * K;
        if (k == 2) {
            key[i] = p[1];
            if (labels[i] == 1 && p[1] < threshold) fn.push_back(i);
            if (labels[i] == 0 && p[1] >= threshold) fp.push_back(i);
        } else {
            const auto pred = static_cast<std::int64_t>(std::max_element(p, p + K) - p);
            key[i] = p[pred];
            if (pred != labels[i]) fp.push_back(i);
        }
    }
    // stable: ties keep the data's order
    std::stable_sort(fn.begin(), fn.end(), [&](std::size_t a, std::size_t b) { return key[a] < key[b]; });
    std::stable_sort(fp.begin(), fp.end(), [&](std::size_t a, std::size_t b) { return key[a] > key[b]; });
    if (fn.size() > count) fn.resize(count);
    if (fp.size() > count) fp.resize(count);
    return {fn, fp};
}

namespace detail {
inline std::string fixed(double v, int decimals = 4) {
    if (!std::isfinite(v)) return "n/a";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
}
/// Column `c` of the N x K matrix as scores, and labels == c as the positives.
inline std::pair<std::vector<double>, std::vector<bool>> one_vs_rest(const std::vector<double>& probs,
                                                                     const std::vector<std::int64_t>& labels, std::int64_t k,
                                                                     std::int64_t c) {
    std::vector<double> s(labels.size());
    std::vector<bool> pos(labels.size());
    for (std::size_t i = 0; i < labels.size(); ++i) {
        s[i] = probs[i * static_cast<std::size_t>(k) + static_cast<std::size_t>(c)];
        pos[i] = labels[i] == c;
    }
    return {s, pos};
}
}  // namespace detail

/// The report as an HtmlPage (save it with .save(path)). Requires classes, probs and labels of
/// matching sizes (metrics::summarize's checks); an uncalibrated matrix, when given, of probs' size.
inline HtmlPage evaluation_report(const EvaluationInput& in) {
    const auto K = static_cast<std::int64_t>(in.classes.size());
    MEDIMG_CHECK(K >= 2, ValueError, "report::evaluation_report: need at least 2 classes, got ", K);
    MEDIMG_CHECK(in.uncalibrated.empty() || in.uncalibrated.size() == in.probs.size(), ShapeError,
                 "report::evaluation_report: ", in.uncalibrated.size(), " uncalibrated probabilities for ", in.probs.size(),
                 " calibrated ones");
    const auto sum = metrics::summarize(in.probs, in.labels, K, in.options);
    const bool calibrated = !in.uncalibrated.empty();
    const auto raw = calibrated ? metrics::summarize(in.uncalibrated, in.labels, K, in.options) : metrics::Summary{};
    const auto& C = in.classes;

    HtmlPage page(in.title);
    page.warning("Research software: not for clinical diagnosis. These figures describe this data set and this model; "
                 "they are not evidence of clinical performance.");
    if (!in.about.empty()) {
        std::vector<std::vector<std::string>> rows;
        for (const auto& [k, v] : in.about) rows.push_back({k, v});
        page.table({}, rows);
    }

    // Every figure with its interval.
    page.heading("Figures with 95% confidence intervals");
    std::vector<std::vector<std::string>> rows;
    rows.push_back({"images", std::to_string(sum.count), ""});
    rows.push_back({"accuracy", with_ci(sum.accuracy), "Wilson"});
    if (K == 2) {
        rows.push_back({"ROC AUC (" + C[1] + " vs " + C[0] + ")", with_ci(sum.per_class[1].auc.auc), "DeLong (Sun & Xu 2014)"});
        if (in.options.bootstrap > 0)
            rows.push_back({"ROC AUC", with_ci(sum.per_class[1].auc_bootstrap),
                            "stratified bootstrap, " + std::to_string(in.options.bootstrap) + " replicates"});
        rows.push_back({"PR AUC (average precision)", detail::fixed(sum.per_class[1].average_precision, 3), "scikit-learn's definition"});
        const auto& p = sum.at_threshold;
        const std::string at = " at threshold " + detail::fixed(p.threshold, 4);
        rows.push_back({"sensitivity" + at, with_ci(p.sensitivity), "Wilson; " + std::to_string(p.tp) + " / " + std::to_string(p.tp + p.fn)});
        rows.push_back({"specificity" + at, with_ci(p.specificity), "Wilson; " + std::to_string(p.tn) + " / " + std::to_string(p.tn + p.fp)});
        rows.push_back({"PPV" + at, with_ci(p.ppv), "Wilson; " + std::to_string(p.tp) + " / " + std::to_string(p.tp + p.fp)});
        rows.push_back({"NPV" + at, with_ci(p.npv), "Wilson; " + std::to_string(p.tn) + " / " + std::to_string(p.tn + p.fn)});
        rows.push_back({"threshold rule", in.threshold_rule, ""});
    } else {
        rows.push_back({"ROC AUC (macro, one vs rest)", detail::fixed(sum.macro_auc, 3), "mean over classes"});
        for (std::int64_t c = 0; c < K; ++c) {
            const auto& f = sum.per_class[static_cast<std::size_t>(c)];
            rows.push_back({"ROC AUC, " + C[static_cast<std::size_t>(c)] + " vs rest", with_ci(f.auc.auc), "DeLong"});
            rows.push_back({"PR AUC, " + C[static_cast<std::size_t>(c)] + " vs rest", detail::fixed(f.average_precision, 3),
                            "average precision"});
        }
    }
    rows.push_back({"Brier score", detail::fixed(sum.brier), calibrated ? "uncalibrated " + detail::fixed(raw.brier) : ""});
    rows.push_back({"log loss", detail::fixed(sum.log_loss), calibrated ? "uncalibrated " + detail::fixed(raw.log_loss) : ""});
    rows.push_back({"ECE (" + std::to_string(in.options.calibration_bins) + " bins)", detail::fixed(sum.calibration.ece),
                    calibrated ? "uncalibrated " + detail::fixed(raw.calibration.ece) : "no calibration applied"});
    rows.push_back({"MCE", detail::fixed(sum.calibration.mce), calibrated ? "uncalibrated " + detail::fixed(raw.calibration.mce) : ""});
    if (calibrated)
        rows.push_back({"calibration", in.calibration_name.empty() ? "temperature " + detail::fixed(in.temperature) : in.calibration_name,
                        "fitted on the validation split (Guo et al. 2017)"});
    page.table({"figure", "value (95% CI)", "how"}, rows);

    // Cross-validation folds.
    if (!in.folds.empty()) {
        page.heading("Cross-validation folds");
        std::vector<std::vector<std::string>> fr;
        std::vector<std::string> names;
        std::vector<metrics::Interval> aucs;
        for (const auto& f : in.folds) {
            fr.push_back({f.name, std::to_string(f.images), with_ci(f.accuracy), with_ci(f.auc), detail::fixed(f.ece),
                          detail::fixed(f.temperature, 3)});
            names.push_back(f.name);
            aucs.push_back(f.auc);
        }
        page.table({"fold", "test images", "accuracy (95% CI)", "ROC AUC (95% CI)", "ECE", "temperature"}, fr);
        page.figures({{render(folds_chart(names, aucs, in.pooled_auc)),
                       "Each fold's ROC AUC on its own test fold with its DeLong interval; the green line and band: the AUC "
                       "of all out-of-fold predictions pooled."}});
    }

    // Curves.
    page.heading("ROC and precision-recall curves");
    std::vector<Thumbnail> curves;
    if (K == 2) {
        const auto [score, pos] = detail::one_vs_rest(in.probs, in.labels, K, 1);
        const auto roc = metrics::roc_curve(score, pos);
        const auto band = in.band_replicates > 0 && !roc.x.empty()
                              ? metrics::roc_band(score, pos, in.band_replicates, in.options.bootstrap_seed)
                              : metrics::RocBand{};
        std::vector<RocMark> marks;
        const auto mark = [&](const std::string& name, double t) {
            const auto p = metrics::operating_point(score, pos, t);
            marks.push_back({name + " (" + detail::fixed(t, 3) + ")", 1.0 - p.specificity.value, p.sensitivity.value});
        };
        mark(in.threshold_rule == "given" ? "threshold" : in.threshold_rule, in.options.threshold);
        if (in.options.threshold != 0.5) mark("threshold", 0.5);
        if (!roc.x.empty()) {
            curves.push_back({render(roc_chart(roc, band, sum.per_class[1].auc.auc, marks, "ROC: " + C[1] + " vs " + C[0])),
                              "ROC curve of p(" + C[1] + "); band: pointwise 95% percentile band of the sensitivity at each "
                              "false-positive rate over " + std::to_string(in.band_replicates) +
                              " stratified bootstrap replicates; dots: the operating points."});
        }
        double prevalence = 0;
        for (bool b : pos) prevalence += b ? 1.0 : 0.0;
        prevalence /= std::max<double>(1.0, double(pos.size()));
        curves.push_back({render(pr_chart({metrics::pr_curve(score, pos)}, {C[1]}, {sum.per_class[1].average_precision}, {prevalence},
                                          "Precision-recall: " + C[1])),
                          "Precision against recall for p(" + C[1] + "), a step at each threshold (what average precision "
                          "sums); dashed: the share of positives, a classifier without skill."});
    } else {
        std::vector<metrics::Curve> rocs, prs;
        std::vector<metrics::Interval> aucs;
        std::vector<double> ap, prev;
        for (std::int64_t c = 0; c < K; ++c) {
            const auto [score, pos] = detail::one_vs_rest(in.probs, in.labels, K, c);
            rocs.push_back(metrics::roc_curve(score, pos));
            prs.push_back(metrics::pr_curve(score, pos));
            aucs.push_back(sum.per_class[static_cast<std::size_t>(c)].auc.auc);
            ap.push_back(sum.per_class[static_cast<std::size_t>(c)].average_precision);
            double n = 0;
            for (bool b : pos) n += b ? 1.0 : 0.0;
            prev.push_back(n / std::max<double>(1.0, double(pos.size())));
        }
        curves.push_back({render(roc_chart_per_class(rocs, C, aucs, "ROC, one class vs the rest")),
                          "One-vs-rest ROC curve of each class's probability, with its DeLong interval."});
        curves.push_back({render(pr_chart(prs, C, ap, prev, "Precision-recall, one class vs the rest")),
                          "One-vs-rest precision-recall step curves."});
    }
    page.figures(curves);

    // Confusion and calibration.
    page.heading("Confusion matrix and calibration");
    std::vector<std::vector<std::int64_t>> confusion;
    std::string confusion_caption;
    if (K == 2) {
        const auto& p = sum.at_threshold;
        confusion = {{p.tn, p.fp}, {p.fn, p.tp}};
        confusion_caption = "At the operating point p(" + C[1] + ") >= " + detail::fixed(p.threshold, 4) +
                            "; colour: the share of each true class (a row).";
    } else {
        confusion = metrics::classification_report(in.probs, in.labels, K).confusion;
        confusion_caption = "The arg-max prediction; colour: the share of each true class (a row).";
    }
    page.figures({{confusion_canvas(confusion, C, "Confusion matrix"), confusion_caption},
                  {render(reliability_chart(calibrated ? raw.calibration : metrics::Calibration{}, sum.calibration,
                                            in.calibration_name.empty() ? "temperature " + detail::fixed(in.temperature, 3)
                                                                        : in.calibration_name,
                                            "Reliability diagram")),
                   "Accuracy of each of " + std::to_string(in.options.calibration_bins) +
                       " equal-width confidence bins at its mean confidence (Guo et al. 2017); on the diagonal a "
                       "model is calibrated. Grey bars: the share of images in each bin" +
                       (calibrated ? " (after calibration)." : ".")}});

    // Training curves.
    page.heading("Training");
    const auto tc = training_charts(in.training);
    if (tc.empty()) {
        page.note(in.training_note.empty() ? "No training log given." : in.training_note);
    } else {
        page.figures({{render(tc[0]), "Cross-entropy loss per epoch; dashed: train, solid: validation."}, {render(tc[1]), "Accuracy per epoch; dashed: train, solid: validation."}});
    }

    // Gallery.
    page.heading(K == 2 ? "Worst false negatives and false positives" : "Most confident errors");
    if (!in.gallery_note.empty()) page.note(in.gallery_note);
    // how many errors there are, how many are shown
    const auto shown = [&page](std::int64_t errors, const std::vector<Thumbnail>& thumbs, const char* what) {
        if (errors == 0) {
            page.note(std::string("No ") + what + ".");
            return;
        }
        page.note(std::to_string(errors) + " " + what + (thumbs.empty() ? "; no thumbnails given."
                                                                      : "; the worst " + std::to_string(thumbs.size()) + " shown."));
        if (!thumbs.empty()) page.gallery(thumbs);
    };
    if (K == 2) {
        page.heading("False negatives: " + C[1] + " called " + C[0] + ", lowest p(" + C[1] + ") first", 3);
        shown(sum.at_threshold.fn, in.false_negatives, "false negatives at this threshold");
        page.heading("False positives: " + C[0] + " called " + C[1] + ", highest p(" + C[1] + ") first", 3);
        shown(sum.at_threshold.fp, in.false_positives, "false positives at this threshold");
    } else {
        std::int64_t errors = sum.count;  // all but the arg-max confusion matrix's diagonal
        for (std::int64_t c = 0; c < K; ++c) errors -= confusion[static_cast<std::size_t>(c)][static_cast<std::size_t>(c)];
        shown(errors, in.false_positives, "errors");
    }
    page.note("Written by medimg. Figures drawn by the library (report/plot.hpp) and embedded in this file.");
    return page;
}

}  // namespace medimg::report
