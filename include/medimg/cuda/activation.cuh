// SPDX-License-Identifier: MIT
// cuda/activation.cuh: ActivationImpl<Cuda>, the GPU twin of cpu/activation.hpp with the same
// static signatures (pointers are device memory): grid-stride loops, exp in T as the CPU's std::exp.
// GELU (formulas in ops/activation.hpp): the erf form with CUDA's erf / exp in T, as PyTorch's
// kernel; the tanh form's backward takes the second term as 0 where 1 - tanh^2 u is 0, so
// |x| > ~1.8e19 in float (x^2 overflows) gives the limit dy * 1 or 0 rather than 0 * inf = NaN.
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/activation.cuh: include only from a TU compiled by nvcc"
#endif

#include <cstdint>

#include "medimg/cuda/check.hpp"
#include "medimg/cuda/context.hpp"
#include "medimg/cuda/kernels/common.cuh"
#include "medimg/ops/activation.hpp"

namespace medimg::cuda::detail {
namespace {
template <class T>
__global__ void sigmoid_forward_kernel(const T* x, T* y, std::int64_t n) {
    MEDIMG_GRID_STRIDE(i, n) y[i] = T(1) / (T(1) + exp(-x[i]));
}
template <class T>
__global__ void sigmoid_backward_kernel(const T* y, const T* dy, T* dx, std::int64_t n) {
    MEDIMG_GRID_STRIDE(i, n) dx[i] = dy[i] * y[i] * (T(1) - y[i]);
}
template <class T>
__global__ void silu_forward_kernel(const T* x, T* y, std::int64_t n) {
    MEDIMG_GRID_STRIDE(i, n) y[i] = x[i] / (T(1) + exp(-x[i]));
}
template <class T>
__global__ void silu_backward_kernel(const T* x, const T* dy, T* dx, std::int64_t n) {
    MEDIMG_GRID_STRIDE(i, n) {
        const T s = T(1) / (T(1) + exp(-x[i]));
        dx[i] = dy[i] * s * (T(1) + x[i] * (T(1) - s));
    }
}

// sqrt(1/2), sqrt(2/pi), 1/sqrt(2 pi) and the cubic coefficient of GELU's tanh form
inline constexpr double kGeluSqrtHalf = 0.70710678118654752440;
inline constexpr double kGeluSqrt2OverPi = 0.79788456080286535588;
inline constexpr double kGeluInvSqrt2Pi = 0.39894228040143267794;
inline constexpr double kGeluKappa = 0.044715;

// y = x / 2 * (1 + erf(x / sqrt 2))
template <class T>
__global__ void gelu_erf_forward_kernel(const T* x, T* y, std::int64_t n) {
    MEDIMG_GRID_STRIDE(i, n) {
        const T v = x[i];
        y[i] = T(0.5) * v * (T(1) + erf(v * T(kGeluSqrtHalf)));
    }
}
// dx = dy * (Phi(x) + x phi(x)),  Phi(x) = (1 + erf(x / sqrt 2)) / 2,  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
template <class T>
__global__ void gelu_erf_backward_kernel(const T* x, const T* dy, T* dx, std::int64_t n) {
    MEDIMG_GRID_STRIDE(i, n) {
        const T v = x[i];
        const T cdf = T(0.5) * (T(1) + erf(v * T(kGeluSqrtHalf)));
        const T pdf = exp(T(-0.5) * v * v) * T(kGeluInvSqrt2Pi);
        dx[i] = dy[i] * (cdf + v * pdf);
    }
}
// y = x / 2 * (1 + tanh(u)),  u = sqrt(2 / pi) (x + kappa x^3)
template <class T>
__global__ void gelu_tanh_forward_kernel(const T* x, T* y, std::int64_t n) {
    MEDIMG_GRID_STRIDE(i, n) {
        const T v = x[i];
        const T u = T(kGeluSqrt2OverPi) * (v + T(kGeluKappa) * v * v * v);
        y[i] = T(0.5) * v * (T(1) + tanh(u));
    }
}
// dx = dy * ((1 + t) / 2 + x / 2 (1 - t^2) sqrt(2 / pi) (1 + 3 kappa x^2)),  t = tanh(u)
template <class T>
__global__ void gelu_tanh_backward_kernel(const T* x, const T* dy, T* dx, std::int64_t n) {
    MEDIMG_GRID_STRIDE(i, n) {
        const T v = x[i];
        const T t = tanh(T(kGeluSqrt2OverPi) * (v + T(kGeluKappa) * v * v * v));
        const T sech2 = T(1) - t * t;
        const T inner = T(kGeluSqrt2OverPi) * (T(1) + T(3 * kGeluKappa) * v * v);
        const T second = sech2 == T(0) ? T(0) : T(0.5) * v * sech2 * inner;  // 0, not 0 * inf, once t = +-1
        dx[i] = dy[i] * (T(0.5) * (T(1) + t) + second);
    }
}
}  // namespace
}  // namespace medimg::cuda::detail

namespace medimg::ops {

template <>
struct ActivationImpl<Cuda> {
    template <class T>
    static void sigmoid_forward(const T* x, T* y, std::int64_t n) {
        launch(cuda::detail::sigmoid_forward_kernel<T>, n, x, y, n);
    }
    template <class T>
    static void sigmoid_backward(const T* y, const T* dy, T* dx, std::int64_t n) {
        launch(cuda::detail::sigmoid_backward_kernel<T>, n, y, dy, dx, n);
    }
    template <class T>
    static void silu_forward(const T* x, T* y, std::int64_t n) {
        launch(cuda::detail::silu_forward_kernel<T>, n, x, y, n);
    }
    template <class T>
    static void silu_backward(const T* x, const T* dy, T* dx, std::int64_t n) {
        launch(cuda::detail::silu_backward_kernel<T>, n, x, dy, dx, n);
    }
    template <class T>
    static void gelu_forward(const T* x, T* y, std::int64_t n, Gelu form) {
        if (form == Gelu::tanh)
            launch(cuda::detail::gelu_tanh_forward_kernel<T>, n, x, y, n);
        else
            launch(cuda::detail::gelu_erf_forward_kernel<T>, n, x, y, n);
    }
    template <class T>
    static void gelu_backward(const T* x, const T* dy, T* dx, std::int64_t n, Gelu form) {
        if (form == Gelu::tanh)
            launch(cuda::detail::gelu_tanh_backward_kernel<T>, n, x, dy, dx, n);
        else
            launch(cuda::detail::gelu_erf_backward_kernel<T>, n, x, dy, dx, n);
    }

private:
    template <class K, class... A>
    static void launch(K kernel, std::int64_t n, A... args) {
        if (n <= 0) return;
        kernel<<<cuda::detail::blocks_for(n), cuda::detail::kThreads, 0, cuda::stream()>>>(args...);
        MEDIMG_CUDA_CHECK(cudaGetLastError());
    }
};

}  // namespace medimg::ops
