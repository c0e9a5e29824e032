// SPDX-License-Identifier: MIT
// cuda/channel.cuh: ChannelImpl<Cuda>, the GPU twin of cpu/channel.hpp with the same static
// signatures (pointers are device memory). scale: a grid-stride loop; plane_dot: one block per
// plane summing in double with the fixed block tree (kernels/common.cuh block_sum), so results are
// reproducible; copy: one strided cudaMemcpy2DAsync (N rows of count*P elements).
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/channel.cuh: include only from a TU compiled by nvcc"
#endif

#include <cstdint>

#include "medimg/cuda/check.hpp"
#include "medimg/cuda/context.hpp"
#include "medimg/cuda/kernels/channel.cuh"
#include "medimg/cuda/kernels/common.cuh"
#include "medimg/ops/channel.hpp"

namespace medimg::cuda::detail {
namespace {
// y[i, q] = x[i, q] * s[i]
template <class T>
__global__ void scale_planes_kernel(const T* x, const T* s, T* y, std::int64_t P, std::int64_t total) {
    MEDIMG_GRID_STRIDE(i, total) y[i] = x[i] * s[i / P];
}
// out[plane] = sum over q of a[plane, q] * b[plane, q], one block per plane
template <class T>
__global__ void plane_dot_kernel(const T* a, const T* b, T* out, std::int64_t P) {
    __shared__ double shared[kChannelThreads];
    const std::int64_t base = static_cast<std::int64_t>(blockIdx.x) * P;
    double s = 0.0;
    for (std::int64_t q = threadIdx.x; q < P; q += blockDim.x)
        s += static_cast<double>(a[base + q]) * static_cast<double>(b[base + q]);
    const double total = block_sum(s, shared);
    if (threadIdx.x == 0) out[blockIdx.x] = static_cast<T>(total);
}
}  // namespace
}  // namespace medimg::cuda::detail

namespace medimg::ops {

template <>
struct ChannelImpl<Cuda> {
    template <class T>
    static void scale(const T* x, const T* s, T* y, std::int64_t planes, std::int64_t P) {
        const std::int64_t total = planes * P;
        if (total <= 0) return;
        cuda::detail::scale_planes_kernel<T><<<cuda::detail::blocks_for(total), cuda::detail::kThreads, 0, cuda::stream()>>>(
            x, s, y, P, total);
        MEDIMG_CUDA_CHECK(cudaGetLastError());
    }
    template <class T>
    static void plane_dot(const T* a, const T* b, T* out, std::int64_t planes, std::int64_t P) {
        for (std::int64_t p0 = 0; p0 < planes; p0 += 65535) {  // grid x limit kept conservative
            const std::int64_t n = planes - p0 < 65535 ? planes - p0 : 65535;
            cuda::detail::plane_dot_kernel<T><<<static_cast<unsigned>(n), cuda::detail::kChannelThreads, 0, cuda::stream()>>>(
                a + p0 * P, b + p0 * P, out + p0, P);
            MEDIMG_CUDA_CHECK(cudaGetLastError());
        }
    }
    template <class T>
    static void copy(const T* src, std::int64_t Cs, std::int64_t s0, T* dst, std::int64_t Cd, std::int64_t d0,
                     std::int64_t count, std::int64_t N, std::int64_t P) {
        if (count == 0 || N == 0 || P == 0) return;
        const std::size_t e = sizeof(T);
        MEDIMG_CUDA_CHECK(cudaMemcpy2DAsync(dst + d0 * P, static_cast<std::size_t>(Cd * P) * e, src + s0 * P,
                                            static_cast<std::size_t>(Cs * P) * e, static_cast<std::size_t>(count * P) * e,
                                            static_cast<std::size_t>(N), cudaMemcpyDeviceToDevice, cuda::stream()));
    }
};

}  // namespace medimg::ops
