// SPDX-License-Identifier: MIT
// cuda/softmax.cuh: SoftmaxImpl<Cuda>, the GPU twin of cpu/softmax.hpp, as own kernels that follow
// the CPU's double-precision arithmetic (formulas in ops/softmax.hpp):
//   log_softmax: one block per row; max, then sum of exp(x - max) in double, then x - lse.
//   cross_entropy_forward: log_softmax, then ONE block sums every row's weighted term and weight
//     over a fixed thread split (deterministic) and writes the mean into `loss` - which stays on
//     the device; nothing is copied to the host. A class index outside [0, C) is reported through
//     the error slot (context.hpp): the host throws ValueError naming the first bad sample at the
//     next synchronisation (e.g. loss.item()), and the loss is NaN.
//   cross_entropy_backward: one block sums the target weights, then one block per row forms
//     dlogits = dloss / sum_w * (g - softmax * sum_c g), reading dloss on the device.
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/softmax.cuh: include only from a TU compiled by nvcc"
#endif

#include <cstdint>

#include "medimg/cuda/allocator.hpp"
#include "medimg/cuda/check.hpp"
#include "medimg/cuda/context.hpp"
#include "medimg/cuda/kernels/common.cuh"
#include "medimg/cuda/memory.cuh"
#include "medimg/ops/softmax.hpp"

namespace medimg::cuda::detail {

inline constexpr int kRowThreads = 128;   // threads per row (classes are few; rows are many)
inline constexpr int kLossThreads = 256;  // the single block that sums the loss

__device__ __forceinline__ double block_max(double v, double* shared) {
    const unsigned t = threadIdx.x;
    shared[t] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) shared[t] = fmax(shared[t], shared[t + s]);
        __syncthreads();
    }
    const double r = shared[0];
    __syncthreads();
    return r;
}

namespace {
// y[i, :] = x[i, :] - logsumexp(x[i, :]); one block per row i
template <class T>
__global__ void log_softmax_forward_kernel(const T* x, T* y, std::int64_t C) {
    __shared__ double shared[kRowThreads];
    const T* r = x + static_cast<std::int64_t>(blockIdx.x) * C;
    T* o = y + static_cast<std::int64_t>(blockIdx.x) * C;
    double m = -INFINITY;
    for (std::int64_t c = threadIdx.x; c < C; c += blockDim.x) m = fmax(m, static_cast<double>(r[c]));
    m = block_max(m, shared);
    double s = 0.0;
    for (std::int64_t c = threadIdx.x; c < C; c += blockDim.x) s += exp(static_cast<double>(r[c]) - m);
    const double lse = m + log(block_sum(s, shared));
    for (std::int64_t c = threadIdx.x; c < C; c += blockDim.x) o[c] = static_cast<T>(static_cast<double>(r[c]) - lse);
}

// dx = dy - exp(y) * sum_c dy; one block per row
template <class T>
__global__ void log_softmax_backward_kernel(const T* y, const T* dy, T* dx, std::int64_t C) {
    __shared__ double shared[kRowThreads];
    const std::int64_t off = static_cast<std::int64_t>(blockIdx.x) * C;
    double s = 0.0;
    for (std::int64_t c = threadIdx.x; c < C; c += blockDim.x) s += static_cast<double>(dy[off + c]);
    s = block_sum(s, shared);
    for (std::int64_t c = threadIdx.x; c < C; c += blockDim.x)
        dx[off + c] = static_cast<T>(static_cast<double>(dy[off + c]) - exp(static_cast<double>(y[off + c])) * s);
}

template <class T>
__device__ __forceinline__ double class_weight(const T* w, std::int64_t c) {
    return w ? static_cast<double>(w[c]) : 1.0;
}

// One block: loss[0] = sum_i [(1-e) w[y_i] (-logp[i,y_i]) + (e/C) sum_c w[c] (-logp[i,c])] / sum_i w[y_i]
template <class T>
__global__ void cross_entropy_loss_kernel(const T* logp, const std::int64_t* target, const T* w, std::int64_t N,
                                          std::int64_t C, double e, T* loss, DeviceErrorRecord* errors) {
    __shared__ double shared[kLossThreads];
    __shared__ unsigned long long first_bad;
    if (threadIdx.x == 0) first_bad = ~0ull;
    __syncthreads();
    double num = 0.0, den = 0.0;
    for (std::int64_t i = threadIdx.x; i < N; i += blockDim.x) {
        const std::int64_t y = target[i];
        if (y < 0 || y >= C) {
            atomicMin(&first_bad, static_cast<unsigned long long>(i));
            continue;
        }
        const T* r = logp + i * C;
        double smooth = 0.0;
        if (e > 0.0)
            for (std::int64_t c = 0; c < C; ++c) smooth += class_weight(w, c) * -static_cast<double>(r[c]);
        num += (1.0 - e) * class_weight(w, y) * -static_cast<double>(r[y]) + e / static_cast<double>(C) * smooth;
        den += class_weight(w, y);
    }
    num = block_sum(num, shared);
    den = block_sum(den, shared);
    if (threadIdx.x == 0) {
        if (first_bad != ~0ull) {
            const auto i = static_cast<std::int64_t>(first_bad);
            report_device_error(errors, kCrossEntropyTarget, i, target[i], C);
            loss[0] = static_cast<T>(NAN);
        } else {
            loss[0] = static_cast<T>(den != 0.0 ? num / den : NAN);  // as PyTorch
        }
    }
}

// One block: out[0] = sum_i w[y_i] over valid targets
template <class T>
__global__ void target_weight_sum_kernel(const std::int64_t* target, const T* w, std::int64_t N, std::int64_t C, double* out) {
    __shared__ double shared[kLossThreads];
    double s = 0.0;
    for (std::int64_t i = threadIdx.x; i < N; i += blockDim.x) {
        const std::int64_t y = target[i];
        if (y >= 0 && y < C) s += class_weight(w, y);
    }
    s = block_sum(s, shared);
    if (threadIdx.x == 0) out[0] = s;
}

// One block per row i:
//   g[c] = -((c == y ? (1-e) w[y] : 0) + (e/C) w[c]);  dlogits[i,c] = dloss/den * (g[c] - exp(logp[i,c]) * sum_c g)
template <class T>
__global__ void cross_entropy_backward_kernel(const T* logp, const std::int64_t* target, const T* w, std::int64_t C, double e,
                                              const T* dloss, const double* den, T* dlogits) {
    __shared__ double shared[kRowThreads];
    const std::int64_t i = blockIdx.x, off = i * C;
    const std::int64_t y = target[i];
    const bool valid = y >= 0 && y < C;
    const double ec = e / static_cast<double>(C);
    double gs = 0.0;
    for (std::int64_t c = threadIdx.x; c < C; c += blockDim.x)
        gs += -(((valid && c == y) ? (1.0 - e) * class_weight(w, y) : 0.0) + ec * class_weight(w, c));
    gs = block_sum(gs, shared);
    const double scale = static_cast<double>(dloss[0]) / den[0];
    for (std::int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        const double g = -(((valid && c == y) ? (1.0 - e) * class_weight(w, y) : 0.0) + ec * class_weight(w, c));
        dlogits[off + c] = static_cast<T>(scale * (g - exp(static_cast<double>(logp[off + c])) * gs));
    }
}
}  // namespace

inline unsigned rows_grid(const char* fn, std::int64_t N) {
    MEDIMG_CHECK(N <= 0x7fffffff, ShapeError, fn, ": ", N, " rows exceed one launch");
    return static_cast<unsigned>(N);
}

}  // namespace medimg::cuda::detail

namespace medimg::ops {

template <>
struct SoftmaxImpl<Cuda> {
    template <class T>
    static void log_softmax_forward(const Tensor<T, Cuda>& x, Tensor<T, Cuda>& y) {
        namespace cd = cuda::detail;
        const std::int64_t N = x.size(0), C = x.size(1);
        if (N == 0 || C == 0) return;
        cd::log_softmax_forward_kernel<T><<<cd::rows_grid("log_softmax_forward", N), cd::kRowThreads, 0, cuda::stream()>>>(
            x.data(), y.data(), C);
        MEDIMG_CUDA_CHECK(cudaGetLastError());
    }
    template <class T>
    static void log_softmax_backward(const Tensor<T, Cuda>& y, const Tensor<T, Cuda>& dy, Tensor<T, Cuda>& dx) {
        namespace cd = cuda::detail;
        const std::int64_t N = y.size(0), C = y.size(1);
        if (N == 0 || C == 0) return;
        cd::log_softmax_backward_kernel<T><<<cd::rows_grid("log_softmax_backward", N), cd::kRowThreads, 0, cuda::stream()>>>(
            y.data(), dy.data(), dx.data(), C);
        MEDIMG_CUDA_CHECK(cudaGetLastError());
    }

    template <class T>
    static void cross_entropy_forward(const Tensor<T, Cuda>& logits, const Tensor<std::int64_t, Cuda>& target,
                                      const Tensor<T, Cuda>& w, const CrossEntropyParams& p, Tensor<T, Cuda>& logp,
                                      Tensor<T, Cuda>& loss) {
        namespace cd = cuda::detail;
        const std::int64_t N = logits.size(0), C = logits.size(1);
        log_softmax_forward(logits, logp);
        cd::cross_entropy_loss_kernel<T><<<1, cd::kLossThreads, 0, cuda::stream()>>>(
            logp.data(), target.data(), w.defined() ? w.data() : nullptr, N, C, p.label_smoothing, loss.data(),
            cuda::device_error_slot());
        MEDIMG_CUDA_CHECK(cudaGetLastError());
    }

    template <class T>
    static void cross_entropy_backward(const Tensor<T, Cuda>& logp, const Tensor<std::int64_t, Cuda>& target,
                                       const Tensor<T, Cuda>& w, const CrossEntropyParams& p, const Tensor<T, Cuda>& dloss,
                                       Tensor<T, Cuda>& dlogits) {
        namespace cd = cuda::detail;
        const std::int64_t N = logp.size(0), C = logp.size(1);
        if (N == 0 || C == 0) return;
        const T* wd = w.defined() ? w.data() : nullptr;
        cuda::DeviceBuffer den(sizeof(double));
        cd::target_weight_sum_kernel<T><<<1, cd::kLossThreads, 0, cuda::stream()>>>(target.data(), wd, N, C, den.as<double>());
        MEDIMG_CUDA_CHECK(cudaGetLastError());
        cd::cross_entropy_backward_kernel<T><<<cd::rows_grid("cross_entropy_backward", N), cd::kRowThreads, 0, cuda::stream()>>>(
            logp.data(), target.data(), wd, C, p.label_smoothing, dloss.data(), den.as<double>(), dlogits.data());
        MEDIMG_CUDA_CHECK(cudaGetLastError());
    }
};

}  // namespace medimg::ops
