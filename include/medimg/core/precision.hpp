// SPDX-License-Identifier: MIT
// core/precision.hpp: the arithmetic precision of convolutions and linear layers (the config's
// runtime.precision: fp32 | bf16 | fp16) and the host-side roundings to bfloat16 and IEEE binary16.
//   fp32   float32 everywhere (the default; the only precision of the CPU backend).
//   bf16   convolutions and linear layers multiply bfloat16 operands (8-bit significand) on tensor
//          cores and accumulate in float32; on the GPU the activations between layers are stored
//          in bfloat16 too (cuda::settings().half_activations, autocast's storage half).
//   fp16   the same with IEEE half (11-bit significand, largest finite 65504), which needs a
//          dynamic loss scale (optim/grad_scaler.hpp) so that small gradients do not flush to 0.
// The weights, their gradients, the optimizer state and the logits stay float32 (see docs/gpu.md,
// "Mixed precision"). The roundings below are round-to-nearest-even, as CUDA's
// __float2bfloat16_rn / __float2half_rn and PyTorch's .to(torch.bfloat16 / torch.float16): tests
// use them to build the exact inputs the GPU sees, and compare the device's casts against them.
// Half-precision values in tensors are a storage format of Tensor<float, B> (core/tensor.hpp,
// Tensor::storage()), not element types of their own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <string>

#include "medimg/core/device.hpp"
#include "medimg/error.hpp"

namespace medimg {

enum class Precision { fp32, bf16, fp16 };

inline const char* precision_name(Precision p) {
    switch (p) {
    case Precision::bf16: return "bf16";
    case Precision::fp16: return "fp16";
    default: return "fp32";
    }
}

inline std::ostream& operator<<(std::ostream& os, Precision p) { return os << precision_name(p); }

/// "fp32" | "bf16" | "fp16" -> Precision; anything else is a ValueError naming the text.
inline Precision parse_precision(const std::string& s) {
    if (s == "fp32") return Precision::fp32;
    if (s == "bf16") return Precision::bf16;
    if (s == "fp16") return Precision::fp16;
    throw ValueError(detail::concat("unknown precision '", s, "' (expected fp32, bf16 or fp16)"));
}

namespace detail {
inline std::uint32_t float_bits(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}
inline float bits_float(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}
}  // namespace detail

/// The bfloat16 bit pattern nearest to f (ties to even); NaN stays NaN (quiet, sign kept).
inline std::uint16_t float_to_bf16_bits(float f) {
    std::uint32_t u = detail::float_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);  // a carry out of the significand bumps the exponent (to inf at the top)
    return static_cast<std::uint16_t>(u >> 16);
}
inline float bf16_bits_to_float(std::uint16_t h) { return detail::bits_float(static_cast<std::uint32_t>(h) << 16); }
/// f rounded to the nearest bfloat16, as a float.
inline float round_to_bf16(float f) { return bf16_bits_to_float(float_to_bf16_bits(f)); }

/// The IEEE binary16 bit pattern nearest to f (ties to even; subnormals kept, |f| >= 65520 -> inf).
inline std::uint16_t float_to_half_bits(float f) {
    const std::uint32_t x = detail::float_bits(f);
    const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
    const std::uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));  // NaN, quiet
    if (ax >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // 65520 (halfway to 2^16) and up: inf
    if (ax >= 0x38800000u) {  // normal half: |f| >= 2^-14; rebias the exponent (127 -> 15), round 13 bits away
        const std::uint32_t r = ax - (112u << 23) + 0xfffu + ((ax >> 13) & 1u);
        return static_cast<std::uint16_t>(sign | (r >> 13));
    }
    // subnormal half: the count of 2^-24 steps, rounded to nearest even
    const std::uint32_t e = ax >> 23;
    const std::uint32_t shift = 126u - e;  // >= 14
    if (shift > 31u) return sign;
    const std::uint32_t m = (ax & 0x7fffffu) | (e ? 0x800000u : 0u);
    std::uint32_t q = m >> shift;
    const std::uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;  // q may reach 0x400, the smallest normal: the right encoding
    return static_cast<std::uint16_t>(sign | q);
}
inline float half_bits_to_float(std::uint16_t h) {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {  // zero or subnormal: m * 2^-24, exact in float
        const float v = static_cast<float>(m) * detail::bits_float(0x33800000u);
        return detail::bits_float(detail::float_bits(v) | sign);
    }
    if (e == 31) return detail::bits_float(sign | 0x7f800000u | (m << 13));
    return detail::bits_float(sign | ((e + 112u) << 23) | (m << 13));
}
/// f rounded to the nearest IEEE half, as a float.
inline float round_to_half(float f) { return half_bits_to_float(float_to_half_bits(f)); }

/// Element i of n values stored as `s` (fp32: floats; bf16 / fp16: 2-byte bit patterns), as a float.
inline float load_stored(const void* p, Precision s, std::size_t i) {
    if (s == Precision::fp32) return static_cast<const float*>(p)[i];
    const std::uint16_t h = static_cast<const std::uint16_t*>(p)[i];
    return s == Precision::bf16 ? bf16_bits_to_float(h) : half_bits_to_float(h);
}
/// Stores v as element i of values stored as `s`, rounding to nearest even into bf16 / fp16.
inline void store_stored(void* p, Precision s, std::size_t i, float v) {
    if (s == Precision::fp32)
        static_cast<float*>(p)[i] = v;
    else
        static_cast<std::uint16_t*>(p)[i] = s == Precision::bf16 ? float_to_bf16_bits(v) : float_to_half_bits(v);
}

/// f rounded as precision p stores it (fp32: f itself).
inline float round_to(Precision p, float f) {
    return p == Precision::bf16 ? round_to_bf16(f) : p == Precision::fp16 ? round_to_half(f) : f;
}

/// Sets the precision of backend B's float32 convolutions and linear layers, process-wide.
/// Cpu takes fp32 only (ValueError otherwise); Cuda's specialisation (cuda/context.hpp) writes
/// cuda::settings().precision.
template <class B>
struct PrecisionControl;

template <>
struct PrecisionControl<Cpu> {
    static void set(Precision p) {
        MEDIMG_CHECK(p == Precision::fp32, ValueError, "precision ", precision_name(p),
                     " needs the CUDA backend; the CPU backend computes in fp32 only");
    }
    static Precision get() { return Precision::fp32; }
};

/// Sets backend B's precision for a scope and restores the previous one on exit (tests and
/// programs that run several configurations in one process).
template <class B>
class PrecisionScope {
public:
    explicit PrecisionScope(Precision p) : previous_(PrecisionControl<B>::get()) { PrecisionControl<B>::set(p); }
    ~PrecisionScope() { PrecisionControl<B>::set(previous_); }
    PrecisionScope(const PrecisionScope&) = delete;
    PrecisionScope& operator=(const PrecisionScope&) = delete;

private:
    Precision previous_;
};

}  // namespace medimg
