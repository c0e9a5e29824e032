// SPDX-License-Identifier: MIT
// cuda/kernels/batch_norm.cuh: batch normalisation over activations stored in bf16 / fp16
// (mixed precision, Tensor::storage()) - own kernels, since cuDNN's legacy batch-norm API does not
// take every half format on every version. The arithmetic follows cpu/batch_norm.hpp: per-channel
// sums in double (the mean, then the centred squares: two passes, as the CPU), scale = gamma *
// invstd and shift = beta - scale * mean, y = x * scale + shift in float, rounded once into the
// half storage; the backward's sums dbeta = sum(dy) and dgamma = invstd * sum(dy * (x - mean)),
// dx = gamma * invstd / M * (M * dy - dbeta - xhat * dgamma) (training) or gamma * invstd * dy
// (inference). Per-channel tensors (gamma, beta, statistics, their gradients) stay float32.
// Layout: (N, C, P = H*W), element (n, c, q) at (n*C + c)*P + q. A channel's M = N*P values are
// split into G contiguous ranges of the flattened (n, q) index, one block each (threads stride over
// the range, so small planes such as 7x7 keep every thread busy); each block's partial is written
// to scratch, and one thread per channel adds the G partials in order: deterministic.
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/kernels/batch_norm.cuh: include only from a TU compiled by nvcc"
#endif

#include <algorithm>
#include <cstdint>

#include "medimg/cuda/allocator.hpp"
#include "medimg/cuda/check.hpp"
#include "medimg/cuda/context.hpp"
#include "medimg/cuda/kernels/common.cuh"
#include "medimg/cuda/kernels/storage.cuh"

namespace medimg::cuda::detail {

inline constexpr int kBnThreads = 256;

enum BnSum : int {
    kBnSumX = 0,         // a = sum x
    kBnSumCentred = 1,   // a = sum (x - mean)^2
    kBnSumGrad = 2,      // a = sum dy, b = sum dy * (x - mean)
};

struct BnGeom {
    std::int64_t N, C, P;
    int G;  // blocks per channel
};

/// Blocks per channel: about 1024 blocks in all (to fill the GPU), but at least 1024 values per block.
inline BnGeom bn_geom(std::int64_t N, std::int64_t C, std::int64_t P) {
    const std::int64_t fill = (1024 + C - 1) / std::max<std::int64_t>(C, 1);
    const std::int64_t work = (N * P + 4 * kBnThreads - 1) / (4 * kBnThreads);
    return BnGeom{N, C, P, static_cast<int>(std::max<std::int64_t>(1, std::min({fill, work, std::int64_t(65535)})))};
}

namespace {
// partial[(c*G + g)*2 + {0, 1}] = this block's share of the sums `Mode` names
template <int Mode, class S, class T>
__global__ void bn_partials_kernel(const S* x, const S* dy, const T* mean, BnGeom g, double* partial) {
    __shared__ double shared[kBnThreads];
    const std::int64_t c = blockIdx.x;
    const double m = Mode == kBnSumX ? 0.0 : static_cast<double>(mean[c]);
    double a = 0.0, b = 0.0;
    const std::int64_t M = g.N * g.P, per = (M + g.G - 1) / g.G;
    const std::int64_t j0 = static_cast<std::int64_t>(blockIdx.y) * per, j1 = j0 + per < M ? j0 + per : M;
    for (std::int64_t j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
        const std::int64_t n = j / g.P;
        const std::int64_t k = (n * g.C + c) * g.P + (j - n * g.P);
        const double v = static_cast<double>(ld(x[k]));
        if constexpr (Mode == kBnSumX) {
            a += v;
        } else if constexpr (Mode == kBnSumCentred) {
            a += (v - m) * (v - m);
        } else {
            const double d = static_cast<double>(ld(dy[k]));
            a += d;
            b += d * (v - m);
        }
    }
    a = block_sum(a, shared);
    if constexpr (Mode == kBnSumGrad) b = block_sum(b, shared);
    if (threadIdx.x == 0) {
        const std::int64_t k = (c * g.G + blockIdx.y) * 2;
        partial[k] = a;
        partial[k + 1] = b;
    }
}

// sums[c*2 + {0, 1}] = the G partials of channel c added in order
__global__ void bn_totals_kernel(const double* partial, BnGeom g, double* sums) {
    MEDIMG_GRID_STRIDE(c, g.C) {
        double a = 0.0, b = 0.0;
        for (int k = 0; k < g.G; ++k) {
            a += partial[(c * g.G + k) * 2];
            b += partial[(c * g.G + k) * 2 + 1];
        }
        sums[c * 2] = a;
        sums[c * 2 + 1] = b;
    }
}

// mean[c] = sum x / M (into `mean`, float)
template <class T>
__global__ void bn_mean_kernel(const double* sums, std::int64_t C, double M, T* mean) {
    MEDIMG_GRID_STRIDE(c, C) mean[c] = static_cast<T>(sums[c * 2] / M);
}

// From the centred squares: invstd, and the running statistics (PyTorch's rule, unbiased variance)
template <class T>
__global__ void bn_finish_stats_kernel(const double* sums, const double* mean_sums, std::int64_t C, double M, double eps,
                                       double momentum, T* invstd, T* running_mean, T* running_var) {
    MEDIMG_GRID_STRIDE(c, C) {
        const double mean = mean_sums[c * 2] / M, ss = sums[c * 2];
        invstd[c] = static_cast<T>(1.0 / sqrt(ss / M + eps));
        if (running_mean) running_mean[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_mean[c]) + momentum * mean);
        if (running_var)
            running_var[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_var[c]) + momentum * (ss / (M - 1.0)));
    }
}

// y = x * scale + shift, scale = gamma * invstd, shift = beta - scale * mean (gamma / beta null: 1 / 0)
template <class S, class T>
__global__ void bn_normalize_kernel(const S* x, const T* mean, const T* invstd, const T* gamma, const T* beta, BnGeom g,
                                    std::int64_t total, S* y) {
    MEDIMG_GRID_STRIDE(i, total) {
        const std::int64_t c = (i / g.P) % g.C;
        const double is = static_cast<double>(invstd[c]);
        const double ga = gamma ? static_cast<double>(gamma[c]) : 1.0, be = beta ? static_cast<double>(beta[c]) : 0.0;
        const float scale = static_cast<float>(ga * is), shift = static_cast<float>(be - ga * is * static_cast<double>(mean[c]));
        st(y + i, ld(x[i]) * scale + shift);
    }
}

// training: dx = gamma * invstd / M * (M * dy - dbeta - xhat * dgamma); inference: gamma * invstd * dy
template <class S, class T>
__global__ void bn_backward_data_kernel(const S* x, const S* dy, const T* mean, const T* invstd, const T* gamma,
                                        const double* sums, bool training, double M, BnGeom g, std::int64_t total, S* dx) {
    MEDIMG_GRID_STRIDE(i, total) {
        const std::int64_t c = (i / g.P) % g.C;
        const double is = static_cast<double>(invstd[c]);
        const double k = (gamma ? static_cast<double>(gamma[c]) : 1.0) * is;
        const double d = static_cast<double>(ld(dy[i]));
        if (!training) {
            st(dx + i, static_cast<float>(k * d));
            continue;
        }
        const double xhat = (static_cast<double>(ld(x[i])) - static_cast<double>(mean[c])) * is;
        const double dbeta = sums[c * 2], dgamma = sums[c * 2 + 1] * is;
        st(dx + i, static_cast<float>(k / M * (M * d - dbeta - xhat * dgamma)));
    }
}

// dbeta = sum dy, dgamma = invstd * sum dy (x - mean) from the channel sums (either may be null)
template <class T>
__global__ void bn_param_grads_from_sums_kernel(const double* sums, const T* invstd, std::int64_t C, T* dgamma, T* dbeta) {
    MEDIMG_GRID_STRIDE(c, C) {
        if (dbeta) dbeta[c] = static_cast<T>(sums[c * 2]);
        if (dgamma) dgamma[c] = static_cast<T>(sums[c * 2 + 1] * static_cast<double>(invstd[c]));
    }
}
}  // namespace

/// sums (C*2 doubles, device) = the per-channel sums `Mode` names over x (and dy) stored as S.
template <int Mode, class S, class T>
void bn_channel_sums(const S* x, const S* dy, const T* mean, const BnGeom& g, double* sums) {
    DeviceBuffer partial(static_cast<std::size_t>(g.C) * g.G * 2 * sizeof(double));
    const dim3 grid(static_cast<unsigned>(g.C), static_cast<unsigned>(g.G));
    bn_partials_kernel<Mode, S, T><<<grid, kBnThreads, 0, stream()>>>(x, dy, mean, g, partial.as<double>());
    MEDIMG_CUDA_CHECK(cudaGetLastError());
    bn_totals_kernel<<<blocks_for(g.C), kThreads, 0, stream()>>>(partial.as<double>(), g, sums);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

/// Training forward over half storage: batch statistics, y, the saved mean / invstd and the
/// running statistics (each of the last two pairs may be null).
template <class S, class T>
void bn_forward_training_stored(const S* x, const T* gamma, const T* beta, T* running_mean, T* running_var, double momentum,
                                double eps, std::int64_t N, std::int64_t C, std::int64_t P, S* y, T* save_mean,
                                T* save_invstd) {
    const BnGeom g = bn_geom(N, C, P);
    const double M = static_cast<double>(N * P);
    DeviceBuffer mean_sums(static_cast<std::size_t>(C) * 2 * sizeof(double)), sq_sums(mean_sums.bytes());
    DeviceBuffer mean_buf(static_cast<std::size_t>(C) * sizeof(T)), invstd_buf(mean_buf.bytes());
    T* mean = save_mean ? save_mean : mean_buf.as<T>();
    T* invstd = save_invstd ? save_invstd : invstd_buf.as<T>();
    bn_channel_sums<kBnSumX, S, T>(x, nullptr, nullptr, g, mean_sums.as<double>());
    bn_mean_kernel<T><<<blocks_for(C), kThreads, 0, stream()>>>(mean_sums.as<double>(), C, M, mean);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
    bn_channel_sums<kBnSumCentred, S, T>(x, nullptr, mean, g, sq_sums.as<double>());
    bn_finish_stats_kernel<T><<<blocks_for(C), kThreads, 0, stream()>>>(sq_sums.as<double>(), mean_sums.as<double>(), C, M, eps,
                                                                        momentum, invstd, running_mean, running_var);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
    const std::int64_t total = N * C * P;
    bn_normalize_kernel<S, T><<<blocks_for(total), kThreads, 0, stream()>>>(x, mean, invstd, gamma, beta, g, total, y);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

/// y = normalised x with given statistics (mean, invstd: C floats on the device).
template <class S, class T>
void bn_normalize_stored(const S* x, const T* mean, const T* invstd, const T* gamma, const T* beta, std::int64_t N,
                         std::int64_t C, std::int64_t P, S* y) {
    const std::int64_t total = N * C * P;
    if (total <= 0) return;
    bn_normalize_kernel<S, T><<<blocks_for(total), kThreads, 0, stream()>>>(x, mean, invstd, gamma, beta, bn_geom(N, C, P),
                                                                           total, y);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

/// Backward over half storage, either mode; dx, dgamma, dbeta may each be null.
template <class S, class T>
void bn_backward_stored(const S* x, const S* dy, const T* gamma, const T* mean, const T* invstd, bool training,
                        std::int64_t N, std::int64_t C, std::int64_t P, S* dx, T* dgamma, T* dbeta) {
    const BnGeom g = bn_geom(N, C, P);
    const double M = static_cast<double>(N * P);
    DeviceBuffer sums(static_cast<std::size_t>(C) * 2 * sizeof(double));
    if (training || dgamma || dbeta) bn_channel_sums<kBnSumGrad, S, T>(x, dy, mean, g, sums.as<double>());
    if (dgamma || dbeta) {
        bn_param_grads_from_sums_kernel<T><<<blocks_for(C), kThreads, 0, stream()>>>(sums.as<double>(), invstd, C, dgamma, dbeta);
        MEDIMG_CUDA_CHECK(cudaGetLastError());
    }
    const std::int64_t total = N * C * P;
    if (!dx || total <= 0) return;
    bn_backward_data_kernel<S, T><<<blocks_for(total), kThreads, 0, stream()>>>(x, dy, mean, invstd, gamma, sums.as<double>(),
                                                                               training, M, g, total, dx);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

}  // namespace medimg::cuda::detail
