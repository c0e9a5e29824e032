// SPDX-License-Identifier: MIT
// report/panel.hpp: image_panel, several same-size images side by side as one figure, each with a
// title above and a colour bar beside it: what medimg-compare --panel draws (reference | aligned
// target | SSIM map | difference). Images are enlarged by a whole factor (nearest neighbour, so a
// 64x64 exam stays crisp pixels) until the shorter side reaches PanelOptions::min_side; pixels
// marked invalid are drawn mid-grey; outlined regions are traced in a bright colour along their
// boundary pixels. Deliberately not here: computing the maps (metrics/), other layouts.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"
#include "medimg/report/canvas.hpp"
#include "medimg/report/colormap.hpp"

namespace medimg::report {

struct PanelImage {
    Tensor<float, Cpu> values;   // (H, W)
    double lo = 0, hi = 1;       // the range of the colour bar; values are clamped to it
    bool colour = false;         // viridis; false: grey
    std::string title;
    std::string bar_label;       // beside the bar, e.g. "SSIM"
    bool outline = false;        // trace the panel's regions on this image
    bool grey_invalid = true;    // draw the panel's invalid pixels grey (false: the image as it is)
};

struct PanelOptions {
    int min_side = 256;          // enlarge until the shorter side is at least this (whole factors, at most 16)
    Rgb outline = Rgb{255, 40, 40};
};

namespace detail {
inline std::string panel_number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g", v);
    return buf;
}
}  // namespace detail

/// The images (all H x W) in a row; `invalid` (H, W), when defined, marks pixels without a value
/// (grey in every image); `regions`, when not empty, holds H x W region numbers (row-major, 0: no
/// region), traced on the images whose `outline` is set. Throws ShapeError when sizes differ.
inline Canvas image_panel(const std::vector<PanelImage>& images, const Tensor<float, Cpu>& invalid, const std::vector<std::int32_t>& regions,
                          const PanelOptions& o = {}) {
    MEDIMG_CHECK(!images.empty(), ValueError, "report::image_panel: no images");
    const std::int64_t H = images[0].values.size(0), W = images[0].values.size(1);
    for (const auto& im : images)
        MEDIMG_CHECK(im.values.rank() == 2 && im.values.size(0) == H && im.values.size(1) == W, ShapeError,
                     "report::image_panel: '", im.title, "' is ", im.values.shape(), ", the first image ", H, "x", W);
    MEDIMG_CHECK(!invalid.defined() || (invalid.rank() == 2 && invalid.size(0) == H && invalid.size(1) == W), ShapeError,
                 "report::image_panel: the invalid mask is ", invalid.shape(), " for ", H, "x", W, " images");
    MEDIMG_CHECK(regions.empty() || static_cast<std::int64_t>(regions.size()) == H * W, ShapeError, "report::image_panel: ",
                 regions.size(), " region labels for ", H, "x", W, " images");
    const auto shorter = std::min(H, W), longer = std::max(H, W);
    int s = 1;
    while (s < 16 && shorter * s < o.min_side && longer * (s + 1) <= 2048) ++s;
    const int iw = static_cast<int>(W) * s, ih = static_cast<int>(H) * s;
    const int th = Canvas::text_height(), gap = 28, bar_w = 12, bar_gap = 6;
    // each tile: the image, the bar, its tick labels, the turned bar label
    std::vector<int> label_w, tile_x;
    int x_end = gap;
    for (const auto& im : images) {
        label_w.push_back(std::max(Canvas::text_width(detail::panel_number(im.lo)), Canvas::text_width(detail::panel_number(im.hi))));
        tile_x.push_back(x_end);
        x_end += std::max(iw + bar_gap + bar_w + 4 + label_w.back() + 4 + th, Canvas::text_width(im.title)) + gap;
    }
    const int top = 8 + 2 * th + 6;
    Canvas c(x_end, top + ih + gap, Rgb{255, 255, 255});
    const Rgb ink{40, 40, 40}, grey{128, 128, 128};
    const auto boundary = [&](std::int64_t y, std::int64_t x) {
        const auto at = [&](std::int64_t yy, std::int64_t xx) { return regions[static_cast<std::size_t>(yy * W + xx)]; };
        const std::int32_t r = at(y, x);
        if (r == 0) return false;
        return y == 0 || x == 0 || y == H - 1 || x == W - 1 || at(y - 1, x) != r || at(y + 1, x) != r || at(y, x - 1) != r ||
               at(y, x + 1) != r;
    };
    for (std::size_t k = 0; k < images.size(); ++k) {
        const auto& im = images[k];
        const int x0 = tile_x[k];
        c.draw_text(x0, 8, im.title, ink);
        const double span = im.hi > im.lo ? im.hi - im.lo : 1.0;
        for (std::int64_t y = 0; y < H; ++y)
            for (std::int64_t x = 0; x < W; ++x) {
                const double t = std::clamp((static_cast<double>(im.values[y * W + x]) - im.lo) / span, 0.0, 1.0);
                Rgb px = im.colour ? viridis(t) : Rgb{static_cast<std::uint8_t>(std::lround(255 * t)), static_cast<std::uint8_t>(std::lround(255 * t)),
                                                       static_cast<std::uint8_t>(std::lround(255 * t))};
                if (im.grey_invalid && invalid.defined() && invalid[y * W + x] != 0.0f) px = grey;
                if (im.outline && !regions.empty() && boundary(y, x)) px = o.outline;
                c.fill_rect(x0 + static_cast<int>(x) * s, top + static_cast<int>(y) * s, s, s, px);
            }
        // the colour bar: hi at the top, lo at the bottom, a tick label at each end
        const int bx = x0 + iw + bar_gap;
        c.frame_rect(bx - 1, top - 1, bar_w + 2, ih + 2, ink);
        for (int row = 0; row < ih; ++row) {
            const double t = ih > 1 ? 1.0 - static_cast<double>(row) / (ih - 1) : 1.0;
            const auto g = static_cast<std::uint8_t>(std::lround(255 * t));
            c.fill_rect(bx, top + row, bar_w, 1, im.colour ? viridis(t) : Rgb{g, g, g});
        }
        c.draw_text(bx + bar_w + 4, top - 2, detail::panel_number(im.hi), ink);
        c.draw_text(bx + bar_w + 4, top + ih - th + 2, detail::panel_number(im.lo), ink);
        if (!im.bar_label.empty()) {
            const std::string lab = fit_text(im.bar_label, ih);
            c.draw_text_vertical(bx + bar_w + 4 + label_w[k] + 4, top + (ih - Canvas::text_width(lab)) / 2, lab, ink);
        }
    }
    return c;
}

}  // namespace medimg::report
