// SPDX-License-Identifier: MIT
// cpu/activation.hpp: host loops for ops/activation.hpp, in T (float: std::exp of a float), split
// over threads in the elementwise ops' large blocks. sigmoid(x) = 1 / (1 + exp(-x)) saturates
// cleanly: exp(-x) -> inf gives 0, -> 0 gives 1; silu(x) = x / (1 + exp(-x)) as PyTorch's CPU
// kernel writes it, so large negative x gives -0 rather than inf * 0.
#pragma once

#include <cmath>
#include <cstdint>

#include "medimg/cpu/elementwise.hpp"
#include "medimg/ops/activation.hpp"

namespace medimg::ops {

template <>
struct ActivationImpl<Cpu> {
    template <class T>
    static void sigmoid_forward(const T* x, T* y, std::int64_t n) {
        ElementwiseImpl<Cpu>::blocks(n, [&](std::int64_t lo, std::int64_t hi) {
            for (std::int64_t i = lo; i < hi; ++i) y[i] = T(1) / (T(1) + std::exp(-x[i]));
        });
    }
    template <class T>
    static void sigmoid_backward(const T* y, const T* dy, T* dx, std::int64_t n) {
        ElementwiseImpl<Cpu>::blocks(n, [&](std::int64_t lo, std::int64_t hi) {
            for (std::int64_t i = lo; i < hi; ++i) dx[i] = dy[i] * y[i] * (T(1) - y[i]);
        });
    }
    template <class T>
    static void silu_forward(const T* x, T* y, std::int64_t n) {
        ElementwiseImpl<Cpu>::blocks(n, [&](std::int64_t lo, std::int64_t hi) {
            for (std::int64_t i = lo; i < hi; ++i) y[i] = x[i] / (T(1) + std::exp(-x[i]));
        });
    }
    template <class T>
    static void silu_backward(const T* x, const T* dy, T* dx, std::int64_t n) {
        ElementwiseImpl<Cpu>::blocks(n, [&](std::int64_t lo, std::int64_t hi) {
            for (std::int64_t i = lo; i < hi; ++i) {
                const T s = T(1) / (T(1) + std::exp(-x[i]));
                dx[i] = dy[i] * s * (T(1) + x[i] * (T(1) - s));
            }
        });
    }
};

}  // namespace medimg::ops
