// SPDX-License-Identifier: MIT
// report/canvas.hpp: Canvas, an 8-bit RGB raster that figures are drawn on: filled rectangles,
// alpha blending, and one-line text in the built-in 8x15 bitmap font (report/font.hpp, printable
// ASCII), saved as PNG through data::write_png or handed on as a (3, H, W) float tensor.
// Coordinates are pixels, x right and y down from the top-left corner; drawing clips at the edges.
// Text is UTF-8, one cell per character: accented Latin-1 letters lose the accent ("les\xc3\xa3o",
// with a-tilde, is drawn "lesao"); any other non-printable character or invalid byte is drawn '?'.
// Deliberately not here: lines, curves, anti-aliased shapes, other fonts, alpha in saved files.
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
