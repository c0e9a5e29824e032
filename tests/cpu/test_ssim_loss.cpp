// SPDX-License-Identifier: MIT
// Tests for autograd/ssim_loss.hpp: the value is metrics::ssim's mean for every accepted rank, the
// backward matches central finite differences in double for both conventions and several window
// sizes, the gradient vanishes at the optimum, and 1 - ssim drives a small optimisation.
#include <boost/test/unit_test.hpp>

#include <boost/mpl/list.hpp>

#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "helpers.hpp"
#include "medimg/autograd/functions.hpp"
#include "medimg/autograd/grad_check.hpp"
#include "medimg/autograd/ssim_loss.hpp"
#include "medimg/metrics/ssim.hpp"
#include "reference.hpp"

using namespace medimg;
using medimg::metrics::SsimOptions;
using medimg::metrics::Window;
using medimg::test::message_contains;
namespace ref = medimg::test::ref;
using V = autograd::Var<double, Cpu>;
using Vs = std::vector<V>;

namespace {

// The value is metrics::ssim's own result for (H, W) and (C, H, W) (bit for bit); for (N, C, H, W)
// it is the mean over N * C planes, which equals the mean of per-image means up to summation order.
constexpr double kSummationTol = 1e-15;
// A float forward/backward vs the double one: the backward rounds its float64 result to float.
constexpr double kFloatGradRtol = 1e-5;

V image(const Shape& s, std::uint64_t seed, bool grad = true, double hi = 1.0) {
    return V(ref::random<double>(s, seed, 0.0, hi), grad);
}

SsimOptions uniform(int win) {
    SsimOptions o;
    o.win_size = win;
    return o;
}
SsimOptions gaussian(double sigma) {
    SsimOptions o = SsimOptions::wang2004();
    o.sigma = sigma;
    return o;
}

void expect_gradients_match(const SsimOptions& o, const Vs& in) {
    const auto r = autograd::grad_check([&](const Vs& v) { return autograd::ssim(v[0], v[1], o); }, in, 1e-6,
                                        test::kGradRtol, test::kGradAtol);
    BOOST_CHECK_MESSAGE(r.ok, metrics::describe_window(o.window, o.win_size, o.sigma)
                                  << ", shape " << in[0].shape() << ": " << r.worst << " (max abs error "
                                  << r.max_abs_error << ")");
}

}  // namespace

BOOST_AUTO_TEST_SUITE(ssim_loss)

BOOST_AUTO_TEST_CASE(value_is_metrics_ssim_for_every_rank) {
    for (const auto& o : {SsimOptions::skimage_default(), SsimOptions::wang2004()}) {
        const auto a = ref::random<double>({2, 3, 16, 17}, 1, 0.0, 1.0);
        const auto b = ref::random<double>({2, 3, 16, 17}, 2, 0.0, 1.0);
        // (N, C, H, W): the mean over images of metrics::ssim per image.
        double per_image = 0.0;
        for (std::int64_t n = 0; n < 2; ++n)
            per_image += metrics::ssim(a.slice0(n, 1).reshape({3, 16, 17}), b.slice0(n, 1).reshape({3, 16, 17}), o).mean;
        per_image /= 2.0;
        const double v4 = autograd::ssim(V(a), V(b), o).value().item();
        BOOST_TEST(std::abs(v4 - per_image) <= kSummationTol);
        // (C, H, W) and (H, W): exactly metrics::ssim.
        const auto a3 = a.slice0(0, 1).reshape({3, 16, 17}), b3 = b.slice0(0, 1).reshape({3, 16, 17});
        BOOST_TEST(autograd::ssim(V(a3), V(b3), o).value().item() == metrics::ssim(a3, b3, o).mean);
        const auto a2 = a.slice0(0, 1).reshape({48, 17}), b2 = b.slice0(0, 1).reshape({48, 17});
        BOOST_TEST(autograd::ssim(V(a2), V(b2), o).value().item() == metrics::ssim(a2, b2, o).mean);
        BOOST_TEST(autograd::ssim(V(a2), V(b2), o).value().shape() == Shape{});
    }
    // float inputs: metrics::ssim's float result, rounded to float.
    const auto af = ref::random<float>({20, 21}, 3, 0.0, 1.0), bf = ref::random<float>({20, 21}, 4, 0.0, 1.0);
    BOOST_TEST(autograd::ssim(autograd::Var<float, Cpu>(af), autograd::Var<float, Cpu>(bf)).value().item() ==
               static_cast<float>(metrics::ssim(af, bf).mean));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(backward_matches_finite_differences_uniform_window, T, boost::mpl::list<double>) {
    expect_gradients_match(uniform(3), {image({9, 10}, 10), image({9, 10}, 11)});
    expect_gradients_match(uniform(7), {image({9, 10}, 12), image({9, 10}, 13)});
    expect_gradients_match(uniform(5), {image({2, 2, 9, 10}, 14), image({2, 2, 9, 10}, 15)});  // (N, C, H, W)
    expect_gradients_match(uniform(3), {image({2, 9, 10}, 16), image({2, 9, 10}, 17)});        // (C, H, W)
}

BOOST_AUTO_TEST_CASE_TEMPLATE(backward_matches_finite_differences_gaussian_window, T, boost::mpl::list<double>) {
    expect_gradients_match(gaussian(0.5), {image({9, 10}, 20), image({9, 10}, 21)});   // 5x5 taps
    expect_gradients_match(gaussian(0.8), {image({9, 10}, 22), image({9, 10}, 23)});   // 7x7 taps
    expect_gradients_match(SsimOptions::wang2004(), {image({13, 14}, 24), image({13, 14}, 25)});  // 11x11
}

BOOST_AUTO_TEST_CASE_TEMPLATE(backward_matches_finite_differences_with_other_constants, T, boost::mpl::list<double>) {
    SsimOptions o = uniform(5);
    o.data_range = 2.0;
    o.k1 = 0.02;
    o.k2 = 0.05;
    expect_gradients_match(o, {image({9, 10}, 30, true, 2.0), image({9, 10}, 31, true, 2.0)});
    // Only one input requires grad; the other gets nothing.
    auto x = image({9, 10}, 32, false), y = image({9, 10}, 33, true);
    expect_gradients_match(uniform(7), {x, y});
    autograd::ssim(x, y, uniform(7)).backward();
    BOOST_TEST(!x.grad().defined());
    BOOST_TEST(y.grad().defined());
    // The same Var on both sides: both gradient paths add into it (d/dx SSIM(x, x) = 0).
    auto z = image({9, 10}, 34);
    autograd::ssim(z, z, uniform(3)).backward();
    for (std::int64_t i = 0; i < z.grad().numel(); ++i) BOOST_TEST(std::abs(z.grad()[i]) <= 1e-12);
}

BOOST_AUTO_TEST_CASE(gradient_vanishes_when_the_images_are_equal) {
    const auto a = ref::random<double>({12, 13}, 40, 0.0, 1.0);
    for (const auto& o : {uniform(7), gaussian(0.8)}) {
        auto x = V(a.clone(), true);
        auto y = V(a.clone(), true);
        auto s = autograd::ssim(x, y, o);
        BOOST_TEST(s.value().item() == 1.0);
        s.backward();
        for (std::int64_t i = 0; i < a.numel(); ++i) {
            BOOST_TEST(std::abs(x.grad()[i]) <= 1e-12);
            BOOST_TEST(std::abs(y.grad()[i]) <= 1e-12);
        }
    }
}

BOOST_AUTO_TEST_CASE(float_gradient_agrees_with_double) {
    const auto a = ref::random<double>({15, 16}, 50, 0.0, 1.0), b = ref::random<double>({15, 16}, 51, 0.0, 1.0);
    auto xd = V(a, true);
    autograd::ssim(xd, V(b)).backward();
    auto xf = autograd::Var<float, Cpu>(a.cast<float>(), true);
    autograd::ssim(xf, autograd::Var<float, Cpu>(b.cast<float>())).backward();
    double scale = 0.0;
    for (std::int64_t i = 0; i < a.numel(); ++i) scale = std::max(scale, std::abs(xd.grad()[i]));
    for (std::int64_t i = 0; i < a.numel(); ++i)
        BOOST_TEST(std::abs(static_cast<double>(xf.grad()[i]) - xd.grad()[i]) <= kFloatGradRtol * scale);
}

BOOST_AUTO_TEST_CASE(one_minus_ssim_drives_x_toward_y) {
    // y: a smooth pattern; x starts as flat grey plus noise. Plain gradient descent on 1 - SSIM.
    const std::int64_t H = 24, W = 24;
    auto yt = Tensor<double, Cpu>::empty({1, 1, H, W});
    for (std::int64_t i = 0; i < H; ++i)
        for (std::int64_t j = 0; j < W; ++j) yt[i * W + j] = 0.5 + 0.3 * std::sin(0.5 * i) * std::cos(0.4 * j);
    const V y(yt);
    auto x = V::parameter(ref::random<double>({1, 1, H, W}, 60, 0.4, 0.6));
    auto mae = [&] {
        double s = 0.0;
        for (std::int64_t i = 0; i < H * W; ++i) s += std::abs(x.value()[i] - yt[i]);
        return s / static_cast<double>(H * W);
    };
    const double ssim0 = autograd::ssim(x, y).value().item(), mae0 = mae();
    double prev = 1.0 - ssim0;
    bool monotone = true;
    for (int step = 0; step < 40; ++step) {
        x.zero_grad();
        auto loss = autograd::add_scalar(autograd::scale(autograd::ssim(x, y), -1.0), 1.0);  // 1 - SSIM
        loss.backward();
        monotone = monotone && loss.value().item() <= prev;
        prev = loss.value().item();
        autograd::NoGrad guard;
        for (std::int64_t i = 0; i < H * W; ++i) x.value()[i] -= 10.0 * x.grad()[i];  // plain gradient descent
    }
    const double ssim1 = autograd::ssim(x, y).value().item();
    BOOST_TEST_MESSAGE("SSIM " << ssim0 << " -> " << ssim1 << ", MAE " << mae0 << " -> " << mae());
    BOOST_TEST(ssim0 < 0.1);
    BOOST_TEST(ssim1 > 0.999);
    BOOST_TEST(monotone);
    BOOST_TEST(mae() < 0.05 * mae0);  // x itself moved onto y, not only its local structure
}

BOOST_AUTO_TEST_CASE(rejects_bad_shapes_and_options) {
    BOOST_CHECK_EXCEPTION(autograd::ssim(image({9, 10}, 1), image({10, 9}, 2)), ShapeError,
                          message_contains("autograd::ssim: shapes differ"));
    BOOST_CHECK_EXCEPTION(autograd::ssim(image({90}, 1), image({90}, 2)), ShapeError,
                          message_contains("autograd::ssim: expected (H, W)"));
    BOOST_CHECK_EXCEPTION(autograd::ssim(image({1, 1, 1, 9, 10}, 1), image({1, 1, 1, 9, 10}, 2)), ShapeError,
                          message_contains("autograd::ssim: expected (H, W)"));
    BOOST_CHECK_EXCEPTION(autograd::ssim(image({6, 10}, 1), image({6, 10}, 2)), ShapeError,
                          message_contains("smaller than the 7x7 window"));
    SsimOptions bad;
    bad.win_size = 4;
    BOOST_CHECK_EXCEPTION(autograd::ssim(image({9, 10}, 1), image({9, 10}, 2), bad), ValueError,
                          message_contains("ssim: win_size must be odd"));
}

BOOST_AUTO_TEST_SUITE_END()
