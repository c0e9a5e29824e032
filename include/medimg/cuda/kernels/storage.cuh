// SPDX-License-Identifier: MIT
// cuda/kernels/storage.cuh: kernels over tensors whose storage may be half precision
// (Tensor::storage(): float32, or bf16 / fp16 activations under mixed precision). A kernel is
// templated on its storage type S (float, double, __nv_bfloat16, __half) and computes in
// Compute<S> (S itself for float / double, float for the halves): ld() widens a stored element
// exactly, st() rounds a result into S to nearest even (__float2bfloat16_rn / __float2half_rn, the
// host roundings of core/precision.hpp). For float and double both are the identity, so a kernel
// written this way does for float32 tensors exactly what it did before.
// with_storage<T>(p, f) calls f with a null S* for the storage p of a Tensor<T, Cuda>, so a host
// function launches the right instantiation; the half ones exist for T = float only.
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/kernels/storage.cuh: include only from a TU compiled by nvcc"
#endif

#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "medimg/core/precision.hpp"
#include "medimg/error.hpp"

namespace medimg::cuda::detail {

template <class S>
struct StorageTraits {
    using compute = S;
};
template <>
struct StorageTraits<__half> {
    using compute = float;
};
template <>
struct StorageTraits<__nv_bfloat16> {
    using compute = float;
};
template <class S>
using Compute = typename StorageTraits<S>::compute;

// Plain element types (float, double, integers): the value itself.
template <class S, std::enable_if_t<std::is_arithmetic_v<S>, int> = 0>
__device__ __forceinline__ S ld(const S& v) {
    return v;
}
template <class S, class V, std::enable_if_t<std::is_arithmetic_v<S>, int> = 0>
__device__ __forceinline__ void st(S* p, V v) {
    *p = static_cast<S>(v);
}
__device__ __forceinline__ float ld(const __half& v) { return __half2float(v); }
__device__ __forceinline__ float ld(const __nv_bfloat16& v) { return __bfloat162float(v); }
__device__ __forceinline__ void st(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void st(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

/// f(static_cast<S*>(nullptr)) for the storage type S of a Tensor<T, Cuda> with storage p.
template <class T, class F>
decltype(auto) with_storage(Precision p, F&& f) {
    if constexpr (std::is_same_v<T, float>) {
        if (p == Precision::bf16) return f(static_cast<__nv_bfloat16*>(nullptr));
        if (p == Precision::fp16) return f(static_cast<__half*>(nullptr));
    } else {
        MEDIMG_CHECK(p == Precision::fp32, ValueError, "half-precision storage is for float tensors only");
    }
    return f(static_cast<T*>(nullptr));
}

/// The element pointer of a tensor's storage as storage type S.
template <class S, class Tn>
S* stored(Tn& t) {
    return static_cast<S*>(t.raw());
}
template <class S, class Tn>
const S* stored(const Tn& t) {
    return static_cast<const S*>(t.raw());
}

}  // namespace medimg::cuda::detail
