// SPDX-License-Identifier: MIT
// helpers.hpp: shared test tolerances (each with its reason), comparisons that report the largest
// difference and where it is, and the exception-message predicate.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>

#include <boost/test/unit_test.hpp>

#include "medimg/core/rng.hpp"
#include "medimg/core/tensor.hpp"

namespace medimg::test {

/// The tiny learning set of the ResNet tests (CPU, GPU, mixed precision): 64 gray 32x32 images of
/// N(0, 0.3) noise; odd-numbered ones (class 1) also have a bright 6x6 square (+1.5) at a random
/// place. Seeded: the same set everywhere.
struct TwoClassSet {
    Tensor<float, Cpu> x;             // (64, 1, 32, 32)
    Tensor<std::int64_t, Cpu> y;      // (64)
};
inline TwoClassSet two_class_squares(std::uint64_t seed = 11) {
    Rng rng(seed);
    TwoClassSet s{Tensor<float, Cpu>::empty({64, 1, 32, 32}), Tensor<std::int64_t, Cpu>::empty({64})};
    for (std::int64_t i = 0; i < 64; ++i) {
        s.y[i] = i % 2;
        float* img = s.x.data() + i * 1024;
        for (int p = 0; p < 1024; ++p) img[p] = static_cast<float>(rng.normal(0.0, 0.3));
        if (s.y[i] == 1) {
            const auto r0 = static_cast<int>(rng.randint(26)), c0 = static_cast<int>(rng.randint(26));
            for (int r = r0; r < r0 + 6; ++r)
                for (int c = c0; c < c0 + 6; ++c) img[r * 32 + c] += 1.5f;
        }
    }
    return s;
}

// float32 kernels vs a float64 reference: GEMM reorders sums of up to ~5000 products, each
// rounding at 2^-24 relative, so a few 1e-5 relative is the expected spread.
inline constexpr double kFloatRtol = 1e-4;
inline constexpr double kFloatAtol = 1e-5;
// float64 kernels vs a float64 naive reference: only summation order differs.
inline constexpr double kDoubleTol = 1e-10;
// Central finite differences in double with step 1e-6: truncation O(h^2) ~ 1e-12 and rounding
// ~ 1e-16/1e-6 = 1e-10 relative; 1e-6 leaves a wide margin while still catching wrong formulas.
inline constexpr double kGradRtol = 1e-5;
inline constexpr double kGradAtol = 1e-6;

struct Mismatch {
    double max_diff = 0.0;
    std::int64_t where = -1;
    bool ok = true;
};

/// |a - b| <= atol + rtol * |b| elementwise; reports the worst element.
template <class T, class U>
Mismatch compare(const Tensor<T, Cpu>& a, const Tensor<U, Cpu>& b, double rtol, double atol) {
    Mismatch m;
    BOOST_REQUIRE_MESSAGE(a.shape() == b.shape(), "shapes differ: " << a.shape() << " vs " << b.shape());
    for (std::int64_t i = 0; i < a.numel(); ++i) {
        const double x = static_cast<double>(a[i]), y = static_cast<double>(b[i]);
        const double d = std::abs(x - y);
        if (!(d <= atol + rtol * std::abs(y))) m.ok = false;
        if (d > m.max_diff || std::isnan(d)) {
            m.max_diff = d;
            m.where = i;
        }
    }
    return m;
}

#define MEDIMG_CHECK_CLOSE_TENSORS(a, b, rtol, atol)                                                       \
    do {                                                                                                   \
        const auto mm_ = ::medimg::test::compare((a), (b), (rtol), (atol));                                \
        BOOST_CHECK_MESSAGE(mm_.ok, "tensors differ: largest |diff| " << mm_.max_diff << " at flat index " \
                                                                      << mm_.where);                       \
    } while (0)

/// For BOOST_CHECK_EXCEPTION: the message contains `needle`.
struct message_contains {
    std::string needle;
    explicit message_contains(std::string s) : needle(std::move(s)) {}
    bool operator()(const std::exception& e) const {
        const bool ok = std::string(e.what()).find(needle) != std::string::npos;
        if (!ok) BOOST_TEST_MESSAGE("message was: " << e.what());
        return ok;
    }
};

}  // namespace medimg::test
