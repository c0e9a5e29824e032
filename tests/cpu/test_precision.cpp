// SPDX-License-Identifier: MIT
// Tests of core/precision.hpp: the names of runtime.precision, the host roundings to bfloat16 and
// IEEE half (round to nearest, ties to even; the GPU's casts are compared with these in
// tests/cuda/test_precision.cu), and the CPU backend's refusal of anything but fp32.
// Oracles: hand-worked boundary values (ties, overflow, subnormals), an exhaustive property check
// of "nearest, ties to even" over spread bit patterns, every half value round-tripping, and - where
// the compiler has _Float16 - its conversion (libgcc's, independent of this code).
// Also half-precision storage in Tensor<float> (Tensor::storage(), to_storage(); the mixed-
// precision activations of the GPU backend): sizes, roundings, views, the refusals of data() and of
// every CPU op, and autograd's conversion of a gradient to its value's storage.
#include <boost/test/unit_test.hpp>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "helpers.hpp"
#include "medimg/autograd/functions.hpp"
#include "medimg/autograd/variable.hpp"
#include "medimg/core/precision.hpp"
#include "medimg/core/tensor.hpp"
#include "medimg/ops/batch_norm.hpp"
#include "medimg/ops/conv2d.hpp"
#include "medimg/ops/elementwise.hpp"
#include "medimg/ops/linear.hpp"
#include "medimg/ops/pooling.hpp"

using namespace medimg;
using medimg::test::message_contains;

namespace {
float from_bits(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}
std::uint32_t to_bits(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}
bool same_bits(float a, float b) { return to_bits(a) == to_bits(b); }

/// Whether r is the nearer of f's two grid neighbours lo <= f <= hi, a tie going to lo when lo
/// is the even one (last kept significand bit 0), else to hi.
bool nearest_even(double f, double r, double lo, double hi, bool lo_even) {
    const double dl = f - lo, dh = hi - f;
    if (dl < dh) return r == lo;
    if (dh < dl) return r == hi;
    return r == (lo_even ? lo : hi);
}
}  // namespace

BOOST_AUTO_TEST_SUITE(core_precision)

BOOST_AUTO_TEST_CASE(names_parse_both_ways_and_unknown_names_are_refused) {
    for (const auto p : {Precision::fp32, Precision::bf16, Precision::fp16}) BOOST_TEST((parse_precision(precision_name(p)) == p));
    BOOST_CHECK_EXCEPTION(parse_precision("fp8"), ValueError, message_contains("unknown precision 'fp8' (expected fp32, bf16 or fp16)"));
}

BOOST_AUTO_TEST_CASE(bf16_rounds_to_nearest_even_at_hand_worked_values) {
    BOOST_TEST(round_to_bf16(1.0f) == 1.0f);
    BOOST_TEST(round_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 1.0f);  // halfway between 1 and 1 + 2^-7: even is 1
    BOOST_TEST(round_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)) == 1.0f + std::ldexp(1.0f, -6));  // halfway, even is up
    BOOST_TEST(round_to_bf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)) == 1.0f + std::ldexp(1.0f, -7));
    BOOST_TEST(round_to_bf16(-3.14159265f) == -3.140625f);
    BOOST_TEST(round_to_bf16(FLT_MAX) == std::numeric_limits<float>::infinity());  // carries into the exponent
    BOOST_TEST(round_to_bf16(-FLT_MAX) == -std::numeric_limits<float>::infinity());
    BOOST_TEST(round_to_bf16(std::ldexp(1.0f, -133)) == std::ldexp(1.0f, -133));  // bf16's smallest subnormal
    BOOST_TEST(same_bits(round_to_bf16(std::ldexp(1.0f, -149)), 0.0f));            // float's smallest: below half of it
    BOOST_TEST(same_bits(round_to_bf16(-0.0f), -0.0f));
    BOOST_TEST(std::isnan(round_to_bf16(std::numeric_limits<float>::quiet_NaN())));
    BOOST_TEST(std::isnan(round_to_bf16(from_bits(0x7f800001u))));  // a NaN whose payload is all in the dropped bits
    BOOST_TEST(std::isinf(round_to_bf16(std::numeric_limits<float>::infinity())));
}

BOOST_AUTO_TEST_CASE(bf16_is_the_nearest_representable_value_with_ties_to_even) {
    std::int64_t checked = 0;
    for (std::uint64_t u = 0; u < 0x7f800000ull; u += 0x1357ull) {  // spread over every finite positive pattern
        for (std::uint32_t low : {0x0000u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu}) {
            const std::uint32_t bits = (static_cast<std::uint32_t>(u) & 0xffff0000u) | low;
            if (bits >= 0x7f800000u) continue;
            const float f = from_bits(bits);
            const float r = round_to_bf16(f);
            BOOST_REQUIRE((to_bits(r) & 0xffffu) == 0u);
            const double lo = from_bits(bits & 0xffff0000u);
            const double hi = (bits & 0xffff0000u) == 0x7f7f0000u ? std::ldexp(1.0, 128) : from_bits((bits & 0xffff0000u) + 0x10000u);
            const bool lo_even = ((bits >> 16) & 1u) == 0;
            const double rr = std::isinf(r) ? std::ldexp(1.0, 128) : static_cast<double>(r);
            BOOST_REQUIRE_MESSAGE(nearest_even(f, rr, lo, hi, lo_even), "bits 0x" << std::hex << bits);
            BOOST_REQUIRE(same_bits(round_to_bf16(-f), -r));
            ++checked;
        }
    }
    BOOST_TEST(checked > 100000);
}

BOOST_AUTO_TEST_CASE(half_rounds_to_nearest_even_at_hand_worked_values) {
    BOOST_TEST(round_to_half(65504.0f) == 65504.0f);  // the largest finite half
    BOOST_TEST(round_to_half(65519.99f) == 65504.0f);
    BOOST_TEST(round_to_half(65520.0f) == std::numeric_limits<float>::infinity());  // halfway to 2^16: even is inf
    BOOST_TEST(round_to_half(-1e6f) == -std::numeric_limits<float>::infinity());
    BOOST_TEST(round_to_half(1.0f + std::ldexp(1.0f, -11)) == 1.0f);
    BOOST_TEST(round_to_half(1.0f + 3 * std::ldexp(1.0f, -11)) == 1.0f + std::ldexp(1.0f, -9));
    BOOST_TEST(round_to_half(std::ldexp(1.0f, -14)) == std::ldexp(1.0f, -14));  // smallest normal
    BOOST_TEST(round_to_half(std::ldexp(1.0f, -24)) == std::ldexp(1.0f, -24));  // smallest subnormal
    BOOST_TEST(same_bits(round_to_half(std::ldexp(1.0f, -25)), 0.0f));          // halfway to it: even is 0
    BOOST_TEST(round_to_half(std::ldexp(1.0f, -25) * 1.0001f) == std::ldexp(1.0f, -24));
    BOOST_TEST(round_to_half(3 * std::ldexp(1.0f, -25)) == std::ldexp(1.0f, -23));  // 1.5 steps: even is 2
    BOOST_TEST(round_to_half(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -26)) == std::ldexp(1.0f, -14));  // rounds up into the normals
    BOOST_TEST(same_bits(round_to_half(-std::ldexp(1.0f, -30)), -0.0f));
    BOOST_TEST(same_bits(round_to_half(FLT_MIN / 4), 0.0f));
    BOOST_TEST(std::isnan(round_to_half(std::numeric_limits<float>::quiet_NaN())));
    BOOST_TEST(std::isnan(round_to_half(from_bits(0x7f800001u))));
}

BOOST_AUTO_TEST_CASE(every_half_value_round_trips_through_float) {
    for (std::uint32_t h = 0; h < 0x10000u; ++h) {
        const auto hb = static_cast<std::uint16_t>(h);
        const float f = half_bits_to_float(hb);
        if (((h >> 10) & 0x1fu) == 0x1fu && (h & 0x3ffu)) {
            BOOST_REQUIRE(std::isnan(f));
            continue;
        }
        BOOST_REQUIRE_MESSAGE(float_to_half_bits(f) == hb, "half 0x" << std::hex << h);
    }
    BOOST_TEST(half_bits_to_float(0x3c00u) == 1.0f);
    BOOST_TEST(half_bits_to_float(0x0001u) == std::ldexp(1.0f, -24));
    BOOST_TEST(half_bits_to_float(0xfbffu) == -65504.0f);
}

BOOST_AUTO_TEST_CASE(half_is_the_nearest_representable_value_with_ties_to_even) {
    // Between consecutive halves a < b (both finite, non-negative): the midpoint and its float
    // neighbours must go to the right side.
    for (std::uint32_t h = 0; h < 0x7bffu; ++h) {
        const float a = half_bits_to_float(static_cast<std::uint16_t>(h)), b = half_bits_to_float(static_cast<std::uint16_t>(h + 1));
        const float mid = static_cast<float>((static_cast<double>(a) + b) / 2);  // exact in float
        const float even = (h & 1u) ? b : a;
        BOOST_REQUIRE_MESSAGE(round_to_half(mid) == even, "midpoint above half 0x" << std::hex << h);
        BOOST_REQUIRE(round_to_half(std::nextafter(mid, 0.0f)) == a);
        BOOST_REQUIRE(round_to_half(std::nextafter(mid, 1e9f)) == b);
        BOOST_REQUIRE(same_bits(round_to_half(-mid), -even));
    }
}

#if defined(__FLT16_MAX__)
BOOST_AUTO_TEST_CASE(half_agrees_with_the_compilers_float16_conversion) {
    std::int64_t checked = 0;
    for (std::uint64_t u = 0; u < 0x100000000ull; u += 0x3f1ull) {
        const float f = from_bits(static_cast<std::uint32_t>(u));
        if (std::isnan(f)) continue;
        const auto h = static_cast<_Float16>(f);
        std::uint16_t hb;
        std::memcpy(&hb, &h, sizeof hb);
        BOOST_REQUIRE_MESSAGE(float_to_half_bits(f) == hb, "float bits 0x" << std::hex << u);
        ++checked;
    }
    BOOST_TEST(checked > 1000000);
}
#endif

BOOST_AUTO_TEST_CASE(the_cpu_backend_takes_fp32_only) {
    BOOST_CHECK_NO_THROW(PrecisionControl<Cpu>::set(Precision::fp32));
    BOOST_CHECK_EXCEPTION(PrecisionControl<Cpu>::set(Precision::bf16), ValueError,
                          message_contains("precision bf16 needs the CUDA backend; the CPU backend computes in fp32 only"));
    BOOST_CHECK_NO_THROW(PrecisionScope<Cpu>(Precision::fp32));
    BOOST_TEST((PrecisionControl<Cpu>::get() == Precision::fp32));
    BOOST_TEST(round_to(Precision::fp32, 1.0f + std::ldexp(1.0f, -20)) == 1.0f + std::ldexp(1.0f, -20));
    BOOST_TEST(round_to(Precision::bf16, 1.0f + std::ldexp(1.0f, -20)) == 1.0f);
    BOOST_TEST(round_to(Precision::fp16, 70000.0f) == std::numeric_limits<float>::infinity());
}

namespace {
// Values that exercise both roundings: ties, carries into the exponent, fp16 overflow and subnormals.
std::vector<float> storage_probe() {
    return {0.0f, -0.0f, 1.0f, -2.5f, 1.0f + 1.0f / 256, 1.0f + 3.0f / 512, 65504.0f, 65520.0f, 1e6f, 3.0e-5f, 1e-8f,
            -7.3e-6f, 0.1f, 1.0f / 3, 255.875f, 1e30f};
}
}  // namespace

BOOST_AUTO_TEST_CASE(half_storage_holds_two_bytes_per_value_and_rounds_like_the_host_roundings) {
    const std::vector<float> v = storage_probe();
    const auto n = static_cast<std::int64_t>(v.size());
    const auto x = Tensor<float>::from_vector({n}, v);
    for (Precision p : {Precision::bf16, Precision::fp16}) {
        const auto h = x.to_storage(p);
        BOOST_TEST(h.storage() == p);
        BOOST_TEST(h.half_storage());
        BOOST_TEST(h.element_bytes() == 2u);
        BOOST_TEST(h.bytes() == v.size() * 2);
        const std::vector<float> got = h.to_vector();
        for (std::size_t i = 0; i < v.size(); ++i) BOOST_TEST(to_bits(got[i]) == to_bits(round_to(p, v[i])), "value " << v[i]);
        // back to float32: exact; the same storage: a clone
        const auto f = h.to_storage(Precision::fp32);
        BOOST_TEST(f.storage() == Precision::fp32);
        for (std::size_t i = 0; i < v.size(); ++i) BOOST_TEST(to_bits(f[static_cast<std::int64_t>(i)]) == to_bits(got[i]));
        const auto c = h.to_storage(p);
        BOOST_TEST(!c.shares_storage_with(h));
        BOOST_TEST(c.to_vector() == got);
    }
    // bf16 -> fp16 goes through float: the fp16 rounding of the bf16 value
    const std::vector<float> bh = x.to_storage(Precision::bf16).to_storage(Precision::fp16).to_vector();
    for (std::size_t i = 0; i < v.size(); ++i) BOOST_TEST(to_bits(bh[i]) == to_bits(round_to_half(round_to_bf16(v[i]))));
    BOOST_CHECK_EXCEPTION(Tensor<double>::empty({2}, Precision::bf16), ValueError, message_contains("float tensors only"));
    BOOST_CHECK_EXCEPTION(Tensor<double>::zeros({2}).to_storage(Precision::fp16), ValueError,
                          message_contains("float tensors only"));
}

BOOST_AUTO_TEST_CASE(half_storage_views_copies_and_fills_keep_the_format) {
    std::vector<float> v(24);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = 0.25f * static_cast<float>(i) - 2.0f;  // exact in bf16 and fp16
    const auto h = Tensor<float>::from_vector({4, 6}, v).to_storage(Precision::bf16);
    const auto rows = h.slice0(1, 2);  // rows 1 and 2: byte offset 6 * 2
    BOOST_TEST(rows.storage() == Precision::bf16);
    BOOST_TEST(rows.to_vector() == std::vector<float>(v.begin() + 6, v.begin() + 18));
    const auto r = h.reshape({2, 12});
    BOOST_TEST(r.storage() == Precision::bf16);
    BOOST_TEST(r.shares_storage_with(h));
    const auto moved = h.to<Cpu>();
    BOOST_TEST(moved.storage() == Precision::bf16);
    BOOST_TEST(moved.to_vector() == v);
    auto f = Tensor<float>::empty({3}, Precision::fp16);
    f.fill_(1.0f / 3);
    BOOST_TEST(f.to_vector() == std::vector<float>(3, round_to_half(1.0f / 3)));
    BOOST_TEST(f.slice0(2, 1).item() == round_to_half(1.0f / 3));
    f.zero_();
    BOOST_TEST(f.to_vector() == std::vector<float>(3, 0.0f));
    auto g = Tensor<float>::empty({3}, Precision::fp16);
    g.copy_(f.clone());
    BOOST_TEST(g.to_vector() == f.to_vector());
    BOOST_CHECK_EXCEPTION(g.copy_(Tensor<float>::zeros({3})), ValueError, message_contains("holds fp32 storage, destination fp16"));
}

BOOST_AUTO_TEST_CASE(half_storage_cannot_be_read_as_floats) {
    auto h = Tensor<float>::zeros({2, 3}).to_storage(Precision::fp16);
    BOOST_CHECK_EXCEPTION(h.data(), ValueError, message_contains("this [2,3] tensor holds fp16 storage"));
    BOOST_CHECK_EXCEPTION(static_cast<void>(h[0]), ValueError, message_contains("to_storage(Precision::fp32)"));
    BOOST_CHECK_EXCEPTION(h.cast<double>(), ValueError, message_contains("fp16 storage"));
    BOOST_TEST(h.raw() != nullptr);
}

BOOST_AUTO_TEST_CASE(cpu_ops_refuse_half_storage_in_one_line) {
    const auto x = Tensor<float>::ones({1, 2, 4, 4}).to_storage(Precision::bf16);
    auto y = Tensor<float>::empty({1, 2, 4, 4}, Precision::bf16);
    BOOST_CHECK_EXCEPTION(ops::relu_forward(x, y), ValueError,
                          message_contains("relu_forward: x [1,2,4,4] holds bf16 storage, which only the CUDA backend reads"));
    auto yf = Tensor<float>::empty({1, 2, 4, 4});
    BOOST_CHECK_EXCEPTION(ops::relu_forward(x, yf), ValueError,
                          message_contains("relu_forward: x [1,2,4,4] holds bf16 storage but y [1,2,4,4] holds fp32"));
    const auto z = Tensor<float>::ones({1, 2, 4, 4}).to_storage(Precision::fp16);
    BOOST_CHECK_EXCEPTION(ops::add(x, z, y), ValueError, message_contains("holds bf16 storage but b [1,2,4,4] holds fp16"));
    const auto w = Tensor<float>::ones({3, 2, 3, 3});
    auto out = Tensor<float>::empty({1, 3, 4, 4});
    const ops::Conv2dParams p{1, 1, 1, 1, 1, 1};
    BOOST_CHECK_EXCEPTION(ops::conv2d_forward(x, w, Tensor<float>(), out, p), ValueError,
                          message_contains("conv2d_forward: x [1,2,4,4] holds bf16 storage, which only the CUDA backend"));
    auto out_h = Tensor<float>::empty({1, 3, 4, 4}, Precision::fp16);
    BOOST_CHECK_EXCEPTION(ops::conv2d_forward(x, w, Tensor<float>(), out_h, p), ValueError,
                          message_contains("x holds bf16 storage but y holds fp16; one call takes one half format"));
    Tensor<float> none;
    auto mean = Tensor<float>::empty({2}), invstd = Tensor<float>::empty({2});
    BOOST_CHECK_EXCEPTION(ops::batch_norm_forward_training(x, none, none, none, none, 0.1, 1e-5, y, mean, invstd), ValueError,
                          message_contains("batch_norm_forward_training: x [1,2,4,4] holds bf16"));
    auto pooled = Tensor<float>::empty({1, 2, 1, 1}, Precision::bf16);
    BOOST_CHECK_EXCEPTION(ops::adaptive_avg_pool2d_forward(x, pooled), ValueError, message_contains("adaptive_avg_pool2d_forward: x"));
    const auto flat = x.reshape({2, 16});
    auto logits = Tensor<float>::empty({2, 5});
    BOOST_CHECK_EXCEPTION(ops::linear_forward(flat, Tensor<float>::ones({5, 16}), none, logits), ValueError,
                          message_contains("linear_forward: x [2,16] holds bf16"));
    // float32 tensors still pass the same doors
    const auto xf = Tensor<float>::full({1, 2, 4, 4}, -1.0f);
    ops::relu_forward(xf, yf);
    BOOST_TEST(yf.to_vector() == std::vector<float>(32, 0.0f));
}

BOOST_AUTO_TEST_CASE(autograd_stores_a_gradient_as_its_value_is) {
    // A leaf's node records its value's storage; a gradient that arrives in another storage is
    // converted (the rule in engine.hpp), so the float32 leaf gets a float32 gradient.
    autograd::Var<float> leaf(Tensor<float>::zeros({3}), true);
    BOOST_TEST((leaf.node()->storage == Precision::fp32));
    const auto g = Tensor<float>::from_vector({3}, {1.0f / 3, 2.0f, -0.5f}).to_storage(Precision::bf16);
    leaf.node()->accumulate(g, true);
    BOOST_TEST(leaf.grad().storage() == Precision::fp32);
    BOOST_TEST(leaf.grad().to_vector() == g.to_vector());
    leaf.node()->accumulate(g, false);  // a second arrival adds
    BOOST_TEST(leaf.grad()[0] == 2 * round_to_bf16(1.0f / 3));
    autograd::Var<float> half_leaf(Tensor<float>::zeros({2}).to_storage(Precision::fp16), true);
    BOOST_TEST((half_leaf.node()->storage == Precision::fp16));
}

BOOST_AUTO_TEST_CASE(ops_without_half_kernels_widen_through_a_differentiable_cast) {
    // autograd::to_storage is torch's .to(dtype): the value converted, the gradient sent back in the
    // input's storage. mul / affine / sum / log_softmax / the losses widen a half input through it,
    // which also works on the CPU, whose kernels compute in float32.
    const std::vector<float> v = {0.3f, -1.7f, 2.2f, 1.0f / 3};
    autograd::Var<float> x(Tensor<float>::from_vector({4}, v), true);
    auto h = autograd::to_storage(x, Precision::bf16);
    BOOST_TEST(h.value().storage() == Precision::bf16);
    BOOST_TEST(autograd::to_storage(h, Precision::bf16).node() == h.node());  // the same storage: no new node
    auto y = autograd::sum(autograd::mul(h, h));  // widened: sum of round(v)^2
    double want = 0;
    for (float f : v) want += static_cast<double>(round_to_bf16(f)) * round_to_bf16(f);
    BOOST_TEST(static_cast<double>(y.value().item()) == want, boost::test_tools::tolerance(1e-6));
    y.backward();
    BOOST_TEST(x.grad().storage() == Precision::fp32);
    for (std::size_t i = 0; i < v.size(); ++i)  // d/dx of round(x)^2 through the cast: 2 round(x), rounded to bf16 on the way back
        BOOST_TEST(x.grad()[static_cast<std::int64_t>(i)] == round_to_bf16(2 * round_to_bf16(v[i])));
    // add of two storages widens both
    autograd::Var<float> a(Tensor<float>::from_vector({4}, v).to_storage(Precision::fp16), true);
    autograd::Var<float> b(Tensor<float>::ones({4}), true);
    auto s = autograd::add(a, b);
    BOOST_TEST(s.value().storage() == Precision::fp32);
    autograd::sum(s).backward();
    BOOST_TEST(a.grad().storage() == Precision::fp16);
    BOOST_TEST(a.grad().to_vector() == std::vector<float>(4, 1.0f));
    BOOST_TEST(b.grad().to_vector() == std::vector<float>(4, 1.0f));
}

BOOST_AUTO_TEST_SUITE_END()
