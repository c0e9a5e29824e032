// SPDX-License-Identifier: MIT
// report/figures.hpp: the figures of an evaluation, each built from metrics/ results as a Chart
// (report/plot.hpp) or drawn directly on a Canvas:
//   roc_chart          the ROC curve, its pointwise bootstrap band, the chance diagonal and named
//                      operating points (binary), or one curve per class one-vs-rest;
//   pr_chart           the precision-recall step curve and the prevalence line (no-skill level);
//   reliability_chart  accuracy against confidence per bin (Guo et al. 2017's reliability diagram),
//                      before and after calibration, over the share of images in each bin;
//   training_charts    loss and accuracy per epoch, train dashed and validation solid, one colour
//                      per run (a fold of a cross-validation);
//   folds_chart        each fold's AUC with its 95% interval and the pooled out-of-fold AUC;
//   confusion_canvas   the confusion matrix as a heat map coloured by the share of each true class.
// Deliberately not here: computing the metrics (metrics/), the page around them (report/html.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "medimg/metrics/calibration.hpp"
#include "medimg/metrics/curves.hpp"
#include "medimg/report/canvas.hpp"
#include "medimg/report/plot.hpp"
#include "medimg/train/csv.hpp"

namespace medimg::report {

/// "0.953 (0.921-0.985)"; "n/a" when the value is NaN; the interval left out when it is NaN.
inline std::string with_ci(const metrics::Interval& v, int decimals = 3) {
    char buf[96];
    if (std::isnan(v.value)) return "n/a";
    if (std::isnan(v.lo) || std::isnan(v.hi)) std::snprintf(buf, sizeof buf, "%.*f", decimals, v.value);
    else std::snprintf(buf, sizeof buf, "%.*f (%.*f-%.*f)", decimals, v.value, decimals, v.lo, decimals, v.hi);
    return buf;
}

namespace detail {
/// A chart with its title, axis labels, height and legend place (the rest as Chart's defaults).
inline Chart titled_chart(const std::string& title, const char* x_label, const char* y_label, int height, LegendAt legend) {
    Chart c;
    c.title = title;
    c.x_label = x_label;
    c.y_label = y_label;
    c.height = height;
    c.legend = legend;
    return c;
}
}  // namespace detail

/// An operating point to mark on the ROC curve.
struct RocMark {
    std::string name;   // "threshold 0.5", "Youden (val)"
    double fpr = 0, tpr = 0;
};

/// The ROC curve of one score: `band` may be empty (no band drawn).
inline Chart roc_chart(const metrics::Curve& roc, const metrics::RocBand& band, const metrics::Interval& auc,
                       const std::vector<RocMark>& marks, const std::string& title) {
    Chart c = detail::titled_chart(title, "false-positive rate (1 - specificity)", "true-positive rate (sensitivity)", 440,
                                   LegendAt::bottom_right);
    if (!band.fpr.empty()) c.bands.push_back({band.fpr, band.lo, band.hi, palette::blue, 0.22, "95% band (bootstrap)"});
    c.lines.push_back({{0, 1}, {0, 1}, palette::grey, 1.0, true, "chance"});
    c.lines.push_back({roc.x, roc.y, palette::blue, 2.0, false, "ROC, AUC " + with_ci(auc)});
    for (std::size_t i = 0; i < marks.size(); ++i) {
        Marker m;
        m.x = marks[i].fpr;
        m.y = marks[i].tpr;
        m.colour = i == 0 ? palette::vermillion : i == 1 ? palette::green : palette::purple;
        m.label = marks[i].name;
        c.markers.push_back(m);
    }
    return c;
}

/// One-vs-rest ROC curves, one per class (more than two classes).
inline Chart roc_chart_per_class(const std::vector<metrics::Curve>& curves, const std::vector<std::string>& classes,
                                 const std::vector<metrics::Interval>& auc, const std::string& title) {
    Chart c = detail::titled_chart(title, "false-positive rate (1 - specificity)", "true-positive rate (sensitivity)", 440,
                                   LegendAt::bottom_right);
    c.lines.push_back({{0, 1}, {0, 1}, palette::grey, 1.0, true, "chance"});
    for (std::size_t k = 0; k < curves.size(); ++k)
        if (!curves[k].x.empty())
            c.lines.push_back({curves[k].x, curves[k].y, palette::series(k), 2.0, false, classes[k] + " vs rest, AUC " + with_ci(auc[k])});
    return c;
}

/// The precision-recall curve as a step function (what average precision sums), with the share
/// of positives as the no-skill level.
inline Chart pr_chart(const std::vector<metrics::Curve>& curves, const std::vector<std::string>& names,
                      const std::vector<double>& average_precision, const std::vector<double>& prevalence, const std::string& title) {
    Chart c = detail::titled_chart(title, "recall (sensitivity)", "precision (PPV)", 440, LegendAt::bottom_left);
    for (std::size_t k = 0; k < curves.size(); ++k) {
        const auto& pr = curves[k];
        if (pr.x.empty()) continue;
        Line step{{}, {}, palette::series(k), 2.0, false, ""};
        // pr is ordered by increasing threshold (recall falling); walked from recall 0 up, point n's
        // precision holds over (R_{n-1}, R_n]: rise (or fall) at R_{n-1}, then run to R_n
        for (std::size_t i = pr.x.size(); i-- > 0;) {
            if (!step.x.empty()) step.x.push_back(step.x.back()), step.y.push_back(pr.y[i]);
            step.x.push_back(pr.x[i]);
            step.y.push_back(pr.y[i]);
        }
        char ap[64];
        std::snprintf(ap, sizeof ap, ", AP %.3f", average_precision[k]);
        step.label = names[k] + ap;
        c.lines.push_back(step);
        char pv[64];
        std::snprintf(pv, sizeof pv, "no skill (%s: %.2f)", names[k].c_str(), prevalence[k]);
        c.lines.push_back({{0, 1}, {prevalence[k], prevalence[k]}, palette::series(k), 1.0, true, curves.size() == 1 ? pv : ""});
    }
    return c;
}

/// The reliability diagram: each non-empty bin's accuracy at its mean confidence, before (when
/// `before` has bins) and after calibration, the diagonal of perfect calibration, and grey bars
/// with the share of images per bin (of `after`). `method` names the calibration in the legend
/// ("temperature 1.23"; "ECE" alone when `before` is empty).
inline Chart reliability_chart(const metrics::Calibration& before, const metrics::Calibration& after, const std::string& method,
                               const std::string& title) {
    Chart c = detail::titled_chart(title, "confidence (largest probability)", "accuracy / share of images", 420, LegendAt::below);
    std::int64_t n = 0;
    for (const auto& b : after.bins) n += b.count;
    for (const auto& b : after.bins)
        if (b.count > 0) c.bars.push_back({b.lo, b.hi, static_cast<double>(b.count) / static_cast<double>(std::max<std::int64_t>(n, 1)), 0,
                                           Rgb{200, 200, 200}, 1.0});
    c.lines.push_back({{0, 1}, {0, 1}, palette::grey, 1.0, true, "perfect calibration"});
    const auto curve = [&c](const metrics::Calibration& cal, Rgb colour, const std::string& label) {
        Line l{{}, {}, colour, 2.0, false, label};
        for (const auto& b : cal.bins)
            if (b.count > 0) {
                l.x.push_back(b.confidence);
                l.y.push_back(b.accuracy);
                Marker m;
                m.x = b.confidence;
                m.y = b.accuracy;
                m.colour = colour;
                m.radius = 3;
                c.markers.push_back(m);
            }
        return l;
    };
    char label[96];
    if (!before.bins.empty()) {
        std::snprintf(label, sizeof label, "softmax, ECE %.4f", before.ece);
        c.lines.push_back(curve(before, palette::orange, label));
        std::snprintf(label, sizeof label, "%s, ECE %.4f", method.c_str(), after.ece);
    } else {
        std::snprintf(label, sizeof label, "ECE %.4f", after.ece);
    }
    c.lines.push_back(curve(after, palette::blue, label));
    return c;
}

/// One training run's metrics.csv rows, named ("fold 0"; empty for a single run).
struct TrainingRun {
    std::string name;
    std::vector<train::EpochRow> rows;
};

/// Two charts: loss per epoch and accuracy per epoch; train dashed, validation solid, one colour
/// per run. Empty when no run has rows.
inline std::vector<Chart> training_charts(const std::vector<TrainingRun>& runs) {
    std::int64_t last = 1;
    double max_loss = 0;
    for (const auto& r : runs)
        for (const auto& e : r.rows) {
            last = std::max(last, e.epoch);
            for (double v : {e.train_loss, e.val_loss})
                if (std::isfinite(v)) max_loss = std::max(max_loss, v);
        }
    bool any = false;
    for (const auto& r : runs) any = any || !r.rows.empty();
    if (!any) return {};
    std::vector<Chart> out(2);
    const char* what[2] = {"loss", "accuracy"};
    for (int k = 0; k < 2; ++k) {
        Chart& c = out[static_cast<std::size_t>(k)];
        c.title = std::string(what[k]) + " per epoch";
        c.x_label = "epoch";
        c.y_label = what[k];
        c.x_min = runs.size() == 1 && last == 1 ? 0.5 : 1;
        c.x_max = last == 1 ? 1.5 : double(last);
        c.y_min = 0;
        c.y_max = k == 0 ? std::max(max_loss * 1.05, 1e-3) : 1.0;
        c.width = 480;
        c.height = 360;
        c.legend = runs.size() > 1 ? LegendAt::below : k == 0 ? LegendAt::top_right : LegendAt::bottom_right;
        for (std::size_t r = 0; r < runs.size(); ++r) {
            Line tr{{}, {}, palette::series(r), 1.5, true, runs.size() == 1 ? "train" : ""};
            Line va{{}, {}, palette::series(r), 2.0, false, runs.size() == 1 ? "validation" : runs[r].name};
            for (const auto& e : runs[r].rows) {
                tr.x.push_back(double(e.epoch));
                va.x.push_back(double(e.epoch));
                tr.y.push_back(k == 0 ? e.train_loss : e.train_acc);
                va.y.push_back(k == 0 ? e.val_loss : e.val_acc);
            }
            if (runs.size() == 1) tr.colour = palette::orange;
            c.lines.push_back(tr);
            c.lines.push_back(va);
            if (runs[r].rows.size() == 1) {  // one epoch: a line of one point does not show; mark it
                for (const auto* l : {&tr, &va}) {
                    Marker m;
                    m.x = l->x[0];
                    m.y = l->y[0];
                    m.colour = l->colour;
                    m.radius = 3.5;
                    c.markers.push_back(m);
                }
            }
        }
    }
    return out;
}

/// Each fold's AUC with its interval, and the pooled out-of-fold AUC as a band across.
inline Chart folds_chart(const std::vector<std::string>& names, const std::vector<metrics::Interval>& auc,
                         const metrics::Interval& pooled) {
    Chart c;
    c.title = "ROC AUC per fold and out of fold";
    c.x_label = "fold";
    c.y_label = "ROC AUC";
    c.x_tick_names = names;
    c.x_min = -0.6;
    c.x_max = double(names.size()) - 0.4;
    double lo = 1;
    for (const auto& a : auc)
        for (double v : {a.value, a.lo})
            if (std::isfinite(v)) lo = std::min(lo, v);
    if (std::isfinite(pooled.lo)) lo = std::min(lo, pooled.lo);
    c.y_min = std::max(0.0, std::floor((lo - 0.02) * 20) / 20);
    c.y_max = 1.0;
    if (c.y_min >= c.y_max) c.y_min = c.y_max - 0.05;
    c.height = 340;
    c.legend = LegendAt::below;
    if (std::isfinite(pooled.lo) && std::isfinite(pooled.hi))
        c.bands.push_back({{c.x_min, c.x_max}, {pooled.lo, pooled.lo}, {pooled.hi, pooled.hi}, palette::green, 0.18, "out-of-fold 95% CI"});
    c.lines.push_back({{c.x_min, c.x_max}, {pooled.value, pooled.value}, palette::green, 1.5, true, "out of fold, " + with_ci(pooled)});
    for (std::size_t i = 0; i < auc.size(); ++i) {
        Marker m;
        m.x = double(i);
        m.y = auc[i].value;
        m.lo = auc[i].lo;
        m.hi = auc[i].hi;
        m.colour = palette::blue;
        m.label = i == 0 ? "fold AUC" : "";
        c.markers.push_back(m);
    }
    return c;
}

/// The confusion matrix (rows: true class, columns: predicted) as a grid of cells coloured by the
/// share of the row (viridis), each with its count and that share; class names on both axes.
inline Canvas confusion_canvas(const std::vector<std::vector<std::int64_t>>& m, const std::vector<std::string>& classes,
                               const std::string& title) {
    const auto K = static_cast<int>(classes.size());
    MEDIMG_CHECK(K >= 1 && static_cast<int>(m.size()) == K, ShapeError, "report::confusion_canvas: ", m.size(), " rows for ", K,
                 " classes");
    for (const auto& row : m)
        MEDIMG_CHECK(static_cast<int>(row.size()) == K, ShapeError, "report::confusion_canvas: a row has ", row.size(), " counts for ",
                     K, " classes");
    const int th = Canvas::text_height();
    int name_w = Canvas::text_width("true");
    for (const auto& c : classes) name_w = std::max(name_w, Canvas::text_width(fit_text(c, 140)));
    const int cell = std::clamp(360 / K, 56, 120);
    const int left = 8 + th + 6 + name_w + 8, top = th + 16 + th + 6 + th + 4;
    Canvas canvas(std::max(left + K * cell + 16, Canvas::text_width(title) + 16), top + K * cell + 16, Rgb{255, 255, 255});
    canvas.draw_text(8, 8, title, palette::ink);
    const std::string pred = "predicted class";
    canvas.draw_text(left + (K * cell - Canvas::text_width(pred)) / 2, th + 16, pred, palette::ink);
    const std::string truth = "true class";
    canvas.draw_text_vertical(8, top + (K * cell - Canvas::text_width(truth)) / 2, truth, palette::ink);
    for (int k = 0; k < K; ++k) {
        const std::string name = fit_text(classes[static_cast<std::size_t>(k)], cell - 4);
        canvas.draw_text(left + k * cell + (cell - Canvas::text_width(name)) / 2, top - th - 4, name, palette::ink);
        const std::string rname = fit_text(classes[static_cast<std::size_t>(k)], 140);
        canvas.draw_text(left - 8 - Canvas::text_width(rname), top + k * cell + (cell - th) / 2, rname, palette::ink);
    }
    for (int r = 0; r < K; ++r) {
        std::int64_t total = 0;
        for (auto v : m[static_cast<std::size_t>(r)]) total += v;
        for (int q = 0; q < K; ++q) {
            const auto v = m[static_cast<std::size_t>(r)][static_cast<std::size_t>(q)];
            const double share = total > 0 ? static_cast<double>(v) / static_cast<double>(total) : 0.0;
            const Rgb fill = viridis(share);
            canvas.fill_rect(left + q * cell, top + r * cell, cell, cell, fill);
            // light text on the dark end of viridis, dark on the light end (relative luminance)
            const double lum = 0.2126 * fill.r + 0.7152 * fill.g + 0.0722 * fill.b;
            const Rgb ink = lum < 128 ? Rgb{255, 255, 255} : palette::ink;
            char a[32], b[32];
            std::snprintf(a, sizeof a, "%lld", static_cast<long long>(v));
            std::snprintf(b, sizeof b, "%.1f%%", 100.0 * share);
            canvas.draw_text(left + q * cell + (cell - Canvas::text_width(a)) / 2, top + r * cell + cell / 2 - th, a, ink);
            canvas.draw_text(left + q * cell + (cell - Canvas::text_width(b)) / 2, top + r * cell + cell / 2 + 1, b, ink);
        }
    }
    for (int k = 0; k <= K; ++k) {
        canvas.fill_rect(left + k * cell, top, 1, K * cell, Rgb{255, 255, 255});
        canvas.fill_rect(left, top + k * cell, K * cell, 1, Rgb{255, 255, 255});
    }
    return canvas;
}

}  // namespace medimg::report
