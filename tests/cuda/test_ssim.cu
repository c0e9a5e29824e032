// SPDX-License-Identifier: MIT
// Tests for SSIM on the GPU (cuda/ssim.cuh, kernels/ssim.cuh) against the CPU reference
// (metrics/ssim.hpp, autograd/ssim_loss.hpp, themselves pinned to scikit-image by fixtures) on the
// same seeded images, float and double, both conventions (uniform 7x7 sample covariance; Gaussian
// 11x11 sigma 1.5 population covariance) plus other window sizes: the mean and the full map, the
// chunking over many planes, MS-SSIM, MAE, the differentiable SSIM's value and gradients, and the
// shared error messages. Every comparison reports its largest difference and flat index.
// Mirrors tests/cpu/test_ssim.cpp and tests/cpu/test_ssim_loss.cpp.
#include <boost/mpl/list.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cuda_helpers.hpp"
#include "medimg/autograd/functions.hpp"
#include "medimg/autograd/ssim_loss.hpp"
#include "medimg/metrics/ssim.hpp"
#include "reference.hpp"

using namespace medimg;
using medimg::metrics::SsimOptions;
using medimg::metrics::Window;
using medimg::test::has_cuda_device;
using medimg::test::message_contains;
namespace ref = medimg::test::ref;
namespace utf = boost::unit_test;

using float_types = boost::mpl::list<float, double>;

namespace {

// SSIM map and mean, GPU vs CPU: both widen the same inputs to float64 and use the same formula;
// the CPU's uniform window keeps running sums (add the entering value, subtract the leaving one)
// along up to ~500 rows and columns, whose rounding reaches ~1e-13 in the local moments; SSIM
// divides by s_x^2 + s_y^2 + C2 >= C2 = 9e-4, so a pixel may move by ~1e-10 in flat regions.
// 1e-9 covers that with margin; a wrong tap, border index or constant moves values by >= 1e-4.
constexpr double kSsimAtol = 1e-9;
// MAE: the same |a - b| in double, summed in another order over a few thousand terms.
constexpr double kMaeRtol = 1e-12;
// Gradients in double: the same float64 steps in the same order of taps; only contraction into
// FMAs differs (~1e-16 relative per step), amplified by the same 1 / C2 as above.
constexpr double kGradDoubleRtol = 1e-9;
// Gradients and values in float: the float64 result is rounded to float once at the end, so the
// two sides agree to within one float ulp (1.2e-7 relative); 1e-6 leaves room for two.
constexpr double kGradFloatRtol = 1e-6;

template <class T>
constexpr double grad_rtol() {
    return std::is_same_v<T, float> ? kGradFloatRtol : kGradDoubleRtol;
}

/// Two related images in [0, 1]: b = clamp(0.7 a + 0.3 noise), so SSIM is neither ~0 nor ~1.
template <class T>
std::pair<Tensor<T, Cpu>, Tensor<T, Cpu>> image_pair(const Shape& s, std::uint64_t seed) {
    auto a = ref::random<T>(s, seed, 0.0, 1.0);
    const auto noise = ref::random<T>(s, seed + 1000, -0.5, 1.5);
    auto b = Tensor<T, Cpu>::empty(s);
    for (std::int64_t i = 0; i < a.numel(); ++i)
        b[i] = std::min(T(1), std::max(T(0), static_cast<T>(0.7 * static_cast<double>(a[i]) + 0.3 * static_cast<double>(noise[i]))));
    return {a, b};
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

/// The largest |g| of a host tensor (the scale for gradient tolerances).
template <class T>
double max_abs(const Tensor<T, Cpu>& t) {
    double m = 0.0;
    for (std::int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::abs(static_cast<double>(t[i])));
    return m;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(cuda_ssim)

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE_TEMPLATE(ssim_mean_and_map_match_the_cpu, T, float_types) {
    struct Case {
        Shape s;
        SsimOptions o;
    };
    const std::vector<Case> cases = {
        {{37, 53}, uniform(7)},        // skimage's default, odd sizes
        {{3, 40, 31}, uniform(7)},     // channels: the mean of per-channel means
        {{2, 24, 24}, uniform(3)},
        {{29, 33}, uniform(11)},
        {{37, 53}, gaussian(1.5)},     // Wang et al. 2004
        {{3, 40, 31}, gaussian(1.5)},
        {{26, 30}, gaussian(0.8)},     // radius 3
        {{11, 11}, gaussian(1.5)},     // the window exactly: a 1x1 crop, reflect everywhere else
        {{20, 256, 256}, uniform(7)},  // 1.3 M pixels: two chunks of planes
    };
    std::uint64_t seed = 300;
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT(metrics::describe_window(c.o.window, c.o.win_size, c.o.sigma) << ", images " << c.s) {
            const auto [a, b] = image_pair<T>(c.s, seed++);
            SsimOptions o = c.o;
            o.full = true;
            const auto cpu = metrics::ssim(a, b, o);
            const auto gpu = metrics::ssim(a.template to<Cuda>(), b.template to<Cuda>(), o);
            BOOST_CHECK(gpu.window == cpu.window);
            BOOST_TEST_MESSAGE("ssim mean: cpu " << cpu.mean << ", gpu " << gpu.mean);
            BOOST_CHECK_MESSAGE(std::abs(gpu.mean - cpu.mean) <= kSsimAtol,
                                "ssim mean: |gpu - cpu| = " << std::abs(gpu.mean - cpu.mean));
            BOOST_CHECK(gpu.map.shape() == cpu.map.shape());
            MEDIMG_CHECK_GPU_CPU("ssim map (border included)", gpu.map, cpu.map, 0.0, kSsimAtol);
            o.full = false;
            BOOST_TEST(metrics::ssim(a.template to<Cuda>(), b.template to<Cuda>(), o).mean == gpu.mean);  // map or not, same sums
        }
    }
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(identical_images_give_exactly_one_on_the_gpu) {
    const auto a = ref::random<double>({2, 30, 40}, 77, 0.0, 1.0).to<Cuda>();
    for (const auto& o : {uniform(7), gaussian(1.5)}) {
        BOOST_TEST_CONTEXT(metrics::describe_window(o.window, o.win_size, o.sigma)) {
            // d = mu_x - mu_y = 0 and the (x - y)^2 sums are 0, so numerator and denominator are
            // the same products: exactly 1, as on the CPU.
            BOOST_TEST(metrics::ssim(a, a, o).mean == 1.0);
        }
    }
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE_TEMPLATE(ms_ssim_and_mae_match_the_cpu, T, float_types) {
    {
        const auto [a, b] = image_pair<T>({2, 171, 165}, 400);  // > 160: the five default scales, odd sides
        const double cpu = metrics::ms_ssim(a, b), gpu = metrics::ms_ssim(a.template to<Cuda>(), b.template to<Cuda>());
        BOOST_TEST_MESSAGE("ms_ssim (5 scales): cpu " << cpu << ", gpu " << gpu);
        BOOST_CHECK_MESSAGE(std::abs(gpu - cpu) <= kSsimAtol, "ms_ssim: |gpu - cpu| = " << std::abs(gpu - cpu));
    }
    {
        metrics::MsSsimOptions o;
        o.weights = {0.3, 0.3, 0.4};
        const auto [a, b] = image_pair<T>({50, 47}, 401);
        const double cpu = metrics::ms_ssim(a, b, o), gpu = metrics::ms_ssim(a.template to<Cuda>(), b.template to<Cuda>(), o);
        BOOST_CHECK_MESSAGE(std::abs(gpu - cpu) <= kSsimAtol, "ms_ssim (3 scales): |gpu - cpu| = " << std::abs(gpu - cpu));
    }
    {
        const auto [a, b] = image_pair<T>({3, 40, 31}, 402);
        const double cpu = metrics::mean_absolute_error(a, b);
        const double gpu = metrics::mean_absolute_error(a.template to<Cuda>(), b.template to<Cuda>());
        BOOST_TEST(gpu == cpu, boost::test_tools::tolerance(kMaeRtol));
    }
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE_TEMPLATE(differentiable_ssim_value_and_gradients_match_the_cpu, T, float_types) {
    struct Case {
        Shape s;
        SsimOptions o;
        bool y_grad;
    };
    const std::vector<Case> cases = {
        {{24, 21}, uniform(7), true},
        {{3, 20, 22}, gaussian(1.5), true},
        {{2, 3, 24, 21}, uniform(7), true},     // (N, C, H, W): the mean over N * C planes
        {{2, 1, 26, 23}, gaussian(1.5), false},  // only x requires grad (y is the fixed target)
        {{17, 19}, uniform(3), true},
    };
    std::uint64_t seed = 500;
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT(metrics::describe_window(c.o.window, c.o.win_size, c.o.sigma) << ", inputs " << c.s) {
            const auto [a, b] = image_pair<T>(c.s, seed++);
            auto xc = autograd::Var<T, Cpu>(a.clone(), true), yc = autograd::Var<T, Cpu>(b.clone(), c.y_grad);
            auto xg = autograd::Var<T, Cuda>(a.template to<Cuda>(), true), yg = autograd::Var<T, Cuda>(b.template to<Cuda>(), c.y_grad);
            // An upstream gradient other than 1 (the loss -2.5 ssim) checks that the backward reads it.
            auto lc = autograd::scale(autograd::ssim(xc, yc, c.o), T(-2.5));
            auto lg = autograd::scale(autograd::ssim(xg, yg, c.o), T(-2.5));
            const double tol = std::is_same_v<T, float> ? kGradFloatRtol : kSsimAtol;
            MEDIMG_CHECK_GPU_CPU("value", lg.value(), lc.value(), tol, tol);
            lc.backward();
            lg.backward();
            const double sx = max_abs(xc.grad());
            MEDIMG_CHECK_GPU_CPU("grad x", xg.grad(), xc.grad(), grad_rtol<T>(), grad_rtol<T>() * sx);
            if (c.y_grad) {
                const double sy = max_abs(yc.grad());
                MEDIMG_CHECK_GPU_CPU("grad y", yg.grad(), yc.grad(), grad_rtol<T>(), grad_rtol<T>() * sy);
            } else {
                BOOST_TEST(!yg.grad().defined());
            }
        }
    }
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(gpu_ssim_rejects_what_the_cpu_rejects_with_the_same_messages) {
    const auto a = Tensor<float, Cuda>::zeros({20, 20}), b = Tensor<float, Cuda>::zeros({20, 21});
    const auto tiny = Tensor<float, Cuda>::zeros({8, 8});
    BOOST_CHECK_EXCEPTION(metrics::ssim(a, b), ShapeError, message_contains("ssim: image shapes differ"));
    BOOST_CHECK_EXCEPTION(metrics::ssim(tiny, tiny, SsimOptions::wang2004()), ShapeError,
                          message_contains("smaller than the 11x11 window"));
    BOOST_CHECK_EXCEPTION(metrics::ssim(a, a, uniform(4)), ValueError, message_contains("ssim: win_size must be odd"));
    BOOST_CHECK_EXCEPTION(metrics::ms_ssim(a, a), ShapeError, message_contains("ms_ssim: images"));
    BOOST_CHECK_EXCEPTION(metrics::mean_absolute_error(a, b), ShapeError, message_contains("mean_absolute_error: shapes differ"));
    const autograd::Var<float, Cuda> va(a, true), vb(b);
    BOOST_CHECK_EXCEPTION(autograd::ssim(va, vb), ShapeError, message_contains("autograd::ssim: shapes differ"));
    const autograd::Var<float, Cuda> vt(tiny, true);
    BOOST_CHECK_EXCEPTION(autograd::ssim(vt, vt, SsimOptions::wang2004()), ShapeError, message_contains("ssim: images"));
}

BOOST_AUTO_TEST_SUITE_END()
