// SPDX-License-Identifier: MIT
// cpu/channel.hpp: host loops for ops/channel.hpp over the (N*C) planes of an (N, C, P) tensor,
// planes split over threads; plane sums in double in plane order (thread-count independent).
#pragma once

#include <algorithm>
#include <cstdint>

#include "medimg/core/parallel.hpp"
#include "medimg/ops/channel.hpp"

namespace medimg::ops {

template <>
struct ChannelImpl<Cpu> {
    /// y[i, q] = x[i, q] * s[i] for planes i < planes.
    template <class T>
    static void scale(const T* x, const T* s, T* y, std::int64_t planes, std::int64_t P) {
        parallel_for(0, planes, [&](std::int64_t i) {
            const T f = s[i];
            const T* in = x + i * P;
            T* out = y + i * P;
            for (std::int64_t q = 0; q < P; ++q) out[q] = in[q] * f;
        });
    }
    /// out[i] = sum over q of a[i, q] * b[i, q], in double.
    template <class T>
    static void plane_dot(const T* a, const T* b, T* out, std::int64_t planes, std::int64_t P) {
        parallel_for(0, planes, [&](std::int64_t i) {
            double acc = 0.0;
            const T* u = a + i * P;
            const T* v = b + i * P;
            for (std::int64_t q = 0; q < P; ++q) acc += static_cast<double>(u[q]) * static_cast<double>(v[q]);
            out[i] = static_cast<T>(acc);
        });
    }
    template <class T>
    static void copy(const T* src, std::int64_t Cs, std::int64_t s0, T* dst, std::int64_t Cd, std::int64_t d0,
                     std::int64_t count, std::int64_t N, std::int64_t P) {
        if (count == 0) return;
        parallel_for(0, N, [&](std::int64_t n) {
            std::copy(src + (n * Cs + s0) * P, src + (n * Cs + s0 + count) * P, dst + (n * Cd + d0) * P);
        });
    }
};

}  // namespace medimg::ops
