// SPDX-License-Identifier: MIT
// cuda/attention.cuh: AttentionImpl<Cuda>, the GPU twin of cpu/attention.hpp (formulas in
// ops/attention.hpp; Vaswani et al. 2017, torch.nn.functional.scaled_dot_product_attention).
// Every per-(b, h) product is one strided-batched cuBLAS GEMM over the B*H heads
// (cublasSgemmStridedBatched / cublasDgemmStridedBatched,
// https://docs.nvidia.com/cuda/cublas/#cublas-t-gemmstridedbatched), row-major through the
// transpose trick of cuda/linear.cuh: c (m, n) = op(a) op(b)  <=>  c^T (n, m) = op(b)^T op(a)^T.
//   forward:  split qkv (B, L, 3, H, d) into q, k, v (B*H, L, d); per chunk of heads
//             S = scale q k^T (L, L), a warp per row turns S into P = softmax(S) in place and
//             writes lse = max + log(sum exp(S - max)), o = P v (written over the chunk's q);
//             merge o (B, H, L, d) into out (B, L, H*d). With probs defined S lives in probs.
//   backward: split qkv and dO; per chunk S = scale q k^T, dP = dO v^T, a warp per row
//             P = exp(S - lse) and dS = P * (dP - rowsum(P * dP)) in place, then dv = P^T dO
//             (over v), dq = scale dS k (over dO), dk = scale dS^T q (over k: dq has read it);
//             scatter dq, dk, dv into dqkv. The stream orders every overwrite after the last read.
// Memory per call (T elements, caching allocator): forward 3 B H L d + c L^2 (none for the scores
// when probs is defined), backward 4 B H L d + 2 c L^2, where the chunk c <= B H heads keeps
// c L^2 within kAttnScoreBytes. TF32 GEMMs only with cuda::settings().allow_tf32 (float).
// Deliberately not here: half precision (float32 storage only, as the front door says), fused
// flash-attention tiling, masks, dropout.
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/attention.cuh: include only from a TU compiled by nvcc"
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include <cublas_v2.h>

#include "medimg/cuda/check.hpp"
#include "medimg/cuda/context.hpp"
#include "medimg/cuda/kernels/common.cuh"
#include "medimg/cuda/linear.cuh"
#include "medimg/cuda/memory.cuh"
#include "medimg/ops/attention.hpp"

namespace medimg::cuda::detail {

inline constexpr int kAttnWarps = 4;                                   // rows (one warp each) per block
inline constexpr std::size_t kAttnScoreBytes = std::size_t(256) << 20;  // score scratch per call, at most

namespace {
/// Up to three source groups of attn_merge_heads_kernel (q, k, v or their gradients).
template <class T>
struct AttnGroups {
    const T* p[3];
};

// src (B, L, G, H, d) -> dst (G, B, H, L, d); i runs over src, so reads are coalesced
template <class T>
__global__ void attn_split_heads_kernel(const T* src, T* dst, std::int64_t B, std::int64_t L, std::int64_t G,
                                        std::int64_t H, std::int64_t d, std::int64_t total) {
    MEDIMG_GRID_STRIDE(i, total) {
        std::int64_t t = i;
        const std::int64_t j = t % d;
        t /= d;
        const std::int64_t h = t % H;
        t /= H;
        const std::int64_t g = t % G;
        t /= G;
        const std::int64_t l = t % L, b = t / L;
        dst[(((g * B + b) * H + h) * L + l) * d + j] = src[i];
    }
}

// src.p[g] (B, H, L, d) for g < G -> dst (B, L, G, H, d); i runs over dst, so writes are coalesced
template <class T>
__global__ void attn_merge_heads_kernel(AttnGroups<T> src, T* dst, std::int64_t L, std::int64_t G, std::int64_t H,
                                        std::int64_t d, std::int64_t total) {
    MEDIMG_GRID_STRIDE(i, total) {
        std::int64_t t = i;
        const std::int64_t j = t % d;
        t /= d;
        const std::int64_t h = t % H;
        t /= H;
        const std::int64_t g = t % G;
        t /= G;
        const std::int64_t l = t % L, b = t / L;
        const T* from = g == 0 ? src.p[0] : (g == 1 ? src.p[1] : src.p[2]);  // no local copy of the array
        dst[i] = from[((b * H + h) * L + l) * d + j];
    }
}

// s (rows, L) scaled scores -> P = softmax of each row, in place; lse[r] = max + log(sum exp(s - max));
// one warp per row
template <class T>
__global__ void attn_softmax_rows_kernel(T* s, T* lse, std::int64_t rows, std::int64_t L) {
    const int lane = static_cast<int>(threadIdx.x % 32);
    const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
    for (std::int64_t r = static_cast<std::int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; r < rows;
         r += warps) {
        T* row = s + r * L;
        T m = -INFINITY;
        for (std::int64_t j = lane; j < L; j += 32) m = row[j] > m ? row[j] : m;
        m = warp_max(m);
        T sum = 0;
        for (std::int64_t j = lane; j < L; j += 32) sum += exp(row[j] - m);
        sum = warp_sum(sum);
        const T inv = T(1) / sum;
        for (std::int64_t j = lane; j < L; j += 32) row[j] = exp(row[j] - m) * inv;
        if (lane == 0) lse[r] = m + log(sum);
    }
}

// s (rows, L) scaled scores -> P = exp(s - lse) in place; dp (rows, L) -> dS = P * (dP - sum_j P dP)
// in place; one warp per row
template <class T>
__global__ void attn_softmax_backward_rows_kernel(T* s, T* dp, const T* lse, std::int64_t rows, std::int64_t L) {
    const int lane = static_cast<int>(threadIdx.x % 32);
    const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
    for (std::int64_t r = static_cast<std::int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; r < rows;
         r += warps) {
        T* prow = s + r * L;
        T* drow = dp + r * L;
        const T l = lse[r];
        T acc = 0;
        for (std::int64_t j = lane; j < L; j += 32) {
            const T p = exp(prow[j] - l);
            prow[j] = p;
            acc += p * drow[j];
        }
        acc = warp_sum(acc);
        for (std::int64_t j = lane; j < L; j += 32) drow[j] = prow[j] * (drow[j] - acc);
    }
}
}  // namespace

/// Row-major c[i] (m, n) = alpha op(a[i]) (m, k) op(b[i]) (k, n) + beta c[i] for i < batch, where
/// x[i] starts at x + i * stride_x (stride 0: one matrix shared by the batch); one cuBLAS call,
/// computed as c^T = op(b)^T op(a)^T in column-major. Requires m, n, k, batch >= 1.
template <class T>
void strided_bmm(const char* fn, bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a,
                 std::int64_t stride_a, const T* b, std::int64_t stride_b, T beta, T* c, std::int64_t stride_c,
                 std::int64_t batch) {
    cublasHandle_t h = cublas_handle();
    const cublasOperation_t ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N, oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    // b is stored row-major (k, n), or (n, k) when tb: column-major its transpose, with ld = its row length
    const int M = blas_int(fn, n), N = blas_int(fn, m), K = blas_int(fn, k), count = blas_int(fn, batch);
    const int ldb = blas_int(fn, tb ? k : n), lda = blas_int(fn, ta ? m : k), ldc = M;
    const auto sa = static_cast<long long>(stride_a), sb = static_cast<long long>(stride_b),
               sc = static_cast<long long>(stride_c);
    if constexpr (std::is_same_v<T, float>) {
        MEDIMG_CUBLAS_CHECK(cublasSetMathMode(h, settings().allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
        MEDIMG_CUBLAS_CHECK(
            cublasSgemmStridedBatched(h, ob, oa, M, N, K, &alpha, b, ldb, sb, a, lda, sa, &beta, c, ldc, sc, count));
    } else {
        MEDIMG_CUBLAS_CHECK(
            cublasDgemmStridedBatched(h, ob, oa, M, N, K, &alpha, b, ldb, sb, a, lda, sa, &beta, c, ldc, sc, count));
    }
}

/// Heads per chunk so that `buffers` score matrices (heads, L, L) of T stay within kAttnScoreBytes.
template <class T>
std::int64_t attn_chunk(std::int64_t heads, std::int64_t L, int buffers) {
    const auto per_head = static_cast<std::size_t>(L) * static_cast<std::size_t>(L) * sizeof(T) * static_cast<std::size_t>(buffers);
    const auto fit = static_cast<std::int64_t>(kAttnScoreBytes / per_head);
    return std::max<std::int64_t>(1, std::min(heads, fit));
}

/// Launches of the row kernels: blocks of kAttnWarps rows (at most kMaxBlocks; the kernels loop).
inline unsigned attn_row_blocks(std::int64_t rows) { return blocks_for(rows, kAttnWarps); }

/// dst (G, B, H, L, d) from src (B, L, G, H, d).
template <class T>
void attn_split_heads(const T* src, T* dst, std::int64_t B, std::int64_t L, std::int64_t G, std::int64_t H, std::int64_t d) {
    const std::int64_t total = B * L * G * H * d;
    attn_split_heads_kernel<T><<<blocks_for(total), kThreads, 0, stream()>>>(src, dst, B, L, G, H, d, total);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

/// dst (B, L, G, H, d) from the G groups src.p[g] (B, H, L, d).
template <class T>
void attn_merge_heads(const AttnGroups<T>& src, T* dst, std::int64_t B, std::int64_t L, std::int64_t G, std::int64_t H,
                      std::int64_t d) {
    const std::int64_t total = B * L * G * H * d;
    attn_merge_heads_kernel<T><<<blocks_for(total), kThreads, 0, stream()>>>(src, dst, L, G, H, d, total);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

}  // namespace medimg::cuda::detail

namespace medimg::ops {

template <>
struct AttentionImpl<Cuda> {
    // qkv: (B, L, 3 H d) -> out: (B, L, H d), lse: (B, H, L), probs: (B, H, L, L)?
    template <class T>
    static void forward(const Tensor<T, Cuda>& qkv, Tensor<T, Cuda>& out, Tensor<T, Cuda>& lse, Tensor<T, Cuda>& probs,
                        const AttentionShape& s) {
        namespace cd = cuda::detail;
        constexpr const char* fn = "attention_forward";
        if (s.B == 0 || s.L == 0) return;
        const std::int64_t BH = s.B * s.H, L = s.L, d = s.d, Ld = L * d, LL = L * L;
        auto heads = Tensor<T, Cuda>::empty(Shape{3, BH, L, d});  // q, k, v
        cd::attn_split_heads(qkv.data(), heads.data(), s.B, L, 3, s.H, d);
        T* q = heads.data();  // o is written over q, one chunk of heads at a time
        const T* k = q + BH * Ld;
        const T* v = k + BH * Ld;
        const bool keep = probs.defined();
        const std::int64_t chunk = keep ? BH : cd::attn_chunk<T>(BH, L, 1);
        auto scores = keep ? Tensor<T, Cuda>() : Tensor<T, Cuda>::empty(Shape{chunk, L, L});
        const T scale = static_cast<T>(s.scale);
        for (std::int64_t i0 = 0; i0 < BH; i0 += chunk) {
            const std::int64_t nb = std::min(chunk, BH - i0);
            T* S = keep ? probs.data() + i0 * LL : scores.data();                                      // (nb, L, L)
            cd::strided_bmm<T>(fn, false, true, L, L, d, scale, q + i0 * Ld, Ld, k + i0 * Ld, Ld, T(0), S, LL, nb);  // q k^T
            cd::attn_softmax_rows_kernel<T><<<cd::attn_row_blocks(nb * L), cd::kAttnWarps * 32, 0, cuda::stream()>>>(
                S, lse.data() + i0 * L, nb * L, L);
            MEDIMG_CUDA_CHECK(cudaGetLastError());
            cd::strided_bmm<T>(fn, false, false, L, d, L, T(1), S, LL, v + i0 * Ld, Ld, T(0), q + i0 * Ld, Ld, nb);  // P v
        }
        cd::attn_merge_heads(cd::AttnGroups<T>{{q, nullptr, nullptr}}, out.data(), s.B, L, 1, s.H, d);
    }

    // qkv: (B, L, 3 H d), lse: (B, H, L), dout: (B, L, H d) -> dqkv: (B, L, 3 H d)
    template <class T>
    static void backward(const Tensor<T, Cuda>& qkv, const Tensor<T, Cuda>& lse, const Tensor<T, Cuda>& dout,
                         Tensor<T, Cuda>& dqkv, const AttentionShape& s) {
        namespace cd = cuda::detail;
        constexpr const char* fn = "attention_backward";
        if (s.B == 0 || s.L == 0) return;
        const std::int64_t BH = s.B * s.H, L = s.L, d = s.d, Ld = L * d, LL = L * L;
        auto heads = Tensor<T, Cuda>::empty(Shape{4, BH, L, d});  // q, k, v, dO
        T* q = heads.data();
        T* k = q + BH * Ld;   // dk is written over k
        T* v = k + BH * Ld;   // dv over v
        T* dO = v + BH * Ld;  // dq over dO
        cd::attn_split_heads(qkv.data(), q, s.B, L, 3, s.H, d);
        cd::attn_split_heads(dout.data(), dO, s.B, L, 1, s.H, d);
        const std::int64_t chunk = cd::attn_chunk<T>(BH, L, 2);
        auto scores = Tensor<T, Cuda>::empty(Shape{2, chunk, L, L});  // S -> P, dP -> dS
        T* P = scores.data();
        T* dS = P + chunk * LL;
        const T scale = static_cast<T>(s.scale);
        for (std::int64_t i0 = 0; i0 < BH; i0 += chunk) {
            const std::int64_t nb = std::min(chunk, BH - i0), o = i0 * Ld;
            cd::strided_bmm<T>(fn, false, true, L, L, d, scale, q + o, Ld, k + o, Ld, T(0), P, LL, nb);   // S = scale q k^T
            cd::strided_bmm<T>(fn, false, true, L, L, d, T(1), dO + o, Ld, v + o, Ld, T(0), dS, LL, nb);  // dP = dO v^T
            cd::attn_softmax_backward_rows_kernel<T><<<cd::attn_row_blocks(nb * L), cd::kAttnWarps * 32, 0, cuda::stream()>>>(
                P, dS, lse.data() + i0 * L, nb * L, L);
            MEDIMG_CUDA_CHECK(cudaGetLastError());
            cd::strided_bmm<T>(fn, true, false, L, d, L, T(1), P, LL, dO + o, Ld, T(0), v + o, Ld, nb);    // dv = P^T dO
            cd::strided_bmm<T>(fn, false, false, L, d, L, scale, dS, LL, k + o, Ld, T(0), dO + o, Ld, nb); // dq = scale dS k
            cd::strided_bmm<T>(fn, true, false, L, d, L, scale, dS, LL, q + o, Ld, T(0), k + o, Ld, nb);   // dk = scale dS^T q
        }
        cd::attn_merge_heads(cd::AttnGroups<T>{{dO, k, v}}, dqkv.data(), s.B, L, 3, s.H, d);
    }

    // a: (batch | 1, m, k) or its transpose, b: (batch | 1, k, n) or its transpose -> c: (batch, m, n)
    template <class T>
    static void bmm(const Tensor<T, Cuda>& a, const Tensor<T, Cuda>& b, Tensor<T, Cuda>& c, const BmmShape& s,
                    bool accumulate) {
        if (s.batch == 0 || s.m == 0 || s.n == 0) return;
        if (s.k == 0) {  // an empty sum
            if (!accumulate) c.zero_();
            return;
        }
        cuda::detail::strided_bmm<T>("bmm", s.ta, s.tb, s.m, s.n, s.k, T(1), a.data(), s.a_shared ? 0 : s.m * s.k, b.data(),
                                     s.b_shared ? 0 : s.k * s.n, accumulate ? T(1) : T(0), c.data(), s.m * s.n, s.batch);
    }
};

}  // namespace medimg::ops
