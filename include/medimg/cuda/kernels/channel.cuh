// SPDX-License-Identifier: MIT
// cuda/kernels/channel.cuh: per-channel kernels over NCHW tensors, shared by convolution bias and
// batch normalisation. Layout: element (n, c, q) of a (N, C, P = H*W) tensor sits at (n*C + c)*P + q.
// Channel reductions give each channel one block that sums in double over a fixed thread split and
// tree (kernels/common.cuh block_sum), so results are bitwise reproducible and as accurate as the
// CPU reference's double sums.
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/kernels/channel.cuh: include only from a TU compiled by nvcc"
#endif

#include <cstdint>

#include "medimg/cuda/check.hpp"
#include "medimg/cuda/context.hpp"
#include "medimg/cuda/kernels/common.cuh"
#include "medimg/cuda/kernels/storage.cuh"

namespace medimg::cuda::detail {

inline constexpr int kChannelThreads = 256;

namespace {
// y[n, c, q] += b[c]   (y stored as S: kernels/storage.cuh)
template <class S, class T>
__global__ void add_channel_bias_kernel(S* y, const T* b, std::int64_t C, std::int64_t P, std::int64_t total) {
    MEDIMG_GRID_STRIDE(i, total) st(y + i, ld(y[i]) + b[(i / P) % C]);
}

// out[c] = sum over n, q of x[n, c, q]   (one block per channel; x stored as S)
template <class S, class T>
__global__ void channel_sum_kernel(const S* x, std::int64_t N, std::int64_t C, std::int64_t P, T* out) {
    __shared__ double shared[kChannelThreads];
    const std::int64_t c = blockIdx.x;
    double s = 0.0;
    for (std::int64_t j = threadIdx.x; j < N * P; j += blockDim.x) s += static_cast<double>(ld(x[((j / P) * C + c) * P + j % P]));
    const double total = block_sum(s, shared);
    if (threadIdx.x == 0) out[c] = static_cast<T>(total);
}

// Batch norm with fixed statistics (inference-mode backward), one block per channel:
//   forward: xhat = (x - mean) * invstd;  y = gamma * xhat + beta
//   dbeta = sum(dy);  dgamma = sum(dy * xhat)   (either output may be null)
template <class T>
__global__ void bn_param_grads_kernel(const T* x, const T* dy, const T* mean, const T* invstd, std::int64_t N,
                                      std::int64_t C, std::int64_t P, T* dgamma, T* dbeta) {
    __shared__ double shared[kChannelThreads];
    const std::int64_t c = blockIdx.x;
    const double m = static_cast<double>(mean[c]), is = static_cast<double>(invstd[c]);
    double sdy = 0.0, sdyx = 0.0;
    for (std::int64_t j = threadIdx.x; j < N * P; j += blockDim.x) {
        const std::int64_t k = ((j / P) * C + c) * P + j % P;
        const double d = static_cast<double>(dy[k]);
        sdy += d;
        sdyx += d * (static_cast<double>(x[k]) - m) * is;
    }
    const double tb = block_sum(sdy, shared);
    const double tg = block_sum(sdyx, shared);
    if (threadIdx.x == 0) {
        if (dbeta) dbeta[c] = static_cast<T>(tb);
        if (dgamma) dgamma[c] = static_cast<T>(tg);
    }
}

// dx = gamma * invstd * dy (statistics are constants in inference mode); gamma null = 1
template <class T>
__global__ void bn_inference_backward_data_kernel(const T* dy, const T* gamma, const T* invstd, std::int64_t C,
                                                  std::int64_t P, std::int64_t total, T* dx) {
    MEDIMG_GRID_STRIDE(i, total) {
        const std::int64_t c = (i / P) % C;
        const double k = (gamma ? static_cast<double>(gamma[c]) : 1.0) * static_cast<double>(invstd[c]);
        dx[i] = static_cast<T>(k * static_cast<double>(dy[i]));
    }
}
}  // namespace

/// y (N, C, P; stored as S) += b (C) broadcast over n and q.
template <class S, class T>
void add_channel_bias(S* y, const T* b, std::int64_t N, std::int64_t C, std::int64_t P) {
    const std::int64_t total = N * C * P;
    if (total <= 0) return;
    add_channel_bias_kernel<S, T><<<blocks_for(total), kThreads, 0, stream()>>>(y, b, C, P, total);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

/// out (C) = x (N, C, P; stored as S) summed over n and q.
template <class S, class T>
void channel_sum(const S* x, std::int64_t N, std::int64_t C, std::int64_t P, T* out) {
    if (C <= 0) return;
    channel_sum_kernel<S, T><<<static_cast<unsigned>(C), kChannelThreads, 0, stream()>>>(x, N, C, P, out);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void bn_param_grads(const T* x, const T* dy, const T* mean, const T* invstd, std::int64_t N, std::int64_t C,
                    std::int64_t P, T* dgamma, T* dbeta) {
    if (C <= 0 || (!dgamma && !dbeta)) return;
    bn_param_grads_kernel<T><<<static_cast<unsigned>(C), kChannelThreads, 0, stream()>>>(x, dy, mean, invstd, N, C, P,
                                                                                         dgamma, dbeta);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void bn_inference_backward_data(const T* dy, const T* gamma, const T* invstd, std::int64_t N, std::int64_t C,
                                std::int64_t P, T* dx) {
    const std::int64_t total = N * C * P;
    if (total <= 0) return;
    bn_inference_backward_data_kernel<T><<<blocks_for(total), kThreads, 0, stream()>>>(dy, gamma, invstd, C, P, total, dx);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

}  // namespace medimg::cuda::detail
