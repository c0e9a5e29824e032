// SPDX-License-Identifier: MIT
// Tests for metrics/ssim.hpp: SSIM against scikit-image 0.19 fixtures (tests/data/ssim, written by
// tests/data/make_ssim_fixtures.py), against a direct test-only transcription of skimage's algorithm
// (which also shows that covariance or crop mix-ups would be caught), MS-SSIM, MAE and error paths.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "helpers.hpp"
#include "medimg/core/parallel.hpp"
#include "medimg/core/rng.hpp"
#include "medimg/core/tensor.hpp"
#include "medimg/metrics/ssim.hpp"

using namespace medimg;
using medimg::metrics::SsimOptions;
using medimg::metrics::Window;
using medimg::test::message_contains;

namespace {

// Agreement with skimage. Both sides compute in float64 from identical inputs; they differ only in
// summation order and in the algebraic form of s_x^2 + s_y^2 (ssim.hpp), i.e. a few ulp of the
// filtered moments divided by C2 = 9e-4: ~1e-13. The issue asks for 1e-6; 1e-9 keeps a wide margin
// while still catching any convention error (those move the mean by > 1e-5, see below).
constexpr double kSkimageAtol = 1e-9;
// The tolerance: a convention mix-up must move the mean by more than this to be caught.
// The mix-ups below move it by 4e-5 to 4e-2; the test asks for 10x this, well above kSkimageAtol.
constexpr double kDetectable = 1e-6;
// Fast path vs the direct transcription below: both float64; summation order, the four-quantity
// form and FMA (AVX2 path) differ, each a few ulp of values of order 1.
constexpr double kReferenceAtol = 1e-12;
// float inputs are widened to double before any arithmetic, so a float image and its exact double
// copy must agree bit for bit; against the float64 fixtures they differ by float rounding of the
// pixels (2^-24 relative), which moves SSIM by ~1e-7.
constexpr double kFloatInputAtol = 1e-5;

// ---- fixtures ----------------------------------------------------------------------------------
struct Fixture {
    std::string name;
    Shape shape;
    std::vector<double> a, b;
    double ssim_uniform = 0.0;
    std::optional<double> ssim_gaussian, ms_ssim;
    std::vector<double> map_uniform, map_gaussian;

    Tensor<double> ta() const { return Tensor<double>::from_vector(shape, a); }
    Tensor<double> tb() const { return Tensor<double>::from_vector(shape, b); }
};

std::string data_dir() { return std::string(MEDIMG_TEST_DATA_DIR) + "/ssim/"; }

std::vector<double> read_values(std::istream& in, const std::string& enc, const Shape& shape, const std::string& file) {
    std::vector<double> v;
    v.reserve(static_cast<std::size_t>(shape.numel()));
    if (enc == "dec") {
        double x;
        while (static_cast<std::int64_t>(v.size()) < shape.numel() && in >> x) v.push_back(x);
    } else {
        const int digits = enc == "u8" ? 2 : 4;
        const double scale = enc == "u8" ? 255.0 : 65535.0;
        const std::int64_t W = shape.dim(-1);
        std::string tok;  // one image row: W values of `digits` hex digits each
        while (static_cast<std::int64_t>(v.size()) < shape.numel() && in >> tok &&
               static_cast<std::int64_t>(tok.size()) == W * digits) {
            for (std::int64_t j = 0; j < W; ++j) {
                const auto k = std::stoul(tok.substr(static_cast<std::size_t>(j * digits), digits), nullptr, 16);
                v.push_back(static_cast<double>(k) / scale);
            }
        }
    }
    BOOST_REQUIRE_MESSAGE(static_cast<std::int64_t>(v.size()) == shape.numel(),
                          file << ": read " << v.size() << " values, expected " << shape.numel() << " (" << enc << ")");
    return v;
}

Fixture load_fixture(const std::string& file) {
    std::ifstream in(data_dir() + file);
    BOOST_REQUIRE_MESSAGE(in.good(), "cannot open " << data_dir() + file);
    Fixture f;
    std::string key, enc;
    while (in >> key) {
        if (key[0] == '#') {
            std::getline(in, key);
        } else if (key == "name") {
            in >> f.name;
        } else if (key == "shape") {
            int rank;
            in >> rank;
            std::vector<std::int64_t> d(static_cast<std::size_t>(rank));
            for (auto& x : d) in >> x;
            f.shape = Shape(d);
        } else if (key == "encoding") {
            in >> enc;
        } else if (key == "ssim_uniform") {
            in >> f.ssim_uniform;
        } else if (key == "ssim_gaussian" || key == "ms_ssim") {
            std::string v;
            in >> v;
            if (v != "none") (key == "ms_ssim" ? f.ms_ssim : f.ssim_gaussian) = std::stod(v);
        } else if (key == "a" || key == "b") {
            (key == "a" ? f.a : f.b) = read_values(in, enc, f.shape, file);
        } else if (key == "map_uniform" || key == "map_gaussian") {
            (key == "map_uniform" ? f.map_uniform : f.map_gaussian) = read_values(in, "dec", f.shape, file);
        } else if (key == "end") {
            break;
        } else {
            BOOST_FAIL(file << ": unknown key " << key);
        }
    }
    BOOST_REQUIRE_MESSAGE(key == "end" && !f.a.empty() && !f.b.empty(), file << ": truncated fixture");
    return f;
}

std::vector<Fixture> load_all() {
    std::ifstream idx(data_dir() + "index.txt");
    BOOST_REQUIRE_MESSAGE(idx.good(), "cannot open " << data_dir() << "index.txt");
    std::vector<Fixture> all;
    std::string line;
    while (std::getline(idx, line))
        if (!line.empty() && line[0] != '#') all.push_back(load_fixture(line));
    BOOST_REQUIRE(all.size() >= 10);
    return all;
}

Fixture find(const std::vector<Fixture>& all, const std::string& name) {
    for (const auto& f : all)
        if (f.name == name) return f;
    BOOST_FAIL("no fixture " << name);
    return {};
}

// ---- a direct transcription of skimage 0.19 structural_similarity (one (H, W) plane) -------------
// Five full-image filters (x, y, xx, yy, xy) with scipy's 'reflect' border, axis 0 then axis 1, the
// covariance factor and the crop as parameters, so that tests can build the wrong variants on purpose.
struct Variant {
    bool gaussian = false;
    int win = 7;  // uniform side; the Gaussian uses 11 taps (sigma 1.5, truncate 3.5)
    double sigma = 1.5;
    bool sample_cov = true;  // x NP / (NP - 1)
    int crop = 3;            // pixels dropped on each side before the mean
};

std::int64_t reflect(std::int64_t i, std::int64_t n) { return i < 0 ? -i - 1 : (i >= n ? 2 * n - i - 1 : i); }

std::vector<double> filter2(const std::vector<double>& img, std::int64_t H, std::int64_t W,
                            const std::vector<double>& taps) {
    const std::int64_t r = static_cast<std::int64_t>(taps.size() / 2);
    std::vector<double> tmp(img.size()), out(img.size());
    for (std::int64_t i = 0; i < H; ++i)  // axis 0
        for (std::int64_t j = 0; j < W; ++j) {
            double s = 0.0;
            for (std::int64_t k = -r; k <= r; ++k)
                s += taps[static_cast<std::size_t>(k + r)] * img[static_cast<std::size_t>(reflect(i + k, H) * W + j)];
            tmp[static_cast<std::size_t>(i * W + j)] = s;
        }
    for (std::int64_t i = 0; i < H; ++i)  // axis 1
        for (std::int64_t j = 0; j < W; ++j) {
            double s = 0.0;
            for (std::int64_t k = -r; k <= r; ++k)
                s += taps[static_cast<std::size_t>(k + r)] * tmp[static_cast<std::size_t>(i * W + reflect(j + k, W))];
            out[static_cast<std::size_t>(i * W + j)] = s;
        }
    return out;
}

double reference_ssim(const double* a, const double* b, std::int64_t H, std::int64_t W, const Variant& v,
                      std::vector<double>* map = nullptr) {
    std::vector<double> taps;
    if (v.gaussian) {
        const int r = static_cast<int>(3.5 * v.sigma + 0.5);
        double sum = 0.0;
        for (int x = -r; x <= r; ++x) {
            taps.push_back(std::exp(-0.5 * x * x / (v.sigma * v.sigma)));
            sum += taps.back();
        }
        for (auto& t : taps) t /= sum;
    } else {
        taps.assign(static_cast<std::size_t>(v.win), 1.0 / v.win);
    }
    const std::size_t n = static_cast<std::size_t>(H * W);
    std::vector<double> x(a, a + n), y(b, b + n), xx(n), yy(n), xy(n);
    for (std::size_t i = 0; i < n; ++i) xx[i] = x[i] * x[i], yy[i] = y[i] * y[i], xy[i] = x[i] * y[i];
    const auto ux = filter2(x, H, W, taps), uy = filter2(y, H, W, taps);
    const auto uxx = filter2(xx, H, W, taps), uyy = filter2(yy, H, W, taps), uxy = filter2(xy, H, W, taps);
    const double np = static_cast<double>(taps.size() * taps.size());
    const double cov = v.sample_cov ? np / (np - 1) : 1.0, c1 = 0.01 * 0.01, c2 = 0.03 * 0.03;
    std::vector<double> S(n);
    for (std::size_t i = 0; i < n; ++i) {
        const double vx = cov * (uxx[i] - ux[i] * ux[i]), vy = cov * (uyy[i] - uy[i] * uy[i]);
        const double vxy = cov * (uxy[i] - ux[i] * uy[i]);
        S[i] = ((2 * ux[i] * uy[i] + c1) * (2 * vxy + c2)) / ((ux[i] * ux[i] + uy[i] * uy[i] + c1) * (vx + vy + c2));
    }
    double sum = 0.0;
    for (std::int64_t i = v.crop; i < H - v.crop; ++i)
        for (std::int64_t j = v.crop; j < W - v.crop; ++j) sum += S[static_cast<std::size_t>(i * W + j)];
    if (map) *map = S;
    return sum / static_cast<double>((H - 2 * v.crop) * (W - 2 * v.crop));
}

/// Per-channel mean of reference_ssim over (H, W) or (C, H, W).
double reference_ssim(const Fixture& f, const Variant& v) {
    const std::int64_t H = f.shape.dim(-2), W = f.shape.dim(-1), C = f.shape.rank() == 3 ? f.shape[0] : 1;
    double s = 0.0;
    for (std::int64_t c = 0; c < C; ++c) s += reference_ssim(f.a.data() + c * H * W, f.b.data() + c * H * W, H, W, v);
    return s / static_cast<double>(C);
}

Tensor<double> random_image(const Shape& s, std::uint64_t seed) {
    Rng rng(seed);
    auto t = Tensor<double>::empty(s);
    for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = rng.uniform();
    return t;
}

/// b = clamp(a + noise) and a smooth ramp added, so SSIM is neither ~0 nor ~1.
Tensor<double> perturbed(const Tensor<double>& a, double noise, std::uint64_t seed) {
    Rng rng(seed);
    auto b = a.clone();
    const std::int64_t W = a.size(-1);
    for (std::int64_t i = 0; i < b.numel(); ++i)
        b[i] = std::min(1.0, std::max(0.0, 0.7 * b[i] + 0.2 * static_cast<double>(i % W) / W + noise * rng.normal()));
    return b;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(ssim)

BOOST_AUTO_TEST_CASE(every_fixture_mean_matches_skimage_for_both_windows) {
    const auto all = load_all();
    double worst = 0.0;
    std::string worst_case;
    // The run-time dispatched kernels (AVX2 + FMA where available), then the baseline ones.
    for (const bool baseline : {false, true}) {
        metrics::detail::force_baseline_isa() = baseline;
        const std::string isa = metrics::detail::active_isa();
        for (const auto& f : all) {
            const auto a = f.ta(), b = f.tb();
            const double u = metrics::ssim(a, b).mean;
            const double du = std::abs(u - f.ssim_uniform);
            BOOST_CHECK_MESSAGE(du <= kSkimageAtol, f.name << " uniform (" << isa << "): medimg " << u << " skimage "
                                                           << f.ssim_uniform << " |diff| " << du);
            if (du > worst) worst = du, worst_case = f.name + " uniform " + isa;
            if (f.ssim_gaussian) {
                const double g = metrics::ssim(a, b, SsimOptions::wang2004()).mean;
                const double dg = std::abs(g - *f.ssim_gaussian);
                BOOST_CHECK_MESSAGE(dg <= kSkimageAtol, f.name << " gaussian (" << isa << "): medimg " << g << " skimage "
                                                               << *f.ssim_gaussian << " |diff| " << dg);
                if (dg > worst) worst = dg, worst_case = f.name + " gaussian " + isa;
            } else {
                // skimage raises for an image smaller than the 11x11 window; so do we.
                BOOST_CHECK_EXCEPTION(metrics::ssim(a, b, SsimOptions::wang2004()), ShapeError,
                                      message_contains("11x11 window"));
            }
        }
    }
    metrics::detail::force_baseline_isa() = false;
    BOOST_TEST_MESSAGE("ssim vs skimage 0.19 over " << all.size() << " fixtures x 2 windows: largest |diff| " << worst
                                                    << " (" << worst_case << ")");
}

BOOST_AUTO_TEST_CASE(full_map_matches_skimage_elementwise_including_the_reflect_border) {
    const auto f = find(load_all(), "noise_11x13");
    BOOST_REQUIRE(!f.map_uniform.empty() && !f.map_gaussian.empty());
    const auto a = f.ta(), b = f.tb();
    auto opt = SsimOptions::skimage_default();
    opt.full = true;
    const auto u = metrics::ssim(a, b, opt);
    BOOST_REQUIRE(u.map.defined());
    MEDIMG_CHECK_CLOSE_TENSORS(u.map, Tensor<double>::from_vector(f.shape, f.map_uniform), 0.0, kSkimageAtol);
    BOOST_TEST(std::abs(u.mean - f.ssim_uniform) <= kSkimageAtol);
    auto gopt = SsimOptions::wang2004();
    gopt.full = true;
    const auto g = metrics::ssim(a, b, gopt);
    MEDIMG_CHECK_CLOSE_TENSORS(g.map, Tensor<double>::from_vector(f.shape, f.map_gaussian), 0.0, kSkimageAtol);
    BOOST_TEST(std::abs(g.mean - *f.ssim_gaussian) <= kSkimageAtol);
    BOOST_TEST(!metrics::ssim(a, b).map.defined());
    BOOST_TEST((g.window == Window::gaussian && u.window == Window::uniform));
}

BOOST_AUTO_TEST_CASE(covariance_or_crop_mixups_would_be_detected_by_the_fixtures) {
    const auto all = load_all();
    for (const char* name : {"noise_32x48", "shift_128x96", "rgb_3x24x20"}) {
        const auto f = find(all, name);
        // The transcription with the right conventions reproduces skimage...
        const Variant uni{false, 7, 1.5, true, 3}, gau{true, 11, 1.5, false, 5};
        BOOST_TEST(std::abs(reference_ssim(f, uni) - f.ssim_uniform) <= kSkimageAtol);
        BOOST_TEST(std::abs(reference_ssim(f, gau) - *f.ssim_gaussian) <= kSkimageAtol);
        // ...and each plausible mistake moves the mean by far more than the tolerance.
        const Variant wrong[] = {
            {false, 7, 1.5, false, 3},  // uniform with population covariance
            {true, 11, 1.5, true, 5},   // Gaussian with sample covariance (NP = 121)
            {false, 7, 1.5, true, 0},   // no border crop
            {false, 7, 1.5, true, 6},   // cropping the whole window instead of its radius
            {true, 11, 1.5, false, 3},  // Gaussian cropped by the uniform window's radius
        };
        const double expected[] = {f.ssim_uniform, *f.ssim_gaussian, f.ssim_uniform, f.ssim_uniform, *f.ssim_gaussian};
        for (std::size_t i = 0; i < std::size(wrong); ++i) {
            const double d = std::abs(reference_ssim(f, wrong[i]) - expected[i]);
            BOOST_TEST_MESSAGE(name << " variant " << i << " moves the mean by " << d);
            BOOST_CHECK_MESSAGE(d > 10 * kDetectable, name << " variant " << i << " only moves the mean by " << d);
        }
    }
}

BOOST_AUTO_TEST_CASE(fast_path_matches_the_direct_transcription_on_odd_sizes_and_windows) {
    // Sizes cover: side = window, several 128-column strips, several row bands per thread (> 1024
    // rows), odd sides.
    const std::vector<std::pair<std::int64_t, std::int64_t>> sizes = {{7, 7},    {11, 11},  {9, 31},   {40, 17},
                                                                      {13, 600}, {700, 14}, {1100, 9}, {77, 301}};
    struct Case {
        SsimOptions opt;
        Variant ref;
    };
    std::vector<Case> cases;
    cases.push_back({SsimOptions::skimage_default(), Variant{false, 7, 1.5, true, 3}});
    cases.push_back({SsimOptions::wang2004(), Variant{true, 11, 1.5, false, 5}});
    for (int w : {3, 5, 9}) {  // radii other than the compiled-in 3 and 5 take the generic path
        SsimOptions o;
        o.win_size = w;
        cases.push_back({o, Variant{false, w, 1.5, true, (w - 1) / 2}});
    }
    {
        SsimOptions o = SsimOptions::wang2004();
        o.sigma = 1.0;  // radius int(3.5 + 0.5) = 4: a 9-tap Gaussian
        cases.push_back({o, Variant{true, 9, 1.0, false, 4}});
    }
    double worst = 0.0;
    std::uint64_t seed = 1;
    for (auto [H, W] : sizes) {
        const auto a = random_image({H, W}, seed++);
        const auto b = perturbed(a, 0.1, seed++);
        for (auto c : cases) {
            const int side = c.opt.window_side();
            if (H < side || W < side) continue;
            c.opt.full = true;
            std::vector<double> ref_map;
            const double ref = reference_ssim(a.data(), b.data(), H, W, c.ref, &ref_map);
            const auto got = metrics::ssim(a, b, c.opt);
            const double d = std::abs(got.mean - ref);
            worst = std::max(worst, d);
            BOOST_CHECK_MESSAGE(d <= kReferenceAtol, H << "x" << W << " side " << side << ": " << got.mean << " vs " << ref);
            MEDIMG_CHECK_CLOSE_TENSORS(got.map, Tensor<double>::from_vector({H, W}, ref_map), 0.0, kReferenceAtol);
            c.opt.full = false;  // the crop-only path (no reflected pixels) gives the same mean
            BOOST_TEST(std::abs(metrics::ssim(a, b, c.opt).mean - got.mean) <= kReferenceAtol);
        }
    }
    BOOST_TEST_MESSAGE("fast path vs direct transcription: largest |diff| " << worst);
}

BOOST_AUTO_TEST_CASE(baseline_and_runtime_dispatched_kernels_agree) {
    // Where the CPU has AVX2 + FMA the hot loops run a second compilation of the same code; FMA
    // changes rounding only in the last bits. Elsewhere both runs take the baseline path.
    BOOST_TEST_MESSAGE("ssim kernels in use: " << metrics::detail::active_isa());
    const auto a = random_image({3, 61, 290}, 31);
    const auto b = perturbed(a, 0.1, 32);
    SsimOptions odd;
    odd.win_size = 5;
    for (auto opt : {SsimOptions::skimage_default(), SsimOptions::wang2004(), odd}) {
        opt.full = true;
        const auto fast = metrics::ssim(a, b, opt);
        metrics::detail::force_baseline_isa() = true;
        const auto base = metrics::ssim(a, b, opt);
        const double same = metrics::ssim(a, a, opt).mean;
        metrics::detail::force_baseline_isa() = false;
        BOOST_TEST(std::abs(fast.mean - base.mean) <= kReferenceAtol);
        MEDIMG_CHECK_CLOSE_TENSORS(fast.map, base.map, 0.0, kReferenceAtol);
        BOOST_TEST(same == 1.0);
    }
    const auto big_a = random_image({170, 175}, 33), big_b = perturbed(big_a, 0.1, 34);
    const double ms_fast = metrics::ms_ssim(big_a, big_b);
    metrics::detail::force_baseline_isa() = true;
    const double ms_base = metrics::ms_ssim(big_a, big_b);
    metrics::detail::force_baseline_isa() = false;
    BOOST_TEST(std::abs(ms_fast - ms_base) <= kReferenceAtol);
}

BOOST_AUTO_TEST_CASE(float32_arithmetic_stays_close_to_float64_and_keeps_identical_images_at_one) {
    // SsimOptions::arithmetic = float32 trades the ~1e-13 agreement for speed; measured here: the
    // means within kFloat32MeanAtol of the exact mode (and so of skimage) on every fixture and on
    // random images (several row bands and strips, odd sides, windows other than 7 and 11), map
    // pixels within kFloat32MapAtol, both instruction-set paths.
    constexpr double kFloat32MeanAtol = 2e-5, kFloat32MapAtol = 5e-4;
    double worst_mean = 0.0, worst_map = 0.0;
    auto compare = [&](const Tensor<double>& a, const Tensor<double>& b, SsimOptions o, const std::string& what) {
        o.full = true;
        const auto exact = metrics::ssim(a, b, o);
        o.arithmetic = metrics::Arithmetic::float32;
        const auto fast = metrics::ssim(a, b, o);
        const double dm = std::abs(fast.mean - exact.mean);
        double dmap = 0.0;
        for (std::int64_t i = 0; i < exact.map.numel(); ++i) dmap = std::max(dmap, std::abs(fast.map[i] - exact.map[i]));
        BOOST_CHECK_MESSAGE(dm <= kFloat32MeanAtol, what << ": float32 mean " << fast.mean << " vs " << exact.mean);
        BOOST_CHECK_MESSAGE(dmap <= kFloat32MapAtol, what << ": float32 map differs by " << dmap);
        o.full = false;  // the crop-only path
        BOOST_TEST(std::abs(metrics::ssim(a, b, o).mean - fast.mean) <= kFloat32MeanAtol);
        worst_mean = std::max(worst_mean, dm), worst_map = std::max(worst_map, dmap);
    };
    SsimOptions w5;
    w5.win_size = 5;
    for (const bool baseline : {false, true}) {
        metrics::detail::force_baseline_isa() = baseline;
        for (const auto& f : load_all())
            for (const auto& o : {SsimOptions::skimage_default(), SsimOptions::wang2004()})
                if (f.shape.dim(-1) >= o.window_side() && f.shape.dim(-2) >= o.window_side()) compare(f.ta(), f.tb(), o, f.name);
        std::uint64_t seed = 90;
        for (const Shape& s : {Shape{300, 257}, Shape{3, 61, 290}, Shape{1100, 9}, Shape{11, 11}}) {
            const auto a = random_image(s, seed++);
            for (double noise : {0.02, 0.2}) {
                const auto b = perturbed(a, noise, seed++);
                for (const auto& o : {SsimOptions::skimage_default(), SsimOptions::wang2004(), w5})
                    if (s.dim(-1) >= o.window_side()) compare(a, b, o, s.to_string());
            }
            SsimOptions o = SsimOptions::wang2004();
            o.arithmetic = metrics::Arithmetic::float32;
            if (s.dim(-1) >= 11) BOOST_TEST(metrics::ssim(a, a.clone(), o).mean == 1.0);
        }
    }
    metrics::detail::force_baseline_isa() = false;
    BOOST_TEST_MESSAGE("float32 arithmetic vs float64: largest |diff| of the mean " << worst_mean << ", of a map pixel "
                                                                                    << worst_map);
}

BOOST_AUTO_TEST_CASE(thread_count_does_not_change_the_result_beyond_rounding) {
    const auto a = random_image({300, 257}, 11);
    const auto b = perturbed(a, 0.05, 12);
    const int before = num_threads();
    set_num_threads(1);
    const double u1 = metrics::ssim(a, b).mean, g1 = metrics::ssim(a, b, SsimOptions::wang2004()).mean;
    set_num_threads(std::max(2, before));
    const double u2 = metrics::ssim(a, b).mean, g2 = metrics::ssim(a, b, SsimOptions::wang2004()).mean;
    const double u3 = metrics::ssim(a, b).mean;
    set_num_threads(before);
    BOOST_TEST(std::abs(u1 - u2) <= kReferenceAtol);
    BOOST_TEST(std::abs(g1 - g2) <= kReferenceAtol);
    BOOST_TEST(u2 == u3);  // a fixed thread count is bit-identical run to run
}

BOOST_AUTO_TEST_CASE(identical_images_give_exactly_one) {
    for (const Shape& s : {Shape{7, 7}, Shape{64, 48}, Shape{3, 33, 21}}) {
        const auto a = random_image(s, 5);
        for (auto opt : {SsimOptions::skimage_default(), SsimOptions::wang2004()}) {
            if (s.dim(-1) < opt.window_side()) continue;
            opt.full = true;
            const auto r = metrics::ssim(a, a.clone(), opt);
            BOOST_TEST(r.mean == 1.0);
            std::int64_t not_one = 0;
            for (std::int64_t i = 0; i < r.map.numel(); ++i) not_one += r.map[i] != 1.0;
            BOOST_TEST(not_one == 0);
        }
        BOOST_TEST(metrics::ssim(a.cast<float>(), a.cast<float>()).mean == 1.0);
    }
    const auto big = random_image({170, 180}, 6);
    BOOST_TEST(metrics::ms_ssim(big, big.clone()) == 1.0);
}

BOOST_AUTO_TEST_CASE(float_images_are_computed_in_double) {
    const auto f = find(load_all(), "blur_63x65");
    const auto af = f.ta().cast<float>(), bf = f.tb().cast<float>();
    for (const auto& opt : {SsimOptions::skimage_default(), SsimOptions::wang2004()}) {
        const double sf = metrics::ssim(af, bf, opt).mean;
        BOOST_TEST(sf == metrics::ssim(af.cast<double>(), bf.cast<double>(), opt).mean);  // bit for bit
        const double ref = opt.window == Window::uniform ? f.ssim_uniform : *f.ssim_gaussian;
        BOOST_TEST(std::abs(sf - ref) <= kFloatInputAtol);
    }
}

BOOST_AUTO_TEST_CASE(multichannel_is_the_mean_of_per_channel_ssim) {
    const auto f = find(load_all(), "rgb_3x24x20");
    const auto a = f.ta(), b = f.tb();
    for (auto opt : {SsimOptions::skimage_default(), SsimOptions::wang2004()}) {
        opt.full = true;
        const auto all = metrics::ssim(a, b, opt);
        BOOST_TEST(all.map.shape() == a.shape());
        double s = 0.0;
        for (std::int64_t c = 0; c < 3; ++c) {
            const auto one = metrics::ssim(a.slice0(c, 1).reshape({24, 20}), b.slice0(c, 1).reshape({24, 20}), opt);
            s += one.mean;
            MEDIMG_CHECK_CLOSE_TENSORS(one.map, all.map.slice0(c, 1).reshape({24, 20}), 0.0, 0.0);
        }
        BOOST_TEST(std::abs(all.mean - s / 3.0) <= 1e-15);
        // (1, H, W) is the same as (H, W).
        const auto c0 = metrics::ssim(a.slice0(0, 1), b.slice0(0, 1), opt).mean;
        BOOST_TEST(c0 == metrics::ssim(a.slice0(0, 1).reshape({24, 20}), b.slice0(0, 1).reshape({24, 20}), opt).mean);
    }
}

BOOST_AUTO_TEST_CASE(data_range_scales_the_constants) {
    // SSIM is invariant to scaling the images and data_range together (C1, C2 scale with L^2).
    const auto f = find(load_all(), "contrast_48x40");
    auto a = f.ta(), b = f.tb();
    auto a255 = a.clone(), b255 = b.clone();
    for (std::int64_t i = 0; i < a.numel(); ++i) a255[i] *= 255.0, b255[i] *= 255.0;
    SsimOptions o;
    o.data_range = 255.0;
    BOOST_TEST(std::abs(metrics::ssim(a255, b255, o).mean - f.ssim_uniform) <= kSkimageAtol);
    o.data_range = 2.0;  // a wrong range changes the value
    BOOST_TEST(std::abs(metrics::ssim(a, b, o).mean - f.ssim_uniform) > kDetectable);
}

BOOST_AUTO_TEST_CASE(rejects_bad_shapes_and_options_with_ssim_prefix) {
    const auto a = random_image({32, 32}, 1);
    BOOST_CHECK_EXCEPTION(metrics::ssim(a, random_image({32, 33}, 2)), ShapeError,
                          message_contains("ssim: image shapes differ: a [32,32] vs b [32,33]"));
    BOOST_CHECK_EXCEPTION(metrics::ssim(random_image({6, 40}, 1), random_image({6, 40}, 2)), ShapeError,
                          message_contains("ssim: images a [6,40] and b [6,40] are smaller than the 7x7 window"));
    BOOST_CHECK_EXCEPTION(metrics::ssim(random_image({40, 6}, 1), random_image({40, 6}, 2)), ShapeError,
                          message_contains("H and W must be >= 7"));
    BOOST_CHECK_EXCEPTION(metrics::ssim(random_image({10, 12}, 1), random_image({10, 12}, 2), SsimOptions::wang2004()),
                          ShapeError, message_contains("smaller than the 11x11 window (gaussian 11x11 sigma 1.5"));
    BOOST_CHECK_EXCEPTION(metrics::ssim(random_image({2, 3, 16, 16}, 1), random_image({2, 3, 16, 16}, 2)), ShapeError,
                          message_contains("ssim: expected (H, W) or (C, H, W) images, got rank 4"));
    BOOST_CHECK_EXCEPTION(metrics::ssim(random_image({16}, 1), random_image({16}, 2)), ShapeError,
                          message_contains("got rank 1"));
    BOOST_CHECK_EXCEPTION(metrics::ssim(random_image({0, 16, 16}, 1), random_image({0, 16, 16}, 2)), ShapeError,
                          message_contains("ssim: (C, H, W) images need C >= 1"));
    BOOST_CHECK_EXCEPTION(metrics::ssim(Tensor<double>(), Tensor<double>()), ShapeError,
                          message_contains("ssim: undefined"));
    SsimOptions o;
    o.data_range = 0.0;
    BOOST_CHECK_EXCEPTION(metrics::ssim(a, a, o), ValueError, message_contains("ssim: data_range must be > 0, got 0"));
    o.data_range = -1.0;
    BOOST_CHECK_EXCEPTION(metrics::ssim(a, a, o), ValueError, message_contains("got -1"));
    o = {};
    o.win_size = 8;
    BOOST_CHECK_EXCEPTION(metrics::ssim(a, a, o), ValueError,
                          message_contains("ssim: win_size must be odd and in [3, 129], got 8"));
    o.win_size = 1;
    BOOST_CHECK_EXCEPTION(metrics::ssim(a, a, o), ValueError, message_contains("got 1"));
    o = SsimOptions::wang2004();
    o.sigma = 0.0;
    BOOST_CHECK_EXCEPTION(metrics::ssim(a, a, o), ValueError, message_contains("ssim: Gaussian sigma"));
    o = {};
    o.k2 = -0.03;
    BOOST_CHECK_EXCEPTION(metrics::ssim(a, a, o), ValueError, message_contains("ssim: K1 and K2 must be >= 0"));
}

BOOST_AUTO_TEST_CASE(mean_absolute_error_matches_hand_computed_values) {
    auto a = Tensor<double>::from_vector({2, 3}, {0.0, 0.5, 1.0, 0.25, 0.75, 0.125});
    auto b = Tensor<double>::from_vector({2, 3}, {0.5, 0.5, 0.0, 0.5, 0.25, 0.0});
    // |diffs| = 0.5, 0, 1, 0.25, 0.5, 0.125 -> 2.375 / 6
    BOOST_TEST(metrics::mean_absolute_error(a, b) == 2.375 / 6.0);
    BOOST_TEST(metrics::mean_absolute_error(a, a) == 0.0);
    BOOST_TEST(metrics::mean_absolute_error(a.cast<float>(), b.cast<float>()) == 2.375 / 6.0);
    // Many blocks (> 65536 elements): every |diff| is 0.25.
    auto c = Tensor<double>::full({3, 300, 300}, 0.5), d = Tensor<double>::full({3, 300, 300}, 0.25);
    BOOST_TEST(metrics::mean_absolute_error(c, d) == 0.25);
    BOOST_CHECK_EXCEPTION(metrics::mean_absolute_error(a, c), ShapeError,
                          message_contains("mean_absolute_error: shapes differ: a [2,3] vs b [3,300,300]"));
    BOOST_CHECK_EXCEPTION(metrics::mean_absolute_error(Tensor<double>::zeros({0, 4}), Tensor<double>::zeros({0, 4})),
                          ShapeError, message_contains("empty"));
}

BOOST_AUTO_TEST_CASE(ms_ssim_matches_the_numpy_reference_fixture) {
    const auto f = find(load_all(), "ms_161x170");
    BOOST_REQUIRE(f.ms_ssim.has_value());
    const double got = metrics::ms_ssim(f.ta(), f.tb());
    BOOST_TEST_MESSAGE("ms_ssim " << got << " vs numpy reference " << *f.ms_ssim << " |diff| "
                                  << std::abs(got - *f.ms_ssim));
    BOOST_TEST(std::abs(got - *f.ms_ssim) <= kSkimageAtol);
    // One scale with weight 1 is plain Gaussian SSIM (the scale-0 term is skimage's value).
    metrics::MsSsimOptions one;
    one.weights = {1.0};
    BOOST_TEST(std::abs(metrics::ms_ssim(f.ta(), f.tb(), one) - *f.ssim_gaussian) <= kSkimageAtol);
}

BOOST_AUTO_TEST_CASE(ms_ssim_is_in_unit_interval_zero_for_inverted_and_checks_its_minimum_size) {
    const auto a = random_image({161, 200}, 21);
    const auto b = perturbed(a, 0.2, 22);
    const double v = metrics::ms_ssim(a, b);
    BOOST_TEST(v > 0.0);
    BOOST_TEST(v <= 1.0);
    BOOST_TEST(v < metrics::ms_ssim(a, perturbed(a, 0.02, 23)) + 1e-12);
    // An inverted image has negative contrast-structure at the fine scales: clamped to 0, not NaN.
    auto inv = a.clone();
    for (std::int64_t i = 0; i < inv.numel(); ++i) inv[i] = 1.0 - inv[i];
    BOOST_TEST(metrics::ms_ssim(a, inv) == 0.0);
    // (C, H, W): the mean of per-channel values.
    auto a3 = Tensor<double>::empty({2, 161, 200}), b3 = Tensor<double>::empty({2, 161, 200});
    for (std::int64_t i = 0; i < a.numel(); ++i)
        a3[i] = a[i], b3[i] = b[i], a3[a.numel() + i] = a[i], b3[a.numel() + i] = a[i];
    BOOST_TEST(std::abs(metrics::ms_ssim(a3, b3) - 0.5 * (v + 1.0)) <= 1e-15);
    // Sides must exceed (11 - 1) * 2^4 = 160.
    const auto small = random_image({160, 200}, 24);
    BOOST_CHECK_EXCEPTION(metrics::ms_ssim(small, small), ShapeError,
                          message_contains("ms_ssim: images a [160,200] and b [160,200] are too small for 5 scales with a "
                                           "11x11 window; H and W must be > 160"));
    const auto narrow = random_image({200, 150}, 25);
    BOOST_CHECK_EXCEPTION(metrics::ms_ssim(narrow, narrow), ShapeError, message_contains("must be > 160"));
    BOOST_CHECK_EXCEPTION(metrics::ms_ssim(a, random_image({161, 201}, 1)), ShapeError,
                          message_contains("ms_ssim: image shapes differ"));
    metrics::MsSsimOptions o;
    o.weights = {};
    BOOST_CHECK_EXCEPTION(metrics::ms_ssim(a, b, o), ValueError, message_contains("ms_ssim: need 1 to 12 scale weights"));
    o.weights = {0.5, -0.5};
    BOOST_CHECK_EXCEPTION(metrics::ms_ssim(a, b, o), ValueError, message_contains("weights must be >= 0"));
    o = {};
    o.data_range = 0.0;
    BOOST_CHECK_EXCEPTION(metrics::ms_ssim(a, b, o), ValueError, message_contains("ms_ssim: data_range must be > 0"));
}

BOOST_AUTO_TEST_CASE(window_descriptions_name_the_convention) {
    BOOST_TEST(metrics::describe_window(Window::uniform) == "uniform 7x7 (skimage default, sample covariance)");
    BOOST_TEST(metrics::describe_window(Window::gaussian) ==
               "gaussian 11x11 sigma 1.5 (Wang et al. 2004, population covariance)");
    BOOST_TEST(SsimOptions::wang2004().window_side() == 11);
    BOOST_TEST(SsimOptions::skimage_default().window_side() == 7);
}

BOOST_AUTO_TEST_SUITE_END()
