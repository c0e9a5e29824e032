// SPDX-License-Identifier: MIT
// cuda/tokens.cuh: TokensImpl<Cuda>, the GPU twin of cpu/tokens.hpp (formulas in ops/tokens.hpp;
// timm's VisionTransformer._pos_embed, torchvision's VisionTransformer).
//   forward:  y[n, p + i, c] = patches[n, c, i] + pos[p + i, c] is a batched transpose of each
//             (D, S) patch map, through 32 x 33 shared-memory tiles so reads and writes both
//             coalesce; the class-token row y[n, 0] = cls + pos[0] is a grid-stride loop.
//   backward: dpatches is the reverse transpose of dy's patch rows; dcls = sum_n dy[n, 0] and
//             dpos = sum_n dy[n] are one thread per output element adding n = 0, 1, ... in
//             double (deterministic: the same bits every run).
//   take / take_backward: grid-stride copies of one token (dx is written whole, 0 off the token).
// Deliberately not here: half storage (float32 only, as the front door says).
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/tokens.cuh: include only from a TU compiled by nvcc"
#endif

#include <algorithm>
#include <cstdint>

#include "medimg/cuda/check.hpp"
#include "medimg/cuda/context.hpp"
#include "medimg/cuda/kernels/common.cuh"
#include "medimg/cuda/memory.cuh"
#include "medimg/ops/tokens.hpp"

namespace medimg::cuda::detail {

inline constexpr int kTokTile = 32;  // tile edge of the transpose
inline constexpr int kTokRows = 8;   // threads per tile column (each handles kTokTile / kTokRows rows)

namespace {
// For n < N: out[n, c, r] = in[n, r, c] (+ add[c, r] when add is set), in[n] (R, C) row-major
// starting at in + n * in_stride, out[n] (C, R) at out + n * out_stride; block (kTokTile, kTokRows)
// per kTokTile x kTokTile tile (blockIdx.x over C, blockIdx.y over R), blockIdx.z over n.
template <class T>
__global__ void tokens_transpose_kernel(const T* in, std::int64_t in_stride, T* out, std::int64_t out_stride, const T* add,
                                        std::int64_t N, std::int64_t R, std::int64_t C) {
    __shared__ T tile[kTokTile][kTokTile + 1];
    const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.y) * kTokTile, c0 = static_cast<std::int64_t>(blockIdx.x) * kTokTile;
    for (std::int64_t n = blockIdx.z; n < N; n += gridDim.z) {
        const T* src = in + n * in_stride;
        T* dst = out + n * out_stride;
        for (int i = threadIdx.y; i < kTokTile; i += kTokRows) {
            const std::int64_t r = r0 + i, c = c0 + threadIdx.x;
            if (r < R && c < C) tile[i][threadIdx.x] = src[r * C + c];
        }
        __syncthreads();
        for (int i = threadIdx.y; i < kTokTile; i += kTokRows) {
            const std::int64_t c = c0 + i, r = r0 + threadIdx.x;
            if (r < R && c < C) {
                T v = tile[threadIdx.x][i];
                if (add) v += add[c * R + r];
                dst[c * R + r] = v;
            }
        }
        __syncthreads();  // the tile is refilled for the next n
    }
}

// y[n, 0, c] = cls[c] (+ pos[c]) for y (N, T, D)
template <class T>
__global__ void tokens_cls_kernel(const T* cls, const T* pos, T* y, std::int64_t T_, std::int64_t D, std::int64_t total) {
    MEDIMG_GRID_STRIDE(i, total) {
        const std::int64_t n = i / D, c = i % D;
        T v = cls[c];
        if (pos) v += pos[c];
        y[n * T_ * D + c] = v;
    }
}

// out[i] = sum over n < N of x[n * stride + i], i < count, added in double in order of n
template <class T>
__global__ void tokens_batch_sum_kernel(const T* x, std::int64_t N, std::int64_t stride, std::int64_t count, T* out) {
    MEDIMG_GRID_STRIDE(i, count) {
        double s = 0.0;
        for (std::int64_t n = 0; n < N; ++n) s += static_cast<double>(x[n * stride + i]);
        out[i] = static_cast<T>(s);
    }
}

// y[n, c] = x[n, index, c] for x (N, T, D)
template <class T>
__global__ void tokens_take_kernel(const T* x, std::int64_t index, T* y, std::int64_t T_, std::int64_t D, std::int64_t total) {
    MEDIMG_GRID_STRIDE(i, total) {
        const std::int64_t n = i / D, c = i % D;
        y[i] = x[(n * T_ + index) * D + c];
    }
}

// dx[n, t, c] = t == index ? dy[n, c] : 0 for dx (N, T, D)
template <class T>
__global__ void tokens_take_backward_kernel(const T* dy, std::int64_t index, T* dx, std::int64_t T_, std::int64_t D,
                                            std::int64_t total) {
    MEDIMG_GRID_STRIDE(i, total) {
        const std::int64_t c = i % D, t = (i / D) % T_, n = i / (T_ * D);
        dx[i] = t == index ? dy[n * D + c] : T(0);
    }
}
}  // namespace

/// The batched transpose of tokens_transpose_kernel: out[n] (C, R) = in[n] (R, C)^T (+ add (C, R)).
template <class T>
void tokens_transpose(const char* fn, const T* in, std::int64_t in_stride, T* out, std::int64_t out_stride, const T* add,
                      std::int64_t N, std::int64_t R, std::int64_t C) {
    if (N == 0 || R == 0 || C == 0) return;
    const std::int64_t gx = (C + kTokTile - 1) / kTokTile, gy = (R + kTokTile - 1) / kTokTile;
    MEDIMG_CHECK(gx <= 0x7fffffff && gy <= 65535, ShapeError, fn, ": a (", R, ", ", C, ") token map exceeds one launch");
    const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy), static_cast<unsigned>(std::min<std::int64_t>(N, 65535)));
    tokens_transpose_kernel<T><<<grid, dim3(kTokTile, kTokRows), 0, stream()>>>(in, in_stride, out, out_stride, add, N, R, C);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

/// out (count) = sum over n < N of x[n * stride + i].
template <class T>
void tokens_batch_sum(const T* x, std::int64_t N, std::int64_t stride, std::int64_t count, T* out) {
    if (count == 0) return;
    tokens_batch_sum_kernel<T><<<blocks_for(count), kThreads, 0, stream()>>>(x, N, stride, count, out);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

}  // namespace medimg::cuda::detail

namespace medimg::ops {

template <>
struct TokensImpl<Cuda> {
    // patches: (N, D, h, w), cls: (1, 1, D)?, pos: (1, T, D)? -> y: (N, T, D)
    template <class T>
    static void forward(const Tensor<T, Cuda>& patches, const Tensor<T, Cuda>& cls, const Tensor<T, Cuda>& pos,
                        Tensor<T, Cuda>& y, const TokensShape& s) {
        namespace cd = cuda::detail;
        if (s.N == 0) return;
        const T* pd = pos.defined() ? pos.data() : nullptr;
        if (s.p == 1) {
            cd::tokens_cls_kernel<T><<<cd::blocks_for(s.N * s.D), cd::kThreads, 0, cuda::stream()>>>(cls.data(), pd, y.data(),
                                                                                                   s.T, s.D, s.N * s.D);
            MEDIMG_CUDA_CHECK(cudaGetLastError());
        }
        // y[n, p:] (S, D) = patches[n] (D, S)^T + pos[p:]
        cd::tokens_transpose<T>("tokens_forward", patches.data(), s.D * s.S, y.data() + s.p * s.D, s.T * s.D,
                                pd ? pd + s.p * s.D : nullptr, s.N, s.D, s.S);
    }

    // dy: (N, T, D) -> dpatches: (N, D, h, w)?, dcls: (1, 1, D)?, dpos: (1, T, D)?
    template <class T>
    static void backward(const Tensor<T, Cuda>& dy, Tensor<T, Cuda>& dpatches, Tensor<T, Cuda>& dcls, Tensor<T, Cuda>& dpos,
                         const TokensShape& s) {
        namespace cd = cuda::detail;
        if (s.N == 0) {  // empty sums
            if (dcls.defined()) dcls.zero_();
            if (dpos.defined()) dpos.zero_();
            return;
        }
        // dpatches[n] (D, S) = dy[n, p:] (S, D)^T
        if (dpatches.defined())
            cd::tokens_transpose<T>("tokens_backward", dy.data() + s.p * s.D, s.T * s.D, dpatches.data(), s.D * s.S, nullptr,
                                    s.N, s.S, s.D);
        if (dcls.defined()) cd::tokens_batch_sum(dy.data(), s.N, s.T * s.D, s.D, dcls.data());        // sum_n dy[n, 0]
        if (dpos.defined()) cd::tokens_batch_sum(dy.data(), s.N, s.T * s.D, s.T * s.D, dpos.data());  // sum_n dy[n]
    }

    // x: (N, T, D) -> y: (N, D) = x[:, index]
    template <class T>
    static void take(const Tensor<T, Cuda>& x, std::int64_t index, Tensor<T, Cuda>& y) {
        namespace cd = cuda::detail;
        const std::int64_t N = x.size(0), T_ = x.size(1), D = x.size(2);
        if (N * D == 0) return;
        cd::tokens_take_kernel<T><<<cd::blocks_for(N * D), cd::kThreads, 0, cuda::stream()>>>(x.data(), index, y.data(), T_, D,
                                                                                            N * D);
        MEDIMG_CUDA_CHECK(cudaGetLastError());
    }

    // dy: (N, D) -> dx: (N, T, D), dy at token `index`, 0 elsewhere
    template <class T>
    static void take_backward(const Tensor<T, Cuda>& dy, std::int64_t index, Tensor<T, Cuda>& dx) {
        namespace cd = cuda::detail;
        const std::int64_t total = dx.numel(), T_ = dx.size(1), D = dx.size(2);
        if (total == 0) return;
        cd::tokens_take_backward_kernel<T><<<cd::blocks_for(total), cd::kThreads, 0, cuda::stream()>>>(dy.data(), index,
                                                                                                     dx.data(), T_, D, total);
        MEDIMG_CUDA_CHECK(cudaGetLastError());
    }
};

}  // namespace medimg::ops
