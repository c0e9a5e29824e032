// SPDX-License-Identifier: MIT
// cuda/linear.cuh: LinearImpl<Cuda>, the GPU twin of cpu/linear.hpp: three cuBLAS GEMMs
// (cublasSgemm / cublasDgemm; https://docs.nvidia.com/cuda/cublas/#cublas-t-gemm) plus two small
// bias kernels. cuBLAS is column-major; a row-major (r, c) matrix is the column-major (c, r) matrix,
// its transpose, so every product is computed transposed ("the transpose trick"):
//   y (N, out)  = x w^T    <=>  y^T  (out, N) = op_T(w as (in, out)) * x^T (in, N)
//   dx (N, in)  = dy w     <=>  dx^T (in, N)  = w^T (in, out) * dy^T (out, N)
//   dw (out, in) = dy^T x  <=>  dw^T (in, out) = x^T (in, N) * op_T(dy^T as (out, N))
// TF32 tensor-core math only with cuda::settings().allow_tf32. Bias sums run in double.
// Mixed precision (settings().precision = bf16 | fp16, float tensors): A and B are cast into half
// blocks (cuda/precision.cuh) and multiplied by cublasGemmEx on tensor cores with float32
// accumulation and a float32 C (Atype = Btype = CUDA_R_16BF / CUDA_R_16F, Ctype = CUDA_R_32F,
// CUBLAS_COMPUTE_32F: https://docs.nvidia.com/cuda/cublas/#cublasgemmex).
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
template <class T>
__global__ void column_sum_kernel(const T* dy, std::int64_t N, std::int64_t out, T* db) {
    MEDIMG_GRID_STRIDE(o, out) {
        double s = 0.0;
        for (std::int64_t n = 0; n < N; ++n) s += static_cast<double>(dy[n * out + o]);
        db[o] = static_cast<T>(s);
    }
}
}  // namespace

inline int blas_int(const char* fn, std::int64_t v) {
    MEDIMG_CHECK(v >= 0 && v <= INT_MAX, ShapeError, fn, ": dimension ", v, " does not fit cuBLAS's int");
    return static_cast<int>(v);
}

/// Column-major C (m, n) = op(A) (m, k) * op(B) (k, n) + beta * C on the stream.
template <class T>
void gemm(const char* fn, cublasOperation_t ta, cublasOperation_t tb, std::int64_t m, std::int64_t n, std::int64_t k,
          const T* a, std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc) {
    cublasHandle_t h = cublas_handle();
    MEDIMG_CUBLAS_CHECK(cublasSetMathMode(h, settings().allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    const T one = 1;
    const int mi = blas_int(fn, m), ni = blas_int(fn, n), ki = blas_int(fn, k);
    const int la = blas_int(fn, lda), lb = blas_int(fn, ldb), lc = blas_int(fn, ldc);
    if constexpr (std::is_same_v<T, float>) {
        const Precision pr = settings().precision;
        if (pr == Precision::fp32) {
            MEDIMG_CUBLAS_CHECK(cublasSgemm(h, ta, tb, mi, ni, ki, &one, a, la, b, lb, &beta, c, lc));
        } else {  // half copies of the stored columns of A and B; C stays float
            const DeviceBuffer ha = to_half(a, lda * (ta == CUBLAS_OP_N ? k : m), pr);
            const DeviceBuffer hb = to_half(b, ldb * (tb == CUBLAS_OP_N ? n : k), pr);
            MEDIMG_CUBLAS_CHECK(cublasGemmEx(h, ta, tb, mi, ni, ki, &one, ha.get(), blas_half_type(pr), la, hb.get(),
                                             blas_half_type(pr), lb, &beta, c, CUDA_R_32F, lc, CUBLAS_COMPUTE_32F,
                                             CUBLAS_GEMM_DEFAULT));
        }
    } else
        MEDIMG_CUBLAS_CHECK(cublasDgemm(h, ta, tb, mi, ni, ki, &one, a, la, b, lb, &beta, c, lc));
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
        cd::gemm<T>("linear_forward", CUBLAS_OP_T, CUBLAS_OP_N, out, N, in, w.data(), in, x.data(), in, b.defined() ? T(1) : T(0),
                    y.data(), out);
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
        cuda::detail::gemm<T>("linear_backward_data", CUBLAS_OP_N, CUBLAS_OP_N, in, N, out, w.data(), in, dy.data(), out, T(0),
                              dx.data(), in);
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
                cd::gemm<T>("linear_backward_weight", CUBLAS_OP_N, CUBLAS_OP_T, in, out, N, x.data(), in, dy.data(), out, T(0),
                            dw.data(), in);
        }
        if (db.defined() && out > 0) {
            cd::column_sum_kernel<T><<<cd::blocks_for(out), cd::kThreads, 0, cuda::stream()>>>(dy.data(), N, out, db.data());
            MEDIMG_CUDA_CHECK(cudaGetLastError());
        }
    }
};

}  // namespace medimg::ops
