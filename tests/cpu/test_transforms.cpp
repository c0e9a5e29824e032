// SPDX-License-Identifier: MIT
// test_transforms.cpp: medimg::data transforms against torchvision 0.14 outputs
// (tests/data/transforms/cases.txt, made by tests/data/make_transform_fixtures.py), determinism of the
// random transforms under a seeded Rng, the pipelines, and argument errors.
#include <boost/test/unit_test.hpp>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "medimg/core/rng.hpp"
#include "medimg/data/transforms.hpp"

using namespace medimg;
using namespace medimg::data;
using medimg::test::message_contains;

namespace {

// Resize: medimg computes the weights and sums in double, PyTorch in float32 with up to ~12 taps per
// axis (two passes), so each output carries a few float32 roundings of values <= 1 (2^-24 each):
// measured at most 1.2e-7; 1e-6 leaves a margin and still catches a wrong tap or weight.
constexpr double kResizeAtol = 1e-6;
// Rotation: torchvision builds the sampling grid in float32 (linspace, bmm, normalise, unnormalise),
// so a source coordinate is off by ~1e-6 pixels and a bilinear weight by as much; 1e-5 covers it.
constexpr double kRotateAtol = 1e-5;
// Pointwise ops (flip, crop, brightness, contrast, normalize, grey) are the same float32 formulas;
// contrast's mean is summed in double here vs float32 pairwise in torch: a few ulp.
constexpr double kPointwiseAtol = 1e-6;

struct Case {
    std::string input;
    std::vector<std::string> op;  // op name and its arguments
    Tensor<float, Cpu> expected;
};

struct Fixtures {
    std::map<std::string, Tensor<float, Cpu>> tensors;
    std::map<std::string, Case> cases;
};

/// "<C> <H> <W>" then C*H*W values, read across lines.
Tensor<float, Cpu> read_tensor(std::istream& in) {
    std::int64_t c = 0, h = 0, w = 0;
    in >> c >> h >> w;
    auto t = Tensor<float, Cpu>::empty(Shape{c, h, w});
    for (std::int64_t i = 0; i < t.numel(); ++i) {
        double v = 0;
        in >> v;
        t[i] = static_cast<float>(v);
    }
    return t;
}

const Fixtures& fixtures() {
    static const Fixtures f = [] {
        Fixtures fx;
        const std::string path = std::string(MEDIMG_TEST_DATA_DIR) + "/transforms/cases.txt";
        std::ifstream file(path);
        BOOST_REQUIRE_MESSAGE(file, "cannot open " << path);
        std::string key, current;
        while (file >> key) {
            if (key[0] == '#') {
                std::getline(file, key);
            } else if (key == "tensor") {
                std::string name;
                file >> name;
                fx.tensors[name] = read_tensor(file);
            } else if (key == "case") {
                file >> current;
                fx.cases[current] = Case{};
            } else if (key == "input") {
                file >> fx.cases[current].input;
            } else if (key == "op") {
                std::string line, tok;
                std::getline(file, line);
                std::istringstream ls(line);
                while (ls >> tok) fx.cases[current].op.push_back(tok);
            } else if (key == "expected") {
                fx.cases[current].expected = read_tensor(file);
            } else {
                BOOST_FAIL("cases.txt: unexpected token " << key);
            }
        }
        BOOST_REQUIRE_MESSAGE(!fx.cases.empty(), "no cases in " << path);
        return fx;
    }();
    return f;
}

double arg(const Case& c, std::size_t i) { return std::stod(c.op.at(i)); }
std::vector<double> args_from(const Case& c, std::size_t first, std::size_t count) {
    std::vector<double> v;
    for (std::size_t i = 0; i < count; ++i) v.push_back(arg(c, first + i));
    return v;
}

/// Runs the medimg equivalent of a fixture case.
Tensor<float, Cpu> run(const Case& c) {
    const Tensor<float, Cpu>& x = fixtures().tensors.at(c.input);
    const std::string& op = c.op.at(0);
    auto i = [&](std::size_t k) { return static_cast<std::int64_t>(arg(c, k)); };
    if (op == "resize") return resize(x, i(1), i(2));
    if (op == "resize_shorter") return resize_shorter_side(x, i(1));
    if (op == "crop_resize") return resize(crop(x, i(1), i(2), i(3), i(4)), i(5), i(6));
    if (op == "center_crop") return center_crop(x, i(1), i(2));
    if (op == "hflip") return horizontal_flip(x);
    if (op == "brightness") return adjust_brightness(x, arg(c, 1));
    if (op == "contrast") return adjust_contrast(x, arg(c, 1));
    if (op == "normalize") return normalize(x, args_from(c, 1, 3), args_from(c, 4, 3));
    if (op == "grayscale") return rgb_to_grayscale(x);
    if (op == "rotate") return rotate(x, arg(c, 1));
    if (op == "eval_pipeline") {
        TransformOptions o;
        o.resize_to = i(1);
        o.image_size = i(2);
        o.mean = args_from(c, 3, 3);
        o.std = args_from(c, 6, 3);
        Rng rng(0);
        return eval_pipeline(o)(x, rng);
    }
    BOOST_FAIL("unknown fixture op " << op);
    return {};
}

/// Every case whose name starts with `prefix` matches torchvision within atol; reports the largest
/// difference of each, and returns how many cases ran.
int check_cases(const std::string& prefix, double atol) {
    int n = 0;
    for (const auto& [name, c] : fixtures().cases) {
        if (name.rfind(prefix, 0) != 0) continue;
        ++n;
        const auto got = run(c);
        BOOST_TEST_CONTEXT("case " << name) {
            BOOST_REQUIRE_MESSAGE(got.shape() == c.expected.shape(),
                                  "shape " << got.shape() << " vs torchvision " << c.expected.shape());
            const auto m = test::compare(got, c.expected, 0.0, atol);
            BOOST_TEST_MESSAGE("transforms fixture " << name << ": max |medimg - torchvision| = " << m.max_diff
                                                     << " at flat index " << m.where);
            BOOST_CHECK_MESSAGE(m.ok, "largest |diff| " << m.max_diff << " at flat index " << m.where << " exceeds " << atol);
        }
    }
    BOOST_REQUIRE_MESSAGE(n > 0, "no fixture case starts with " << prefix);
    return n;
}

Tensor<float, Cpu> test_image(std::int64_t c, std::int64_t h, std::int64_t w, std::uint64_t seed) {
    Rng r(seed);
    auto t = Tensor<float, Cpu>::empty(Shape{c, h, w});
    r.fill_uniform(t, 0.0, 1.0);
    return t;
}

bool same(const Tensor<float, Cpu>& a, const Tensor<float, Cpu>& b) {
    if (a.shape() != b.shape()) return false;
    for (std::int64_t i = 0; i < a.numel(); ++i)
        if (a[i] != b[i]) return false;
    return true;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(transforms)

BOOST_AUTO_TEST_CASE(resize_matches_torchvision_antialiased_bilinear) {
    BOOST_CHECK_EQUAL(check_cases("resize_", kResizeAtol), 10);
    check_cases("crop_then_resize", kResizeAtol);
}

BOOST_AUTO_TEST_CASE(resize_to_same_size_is_a_copy) {
    const auto x = test_image(2, 5, 6, 1);
    const auto y = resize(x, 5, 6);
    BOOST_CHECK(same(x, y));
    BOOST_CHECK(!y.shares_storage_with(x));
}

BOOST_AUTO_TEST_CASE(resize_keeps_a_constant_image_constant) {
    // The normalised weights of every output sum to 1, up or down.
    auto x = Tensor<float, Cpu>::full(Shape{1, 13, 29}, 0.625f);
    for (auto [h, w] : {std::pair<int, int>{4, 5}, {40, 7}, {1, 1}, {13, 30}}) {
        const auto y = resize(x, h, w);
        for (std::int64_t i = 0; i < y.numel(); ++i) BOOST_REQUIRE_SMALL(y[i] - 0.625f, 1e-6f);
    }
}

BOOST_AUTO_TEST_CASE(shorter_side_size_matches_torchvision_rule) {
    BOOST_CHECK((shorter_side_size(17, 23, 10) == std::pair<std::int64_t, std::int64_t>{10, 13}));
    BOOST_CHECK((shorter_side_size(300, 200, 256) == std::pair<std::int64_t, std::int64_t>{384, 256}));
    BOOST_CHECK((shorter_side_size(224, 224, 256) == std::pair<std::int64_t, std::int64_t>{256, 256}));
    BOOST_CHECK((shorter_side_size(480, 640, 256) == std::pair<std::int64_t, std::int64_t>{256, 341}));
}

BOOST_AUTO_TEST_CASE(center_crop_matches_torchvision_including_round_half_even) {
    check_cases("center_crop_", 0.0);
}

BOOST_AUTO_TEST_CASE(horizontal_flip_matches_torchvision) { check_cases("hflip_", 0.0); }

BOOST_AUTO_TEST_CASE(brightness_and_contrast_match_torchvision) {
    check_cases("brightness_", kPointwiseAtol);
    check_cases("contrast_", kPointwiseAtol);
}

BOOST_AUTO_TEST_CASE(normalize_and_grayscale_match_torchvision) {
    check_cases("normalize_", kPointwiseAtol);
    check_cases("grayscale_", kPointwiseAtol);
}

BOOST_AUTO_TEST_CASE(rotate_matches_torchvision_random_rotation_fill_zero) { check_cases("rotate_", kRotateAtol); }

BOOST_AUTO_TEST_CASE(eval_pipeline_matches_torchvision_compose) { check_cases("eval_pipeline_", kResizeAtol); }

BOOST_AUTO_TEST_CASE(to_channels_replicates_and_converts) {
    const auto g = test_image(1, 3, 4, 2);
    const auto rgb = to_channels(g, 3);
    BOOST_REQUIRE(rgb.shape() == Shape({3, 3, 4}));
    for (std::int64_t c = 0; c < 3; ++c)
        for (std::int64_t i = 0; i < 12; ++i) BOOST_CHECK_EQUAL(rgb[c * 12 + i], g[i]);
    const auto back = to_channels(rgb, 1);
    // 0.2989 + 0.587 + 0.114 = 0.9999: torchvision's weights do not sum exactly to 1.
    for (std::int64_t i = 0; i < 12; ++i) BOOST_CHECK_SMALL(back[i] - 0.9999f * g[i], 1e-6f);
    BOOST_CHECK(same(to_channels(rgb, 3), rgb));
}

BOOST_AUTO_TEST_CASE(random_resized_crop_params_follow_torchvision_sampling) {
    Rng rng(5);
    for (int k = 0; k < 500; ++k) {
        const auto b = random_resized_crop_params(60, 80, rng);
        BOOST_REQUIRE(b.height >= 1 && b.width >= 1 && b.top >= 0 && b.left >= 0);
        BOOST_REQUIRE(b.top + b.height <= 60 && b.left + b.width <= 80);
        const double area = static_cast<double>(b.height * b.width) / (60.0 * 80.0);
        // Rounding w and h can move the area a little outside [0.08, 1]; the ratio likewise.
        BOOST_REQUIRE(area > 0.06 && area <= 1.0);
        const double r = static_cast<double>(b.width) / static_cast<double>(b.height);
        BOOST_REQUIRE(r > 0.6 && r < 1.6);
    }
    // A sliver that no sampled box fits falls back to the centred crop with the ratio clamped:
    // width 200, height 2: in_ratio 100 > 4/3, so h = 2, w = round(2 * 4/3) = 3, centred.
    const auto b = random_resized_crop_params(2, 200, rng, {0.9, 1.0}, {3.0 / 4.0, 4.0 / 3.0});
    BOOST_CHECK_EQUAL(b.height, 2);
    BOOST_CHECK_EQUAL(b.width, 3);
    BOOST_CHECK_EQUAL(b.top, 0);
    BOOST_CHECK_EQUAL(b.left, (200 - 3) / 2);
}

BOOST_AUTO_TEST_CASE(random_transforms_are_deterministic_given_the_seed) {
    const auto x = test_image(3, 40, 52, 3);
    Rng a(123), b(123), c(124);
    const auto ya = random_resized_crop(x, 16, 16, a);
    const auto yb = random_resized_crop(x, 16, 16, b);
    const auto yc = random_resized_crop(x, 16, 16, c);
    BOOST_CHECK(same(ya, yb));
    BOOST_CHECK(!same(ya, yc));
    Rng d(9), e(9), f(10);
    BOOST_CHECK(same(random_rotation(x, 30.0, d), random_rotation(x, 30.0, e)));
    BOOST_CHECK(!same(random_rotation(x, 30.0, d), random_rotation(x, 30.0, f)));
}

BOOST_AUTO_TEST_CASE(train_pipeline_is_deterministic_given_the_seed) {
    TransformOptions o;
    o.image_size = 24;
    o.rotation_degrees = 10;
    o.brightness = 0.2;
    o.contrast = 0.3;
    const auto p = train_pipeline(o);
    BOOST_TEST_MESSAGE("train pipeline: " << p.to_string());
    BOOST_CHECK_EQUAL(p.size(), 6u);  // ToChannels, RandomResizedCrop, flip, rotation, jitter, normalize
    const auto x = test_image(1, 50, 61, 4);  // grey in, 3 channels out
    Rng a(77), b(77), c(78);
    const auto ya = p(x, a), yb = p(x, b), yc = p(x, c);
    BOOST_CHECK(ya.shape() == Shape({3, 24, 24}));
    BOOST_CHECK(same(ya, yb));
    BOOST_CHECK(!same(ya, yc));
    // Over many seeds the flip and the crop both vary: the outputs are not all equal.
    int distinct = 0;
    for (std::uint64_t s = 0; s < 8; ++s) {
        Rng r(s);
        distinct += same(p(x, r), ya) ? 0 : 1;
    }
    BOOST_CHECK_GE(distinct, 7);
}

BOOST_AUTO_TEST_CASE(eval_pipeline_uses_resize_center_crop_normalize) {
    TransformOptions o;  // 224 from shorter side 256, ImageNet normalisation
    const auto p = eval_pipeline(o);
    BOOST_TEST_MESSAGE("eval pipeline: " << p.to_string());
    BOOST_REQUIRE_EQUAL(p.size(), 4u);
    BOOST_CHECK_EQUAL(p.descriptions()[1], "Resize(256, antialias=True)");
    BOOST_CHECK_EQUAL(p.descriptions()[2], "CenterCrop(224)");
    Rng r(0);
    const auto y = p(test_image(3, 300, 400, 6), r);
    BOOST_CHECK(y.shape() == Shape({3, 224, 224}));
    o.center_crop = false;
    o.channels = 1;
    o.mean = {0.5};
    o.std = {0.25};
    o.image_size = 32;
    const auto q = eval_pipeline(o);
    const auto z = q(test_image(3, 50, 70, 7), r);
    BOOST_CHECK(z.shape() == Shape({1, 32, 32}));
}

BOOST_AUTO_TEST_CASE(no_resize_is_the_centre_crop_alone_in_both_pipelines) {
    TransformOptions o;
    o.image_size = 32;
    o.resize_to = TransformOptions::no_resize;
    o.random_resized_crop = false;
    o.hflip_p = 0.0;
    o.mean = {};
    o.std = {};
    const auto img = test_image(3, 40, 52, 9);
    Rng r(0);
    for (const auto& p : {eval_pipeline(o), train_pipeline(o)}) {
        BOOST_TEST_MESSAGE("no-resize pipeline: " << p.to_string());
        BOOST_REQUIRE_EQUAL(p.size(), 2u);  // ToChannels, CenterCrop: no resampling
        BOOST_CHECK_EQUAL(p.descriptions()[1], "CenterCrop(32)");
        const auto y = p(img, r);
        const auto want = center_crop(img, 32, 32);
        BOOST_REQUIRE(y.shape() == want.shape());
        for (std::int64_t i = 0; i < y.numel(); ++i) BOOST_REQUIRE_EQUAL(y[i], want[i]);  // the pixels themselves
        BOOST_CHECK_EXCEPTION(p(test_image(3, 30, 52, 1), r), ShapeError, message_contains("center_crop: crop 32 x 32 is larger"));
    }
    o.resize_to = -2;
    BOOST_CHECK_EXCEPTION(eval_pipeline(o), ValueError, message_contains("eval_pipeline: resize_to must be >= 0"));
}

BOOST_AUTO_TEST_CASE(rejects_bad_arguments_with_the_function_name) {
    const auto x = test_image(3, 8, 10, 8);
    BOOST_CHECK_EXCEPTION(resize(x, 0, 4), ValueError, message_contains("resize: output size must be positive"));
    BOOST_CHECK_EXCEPTION(resize(Tensor<float, Cpu>::zeros({8, 10}), 4, 4), ShapeError,
                          message_contains("resize: expected a (C, H, W) image"));
    BOOST_CHECK_EXCEPTION(center_crop(x, 9, 4), ShapeError, message_contains("center_crop: crop 9 x 4 is larger"));
    BOOST_CHECK_EXCEPTION(center_crop(x, 0, 4), ValueError, message_contains("center_crop:"));
    BOOST_CHECK_EXCEPTION(crop(x, 1, 1, 8, 4), ShapeError, message_contains("crop: box"));
    BOOST_CHECK_EXCEPTION(normalize(x, {0.5, 0.5, 0.5}, {0.2, 0.0, 0.2}), ValueError, message_contains("normalize: std[1]"));
    BOOST_CHECK_EXCEPTION(normalize(x, {0.5}, {0.2}), ShapeError, message_contains("normalize: need one mean"));
    BOOST_CHECK_EXCEPTION(adjust_brightness(x, -1.0), ValueError, message_contains("adjust_brightness:"));
    BOOST_CHECK_EXCEPTION(adjust_contrast(x, -0.5), ValueError, message_contains("adjust_contrast:"));
    BOOST_CHECK_EXCEPTION(to_channels(x, 2), ValueError, message_contains("to_channels: channels must be 1 or 3"));
    BOOST_CHECK_EXCEPTION(rgb_to_grayscale(test_image(2, 3, 3, 1)), ShapeError, message_contains("rgb_to_grayscale:"));
    Rng rng(1);
    BOOST_CHECK_EXCEPTION(random_resized_crop(x, 4, 4, rng, {0.5, 0.1}), ValueError,
                          message_contains("random_resized_crop: scale"));
    BOOST_CHECK_EXCEPTION(random_rotation(x, -3.0, rng), ValueError, message_contains("random_rotation:"));

    TransformOptions o;
    o.std = {0.2, 0.0, 0.2};
    BOOST_CHECK_EXCEPTION(train_pipeline(o), ValueError, message_contains("train_pipeline: std[1]"));
    o = {};
    o.channels = 1;  // ImageNet mean/std have 3 values
    BOOST_CHECK_EXCEPTION(eval_pipeline(o), ValueError, message_contains("eval_pipeline: mean/std have 3 values"));
    o = {};
    o.resize_to = 200;
    BOOST_CHECK_EXCEPTION(eval_pipeline(o), ValueError, message_contains("eval_pipeline: resize_to 200 is smaller"));
    o = {};
    o.image_size = 0;
    BOOST_CHECK_EXCEPTION(train_pipeline(o), ValueError, message_contains("train_pipeline: image_size"));
    o = {};
    o.hflip_p = 1.5;
    BOOST_CHECK_EXCEPTION(train_pipeline(o), ValueError, message_contains("train_pipeline: hflip_p"));
}

BOOST_AUTO_TEST_SUITE_END()
