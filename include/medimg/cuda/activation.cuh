// SPDX-License-Identifier: MIT
// cuda/activation.cuh: ActivationImpl<Cuda>, the GPU twin of cpu/activation.hpp with the same
// static signatures (pointers are device memory): grid-stride loops, exp in T as the CPU's std::exp.
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

private:
    template <class K, class... A>
    static void launch(K kernel, std::int64_t n, A... args) {
        if (n <= 0) return;
        kernel<<<cuda::detail::blocks_for(n), cuda::detail::kThreads, 0, cuda::stream()>>>(args...);
        MEDIMG_CUDA_CHECK(cudaGetLastError());
    }
};

}  // namespace medimg::ops
