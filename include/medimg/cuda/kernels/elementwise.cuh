// SPDX-License-Identifier: MIT
// cuda/kernels/elementwise.cuh: the own kernels behind ElementwiseImpl<Cuda> (cuda/elementwise.cuh):
// grid-stride elementwise loops and a two-pass deterministic reduction in double.
//   reduce: pass 1, G = min(ceil(n / 256), 1024) blocks each sum a grid-stride share of f(i) in
//   double and tree-reduce it in shared memory -> partial[G]; pass 2, one block sums partial[G].
//   G depends only on n, so the same input gives the same bits on every run.
// Launchers (no _kernel suffix) queue on the current device's stream and check the launch.
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/kernels/elementwise.cuh: include only from a TU compiled by nvcc"
#endif

#include <cstdint>

#include "medimg/cuda/allocator.hpp"
#include "medimg/cuda/check.hpp"
#include "medimg/cuda/context.hpp"
#include "medimg/cuda/kernels/common.cuh"
#include "medimg/cuda/kernels/storage.cuh"

namespace medimg::cuda::detail {

inline constexpr int kReduceThreads = 256;
inline constexpr unsigned kReduceMaxBlocks = 1024;  // = the threads of the second pass

/// f(i) = x[i], in double
template <class T>
struct SumTerm {
    const T* x;
    __device__ __forceinline__ double operator()(std::int64_t i) const { return static_cast<double>(x[i]); }
};
/// f(i) = a[i] * b[i], in double
template <class T>
struct DotTerm {
    const T* a;
    const T* b;
    __device__ __forceinline__ double operator()(std::int64_t i) const {
        return static_cast<double>(a[i]) * static_cast<double>(b[i]);
    }
};

namespace {
template <class T>
__global__ void axpy_kernel(T* y, T alpha, const T* x, std::int64_t n) {
    MEDIMG_GRID_STRIDE(i, n) y[i] += alpha * x[i];
}
template <class T>
__global__ void affine_kernel(const T* x, T alpha, T beta, T* y, std::int64_t n) {
    MEDIMG_GRID_STRIDE(i, n) y[i] = alpha * x[i] + beta;
}
// S: the storage type (kernels/storage.cuh): halves add in float and round once
template <class S>
__global__ void add_kernel(const S* a, const S* b, S* y, std::int64_t n) {
    MEDIMG_GRID_STRIDE(i, n) st(y + i, ld(a[i]) + ld(b[i]));
}
template <class T>
__global__ void mul_kernel(const T* a, const T* b, T* y, std::int64_t n) {
    MEDIMG_GRID_STRIDE(i, n) y[i] = a[i] * b[i];
}
template <class S>
__global__ void relu_forward_kernel(const S* x, S* y, std::int64_t n) {
    using C = Compute<S>;
    MEDIMG_GRID_STRIDE(i, n) {
        const C v = ld(x[i]);
        st(y + i, v > C(0) ? v : C(0));
    }
}
// dx = dy where y > 0, else 0 (y is the forward output)
template <class S>
__global__ void relu_backward_kernel(const S* y, const S* dy, S* dx, std::int64_t n) {
    using C = Compute<S>;
    MEDIMG_GRID_STRIDE(i, n) st(dx + i, ld(y[i]) > C(0) ? ld(dy[i]) : C(0));
}
// y = 1 / sqrt(x + eps), in double as the CPU reference
template <class T>
__global__ void rsqrt_kernel(const T* x, double eps, T* y, std::int64_t n) {
    MEDIMG_GRID_STRIDE(i, n) y[i] = static_cast<T>(1.0 / sqrt(static_cast<double>(x[i]) + eps));
}
// pass 1: partial[block] = sum of f(i) over this block's grid-stride share
template <class F>
__global__ void reduce_partials_kernel(F f, std::int64_t n, double* partial) {
    __shared__ double shared[kReduceThreads];
    double s = 0.0;
    MEDIMG_GRID_STRIDE(i, n) s += f(i);
    const double total = block_sum(s, shared);
    if (threadIdx.x == 0) partial[blockIdx.x] = total;
}
// pass 2 (one block of kReduceMaxBlocks threads): out[0] = sum of partial[0..g)
template <class T>
__global__ void reduce_final_kernel(const T* partial, unsigned g, double* out) {
    __shared__ double shared[kReduceMaxBlocks];
    const double v = threadIdx.x < g ? static_cast<double>(partial[threadIdx.x]) : 0.0;
    const double total = block_sum(v, shared);
    if (threadIdx.x == 0) out[0] = total;
}
}  // namespace

template <class T>
void axpy(T* y, T alpha, const T* x, std::int64_t n) {
    if (n <= 0) return;
    axpy_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(y, alpha, x, n);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}
template <class T>
void affine(const T* x, T alpha, T beta, T* y, std::int64_t n) {
    if (n <= 0) return;
    affine_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(x, alpha, beta, y, n);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}
template <class T>
void add(const T* a, const T* b, T* y, std::int64_t n) {
    if (n <= 0) return;
    add_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(a, b, y, n);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}
template <class T>
void mul(const T* a, const T* b, T* y, std::int64_t n) {
    if (n <= 0) return;
    mul_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(a, b, y, n);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}
template <class T>
void relu_forward(const T* x, T* y, std::int64_t n) {
    if (n <= 0) return;
    relu_forward_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(x, y, n);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}
template <class T>
void relu_backward(const T* y, const T* dy, T* dx, std::int64_t n) {
    if (n <= 0) return;
    relu_backward_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(y, dy, dx, n);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}
template <class T>
void rsqrt(const T* x, double eps, T* y, std::int64_t n) {
    if (n <= 0) return;
    rsqrt_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(x, eps, y, n);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

/// out[0] (device) = sum of f(i) over [0, n), deterministic (see the file header).
template <class F>
void reduce_to_device(F f, std::int64_t n, double* out) {
    const unsigned g = std::min(blocks_for(n, kReduceThreads), kReduceMaxBlocks);
    DeviceBuffer partial(g * sizeof(double));
    reduce_partials_kernel<F><<<g, kReduceThreads, 0, stream()>>>(f, n, partial.as<double>());
    MEDIMG_CUDA_CHECK(cudaGetLastError());
    reduce_final_kernel<double><<<1, kReduceMaxBlocks, 0, stream()>>>(partial.as<double>(), g, out);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

/// The sum of f(i) over [0, n), copied to the host (waits for the stream).
template <class F>
double reduce(F f, std::int64_t n) {
    if (n <= 0) return 0.0;
    DeviceBuffer out(sizeof(double));
    reduce_to_device(f, n, out.as<double>());
    double r = 0.0;
    MEDIMG_CUDA_CHECK(cudaMemcpyAsync(&r, out.get(), sizeof(double), cudaMemcpyDeviceToHost, stream()));
    synchronize();
    return r;
}

}  // namespace medimg::cuda::detail
