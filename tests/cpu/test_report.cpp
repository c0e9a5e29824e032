// SPDX-License-Identifier: MIT
// test_report.cpp: the drawing layer under include/medimg/report/: viridis against matplotlib's
// colours, Canvas (rectangles, blending, text boxes, UTF-8 text, anti-aliased lines and polygons,
// PNG round trip), heatmap_overlay (layout, the blend formula, tiny exams, long titles, refused
// inputs), charts (ticks, layout, refused ranges), and the HTML report (base64, escaping, tables,
// self-contained pages, the gallery's choice of errors).
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <string>

#include <unistd.h>

#include "helpers.hpp"
#include "medimg/data/image.hpp"
#include "medimg/report/canvas.hpp"
#include "medimg/report/colormap.hpp"
#include "medimg/report/evaluation.hpp"
#include "medimg/report/figures.hpp"
#include "medimg/report/html.hpp"
#include "medimg/report/overlay.hpp"
#include "medimg/report/plot.hpp"

using namespace medimg;
using namespace medimg::report;
using medimg::test::message_contains;
namespace tt = boost::test_tools;

namespace {

/// A temporary directory removed at scope exit.
struct TempDir {
    std::filesystem::path path;
    TempDir() {
        path = std::filesystem::temp_directory_path() /
               ("medimg_test_report_" + std::to_string(::getpid()) + "_" +
                std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
        std::filesystem::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string file(const std::string& name) const { return (path / name).string(); }
};

/// Relative luminance weights (ITU-R BT.709) on 8-bit codes: enough to see lightness rise.
double luma(Rgb c) { return 0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b; }

bool near(Rgb a, Rgb b, int tol) {
    return std::abs(a.r - b.r) <= tol && std::abs(a.g - b.g) <= tol && std::abs(a.b - b.b) <= tol;
}

std::string str(Rgb c) {
    return "(" + std::to_string(c.r) + "," + std::to_string(c.g) + "," + std::to_string(c.b) + ")";
}

/// The smallest box holding every pixel of `c` that differs from `bg`; empty (x1 < x0) if none.
struct Box {
    int x0 = std::numeric_limits<int>::max(), y0 = std::numeric_limits<int>::max(), x1 = -1, y1 = -1;
};
Box ink_box(const Canvas& c, Rgb bg) {
    Box b;
    for (int y = 0; y < c.height(); ++y)
        for (int x = 0; x < c.width(); ++x)
            if (c.at(x, y) != bg) {
                b.x0 = std::min(b.x0, x), b.y0 = std::min(b.y0, y);
                b.x1 = std::max(b.x1, x), b.y1 = std::max(b.y1, y);
            }
    return b;
}

bool is_gray(Rgb c) { return c.r == c.g && c.g == c.b; }

}  // namespace

BOOST_AUTO_TEST_SUITE(report)

// ---- colormap ----------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(viridis_matches_matplotlib_at_the_ends_and_the_middle) {
    // matplotlib 3.6: np.round(255 * np.array(cm.viridis(t)[:3])) gives (68, 1, 84) at t = 0,
    // (253, 231, 37) at t = 1 and (33, 145, 140) at t = 0.5. metrics::viridis is a polynomial fit
    // within 2.8 codes of that table (tests/data/make_compare_fixtures.py measures it): 3 codes.
    BOOST_TEST(near(viridis(0.0), Rgb{68, 1, 84}, 3), "viridis(0) = " << str(viridis(0.0)));
    BOOST_TEST(near(viridis(1.0), Rgb{253, 231, 37}, 3), "viridis(1) = " << str(viridis(1.0)));
    BOOST_TEST(near(viridis(0.5), Rgb{33, 145, 140}, 3), "viridis(0.5) = " << str(viridis(0.5)));
    // The published tenths (#440154 #482475 #414487 #355f8d #2a788e #21918c #22a884 #44bf70 #7ad151
    // #bddf26 #fde725), the fit's anchors: within 2.2 codes.
    const Rgb tenths[11] = {{0x44, 0x01, 0x54}, {0x48, 0x24, 0x75}, {0x41, 0x44, 0x87}, {0x35, 0x5f, 0x8d},
                            {0x2a, 0x78, 0x8e}, {0x21, 0x91, 0x8c}, {0x22, 0xa8, 0x84}, {0x44, 0xbf, 0x70},
                            {0x7a, 0xd1, 0x51}, {0xbd, 0xdf, 0x26}, {0xfd, 0xe7, 0x25}};
    for (int k = 0; k <= 10; ++k)
        BOOST_TEST(near(viridis(k / 10.0), tenths[k], 3), "viridis(" << k / 10.0 << ") = " << str(viridis(k / 10.0))
                                                                     << ", published " << str(tenths[k]));
}

BOOST_AUTO_TEST_CASE(viridis_lightness_rises_and_inputs_are_clamped) {
    // In steps of 0.01 the luma rises strictly (by at least one code's worth); in steps of 0.001 it
    // may dip only by 8-bit rounding (at most one code of green, 0.7152).
    for (int i = 1; i <= 100; ++i) BOOST_TEST(luma(viridis(i / 100.0)) > luma(viridis((i - 1) / 100.0)), "at t = " << i / 100.0);
    for (int i = 1; i <= 1000; ++i)
        BOOST_TEST(luma(viridis(i / 1000.0)) >= luma(viridis((i - 1) / 1000.0)) - 0.72, "at t = " << i / 1000.0);
    BOOST_TEST((viridis(-2.0) == viridis(0.0)));
    BOOST_TEST((viridis(5.0) == viridis(1.0)));
    BOOST_TEST((viridis(std::nan("")) == viridis(0.0)));
    BOOST_TEST((viridis(std::numeric_limits<double>::infinity()) == viridis(1.0)));
}

// ---- canvas -------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(canvas_fills_clips_and_blends) {
    Canvas c(10, 6, Rgb{10, 20, 30});
    BOOST_TEST(c.width() == 10);
    BOOST_TEST(c.height() == 6);
    BOOST_TEST(str(c.at(9, 5)) == str(Rgb{10, 20, 30}));
    c.fill_rect(-3, -3, 5, 4, Rgb{255, 0, 0});  // clipped to x 0..1, y 0
    BOOST_TEST(str(c.at(1, 0)) == str(Rgb{255, 0, 0}));
    BOOST_TEST(str(c.at(2, 0)) == str(Rgb{10, 20, 30}));
    BOOST_TEST(str(c.at(0, 1)) == str(Rgb{10, 20, 30}));
    c.fill_rect(8, 4, 100000, 100000, Rgb{0, 255, 0});  // clipped to the corner
    BOOST_TEST(str(c.at(9, 5)) == str(Rgb{0, 255, 0}));
    c.fill_rect(0, 0, 0, 5, Rgb{1, 1, 1});  // empty
    BOOST_TEST(str(c.at(0, 2)) == str(Rgb{10, 20, 30}));
    // (1 - 0.25) * (10, 20, 30) + 0.25 * (210, 220, 230) = (60, 70, 80)
    c.blend(5, 2, Rgb{210, 220, 230}, 0.25);
    BOOST_TEST(str(c.at(5, 2)) == str(Rgb{60, 70, 80}));
    c.blend(5, 3, Rgb{210, 220, 230}, 7.0);  // clamped to 1
    BOOST_TEST(str(c.at(5, 3)) == str(Rgb{210, 220, 230}));
    c.blend(-1, 99, Rgb{0, 0, 0}, 1.0);  // outside: nothing
    BOOST_CHECK_EXCEPTION(c.blend(1, 1, Rgb{}, std::nan("")), ValueError, message_contains("Canvas::blend: alpha is NaN"));
    BOOST_CHECK_EXCEPTION(c.at(10, 0), ValueError, message_contains("Canvas::at: (10, 0) is outside the 10 x 6 canvas"));
}

BOOST_AUTO_TEST_CASE(canvas_refuses_sizes_outside_one_to_16384) {
    BOOST_CHECK_EXCEPTION(Canvas(0, 5), ValueError, message_contains("Canvas: width and height must be in [1, 16384]; got 0 x 5"));
    BOOST_CHECK_EXCEPTION(Canvas(5, 16385), ValueError, message_contains("got 5 x 16385"));
    BOOST_CHECK_EXCEPTION(Canvas(-1, -1), ValueError, message_contains("Canvas: "));
    BOOST_CHECK_NO_THROW(Canvas(1, 1));
}

BOOST_AUTO_TEST_CASE(text_draws_only_inside_its_box_and_text_width_matches) {
    const Rgb bg{255, 255, 255};
    for (int scale : {1, 2, 3}) {
        Canvas c(200, 80, bg);
        const std::string s = "Hg|0.5 _W";
        const int w = Canvas::text_width(s, scale), h = Canvas::text_height(scale);
        BOOST_TEST(w == static_cast<int>(s.size()) * font::cell_w * scale);
        BOOST_TEST(h == font::cell_h * scale);
        c.draw_text(7, 5, s, Rgb{0, 0, 0}, scale);
        const Box b = ink_box(c, bg);
        BOOST_TEST_REQUIRE(b.x1 >= b.x0, "nothing drawn at scale " << scale);
        BOOST_TEST(b.x0 >= 7);
        BOOST_TEST(b.y0 >= 5);
        BOOST_TEST(b.x1 < 7 + w);
        BOOST_TEST(b.y1 < 5 + h);
        // The ink fills most of the box: 'H' starts in the first column of glyphs, '_' and 'g'
        // reach the bottom rows, '|' the top rows.
        BOOST_TEST(b.x0 - 7 <= 2 * scale);
        BOOST_TEST(b.x1 >= 7 + w - 2 * font::cell_w * scale);
        BOOST_TEST(b.y0 - 5 <= 2 * scale);
        BOOST_TEST(b.y1 >= 5 + h - 2 * scale);
    }
    BOOST_TEST(Canvas::text_width("") == 0);
    BOOST_CHECK_EXCEPTION(Canvas::text_width("x", 0), ValueError, message_contains("Canvas::text_width: scale must be in [1, 64]; got 0"));
}

BOOST_AUTO_TEST_CASE(vertical_text_draws_inside_its_turned_box) {
    const Rgb bg{255, 255, 255};
    Canvas c(60, 120, bg);
    const std::string s = "relevance";
    c.draw_text_vertical(10, 20, s, Rgb{0, 0, 0});
    const Box b = ink_box(c, bg);
    BOOST_TEST_REQUIRE(b.x1 >= b.x0);
    BOOST_TEST(b.x0 >= 10);
    BOOST_TEST(b.x1 < 10 + Canvas::text_height());
    BOOST_TEST(b.y0 >= 20);
    BOOST_TEST(b.y1 < 20 + Canvas::text_width(s));
    BOOST_TEST(b.y1 - b.y0 > Canvas::text_width(s) - 2 * font::cell_w);  // it runs the full length
}

BOOST_AUTO_TEST_CASE(text_is_clipped_at_the_edges_and_unknown_characters_are_question_marks) {
    Canvas c(20, 10, Rgb{0, 0, 0});
    BOOST_CHECK_NO_THROW(c.draw_text(-13, -7, "clipped on every side", Rgb{255, 255, 255}, 2));
    BOOST_CHECK_NO_THROW(c.draw_text(1 << 30, 1 << 30, "far away", Rgb{255, 255, 255}));
    // A control byte and a character outside Latin-1 both draw the glyph of '?'; an accented
    // Latin-1 letter draws its base letter and is one cell wide.
    auto drawn = [](const std::string& s) {
        Canvas k(Canvas::text_width(s), Canvas::text_height(), Rgb{0, 0, 0});
        k.draw_text(0, 0, s, Rgb{255, 255, 255});
        return k.to_tensor().to_vector();
    };
    BOOST_TEST(drawn("a\nb") == drawn("a?b"));
    BOOST_TEST(drawn("\xe2\x86\x92") == drawn("?"));  // U+2192, a right arrow
    BOOST_TEST(drawn("\xff") == drawn("?"));          // not UTF-8
    BOOST_TEST(drawn("les\xc3\xa3o") == drawn("lesao"));  // "lesao" with a-tilde
    BOOST_TEST(Canvas::text_width("les\xc3\xa3o") == 5 * font::cell_w);
}

BOOST_AUTO_TEST_CASE(fit_text_cuts_long_text_with_dots) {
    BOOST_TEST(fit_text("short", 100) == "short");
    BOOST_TEST(fit_text("abcdefghij", 8 * font::cell_w) == "abcde...");
    BOOST_TEST(Canvas::text_width(fit_text(std::string(500, 'x'), 333)) <= 333);
    BOOST_TEST(fit_text("abcdefghij", 2 * font::cell_w) == "..");
    BOOST_TEST(fit_text("abc", 0) == "");
}

BOOST_AUTO_TEST_CASE(to_tensor_and_save_png_round_trip_through_read_image) {
    Canvas c(7, 5, Rgb{0, 128, 255});
    c.at(3, 2) = Rgb{1, 2, 3};
    c.draw_text(0, 0, "A", Rgb{200, 10, 90});
    const auto t = c.to_tensor();
    BOOST_TEST((t.shape() == Shape{3, 5, 7}));
    BOOST_TEST(t[(0 * 5 + 2) * 7 + 3] == 1.0f / 255.0f);
    BOOST_TEST(t[(2 * 5 + 4) * 7 + 6] == 1.0f);

    TempDir dir;
    const std::string path = dir.file("canvas.png");
    c.save_png(path);
    const data::Image back = data::read_image(path);
    BOOST_TEST(back.channels() == 3);
    BOOST_TEST(back.height() == 5);
    BOOST_TEST(back.width() == 7);
    MEDIMG_CHECK_CLOSE_TENSORS(back.pixels, t, 0.0, 0.0);  // 8-bit codes survive exactly
}

// ---- overlay ------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(overlay_enlarges_a_64x64_exam_to_256_and_adds_the_bands) {
    OverlayOptions o;
    o.title = "lesao 0.943 | Grad-CAM layer4";
    o.subtitle = "case_0017.png";
    const OverlayLayout l = overlay_layout(64, 64, o);
    BOOST_TEST(l.scale == 4);
    BOOST_TEST(l.image_w == 256);
    BOOST_TEST(l.image_h == 256);
    BOOST_TEST(l.band_height > 2 * Canvas::text_height());  // two lines of text
    BOOST_TEST(l.image_y > l.band_height);
    BOOST_TEST(l.height > l.image_y + 256);
    BOOST_TEST(l.bar_x > l.image_x + 256);
    BOOST_TEST(l.width > l.bar_x + l.bar_w);
    BOOST_TEST(l.bar_h + 2 == 256);  // the framed bar is as tall as the exam

    const auto gray = Tensor<float, Cpu>::full(Shape{64, 64}, 0.5f);
    const auto heat = Tensor<float, Cpu>::zeros(Shape{1, 64, 64});
    const Canvas c = heatmap_overlay(gray, heat, o);
    BOOST_TEST(c.width() == l.width);
    BOOST_TEST(c.height() == l.height);
    // Without a title or subtitle the band goes and the figure is shorter by its height.
    const OverlayLayout bare = overlay_layout(64, 64);
    BOOST_TEST(bare.band_height == 0);
    BOOST_TEST(bare.height == l.height - l.band_height);
    // A 300 x 500 exam is already big enough: not enlarged.
    BOOST_TEST(overlay_layout(300, 500).scale == 1);
    // A 3 x 1000 strip is enlarged only up to the 4096-pixel limit on its longer side.
    BOOST_TEST(overlay_layout(3, 1000).scale == 4);
}

BOOST_AUTO_TEST_CASE(overlay_heat_zero_leaves_the_exam_gray_and_heat_one_colours_it) {
    // A horizontal gradient exam; heat 1 at source pixel (row 5, col 9), 0 elsewhere.
    auto gray = Tensor<float, Cpu>::empty(Shape{1, 16, 16});
    for (int r = 0; r < 16; ++r)
        for (int q = 0; q < 16; ++q) gray[r * 16 + q] = static_cast<float>(q) / 15.0f;
    auto heat = Tensor<float, Cpu>::zeros(Shape{16, 16});
    heat[5 * 16 + 9] = 1.0f;
    OverlayOptions o;
    o.title = "t";
    const OverlayLayout l = overlay_layout(16, 16, o);
    BOOST_TEST_REQUIRE(l.scale == 16);
    const Canvas c = heatmap_overlay(gray, heat, o);
    for (int r = 0; r < 16; ++r)
        for (int q = 0; q < 16; ++q) {
            const Rgb p = c.at(l.image_x + q * l.scale + 7, l.image_y + r * l.scale + 3);
            if (r == 5 && q == 9) {
                // out = 0.4 * gray + 0.6 * viridis(1), gray = 255 * 9/15 = 153
                const Rgb y = viridis(1.0);
                const Rgb want{static_cast<std::uint8_t>(std::lround(0.4 * 153 + 0.6 * y.r)),
                               static_cast<std::uint8_t>(std::lround(0.4 * 153 + 0.6 * y.g)),
                               static_cast<std::uint8_t>(std::lround(0.4 * 153 + 0.6 * y.b))};
                BOOST_TEST(str(p) == str(want));
                BOOST_TEST(!is_gray(p));
            } else {
                const auto code = static_cast<std::uint8_t>(std::lround(255.0 * q / 15.0));
                BOOST_TEST(str(p) == str(Rgb{code, code, code}), "at (row " << r << ", col " << q << ")");
            }
        }
    // Every pixel of the enlarged block is the same colour; its neighbours outside are gray.
    const int bx = l.image_x + 9 * l.scale, by = l.image_y + 5 * l.scale;
    BOOST_TEST((c.at(bx, by) == c.at(bx + l.scale - 1, by + l.scale - 1)));
    BOOST_TEST(is_gray(c.at(bx - 1, by)));
    BOOST_TEST(is_gray(c.at(bx + l.scale, by + l.scale)));
    // The colour bar: viridis(1) in its top row, viridis(0) in its bottom row.
    BOOST_TEST(str(c.at(l.bar_x + 3, l.bar_y)) == str(viridis(1.0)));
    BOOST_TEST(str(c.at(l.bar_x + 3, l.bar_y + l.bar_h - 1)) == str(viridis(0.0)));
    // max_alpha 0: the heat is invisible.
    o.max_alpha = 0.0;
    BOOST_TEST(is_gray(heatmap_overlay(gray, heat, o).at(bx + 2, by + 2)));
}

BOOST_AUTO_TEST_CASE(overlay_of_a_1x1_exam_is_enlarged_to_min_side) {
    const auto gray = Tensor<float, Cpu>::full(Shape{1, 1}, 1.0f);
    const auto heat = Tensor<float, Cpu>::full(Shape{1, 1}, 0.5f);
    OverlayOptions o;
    o.title = "a title much longer than the figure is wide, which must be cut with dots at the end of it";
    const Canvas c = heatmap_overlay(gray, heat, o);
    const OverlayLayout l = overlay_layout(1, 1, o);
    BOOST_TEST(l.scale == 256);
    BOOST_TEST(c.width() == l.width);
    BOOST_TEST(c.height() == l.height);
    BOOST_TEST(!is_gray(c.at(l.image_x + 128, l.image_y + 128)));
    // The title stays inside the band and the canvas: nothing but the band colour in the right margin.
    for (int y = 0; y < l.band_height; ++y)
        for (int x = c.width() - 8; x < c.width(); ++x) BOOST_TEST(str(c.at(x, y)) == str(Rgb{24, 24, 24}));
    // min_side 1 keeps a 1 x 1 exam at one pixel; the bar keeps a readable height.
    o.min_side = 1;
    const OverlayLayout small = overlay_layout(1, 1, o);
    BOOST_TEST(small.scale == 1);
    BOOST_TEST(small.bar_h >= 90);
    BOOST_CHECK_NO_THROW(heatmap_overlay(gray, heat, o));
}

BOOST_AUTO_TEST_CASE(overlay_refuses_mismatched_empty_and_non_finite_input) {
    const auto gray = Tensor<float, Cpu>::zeros(Shape{1, 64, 64});
    BOOST_CHECK_EXCEPTION(heatmap_overlay(gray, Tensor<float, Cpu>::zeros(Shape{32, 64})), ShapeError,
                          message_contains("heatmap_overlay: heat [32,64] and gray [1,64,64] differ in height or width"));
    BOOST_CHECK_EXCEPTION(heatmap_overlay(Tensor<float, Cpu>::zeros(Shape{3, 64, 64}), gray), ShapeError,
                          message_contains("heatmap_overlay: gray must be (H, W) or (1, H, W); got [3,64,64]"));
    BOOST_CHECK_EXCEPTION(heatmap_overlay(gray, Tensor<float, Cpu>::zeros(Shape{1, 1, 64, 64})), ShapeError,
                          message_contains("heatmap_overlay: heat must be (H, W) or (1, H, W); got [1,1,64,64]"));
    BOOST_CHECK_EXCEPTION(heatmap_overlay(Tensor<float, Cpu>::zeros(Shape{0, 64}), Tensor<float, Cpu>::zeros(Shape{0, 64})),
                          ShapeError, message_contains("heatmap_overlay: gray is empty ([0,64])"));
    BOOST_CHECK_EXCEPTION(heatmap_overlay(Tensor<float, Cpu>(), gray), ShapeError,
                          message_contains("heatmap_overlay: gray is an undefined tensor"));
    auto bad = Tensor<float, Cpu>::zeros(Shape{64, 64});
    bad[2 * 64 + 7] = std::nanf("");
    BOOST_CHECK_EXCEPTION(heatmap_overlay(gray, bad), ValueError,
                          message_contains("heatmap_overlay: heat [64,64] holds nan at (row 2, col 7)"));
    bad[2 * 64 + 7] = 3.5f;
    BOOST_CHECK_EXCEPTION(heatmap_overlay(gray, bad), ValueError,
                          message_contains("heatmap_overlay: heat [64,64] must lie in [0, 1]; got 3.5 at (row 2, col 7)"));
    OverlayOptions o;
    o.max_alpha = 1.5;
    BOOST_CHECK_EXCEPTION(heatmap_overlay(gray, gray, o), ValueError,
                          message_contains("heatmap_overlay: max_alpha must be in [0, 1]; got 1.5"));
    o = {};
    o.min_side = 0;
    BOOST_CHECK_EXCEPTION(heatmap_overlay(gray, gray, o), ValueError, message_contains("heatmap_overlay: min_side must be in [1, 4096]; got 0"));
    BOOST_CHECK_EXCEPTION(overlay_layout(1, 20000), ShapeError, message_contains("overlay_layout: a 1 x 20000 exam gives a"));
}

BOOST_AUTO_TEST_CASE(overlay_saves_as_a_png_of_the_canvas_size) {
    auto gray = Tensor<float, Cpu>::empty(Shape{40, 30});
    auto heat = Tensor<float, Cpu>::empty(Shape{1, 40, 30});
    for (int i = 0; i < 1200; ++i) {
        gray[i] = static_cast<float>(i % 30) / 29.0f;
        heat[i] = static_cast<float>(i / 30) / 39.0f;
    }
    OverlayOptions o;
    o.title = "normal 0.612 | Grad-CAM layer4";
    o.subtitle = "exam.png";
    const Canvas c = heatmap_overlay(gray, heat, o);
    TempDir dir;
    const std::string path = dir.file("overlay.png");
    c.save_png(path);
    const data::Image back = data::read_image(path);
    BOOST_TEST(back.channels() == 3);
    BOOST_TEST(back.width() == c.width());
    BOOST_TEST(back.height() == c.height());
    MEDIMG_CHECK_CLOSE_TENSORS(back.pixels, c.to_tensor(), 0.0, 0.0);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(report_drawing)

BOOST_AUTO_TEST_CASE(a_horizontal_line_covers_its_width_and_blends_each_pixel_once) {
    Canvas c(40, 20);
    // centre line y = 10, width 2: rows 9 and 10 (centres 9.5 and 10.5) fully inside
    c.stroke({{5, 10}, {35, 10}}, Rgb{0, 0, 0}, 2.0);
    for (int x = 6; x < 34; ++x) {
        BOOST_TEST(str(c.at(x, 9)) == str(Rgb{0, 0, 0}));
        BOOST_TEST(str(c.at(x, 10)) == str(Rgb{0, 0, 0}));
        BOOST_TEST((c.at(x, 7) == Rgb{255, 255, 255}));   // 2.5 from the line: untouched
        BOOST_TEST((c.at(x, 12) == Rgb{255, 255, 255}));
    }
    // a translucent polyline doubling back over itself is blended once: the same as one pass
    Canvas a(40, 20), b(40, 20);
    a.stroke({{5, 10}, {35, 10}, {5, 10}}, Rgb{0, 0, 0}, 3.0, 0.5);
    b.stroke({{5, 10}, {35, 10}}, Rgb{0, 0, 0}, 3.0, 0.5);
    for (int y = 0; y < 20; ++y)
        for (int x = 0; x < 40; ++x) BOOST_TEST_REQUIRE((a.at(x, y) == b.at(x, y)));
    BOOST_TEST(str(a.at(20, 10)) == str(Rgb{128, 128, 128}));  // round(0.5 * 255)
}

BOOST_AUTO_TEST_CASE(dashes_leave_gaps_and_a_single_point_draws_a_dot) {
    Canvas c(100, 10);
    c.stroke({{0, 5}, {100, 5}}, Rgb{0, 0, 0}, 2.0, 1.0, 10.0);  // dashes [0,10] [20,30] ...
    BOOST_TEST((c.at(5, 4) == Rgb{0, 0, 0}));
    BOOST_TEST((c.at(15, 4) == Rgb{255, 255, 255}));
    BOOST_TEST((c.at(25, 4) == Rgb{0, 0, 0}));
    Canvas d(10, 10);
    d.stroke({{5, 5}}, Rgb{0, 0, 0}, 4.0);
    BOOST_TEST((d.at(4, 4) == Rgb{0, 0, 0}));
    BOOST_TEST((d.at(0, 0) == Rgb{255, 255, 255}));
    BOOST_CHECK_EXCEPTION(d.stroke({{0, 0}, {NAN, 1}}, Rgb{}, 1.0), ValueError, message_contains("Canvas::stroke: point 1 is (nan, 1); points must be finite"));
    BOOST_CHECK_EXCEPTION(d.stroke({{0, 0}, {1, 1}}, Rgb{}, 0.0), ValueError, message_contains("0 < width <= 256"));
}

BOOST_AUTO_TEST_CASE(a_polygon_covers_its_area_with_partial_edges) {
    // a 10.5 x 6 rectangle from (2, 3): the column x = 12 is half covered
    Canvas c(20, 12);
    c.fill_polygon({{2, 3}, {12.5, 3}, {12.5, 9}, {2, 9}}, Rgb{0, 0, 0});
    double ink = 0;
    for (int y = 0; y < 12; ++y)
        for (int x = 0; x < 20; ++x) ink += (255 - c.at(x, y).r) / 255.0;
    BOOST_TEST(ink == 63.0, tt::tolerance(0.01));
    BOOST_TEST((c.at(5, 5) == Rgb{0, 0, 0}));
    BOOST_TEST(str(c.at(12, 5)) == str(Rgb{128, 128, 128}));
    BOOST_TEST((c.at(1, 5) == Rgb{255, 255, 255}));
    // a triangle: half of its bounding box, to within the sampling
    Canvas t(40, 40);
    t.fill_polygon({{0, 0}, {40, 0}, {0, 40}}, Rgb{0, 0, 0});
    double tri = 0;
    for (int y = 0; y < 40; ++y)
        for (int x = 0; x < 40; ++x) tri += (255 - t.at(x, y).r) / 255.0;
    BOOST_TEST(tri == 800.0, tt::tolerance(0.01));
    t.fill_polygon({{0, 0}, {1, 1}}, Rgb{255, 0, 0});  // fewer than 3 points: nothing
    BOOST_TEST((t.at(0, 0) == Rgb{0, 0, 0}));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(report_plots)

BOOST_AUTO_TEST_CASE(nice_ticks_are_one_two_or_five_times_a_power_of_ten) {
    double step = 0;
    auto t = medimg::report::detail::nice_ticks(0, 1, 6, step);
    BOOST_TEST(step == 0.2, tt::tolerance(1e-12));
    BOOST_TEST(t.size() == 6u);
    BOOST_TEST(t.front() == 0.0);
    BOOST_TEST(t.back() == 1.0, tt::tolerance(1e-12));
    t = medimg::report::detail::nice_ticks(0.83, 1.0, 6, step);
    BOOST_TEST(step == 0.05, tt::tolerance(1e-12));
    BOOST_TEST(t.front() == 0.85, tt::tolerance(1e-12));
    BOOST_TEST(medimg::report::detail::tick_label(0.85, 0.05) == "0.85");
    t = medimg::report::detail::nice_ticks(1, 37, 6, step);  // Heckbert: range 50, step 10
    BOOST_TEST(step == 10.0);
    BOOST_TEST(t == (std::vector<double>{10, 20, 30}), tt::per_element());
    BOOST_TEST(medimg::report::detail::tick_label(30, 10) == "30");
}

BOOST_AUTO_TEST_CASE(render_draws_the_data_inside_the_frame_and_the_legend_below_grows_the_figure) {
    Chart c;
    c.title = "diagonal";
    c.lines.push_back({{0, 1}, {0, 1}, palette::vermillion, 3.0, false, "y = x"});
    const Canvas a = render(c);
    BOOST_TEST(a.width() == 480);
    BOOST_TEST(a.height() == 400);
    // the line's colour appears, and only between the frame's corners
    int red = 0;
    for (int y = 0; y < a.height(); ++y)
        for (int x = 0; x < a.width(); ++x) red += a.at(x, y) == palette::vermillion ? 1 : 0;
    BOOST_TEST(red > 300);
    c.legend = LegendAt::below;
    const Canvas b = render(c);
    BOOST_TEST(b.height() > 400);
    BOOST_TEST(b.width() == 480);
}

BOOST_AUTO_TEST_CASE(render_refuses_empty_ranges_tiny_figures_and_ragged_series) {
    Chart c;
    c.title = "bad";
    c.x_max = 0;
    BOOST_CHECK_EXCEPTION(render(c), ValueError, message_contains("chart 'bad' needs finite ranges with min < max"));
    c.x_max = 1;
    c.width = 100;
    BOOST_CHECK_EXCEPTION(render(c), ValueError, message_contains("must be between 160 x 120"));
    c.width = 480;
    c.lines.push_back({{0, 1}, {0}, palette::blue, 1.0, false, ""});
    BOOST_CHECK_EXCEPTION(render(c), ValueError, message_contains("a line has 2 x and 1 y values"));
}

BOOST_AUTO_TEST_CASE(the_confusion_canvas_colours_rows_by_their_share) {
    const Canvas c = confusion_canvas({{9, 1}, {0, 10}}, {"normal", "lesao"}, "confusion");
    BOOST_TEST(c.width() >= 2 * 56);
    BOOST_CHECK_EXCEPTION(confusion_canvas({{1, 2}}, {"a", "b"}, "x"), ShapeError, message_contains("1 rows for 2 classes"));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(report_pages)

BOOST_AUTO_TEST_CASE(base64_matches_rfc_4648_test_vectors) {
    const auto b = [](const std::string& s) { return base64(std::vector<std::uint8_t>(s.begin(), s.end())); };
    BOOST_TEST(b("") == "");
    BOOST_TEST(b("f") == "Zg==");
    BOOST_TEST(b("fo") == "Zm8=");
    BOOST_TEST(b("foo") == "Zm9v");
    BOOST_TEST(b("foob") == "Zm9vYg==");
    BOOST_TEST(b("fooba") == "Zm9vYmE=");
    BOOST_TEST(b("foobar") == "Zm9vYmFy");
    BOOST_TEST(base64({0xff, 0xfe, 0x00}) == "//4A");
}

BOOST_AUTO_TEST_CASE(text_is_escaped_and_ragged_tables_are_refused) {
    BOOST_TEST(html_escape("<a href=\"x\">&'</a>") == "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
    BOOST_TEST(html_escape("les\xff") == "les\\xff");  // invalid UTF-8 shown, not passed on
    HtmlPage p("t");
    BOOST_CHECK_EXCEPTION(p.table({"a", "b"}, {{"1"}}), ValueError, message_contains("row 0 has 1 cells for 2 columns"));
    p.table({}, {{"k", "v"}, {"k2", "v2"}});  // no header: a list of pairs
    BOOST_TEST(p.str().find("<th>") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(an_evaluation_report_is_one_self_contained_file_with_every_figure) {
    // 120 scores, a quarter of them wrong
    EvaluationInput in;
    in.classes = {"normal", "les\xc3\xa3o"};
    Rng rng(3);
    for (int i = 0; i < 120; ++i) {
        const std::int64_t y = i % 2;
        const double u = static_cast<double>(rng.next_u64() % 1000) / 1000.0;
        const double p = y ? 0.25 + 0.75 * u : 0.75 * u;
        in.probs.push_back(1 - p);
        in.probs.push_back(p);
        in.labels.push_back(y);
    }
    in.uncalibrated = metrics::with_temperature(in.probs, 2, 0.5);
    in.temperature = 2.0;
    in.band_replicates = 200;
    in.training = {{"", {{1, 0.7, 0.5, 0.69, 0.5, 0.6, 0.001, 1.0}, {2, 0.5, 0.7, 0.55, 0.7, 0.8, 0.001, 1.0}}}};
    const HtmlPage page = evaluation_report(in);
    const std::string html = page.str();
    // ROC, PR, confusion, reliability, loss, accuracy; no gallery images were given
    BOOST_TEST(page.images() == 6u);
    std::size_t uris = 0;
    for (auto at = html.find("src=\"data:image/png;base64,"); at != std::string::npos; at = html.find("src=\"data:image/png;base64,", at + 1))
        ++uris;
    BOOST_TEST(uris == 6u);
    BOOST_TEST(html.find("http://") == std::string::npos);
    BOOST_TEST(html.find("https://") == std::string::npos);
    BOOST_TEST(html.find("not for clinical diagnosis") != std::string::npos);
    BOOST_TEST(html.find("les\xc3\xa3o") != std::string::npos);  // UTF-8 class names kept
    BOOST_TEST(html.find("uncalibrated") != std::string::npos);
    BOOST_TEST(html.find("false negatives at this threshold; no thumbnails given.") != std::string::npos);
    TempDir dir;
    page.save(dir.file("report.html"));
    BOOST_TEST(std::filesystem::file_size(dir.file("report.html")) == html.size());
    // more than two classes: one-vs-rest curves, no operating point
    EvaluationInput three;
    three.classes = {"a", "b", "c"};
    for (int i = 0; i < 30; ++i) {
        three.labels.push_back(i % 3);
        for (int k = 0; k < 3; ++k) three.probs.push_back(k == (i + (i % 5 == 0)) % 3 ? 0.8 : 0.1);
    }
    const std::string h3 = evaluation_report(three).str();
    BOOST_TEST(h3.find("a vs rest") != std::string::npos);
    BOOST_TEST(h3.find("Most confident errors") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(worst_errors_are_the_surest_misses_first) {
    //             p(positive): 0.1 0.4 0.9 0.6 0.05 0.7     labels 1 1 0 0 1 1
    const std::vector<double> p{0.9, 0.1, 0.6, 0.4, 0.1, 0.9, 0.4, 0.6, 0.95, 0.05, 0.3, 0.7};
    const std::vector<std::int64_t> y{1, 1, 0, 0, 1, 1};
    const auto [fn, fp] = worst_errors(p, y, 2, 0.5, 10);
    BOOST_TEST(fn == (std::vector<std::size_t>{4, 0, 1}), tt::per_element());  // 0.05, 0.1, 0.4
    BOOST_TEST(fp == (std::vector<std::size_t>{2, 3}), tt::per_element());     // 0.9, 0.6
    const auto [fn1, fp1] = worst_errors(p, y, 2, 0.5, 1);
    BOOST_TEST(fn1.size() == 1u);
    BOOST_TEST(fp1.size() == 1u);
    BOOST_CHECK_EXCEPTION(worst_errors(p, {1, 0}, 2, 0.5, 1), ShapeError, message_contains("report::worst_errors"));
}

BOOST_AUTO_TEST_SUITE_END()
