// SPDX-License-Identifier: MIT
// Tests of core/precision.hpp: the names of runtime.precision, the host roundings to bfloat16 and
// IEEE half (round to nearest, ties to even; the GPU's casts are compared with these in
// tests/cuda/test_precision.cu), and the CPU backend's refusal of anything but fp32.
// Oracles: hand-worked boundary values (ties, overflow, subnormals), an exhaustive property check
// of "nearest, ties to even" over spread bit patterns, every half value round-tripping, and - where
// the compiler has _Float16 - its conversion (libgcc's, independent of this code).
#include <boost/test/unit_test.hpp>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "helpers.hpp"
#include "medimg/core/precision.hpp"

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

BOOST_AUTO_TEST_SUITE_END()
