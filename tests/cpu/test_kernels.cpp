// SPDX-License-Identifier: MIT
// Tests for ops/ + cpu/ (suite "kernels": "ops" would clash with the namespace): every forward kernel against the naive reference (tests/reference.hpp)
// on small random inputs, in float and double, across the code paths (padding, stride,
// dilation, 1x1 pointwise, batch smaller and larger than the thread count); error paths.
#include <algorithm>
#include <cmath>
#include <tuple>

#include <boost/mpl/list.hpp>
#include <boost/test/unit_test.hpp>

#include "helpers.hpp"
#include "medimg/medimg.hpp"
#include "reference.hpp"

using namespace medimg;
using medimg::test::message_contains;
namespace ref = medimg::test::ref;

using float_types = boost::mpl::list<float, double>;

template <class T>
constexpr double rtol() {
    return std::is_same_v<T, float> ? test::kFloatRtol : test::kDoubleTol;
}
template <class T>
constexpr double atol() {
    return std::is_same_v<T, float> ? test::kFloatAtol : test::kDoubleTol;
}

BOOST_AUTO_TEST_SUITE(kernels)

struct ConvCase {
    Shape x, w;
    ops::Conv2dParams p;
    bool bias;
};

BOOST_AUTO_TEST_CASE_TEMPLATE(conv2d_forward_matches_naive_reference, T, float_types) {
    const std::vector<ConvCase> cases = {
        {{2, 3, 9, 9}, {4, 3, 3, 3}, {1, 1, 1, 1, 1, 1}, true},     // 3x3 pad 1 (ResNet body)
        {{3, 2, 11, 10}, {5, 2, 7, 7}, {2, 2, 3, 3, 1, 1}, false},  // 7x7 stride 2 (ResNet stem), odd sizes
        {{1, 4, 8, 8}, {6, 4, 1, 1}, {1, 1, 0, 0, 1, 1}, true},     // pointwise, batch < threads
        {{4, 4, 8, 8}, {3, 4, 1, 1}, {2, 2, 0, 0, 1, 1}, false},    // 1x1 stride 2 (downsample)
        {{2, 2, 9, 7}, {3, 2, 3, 2}, {1, 2, 2, 1, 2, 1}, true},     // dilation, asymmetric kernel/stride
        {{5, 1, 6, 6}, {2, 1, 3, 3}, {3, 3, 0, 0, 1, 1}, true},     // stride > 1, no padding, one channel
        {{2, 6, 9, 8}, {6, 1, 3, 3}, {1, 1, 1, 1, 1, 1, 6}, true},  // depthwise 3x3 (MBConv)
        {{3, 4, 11, 9}, {4, 1, 5, 5}, {2, 2, 2, 2, 1, 1, 4}, false},  // depthwise 5x5 stride 2
        {{2, 3, 7, 7}, {6, 1, 3, 3}, {1, 2, 1, 0, 2, 1, 3}, true},  // depthwise, multiplier 2, dilation
        {{2, 6, 8, 8}, {4, 3, 3, 3}, {1, 1, 1, 1, 1, 1, 2}, true},  // 2 groups of 3 channels
        {{1, 8, 5, 5}, {8, 2, 1, 1}, {1, 1, 0, 0, 1, 1, 4}, false}, // 4 groups, pointwise
    };
    std::uint64_t seed = 1;
    for (const auto& c : cases) {
        auto x = ref::random<T>(c.x, seed++);
        auto w = ref::random<T>(c.w, seed++);
        auto b = c.bias ? ref::random<T>({c.w[0]}, seed++) : Tensor<T, Cpu>();
        auto y = Tensor<T, Cpu>::empty(ops::conv2d_output_shape("test", c.x, c.w, c.p));
        ops::conv2d_forward(x, w, b, y, c.p);
        MEDIMG_CHECK_CLOSE_TENSORS(y, ref::conv2d(x, w, b, c.p), rtol<T>(), atol<T>());
    }
}

/// Runs f with cpu::winograd always (largest tile `tile`) or never used, restoring the settings.
template <class F>
void with_winograd(bool on, F&& f, int tile = 4) {
    auto& flag = cpu::winograd::mode();
    auto& largest = cpu::winograd::max_tile();
    const auto before = flag;
    const int tile_before = largest;
    flag = on ? cpu::winograd::Mode::always : cpu::winograd::Mode::never;
    largest = tile;
    try {
        f();
    } catch (...) {
        flag = before;
        largest = tile_before;
        throw;
    }
    flag = before;
    largest = tile_before;
}

BOOST_AUTO_TEST_CASE_TEMPLATE(winograd_3x3_matches_the_naive_reference_and_im2col_in_all_three_directions, T, float_types) {
    // Winograd (cpu/winograd.hpp) serves 3x3 stride-1 pad-1 forward, input-gradient and
    // weight-gradient convolutions as F(4x4, 3x3) or F(2x2, 3x3): sizes that are not multiples of
    // the tile cut the last tile, 1-pixel images are all padding, rows wider than one 15- or 16-tile
    // vector chunk of the AVX-512 transforms (W = 70, 125) take several, large batches go in
    // several image groups (over threads), batch 1 splits the transforms over channels.
    const std::vector<std::pair<Shape, std::int64_t>> cases = {
        {{2, 3, 9, 9}, 4},   {{1, 5, 7, 7}, 6},   {{3, 2, 5, 8}, 3},     {{2, 4, 1, 1}, 2},  {{1, 1, 2, 3}, 1},
        {{17, 8, 6, 6}, 5},  {{4, 64, 14, 14}, 32}, {{1, 16, 28, 28}, 16}, {{1, 3, 9, 70}, 4}, {{2, 2, 5, 125}, 3},
        {{1, 4, 61, 63}, 3}};
    const ops::Conv2dParams p{1, 1, 1, 1, 1, 1};
    std::uint64_t seed = 900;
    for (const int tile : {2, 4})
        for (const auto& [xs, co] : cases) {
            BOOST_TEST_CONTEXT("F(" << tile << "x" << tile << "), x " << xs << ", " << co << " output channels") {
                const Shape ws{co, xs[1], 3, 3}, ys{xs[0], co, xs[2], xs[3]};
                const auto x = ref::random<T>(xs, seed++), w = ref::random<T>(ws, seed++), b = ref::random<T>({co}, seed++);
                const auto dy = ref::random<T>(ys, seed++);
                auto y = Tensor<T, Cpu>::empty(ys), y_im2col = Tensor<T, Cpu>::empty(ys);
                auto dx = Tensor<T, Cpu>::full(xs, T(7)), dx_im2col = Tensor<T, Cpu>::empty(xs);
                auto dw = Tensor<T, Cpu>::full(ws, T(7)), dw_im2col = Tensor<T, Cpu>::empty(ws);
                with_winograd(true, [&] {
                    ops::conv2d_forward(x, w, b, y, p);
                    ops::conv2d_backward_data(dy, w, dx, p);
                    ops::conv2d_backward_filter(x, dy, dw, p);
                }, tile);
                with_winograd(false, [&] {
                    ops::conv2d_forward(x, w, b, y_im2col, p);
                    ops::conv2d_backward_data(dy, w, dx_im2col, p);
                    ops::conv2d_backward_filter(x, dy, dw_im2col, p);
                });
                // F(4x4)'s transforms carry more float roundings (coefficients up to 8 and 1/24): its
                // error is ~5e-6 of the largest output (the float64 test below), so it is large
                // next to the elementwise tolerance on outputs near zero of these unscaled filters
                const double tol = tile == 4 && std::is_same_v<T, float> ? 16.0 : 1.0;
                MEDIMG_CHECK_CLOSE_TENSORS(y, ref::conv2d(x, w, b, p), tol * rtol<T>(), tol * atol<T>());
                MEDIMG_CHECK_CLOSE_TENSORS(y, y_im2col, tol * rtol<T>(), tol * atol<T>());
                MEDIMG_CHECK_CLOSE_TENSORS(dx, dx_im2col, tol * rtol<T>(), tol * atol<T>());
                // dw sums over every pixel of the batch: a few more float roundings per element
                MEDIMG_CHECK_CLOSE_TENSORS(dw, dw_im2col, tol * rtol<T>(), 10 * tol * atol<T>());
            }
        }
}

BOOST_AUTO_TEST_CASE(winograd_error_against_float64_stays_within_the_stated_bounds) {
    // benchmarks/RESULTS.md ("Winograd F(4x4, 3x3)") states the float error of each Winograd form on ResNet-like layers
    // (inputs after a ReLU, Kaiming-uniform filters, 64..256 input channels): max |y - y64| over
    // max |y64|, the root-mean-square relative error, and max |dw - dw64| over max |dw64| for the
    // weight gradient of dy = y - mean(y). Measured here (2026-12-07): F(2x2) 2.9e-7..5.6e-7 /
    // 2.3e-7..4.4e-7 / 3.1e-7..3.5e-7; F(4x4) 4.8e-6..9.5e-6 / 1.4e-6..2.6e-6 / 5.5e-7..9.9e-7
    // (F(4x4)'s weight gradient finishes G^T m G in double). The bounds leave about 2x.
    const std::vector<std::pair<Shape, std::int64_t>> cases = {{{2, 64, 20, 20}, 32}, {{1, 256, 14, 14}, 8}, {{1, 128, 9, 30}, 8}};
    const ops::Conv2dParams p{1, 1, 1, 1, 1, 1};
    std::uint64_t seed = 40;
    for (const auto& [xs, co] : cases) {
        const Shape ws{co, xs[1], 3, 3}, ys{xs[0], co, xs[2], xs[3]};
        auto x = ref::random<float>(xs, seed++, -1.0, 1.0);
        for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = std::max(x.data()[i], 0.0f);  // after a ReLU
        auto w = ref::random<float>(ws, seed++, -1.0, 1.0);
        const float scale = static_cast<float>(std::sqrt(6.0 / (9.0 * static_cast<double>(xs[1]))));  // Kaiming's variance
        for (std::int64_t i = 0; i < w.numel(); ++i) w.data()[i] *= scale;
        const auto y64 = ref::conv2d(x, w, Tensor<float, Cpu>(), p);
        double ymax = 0.0, y2 = 0.0;
        for (std::int64_t i = 0; i < y64.numel(); ++i) {
            ymax = std::max(ymax, std::abs(y64[i]));
            y2 += y64[i] * y64[i];
        }
        for (const auto& [tile, max_bound, rms_bound, dw_bound] :
             {std::tuple{2, 1.5e-6, 1e-6, 1e-6}, std::tuple{4, 2e-5, 5e-6, 2e-6}}) {
            auto y = Tensor<float, Cpu>::empty(ys);
            with_winograd(true, [&] { ops::conv2d_forward(x, w, Tensor<float, Cpu>(), y, p); }, tile);
            double emax = 0.0, e2 = 0.0;
            for (std::int64_t i = 0; i < y.numel(); ++i) {
                const double d = static_cast<double>(y[i]) - y64[i];
                emax = std::max(emax, std::abs(d));
                e2 += d * d;
            }
            BOOST_TEST_CONTEXT("F(" << tile << "x" << tile << "), x " << xs << ": max " << emax / ymax << ", rms "
                                    << std::sqrt(e2 / y2)) {
                BOOST_TEST(emax / ymax <= max_bound);
                BOOST_TEST(std::sqrt(e2 / y2) <= rms_bound);
                BOOST_TEST(emax > 0.0);  // the float path ran (not a double copy)
            }
            // the weight gradient of the same layer for dy = y - mean(y): dw64 summed in double
            std::vector<double> dy64(static_cast<std::size_t>(y64.numel()));
            double mean = 0.0;
            for (std::int64_t i = 0; i < y64.numel(); ++i) mean += y64[i] / static_cast<double>(y64.numel());
            auto dy = Tensor<float, Cpu>::empty(ys);
            for (std::int64_t i = 0; i < y64.numel(); ++i) {
                dy.data()[i] = static_cast<float>(y64[i] - mean);
                dy64[static_cast<std::size_t>(i)] = static_cast<double>(dy.data()[i]);
            }
            const std::int64_t H = xs[2], W = xs[3], C = xs[1];
            std::vector<double> dw64(static_cast<std::size_t>(w.numel()), 0.0);
            for (std::int64_t n = 0; n < xs[0]; ++n)
                for (std::int64_t k = 0; k < co; ++k)
                    for (std::int64_t c = 0; c < C; ++c)
                        for (int a = 0; a < 3; ++a)
                            for (int bb = 0; bb < 3; ++bb) {
                                double acc = 0.0;
                                for (std::int64_t i = 0; i < H; ++i)
                                    for (std::int64_t j = 0; j < W; ++j) {
                                        const std::int64_t ii = i + a - 1, jj = j + bb - 1;
                                        if (ii < 0 || jj < 0 || ii >= H || jj >= W) continue;
                                        acc += dy64[static_cast<std::size_t>(((n * co + k) * H + i) * W + j)] *
                                               static_cast<double>(x.data()[((n * C + c) * H + ii) * W + jj]);
                                    }
                                dw64[static_cast<std::size_t>(((k * C + c) * 3 + a) * 3 + bb)] += acc;
                            }
            auto dw = Tensor<float, Cpu>::empty(ws);
            with_winograd(true, [&] { ops::conv2d_backward_filter(x, dy, dw, p); }, tile);
            double gmax = 0.0, dmax = 0.0;
            for (std::int64_t i = 0; i < dw.numel(); ++i) {
                gmax = std::max(gmax, std::abs(dw64[static_cast<std::size_t>(i)]));
                dmax = std::max(dmax, std::abs(static_cast<double>(dw[i]) - dw64[static_cast<std::size_t>(i)]));
            }
            BOOST_TEST_MESSAGE("F(" << tile << "x" << tile << "), x " << xs << ": y max " << emax / ymax << ", rms " << std::sqrt(e2 / y2)
                                    << "; dw max " << dmax / gmax);
            BOOST_TEST_CONTEXT("F(" << tile << "x" << tile << ") weight gradient, x " << xs << ": max " << dmax / gmax) {
                BOOST_TEST(dmax / gmax <= dw_bound);
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(winograd_tile_choice_follows_the_image_group) {
    // F(4x4) where its tiles fill an image group, F(2x2) where only its smaller tiles do, im2col
    // below; never for other kernels or strides; the weight gradient takes F(4x4) on rows of 7
    // tiles or more only; MEDIMG_WINOGRAD_TILE=2 (max_tile) keeps F(2x2).
    const ops::Conv2dParams p{1, 1, 1, 1, 1, 1};
    auto& mode = cpu::winograd::mode();
    const auto before = mode;
    const int tile_before = cpu::winograd::max_tile();
    mode = cpu::winograd::Mode::automatic;
    cpu::winograd::max_tile() = 4;
    BOOST_TEST(cpu::winograd::tile(3, 3, p, 32, 56, 56) == 4);
    BOOST_TEST(cpu::winograd::tile(3, 3, p, 1, 56, 56) == 4);    // 196 4x4 tiles in one image
    BOOST_TEST(cpu::winograd::tile(3, 3, p, 1, 28, 28) == 2);    // 49 4x4 tiles, 196 2x2 tiles
    BOOST_TEST(cpu::winograd::tile(3, 3, p, 16, 7, 7) == 2);     // 4 4x4 tiles per image (1 or 2 threads)
    BOOST_TEST(cpu::winograd::tile(3, 3, p, 1, 7, 7) == 0);
    BOOST_TEST(cpu::winograd::tile(1, 1, {1, 1, 0, 0, 1, 1}, 32, 56, 56) == 0);
    BOOST_TEST(cpu::winograd::tile(3, 3, {2, 2, 1, 1, 1, 1}, 32, 56, 56) == 0);
    BOOST_TEST(cpu::winograd::weight_tile(3, 3, p, 32, 56, 56) == 4);
    BOOST_TEST(cpu::winograd::weight_tile(3, 3, p, 32, 28, 28) == 4);   // rows of 7 tiles
    BOOST_TEST(cpu::winograd::weight_tile(3, 3, p, 32, 14, 14) == 2);   // rows of 4 tiles: F(2x2)
    BOOST_TEST(cpu::winograd::tile(3, 3, p, 32, 14, 14) == 4);
    cpu::winograd::max_tile() = 2;
    BOOST_TEST(cpu::winograd::tile(3, 3, p, 32, 56, 56) == 2);
    BOOST_TEST(cpu::winograd::weight_tile(3, 3, p, 32, 56, 56) == 2);
    mode = before;
    cpu::winograd::max_tile() = tile_before;
}

BOOST_AUTO_TEST_CASE(conv2d_is_deterministic_for_a_fixed_thread_count) {
    auto x = ref::random<float>({6, 8, 12, 12}, 5);
    auto w = ref::random<float>({8, 8, 3, 3}, 6);
    auto dy = ref::random<float>({6, 8, 12, 12}, 7);
    const ops::Conv2dParams p{1, 1, 1, 1, 1, 1};
    auto dw1 = Tensor<float>::empty(w.shape()), dw2 = Tensor<float>::empty(w.shape());
    ops::conv2d_backward_filter(x, dy, dw1, p);
    ops::conv2d_backward_filter(x, dy, dw2, p);
    for (std::int64_t i = 0; i < dw1.numel(); ++i) BOOST_REQUIRE(dw1[i] == dw2[i]);
}

BOOST_AUTO_TEST_CASE(conv2d_rejects_mismatched_shapes) {
    auto x = Tensor<float>::zeros({8, 3, 16, 16});
    auto w = Tensor<float>::zeros({64, 1, 7, 7});
    auto y = Tensor<float>::zeros({8, 64, 5, 5});
    BOOST_CHECK_EXCEPTION(ops::conv2d_forward(x, w, Tensor<float>(), y, {}), ShapeError,
                          message_contains("conv2d_forward: input has 3 channels but weight expects 1 (input [8,3,16,16], weight [64,1,7,7])"));
    auto w3 = Tensor<float>::zeros({64, 3, 7, 7});
    BOOST_CHECK_EXCEPTION(ops::conv2d_forward(x, w3, Tensor<float>(), y, {}), ShapeError,
                          message_contains("output is [8,64,5,5], expected [8,64,10,10]"));
    auto x3 = Tensor<float>::zeros({3, 16, 16});
    BOOST_CHECK_EXCEPTION(ops::conv2d_forward(x3, w3, Tensor<float>(), y, {}), ShapeError,
                          message_contains("input must be (N, C_in, H, W), got [3,16,16]"));
    ops::Conv2dParams bad;
    bad.stride_h = 0;
    BOOST_CHECK_EXCEPTION(ops::conv2d_forward(x, w3, Tensor<float>(), y, bad), ValueError, message_contains("stride"));
    auto tiny = Tensor<float>::zeros({1, 3, 4, 4});
    BOOST_CHECK_EXCEPTION(ops::conv2d_output_shape("conv2d", tiny.shape(), w3.shape(), {}), ShapeError,
                          message_contains("does not fit input [1,3,4,4]"));
    auto b = Tensor<float>::zeros({3});
    BOOST_CHECK_EXCEPTION(ops::conv2d_forward(x, w3, b, y, {}), ShapeError, message_contains("bias must be (64)"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(batch_norm_training_normalises_and_updates_running_stats, T, float_types) {
    auto x = ref::random<T>({4, 3, 5, 6}, 11, -2.0, 3.0);
    auto gamma = ref::random<T>({3}, 12, 0.5, 1.5);
    auto beta = ref::random<T>({3}, 13);
    auto rm = Tensor<T, Cpu>::from_vector({3}, {0.5, -0.5, 0});
    auto rv = Tensor<T, Cpu>::from_vector({3}, {1, 2, 3});
    auto y = Tensor<T, Cpu>::empty(x.shape()), sm = Tensor<T, Cpu>::empty({3}), si = Tensor<T, Cpu>::empty({3});
    ops::batch_norm_forward_training(x, gamma, beta, rm, rv, 0.1, 1e-5, y, sm, si);
    std::vector<double> mean, var;
    ref::channel_stats(x, mean, var);
    auto expect = Tensor<double, Cpu>::empty(x.shape());
    const std::int64_t S = 30, M = 4 * 30;
    for (std::int64_t n = 0; n < 4; ++n)
        for (std::int64_t c = 0; c < 3; ++c)
            for (std::int64_t q = 0; q < S; ++q) {
                const auto i = (n * 3 + c) * S + q;
                expect[i] = gamma[c] * (x[i] - mean[c]) / std::sqrt(var[c] + 1e-5) + beta[c];
            }
    MEDIMG_CHECK_CLOSE_TENSORS(y, expect, rtol<T>(), atol<T>());
    const double rm0[] = {0.5, -0.5, 0}, rv0[] = {1, 2, 3};
    for (std::int64_t c = 0; c < 3; ++c) {
        // PyTorch: running_var uses the unbiased variance, var * M / (M - 1).
        BOOST_TEST(static_cast<double>(rm[c]) == 0.9 * rm0[c] + 0.1 * mean[c], boost::test_tools::tolerance(1e-5));
        BOOST_TEST(static_cast<double>(rv[c]) == 0.9 * rv0[c] + 0.1 * var[c] * M / (M - 1), boost::test_tools::tolerance(1e-5));
    }
}

BOOST_AUTO_TEST_CASE(batch_norm_inference_uses_running_stats_and_rejects_bad_shapes) {
    auto x = ref::random<double>({2, 2, 3, 3}, 21);
    auto g = Tensor<double>::from_vector({2}, {2, 3});
    auto b = Tensor<double>::from_vector({2}, {0.5, -1});
    auto rm = Tensor<double>::from_vector({2}, {0.1, 0.2});
    auto rv = Tensor<double>::from_vector({2}, {4, 9});
    auto y = Tensor<double>::empty(x.shape());
    ops::batch_norm_forward_inference(x, g, b, rm, rv, 0.0, y);
    BOOST_TEST(y[0] == 2 * (x[0] - 0.1) / 2 + 0.5, boost::test_tools::tolerance(1e-12));
    BOOST_TEST(y[9] == 3 * (x[9] - 0.2) / 3 - 1, boost::test_tools::tolerance(1e-12));
    auto bad = Tensor<double>::zeros({3});
    BOOST_CHECK_EXCEPTION(ops::batch_norm_forward_inference(x, bad, b, rm, rv, 1e-5, y), ShapeError,
                          message_contains("per-channel tensor [3] does not match the 2 channels of input [2,2,3,3]"));
    auto one = Tensor<double>::zeros({1, 2, 1, 1});
    auto y1 = Tensor<double>::empty(one.shape());
    auto sm = Tensor<double>::empty({2}), si = Tensor<double>::empty({2});
    BOOST_CHECK_EXCEPTION(ops::batch_norm_forward_training(one, g, b, rm, rv, 0.1, 1e-5, y1, sm, si), ValueError,
                          message_contains("more than 1 value per channel"));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(max_pool2d_matches_reference_and_routes_gradient_to_argmax, T, float_types) {
    const ops::MaxPool2dParams p{3, 3, 2, 2, 1, 1};  // the ResNet stem's pool
    auto x = ref::random<T>({2, 3, 9, 8}, 31);
    const Shape ys = ops::max_pool2d_output_shape("test", x.shape(), p);
    BOOST_TEST(ys == (Shape{2, 3, 5, 4}));
    auto y = Tensor<T, Cpu>::empty(ys);
    auto idx = Tensor<std::int32_t, Cpu>::empty(ys);
    ops::max_pool2d_forward(x, y, idx, p);
    MEDIMG_CHECK_CLOSE_TENSORS(y, ref::max_pool2d(x, p), 0.0, 0.0);
    for (std::int64_t i = 0; i < y.numel(); ++i) {
        const std::int64_t plane = i / 20;
        BOOST_REQUIRE(x[plane * 72 + idx[i]] == y[i]);
    }
    BOOST_CHECK_EXCEPTION(ops::max_pool2d_output_shape("max_pool2d", x.shape(), {3, 3, 2, 2, 2, 2}), ValueError,
                          message_contains("padding (2,2) must be between 0 and half the kernel"));
}

BOOST_AUTO_TEST_CASE(sgemm_matches_a_double_reference_for_every_layout_and_edge) {
    // The own SGEMM (cpu/sgemm.hpp) on the ISA this processor has: shapes with partial MR x NR
    // tiles, depths over one KC block with and without a 16-deep remainder (the AVX-512
    // transposing pack of a transposed B works in 16 x 16 blocks), columns over one NC block,
    // both transposes, leading dimensions larger than the shape, accumulate.
    if (!cpu::sgemm::available()) return;
    struct Case { std::int64_t m, n, k; };
    for (const Case c : {Case{1, 1, 1}, Case{13, 35, 17}, Case{12, 32, 256}, Case{50, 70, 300}, Case{7, 96, 48},
                         Case{64, 3100, 40}, Case{25, 33, 529}})
        for (const bool ta : {false, true})
            for (const bool tb : {false, true})
                for (const bool acc : {false, true}) {
                    const std::int64_t lda = (ta ? c.m : c.k) + 3, ldb = (tb ? c.k : c.n) + 5, ldc = c.n + 2;
                    std::vector<float> A((ta ? c.k : c.m) * lda), B((tb ? c.n : c.k) * ldb), C(c.m * ldc);
                    Rng rng(static_cast<std::uint64_t>(c.m * 7 + c.n * 13 + c.k));
                    for (auto* v : {&A, &B, &C})
                        for (auto& e : *v) e = static_cast<float>(rng.uniform() * 2.0 - 1.0);
                    const std::vector<float> C0 = C;
                    const cpu::sgemm::Operand a{A.data(), lda, ta}, b{B.data(), ldb, tb};
                    cpu::sgemm::gemm(c.m, c.n, c.k, a, b, C.data(), ldc, acc);
                    double worst = 0.0;
                    for (std::int64_t i = 0; i < c.m; ++i)
                        for (std::int64_t j = 0; j < c.n; ++j) {
                            double want = acc ? C0[i * ldc + j] : 0.0, scale = std::abs(want);
                            for (std::int64_t q = 0; q < c.k; ++q) {
                                want += static_cast<double>(a.at(i, q)) * b.at(q, j);
                                scale += std::abs(static_cast<double>(a.at(i, q)) * b.at(q, j));
                            }
                            worst = std::max(worst, std::abs(C[i * ldc + j] - want) / (scale + 1e-30));
                        }
                    BOOST_TEST_CONTEXT(c.m << "x" << c.n << "x" << c.k << " ta " << ta << " tb " << tb << " acc " << acc) {
                        BOOST_TEST(worst < 1e-6);  // float32 dot products: relative to sum |a_iq b_qj|
                        for (std::int64_t i = 0; i < c.m; ++i)  // the padding of C is untouched
                            for (std::int64_t j = c.n; j < ldc; ++j) BOOST_REQUIRE(C[i * ldc + j] == C0[i * ldc + j]);
                    }
                }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(max_pool2d_ties_go_to_the_first_maximum_and_nan_wins, T, float_types) {
    // Values from {0, 1, 2} (many ties) and some NaNs, through windows inside and at the borders:
    // the index must be PyTorch's, the first maximum in row-major window order, or the first NaN.
    for (const ops::MaxPool2dParams p : {ops::MaxPool2dParams{3, 3, 2, 2, 1, 1}, ops::MaxPool2dParams{2, 2, 2, 2, 0, 0},
                                         ops::MaxPool2dParams{3, 2, 1, 2, 1, 1}}) {
        const std::int64_t H = 11, W = 10;
        auto x = Tensor<T, Cpu>::empty({2, 2, H, W});
        Rng rng(7);
        for (std::int64_t i = 0; i < x.numel(); ++i) {
            const auto r = rng.next_u64();
            x[i] = r % 29 == 0 ? std::numeric_limits<T>::quiet_NaN() : static_cast<T>(r % 3);
        }
        const Shape ys = ops::max_pool2d_output_shape("test", x.shape(), p);
        auto y = Tensor<T, Cpu>::empty(ys);
        auto idx = Tensor<std::int32_t, Cpu>::empty(ys);
        ops::max_pool2d_forward(x, y, idx, p);
        const std::int64_t Ho = ys[2], Wo = ys[3];
        for (std::int64_t plane = 0; plane < 4; ++plane)
            for (std::int64_t oh = 0; oh < Ho; ++oh)
                for (std::int64_t ow = 0; ow < Wo; ++ow) {
                    std::int64_t want = -1;
                    for (std::int64_t u = 0; u < p.kernel_h && want < 0; ++u)
                        for (std::int64_t v = 0; v < p.kernel_w; ++v) {
                            const std::int64_t ih = oh * p.stride_h - p.pad_h + u, iw = ow * p.stride_w - p.pad_w + v;
                            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                            if (std::isnan(x[plane * H * W + ih * W + iw])) {
                                want = ih * W + iw;
                                break;
                            }
                        }
                    if (want < 0) {
                        T best = -std::numeric_limits<T>::infinity();
                        for (std::int64_t u = 0; u < p.kernel_h; ++u)
                            for (std::int64_t v = 0; v < p.kernel_w; ++v) {
                                const std::int64_t ih = oh * p.stride_h - p.pad_h + u, iw = ow * p.stride_w - p.pad_w + v;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                if (want < 0 || x[plane * H * W + ih * W + iw] > best) {
                                    best = x[plane * H * W + ih * W + iw];
                                    want = ih * W + iw;
                                }
                            }
                    }
                    const std::int64_t o = (plane * Ho + oh) * Wo + ow;
                    BOOST_REQUIRE_MESSAGE(idx[o] == want, "plane " << plane << " (" << oh << ", " << ow << "): index " << idx[o]
                                                                   << ", expected " << want);
                    const T got = y[o], ref = x[plane * H * W + want];
                    BOOST_REQUIRE(std::isnan(ref) ? std::isnan(got) : got == ref);
                }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(adaptive_avg_pool2d_matches_pytorch_windows, T, float_types) {
    auto x = ref::random<T>({2, 3, 7, 5}, 41);
    for (auto [oh, ow] : {std::pair<int, int>{1, 1}, {3, 2}, {7, 5}, {4, 4}}) {
        auto y = Tensor<T, Cpu>::empty({2, 3, oh, ow});
        ops::adaptive_avg_pool2d_forward(x, y);
        MEDIMG_CHECK_CLOSE_TENSORS(y, ref::adaptive_avg_pool2d(x, oh, ow), rtol<T>(), atol<T>());
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(linear_matches_hand_computed, T, float_types) {
    auto x = Tensor<T, Cpu>::from_vector({2, 3}, {1, 2, 3, 4, 5, 6});
    auto w = Tensor<T, Cpu>::from_vector({2, 3}, {1, 0, -1, 0.5, 0.5, 0.5});
    auto b = Tensor<T, Cpu>::from_vector({2}, {10, 20});
    auto y = Tensor<T, Cpu>::empty({2, 2});
    ops::linear_forward(x, w, b, y);
    const double expect[] = {1 - 3 + 10, 3 + 20, 4 - 6 + 10, 7.5 + 20};
    for (int i = 0; i < 4; ++i) BOOST_TEST(static_cast<double>(y[i]) == expect[i], boost::test_tools::tolerance(1e-6));
    auto wbad = Tensor<T, Cpu>::zeros({2, 4});
    BOOST_CHECK_EXCEPTION(ops::linear_forward(x, wbad, b, y), ShapeError,
                          message_contains("linear_forward: input has 3 features but weight expects 4"));
}

BOOST_AUTO_TEST_CASE(cross_entropy_matches_hand_computed_values) {
    // logits (2, 3); hand: logp = z - log(sum exp z)
    auto z = Tensor<double>::from_vector({2, 3}, {1.0, 2.0, 3.0, 0.5, 0.5, -1.0});
    auto t = Tensor<std::int64_t>::from_vector({2}, {2, 0});
    auto logp = Tensor<double>::empty({2, 3});
    auto loss = Tensor<double>::empty(Shape{});
    ops::cross_entropy_forward(z, t, Tensor<double>(), {}, logp, loss);
    const double lse0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
    const double lse1 = std::log(2 * std::exp(0.5) + std::exp(-1.0));
    const double nll0 = lse0 - 3.0, nll1 = lse1 - 0.5;
    BOOST_TEST(loss[0] == (nll0 + nll1) / 2, boost::test_tools::tolerance(1e-12));
    // Weights (PyTorch divides by the sum of the targets' weights) and label smoothing 0.1.
    auto w = Tensor<double>::from_vector({3}, {2.0, 1.0, 0.5});
    ops::cross_entropy_forward(z, t, w, {0.1}, logp, loss);
    const double smooth0 = 2 * (lse0 - 1) + 1 * (lse0 - 2) + 0.5 * (lse0 - 3);
    const double smooth1 = 2 * (lse1 - 0.5) + 1 * (lse1 - 0.5) + 0.5 * (lse1 + 1);
    const double expect = (0.9 * (0.5 * nll0 + 2 * nll1) + 0.1 / 3 * (smooth0 + smooth1)) / (0.5 + 2.0);
    BOOST_TEST(loss[0] == expect, boost::test_tools::tolerance(1e-12));
    auto bad = Tensor<std::int64_t>::from_vector({2}, {2, 3});
    BOOST_CHECK_EXCEPTION(ops::cross_entropy_forward(z, bad, Tensor<double>(), {}, logp, loss), ValueError,
                          message_contains("cross_entropy: target[1] = 3 is not a class index in [0, 3)"));
    auto short_t = Tensor<std::int64_t>::from_vector({1}, {0});
    BOOST_CHECK_EXCEPTION(ops::cross_entropy_forward(z, short_t, Tensor<double>(), {}, logp, loss), ShapeError,
                          message_contains("target must be (2)"));
    BOOST_CHECK_EXCEPTION(ops::cross_entropy_forward(z, t, Tensor<double>(), {1.5}, logp, loss), ValueError,
                          message_contains("label_smoothing must be in [0, 1]"));
}

BOOST_AUTO_TEST_CASE(elementwise_ops_and_reductions) {
    auto a = Tensor<float>::from_vector({4}, {1, -2, 3, -4});
    auto b = Tensor<float>::from_vector({4}, {0.5, 0.5, 2, 2});
    auto y = Tensor<float>::empty({4});
    ops::mul(a, b, y);
    BOOST_TEST(y[3] == -8.0f);
    ops::relu_forward(a, y);
    BOOST_TEST((y[0] == 1.0f && y[1] == 0.0f));
    BOOST_TEST(ops::sum(a) == -2.0);
    BOOST_TEST(ops::dot(a, b) == 0.5 - 1 + 6 - 8);
    ops::axpy_(y, 2.0f, b);
    BOOST_TEST(y[2] == 7.0f);
    auto big = Tensor<float>::full({300001}, 0.1f);  // crosses several parallel blocks
    BOOST_TEST(ops::sum(big) == 300001 * static_cast<double>(0.1f), boost::test_tools::tolerance(1e-12));
    auto c = Tensor<float>::zeros({5});
    BOOST_CHECK_EXCEPTION(ops::add_(y, c), ShapeError, message_contains("add_: y [4] and x [5] must have the same shape"));
}

BOOST_AUTO_TEST_CASE(the_float_exp_polynomial_is_within_two_ulp_of_exp) {
    double worst = 0;
    for (float x = -87.0f; x < 88.3f; x += 0.0037f) {
        const double want = std::exp(static_cast<double>(x));
        worst = std::max(worst, std::abs(ops::detail::exp_poly(x) - want) / want);
    }
    BOOST_TEST_MESSAGE("exp_poly: largest relative error " << worst);
    BOOST_TEST(worst < 1.2e-7);  // two float ulp (2^-23 = 1.19e-7); measured 7.9e-8
    BOOST_TEST(ops::detail::exp_poly(0.0f) == 1.0f);
    BOOST_TEST(ops::detail::exp_poly(89.0f) == HUGE_VALF);
    BOOST_TEST(ops::detail::exp_poly(-90.0f) == 0.0f);
    BOOST_TEST(ops::detail::exp_poly(-HUGE_VALF) == 0.0f);
    BOOST_TEST(std::isnan(ops::detail::exp_poly(std::nanf(""))));
}

BOOST_AUTO_TEST_CASE(float_sigmoid_and_silu_match_double_precision_everywhere) {
    // every vector width and the scalar tail: 1000 values from -100 to 100 plus the saturation edges
    std::vector<float> xs;
    for (int i = 0; i < 1000; ++i) xs.push_back(-100.0f + 0.2f * static_cast<float>(i) + 0.013f);
    for (float e : {0.0f, -0.0f, 88.5f, -88.5f, 87.5f, -87.5f, 1e-20f, -1e-20f, 3e38f, -3e38f}) xs.push_back(e);
    const auto n = static_cast<std::int64_t>(xs.size());
    std::vector<float> dy(xs.size());
    for (std::size_t i = 0; i < xs.size(); ++i) dy[i] = 0.5f + 0.001f * static_cast<float>(i % 37);
    std::vector<float> sig(xs.size()), silu(xs.size()), dsig(xs.size()), dsilu(xs.size());
    ops::ActivationImpl<Cpu>::sigmoid_forward(xs.data(), sig.data(), n);
    ops::ActivationImpl<Cpu>::silu_forward(xs.data(), silu.data(), n);
    ops::ActivationImpl<Cpu>::sigmoid_backward(sig.data(), dy.data(), dsig.data(), n);
    ops::ActivationImpl<Cpu>::silu_backward(xs.data(), dy.data(), dsilu.data(), n);
    for (std::size_t i = 0; i < xs.size(); ++i) {
        const double x = xs[i], s = 1.0 / (1.0 + std::exp(-x)), g = dy[i];
        const double ds = g * double(sig[i]) * (1.0 - double(sig[i]));  // of the float forward, as autograd uses it
        const double dsl = g * s * (1.0 + x * (1.0 - s));
        BOOST_TEST_CONTEXT("x = " << x) {
            BOOST_TEST(std::abs(sig[i] - s) <= 2.5e-7 * std::max(1e-30, s) + 1e-38);
            // below x = -88.376 exp(-x) is inf, so silu is -0 where it is -1e-36 or smaller in truth
            BOOST_TEST(std::abs(silu[i] - x * s) <= 2.5e-7 * std::abs(x * s) + 1e-36);
            BOOST_TEST(std::abs(dsig[i] - ds) <= 4e-7 * std::abs(ds) + 1e-38);
            BOOST_TEST(std::abs(dsilu[i] - dsl) <= 1e-6 * std::max(std::abs(dsl), g) + 1e-37);
        }
    }
    BOOST_TEST(std::signbit(silu[silu.size() - 1]));  // silu(-3e38) = -0, not NaN
    BOOST_TEST(silu[silu.size() - 2] == 3e38f);
}

BOOST_AUTO_TEST_SUITE_END()
