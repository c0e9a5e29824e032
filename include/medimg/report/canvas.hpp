// SPDX-License-Identifier: MIT
// report/canvas.hpp: Canvas, an 8-bit RGB raster that figures are drawn on: filled rectangles,
// alpha blending, and one-line text in the built-in 8x15 bitmap font (report/font.hpp, printable
// ASCII), saved as PNG through data::write_png or handed on as a (3, H, W) float tensor.
// Coordinates are pixels, x right and y down from the top-left corner; drawing clips at the edges.
// Lines and polygons take real coordinates: pixel (x, y) is the unit square from (x, y) to
// (x + 1, y + 1), so its centre is (x + 0.5, y + 0.5). Lines are anti-aliased by the distance of
// each pixel centre to the line; polygons by 4 sub-rows per pixel row and exact span ends.
// Text is UTF-8, one cell per character: accented Latin-1 letters lose the accent ("les\xc3\xa3o",
// with a-tilde, is drawn "lesao"); any other non-printable character or invalid byte is drawn '?'.
// Deliberately not here: curves (a polyline of short segments draws them), joins other than round,
// other fonts, alpha in saved files.
#pragma once

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "medimg/core/tensor.hpp"
#include "medimg/data/image.hpp"
#include "medimg/error.hpp"
#include "medimg/io/utf8.hpp"
#include "medimg/report/colormap.hpp"
#include "medimg/report/font.hpp"

namespace medimg::report {

namespace detail {
/// The characters of UTF-8 `text` as the font draws them, one byte (32..126) per cell: ASCII
/// printables as they are, U+00A0 as a space, the letters of U+00C0..U+00FF without their accent,
/// anything else, and each byte of an invalid sequence (io::utf8_sequence_length), as '?'.
inline std::string text_cells(const std::string& text) {
    // U+00C0..U+00DF (capitals, then sharp s) and U+00E0..U+00FF (small letters); '?' where no
    // ASCII letter reads the same (AE and ae ligatures, thorn, the division sign).
    static constexpr char latin1[] = "AAAAAA?CEEEEIIIIDNOOOOOxOUUUUY?saaaaaa?ceeeeiiiidnooooo?ouuuuy?y";
    std::string cells;
    cells.reserve(text.size());
    for (std::size_t i = 0; i < text.size();) {
        const auto byte = static_cast<unsigned char>(text[i]);
        const std::size_t n = io::utf8_sequence_length(text, i);
        if (n <= 1) {  // ASCII, or a byte that starts no valid sequence
            cells += (byte >= font::first_char && byte <= font::last_char) ? static_cast<char>(byte) : '?';
            ++i;
            continue;
        }
        const unsigned code = n == 2 ? ((byte & 0x1Fu) << 6) | (static_cast<unsigned char>(text[i + 1]) & 0x3Fu) : 0u;
        cells += code == 0xA0 ? ' ' : (code >= 0xC0 && code <= 0xFF) ? latin1[code - 0xC0] : '?';
        i += n;
    }
    return cells;
}
}  // namespace detail

class Canvas {
public:
    static constexpr int max_side = 16384;  // largest width or height
    static constexpr int max_text_scale = 64;

    /// A width x height canvas filled with `fill`. Requires 1 <= width, height <= max_side.
    Canvas(int width, int height, Rgb fill = Rgb{255, 255, 255}) : width_(width), height_(height) {
        MEDIMG_CHECK(width >= 1 && width <= max_side && height >= 1 && height <= max_side, ValueError,
                     "Canvas: width and height must be in [1, ", max_side, "]; got ", width, " x ", height);
        pixels_.assign(static_cast<std::size_t>(width) * static_cast<std::size_t>(height), fill);
    }

    int width() const { return width_; }
    int height() const { return height_; }

    /// The pixel at column x, row y; throws ValueError outside the canvas.
    Rgb& at(int x, int y) {
        check_inside("Canvas::at", x, y);
        return pixel(x, y);
    }
    const Rgb& at(int x, int y) const {
        check_inside("Canvas::at", x, y);
        return pixels_[index(x, y)];
    }

    /// Paints the w x h rectangle whose top-left corner is (x, y); the part outside is dropped and
    /// w <= 0 or h <= 0 paints nothing.
    void fill_rect(int x, int y, int w, int h, Rgb colour) {
        const auto x0 = std::max<std::int64_t>(x, 0), y0 = std::max<std::int64_t>(y, 0);
        const auto x1 = std::min<std::int64_t>(std::int64_t{x} + w, width_);
        const auto y1 = std::min<std::int64_t>(std::int64_t{y} + h, height_);
        for (auto r = y0; r < y1; ++r)
            for (auto c = x0; c < x1; ++c) pixel(static_cast<int>(c), static_cast<int>(r)) = colour;
    }

    /// Mixes `colour` into the pixel at (x, y): out = (1 - alpha) * out + alpha * colour, rounded.
    /// alpha is clamped to [0, 1]; NaN is refused (ValueError); a point outside does nothing.
    void blend(int x, int y, Rgb colour, double alpha) {
        MEDIMG_CHECK(!std::isnan(alpha), ValueError, "Canvas::blend: alpha is NaN at (", x, ", ", y, ")");
        if (x < 0 || y < 0 || x >= width_ || y >= height_) return;
        blend_unchecked(pixel(x, y), colour, std::clamp(alpha, 0.0, 1.0));
    }

    /// A point in canvas coordinates (real: see the file comment).
    struct PointF {
        double x, y;
    };

    /// Strokes the polyline through `points`, `width` pixels wide with round caps and joins, in
    /// `colour` at opacity `alpha`. Each pixel is blended once with its largest coverage, so joins
    /// and overlaps do not darken a translucent line. dash > 0: dashes and gaps of dash pixels
    /// along the line. Non-finite points are refused (ValueError); fewer than 2 points draw a dot.
    void stroke(const std::vector<PointF>& points, Rgb colour, double width = 1.0, double alpha = 1.0, double dash = 0.0) {
        MEDIMG_CHECK(width > 0 && width <= 256 && !std::isnan(alpha) && dash >= 0, ValueError,
                     "Canvas::stroke: need 0 < width <= 256, alpha not NaN and dash >= 0; got width ", width, ", dash ", dash);
        check_finite("Canvas::stroke", points);
        if (points.empty()) return;
        std::vector<std::pair<PointF, PointF>> segments;
        if (points.size() == 1) segments.push_back({points[0], points[0]});
        for (std::size_t i = 0; i + 1 < points.size(); ++i) {
            if (dash <= 0) {
                segments.push_back({points[i], points[i + 1]});
                continue;
            }
            cut_dashes(points[i], points[i + 1], dash, segments);
        }
        // the coverage of each pixel of the bounding box, the largest over the segments
        const double r = width / 2;
        Box box = bounds(points, r + 1);
        if (box.empty()) return;
        std::vector<float> cover(static_cast<std::size_t>(box.w()) * static_cast<std::size_t>(box.h()), 0.0f);
        for (const auto& [a, b] : segments) {
            const Box sb = Box::around(a, b, r + 1).clipped(box);
            const double dx = b.x - a.x, dy = b.y - a.y, len2 = dx * dx + dy * dy;
            for (int py = sb.y0; py < sb.y1; ++py)
                for (int px = sb.x0; px < sb.x1; ++px) {
                    const double cx = px + 0.5 - a.x, cy = py + 0.5 - a.y;
                    const double t = len2 > 0 ? std::clamp((cx * dx + cy * dy) / len2, 0.0, 1.0) : 0.0;
                    const double d = std::hypot(cx - t * dx, cy - t * dy);
                    const auto c = static_cast<float>(std::clamp(r + 0.5 - d, 0.0, 1.0));
                    float& slot = cover[static_cast<std::size_t>(py - box.y0) * static_cast<std::size_t>(box.w()) +
                                        static_cast<std::size_t>(px - box.x0)];
                    slot = std::max(slot, c);
                }
        }
        apply_cover(box, cover, colour, std::clamp(alpha, 0.0, 1.0));
    }

    /// Fills the polygon through `points` (closed: the last point joins the first) by the even-odd
    /// rule, in `colour` at opacity `alpha`. Non-finite points are refused; fewer than 3 fill nothing.
    void fill_polygon(const std::vector<PointF>& points, Rgb colour, double alpha = 1.0) {
        MEDIMG_CHECK(!std::isnan(alpha), ValueError, "Canvas::fill_polygon: alpha is NaN");
        check_finite("Canvas::fill_polygon", points);
        if (points.size() < 3) return;
        Box box = bounds(points, 1);
        if (box.empty()) return;
        constexpr int sub = 4;  // sub-rows per pixel row
        std::vector<float> cover(static_cast<std::size_t>(box.w()) * static_cast<std::size_t>(box.h()), 0.0f);
        std::vector<double> xs;
        for (int py = box.y0; py < box.y1; ++py)
            for (int s = 0; s < sub; ++s) {
                const double y = py + (s + 0.5) / sub;
                xs.clear();
                for (std::size_t i = 0; i < points.size(); ++i) {
                    const PointF& a = points[i];
                    const PointF& b = points[(i + 1) % points.size()];
                    if ((a.y <= y) != (b.y <= y)) xs.push_back(a.x + (y - a.y) / (b.y - a.y) * (b.x - a.x));
                }
                std::sort(xs.begin(), xs.end());
                float* row = cover.data() + static_cast<std::size_t>(py - box.y0) * static_cast<std::size_t>(box.w());
                for (std::size_t k = 0; k + 1 < xs.size(); k += 2) {  // the span [xs[k], xs[k + 1]]
                    const double l = std::max(xs[k], double(box.x0)), rr = std::min(xs[k + 1], double(box.x1));
                    if (rr <= l) continue;
                    for (int px = static_cast<int>(std::floor(l)); px < box.x1 && px < rr; ++px) {
                        const double inside = std::min(rr, px + 1.0) - std::max(l, double(px));  // of this pixel's width
                        row[px - box.x0] += static_cast<float>(std::max(inside, 0.0) / sub);
                    }
                }
            }
        for (float& c : cover) c = std::min(c, 1.0f);
        apply_cover(box, cover, colour, std::clamp(alpha, 0.0, 1.0));
    }

    /// The outline of the w x h rectangle at (x, y), one pixel wide, inside the rectangle.
    void frame_rect(int x, int y, int w, int h, Rgb colour) {
        if (w <= 0 || h <= 0) return;
        fill_rect(x, y, w, 1, colour);
        fill_rect(x, y + h - 1, w, 1, colour);
        fill_rect(x, y, 1, h, colour);
        fill_rect(x + w - 1, y, 1, h, colour);
    }

    /// Writes UTF-8 `text` on one line with its top-left corner at (x, y), each glyph's coverage
    /// alpha-blended in `colour`, every font pixel enlarged to scale x scale. The box it may touch is
    /// text_width(text, scale) x text_height(scale); characters the font lacks (newlines included)
    /// are drawn as '?' (see detail::text_cells). Clipped at the edges. Requires 1 <= scale <= 64.
    void draw_text(int x, int y, const std::string& text, Rgb colour, int scale = 1) {
        check_scale("Canvas::draw_text", scale);
        draw_glyphs(text, colour, scale, [x, y](std::int64_t u, std::int64_t v) { return Point{x + u, y + v}; });
    }

    /// As draw_text, turned 90 degrees counter-clockwise (reads bottom to top, as a y-axis label):
    /// the box it may touch is text_height(scale) wide and text_width(text, scale) tall, top-left at
    /// (x, y).
    void draw_text_vertical(int x, int y, const std::string& text, Rgb colour, int scale = 1) {
        check_scale("Canvas::draw_text_vertical", scale);
        const std::int64_t length = text_width(text, scale);
        // A point u along the text, v down the glyph, goes to column v, row (length - 1 - u).
        draw_glyphs(text, colour, scale,
                    [x, y, length](std::int64_t u, std::int64_t v) { return Point{x + v, y + length - 1 - u}; });
    }

    /// Width in pixels of UTF-8 `text` drawn at `scale` (every character is one cell wide).
    static int text_width(const std::string& text, int scale = 1) {
        check_scale("Canvas::text_width", scale);
        const auto w = static_cast<std::int64_t>(detail::text_cells(text).size()) * font::cell_w * scale;
        return static_cast<int>(std::min<std::int64_t>(w, INT_MAX));
    }
    /// Height in pixels of one line at `scale` (the gap between lines included).
    static int text_height(int scale = 1) {
        check_scale("Canvas::text_height", scale);
        return font::cell_h * scale;
    }

    /// The pixels as (3, H, W) float RGB with values code / 255 in [0, 1].
    Tensor<float, Cpu> to_tensor() const {
        const std::int64_t hw = std::int64_t{width_} * height_;
        auto t = Tensor<float, Cpu>::empty(Shape{3, height_, width_});
        float* out = t.data();
        for (std::int64_t i = 0; i < hw; ++i) {
            const Rgb& p = pixels_[static_cast<std::size_t>(i)];
            out[i] = static_cast<float>(p.r) / 255.0f;
            out[hw + i] = static_cast<float>(p.g) / 255.0f;
            out[2 * hw + i] = static_cast<float>(p.b) / 255.0f;
        }
        return t;
    }

    /// Writes the canvas as an 8-bit RGB PNG, atomically (data::write_png; IoError
    /// "write_png: cannot write <path>: ..." when it cannot). Reading it back gives the codes exactly.
    void save_png(const std::string& path) const { data::write_png(path, to_tensor(), 8); }

private:
    struct Point {
        std::int64_t x, y;
    };
    /// Pixels [x0, x1) x [y0, y1), clipped to the canvas.
    struct Box {
        int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
        int w() const { return x1 - x0; }
        int h() const { return y1 - y0; }
        bool empty() const { return x1 <= x0 || y1 <= y0; }
        static Box around(PointF a, PointF b, double pad) {
            const auto lo = [](double v) { return static_cast<int>(std::clamp(std::floor(v), -1.0, double(max_side + 1))); };
            const auto hi = [](double v) { return static_cast<int>(std::clamp(std::ceil(v), -1.0, double(max_side + 1))); };
            return Box{lo(std::min(a.x, b.x) - pad), lo(std::min(a.y, b.y) - pad), hi(std::max(a.x, b.x) + pad),
                       hi(std::max(a.y, b.y) + pad)};
        }
        Box clipped(const Box& o) const {
            return Box{std::max(x0, o.x0), std::max(y0, o.y0), std::min(x1, o.x1), std::min(y1, o.y1)};
        }
    };
    Box bounds(const std::vector<PointF>& points, double pad) const {
        Box b = Box::around(points[0], points[0], pad);
        for (const auto& p : points) {
            const Box q = Box::around(p, p, pad);
            b = Box{std::min(b.x0, q.x0), std::min(b.y0, q.y0), std::max(b.x1, q.x1), std::max(b.y1, q.y1)};
        }
        return b.clipped(Box{0, 0, width_, height_});
    }
    static void check_finite(const char* fn, const std::vector<PointF>& points) {
        for (std::size_t i = 0; i < points.size(); ++i)
            MEDIMG_CHECK(std::isfinite(points[i].x) && std::isfinite(points[i].y), ValueError, fn, ": point ", i, " is (",
                         points[i].x, ", ", points[i].y, "); points must be finite");
    }
    /// Splits the segment a-b into dashes of length `dash` separated by gaps of the same length.
    static void cut_dashes(PointF a, PointF b, double dash, std::vector<std::pair<PointF, PointF>>& out) {
        const double len = std::hypot(b.x - a.x, b.y - a.y);
        for (double t = 0; t < len; t += 2 * dash) {
            const double e = std::min(t + dash, len);
            out.push_back({PointF{a.x + (b.x - a.x) * t / len, a.y + (b.y - a.y) * t / len},
                           PointF{a.x + (b.x - a.x) * e / len, a.y + (b.y - a.y) * e / len}});
        }
    }
    void apply_cover(const Box& box, const std::vector<float>& cover, Rgb colour, double alpha) {
        for (int py = box.y0; py < box.y1; ++py)
            for (int px = box.x0; px < box.x1; ++px) {
                const float c = cover[static_cast<std::size_t>(py - box.y0) * static_cast<std::size_t>(box.w()) +
                                      static_cast<std::size_t>(px - box.x0)];
                if (c > 0) blend_unchecked(pixel(px, py), colour, alpha * c);
            }
    }

    static void check_scale(const char* fn, int scale) {
        MEDIMG_CHECK(scale >= 1 && scale <= max_text_scale, ValueError, fn, ": scale must be in [1, ", max_text_scale,
                     "]; got ", scale);
    }
    void check_inside(const char* fn, int x, int y) const {
        MEDIMG_CHECK(x >= 0 && y >= 0 && x < width_ && y < height_, ValueError, fn, ": (", x, ", ", y,
                     ") is outside the ", width_, " x ", height_, " canvas");
    }
    std::size_t index(int x, int y) const {
        return static_cast<std::size_t>(y) * static_cast<std::size_t>(width_) + static_cast<std::size_t>(x);
    }
    Rgb& pixel(int x, int y) { return pixels_[index(x, y)]; }

    static void blend_unchecked(Rgb& dst, Rgb src, double a) {
        auto mix = [a](std::uint8_t d, std::uint8_t s) {
            return static_cast<std::uint8_t>(std::lround((1.0 - a) * d + a * s));
        };
        dst = Rgb{mix(dst.r, src.r), mix(dst.g, src.g), mix(dst.b, src.b)};
    }

    /// Blends every glyph pixel of `text` at `scale`; place(u, v) maps a point of the upright text
    /// box (u along the line, v down from its top) to the canvas.
    template <class Place>
    void draw_glyphs(const std::string& text, Rgb colour, int scale, Place place) {
        const int cw = font::cell_w * scale;
        const std::string cells = detail::text_cells(text);
        for (std::size_t i = 0; i < cells.size(); ++i) {
            const unsigned char* glyph = font::glyphs[static_cast<unsigned char>(cells[i]) - font::first_char];
            const std::int64_t u0 = static_cast<std::int64_t>(i) * cw;
            for (int row = 0; row < font::cell_h; ++row)
                for (int col = 0; col < font::cell_w; ++col) {
                    const unsigned char coverage = glyph[row * font::cell_w + col];
                    if (coverage == 0) continue;
                    const double a = coverage / 255.0;
                    for (int dv = 0; dv < scale; ++dv)
                        for (int du = 0; du < scale; ++du) {
                            const Point p = place(u0 + std::int64_t{col} * scale + du, std::int64_t{row} * scale + dv);
                            if (p.x < 0 || p.y < 0 || p.x >= width_ || p.y >= height_) continue;
                            blend_unchecked(pixel(static_cast<int>(p.x), static_cast<int>(p.y)), colour, a);
                        }
                }
        }
    }

    int width_ = 0;
    int height_ = 0;
    std::vector<Rgb> pixels_;  // row-major, (H, W)
};

/// `text` as drawn (detail::text_cells), shortened so that Canvas::text_width(result, scale) <=
/// max_width: whole when it fits, otherwise cut and ended with "..." (just dots when only <= 3 fit).
inline std::string fit_text(const std::string& text, int max_width, int scale = 1) {
    const int cell = Canvas::text_width("x", scale);  // checks scale
    const auto fits = static_cast<std::size_t>(std::max(max_width, 0) / cell);  // characters that fit
    const std::string cells = detail::text_cells(text);
    if (cells.size() <= fits) return cells;
    if (fits <= 3) return std::string(fits, '.');
    return cells.substr(0, fits - 3) + "...";
}

}  // namespace medimg::report
