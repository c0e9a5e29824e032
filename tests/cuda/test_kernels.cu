// SPDX-License-Identifier: MIT
// Tests for the CUDA op implementations (cuda/*.cuh) against the CPU reference (cpu/*.hpp) on the
// same seeded inputs, in float and double, across the code paths the CPU tests cover (padding,
// stride, dilation, 1x1, odd sizes, ties and NaN in pooling, weights and label smoothing in the
// loss). Every comparison reports the largest difference and its flat index. Mirrors
// tests/cpu/test_kernels.cpp.
#include <boost/mpl/list.hpp>
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "cuda_helpers.hpp"
#include "medimg/ops/activation.hpp"
#include "medimg/ops/channel.hpp"
#include "reference.hpp"

using namespace medimg;
using medimg::test::gpu;
using medimg::test::gpu_atol;
using medimg::test::gpu_rtol;
using medimg::test::has_cuda_device;
namespace ref = medimg::test::ref;
namespace utf = boost::unit_test;

using float_types = boost::mpl::list<float, double>;

BOOST_AUTO_TEST_SUITE(cuda_kernels)

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE_TEMPLATE(elementwise_ops_match_the_cpu, T, float_types) {
    const Shape s{3, 5, 7, 11};
    const auto a = ref::random<T>(s, 1), b = ref::random<T>(s, 2);
    const auto pos = ref::random<T>(s, 3, 0.0, 2.0);
    const auto ga = gpu(a), gb = gpu(b), gpos = gpu(pos);
    auto c = Tensor<T, Cpu>::empty(s);
    auto g = Tensor<T, Cuda>::empty(s);
    {
        ops::add(a, b, c);
        ops::add(ga, gb, g);
        MEDIMG_CHECK_GPU_CPU("add", g, c, gpu_rtol<T>(), gpu_atol<T>());
        ops::mul(a, b, c);
        ops::mul(ga, gb, g);
        MEDIMG_CHECK_GPU_CPU("mul", g, c, gpu_rtol<T>(), gpu_atol<T>());
        ops::affine(a, T(1.5), T(-0.25), c);
        ops::affine(ga, T(1.5), T(-0.25), g);
        MEDIMG_CHECK_GPU_CPU("affine", g, c, gpu_rtol<T>(), gpu_atol<T>());
        ops::relu_forward(a, c);
        ops::relu_forward(ga, g);
        MEDIMG_CHECK_GPU_CPU("relu_forward", g, c, 0.0, 0.0);
        auto y = c.clone();
        auto gy = g.clone();
        ops::relu_backward(y, b, c);
        ops::relu_backward(gy, gb, g);
        MEDIMG_CHECK_GPU_CPU("relu_backward", g, c, 0.0, 0.0);
        ops::rsqrt(pos, 1e-5, c);
        ops::rsqrt(gpos, 1e-5, g);
        MEDIMG_CHECK_GPU_CPU("rsqrt", g, c, gpu_rtol<T>(), gpu_atol<T>());
    }
    {
        auto y = a.clone();
        auto gy = ga.clone();
        ops::axpy_(y, T(-0.75), b);
        ops::axpy_(gy, T(-0.75), gb);
        MEDIMG_CHECK_GPU_CPU("axpy_", gy, y, gpu_rtol<T>(), gpu_atol<T>());
        ops::add_(y, b);
        ops::add_(gy, gb);
        MEDIMG_CHECK_GPU_CPU("add_", gy, y, gpu_rtol<T>(), gpu_atol<T>());
    }
    // Reductions accumulate in double on both sides: only the order differs.
    BOOST_TEST(ops::sum(ga) == ops::sum(a), boost::test_tools::tolerance(1e-12));
    BOOST_TEST(ops::dot(ga, gb) == ops::dot(a, b), boost::test_tools::tolerance(1e-12));
    const auto big = ref::random<T>({5000001}, 4);  // several blocks in both passes
    const auto gbig = gpu(big);
    BOOST_TEST(ops::sum(gbig) == ops::sum(big), boost::test_tools::tolerance(1e-10));
    BOOST_TEST(ops::sum(gbig) == ops::sum(gbig));  // deterministic: same bits every run
    BOOST_TEST(ops::dot(gbig, gbig) == ops::dot(big, big), boost::test_tools::tolerance(1e-12));
}

struct ConvCase {
    Shape x, w;
    ops::Conv2dParams p;
    bool bias;
};

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE_TEMPLATE(conv2d_forward_and_backward_match_the_cpu, T, float_types) {
    const std::vector<ConvCase> cases = {
        {{2, 3, 9, 9}, {4, 3, 3, 3}, {1, 1, 1, 1, 1, 1}, true},       // 3x3 pad 1 (ResNet body)
        {{3, 2, 11, 10}, {5, 2, 7, 7}, {2, 2, 3, 3, 1, 1}, false},    // 7x7 stride 2 (ResNet stem), odd sizes
        {{1, 4, 8, 8}, {6, 4, 1, 1}, {1, 1, 0, 0, 1, 1}, true},       // pointwise
        {{4, 4, 8, 8}, {3, 4, 1, 1}, {2, 2, 0, 0, 1, 1}, false},      // 1x1 stride 2 (downsample)
        {{2, 2, 9, 7}, {3, 2, 3, 2}, {1, 2, 2, 1, 2, 1}, true},       // dilation, asymmetric kernel/stride
        {{5, 1, 6, 6}, {2, 1, 3, 3}, {3, 3, 0, 0, 1, 1}, true},       // stride > 1, no padding, one channel
        {{8, 64, 14, 14}, {64, 64, 3, 3}, {1, 1, 1, 1, 1, 1}, false}, // a real layer3-sized body conv
        {{2, 6, 9, 8}, {6, 1, 3, 3}, {1, 1, 1, 1, 1, 1, 6}, true},    // depthwise 3x3 (MBConv)
        {{3, 4, 11, 9}, {4, 1, 5, 5}, {2, 2, 2, 2, 1, 1, 4}, false},  // depthwise 5x5 stride 2
        {{2, 3, 7, 7}, {6, 1, 3, 3}, {1, 2, 1, 0, 2, 1, 3}, true},    // depthwise, multiplier 2, dilation
        {{2, 6, 8, 8}, {4, 3, 3, 3}, {1, 1, 1, 1, 1, 1, 2}, true},    // 2 groups of 3 channels
        {{4, 96, 28, 28}, {96, 1, 3, 3}, {2, 2, 1, 1, 1, 1, 96}, false}, // an EfficientNet-B0-sized depthwise layer
    };
    std::uint64_t seed = 100;
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT("x " << c.x << ", w " << c.w) {
            const auto x = ref::random<T>(c.x, seed++), w = ref::random<T>(c.w, seed++);
            const auto b = c.bias ? ref::random<T>({c.w[0]}, seed++) : Tensor<T, Cpu>();
            const Shape ys = ops::conv2d_output_shape("test", c.x, c.w, c.p);
            const auto dy = ref::random<T>(ys, seed++);
            auto y = Tensor<T, Cpu>::empty(ys);
            auto gy = Tensor<T, Cuda>::empty(ys);
            ops::conv2d_forward(x, w, b, y, c.p);
            ops::conv2d_forward(gpu(x), gpu(w), gpu(b), gy, c.p);
            MEDIMG_CHECK_GPU_CPU("conv2d_forward", gy, y, gpu_rtol<T>(), gpu_atol<T>());

            auto dx = Tensor<T, Cpu>::empty(c.x);
            auto gdx = Tensor<T, Cuda>::full(c.x, T(123));  // overwritten, not accumulated
            ops::conv2d_backward_data(dy, w, dx, c.p);
            ops::conv2d_backward_data(gpu(dy), gpu(w), gdx, c.p);
            MEDIMG_CHECK_GPU_CPU("conv2d_backward_data", gdx, dx, gpu_rtol<T>(), gpu_atol<T>());

            auto dw = Tensor<T, Cpu>::empty(c.w);
            auto gdw = Tensor<T, Cuda>::full(c.w, T(123));
            ops::conv2d_backward_filter(x, dy, dw, c.p);
            ops::conv2d_backward_filter(gpu(x), gpu(dy), gdw, c.p);
            MEDIMG_CHECK_GPU_CPU("conv2d_backward_filter", gdw, dw, gpu_rtol<T>(), gpu_atol<T>());

            auto db = Tensor<T, Cpu>::empty({c.w[0]});
            auto gdb = Tensor<T, Cuda>::empty({c.w[0]});
            ops::conv2d_backward_bias(dy, db);
            ops::conv2d_backward_bias(gpu(dy), gdb);
            MEDIMG_CHECK_GPU_CPU("conv2d_backward_bias", gdb, db, gpu_rtol<T>(), gpu_atol<T>());
        }
    }
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(conv2d_runs_again_from_the_cached_plan_with_the_same_bits) {
    const auto x = gpu(ref::random<float>({4, 8, 12, 12}, 7)), w = gpu(ref::random<float>({8, 8, 3, 3}, 8));
    const ops::Conv2dParams p{1, 1, 1, 1, 1, 1};
    auto y1 = Tensor<float, Cuda>::empty({4, 8, 12, 12}), y2 = Tensor<float, Cuda>::empty({4, 8, 12, 12});
    ops::conv2d_forward(x, w, Tensor<float, Cuda>(), y1, p);
    const auto before = cuda::allocator_stats();
    ops::conv2d_forward(x, w, Tensor<float, Cuda>(), y2, p);
    BOOST_TEST(cuda::allocator_stats().device_allocations == before.device_allocations);  // workspace from the cache
    MEDIMG_CHECK_GPU_CPU_EXACT("conv2d_forward twice", y2, y1.to<Cpu>());
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE_TEMPLATE(batch_norm_matches_the_cpu_in_training_and_inference, T, float_types) {
    for (const Shape s : {Shape{4, 3, 5, 6}, Shape{16, 5}, Shape{2, 8, 7, 7}}) {
        for (const bool affine : {true, false}) {
            BOOST_TEST_CONTEXT("x " << s << (affine ? ", affine" : ", no affine")) {
                const std::int64_t C = s[1];
                const auto x = ref::random<T>(s, 11, -2.0, 3.0), dy = ref::random<T>(s, 12);
                const auto gamma = affine ? ref::random<T>({C}, 13, 0.5, 1.5) : Tensor<T, Cpu>();
                const auto beta = affine ? ref::random<T>({C}, 14) : Tensor<T, Cpu>();
                auto rm = ref::random<T>({C}, 15), rv = ref::random<T>({C}, 16, 0.5, 2.0);
                auto grm = gpu(rm), grv = gpu(rv);
                auto y = Tensor<T, Cpu>::empty(s), sm = Tensor<T, Cpu>::empty({C}), si = Tensor<T, Cpu>::empty({C});
                auto gy = Tensor<T, Cuda>::empty(s), gsm = Tensor<T, Cuda>::empty({C}), gsi = Tensor<T, Cuda>::empty({C});
                ops::batch_norm_forward_training(x, gamma, beta, rm, rv, 0.1, 1e-5, y, sm, si);
                ops::batch_norm_forward_training(gpu(x), gpu(gamma), gpu(beta), grm, grv, 0.1, 1e-5, gy, gsm, gsi);
                MEDIMG_CHECK_GPU_CPU("bn training y", gy, y, gpu_rtol<T>(), gpu_atol<T>());
                MEDIMG_CHECK_GPU_CPU("bn save_mean", gsm, sm, gpu_rtol<T>(), gpu_atol<T>());
                MEDIMG_CHECK_GPU_CPU("bn save_invstd", gsi, si, gpu_rtol<T>(), gpu_atol<T>());
                MEDIMG_CHECK_GPU_CPU("bn running_mean (momentum 0.1)", grm, rm, gpu_rtol<T>(), gpu_atol<T>());
                MEDIMG_CHECK_GPU_CPU("bn running_var (unbiased)", grv, rv, gpu_rtol<T>(), gpu_atol<T>());

                for (const bool training : {true, false}) {
                    BOOST_TEST_CONTEXT((training ? "training backward" : "inference backward")) {
                        // What the forward normalised with: batch statistics, or the running ones.
                        const auto mean = training ? sm : rm;
                        auto invstd = si;
                        if (!training) {
                            invstd = Tensor<T, Cpu>::empty({C});
                            ops::rsqrt(rv, 1e-5, invstd);
                        }
                        auto dx = Tensor<T, Cpu>::empty(s), dg = Tensor<T, Cpu>::empty({C}), db = Tensor<T, Cpu>::empty({C});
                        auto gdx = Tensor<T, Cuda>::empty(s), gdg = Tensor<T, Cuda>::empty({C}), gdb = Tensor<T, Cuda>::empty({C});
                        ops::batch_norm_backward(x, dy, gamma, mean, invstd, training, dx, dg, db);
                        ops::batch_norm_backward(gpu(x), gpu(dy), gpu(gamma), gpu(mean), gpu(invstd), training, gdx, gdg, gdb);
                        MEDIMG_CHECK_GPU_CPU("bn dx", gdx, dx, gpu_rtol<T>(), gpu_atol<T>());
                        MEDIMG_CHECK_GPU_CPU("bn dgamma", gdg, dg, gpu_rtol<T>(), gpu_atol<T>());
                        MEDIMG_CHECK_GPU_CPU("bn dbeta", gdb, db, gpu_rtol<T>(), gpu_atol<T>());
                        // Undefined outputs are skipped; the defined one is still right.
                        Tensor<T, Cpu> none;
                        Tensor<T, Cuda> gnone;
                        auto gdx2 = Tensor<T, Cuda>::empty(s);
                        ops::batch_norm_backward(gpu(x), gpu(dy), gpu(gamma), gpu(mean), gpu(invstd), training, gdx2, gnone, gnone);
                        MEDIMG_CHECK_GPU_CPU("bn dx alone", gdx2, dx, gpu_rtol<T>(), gpu_atol<T>());
                    }
                }

                auto yi = Tensor<T, Cpu>::empty(s);
                auto gyi = Tensor<T, Cuda>::empty(s);
                ops::batch_norm_forward_inference(x, gamma, beta, rm, rv, 1e-5, yi);
                ops::batch_norm_forward_inference(gpu(x), gpu(gamma), gpu(beta), gpu(rm), gpu(rv), 1e-5, gyi);
                MEDIMG_CHECK_GPU_CPU("bn inference y", gyi, yi, gpu_rtol<T>(), gpu_atol<T>());
            }
        }
    }
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE_TEMPLATE(max_pool_matches_the_cpu_including_ties_and_nan, T, float_types) {
    struct PoolCase {
        Shape x;
        ops::MaxPool2dParams p;
    };
    const std::vector<PoolCase> cases = {
        {{2, 3, 12, 12}, {3, 3, 2, 2, 1, 1}},  // ResNet's stem pool: overlapping windows
        {{1, 2, 9, 7}, {2, 2, 2, 2, 0, 0}},    // odd sizes, non-overlapping
        {{3, 1, 8, 10}, {3, 2, 1, 2, 1, 1}},   // stride 1 rows: a pixel in up to 3 windows per row
        {{2, 2, 112, 112}, {3, 3, 2, 2, 1, 1}},  // ResNet's 224x224 stem size: > 48 KB shared memory (opt-in)
    };
    std::uint64_t seed = 200;
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT("x " << c.x) {
            auto x = ref::random<T>(c.x, seed++);
            // Ties (quantised values) and a NaN exercise the first-maximum and NaN-wins rules.
            for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = std::round(x[i] * T(2)) / T(2);
            x[5] = std::numeric_limits<T>::quiet_NaN();
            const Shape ys = ops::max_pool2d_output_shape("test", c.x, c.p);
            auto y = Tensor<T, Cpu>::empty(ys);
            auto am = Tensor<std::int32_t, Cpu>::empty(ys);
            auto gy = Tensor<T, Cuda>::empty(ys);
            auto gam = Tensor<std::int32_t, Cuda>::empty(ys);
            ops::max_pool2d_forward(x, y, am, c.p);
            ops::max_pool2d_forward(gpu(x), gy, gam, c.p);
            MEDIMG_CHECK_GPU_CPU_EXACT("max_pool2d y", gy, y);
            MEDIMG_CHECK_GPU_CPU_EXACT("max_pool2d argmax", gam, am);

            const auto dy = ref::random<T>(ys, seed++);
            auto dx = Tensor<T, Cpu>::empty(c.x);
            auto gdx = Tensor<T, Cuda>::full(c.x, T(7));
            ops::max_pool2d_backward(dy, am, dx);
            ops::max_pool2d_backward(gpu(dy), gam, gdx);
            MEDIMG_CHECK_GPU_CPU_EXACT("max_pool2d dx (same order of additions)", gdx, dx);
        }
    }
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(max_pool_backward_handles_planes_larger_than_shared_memory) {
    const Shape xs{1, 2, 300, 300};  // (90000 + 22500) ints = 450 KB per plane: global scratch
    const ops::MaxPool2dParams p{3, 3, 2, 2, 1, 1};
    const auto x = ref::random<float>(xs, 31);
    const Shape ys = ops::max_pool2d_output_shape("test", xs, p);
    auto y = Tensor<float, Cpu>::empty(ys);
    auto am = Tensor<std::int32_t, Cpu>::empty(ys);
    ops::max_pool2d_forward(x, y, am, p);
    const auto dy = ref::random<float>(ys, 32);
    auto dx = Tensor<float, Cpu>::empty(xs);
    auto gdx = Tensor<float, Cuda>::empty(xs);
    ops::max_pool2d_backward(dy, am, dx);
    ops::max_pool2d_backward(gpu(dy), am.to<Cuda>(), gdx);
    MEDIMG_CHECK_GPU_CPU_EXACT("max_pool2d dx", gdx, dx);
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE_TEMPLATE(adaptive_avg_pool_matches_the_cpu, T, float_types) {
    for (const auto& [xs, ho, wo] : std::vector<std::tuple<Shape, std::int64_t, std::int64_t>>{
             {{2, 3, 7, 7}, 1, 1}, {{2, 2, 10, 9}, 3, 4}, {{1, 2, 5, 5}, 7, 6}}) {
        BOOST_TEST_CONTEXT("x " << xs << " -> " << ho << "x" << wo) {
            const auto x = ref::random<T>(xs, 41);
            const Shape ys{xs[0], xs[1], ho, wo};
            auto y = Tensor<T, Cpu>::empty(ys);
            auto gy = Tensor<T, Cuda>::empty(ys);
            ops::adaptive_avg_pool2d_forward(x, y);
            ops::adaptive_avg_pool2d_forward(gpu(x), gy);
            MEDIMG_CHECK_GPU_CPU_EXACT("adaptive_avg_pool2d y (double sums)", gy, y);
            const auto dy = ref::random<T>(ys, 42);
            auto dx = Tensor<T, Cpu>::empty(xs);
            auto gdx = Tensor<T, Cuda>::empty(xs);
            ops::adaptive_avg_pool2d_backward(dy, dx);
            ops::adaptive_avg_pool2d_backward(gpu(dy), gdx);
            MEDIMG_CHECK_GPU_CPU_EXACT("adaptive_avg_pool2d dx (same order of additions)", gdx, dx);
        }
    }
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE_TEMPLATE(avg_pool_activations_and_channel_ops_match_the_cpu, T, float_types) {
    for (const auto& [xs, p] : std::vector<std::pair<Shape, ops::AvgPool2dParams>>{
             {{2, 3, 8, 8}, {2, 2, 2, 2}}, {{2, 2, 7, 9}, {2, 2, 2, 2}}, {{1, 2, 6, 7}, {3, 2, 2, 1}}}) {
        BOOST_TEST_CONTEXT("avg_pool2d x " << xs) {
            const auto x = ref::random<T>(xs, 43);
            const Shape ys = ops::avg_pool2d_output_shape("test", xs, p);
            auto y = Tensor<T, Cpu>::empty(ys);
            auto gy = Tensor<T, Cuda>::empty(ys);
            ops::avg_pool2d_forward(x, y, p);
            ops::avg_pool2d_forward(gpu(x), gy, p);
            MEDIMG_CHECK_GPU_CPU_EXACT("avg_pool2d y (double sums)", gy, y);
            const auto dy = ref::random<T>(ys, 44);
            auto dx = Tensor<T, Cpu>::empty(xs);
            auto gdx = Tensor<T, Cuda>::full(xs, T(123));
            ops::avg_pool2d_backward(dy, dx, p);
            ops::avg_pool2d_backward(gpu(dy), gdx, p);
            MEDIMG_CHECK_GPU_CPU("avg_pool2d dx", gdx, dx, gpu_rtol<T>(), gpu_atol<T>());
        }
    }
    const Shape s{3, 5, 7, 6};
    const auto x = ref::random<T>(s, 45, -6.0, 6.0), dy = ref::random<T>(s, 46);
    auto c = Tensor<T, Cpu>::empty(s);
    auto g = Tensor<T, Cuda>::empty(s);
    ops::sigmoid_forward(x, c);
    ops::sigmoid_forward(gpu(x), g);
    MEDIMG_CHECK_GPU_CPU("sigmoid_forward", g, c, gpu_rtol<T>(), gpu_atol<T>());
    const auto y = c.clone();
    ops::sigmoid_backward(y, dy, c);
    ops::sigmoid_backward(gpu(y), gpu(dy), g);
    MEDIMG_CHECK_GPU_CPU("sigmoid_backward", g, c, gpu_rtol<T>(), gpu_atol<T>());
    ops::silu_forward(x, c);
    ops::silu_forward(gpu(x), g);
    MEDIMG_CHECK_GPU_CPU("silu_forward", g, c, gpu_rtol<T>(), gpu_atol<T>());
    ops::silu_backward(x, dy, c);
    ops::silu_backward(gpu(x), gpu(dy), g);
    MEDIMG_CHECK_GPU_CPU("silu_backward", g, c, gpu_rtol<T>(), gpu_atol<T>());

    const auto sc = ref::random<T>({3, 5}, 47);
    ops::scale_channels(x, sc, c);
    ops::scale_channels(gpu(x), gpu(sc), g);
    MEDIMG_CHECK_GPU_CPU_EXACT("scale_channels", g, c);
    auto dx = Tensor<T, Cpu>::empty(s), ds = Tensor<T, Cpu>::empty({3, 5});
    auto gdx = Tensor<T, Cuda>::empty(s), gds = Tensor<T, Cuda>::empty({3, 5});
    ops::scale_channels_backward(x, sc, dy, dx, ds);
    ops::scale_channels_backward(gpu(x), gpu(sc), gpu(dy), gdx, gds);
    MEDIMG_CHECK_GPU_CPU_EXACT("scale_channels dx", gdx, dx);
    MEDIMG_CHECK_GPU_CPU("scale_channels dscale (double sums)", gds, ds, gpu_rtol<T>(), gpu_atol<T>());

    auto cat = Tensor<T, Cpu>::zeros({3, 9, 7, 6});
    auto gcat = Tensor<T, Cuda>::zeros({3, 9, 7, 6});
    ops::copy_channels(x, 1, cat, 4, 3);
    ops::copy_channels(gpu(x), 1, gcat, 4, 3);
    MEDIMG_CHECK_GPU_CPU_EXACT("copy_channels", gcat, cat);
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE_TEMPLATE(linear_matches_the_cpu, T, float_types) {
    for (const auto& [N, in, out] : std::vector<std::tuple<std::int64_t, std::int64_t, std::int64_t>>{
             {4, 7, 3}, {64, 512, 2}, {1, 3, 10}, {33, 65, 17}}) {
        BOOST_TEST_CONTEXT("N " << N << ", in " << in << ", out " << out) {
            const auto x = ref::random<T>({N, in}, 51), w = ref::random<T>({out, in}, 52), b = ref::random<T>({out}, 53);
            const auto dy = ref::random<T>({N, out}, 54);
            for (const bool bias : {true, false}) {
                auto y = Tensor<T, Cpu>::empty({N, out});
                auto gy = Tensor<T, Cuda>::empty({N, out});
                ops::linear_forward(x, w, bias ? b : Tensor<T, Cpu>(), y);
                ops::linear_forward(gpu(x), gpu(w), bias ? gpu(b) : Tensor<T, Cuda>(), gy);
                MEDIMG_CHECK_GPU_CPU("linear_forward", gy, y, gpu_rtol<T>(), gpu_atol<T>());
            }
            auto dx = Tensor<T, Cpu>::empty({N, in});
            auto gdx = Tensor<T, Cuda>::empty({N, in});
            ops::linear_backward_data(dy, w, dx);
            ops::linear_backward_data(gpu(dy), gpu(w), gdx);
            MEDIMG_CHECK_GPU_CPU("linear_backward_data", gdx, dx, gpu_rtol<T>(), gpu_atol<T>());
            auto dw = Tensor<T, Cpu>::empty({out, in}), db = Tensor<T, Cpu>::empty({out});
            auto gdw = Tensor<T, Cuda>::empty({out, in}), gdb = Tensor<T, Cuda>::empty({out});
            ops::linear_backward_weight(x, dy, dw, db);
            ops::linear_backward_weight(gpu(x), gpu(dy), gdw, gdb);
            MEDIMG_CHECK_GPU_CPU("linear_backward_weight dw", gdw, dw, gpu_rtol<T>(), gpu_atol<T>());
            MEDIMG_CHECK_GPU_CPU("linear_backward_weight db", gdb, db, gpu_rtol<T>(), gpu_atol<T>());
        }
    }
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE_TEMPLATE(log_softmax_and_cross_entropy_match_the_cpu, T, float_types) {
    for (const auto& [N, C] : std::vector<std::pair<std::int64_t, std::int64_t>>{{5, 3}, {64, 2}, {7, 1000}, {300, 10}}) {
        BOOST_TEST_CONTEXT("N " << N << ", C " << C) {
            const auto x = ref::random<T>({N, C}, 61, -4.0, 4.0), dy = ref::random<T>({N, C}, 62);
            auto y = Tensor<T, Cpu>::empty({N, C}), dx = Tensor<T, Cpu>::empty({N, C});
            auto gy = Tensor<T, Cuda>::empty({N, C}), gdx = Tensor<T, Cuda>::empty({N, C});
            ops::log_softmax_forward(x, y);
            ops::log_softmax_forward(gpu(x), gy);
            MEDIMG_CHECK_GPU_CPU("log_softmax_forward", gy, y, gpu_rtol<T>(), gpu_atol<T>());
            ops::log_softmax_backward(y, dy, dx);
            ops::log_softmax_backward(gpu(y), gpu(dy), gdx);
            MEDIMG_CHECK_GPU_CPU("log_softmax_backward", gdx, dx, gpu_rtol<T>(), gpu_atol<T>());

            auto target = Tensor<std::int64_t, Cpu>::empty({N});
            Rng rng(63);
            for (std::int64_t i = 0; i < N; ++i) target[i] = static_cast<std::int64_t>(rng.randint(static_cast<std::uint64_t>(C)));
            const auto weight = ref::random<T>({C}, 64, 0.2, 2.0);
            for (const bool weighted : {false, true})
                for (const double e : {0.0, 0.1}) {
                    BOOST_TEST_CONTEXT((weighted ? "weighted" : "unweighted") << ", label_smoothing " << e) {
                        const ops::CrossEntropyParams p{e};
                        const auto w = weighted ? weight : Tensor<T, Cpu>();
                        auto logp = Tensor<T, Cpu>::empty({N, C}), loss = Tensor<T, Cpu>::empty(Shape{});
                        auto glogp = Tensor<T, Cuda>::empty({N, C}), gloss = Tensor<T, Cuda>::empty(Shape{});
                        ops::cross_entropy_forward(x, target, w, p, logp, loss);
                        ops::cross_entropy_forward(gpu(x), target.to<Cuda>(), gpu(w), p, glogp, gloss);
                        MEDIMG_CHECK_GPU_CPU("cross_entropy loss", gloss, loss, gpu_rtol<T>(), gpu_atol<T>());
                        MEDIMG_CHECK_GPU_CPU("cross_entropy logp", glogp, logp, gpu_rtol<T>(), gpu_atol<T>());
                        const auto dloss = Tensor<T, Cpu>::scalar(T(0.7));
                        auto dl = Tensor<T, Cpu>::empty({N, C});
                        auto gdl = Tensor<T, Cuda>::empty({N, C});
                        ops::cross_entropy_backward(logp, target, w, p, dloss, dl);
                        ops::cross_entropy_backward(glogp, target.to<Cuda>(), gpu(w), p, gpu(dloss), gdl);
                        MEDIMG_CHECK_GPU_CPU("cross_entropy_backward", gdl, dl, gpu_rtol<T>(), gpu_atol<T>());
                    }
                }
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
