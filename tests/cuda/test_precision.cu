// SPDX-License-Identifier: MIT
// Tests for mixed precision on the GPU (cuda::settings().precision = bf16 | fp16; core/precision.hpp,
// cuda/precision.cuh): the device casts are bitwise the host roundings; convolutions and linear
// layers in bf16/fp16 match the CPU's float32 result on the same rounded operands within the
// rounding of a half output; a ResNet18 training step in bf16 stays close to the float32 CPU step;
// the GradScaler makes the same decisions and the same unscaled gradients as on the CPU; fp16
// training with loss scaling learns. Mirrors tests/cpu/test_precision.cpp and test_kernels.cu.
#include <boost/mpl/list.hpp>
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#include "cuda_helpers.hpp"
#include "medimg/autograd/functions.hpp"
#include "medimg/autograd/loss.hpp"
#include "medimg/core/precision.hpp"
#include "medimg/core/rng.hpp"
#include "medimg/cuda/precision.cuh"
#include "medimg/nn/nn.hpp"
#include "medimg/optim/optim.hpp"
#include "reference.hpp"

using namespace medimg;
using medimg::test::gpu;
using medimg::test::has_cuda_device;
using medimg::test::relative_l2;
namespace ref = medimg::test::ref;
namespace utf = boost::unit_test;

namespace {
/// t with every element rounded as precision p stores it (the operands the GPU multiplies).
Tensor<float, Cpu> rounded(const Tensor<float, Cpu>& t, Precision p) {
    auto r = t.clone();
    for (std::int64_t i = 0; i < r.numel(); ++i) r[i] = round_to(p, r[i]);
    return r;
}
double max_abs(const Tensor<float, Cpu>& t) {
    double m = 0;
    for (std::int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::fabs(static_cast<double>(t[i])));
    return m;
}
/// One unit in the last place of a half output, relative: bf16 keeps 8 significant bits, fp16 11.
/// The GPU's result is its float32 sum rounded once to half; the CPU's is the float32 sum of the
/// same rounded operands. So |gpu - cpu| <= half an ulp of |cpu| (+ float32 summation order), and
/// algorithms that transform in half (Winograd) may add a little: one ulp of the largest output
/// absolute, one ulp relative. A wrong layout or index moves values by the size of the output.
double half_ulp(Precision p) { return p == Precision::bf16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11); }

using mixed = boost::mpl::list<std::integral_constant<int, 1>, std::integral_constant<int, 2>>;  // bf16, fp16
template <class P>
Precision precision_of() {
    return P::value == 1 ? Precision::bf16 : Precision::fp16;
}
}  // namespace

BOOST_AUTO_TEST_SUITE(cuda_precision)

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(device_casts_are_bitwise_the_host_roundings) {
    std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, 65519.99f, 65520.0f, 1e6f, -1e6f,
                            std::ldexp(1.0f, -24), std::ldexp(1.0f, -25), 3 * std::ldexp(1.0f, -25), std::ldexp(1.0f, -133),
                            1.0f + std::ldexp(1.0f, -8), 1.0f + 3 * std::ldexp(1.0f, -8), 1.0f + std::ldexp(1.0f, -11),
                            std::numeric_limits<float>::max(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::denorm_min()};
    Rng rng(3);
    for (int i = 0; i < 200000; ++i) {  // spread bit patterns, NaN excluded (payloads may differ)
        const auto bits = static_cast<std::uint32_t>(rng.next_u64());
        float f;
        std::memcpy(&f, &bits, sizeof f);
        if (!std::isnan(f)) v.push_back(f);
    }
    const auto n = static_cast<std::int64_t>(v.size());
    const auto x = Tensor<float, Cpu>::from_vector({n}, v).to<Cuda>();
    for (const auto p : {Precision::bf16, Precision::fp16}) {
        BOOST_TEST_CONTEXT(precision_name(p)) {
            const auto h = cuda::detail::to_half(x.data(), n, p);
            std::vector<std::uint16_t> bits(static_cast<std::size_t>(n));
            cuda::synchronize();
            MEDIMG_CUDA_CHECK(cudaMemcpy(bits.data(), h.get(), bits.size() * 2, cudaMemcpyDeviceToHost));
            std::int64_t first_bad = -1;
            for (std::int64_t i = 0; i < n && first_bad < 0; ++i) {
                const auto want = p == Precision::bf16 ? float_to_bf16_bits(v[i]) : float_to_half_bits(v[i]);
                if (bits[i] != want) first_bad = i;
            }
            BOOST_CHECK_MESSAGE(first_bad < 0, "device cast differs from the host rounding at " << first_bad << " (value "
                                                   << (first_bad >= 0 ? v[first_bad] : 0.0f) << ")");
            auto back = Tensor<float, Cuda>::empty({n});
            cuda::detail::cast_to_float(h.get(), back.data(), n, p);
            MEDIMG_CHECK_GPU_CPU_EXACT("cast back to float", back, rounded(Tensor<float, Cpu>::from_vector({n}, v), p));
        }
    }
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE_TEMPLATE(conv2d_in_half_precision_matches_the_cpu_on_rounded_operands, P, mixed) {
    const Precision pr = precision_of<P>();
    struct Case {
        Shape x, w;
        ops::Conv2dParams p;
        bool bias;
    };
    const std::vector<Case> cases = {
        {{2, 3, 9, 9}, {4, 3, 3, 3}, {1, 1, 1, 1, 1, 1}, true},        // 3x3 pad 1
        {{3, 2, 11, 10}, {5, 2, 7, 7}, {2, 2, 3, 3, 1, 1}, false},     // 7x7 stride 2, odd sizes
        {{4, 8, 8, 8}, {16, 8, 1, 1}, {2, 2, 0, 0, 1, 1}, false},      // 1x1 stride 2
        {{8, 64, 14, 14}, {64, 64, 3, 3}, {1, 1, 1, 1, 1, 1}, false},  // a layer3-sized body conv (tensor-core friendly)
    };
    PrecisionScope<Cuda> scope(pr);
    std::uint64_t seed = 300;
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT(precision_name(pr) << ", x " << c.x << ", w " << c.w) {
            const auto x = ref::random<float>(c.x, seed++), w = ref::random<float>(c.w, seed++);
            const auto b = c.bias ? ref::random<float>({c.w[0]}, seed++) : Tensor<float, Cpu>();
            const Shape ys = ops::conv2d_output_shape("test", c.x, c.w, c.p);
            const auto dy = ref::random<float>(ys, seed++);
            const auto xr = rounded(x, pr), wr = rounded(w, pr), dyr = rounded(dy, pr);
            const double u = half_ulp(pr);

            auto y = Tensor<float, Cpu>::empty(ys);
            auto gy = Tensor<float, Cuda>::empty(ys);
            ops::conv2d_forward(xr, wr, b, y, c.p);  // the bias is added in float32 on both sides
            ops::conv2d_forward(gpu(x), gpu(w), gpu(b), gy, c.p);
            MEDIMG_CHECK_GPU_CPU("conv2d_forward", gy, y, 2 * u, u * max_abs(y));

            auto dx = Tensor<float, Cpu>::empty(c.x);
            auto gdx = Tensor<float, Cuda>::full(c.x, 123.0f);
            ops::conv2d_backward_data(dyr, wr, dx, c.p);
            ops::conv2d_backward_data(gpu(dy), gpu(w), gdx, c.p);
            MEDIMG_CHECK_GPU_CPU("conv2d_backward_data", gdx, dx, 2 * u, u * max_abs(dx));

            auto dw = Tensor<float, Cpu>::empty(c.w);
            auto gdw = Tensor<float, Cuda>::full(c.w, 123.0f);
            ops::conv2d_backward_filter(xr, dyr, dw, c.p);
            ops::conv2d_backward_filter(gpu(x), gpu(dy), gdw, c.p);
            MEDIMG_CHECK_GPU_CPU("conv2d_backward_filter", gdw, dw, 2 * u, u * max_abs(dw));
        }
    }
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE_TEMPLATE(linear_in_half_precision_matches_the_cpu_on_rounded_operands, P, mixed) {
    const Precision pr = precision_of<P>();
    PrecisionScope<Cuda> scope(pr);
    // cublasGemmEx writes float32 C: products of half operands are exact in float32, so only the
    // summation order differs (no output rounding).
    for (const auto& [N, in, out] : std::vector<std::tuple<std::int64_t, std::int64_t, std::int64_t>>{{4, 7, 3}, {64, 512, 2}, {33, 65, 17}}) {
        BOOST_TEST_CONTEXT(precision_name(pr) << ", N " << N << ", in " << in << ", out " << out) {
            const auto x = ref::random<float>({N, in}, 61), w = ref::random<float>({out, in}, 62), b = ref::random<float>({out}, 63);
            const auto dy = ref::random<float>({N, out}, 64);
            const auto xr = rounded(x, pr), wr = rounded(w, pr), dyr = rounded(dy, pr);
            auto y = Tensor<float, Cpu>::empty({N, out});
            auto gy = Tensor<float, Cuda>::empty({N, out});
            ops::linear_forward(xr, wr, b, y);
            ops::linear_forward(gpu(x), gpu(w), gpu(b), gy);
            MEDIMG_CHECK_GPU_CPU("linear_forward", gy, y, 1e-5, 1e-5 * max_abs(y));
            auto dx = Tensor<float, Cpu>::empty({N, in});
            auto gdx = Tensor<float, Cuda>::empty({N, in});
            ops::linear_backward_data(dyr, wr, dx);
            ops::linear_backward_data(gpu(dy), gpu(w), gdx);
            MEDIMG_CHECK_GPU_CPU("linear_backward_data", gdx, dx, 1e-5, 1e-5 * max_abs(dx));
            auto dw = Tensor<float, Cpu>::empty({out, in}), db = Tensor<float, Cpu>::empty({out});
            auto gdw = Tensor<float, Cuda>::empty({out, in}), gdb = Tensor<float, Cuda>::empty({out});
            ops::linear_backward_weight(xr, dyr, dw, db);
            ops::linear_backward_weight(gpu(x), gpu(dy), gdw, gdb);
            MEDIMG_CHECK_GPU_CPU("linear_backward_weight dw", gdw, dw, 1e-5, 1e-5 * max_abs(dw));
            ops::linear_backward_weight(x, dy, dw, db);  // the bias gradient sums the float32 dy: no rounding
            MEDIMG_CHECK_GPU_CPU("linear_backward_weight db", gdb, db, medimg::test::kGpuFloatRtol, medimg::test::kGpuFloatAtol);
        }
    }
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(precision_scope_restores_fp32_and_double_ignores_the_setting) {
    {
        PrecisionScope<Cuda> scope(Precision::bf16);
        BOOST_TEST((cuda::settings().precision == Precision::bf16));
        // double tensors keep double arithmetic: equal to the CPU to summation order
        const auto x = ref::random<double>({2, 3, 9, 9}, 71), w = ref::random<double>({4, 3, 3, 3}, 72);
        auto y = Tensor<double, Cpu>::empty({2, 4, 9, 9});
        auto gy = Tensor<double, Cuda>::empty({2, 4, 9, 9});
        ops::conv2d_forward(x, w, Tensor<double, Cpu>(), y, {1, 1, 1, 1, 1, 1});
        ops::conv2d_forward(gpu(x), gpu(w), Tensor<double, Cuda>(), gy, {1, 1, 1, 1, 1, 1});
        MEDIMG_CHECK_GPU_CPU("double conv2d under bf16", gy, y, medimg::test::kGpuDoubleTol, medimg::test::kGpuDoubleTol);
    }
    BOOST_TEST((cuda::settings().precision == Precision::fp32));
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(grad_scaler_decides_and_unscales_like_the_cpu) {
    for (const bool poison : {false, true}) {
        BOOST_TEST_CONTEXT("an Inf gradient: " << poison) {
            auto gc = ref::random<float>({300001}, 81, -1e4, 1e4);
            if (poison) gc[123456] = std::numeric_limits<float>::infinity();
            auto pc = autograd::Var<float, Cpu>::parameter(ref::random<float>({300001}, 82));
            auto pg = autograd::Var<float, Cuda>::parameter(pc.value().to<Cuda>());
            pc.grad() = gc.clone();
            pg.grad() = gpu(gc);
            optim::SGD<float, Cpu> oc({pc}, optim::SGDOptions(0.1));
            optim::SGD<float, Cuda> og({pg}, optim::SGDOptions(0.1));
            optim::GradScaler<float, Cpu> sc(optim::GradScalerOptions{1024.0, 2.0, 0.5, 1});
            optim::GradScaler<float, Cuda> sg(optim::GradScalerOptions{1024.0, 2.0, 0.5, 1});
            BOOST_TEST(sc.unscale(oc) == !poison);
            BOOST_TEST(sg.unscale(og) == !poison);
            MEDIMG_CHECK_GPU_CPU_EXACT("unscaled gradient", pg.grad(), pc.grad());
            BOOST_TEST(sc.step(oc) == sg.step(og));
            sc.update();
            sg.update();
            MEDIMG_CHECK_GPU_CPU_EXACT("parameter after the (possibly skipped) step", pg.value(), pc.value());
            BOOST_TEST(sg.get_scale() == sc.get_scale());
            BOOST_TEST(sg.get_scale() == (poison ? 512.0 : 2048.0));
        }
    }
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(resnet18_training_step_in_bf16_stays_close_to_the_float32_cpu_step) {
    // Through ~20 layers the bf16 operands (8 significant bits) move logits and gradients by about
    // 1e-2 relative; a wrong cast (fp16 bits read as bf16, a missing cast back) moves them by 1 or
    // more. The bounds below sit between the two.
    PrecisionScope<Cuda> scope(Precision::bf16);
    nn::ResNet18<float, Cpu> mc(nn::ResNetOptions{3, 3, 5});
    nn::ResNet18<float, Cuda> mg(nn::ResNetOptions{3, 3, 5});
    const auto x = ref::random<float>({8, 3, 64, 64}, 91);
    const auto y = Tensor<std::int64_t, Cpu>::from_vector({8}, {0, 2, 1, 2, 1, 0, 0, 1});
    mc.train();
    mg.train();
    auto logits_c = mc(autograd::Var<float, Cpu>(x));
    auto logits_g = mg(autograd::Var<float, Cuda>(gpu(x)));
    const double rl = relative_l2(medimg::test::host(logits_g.value()), logits_c.value());
    BOOST_TEST_MESSAGE("bf16 vs fp32 logits: relative L2 " << rl);
    BOOST_TEST(rl < 5e-2);
    auto lc = loss::cross_entropy(logits_c, y);
    auto lg = loss::cross_entropy(logits_g, gpu(y));
    BOOST_TEST(static_cast<double>(lg.value().item()) == static_cast<double>(lc.value().item()), boost::test_tools::tolerance(2e-2));
    lc.backward();
    lg.backward();
    double worst = 0;
    for (auto& [name, p] : mc.named_parameters()) {
        const auto pg = [&] {
            for (auto& [n, q] : mg.named_parameters())
                if (n == name) return medimg::test::host(q.grad());
            return Tensor<float, Cpu>();
        }();
        const double r = relative_l2(pg, p.grad());
        worst = std::max(worst, r);
        BOOST_CHECK_MESSAGE(r < 0.15, "grad " << name << ": bf16 vs fp32 relative L2 difference " << r);
    }
    BOOST_TEST_MESSAGE("largest gradient relative L2 difference, bf16 vs fp32: " << worst);
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(fp16_training_with_loss_scaling_learns_a_tiny_two_class_set) {
    PrecisionScope<Cuda> scope(Precision::fp16);
    const auto set = medimg::test::two_class_squares();  // class 1: a bright 6x6 square
    const auto& x = set.x;
    const auto& y = set.y;
    nn::ResNet18<float, Cuda> m(nn::ResNetOptions{2, 1, 3});
    optim::Adam<float, Cuda> opt(m.named_parameters(), optim::AdamOptions{1e-3});
    optim::GradScaler<float, Cuda> scaler;
    const auto gx = gpu(x);
    const auto gy = gpu(y);
    double first = 0, last = 0;
    const int steps = 16;  // the CPU test's 12, plus room for steps skipped while the scale settles
    for (int s = 0; s < steps; ++s) {
        auto loss = loss::cross_entropy(m(autograd::Var<float, Cuda>(gx)), gy);
        const double l = loss.value().item();
        BOOST_REQUIRE_MESSAGE(std::isfinite(l), "step " << s << ": loss " << l);
        if (s == 0) first = l;
        last = l;
        scaler.scale(loss).backward();
        scaler.step(opt);
        scaler.update();
        opt.zero_grad();
    }
    BOOST_TEST_MESSAGE("fp16 loss " << first << " -> " << last << " in " << steps << " steps, " << scaler.skipped()
                                    << " skipped, scale " << scaler.get_scale());
    BOOST_TEST(scaler.skipped() < steps / 2);
    BOOST_TEST(last < 0.1 * first);
}

BOOST_AUTO_TEST_SUITE_END()
