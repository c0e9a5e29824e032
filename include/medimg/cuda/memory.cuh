// SPDX-License-Identifier: MIT
// cuda/memory.cuh: Memory<Cuda> and the three transfers that involve the GPU, the primitives
// Tensor<T, Cuda> is built on (core/memory.hpp declares them).
//   allocate/deallocate  through the caching allocator (allocator.hpp): no cudaMalloc in steady state
//   fill                 cudaMemsetAsync for all-zero bytes, else a grid-stride kernel
//   copy                 device to device, queued on the stream
//   Transfer<Cpu, Cuda>  cudaMemcpyAsync from pageable host memory: returns once the source has
//                        been staged, so the host may reuse it at once
//   Transfer<Cuda, Cpu>  cudaMemcpyAsync, then waits for the stream (the host needs the data) and
//                        reports kernel-detected input errors (context.hpp)
// Everything runs on the one stream of the current device, in the order it was asked for.
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/memory.cuh: include only from a TU compiled by nvcc"
#endif

#include <cstddef>
#include <cstdint>
#include <cstring>

#include <cuda_runtime.h>

#include "medimg/core/memory.hpp"
#include "medimg/cuda/allocator.hpp"
#include "medimg/cuda/check.hpp"
#include "medimg/cuda/context.hpp"
#include "medimg/cuda/device.hpp"
#include "medimg/cuda/kernels/common.cuh"
#include "medimg/cuda/precision.cuh"

namespace medimg::cuda::detail {
namespace {
/// p[i] = value for i in [0, n)
template <class T>
__global__ void fill_kernel(T* p, std::int64_t n, T value) {
    MEDIMG_GRID_STRIDE(i, n) p[i] = value;
}
}  // namespace

template <class T>
void fill(T* p, std::int64_t n, T value) {
    if (n <= 0) return;
    unsigned char zero[sizeof(T)] = {};
    if (std::memcmp(&value, zero, sizeof(T)) == 0) {
        MEDIMG_CUDA_CHECK(cudaMemsetAsync(p, 0, static_cast<std::size_t>(n) * sizeof(T), stream()));
        return;
    }
    fill_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(p, n, value);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}
}  // namespace medimg::cuda::detail

namespace medimg {

template <>
struct Memory<Cuda> {
    static void* allocate(std::size_t bytes) { return cuda::CachingAllocator::instance().allocate(bytes); }
    static void deallocate(void* p) noexcept { cuda::CachingAllocator::instance().deallocate(p); }
    template <class T>
    static void fill(T* p, std::size_t n, T value) {
        cuda::detail::fill(p, static_cast<std::int64_t>(n), value);
    }
    static void copy(void* dst, const void* src, std::size_t bytes) {
        if (bytes == 0 || dst == src) return;
        MEDIMG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda::stream()));
    }
    /// n values stored as `from` -> stored as `to` (Tensor::to_storage; cuda/precision.cuh).
    static void convert_storage(const void* src, Precision from, void* dst, Precision to, std::size_t n) {
        cuda::detail::convert_storage(src, from, dst, to, static_cast<std::int64_t>(n));
    }
    /// Devices this backend can run on; 0 without a GPU or driver (never throws). Lets host-side
    /// generic code (the programs' device choice) ask without naming medimg::cuda.
    static int device_count() noexcept { return cuda::device_count(); }
};

template <>
struct Transfer<Cpu, Cuda> {
    static void copy(void* dst, const void* src, std::size_t bytes) {
        if (bytes == 0) return;
        MEDIMG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cuda::stream()));
    }
};

template <>
struct Transfer<Cuda, Cpu> {
    static void copy(void* dst, const void* src, std::size_t bytes) {
        if (bytes > 0) MEDIMG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cuda::stream()));
        cuda::synchronize();
    }
};

template <>
struct Transfer<Cuda, Cuda> {
    static void copy(void* dst, const void* src, std::size_t bytes) { Memory<Cuda>::copy(dst, src, bytes); }
};

}  // namespace medimg
