// SPDX-License-Identifier: MIT
// cuda/kernels/common.cuh: what every kernel file shares: launch geometry (grid-stride loops over
// int64 sizes), exactly rounded arithmetic helpers (so a kernel can repeat the CPU reference's
// rounding steps instead of letting nvcc contract them into FMAs), a deterministic block sum in
// double, warp sums and maxima (the row kernels of layer_norm.cuh and attention.cuh), and the
// device side of the error slot (context.hpp).
// ODR (STYLE.md): device helpers are __device__ __forceinline__; kernels elsewhere are templates
// in an unnamed namespace inside medimg::cuda::detail.
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/kernels/common.cuh: include only from a TU compiled by nvcc"
#endif

#include <algorithm>
#include <cstdint>

#include <cuda_runtime.h>

#include "medimg/cuda/context.hpp"

namespace medimg::cuda::detail {

inline constexpr int kThreads = 256;         // threads per block for elementwise kernels
inline constexpr std::int64_t kMaxBlocks = 65535;  // grid-stride loops cover the rest

/// Blocks for a grid-stride loop over n elements.
inline unsigned blocks_for(std::int64_t n, int threads = kThreads) {
    const std::int64_t b = (n + threads - 1) / threads;
    return static_cast<unsigned>(std::max<std::int64_t>(1, std::min(b, kMaxBlocks)));
}

/// for (i = global thread index; i < n; i += grid size)
#define MEDIMG_GRID_STRIDE(i, n)                                                                  \
    for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
         i += static_cast<std::int64_t>(blockDim.x) * gridDim.x)

// ---- exactly rounded arithmetic (no contraction), float and double ----
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float div_rn(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double div_rn(double a, double b) { return __ddiv_rn(a, b); }
__device__ __forceinline__ float fma_rn(float a, float b, float c) { return __fmaf_rn(a, b, c); }
__device__ __forceinline__ double fma_rn(double a, double b, double c) { return __fma_rn(a, b, c); }
__device__ __forceinline__ float sqrt_rn(float a) { return __fsqrt_rn(a); }
__device__ __forceinline__ double sqrt_rn(double a) { return __dsqrt_rn(a); }

/// The sum of v over the block (blockDim.x a power of two <= 1024), in a fixed tree order,
/// returned to every thread. `shared` holds blockDim.x doubles. Every thread must call it.
__device__ __forceinline__ double block_sum(double v, double* shared) {
    const unsigned t = threadIdx.x;
    shared[t] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) shared[t] += shared[t + s];
        __syncthreads();
    }
    const double r = shared[0];
    __syncthreads();  // shared may be reused by the caller right away
    return r;
}

/// The sum of v over the warp (all 32 lanes take part), the same bits in every lane: each
/// butterfly step adds a pair both partners see.
template <class T>
__device__ __forceinline__ T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
/// The maximum of v over the warp, in every lane (a NaN lane is dropped, as fmax drops it).
template <class T>
__device__ __forceinline__ T warp_max(T v) {
    for (int o = 16; o > 0; o >>= 1) {
        const T u = __shfl_xor_sync(0xffffffffu, v, o);
        v = u > v ? u : v;
    }
    return v;
}

/// Records a bad input a kernel found; the host throws it at the next synchronize(). Called by
/// one thread of one block (kernels reduce to the first bad element first): plain stores, since
/// atomics on mapped host memory are not guaranteed over PCIe. An unreported earlier record wins.
__device__ __forceinline__ void report_device_error(DeviceErrorRecord* slot, int code, long long a, long long b,
                                                    long long c) {
    volatile DeviceErrorRecord* r = slot;
    if (r->code != 0) return;
    r->a = a;
    r->b = b;
    r->c = c;
    __threadfence_system();
    r->code = code;
}

}  // namespace medimg::cuda::detail
