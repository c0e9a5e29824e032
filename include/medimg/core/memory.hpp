// SPDX-License-Identifier: MIT
// memory.hpp: the per-backend memory primitives every Tensor is built on.
// Memory<B> allocates, frees, fills and copies within backend B; Transfer<From, To> copies between
// backends (the only way data crosses devices: Tensor::to<B2>() calls it explicitly).
// Memory<Cpu> is 64-byte aligned host memory, large blocks reused through core/host_cache.hpp;
// Memory<Cuda> lives in cuda/memory.cuh (nvcc only).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <new>

#include "medimg/core/device.hpp"
#include "medimg/core/host_cache.hpp"
#include "medimg/core/precision.hpp"
#include "medimg/config.hpp"

namespace medimg {

/// True when backend B can be used in this translation unit.
template <class B>
inline constexpr bool backend_available = false;
template <>
inline constexpr bool backend_available<Cpu> = true;
template <>
inline constexpr bool backend_available<Cuda> = MEDIMG_HAS_CUDA;

template <class B>
struct Memory {
    static_assert(detail::dependent_false<B>,
                  "medimg: Tensor<T, Cuda> requires a translation unit compiled by nvcc (MEDIMG_HAS_CUDA=1)");
};

template <>
struct Memory<Cpu> {
    static constexpr std::size_t alignment = 64;  // one cache line; AVX-512 loads stay aligned
    static void* allocate(std::size_t bytes) { return bytes ? detail::HostCache::instance().allocate(bytes) : nullptr; }
    static void deallocate(void* p) noexcept { detail::HostCache::instance().deallocate(p); }
    template <class T>
    static void fill(T* p, std::size_t n, T value) { std::fill(p, p + n, value); }
    static void copy(void* dst, const void* src, std::size_t bytes) {
        if (bytes) std::memcpy(dst, src, bytes);
    }
    /// n values stored as `from` -> stored as `to` (float32 / bf16 / fp16; Tensor::to_storage).
    static void convert_storage(const void* src, Precision from, void* dst, Precision to, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) store_stored(dst, to, i, load_stored(src, from, i));
    }
};

template <class From, class To>
struct Transfer {
    static_assert(detail::dependent_false<From>,
                  "medimg: copies to or from Cuda require a translation unit compiled by nvcc (MEDIMG_HAS_CUDA=1)");
};
template <>
struct Transfer<Cpu, Cpu> {
    static void copy(void* dst, const void* src, std::size_t bytes) { Memory<Cpu>::copy(dst, src, bytes); }
};

}  // namespace medimg

// Memory<Cuda> and the transfers that involve the GPU, in a TU compiled by nvcc.
#if MEDIMG_HAS_CUDA
#  include "medimg/cuda/memory.cuh"
#endif
