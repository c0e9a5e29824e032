// SPDX-License-Identifier: MIT
// cpu/activation.hpp: host loops for ops/activation.hpp, split over threads in the elementwise
// ops' large blocks. sigmoid(x) = 1 / (1 + exp(-x)) saturates cleanly: exp(-x) -> inf gives 0,
// -> 0 gives 1; silu(x) = x / (1 + exp(-x)) as PyTorch's CPU kernel writes it, so large negative
// x gives -0 rather than inf * 0.
//
// float: exp comes from detail::exp_poly below, not from libm, so that each loop vectorises (one
// 16-lane AVX-512 or 8-lane AVX2 pass, chosen at run time as sgemm.hpp chooses its kernels). A
// call to expf per element made SiLU a third of EfficientNet-B0's inference time; the polynomial
// loop is about 15x faster on one core. double keeps std::exp.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "medimg/cpu/elementwise.hpp"
#include "medimg/cpu/sgemm.hpp"
#include "medimg/ops/activation.hpp"

namespace medimg::ops {

namespace detail {

/// exp(x) in float without a library call. Cody and Waite's reduction x = n ln2 + r, |r| <= ln2/2,
/// with ln2 split in two (0.693359375 - 2.12194440e-4) so n ln2 is exact enough; exp(r) by the
/// degree-7 polynomial of Cephes' expf.c (S. L. Moshier, Cephes Math Library); 2^n put into the
/// exponent bits. n comes from the 1.5 * 2^23 rounding trick, so NaN needs no float-to-int
/// conversion (NaN in gives NaN out). Measured against double exp over [-87, 88]: at most 7.9e-8
/// relative (1.3 ulp). Above 88.376 (2^n would need exponent 255) it returns inf where expf still
/// gives up to 3.4e38 until 88.72, so sigmoid / silu of x < -88.376 are 0 / -0 instead of at most
/// 3e-39 / 3e-37; below -87.336 it returns 0 where expf gives subnormals (at most 1.2e-38, which
/// 1 + exp(.) cannot see).
inline float exp_poly(float x) {
    constexpr float hi = 88.3762626647949f, lo = -87.3365447504f;
    const float xc = x > hi ? hi : (x < lo ? lo : x);
    constexpr float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low bits
    const float t = xc * 1.44269504088896341f + shifter;
    const float n = t - shifter;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    std::uint32_t tb = 0;
    std::memcpy(&tb, &t, 4);
    const std::uint32_t sb = (tb - 0x4B400000u + 127u) << 23;  // (n + 127) << 23; tb - bits(shifter) = n
    float scale = 0;
    std::memcpy(&scale, &sb, 4);
    float e = p * scale;
    e = x > hi ? HUGE_VALF : e;
    e = x < lo ? 0.0f : e;
    return e;
}

/// erf(x) in float without a library call: Abramowitz & Stegun 7.1.26 (Hastings' rational
/// approximation), erf(|x|) = 1 - (a1 t + a2 t^2 + a3 t^3 + a4 t^4 + a5 t^5) exp(-x^2),
/// t = 1 / (1 + p |x|), absolute error at most 1.5e-7 (the form ATen's vectorised erf takes too);
/// odd in x. Measured against double erf: at most 1.4e-7 absolute over [-6, 6].
inline float erf_poly(float x) {
    const float ax = x < 0.0f ? -x : x;
    const float t = 1.0f / (1.0f + 0.3275911f * ax);
    float p = 1.061405429f;
    p = p * t - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    const float r = 1.0f - p * t * exp_poly(-ax * ax);
    return x < 0.0f ? -r : r;
}

constexpr double kSqrt1_2 = 0.70710678118654752440;       // 1 / sqrt(2)
constexpr double kInvSqrt2Pi = 0.39894228040143267794;    // 1 / sqrt(2 pi)
constexpr double kSqrt2OverPi = 0.79788456080286535588;   // sqrt(2 / pi)
constexpr double kGeluTanhC = 0.044715;

/// The functions GELU needs: float's polynomials above (so loops vectorise), double's libm.
struct FloatMath {
    static float erf(float v) { return erf_poly(v); }
    static float exp(float v) { return exp_poly(v); }
};
struct DoubleMath {
    static double erf(double v) { return std::erf(v); }
    static double exp(double v) { return std::exp(v); }
};

/// For the tanh form at u: 1 + tanh(u) and sech^2(u) = 1 - tanh^2(u), from e = exp(-2 |u|) so
/// that neither cancels (1 + tanh u = 2 e / (1 + e) for u < 0, sech^2 u = 4 e / (1 + e)^2): with
/// tanh itself, float's 1 - tanh^2 is 0 from |u| ~ 8.3 on, 2e-6 off in GELU's slope at x = -5.
template <class M, class T>
inline void tanh_parts(T u, T& one_plus_tanh, T& sech2) {
    const T e = M::exp(T(-2) * (u < T(0) ? -u : u));
    const T inv = T(1) / (T(1) + e);
    one_plus_tanh = u < T(0) ? T(2) * e * inv : T(2) * inv;
    sech2 = T(4) * e * inv * inv;
}

/// GELU and its derivative, both forms, in T with M's functions.
template <class M, class T>
inline T gelu_value(T x, Gelu form) {
    if (form == Gelu::erf) return T(0.5) * x * (T(1) + M::erf(x * T(kSqrt1_2)));
    T opt, sech2;
    tanh_parts<M>(T(kSqrt2OverPi) * (x + T(kGeluTanhC) * x * x * x), opt, sech2);
    return T(0.5) * x * opt;
}
template <class M, class T>
inline T gelu_slope(T x, Gelu form) {
    if (form == Gelu::erf) return T(0.5) * (T(1) + M::erf(x * T(kSqrt1_2))) + x * T(kInvSqrt2Pi) * M::exp(T(-0.5) * x * x);
    T opt, sech2;
    tanh_parts<M>(T(kSqrt2OverPi) * (x + T(kGeluTanhC) * x * x * x), opt, sech2);
    // sech^2 is 0 once |u| is large, where x (1 + 3c x^2) may be inf and 0 * inf NaN (PyTorch's
    // kernel gives NaN there; the derivative is 0 or 1)
    const T right = sech2 == T(0) ? T(0) : T(0.5) * x * sech2 * T(kSqrt2OverPi) * (T(1) + T(3.0 * kGeluTanhC) * x * x);
    return T(0.5) * opt + right;
}

enum class ActKind { sigmoid, sigmoid_backward, silu, silu_backward, gelu, gelu_backward, gelu_tanh, gelu_tanh_backward };

/// One span of an activation in float; `a` is x (sigmoid, silu, gelu and their backwards but sigmoid's) or y
/// (sigmoid_backward), `dy` the incoming gradient where there is one.
template <ActKind K>
inline void act_span(const float* a, const float* dy, float* out, std::int64_t n) {
#pragma omp simd
    for (std::int64_t i = 0; i < n; ++i) {
        const float v = a[i];
        if constexpr (K == ActKind::sigmoid) {
            out[i] = 1.0f / (1.0f + exp_poly(-v));
        } else if constexpr (K == ActKind::sigmoid_backward) {
            out[i] = dy[i] * v * (1.0f - v);
        } else if constexpr (K == ActKind::silu) {
            out[i] = v / (1.0f + exp_poly(-v));
        } else if constexpr (K == ActKind::gelu || K == ActKind::gelu_tanh) {
            out[i] = gelu_value<FloatMath>(v, K == ActKind::gelu ? Gelu::erf : Gelu::tanh);
        } else if constexpr (K == ActKind::gelu_backward || K == ActKind::gelu_tanh_backward) {
            out[i] = dy[i] * gelu_slope<FloatMath>(v, K == ActKind::gelu_backward ? Gelu::erf : Gelu::tanh);
        } else {
            const float s = 1.0f / (1.0f + exp_poly(-v));
            out[i] = dy[i] * s * (1.0f + v * (1.0f - s));
        }
    }
}
#if MEDIMG_SGEMM_X86
template <ActKind K>
__attribute__((target("avx512f"))) void act_span_avx512(const float* a, const float* dy, float* out, std::int64_t n) {
    act_span<K>(a, dy, out, n);
}
template <ActKind K>
__attribute__((target("avx2,fma"))) void act_span_avx2(const float* a, const float* dy, float* out, std::int64_t n) {
    act_span<K>(a, dy, out, n);
}
#endif

/// The activation over n floats, in threads, with the widest vector unit this CPU has.
template <ActKind K>
void act_float(const float* a, const float* dy, float* out, std::int64_t n) {
    auto span = &act_span<K>;
#if MEDIMG_SGEMM_X86
    const auto isa = cpu::sgemm::detect_isa();
    if (isa == cpu::sgemm::Isa::avx512) span = &act_span_avx512<K>;
    if (isa == cpu::sgemm::Isa::avx2) span = &act_span_avx2<K>;
#endif
    ElementwiseImpl<Cpu>::blocks(n, [&](std::int64_t lo, std::int64_t hi) { span(a + lo, dy ? dy + lo : nullptr, out + lo, hi - lo); });
}

}  // namespace detail

template <>
struct ActivationImpl<Cpu> {
    template <class T>
    static void sigmoid_forward(const T* x, T* y, std::int64_t n) {
        if constexpr (std::is_same_v<T, float>) {
            detail::act_float<detail::ActKind::sigmoid>(x, nullptr, y, n);
        } else {
            ElementwiseImpl<Cpu>::blocks(n, [&](std::int64_t lo, std::int64_t hi) {
                for (std::int64_t i = lo; i < hi; ++i) y[i] = T(1) / (T(1) + std::exp(-x[i]));
            });
        }
    }
    template <class T>
    static void sigmoid_backward(const T* y, const T* dy, T* dx, std::int64_t n) {
        if constexpr (std::is_same_v<T, float>) {
            detail::act_float<detail::ActKind::sigmoid_backward>(y, dy, dx, n);
        } else {
            ElementwiseImpl<Cpu>::blocks(n, [&](std::int64_t lo, std::int64_t hi) {
                for (std::int64_t i = lo; i < hi; ++i) dx[i] = dy[i] * y[i] * (T(1) - y[i]);
            });
        }
    }
    template <class T>
    static void silu_forward(const T* x, T* y, std::int64_t n) {
        if constexpr (std::is_same_v<T, float>) {
            detail::act_float<detail::ActKind::silu>(x, nullptr, y, n);
        } else {
            ElementwiseImpl<Cpu>::blocks(n, [&](std::int64_t lo, std::int64_t hi) {
                for (std::int64_t i = lo; i < hi; ++i) y[i] = x[i] / (T(1) + std::exp(-x[i]));
            });
        }
    }
    template <class T>
    static void silu_backward(const T* x, const T* dy, T* dx, std::int64_t n) {
        if constexpr (std::is_same_v<T, float>) {
            detail::act_float<detail::ActKind::silu_backward>(x, dy, dx, n);
        } else {
            ElementwiseImpl<Cpu>::blocks(n, [&](std::int64_t lo, std::int64_t hi) {
                for (std::int64_t i = lo; i < hi; ++i) {
                    const T s = T(1) / (T(1) + std::exp(-x[i]));
                    dx[i] = dy[i] * s * (T(1) + x[i] * (T(1) - s));
                }
            });
        }
    }
    template <class T>
    static void gelu_forward(const T* x, T* y, std::int64_t n, Gelu form) {
        if constexpr (std::is_same_v<T, float>) {
            if (form == Gelu::erf)
                detail::act_float<detail::ActKind::gelu>(x, nullptr, y, n);
            else
                detail::act_float<detail::ActKind::gelu_tanh>(x, nullptr, y, n);
        } else {
            ElementwiseImpl<Cpu>::blocks(n, [&](std::int64_t lo, std::int64_t hi) {
                for (std::int64_t i = lo; i < hi; ++i) y[i] = detail::gelu_value<detail::DoubleMath>(static_cast<double>(x[i]), form);
            });
        }
    }
    template <class T>
    static void gelu_backward(const T* x, const T* dy, T* dx, std::int64_t n, Gelu form) {
        if constexpr (std::is_same_v<T, float>) {
            if (form == Gelu::erf)
                detail::act_float<detail::ActKind::gelu_backward>(x, dy, dx, n);
            else
                detail::act_float<detail::ActKind::gelu_tanh_backward>(x, dy, dx, n);
        } else {
            ElementwiseImpl<Cpu>::blocks(n, [&](std::int64_t lo, std::int64_t hi) {
                for (std::int64_t i = lo; i < hi; ++i)
                    dx[i] = dy[i] * detail::gelu_slope<detail::DoubleMath>(static_cast<double>(x[i]), form);
            });
        }
    }
};

}  // namespace medimg::ops
