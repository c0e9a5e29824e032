// SPDX-License-Identifier: MIT
// report/overlay.hpp: heatmap_overlay, the figure for one explained exam: a dark title band, the
// gray exam with a relevance map (Grad-CAM and the like) blended over it in viridis, and a colour
// bar 0 .. 1 beside it; overlay_layout says where each part lands. Small exams are enlarged by an
// integer factor (nearest neighbour, so pixels stay visible as pixels) to leave room for the text.
// Deliberately not here: computing the relevance map (explain/), normalising it (the caller maps
// it to [0, 1]), smoothing or resampling it, colour exams, several exams per figure.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"
#include "medimg/report/canvas.hpp"
#include "medimg/report/colormap.hpp"

namespace medimg::report {

struct OverlayOptions {
    /// Opacity of the heat colour at heat 1: alpha = max_alpha * heat (low heat leaves the exam visible).
    double max_alpha = 0.6;
    /// Exams whose shorter side is smaller are enlarged by an integer factor (nearest neighbour) to at
    /// least this, up to 4096 pixels on the longer side; [1, 4096].
    int min_side = 256;
    /// Written above the image, e.g. "lesao 0.943 | Grad-CAM layer4"; cut with "..." when too long.
    std::string title;
    /// A second, smaller-priority line (e.g. the file name); may be empty.
    std::string subtitle;
};

/// Where heatmap_overlay puts things, in canvas pixels (x right, y down from the top-left).
struct OverlayLayout {
    int scale = 1;                    // enlargement factor of the exam (1 = as is)
    int width = 0, height = 0;        // the canvas
    int band_height = 0;              // the dark title band across the top; 0 when title and subtitle are empty
    int image_x = 0, image_y = 0;     // top-left of the exam
    int image_w = 0, image_h = 0;     // exam size after enlargement: (W * scale, H * scale)
    int bar_x = 0, bar_y = 0;         // top-left of the colour bar (inside its 1-pixel frame)
    int bar_w = 0, bar_h = 0;         // viridis(1) in the top row, viridis(0) in the bottom row
};

namespace detail {
inline constexpr Rgb overlay_band{24, 24, 24};        // title band
inline constexpr Rgb overlay_title{240, 240, 240};    // title text
inline constexpr Rgb overlay_subtitle{165, 165, 165}; // subtitle text: readable, but behind the title
inline constexpr Rgb overlay_paper{255, 255, 255};    // everything else
inline constexpr Rgb overlay_ink{40, 40, 40};         // colour-bar frame, ticks and labels
inline constexpr int overlay_margin = 8;              // around the exam and the colour bar
inline constexpr int overlay_band_pad = 6;            // above and below the text in the band
inline constexpr int overlay_bar_gap = 12;            // exam to colour bar
inline constexpr int overlay_bar_w = 16;
inline constexpr int overlay_tick = 4;                // tick length, right of the bar
inline constexpr int overlay_label_gap = 3;           // tick to its label
inline constexpr int overlay_min_bar_h = 96;          // the bar and its labels need this much height
inline constexpr int overlay_max_enlarged = 4096;     // enlargement stops before the longer side passes this
inline const char* const overlay_tick_labels[3] = {"0", "0.5", "1"};
inline const char* const overlay_bar_label = "relevance";

inline OverlayLayout overlay_layout(const char* fn, std::int64_t height, std::int64_t width, const OverlayOptions& o) {
    MEDIMG_CHECK(std::isfinite(o.max_alpha) && o.max_alpha >= 0.0 && o.max_alpha <= 1.0, ValueError, fn,
                 ": max_alpha must be in [0, 1]; got ", o.max_alpha);
    MEDIMG_CHECK(o.min_side >= 1 && o.min_side <= overlay_max_enlarged, ValueError, fn, ": min_side must be in [1, ",
                 overlay_max_enlarged, "]; got ", o.min_side);
    MEDIMG_CHECK(height >= 1 && width >= 1, ShapeError, fn, ": the exam must be at least 1 x 1; got ", height, " x ", width);
    const std::int64_t shorter = std::min(height, width), longer = std::max(height, width);
    std::int64_t scale = (o.min_side + shorter - 1) / shorter;                      // ceil(min_side / shorter)
    scale = std::max<std::int64_t>(1, std::min(scale, overlay_max_enlarged / longer));  // a thin strip stays a strip

    OverlayLayout l;
    l.scale = static_cast<int>(scale);
    const int lines = (o.title.empty() ? 0 : 1) + (o.subtitle.empty() ? 0 : 1);
    l.band_height = lines == 0 ? 0 : 2 * overlay_band_pad + lines * Canvas::text_height() + (lines - 1);
    const std::int64_t image_w = width * scale, image_h = height * scale;
    const int widest_tick = Canvas::text_width(overlay_tick_labels[1]);
    const std::int64_t right = overlay_bar_gap + 2 + overlay_bar_w + overlay_tick + overlay_label_gap + widest_tick +
                               6 + Canvas::text_height() + overlay_margin;  // frame 2, label turned on its side
    const std::int64_t canvas_w = overlay_margin + image_w + right;
    const std::int64_t body_h = std::max<std::int64_t>(image_h, overlay_min_bar_h);
    const std::int64_t canvas_h = l.band_height + overlay_margin + body_h + overlay_margin;
    MEDIMG_CHECK(canvas_w <= Canvas::max_side && canvas_h <= Canvas::max_side, ShapeError, fn, ": a ", height, " x ",
                 width, " exam gives a ", canvas_w, " x ", canvas_h, " figure, larger than the canvas limit ",
                 Canvas::max_side, " per side");
    l.width = static_cast<int>(canvas_w);
    l.height = static_cast<int>(canvas_h);
    l.image_x = overlay_margin;
    l.image_y = l.band_height + overlay_margin;
    l.image_w = static_cast<int>(image_w);
    l.image_h = static_cast<int>(image_h);
    l.bar_x = static_cast<int>(l.image_x + image_w + overlay_bar_gap + 1);
    l.bar_y = l.image_y + 1;
    l.bar_w = overlay_bar_w;
    l.bar_h = static_cast<int>(body_h) - 2;
    return l;
}

/// The values of a (H, W) or (1, H, W) map, checked: defined, non-empty, finite, in [0, 1].
inline std::vector<float> overlay_values(const char* fn, const char* name, const Tensor<float, Cpu>& t) {
    MEDIMG_CHECK(t.defined(), ShapeError, fn, ": ", name, " is an undefined tensor");
    MEDIMG_CHECK(t.rank() == 2 || (t.rank() == 3 && t.size(0) == 1), ShapeError, fn, ": ", name,
                 " must be (H, W) or (1, H, W); got ", t.shape());
    MEDIMG_CHECK(t.numel() > 0, ShapeError, fn, ": ", name, " is empty (", t.shape(), ")");
    std::vector<float> v = t.to_vector();  // half storage widened
    const std::int64_t W = t.size(-1);
    for (std::size_t i = 0; i < v.size(); ++i) {
        const auto row = static_cast<std::int64_t>(i) / W, col = static_cast<std::int64_t>(i) % W;
        MEDIMG_CHECK(std::isfinite(v[i]), ValueError, fn, ": ", name, " ", t.shape(), " holds ", v[i], " at (row ",
                     row, ", col ", col, ")");
        MEDIMG_CHECK(v[i] >= 0.0f && v[i] <= 1.0f, ValueError, fn, ": ", name, " ", t.shape(),
                     " must lie in [0, 1]; got ", v[i], " at (row ", row, ", col ", col,
                     ") (map it to [0, 1] first, e.g. divide by its maximum)");
    }
    return v;
}
}  // namespace detail

/// The layout heatmap_overlay uses for a height x width exam with options `o`.
/// Throws ValueError for bad options and ShapeError for an empty or too large exam ("overlay_layout: ").
inline OverlayLayout overlay_layout(std::int64_t height, std::int64_t width, const OverlayOptions& o = {}) {
    return detail::overlay_layout("overlay_layout", height, width, o);
}

/// The exam in gray with the heat blended over it in viridis, a colour bar, and the title band.
///   gray: (H, W) or (1, H, W) float in [0, 1]; heat: the same H, W (either rank form), in [0, 1].
/// Each exam pixel, enlarged to scale x scale (overlay_layout), becomes
///   out = (1 - a) * gray + a * viridis(heat),  a = max_alpha * heat,
/// so heat 0 leaves the exam exactly gray (R = G = B = round(255 * gray)).
/// The title and subtitle are cut to the canvas width with "..." when too long.
/// Throws ShapeError (rank, empty, H/W mismatch, figure over the canvas limit) or ValueError
/// (non-finite or out-of-range values, bad options), one line starting "heatmap_overlay: ".
inline Canvas heatmap_overlay(const Tensor<float, Cpu>& gray, const Tensor<float, Cpu>& heat, const OverlayOptions& o = {}) {
    constexpr const char* fn = "heatmap_overlay";
    const std::vector<float> g = detail::overlay_values(fn, "gray", gray);
    const std::vector<float> h = detail::overlay_values(fn, "heat", heat);
    const std::int64_t H = gray.size(-2), W = gray.size(-1);
    MEDIMG_CHECK(heat.size(-2) == H && heat.size(-1) == W, ShapeError, fn, ": heat ", heat.shape(), " and gray ",
                 gray.shape(), " differ in height or width");
    const OverlayLayout l = detail::overlay_layout(fn, H, W, o);
    Canvas c(l.width, l.height, detail::overlay_paper);

    // Title band: title, then subtitle, left-aligned, cut to the canvas width.
    c.fill_rect(0, 0, l.width, l.band_height, detail::overlay_band);
    int text_y = detail::overlay_band_pad;
    const int text_room = l.width - 2 * detail::overlay_margin;
    if (!o.title.empty()) {
        c.draw_text(detail::overlay_margin, text_y, fit_text(o.title, text_room), detail::overlay_title);
        text_y += Canvas::text_height() + 1;
    }
    if (!o.subtitle.empty())
        c.draw_text(detail::overlay_margin, text_y, fit_text(o.subtitle, text_room), detail::overlay_subtitle);

    // The exam: each source pixel fills a scale x scale block.
    const int s = l.scale;
    for (std::int64_t r = 0; r < H; ++r)
        for (std::int64_t q = 0; q < W; ++q) {
            const auto i = static_cast<std::size_t>(r * W + q);
            const double a = o.max_alpha * h[i];
            const Rgb heat_colour = viridis(h[i]);
            const double base = 255.0 * g[i];
            auto mix = [&](std::uint8_t v) { return static_cast<std::uint8_t>(std::lround((1.0 - a) * base + a * v)); };
            const Rgb out{mix(heat_colour.r), mix(heat_colour.g), mix(heat_colour.b)};
            c.fill_rect(l.image_x + static_cast<int>(q) * s, l.image_y + static_cast<int>(r) * s, s, s, out);
        }

    // Colour bar: a 1-pixel frame, viridis from 1 (top row) to 0 (bottom row), ticks at 0, 0.5, 1.
    c.fill_rect(l.bar_x - 1, l.bar_y - 1, l.bar_w + 2, l.bar_h + 2, detail::overlay_ink);
    for (int row = 0; row < l.bar_h; ++row) {
        const double t = l.bar_h > 1 ? 1.0 - static_cast<double>(row) / (l.bar_h - 1) : 1.0;
        c.fill_rect(l.bar_x, l.bar_y + row, l.bar_w, 1, viridis(t));
    }
    const int tick_x = l.bar_x + l.bar_w + 1;
    const int label_x = tick_x + detail::overlay_tick + detail::overlay_label_gap;
    for (int k = 0; k < 3; ++k) {
        const int tick_y = l.bar_y + (l.bar_h - 1) - (k * (l.bar_h - 1)) / 2;  // k = 0 bottom, 2 top
        c.fill_rect(tick_x, tick_y, detail::overlay_tick, 1, detail::overlay_ink);
        // Digits cover cell rows 3..11 (ink ends above the baseline row 12): centre row 7 on the tick.
        c.draw_text(label_x, tick_y - (font::baseline - 5), detail::overlay_tick_labels[k], detail::overlay_ink);
    }
    const int name_x = label_x + Canvas::text_width(detail::overlay_tick_labels[1]) + 6;
    const int name_len = Canvas::text_width(detail::overlay_bar_label);
    c.draw_text_vertical(name_x, l.bar_y + (l.bar_h - name_len) / 2, detail::overlay_bar_label, detail::overlay_ink);
    return c;
}

}  // namespace medimg::report
