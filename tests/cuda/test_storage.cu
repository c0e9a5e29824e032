// SPDX-License-Identifier: MIT
// Tests of half-precision activation storage on the GPU (Tensor::storage(); mixed precision keeps
// the activations between layers in bf16 / fp16 as autocast does, docs/gpu.md):
//   - the device conversions (Tensor::to_storage) are bitwise the host roundings of core/precision.hpp;
//   - every op an activation passes through - add, add_, ReLU, max / adaptive-average pooling, batch
//     norm in both modes, conv2d and linear in all directions - over half storage against the CPU's
//     float32 op on the same rounded values: bitwise where the GPU rounds one exact float result
//     (add, ReLU, max pooling), else within the ulps the extra roundings allow;
//   - autograd under bf16 keeps the activations and their gradients in bf16, the weights' gradients
//     and the logits in float32, and ResNet18's activation memory drops to about half.
// Oracles: the CPU backend (float32) on operands rounded by the host roundings (independent of the
// device code), and the allocator's byte counts.
#include <boost/mpl/list.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cuda_helpers.hpp"
#include "medimg/autograd/functions.hpp"
#include "medimg/autograd/loss.hpp"
#include "medimg/core/precision.hpp"
#include "medimg/nn/nn.hpp"
#include "medimg/ops/batch_norm.hpp"
#include "medimg/ops/conv2d.hpp"
#include "medimg/ops/elementwise.hpp"
#include "medimg/ops/linear.hpp"
#include "medimg/ops/pooling.hpp"
#include "reference.hpp"

using namespace medimg;
using medimg::test::gpu;
using medimg::test::has_cuda_device;
namespace ref = medimg::test::ref;
namespace utf = boost::unit_test;

namespace {
using halves = boost::mpl::list<std::integral_constant<int, 1>, std::integral_constant<int, 2>>;  // bf16, fp16
template <class P>
Precision precision_of() {
    return P::value == 1 ? Precision::bf16 : Precision::fp16;
}
/// t rounded as storage p keeps it, as float32 (host roundings).
Tensor<float, Cpu> rounded(const Tensor<float, Cpu>& t, Precision p) { return t.to_storage(p).to_storage(Precision::fp32); }
/// t on the device, stored as p.
Tensor<float, Cuda> dev(const Tensor<float, Cpu>& t, Precision p) { return t.to_storage(p).to<Cuda>(); }
/// One unit in the last place, relative: bf16 keeps 8 significant bits, fp16 11.
double ulp(Precision p) { return p == Precision::bf16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11); }
double max_abs(const Tensor<float, Cpu>& t) {
    double m = 0;
    for (std::int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::fabs(static_cast<double>(t[i])));
    return m;
}
}  // namespace

BOOST_AUTO_TEST_SUITE(cuda_storage)

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(device_conversions_are_bitwise_the_host_conversions) {
    auto x = ref::random<float>({4096}, 5, -3.0, 3.0);
    const std::vector<float> special = {0.0f, -0.0f, 65504.0f, 65520.0f, 1e6f, 1e-8f, std::ldexp(1.0f, -24),
                                        1.0f + std::ldexp(1.0f, -8), 1.0f + std::ldexp(1.0f, -11), 3e38f};
    for (std::size_t i = 0; i < special.size(); ++i) x[static_cast<std::int64_t>(i)] = special[i];
    for (const Precision p : {Precision::bf16, Precision::fp16}) {
        BOOST_TEST_CONTEXT(precision_name(p)) {
            const auto h = x.to<Cuda>().to_storage(p);
            BOOST_TEST(h.storage() == p);
            const auto back_bits = h.to<Cpu>();  // a raw copy: the stored bit patterns
            const auto want_bits = x.to_storage(p);
            BOOST_TEST(std::memcmp(back_bits.raw(), want_bits.raw(), want_bits.bytes()) == 0);
            MEDIMG_CHECK_GPU_CPU_EXACT("to_storage(fp32)", h.to_storage(Precision::fp32), rounded(x, p));
            const Precision other = p == Precision::bf16 ? Precision::fp16 : Precision::bf16;
            const auto cross = h.to_storage(other).to<Cpu>();
            const auto cross_want = want_bits.to_storage(other);
            BOOST_TEST(std::memcmp(cross.raw(), cross_want.raw(), cross_want.bytes()) == 0);
            auto f = Tensor<float, Cuda>::empty({5}, p);
            f.fill_(0.1f);
            const auto filled = Tensor<float, Cpu>::full({5}, round_to(p, 0.1f));
            MEDIMG_CHECK_GPU_CPU_EXACT("fill_", f, filled);
        }
    }
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE_TEMPLATE(add_and_relu_on_half_storage_are_the_rounded_cpu_results, P, halves) {
    const Precision p = precision_of<P>();
    const Shape s{3, 5, 7, 9};
    const auto a = rounded(ref::random<float>(s, 11, -2.0, 2.0), p), b = rounded(ref::random<float>(s, 12, -2.0, 2.0), p);
    auto sum = Tensor<float, Cpu>::empty(s);
    ops::add(a, b, sum);
    auto gy = Tensor<float, Cuda>::empty(s, p);
    ops::add(dev(a, p), dev(b, p), gy);
    BOOST_TEST(gy.storage() == p);
    MEDIMG_CHECK_GPU_CPU_EXACT("add", gy, rounded(sum, p));  // one exact float sum, rounded once
    auto acc = dev(a, p);
    ops::add_(acc, dev(b, p));
    MEDIMG_CHECK_GPU_CPU_EXACT("add_", acc, rounded(sum, p));

    auto r = Tensor<float, Cpu>::empty(s);
    ops::relu_forward(a, r);
    auto gr = Tensor<float, Cuda>::empty(s, p);
    ops::relu_forward(dev(a, p), gr);
    MEDIMG_CHECK_GPU_CPU_EXACT("relu_forward", gr, r);
    const auto dy = rounded(ref::random<float>(s, 13), p);
    auto dx = Tensor<float, Cpu>::empty(s);
    ops::relu_backward(r, dy, dx);
    auto gdx = Tensor<float, Cuda>::empty(s, p);
    ops::relu_backward(gr, dev(dy, p), gdx);
    MEDIMG_CHECK_GPU_CPU_EXACT("relu_backward", gdx, dx);
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE_TEMPLATE(pooling_on_half_storage_matches_the_cpu_on_rounded_values, P, halves) {
    const Precision p = precision_of<P>();
    const double u = ulp(p);
    const auto x = rounded(ref::random<float>({2, 3, 11, 10}, 21, -2.0, 2.0), p);
    const ops::MaxPool2dParams mp{3, 3, 2, 2, 1, 1};
    const Shape ys = ops::max_pool2d_output_shape("test", x.shape(), mp);
    auto y = Tensor<float, Cpu>::empty(ys);
    auto am = Tensor<std::int32_t, Cpu>::empty(ys);
    ops::max_pool2d_forward(x, y, am, mp);
    auto gy = Tensor<float, Cuda>::empty(ys, p);
    auto gam = Tensor<std::int32_t, Cuda>::empty(ys);
    ops::max_pool2d_forward(dev(x, p), gy, gam, mp);
    MEDIMG_CHECK_GPU_CPU_EXACT("max_pool2d_forward", gy, y);
    MEDIMG_CHECK_GPU_CPU_EXACT("max_pool2d_forward argmax", gam, am);
    const auto dy = rounded(ref::random<float>(ys, 22), p);
    auto dx = Tensor<float, Cpu>::empty(x.shape());
    ops::max_pool2d_backward(dy, am, dx);
    auto gdx = Tensor<float, Cuda>::empty(x.shape(), p);
    ops::max_pool2d_backward(dev(dy, p), gam, gdx);
    MEDIMG_CHECK_GPU_CPU_EXACT("max_pool2d_backward", gdx, rounded(dx, p));  // float sums in the CPU's order, rounded once

    for (const Shape out : {Shape{2, 3, 1, 1}, Shape{2, 3, 2, 3}}) {
        BOOST_TEST_CONTEXT("adaptive average to " << out) {
            auto a = Tensor<float, Cpu>::empty(out);
            ops::adaptive_avg_pool2d_forward(x, a);
            auto ga = Tensor<float, Cuda>::empty(out, p);
            ops::adaptive_avg_pool2d_forward(dev(x, p), ga);
            MEDIMG_CHECK_GPU_CPU("adaptive_avg_pool2d_forward", ga, a, u, u * max_abs(a));
            const auto da = rounded(ref::random<float>(out, 23), p);
            auto dxa = Tensor<float, Cpu>::empty(x.shape());
            ops::adaptive_avg_pool2d_backward(da, dxa);
            auto gdxa = Tensor<float, Cuda>::empty(x.shape(), p);
            ops::adaptive_avg_pool2d_backward(dev(da, p), gdxa);
            MEDIMG_CHECK_GPU_CPU("adaptive_avg_pool2d_backward", gdxa, dxa, u, u * max_abs(dxa));
        }
    }
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE_TEMPLATE(batch_norm_on_half_storage_matches_the_cpu_on_rounded_values, P, halves) {
    const Precision p = precision_of<P>();
    const double u = ulp(p);
    for (const Shape s : {Shape{4, 6, 5, 7}, Shape{16, 3, 1, 1}, Shape{2, 8, 33, 31}}) {
        BOOST_TEST_CONTEXT(precision_name(p) << ", x " << s) {
            const std::int64_t C = s[1];
            const auto x = rounded(ref::random<float>(s, 31, -2.0, 3.0), p);
            const auto gamma = ref::random<float>({C}, 32, 0.5, 1.5), beta = ref::random<float>({C}, 33);
            // training: batch statistics, running statistics updated, then the backward
            auto rm = Tensor<float, Cpu>::zeros({C}), rv = Tensor<float, Cpu>::ones({C});
            auto grm = gpu(rm), grv = gpu(rv);
            auto y = Tensor<float, Cpu>::empty(s), mean = Tensor<float, Cpu>::empty({C}), invstd = Tensor<float, Cpu>::empty({C});
            auto gy = Tensor<float, Cuda>::empty(s, p), gmean = Tensor<float, Cuda>::empty({C}), ginvstd = Tensor<float, Cuda>::empty({C});
            ops::batch_norm_forward_training(x, gamma, beta, rm, rv, 0.1, 1e-5, y, mean, invstd);
            ops::batch_norm_forward_training(dev(x, p), gpu(gamma), gpu(beta), grm, grv, 0.1, 1e-5, gy, gmean, ginvstd);
            MEDIMG_CHECK_GPU_CPU("save_mean", gmean, mean, 1e-5, 1e-6);
            MEDIMG_CHECK_GPU_CPU("save_invstd", ginvstd, invstd, 1e-5, 1e-6);
            MEDIMG_CHECK_GPU_CPU("running_mean", grm, rm, 1e-5, 1e-6);
            MEDIMG_CHECK_GPU_CPU("running_var", grv, rv, 1e-5, 1e-6);
            MEDIMG_CHECK_GPU_CPU("batch_norm y", gy, y, u, u * max_abs(y));
            const auto dy = rounded(ref::random<float>(s, 34), p);
            auto dx = Tensor<float, Cpu>::empty(s), dg = Tensor<float, Cpu>::empty({C}), db = Tensor<float, Cpu>::empty({C});
            auto gdx = Tensor<float, Cuda>::empty(s, p), gdg = Tensor<float, Cuda>::empty({C}), gdb = Tensor<float, Cuda>::empty({C});
            ops::batch_norm_backward(x, dy, gamma, mean, invstd, true, dx, dg, db);
            ops::batch_norm_backward(dev(x, p), dev(dy, p), gpu(gamma), gmean, ginvstd, true, gdx, gdg, gdb);
            MEDIMG_CHECK_GPU_CPU("batch_norm dgamma", gdg, dg, 1e-4, 1e-4 * max_abs(dg));
            MEDIMG_CHECK_GPU_CPU("batch_norm dbeta", gdb, db, 1e-4, 1e-4 * max_abs(db));
            MEDIMG_CHECK_GPU_CPU("batch_norm dx", gdx, dx, 2 * u, 2 * u * max_abs(dx));
            // inference: the running statistics are constants
            auto yi = Tensor<float, Cpu>::empty(s);
            auto gyi = Tensor<float, Cuda>::empty(s, p);
            ops::batch_norm_forward_inference(x, gamma, beta, rm, rv, 1e-5, yi);
            ops::batch_norm_forward_inference(dev(x, p), gpu(gamma), gpu(beta), gpu(rm), gpu(rv), 1e-5, gyi);
            MEDIMG_CHECK_GPU_CPU("batch_norm inference y", gyi, yi, u, u * max_abs(yi));
            auto ris = Tensor<float, Cpu>::empty({C});
            ops::rsqrt(rv, 1e-5, ris);
            ops::batch_norm_backward(x, dy, gamma, rm, ris, false, dx, dg, db);
            ops::batch_norm_backward(dev(x, p), dev(dy, p), gpu(gamma), gpu(rm), gpu(ris), false, gdx, gdg, gdb);
            MEDIMG_CHECK_GPU_CPU("batch_norm inference dgamma", gdg, dg, 1e-4, 1e-4 * max_abs(dg));
            MEDIMG_CHECK_GPU_CPU("batch_norm inference dx", gdx, dx, u, u * max_abs(dx));
        }
    }
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE_TEMPLATE(conv2d_and_linear_read_and_write_half_storage, P, halves) {
    const Precision p = precision_of<P>();
    const double u = ulp(p);
    struct Case {
        Shape x, w;
        ops::Conv2dParams cp;
        bool bias;
    };
    const std::vector<Case> cases = {
        {{2, 3, 9, 9}, {4, 3, 3, 3}, {1, 1, 1, 1, 1, 1}, true},
        {{8, 64, 14, 14}, {64, 64, 3, 3}, {1, 1, 1, 1, 1, 1}, false},
        {{4, 8, 8, 8}, {16, 8, 1, 1}, {2, 2, 0, 0, 1, 1}, false},
    };
    std::uint64_t seed = 40;
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT(precision_name(p) << ", x " << c.x << ", w " << c.w) {
            const auto xr = rounded(ref::random<float>(c.x, seed++), p);
            const auto w = ref::random<float>(c.w, seed++);
            const auto wr = rounded(w, p);
            const auto b = c.bias ? ref::random<float>({c.w[0]}, seed++) : Tensor<float, Cpu>();
            const Shape ys = ops::conv2d_output_shape("test", c.x, c.w, c.cp);
            const auto dyr = rounded(ref::random<float>(ys, seed++), p);
            // No PrecisionScope: the half operands alone put the convolution in half precision.
            auto y = Tensor<float, Cpu>::empty(ys);
            ops::conv2d_forward(xr, wr, b, y, c.cp);
            auto gy = Tensor<float, Cuda>::empty(ys, p);
            ops::conv2d_forward(dev(xr, p), gpu(w), gpu(b), gy, c.cp);
            MEDIMG_CHECK_GPU_CPU("conv2d_forward into half storage", gy, y, 2 * u, 2 * u * max_abs(y));
            auto dx = Tensor<float, Cpu>::empty(c.x);
            ops::conv2d_backward_data(dyr, wr, dx, c.cp);
            auto gdx = Tensor<float, Cuda>::empty(c.x, p);
            ops::conv2d_backward_data(dev(dyr, p), gpu(w), gdx, c.cp);
            MEDIMG_CHECK_GPU_CPU("conv2d_backward_data into half storage", gdx, dx, 2 * u, u * max_abs(dx));
            auto gdx_f = Tensor<float, Cuda>::empty(c.x);  // a float32 input's gradient from a half dy
            ops::conv2d_backward_data(dev(dyr, p), gpu(w), gdx_f, c.cp);
            MEDIMG_CHECK_GPU_CPU("conv2d_backward_data into float32", gdx_f, dx, 2 * u, u * max_abs(dx));
            auto dw = Tensor<float, Cpu>::empty(c.w);
            ops::conv2d_backward_filter(xr, dyr, dw, c.cp);
            auto gdw = Tensor<float, Cuda>::empty(c.w);
            ops::conv2d_backward_filter(dev(xr, p), dev(dyr, p), gdw, c.cp);
            MEDIMG_CHECK_GPU_CPU("conv2d_backward_filter from half storage", gdw, dw, 2 * u, u * max_abs(dw));
            auto db = Tensor<float, Cpu>::empty(Shape{c.w[0]});
            ops::conv2d_backward_bias(dyr, db);
            auto gdb = Tensor<float, Cuda>::empty(Shape{c.w[0]});
            ops::conv2d_backward_bias(dev(dyr, p), gdb);
            MEDIMG_CHECK_GPU_CPU("conv2d_backward_bias from half storage", gdb, db, 1e-5, 1e-5 * max_abs(db));
        }
    }
    // linear: a half input (pooled features) -> float32 logits; the input's gradient in half
    const auto xr = rounded(ref::random<float>({6, 40}, 60), p);
    const auto w = ref::random<float>({5, 40}, 61), b = ref::random<float>({5}, 62);
    const auto wr = rounded(w, p);
    auto y = Tensor<float, Cpu>::empty({6, 5});
    ops::linear_forward(xr, wr, b, y);
    auto gy = Tensor<float, Cuda>::empty({6, 5});
    ops::linear_forward(dev(xr, p), gpu(w), gpu(b), gy);
    MEDIMG_CHECK_GPU_CPU("linear_forward from half storage", gy, y, 1e-4, 1e-4 * max_abs(y));
    const auto dy = ref::random<float>({6, 5}, 63);
    const auto dyr = rounded(dy, p);  // the float32 dy is rounded to half for the tensor cores
    auto dx = Tensor<float, Cpu>::empty({6, 40});
    ops::linear_backward_data(dyr, wr, dx);
    auto gdx = Tensor<float, Cuda>::empty({6, 40}, p);
    ops::linear_backward_data(gpu(dy), gpu(w), gdx);
    MEDIMG_CHECK_GPU_CPU("linear_backward_data into half storage", gdx, dx, 2 * u, u * max_abs(dx));
    auto dw = Tensor<float, Cpu>::empty({5, 40}), db = Tensor<float, Cpu>::empty({5});
    ops::linear_backward_weight(xr, dyr, dw, db);
    auto gdw = Tensor<float, Cuda>::empty({5, 40}), gdb = Tensor<float, Cuda>::empty({5});
    ops::linear_backward_weight(dev(xr, p), gpu(dy), gdw, gdb);
    MEDIMG_CHECK_GPU_CPU("linear_backward_weight from half storage", gdw, dw, 1e-4, 1e-4 * max_abs(dw));
    auto db_exact = Tensor<float, Cpu>::empty({5});
    ops::linear_backward_weight(xr, dy, dw, db_exact);  // db sums the float32 dy itself
    MEDIMG_CHECK_GPU_CPU("linear db", gdb, db_exact, 1e-6, 1e-6);
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(autograd_under_bf16_keeps_activations_and_their_gradients_in_bf16) {
    PrecisionScope<Cuda> scope(Precision::bf16);
    BOOST_REQUIRE(cuda::settings().half_activations);
    using V = autograd::Var<float, Cuda>;
    const auto x = V(gpu(ref::random<float>({4, 3, 16, 16}, 70)), true);  // a float32 image batch
    const auto w1 = V::parameter(gpu(ref::random<float>({8, 3, 3, 3}, 71)));
    const auto w2 = V::parameter(gpu(ref::random<float>({8, 8, 3, 3}, 72)));
    const auto g1 = V::parameter(Tensor<float, Cuda>::ones({8})), b1 = V::parameter(Tensor<float, Cuda>::zeros({8}));
    const auto fw = V::parameter(gpu(ref::random<float>({3, 8}, 73))), fb = V::parameter(Tensor<float, Cuda>::zeros({3}));
    const ops::Conv2dParams same{1, 1, 1, 1, 1, 1};
    const auto c1 = autograd::conv2d(x, w1, V(), same);
    const auto h = autograd::relu(autograd::batch_norm(c1, g1, b1, Tensor<float, Cuda>(), Tensor<float, Cuda>(), true));
    const auto pooled = autograd::max_pool2d(h, ops::MaxPool2dParams{3, 3, 2, 2, 1, 1});
    const auto c2 = autograd::conv2d(pooled, w2, V(), same);
    const auto sum = autograd::add(c2, pooled);
    const auto feat = autograd::flatten(autograd::adaptive_avg_pool2d(autograd::relu(sum), 1, 1));
    const auto logits = autograd::linear(feat, fw, fb);
    for (const auto* v : {&c1, &h, &pooled, &c2, &sum, &feat}) BOOST_TEST((v->value().storage() == Precision::bf16));
    BOOST_TEST((logits.value().storage() == Precision::fp32));
    auto loss = loss::cross_entropy(logits, gpu(Tensor<std::int64_t, Cpu>::from_vector({4}, {0, 1, 2, 1})));
    loss.backward();
    BOOST_TEST((x.grad().storage() == Precision::fp32));  // the input was float32, so is its gradient
    for (const auto* w : {&w1, &w2, &g1, &b1, &fw, &fb}) {
        BOOST_TEST((w->grad().storage() == Precision::fp32));
        const auto g = medimg::test::host(w->grad());
        double norm = 0;
        for (std::int64_t i = 0; i < g.numel(); ++i) norm += static_cast<double>(g[i]) * g[i];
        BOOST_TEST((std::isfinite(norm) && norm > 0));
    }
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(resnet18_activations_in_bf16_take_about_half_the_memory) {
    // Bytes held after a training-mode forward pass (the saved activations) and the peak over a
    // whole step, float32 vs bf16 with and without half activations.
    nn::ResNet18<float, Cuda> m(nn::ResNetOptions{3, 3, 5});
    m.train();
    const auto x = gpu(ref::random<float>({16, 3, 96, 96}, 80));
    const auto y = gpu(Tensor<std::int64_t, Cpu>::from_vector({16}, std::vector<std::int64_t>(16, 1)));
    auto measure = [&](Precision p, bool half_activations) {
        PrecisionScope<Cuda> scope(p);
        const bool before = cuda::settings().half_activations;
        cuda::settings().half_activations = half_activations;
        cuda::synchronize();
        const std::size_t base = cuda::allocator_stats().bytes_in_use;
        cuda::CachingAllocator::instance().reset_peak();
        auto loss = loss::cross_entropy(m(autograd::Var<float, Cuda>(x)), y);
        cuda::synchronize();
        const std::size_t held = cuda::allocator_stats().bytes_in_use - base;
        loss.backward();
        for (auto& [name, q] : m.named_parameters()) q.zero_grad();
        cuda::synchronize();
        const std::size_t peak = cuda::allocator_stats().peak_bytes_in_use - base;
        cuda::settings().half_activations = before;
        return std::pair<double, double>(static_cast<double>(held), static_cast<double>(peak));
    };
    measure(Precision::fp32, false);  // warm-up: parameters' gradients, workspaces
    const auto f32 = measure(Precision::fp32, false);
    const auto cast_only = measure(Precision::bf16, false);
    const auto half = measure(Precision::bf16, true);
    BOOST_TEST_MESSAGE("ResNet18 batch 16 at 96x96, MiB held after forward / step peak: fp32 " << f32.first / 1048576 << " / "
                       << f32.second / 1048576 << ", bf16 float32 activations " << cast_only.first / 1048576 << " / "
                       << cast_only.second / 1048576 << ", bf16 activations " << half.first / 1048576 << " / "
                       << half.second / 1048576);
    BOOST_TEST(half.first < 0.6 * f32.first);
    BOOST_TEST(cast_only.first > 0.9 * f32.first);
}

BOOST_AUTO_TEST_SUITE_END()
