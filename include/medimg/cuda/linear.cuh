// SPDX-License-Identifier: MIT
// cuda/linear.cuh: LinearImpl<Cuda>, the GPU twin of cpu/linear.hpp: three cuBLAS GEMMs
// (cublasSgemm / cublasDgemm; https://docs.nvidia.com/cuda/cublas/#cublas-t-gemm) plus two small
// bias kernels. cuBLAS is column-major; a row-major (r, c) matrix is the column-major (c, r) matrix,
// its transpose, so every product is computed transposed ("the transpose trick"):
//   y (N, out)  = x w^T    <=>  y^T  (out, N) = op_T(w as (in, out)) * x^T (in, N)
//   dx (N, in)  = dy w     <=>  dx^T (in, N)  = w^T (in, out) * dy^T (out, N)
//   dw (out, in) = dy^T x  <=>  dw^T (in, out) = x^T (in, N) * op_T(dy^T as (out, N))
// TF32 tensor-core math only with cuda::settings().allow_tf32. Bias sums run in double.
// Mixed precision (settings().precision = bf16 | fp16, or an operand holding half storage; float
// tensors): cublasGemmEx on tensor cores with float32 accumulation (Atype = Btype = CUDA_R_16BF /
// CUDA_R_16F, CUBLAS_COMPUTE_32F: https://docs.nvidia.com/cuda/cublas/#cublasgemmex); float32
// operands go through half copies (cuda/precision.cuh), half-storage ones (activations) are read
// as they are, and C is CUDA_R_32F or, for a half-storage output (dx of a half activation), the half type.
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/linear.cuh: include only from a TU compiled by nvcc"
#endif

#include <climits>
#include <cstdint>
#include <type_traits>

#include <cublas_v2.h>

#include "medimg/cuda/check.hpp"
#include "medimg/cuda/context.hpp"
#include "medimg/cuda/kernels/common.cuh"
#include "medimg/cuda/kernels/storage.cuh"
#include "medimg/cuda/memory.cuh"
#include "medimg/cuda/precision.cuh"
#include "medimg/ops/linear.hpp"

namespace medimg::cuda::detail {

namespace {
// y[n, o] = b[o]   (the GEMM then adds x w^T with beta = 1)
template <class T>
__global__ void broadcast_rows_kernel(const T* b, T* y, std::int64_t out, std::int64_t total) {
    MEDIMG_GRID_STRIDE(i, total) y[i] = b[i % out];
}
// db[o] = sum over n of dy[n, o], in double, one thread per column
template <class S, class T>
__global__ void column_sum_kernel(const S* dy, std::int64_t N, std::int64_t out, T* db) {
    MEDIMG_GRID_STRIDE(o, out) {
        double s = 0.0;
        for (std::int64_t n = 0; n < N; ++n) s += static_cast<double>(ld(dy[n * out + o]));
        db[o] = static_cast<T>(s);
    }
}
}  // namespace

inline int blas_int(const char* fn, std::int64_t v) {
    MEDIMG_CHECK(v >= 0 && v <= INT_MAX, ShapeError, fn, ": dimension ", v, " does not fit cuBLAS's int");
    return static_cast<int>(v);
}

/// Column-major C (m, n) = op(A) (m, k) * op(B) (k, n) + beta * C on the stream, over the
/// tensors' storage. Float tensors multiply in half precision when one of them holds half storage
/// (its format) or settings().precision asks for it: an operand already in that format is used as
/// it is, a float32 one through a half copy of its stored columns; C is written in its own storage.
template <class T>
void gemm(const char* fn, cublasOperation_t ta, cublasOperation_t tb, std::int64_t m, std::int64_t n, std::int64_t k,
          const Tensor<T, Cuda>& a, std::int64_t lda, const Tensor<T, Cuda>& b, std::int64_t ldb, T beta, Tensor<T, Cuda>& c,
          std::int64_t ldc) {
    cublasHandle_t h = cublas_handle();
    MEDIMG_CUBLAS_CHECK(cublasSetMathMode(h, settings().allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    const T one = 1;
    const int mi = blas_int(fn, m), ni = blas_int(fn, n), ki = blas_int(fn, k);
    const int la = blas_int(fn, lda), lb = blas_int(fn, ldb), lc = blas_int(fn, ldc);
    if constexpr (std::is_same_v<T, float>) {
        Precision pr = settings().precision;
        for (const auto* t : {&a, &b, static_cast<const Tensor<T, Cuda>*>(&c)})
            if (t->half_storage()) pr = t->storage();
        if (pr == Precision::fp32) {
            MEDIMG_CUBLAS_CHECK(cublasSgemm(h, ta, tb, mi, ni, ki, &one, a.data(), la, b.data(), lb, &beta, c.data(), lc));
        } else {
            DeviceBuffer ha, hb;
            const void* pa = a.storage() == pr ? a.raw() : (ha = to_half(a.data(), lda * (ta == CUBLAS_OP_N ? k : m), pr)).get();
            const void* pb = b.storage() == pr ? b.raw() : (hb = to_half(b.data(), ldb * (tb == CUBLAS_OP_N ? n : k), pr)).get();
            const cudaDataType_t ct = c.half_storage() ? blas_half_type(pr) : CUDA_R_32F;
            MEDIMG_CUBLAS_CHECK(cublasGemmEx(h, ta, tb, mi, ni, ki, &one, pa, blas_half_type(pr), la, pb, blas_half_type(pr), lb,
                                             &beta, c.raw(), ct, lc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        }
    } else
        MEDIMG_CUBLAS_CHECK(cublasDgemm(h, ta, tb, mi, ni, ki, &one, a.data(), la, b.data(), lb, &beta, c.data(), lc));
}

}  // namespace medimg::cuda::detail

namespace medimg::ops {

template <>
struct LinearImpl<Cuda> {
    // x: (N, in), w: (out, in), b: (out)? -> y: (N, out)
    template <class T>
    static void forward(const Tensor<T, Cuda>& x, const Tensor<T, Cuda>& w, const Tensor<T, Cuda>& b, Tensor<T, Cuda>& y) {
        namespace cd = cuda::detail;
        const std::int64_t N = x.size(0), in = x.size(1), out = w.size(0);
        if (N == 0 || out == 0) return;
        if (in == 0) {  // an empty sum: y = b or 0
            if (b.defined()) {
                cd::broadcast_rows_kernel<T><<<cd::blocks_for(N * out), cd::kThreads, 0, cuda::stream()>>>(b.data(), y.data(), out, N * out);
                MEDIMG_CUDA_CHECK(cudaGetLastError());
            } else {
                y.zero_();
            }
            return;
        }
        if (b.defined()) {
            cd::broadcast_rows_kernel<T><<<cd::blocks_for(N * out), cd::kThreads, 0, cuda::stream()>>>(b.data(), y.data(), out, N * out);
            MEDIMG_CUDA_CHECK(cudaGetLastError());
        }
        cd::gemm<T>("linear_forward", CUBLAS_OP_T, CUBLAS_OP_N, out, N, in, w, in, x, in, b.defined() ? T(1) : T(0), y, out);
    }
    // dy: (N, out), w: (out, in) -> dx: (N, in)
    template <class T>
    static void backward_data(const Tensor<T, Cuda>& dy, const Tensor<T, Cuda>& w, Tensor<T, Cuda>& dx) {
        const std::int64_t N = dy.size(0), out = w.size(0), in = w.size(1);
        if (N == 0 || in == 0) return;
        if (out == 0) {
            dx.zero_();
            return;
        }
        cuda::detail::gemm<T>("linear_backward_data", CUBLAS_OP_N, CUBLAS_OP_N, in, N, out, w, in, dy, out, T(0), dx, in);
    }
    // x: (N, in), dy: (N, out) -> dw: (out, in), db: (out)
    template <class T>
    static void backward_weight(const Tensor<T, Cuda>& x, const Tensor<T, Cuda>& dy, Tensor<T, Cuda>& dw,
                                Tensor<T, Cuda>& db) {
        namespace cd = cuda::detail;
        const std::int64_t N = x.size(0), in = x.size(1), out = dw.size(0);
        if (out > 0 && in > 0) {
            if (N == 0)
                dw.zero_();
            else
                cd::gemm<T>("linear_backward_weight", CUBLAS_OP_N, CUBLAS_OP_T, in, out, N, x, in, dy, out, T(0), dw, in);
        }
        if (db.defined() && out > 0) {
            cd::with_storage<T>(dy.storage(), [&](auto* tag) {
                using S = std::remove_pointer_t<decltype(tag)>;
                cd::column_sum_kernel<S, T><<<cd::blocks_for(out), cd::kThreads, 0, cuda::stream()>>>(cd::stored<S>(dy), N, out,
                                                                                                    db.data());
            });
            MEDIMG_CUDA_CHECK(cudaGetLastError());
        }
    }
};

}  // namespace medimg::ops
