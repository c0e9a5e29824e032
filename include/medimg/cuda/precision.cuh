// SPDX-License-Identifier: MIT
// cuda/precision.cuh: the half-precision copies behind mixed precision (settings().precision =
// bf16 | fp16; core/precision.hpp). A convolution or linear layer on float32 tensors casts its
// operands into bf16/fp16 blocks from the caching allocator (round to nearest even:
// __float2bfloat16_rn / __float2half_rn, the roundings of core/precision.hpp), lets cuDNN /
// cuBLAS multiply them on tensor cores with float32 accumulation, and casts a half result back to
// float32 (exact: every bf16/fp16 value is a float). The blocks go back to the allocator when the
// op returns; the single stream orders their reuse.
// Deliberately not here: caching the casts of the weights between forward and backward, and
// half-precision storage of activations between layers (docs/gpu.md, "Mixed precision").
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/precision.cuh: include only from a TU compiled by nvcc"
#endif

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cudnn.h>
#include <library_types.h>

#include "medimg/core/precision.hpp"
#include "medimg/cuda/allocator.hpp"
#include "medimg/cuda/check.hpp"
#include "medimg/cuda/context.hpp"
#include "medimg/cuda/kernels/common.cuh"

namespace medimg::cuda::detail {

namespace {
__device__ __forceinline__ void store_half(float v, __nv_bfloat16* out) { *out = __float2bfloat16_rn(v); }
__device__ __forceinline__ void store_half(float v, __half* out) { *out = __float2half_rn(v); }
__device__ __forceinline__ float load_half(const __nv_bfloat16* in) { return __bfloat162float(*in); }
__device__ __forceinline__ float load_half(const __half* in) { return __half2float(*in); }

template <class H>
__global__ void float_to_half_kernel(const float* x, H* y, std::int64_t n) {
    MEDIMG_GRID_STRIDE(i, n) store_half(x[i], y + i);
}
template <class H>
__global__ void half_to_float_kernel(const H* x, float* y, std::int64_t n) {
    MEDIMG_GRID_STRIDE(i, n) y[i] = load_half(x + i);
}
}  // namespace

/// True when float32 convolutions and GEMMs run in half precision now.
inline bool mixed_precision() { return settings().precision != Precision::fp32; }

inline cudnnDataType_t cudnn_half_type(Precision p) { return p == Precision::fp16 ? CUDNN_DATA_HALF : CUDNN_DATA_BFLOAT16; }
inline cudaDataType_t blas_half_type(Precision p) { return p == Precision::fp16 ? CUDA_R_16F : CUDA_R_16BF; }

/// A block for n half-precision (2-byte) elements.
inline DeviceBuffer half_buffer(std::int64_t n) { return DeviceBuffer(static_cast<std::size_t>(n) * 2); }

/// x (n floats, device) -> out (n bf16/fp16 elements, device), on the stream.
inline void cast_to_half(const float* x, void* out, std::int64_t n, Precision p) {
    if (n <= 0) return;
    if (p == Precision::fp16)
        float_to_half_kernel<__half><<<blocks_for(n), kThreads, 0, stream()>>>(x, static_cast<__half*>(out), n);
    else
        float_to_half_kernel<__nv_bfloat16><<<blocks_for(n), kThreads, 0, stream()>>>(x, static_cast<__nv_bfloat16*>(out), n);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}
/// A new half-precision copy of x (n floats).
inline DeviceBuffer to_half(const float* x, std::int64_t n, Precision p) {
    DeviceBuffer b = half_buffer(n);
    cast_to_half(x, b.get(), n, p);
    return b;
}
/// h (n bf16/fp16 elements, device) -> y (n floats, device), on the stream.
inline void cast_to_float(const void* h, float* y, std::int64_t n, Precision p) {
    if (n <= 0) return;
    if (p == Precision::fp16)
        half_to_float_kernel<__half><<<blocks_for(n), kThreads, 0, stream()>>>(static_cast<const __half*>(h), y, n);
    else
        half_to_float_kernel<__nv_bfloat16><<<blocks_for(n), kThreads, 0, stream()>>>(static_cast<const __nv_bfloat16*>(h), y, n);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

}  // namespace medimg::cuda::detail
