// SPDX-License-Identifier: MIT
// report/plot.hpp: Chart, a 2-D plot described as data (axes ranges, labels, lines, bands, bars,
// markers, a legend) and render(chart), which draws it on a Canvas: the figures of the evaluation
// report (ROC, precision-recall, reliability diagram, training curves, per-fold AUCs).
//   Chart c;  c.title = "ROC";  c.x_label = "1 - specificity";
//   c.lines.push_back({fpr, tpr, palette::blue, 2.0, false, "test, AUC 0.95"});
//   render(c).save_png("roc.png");
// Ticks are "nice numbers" (1, 2 or 5 times a power of ten; Heckbert, "Nice numbers for graph
// labels", Graphics Gems, 1990), about five per axis. Data outside the axes' ranges is clipped at
// the plot frame. Deliberately not here: logarithmic axes, several panels in one Chart (compose
// canvases instead), text other than the built-in font.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "medimg/error.hpp"
#include "medimg/report/canvas.hpp"

namespace medimg::report {

/// Colours of the figures: the first four are Okabe & Ito's colour-blind-safe palette (2008).
namespace palette {
inline constexpr Rgb blue{0, 114, 178};
inline constexpr Rgb orange{230, 159, 0};
inline constexpr Rgb green{0, 158, 115};
inline constexpr Rgb vermillion{213, 94, 0};
inline constexpr Rgb purple{204, 121, 167};
inline constexpr Rgb sky{86, 180, 233};
inline constexpr Rgb grey{140, 140, 140};
inline constexpr Rgb ink{40, 40, 40};
inline constexpr Rgb grid{232, 232, 232};
/// The n-th colour of a series (cycles through six).
inline Rgb series(std::size_t n) {
    constexpr Rgb all[] = {blue, orange, green, vermillion, purple, sky};
    return all[n % 6];
}
}  // namespace palette

/// A polyline through (x[i], y[i]); NaN points break it into pieces.
struct Line {
    std::vector<double> x, y;
    Rgb colour = palette::blue;
    double width = 2.0;
    bool dashed = false;
    std::string label;  // in the legend when not empty
};

/// The region between lo(x) and hi(x), filled translucent: a confidence band.
struct Band {
    std::vector<double> x, lo, hi;
    Rgb colour = palette::blue;
    double alpha = 0.22;
    std::string label;
};

/// A bar from y = base to y = top over [x0, x1] (a histogram bin, a reliability bin).
struct Bar {
    double x0 = 0, x1 = 0, top = 0, base = 0;
    Rgb colour = palette::blue;
    double alpha = 1.0;
};

/// A filled circle at (x, y) with an optional vertical interval [lo, hi] (error bar) and label.
struct Marker {
    double x = 0, y = 0;
    Rgb colour = palette::vermillion;
    double radius = 4.5;
    std::string label;                   // in the legend when not empty
    double lo = NAN, hi = NAN;           // the error bar, drawn when both are finite
};

/// Where the legend goes: a corner inside the plot frame, below the figure (the figure grows taller
/// by the legend's height: nothing hides data), or nowhere.
enum class LegendAt { top_left, top_right, bottom_left, bottom_right, below, none };

struct Chart {
    std::string title, x_label, y_label;
    double x_min = 0, x_max = 1, y_min = 0, y_max = 1;
    int width = 480, height = 400;       // the whole figure, in pixels
    std::vector<Band> bands;             // drawn first,
    std::vector<Bar> bars;               // then the bars,
    std::vector<Line> lines;             // the lines,
    std::vector<Marker> markers;         // and the markers on top
    LegendAt legend = LegendAt::bottom_right;
    /// Integer x ticks named by these labels (x_tick_names[i] at x = i) instead of numbers: folds,
    /// classes. Empty: nice-number ticks.
    std::vector<std::string> x_tick_names;
};

namespace detail {
/// About `target` nice tick values covering [lo, hi] from inside, and the step between them.
inline std::vector<double> nice_ticks(double lo, double hi, int target, double& step) {
    const auto nice = [](double v, bool round) {
        const double e = std::floor(std::log10(v)), f = v / std::pow(10.0, e);
        const double n = round ? (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) : (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10);
        return n * std::pow(10.0, e);
    };
    step = nice(nice(hi - lo, false) / std::max(target - 1, 1), true);
    std::vector<double> out;
    for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
    return out;
}
/// A tick label: as many decimals as the step needs.
inline std::string tick_label(double v, double step) {
    const int decimals = std::clamp(static_cast<int>(std::ceil(-std::log10(step) - 1e-9)), 0, 6);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
}
}  // namespace detail

/// Draws `c` on a new c.width x c.height canvas (taller by the legend with LegendAt::below): title on top, the y label turned on the left, the
/// x label below, tick labels, a light grid, the data clipped at the frame, and the legend inside
/// the frame at c.legend. Requires finite ranges with x_min < x_max, y_min < y_max, and a figure of
/// at least 160 x 120 pixels (ValueError naming the title otherwise).
inline Canvas render(const Chart& c) {
    MEDIMG_CHECK(std::isfinite(c.x_min) && std::isfinite(c.x_max) && std::isfinite(c.y_min) && std::isfinite(c.y_max) &&
                     c.x_min < c.x_max && c.y_min < c.y_max,
                 ValueError, "report::render: chart '", c.title, "' needs finite ranges with min < max; got x [", c.x_min, ", ",
                 c.x_max, "], y [", c.y_min, ", ", c.y_max, "]");
    MEDIMG_CHECK(c.width >= 160 && c.height >= 120 && c.width <= Canvas::max_side && c.height <= Canvas::max_side, ValueError,
                 "report::render: chart '", c.title, "' must be between 160 x 120 and ", Canvas::max_side, " pixels; got ", c.width,
                 " x ", c.height);
    const int th = Canvas::text_height(), cw = Canvas::text_width("x");
    // legend: one row per labelled line, band or marker
    struct Entry {
        std::string text;
        Rgb colour;
        int kind;  // 0 line, 1 dashed line, 2 band, 3 marker
    };
    std::vector<Entry> entries;
    for (const auto& b : c.bands)
        if (!b.label.empty()) entries.push_back({b.label, b.colour, 2});
    for (const auto& l : c.lines)
        if (!l.label.empty()) entries.push_back({l.label, l.colour, l.dashed ? 1 : 0});
    for (const auto& m : c.markers)
        if (!m.label.empty()) entries.push_back({m.label, m.colour, 3});
    const int legend_row = th + 2, legend_pad = 6, swatch = 22;
    const bool below = c.legend == LegendAt::below && !entries.empty();
    const int legend_h = static_cast<int>(entries.size()) * legend_row + 2 * legend_pad - 2;
    Canvas canvas(c.width, c.height + (below ? legend_h + 8 : 0));

    // ticks and their labels decide the margins
    double xstep = 1, ystep = 1;
    std::vector<double> xt, yt;
    std::vector<std::string> xl, yl;
    if (!c.x_tick_names.empty()) {
        for (std::size_t i = 0; i < c.x_tick_names.size(); ++i)
            if (double(i) >= c.x_min && double(i) <= c.x_max) xt.push_back(double(i)), xl.push_back(c.x_tick_names[i]);
    } else {
        xt = detail::nice_ticks(c.x_min, c.x_max, 6, xstep);
        for (double v : xt) xl.push_back(detail::tick_label(v, xstep));
    }
    yt = detail::nice_ticks(c.y_min, c.y_max, 6, ystep);
    int ylw = 0;
    for (double v : yt) yl.push_back(detail::tick_label(v, ystep)), ylw = std::max(ylw, Canvas::text_width(yl.back()));
    const int left = 8 + (c.y_label.empty() ? 0 : th + 6) + ylw + 8;
    const int top = c.title.empty() ? 12 : th + 16;
    const int bottom = 6 + th + (c.x_label.empty() ? 0 : th + 6) + 8;
    const int right = 16;
    const int pw = c.width - left - right, ph = c.height - top - bottom;  // the plot frame
    MEDIMG_CHECK(pw >= 40 && ph >= 40, ValueError, "report::render: chart '", c.title, "' leaves no room for the plot in ",
                 c.width, " x ", c.height, " pixels");
    // the ranges map to the frame less `inset` pixels on each side, so a line on an edge shows whole
    constexpr double inset = 5;
    const auto X = [&](double v) { return left + inset + (v - c.x_min) / (c.x_max - c.x_min) * (pw - 2 * inset); };
    const auto Y = [&](double v) { return top + ph - inset - (v - c.y_min) / (c.y_max - c.y_min) * (ph - 2 * inset); };

    if (!c.title.empty()) canvas.draw_text(left, 8, fit_text(c.title, c.width - left - 4), palette::ink);
    for (std::size_t i = 0; i < yt.size(); ++i) {
        const int y = static_cast<int>(std::lround(Y(yt[i])));
        canvas.fill_rect(left - 4, y, 4, 1, palette::ink);
        canvas.draw_text(left - 6 - Canvas::text_width(yl[i]), y - th / 2, yl[i], palette::ink);
    }
    for (std::size_t i = 0; i < xt.size(); ++i) {
        const int x = static_cast<int>(std::lround(X(xt[i])));
        canvas.fill_rect(x, top + ph, 1, 4, palette::ink);
        const std::string s = fit_text(xl[i], std::max(cw, pw / std::max<int>(1, static_cast<int>(xt.size()))));
        canvas.draw_text(x - Canvas::text_width(s) / 2, top + ph + 6, s, palette::ink);
    }
    if (!c.x_label.empty()) {
        const std::string s = fit_text(c.x_label, pw);
        canvas.draw_text(left + (pw - Canvas::text_width(s)) / 2, top + ph + 6 + th + 6, s, palette::ink);
    }
    if (!c.y_label.empty()) {
        const std::string s = fit_text(c.y_label, ph);
        canvas.draw_text_vertical(8, top + (ph - Canvas::text_width(s)) / 2, s, palette::ink);
    }

    // The data, drawn on a canvas of the frame's size and copied in: clipping at the frame for free.
    Canvas plot(pw, ph);
    for (double v : yt) plot.fill_rect(0, static_cast<int>(std::lround(Y(v))) - top, pw, 1, palette::grid);
    for (double v : xt) plot.fill_rect(static_cast<int>(std::lround(X(v))) - left, 0, 1, ph, palette::grid);
    const auto P = [&](double x, double y) { return Canvas::PointF{X(x) - left, Y(y) - top}; };
    for (const auto& b : c.bands) {
        MEDIMG_CHECK(b.lo.size() == b.x.size() && b.hi.size() == b.x.size(), ValueError, "report::render: chart '", c.title,
                     "': a band has ", b.x.size(), " x, ", b.lo.size(), " lo and ", b.hi.size(), " hi values");
        std::vector<Canvas::PointF> poly;
        for (std::size_t i = 0; i < b.x.size(); ++i)
            if (std::isfinite(b.x[i]) && std::isfinite(b.hi[i])) poly.push_back(P(b.x[i], b.hi[i]));
        for (std::size_t i = b.x.size(); i-- > 0;)
            if (std::isfinite(b.x[i]) && std::isfinite(b.lo[i])) poly.push_back(P(b.x[i], b.lo[i]));
        plot.fill_polygon(poly, b.colour, b.alpha);
    }
    for (const auto& b : c.bars) {
        if (!(std::isfinite(b.x0) && std::isfinite(b.x1) && std::isfinite(b.top) && std::isfinite(b.base))) continue;
        const auto a = P(b.x0, b.top), z = P(b.x1, b.base);
        plot.fill_polygon({{a.x, a.y}, {z.x, a.y}, {z.x, z.y}, {a.x, z.y}}, b.colour, b.alpha);
    }
    for (const auto& l : c.lines) {
        MEDIMG_CHECK(l.x.size() == l.y.size(), ValueError, "report::render: chart '", c.title, "': a line has ", l.x.size(),
                     " x and ", l.y.size(), " y values");
        std::vector<Canvas::PointF> piece;
        const auto flush = [&] {
            if (!piece.empty()) plot.stroke(piece, l.colour, l.width, 1.0, l.dashed ? 6.0 : 0.0);
            piece.clear();
        };
        for (std::size_t i = 0; i < l.x.size(); ++i) {
            if (std::isfinite(l.x[i]) && std::isfinite(l.y[i])) piece.push_back(P(l.x[i], l.y[i]));
            else flush();
        }
        flush();
    }
    for (const auto& m : c.markers) {
        if (!std::isfinite(m.x) || !std::isfinite(m.y)) continue;
        if (std::isfinite(m.lo) && std::isfinite(m.hi)) {
            plot.stroke({P(m.x, m.lo), P(m.x, m.hi)}, m.colour, 1.5);
            const double w = m.radius + 1;
            for (double v : {m.lo, m.hi}) plot.stroke({{P(m.x, v).x - w, P(m.x, v).y}, {P(m.x, v).x + w, P(m.x, v).y}}, m.colour, 1.5);
        }
        plot.stroke({P(m.x, m.y)}, Rgb{255, 255, 255}, 2 * m.radius + 3);  // a white ring keeps it apart from lines
        plot.stroke({P(m.x, m.y)}, m.colour, 2 * m.radius);
    }
    for (int y = 0; y < ph; ++y)
        for (int x = 0; x < pw; ++x) canvas.at(left + x, top + y) = plot.at(x, y);
    canvas.frame_rect(left - 1, top - 1, pw + 2, ph + 2, palette::ink);

    if (c.legend != LegendAt::none && !entries.empty()) {
        const int pad = legend_pad, row = legend_row, lh = legend_h;
        int tw = 0;
        for (auto& e : entries) e.text = fit_text(e.text, pw - swatch - 3 * pad - 8), tw = std::max(tw, Canvas::text_width(e.text));
        const int lw = swatch + 3 * pad + tw;
        const bool at_left = c.legend == LegendAt::top_left || c.legend == LegendAt::bottom_left || below;
        const bool at_top = c.legend == LegendAt::top_left || c.legend == LegendAt::top_right;
        const int lx = at_left ? left + 8 : left + pw - lw - 8;
        const int ly = below ? c.height : at_top ? top + 8 : top + ph - lh - 8;
        for (int y = ly; y < ly + lh; ++y)
            for (int x = lx; x < lx + lw; ++x) canvas.blend(x, y, Rgb{255, 255, 255}, 0.88);
        canvas.frame_rect(lx, ly, lw, lh, Rgb{200, 200, 200});
        for (std::size_t i = 0; i < entries.size(); ++i) {
            const auto& e = entries[i];
            const double cy = ly + pad + static_cast<int>(i) * row + th / 2.0;
            const double x0 = lx + pad, x1 = lx + pad + swatch;
            if (e.kind == 2) canvas.fill_polygon({{x0, cy - 5}, {x1, cy - 5}, {x1, cy + 5}, {x0, cy + 5}}, e.colour, 0.3);
            else if (e.kind == 3) canvas.stroke({{(x0 + x1) / 2, cy}}, e.colour, 9);
            else canvas.stroke({{x0, cy}, {x1, cy}}, e.colour, 2, 1.0, e.kind == 1 ? 4.0 : 0.0);
            canvas.draw_text(lx + 2 * pad + swatch, ly + pad + static_cast<int>(i) * row, e.text, palette::ink);
        }
    }
    return canvas;
}

}  // namespace medimg::report
