// SPDX-License-Identifier: MIT
// cuda/precision.cuh: the half-precision copies behind mixed precision (settings().precision =
// bf16 | fp16; core/precision.hpp). A convolution or linear layer on float32 tensors casts its
// operands into bf16/fp16 blocks from the caching allocator (round to nearest even:
// __float2bfloat16_rn / __float2half_rn, the roundings of core/precision.hpp), lets cuDNN /
// cuBLAS multiply them on tensor cores with float32 accumulation, and casts a half result back to
// float32 (exact: every bf16/fp16 value is a float). The blocks go back to the allocator when the
// op returns; the single stream orders their reuse.
// Tensors that already hold half storage (mixed-precision activations, Tensor::storage()) are
// used as they are; convert_storage is also Memory<Cuda>'s conversion behind Tensor::to_storage.
// Deliberately not here: caching the casts of the weights between forward and backward.
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/precision.cuh: include only from a TU compiled by nvcc"
#endif

#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cudnn.h>
#include <library_types.h>

#include "medimg/core/precision.hpp"
#include "medimg/cuda/allocator.hpp"
#include "medimg/cuda/check.hpp"
#include "medimg/cuda/context.hpp"
#include "medimg/cuda/kernels/common.cuh"
#include "medimg/cuda/kernels/storage.cuh"

namespace medimg::cuda::detail {

namespace {
// y = x converted from storage S to storage D (widening exact, narrowing to nearest even)
template <class S, class D>
__global__ void convert_kernel(const S* x, D* y, std::int64_t n) {
    MEDIMG_GRID_STRIDE(i, n) st(y + i, static_cast<float>(ld(x[i])));
}
}  // namespace

/// True when float32 convolutions and GEMMs run in half precision now.
inline bool mixed_precision() { return settings().precision != Precision::fp32; }

inline cudnnDataType_t cudnn_half_type(Precision p) { return p == Precision::fp16 ? CUDNN_DATA_HALF : CUDNN_DATA_BFLOAT16; }
inline cudaDataType_t blas_half_type(Precision p) { return p == Precision::fp16 ? CUDA_R_16F : CUDA_R_16BF; }

/// A block for n half-precision (2-byte) elements.
inline DeviceBuffer half_buffer(std::int64_t n) { return DeviceBuffer(static_cast<std::size_t>(n) * 2); }

/// x (n floats, device) -> out (n bf16/fp16 elements, device), on the stream.
/// n values stored as `from` (device) -> stored as `to` (device), on the stream (Tensor::to_storage).
inline void convert_storage(const void* src, Precision from, void* dst, Precision to, std::int64_t n) {
    if (n <= 0) return;
    with_storage<float>(from, [&](auto* s_tag) {
        using S = std::remove_pointer_t<decltype(s_tag)>;
        with_storage<float>(to, [&](auto* d_tag) {
            using D = std::remove_pointer_t<decltype(d_tag)>;
            convert_kernel<S, D><<<blocks_for(n), kThreads, 0, stream()>>>(static_cast<const S*>(src), static_cast<D*>(dst), n);
        });
    });
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}
inline void cast_to_half(const float* x, void* out, std::int64_t n, Precision p) {
    convert_storage(x, Precision::fp32, out, p, n);
}
/// A new half-precision copy of x (n floats).
inline DeviceBuffer to_half(const float* x, std::int64_t n, Precision p) {
    DeviceBuffer b = half_buffer(n);
    cast_to_half(x, b.get(), n, p);
    return b;
}
/// h (n bf16/fp16 elements, device) -> y (n floats, device), on the stream.
inline void cast_to_float(const void* h, float* y, std::int64_t n, Precision p) {
    convert_storage(h, p, y, Precision::fp32, n);
}

}  // namespace medimg::cuda::detail
