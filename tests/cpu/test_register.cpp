// SPDX-License-Identifier: MIT
// test_register.cpp: image alignment (include/medimg/register/): transforms and resampling, and
// reg::align recovering known motions. Fixtures: tests/data/register (make_register_fixtures.py:
// phantom slices moved by known translations, rotations up to 15 degrees with shifts up to 10% of
// the side, and affine maps, with SimpleITK's registration of each pair and scikit-image's
// phase_cross_correlation for the translations).
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "helpers.hpp"
#include "medimg/core/rng.hpp"
#include "medimg/data/image.hpp"
#include "medimg/register/register.hpp"

using namespace medimg;
using medimg::test::message_contains;
namespace tt = boost::test_tools;

namespace {

std::string fixture(const std::string& name) { return std::string(MEDIMG_TEST_DATA_DIR) + "/register/" + name; }

const nlohmann::json& cases() {
    static const nlohmann::json j = [] {
        std::ifstream in(fixture("cases.json"));
        BOOST_REQUIRE_MESSAGE(in, "cannot open tests/data/register/cases.json");
        return nlohmann::json::parse(in);
    }();
    return j;
}

Tensor<float, Cpu> gray(const std::string& file) {
    const auto t = data::read_image(fixture(file), 1).pixels;
    return t.reshape(Shape{t.size(1), t.size(2)});
}

/// A transform as the fixtures write it: A (row-major) and t about the centre of a side x side image.
reg::Transform2D from_json(const nlohmann::json& j, double side) {
    auto T = reg::Transform2D::identity(reg::Motion::affine, static_cast<std::int64_t>(side), static_cast<std::int64_t>(side));
    const auto A = j.at("A").get<std::vector<double>>();
    T.a = {A[0], A[1], A[2], A[3]};
    T.tx = j.at("tx").get<double>();
    T.ty = j.at("ty").get<double>();
    return T;
}

/// How far apart two transforms put the exam: the largest distance between where they send a
/// side x side image's four corners, in pixels (the library's own measure).
double corner_distance(const reg::Transform2D& p, const reg::Transform2D& q, double side) {
    const auto n = static_cast<std::int64_t>(side);
    return reg::detail::corner_distance(p, q, n, n);
}

reg::Motion motion_of(const std::string& m) {
    return m == "translation" ? reg::Motion::translation : m == "rigid" ? reg::Motion::rigid : reg::Motion::affine;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(registration)

BOOST_AUTO_TEST_CASE(transforms_map_about_the_centre_and_survive_a_pyramid_level) {
    auto T = reg::Transform2D::identity(reg::Motion::rigid, 64, 128);
    BOOST_TEST(T.cx == 63.5);
    BOOST_TEST(T.cy == 31.5);
    T.set_parameters({reg::kPi / 2, 1.0, -2.0});  // a quarter turn: (x - c) -> (-(y - cy), x - cx)
    double u = 0, v = 0;
    T.apply(73.5, 31.5, u, v);                    // 10 px right of the centre
    BOOST_TEST(u == 64.5, tt::tolerance(1e-12));  // ends 10 px below it, shifted by (1, -2)
    BOOST_TEST(v == 39.5, tt::tolerance(1e-12));
    BOOST_TEST(T.angle_degrees() == 90.0, tt::tolerance(1e-12));
    // the same point, in the pixels of a level half the size
    const auto h = T.scaled(2);
    double uh = 0, vh = 0;
    h.apply((73.5 - 0.5) / 2, (31.5 - 0.5) / 2, uh, vh);
    BOOST_TEST(uh == (u - 0.5) / 2, tt::tolerance(1e-12));
    BOOST_TEST(vh == (v - 0.5) / 2, tt::tolerance(1e-12));
    BOOST_CHECK_EXCEPTION(T.set_parameters({1.0, 2.0}), ValueError, message_contains("2 parameters for a rigid transform, which has 3"));
}

BOOST_AUTO_TEST_CASE(resampling_is_bilinear_and_marks_what_the_target_does_not_cover) {
    auto img = Tensor<float, Cpu>::empty(Shape{4, 4});
    for (std::int64_t i = 0; i < 16; ++i) img[i] = static_cast<float>(i);  // value = 4 y + x
    auto T = reg::Transform2D::identity(reg::Motion::translation, 4, 4);
    T.tx = 0.5;
    T.ty = 1.25;
    const auto r = reg::resample(img, T, 4, 4, -1.0f);
    BOOST_TEST(r.image[0] == 0.5f + 4 * 1.25f);   // linear data: bilinear is exact
    BOOST_TEST(r.image[1 * 4 + 2] == 2.5f + 4 * 2.25f);
    BOOST_TEST(r.mask[3] == 0.0f);                 // x = 3.5: outside
    BOOST_TEST(r.image[3] == -1.0f);
    BOOST_TEST(r.mask[3 * 4 + 0] == 0.0f);         // y = 4.25: outside
    BOOST_TEST(r.inside == 6);                     // columns 0..2 of rows 0..1
}

BOOST_AUTO_TEST_CASE(identical_images_give_the_identity_exactly) {
    const auto ref = gray("ref_0.png");
    for (auto m : {reg::Motion::translation, reg::Motion::rigid, reg::Motion::affine}) {
        reg::AlignOptions o;
        o.motion = m;
        const auto a = reg::align(ref, ref, o);
        const auto p = a.transform.parameters();
        for (double v : p) BOOST_TEST(v == 0.0);
        BOOST_TEST(a.transform.a[0] == 1.0);
        BOOST_TEST(a.transform.a[1] == 0.0);
        BOOST_TEST(a.ncc_after == 1.0, tt::tolerance(1e-12));
        BOOST_TEST(a.overlap == ref.numel());
    }
}

BOOST_AUTO_TEST_CASE(known_motions_are_recovered_within_half_a_pixel_and_half_a_degree_as_well_as_simpleitk) {
    const double side = cases().at("side").get<double>();
    for (const auto& c : cases().at("cases")) {
        const std::string name = c.at("name");
        BOOST_TEST_CONTEXT(name) {
            reg::AlignOptions o;
            o.motion = motion_of(c.at("motion"));
            const auto a = reg::align(gray(c.at("reference")), gray(c.at("target")), o);
            const auto truth = from_json(c.at("truth"), side);
            const auto sitk = from_json(c.at("simpleitk"), side);
            const double ours = corner_distance(a.transform, truth, side), theirs = corner_distance(sitk, truth, side);
            BOOST_TEST(ours < 0.5, "corners " << ours << " px from the truth");
            BOOST_TEST(std::abs(a.transform.angle_degrees() - c.at("truth").at("angle_deg").get<double>()) < 0.5);
            // Both land within a few hundredths of a pixel; below that the interpolation noise of
            // 8-bit exams decides which is closer, so "as close" allows 0.01 px (docs/compare.md).
            BOOST_TEST(ours <= theirs + 0.01, "medimg " << ours << " px, SimpleITK " << theirs << " px from the truth");
            BOOST_TEST(a.ncc_after > a.ncc_before);
            BOOST_TEST(a.ncc_after > 0.99);
            if (c.contains("skimage_phase")) {
                BOOST_TEST(std::abs(a.transform.tx - c.at("skimage_phase").at("tx").get<double>()) <= 0.1);
                BOOST_TEST(std::abs(a.transform.ty - c.at("skimage_phase").at("ty").get<double>()) <= 0.1);
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(a_target_of_another_size_is_found_inside_it) {
    // the reference pasted into a larger, darker canvas, moved by (17.25, 9.5)
    const auto ref = gray("ref_1.png");
    const std::int64_t H = ref.size(0), W = ref.size(1), BH = H + 40, BW = W + 30;
    auto big = Tensor<float, Cpu>::empty(Shape{BH, BW});
    for (std::int64_t y = 0; y < BH; ++y)
        for (std::int64_t x = 0; x < BW; ++x) {
            double v = 0.02;
            reg::bilinear(ref.data(), H, W, static_cast<double>(x) - 17.25, static_cast<double>(y) - 9.5, v);
            big[y * BW + x] = static_cast<float>(v);
        }
    reg::AlignOptions o;
    o.motion = reg::Motion::translation;
    const auto a = reg::align(ref, big, o);
    BOOST_TEST(std::abs(a.transform.tx - 17.25) < 0.03);
    BOOST_TEST(std::abs(a.transform.ty - 9.5) < 0.03);
}

/// A speckled exam (uniform noise under a 3x3 box): correlation is sharp, a pixel wide, so an
/// alignment that starts a few pixels off the truth does not find it by ECC's steps alone.
Tensor<float, Cpu> speckle(std::int64_t H, std::int64_t W, std::uint64_t seed) {
    Rng rng(seed);
    auto noise = Tensor<float, Cpu>::empty(Shape{H, W});
    rng.fill_uniform(noise, 0.0, 1.0);
    auto out = Tensor<float, Cpu>::empty(Shape{H, W});
    for (std::int64_t y = 0; y < H; ++y)
        for (std::int64_t x = 0; x < W; ++x) {
            double s = 0;
            int n = 0;
            for (std::int64_t j = std::max<std::int64_t>(y - 1, 0); j <= std::min(y + 1, H - 1); ++j)
                for (std::int64_t i = std::max<std::int64_t>(x - 1, 0); i <= std::min(x + 1, W - 1); ++i) s += noise[j * W + i], ++n;
            out[y * W + x] = static_cast<float>(s / n);
        }
    return out;
}

/// rows [y0, y0 + h) and columns [x0, x0 + w) of img.
Tensor<float, Cpu> crop(const Tensor<float, Cpu>& img, std::int64_t y0, std::int64_t x0, std::int64_t h, std::int64_t w) {
    auto out = Tensor<float, Cpu>::empty(Shape{h, w});
    for (std::int64_t y = 0; y < h; ++y)
        for (std::int64_t x = 0; x < w; ++x) out[y * w + x] = img[(y0 + y) * img.size(1) + x0 + x];
    return out;
}

BOOST_AUTO_TEST_CASE(a_crop_is_found_wherever_it_was_cut) {
    // The target is a part of the reference. Cut at the top-left corner, the images as given are
    // already aligned (correlation 1): that placement is kept exactly, whatever the centres say
    // (from the centres alone, ECC ended 40-90 px off with a correlation under 0.08 and kept it,
    // below the 1.0 of the images as given). Cut elsewhere, the coarsest level's exhaustive shift
    // search finds it.
    const auto ref = speckle(160, 200, 7);
    for (auto motion : {reg::Motion::translation, reg::Motion::rigid, reg::Motion::affine}) {
        BOOST_TEST_CONTEXT(reg::motion_name(motion)) {
            reg::AlignOptions o;
            o.motion = motion;
            const auto corner = reg::align(ref, crop(ref, 0, 0, 100, 120), o);
            BOOST_TEST(!corner.moved);
            BOOST_TEST(corner.transform.tx == 0.0);
            BOOST_TEST(corner.transform.ty == 0.0);
            BOOST_TEST(corner.ncc_before == 1.0, tt::tolerance(1e-12));
            BOOST_TEST(corner.ncc_after == 1.0, tt::tolerance(1e-12));
            BOOST_TEST(corner.overlap == 100 * 120);
            // target(y, x) = ref(y + 21, x + 37): W(x) = x - (37, 21)
            const auto inside = reg::align(ref, crop(ref, 21, 37, 100, 120), o);
            BOOST_TEST(std::abs(inside.transform.tx + 37) < 0.02);
            BOOST_TEST(std::abs(inside.transform.ty + 21) < 0.02);
            BOOST_TEST(std::abs(inside.transform.angle_degrees()) < 0.01);
            BOOST_TEST(inside.ncc_after > 0.999);
            BOOST_TEST(inside.ncc_after >= inside.ncc_before);
        }
    }
}

BOOST_AUTO_TEST_CASE(a_large_shift_of_a_same_size_exam_is_found) {
    // the reference moved by (30, 25) px (15% and 16% of the sides), the uncovered part filled
    // with a constant: W(x) = x + (30, 25)
    const auto ref = speckle(160, 200, 11);
    auto moved = Tensor<float, Cpu>::empty(Shape{160, 200});
    for (std::int64_t y = 0; y < 160; ++y)
        for (std::int64_t x = 0; x < 200; ++x) moved[y * 200 + x] = y >= 25 && x >= 30 ? ref[(y - 25) * 200 + x - 30] : 0.5f;
    const auto a = reg::align(ref, moved);
    BOOST_TEST(a.moved);
    BOOST_TEST(std::abs(a.transform.tx - 30) < 0.02);
    BOOST_TEST(std::abs(a.transform.ty - 25) < 0.02);
    BOOST_TEST(a.ncc_after > 0.999);
}

BOOST_AUTO_TEST_CASE(an_exam_turned_by_any_angle_is_found) {
    // target(u) = ref(W^-1(u)) for W a rotation by theta about the centre; from the centred start
    // alone ECC stops short of 90 degrees and beyond (at -8.4 degrees for 90), the turned starts
    // of any_angle reach every angle
    const auto ref = gray("ref_1.png");
    const std::int64_t H = ref.size(0), W = ref.size(1);
    for (double deg : {90.0, 135.0, 180.0, -120.0, -75.0}) {
        const double th = deg * reg::kPi / 180, c = std::cos(th), s = std::sin(th), cx = (W - 1) / 2.0, cy = (H - 1) / 2.0;
        auto turned = Tensor<float, Cpu>::empty(Shape{H, W});
        for (std::int64_t y = 0; y < H; ++y)
            for (std::int64_t x = 0; x < W; ++x) {
                const double dx = static_cast<double>(x) - cx, dy = static_cast<double>(y) - cy;
                double v = 0;
                reg::bilinear(ref.data(), H, W, c * dx + s * dy + cx, -s * dx + c * dy + cy, v);  // R^T (u - c) + c
                turned[y * W + x] = static_cast<float>(v);
            }
        for (auto motion : {reg::Motion::rigid, reg::Motion::affine}) {
            BOOST_TEST_CONTEXT(deg << " degrees, " << reg::motion_name(motion)) {
                reg::AlignOptions o;
                o.motion = motion;
                o.any_angle = true;
                const auto a = reg::align(ref, turned, o);
                BOOST_TEST(std::abs(std::remainder(a.transform.angle_degrees() - deg, 360.0)) < 0.05);
                BOOST_TEST(std::abs(a.transform.tx) < 0.05);
                BOOST_TEST(std::abs(a.transform.ty) < 0.05);
                BOOST_TEST(a.ncc_after > 0.99);
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(constant_images_and_lost_overlap_are_one_clear_error) {
    const auto ref = gray("ref_0.png");
    auto flat = Tensor<float, Cpu>::empty(Shape{64, 64});
    for (std::int64_t i = 0; i < flat.numel(); ++i) flat[i] = 0.4f;
    BOOST_CHECK_EXCEPTION(reg::align(ref, flat), ValueError, message_contains("align: the target is constant where the images overlap"));
    BOOST_CHECK_EXCEPTION(reg::align(flat, ref), ValueError, message_contains("align: the reference is constant"));
    auto tiny = Tensor<float, Cpu>::empty(Shape{4, 40});
    BOOST_CHECK_EXCEPTION(reg::align(ref, tiny), ShapeError, message_contains("at least 8x8 pixels, got shape"));
    reg::AlignOptions bad;
    bad.max_levels = 0;
    BOOST_CHECK_EXCEPTION(reg::align(ref, ref, bad), ValueError, message_contains("max_levels >= 1"));
}

BOOST_AUTO_TEST_SUITE_END()
