// SPDX-License-Identifier: MIT
// cuda/layer_norm.cuh: LayerNormImpl<Cuda>, the GPU twin of cpu/layer_norm.hpp (formulas in
// ops/layer_norm.hpp; torch.nn.LayerNorm, https://pytorch.org/docs/stable/generated/torch.nn.LayerNorm.html;
// Ba et al. 2016). x (..., D) is R rows of D values.
//   forward:  one warp per row, in T: the mean, then the biased variance as the mean of squared
//             deviations (two passes over the row, no E[x^2] - E[x]^2 cancellation), each a
//             per-lane strided sum closed by a butterfly shuffle (fixed order: deterministic);
//             rstd = 1 / sqrt(var + eps); y = xhat * gamma + beta.
//   backward: dx one warp per row (the two row means of g = dy * gamma and g * xhat); dgamma and
//             dbeta are column sums over the R rows in double, in two deterministic stages: a
//             fixed split of the rows into chunks (partial sums per chunk and column), then one
//             thread per column adds the chunks in order.
// Deliberately not here: half storage (the front door takes float32; autograd widens half
// activations), a fused kernel for small R (the column sums always take two launches).
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/layer_norm.cuh: include only from a TU compiled by nvcc"
#endif

#include <algorithm>
#include <cstdint>

#include "medimg/cuda/allocator.hpp"
#include "medimg/cuda/check.hpp"
#include "medimg/cuda/context.hpp"
#include "medimg/cuda/kernels/common.cuh"
#include "medimg/ops/layer_norm.hpp"

namespace medimg::cuda::detail {

inline constexpr int kLnWarps = 4;           // rows (one warp each) per block of the row kernels
inline constexpr int kLnColTile = 32;        // columns per block of the column-sum kernel
inline constexpr int kLnColLanes = 8;        // threads per column in that block (rows they split)
inline constexpr std::int64_t kLnMaxChunks = 512;  // row chunks of the column sums (partials held)

namespace {
// x (R, D) -> y (R, D), mean (R), rstd (R); one warp per row; gamma / beta (D) may be null
template <class T>
__global__ void ln_forward_kernel(const T* x, const T* gamma, const T* beta, T eps, T* y, T* mean, T* rstd,
                                  std::int64_t R, std::int64_t D) {
    const int lane = static_cast<int>(threadIdx.x % 32);
    const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
    for (std::int64_t r = static_cast<std::int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; r < R; r += warps) {
        const T* xr = x + r * D;
        T* yr = y + r * D;
        T s = 0;
        for (std::int64_t i = lane; i < D; i += 32) s += xr[i];
        const T mu = warp_sum(s) / static_cast<T>(D);
        T q = 0;
        for (std::int64_t i = lane; i < D; i += 32) {
            const T c = xr[i] - mu;
            q += c * c;
        }
        const T rs = T(1) / sqrt(warp_sum(q) / static_cast<T>(D) + eps);
        for (std::int64_t i = lane; i < D; i += 32) {
            T v = (xr[i] - mu) * rs;
            if (gamma) v *= gamma[i];
            if (beta) v += beta[i];
            yr[i] = v;
        }
        if (lane == 0) {
            mean[r] = mu;
            rstd[r] = rs;
        }
    }
}

// dx = rstd * (g - mean_i(g) - xhat * mean_i(g * xhat)),  g = dy * gamma,  xhat = (x - mean) * rstd;
// one warp per row
template <class T>
__global__ void ln_backward_data_kernel(const T* x, const T* dy, const T* gamma, const T* mean, const T* rstd, T* dx,
                                        std::int64_t R, std::int64_t D) {
    const int lane = static_cast<int>(threadIdx.x % 32);
    const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
    for (std::int64_t r = static_cast<std::int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; r < R; r += warps) {
        const T* xr = x + r * D;
        const T* gr = dy + r * D;
        const T mu = mean[r], rs = rstd[r];
        T sg = 0, sgx = 0;
        for (std::int64_t i = lane; i < D; i += 32) {
            const T g = gamma ? gr[i] * gamma[i] : gr[i];
            sg += g;
            sgx += g * ((xr[i] - mu) * rs);
        }
        const T mg = warp_sum(sg) / static_cast<T>(D), mgx = warp_sum(sgx) / static_cast<T>(D);
        T* o = dx + r * D;
        for (std::int64_t i = lane; i < D; i += 32) {
            const T g = gamma ? gr[i] * gamma[i] : gr[i];
            o[i] = rs * (g - mg - ((xr[i] - mu) * rs) * mgx);
        }
    }
}

// Stage 1 of dgamma = sum_r dy * xhat, dbeta = sum_r dy: block (kLnColTile, kLnColLanes) at
// (column tile blockIdx.x, row chunk blockIdx.y) writes the chunk's sums of its columns into
// pg / pb (chunks, D), in double; within the block the lanes' sums are added in lane order.
template <class T>
__global__ void ln_param_partials_kernel(const T* x, const T* dy, const T* mean, const T* rstd, std::int64_t R,
                                         std::int64_t D, std::int64_t rows_per_chunk, double* pg, double* pb) {
    __shared__ double sg[kLnColLanes][kLnColTile + 1], sb[kLnColLanes][kLnColTile + 1];
    const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * kLnColTile + threadIdx.x;
    const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.y) * rows_per_chunk;
    const std::int64_t r1 = r0 + rows_per_chunk < R ? r0 + rows_per_chunk : R;
    double g = 0.0, b = 0.0;
    if (c < D)
        for (std::int64_t r = r0 + threadIdx.y; r < r1; r += kLnColLanes) {
            const double d = static_cast<double>(dy[r * D + c]);
            g += d * ((static_cast<double>(x[r * D + c]) - static_cast<double>(mean[r])) * static_cast<double>(rstd[r]));
            b += d;
        }
    sg[threadIdx.y][threadIdx.x] = g;
    sb[threadIdx.y][threadIdx.x] = b;
    __syncthreads();
    if (threadIdx.y == 0 && c < D) {
        for (int l = 1; l < kLnColLanes; ++l) {
            g += sg[l][threadIdx.x];
            b += sb[l][threadIdx.x];
        }
        pg[static_cast<std::int64_t>(blockIdx.y) * D + c] = g;
        pb[static_cast<std::int64_t>(blockIdx.y) * D + c] = b;
    }
}

// Stage 2: dgamma[c] = sum over chunks of pg[chunk, c] in chunk order (likewise dbeta); either may be null
template <class T>
__global__ void ln_param_totals_kernel(const double* pg, const double* pb, std::int64_t chunks, std::int64_t D,
                                       T* dgamma, T* dbeta) {
    MEDIMG_GRID_STRIDE(c, D) {
        double g = 0.0, b = 0.0;
        for (std::int64_t k = 0; k < chunks; ++k) {
            g += pg[k * D + c];
            b += pb[k * D + c];
        }
        if (dgamma) dgamma[c] = static_cast<T>(g);
        if (dbeta) dbeta[c] = static_cast<T>(b);
    }
}
}  // namespace

/// Blocks of kLnWarps rows each for a row kernel over R rows (at most kMaxBlocks; the kernels loop).
inline unsigned ln_row_blocks(std::int64_t R) { return blocks_for(R, kLnWarps); }

}  // namespace medimg::cuda::detail

namespace medimg::ops {

template <>
struct LayerNormImpl<Cuda> {
    // x: (..., D), gamma, beta: (D)? -> y: like x, mean, rstd: (R)
    template <class T>
    static void forward(const Tensor<T, Cuda>& x, const Tensor<T, Cuda>& gamma, const Tensor<T, Cuda>& beta, double eps,
                        Tensor<T, Cuda>& y, Tensor<T, Cuda>& mean, Tensor<T, Cuda>& rstd) {
        namespace cd = cuda::detail;
        const std::int64_t D = x.size(-1), R = x.numel() / D;
        if (R == 0) return;
        cd::ln_forward_kernel<T><<<cd::ln_row_blocks(R), cd::kLnWarps * 32, 0, cuda::stream()>>>(
            x.data(), gamma.defined() ? gamma.data() : nullptr, beta.defined() ? beta.data() : nullptr, static_cast<T>(eps),
            y.data(), mean.data(), rstd.data(), R, D);
        MEDIMG_CUDA_CHECK(cudaGetLastError());
    }

    // x, dy: (..., D), gamma: (D)?, mean, rstd: (R) -> dx: like x, dgamma, dbeta: (D); each may be undefined
    template <class T>
    static void backward(const Tensor<T, Cuda>& x, const Tensor<T, Cuda>& dy, const Tensor<T, Cuda>& gamma,
                         const Tensor<T, Cuda>& mean, const Tensor<T, Cuda>& rstd, Tensor<T, Cuda>& dx,
                         Tensor<T, Cuda>& dgamma, Tensor<T, Cuda>& dbeta) {
        namespace cd = cuda::detail;
        const std::int64_t D = x.size(-1), R = x.numel() / D;
        if (R == 0) {  // empty sums
            if (dgamma.defined()) dgamma.zero_();
            if (dbeta.defined()) dbeta.zero_();
            return;
        }
        if (dx.defined()) {
            cd::ln_backward_data_kernel<T><<<cd::ln_row_blocks(R), cd::kLnWarps * 32, 0, cuda::stream()>>>(
                x.data(), dy.data(), gamma.defined() ? gamma.data() : nullptr, mean.data(), rstd.data(), dx.data(), R, D);
            MEDIMG_CUDA_CHECK(cudaGetLastError());
        }
        if (!dgamma.defined() && !dbeta.defined()) return;
        // The chunking depends on R only, so the sums are the same bits on every GPU and run.
        const std::int64_t rows_per_chunk = std::max<std::int64_t>(32, (R + cd::kLnMaxChunks - 1) / cd::kLnMaxChunks);
        const std::int64_t chunks = (R + rows_per_chunk - 1) / rows_per_chunk;  // <= kLnMaxChunks
        const std::int64_t tiles = (D + cd::kLnColTile - 1) / cd::kLnColTile;
        MEDIMG_CHECK(tiles <= 0x7fffffff, ShapeError, "layer_norm_backward: ", D, " columns exceed one launch");
        cuda::DeviceBuffer partials(static_cast<std::size_t>(2 * chunks * D) * sizeof(double));  // (2, chunks, D)
        double* pg = partials.as<double>();
        double* pb = pg + chunks * D;
        const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(chunks));
        cd::ln_param_partials_kernel<T><<<grid, dim3(cd::kLnColTile, cd::kLnColLanes), 0, cuda::stream()>>>(
            x.data(), dy.data(), mean.data(), rstd.data(), R, D, rows_per_chunk, pg, pb);
        MEDIMG_CUDA_CHECK(cudaGetLastError());
        cd::ln_param_totals_kernel<T><<<cd::blocks_for(D), cd::kThreads, 0, cuda::stream()>>>(
            pg, pb, chunks, D, dgamma.defined() ? dgamma.data() : nullptr, dbeta.defined() ? dbeta.data() : nullptr);
        MEDIMG_CUDA_CHECK(cudaGetLastError());
    }
};

}  // namespace medimg::ops
