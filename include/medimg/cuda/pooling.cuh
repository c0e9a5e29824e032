// SPDX-License-Identifier: MIT
// cuda/pooling.cuh: PoolImpl<Cuda>, the GPU twin of cpu/pooling.hpp, as own kernels with the CPU's
// exact semantics: max pooling takes the first maximum in row-major window order and NaN wins;
// argmax is int32 h*W + w within the plane (-1 never occurs: pad <= k/2 keeps one real pixel).
// Backward kernels add each input's contributions in increasing output order, as the CPU's loops
// do, so results are deterministic and bitwise equal to the CPU's:
//   average: a gather - each input sums dy / |window| over the windows that contain it;
//   max: the backward gets no window geometry (ops::max_pool2d_backward takes dy and argmax only),
//   so one block per (n, c) plane scatters in rounds: every pending output claims its argmax pixel
//   with atomicMin on its own index, the smallest claimant adds its gradient and retires. Rounds =
//   the most windows sharing one maximum (<= 4 for ResNet's 3x3 stride 2). Claims and the pending
//   list sit in shared memory when the plane fits, else in global scratch, a chunk of planes at a time.
// Activations stored in bf16 / fp16 (mixed precision) run the same kernels instantiated for that
// storage (kernels/storage.cuh): comparisons and sums in float, one rounding per stored result
// (the max-pool backward adds a pixel's contributions into a float32 scratch, then rounds).
// Deliberately not here: cuDNN pooling (its tie rules differ), ceil_mode, dilation.
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/pooling.cuh: include only from a TU compiled by nvcc"
#endif

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "medimg/cuda/allocator.hpp"
#include "medimg/cuda/check.hpp"
#include "medimg/cuda/context.hpp"
#include "medimg/cuda/kernels/common.cuh"
#include "medimg/cuda/kernels/storage.cuh"
#include "medimg/cuda/memory.cuh"
#include "medimg/cuda/precision.cuh"
#include "medimg/ops/pooling.hpp"

namespace medimg::cuda::detail {

inline constexpr std::int64_t kMaxPlanesPerLaunch = 1 << 30;  // gridDim.x limit is 2^31 - 1

struct PoolGeom {
    std::int64_t H, W, Ho, Wo;
    std::int64_t kh, kw, sh, sw, ph, pw;
};

__device__ __forceinline__ std::int64_t adaptive_start(std::int64_t o, std::int64_t out, std::int64_t in) {
    return (o * in) / out;
}
__device__ __forceinline__ std::int64_t adaptive_end(std::int64_t o, std::int64_t out, std::int64_t in) {
    return ((o + 1) * in + out - 1) / out;
}

namespace {
// one thread per output element (nc, oh, ow); x: (NC, H, W) -> y, argmax: (NC, Ho, Wo)
template <class S>
__global__ void max_pool_forward_kernel(const S* x, S* y, std::int32_t* argmax, PoolGeom g, std::int64_t total) {
    using T = Compute<S>;
    MEDIMG_GRID_STRIDE(i, total) {
        const std::int64_t ow = i % g.Wo, oh = (i / g.Wo) % g.Ho, nc = i / (g.Wo * g.Ho);
        const S* in = x + nc * g.H * g.W;
        const std::int64_t h0 = oh * g.sh - g.ph, w0 = ow * g.sw - g.pw;
        const std::int64_t h_lo = h0 > 0 ? h0 : 0, h_hi = h0 + g.kh < g.H ? h0 + g.kh : g.H;
        const std::int64_t w_lo = w0 > 0 ? w0 : 0, w_hi = w0 + g.kw < g.W ? w0 + g.kw : g.W;
        T best = T(0);
        std::int64_t at = -1;
        for (std::int64_t ih = h_lo; ih < h_hi && !(at >= 0 && isnan(best)); ++ih)
            for (std::int64_t iw = w_lo; iw < w_hi; ++iw) {
                const T v = ld(in[ih * g.W + iw]);
                if (at < 0 || v > best || isnan(v)) {
                    best = v;
                    at = ih * g.W + iw;
                    if (isnan(v)) break;
                }
            }
        st(y + i, at < 0 ? T(-INFINITY) : best);
        argmax[i] = static_cast<std::int32_t>(at);
    }
}

// One block per (n, c) plane (blockIdx.x + plane0). Scratch per plane: owner (HW ints, the smallest
// pending output claiming each pixel) and todo (P ints: argmax while pending, -1 when done, -2 - p
// right after winning pixel p). dx[p] = sum of dy[o] over the outputs o with argmax[o] = p, added in
// increasing o. dy is stored as SI, dx as SO (float32 for half dy: the sum is rounded once after).
template <class SI, class SO>
__global__ void max_pool_backward_kernel(const SI* dy, const std::int32_t* argmax, SO* dx, std::int64_t HW, std::int64_t P,
                                         std::int64_t plane0, int* scratch) {
    using T = Compute<SO>;
    extern __shared__ int shared_scratch[];
    const std::int64_t nc = plane0 + blockIdx.x;
    int* owner = scratch ? scratch + static_cast<std::int64_t>(blockIdx.x) * (HW + P) : shared_scratch;
    volatile int* todo = owner + HW;
    const SI* g = dy + nc * P;
    const std::int32_t* idx = argmax + nc * P;
    SO* out = dx + nc * HW;
    for (std::int64_t p = threadIdx.x; p < HW; p += blockDim.x) {
        owner[p] = 0x7fffffff;
        st(out + p, T(0));
    }
    for (std::int64_t o = threadIdx.x; o < P; o += blockDim.x) todo[o] = idx[o];
    __syncthreads();
    for (;;) {
        int pending = 0;
        for (std::int64_t o = threadIdx.x; o < P; o += blockDim.x) {
            const int p = todo[o];
            if (p >= 0) {
                atomicMin(&owner[p], static_cast<int>(o));
                pending = 1;
            }
        }
        if (!__syncthreads_or(pending)) break;
        for (std::int64_t o = threadIdx.x; o < P; o += blockDim.x) {
            const int p = todo[o];
            if (p >= 0 && atomicAdd(&owner[p], 0) == static_cast<int>(o)) {  // atomic read: sees every claim
                st(out + p, ld(out[p]) + static_cast<T>(ld(g[o])));
                todo[o] = -2 - p;
            }
        }
        __syncthreads();
        for (std::int64_t o = threadIdx.x; o < P; o += blockDim.x) {
            const int v = todo[o];
            if (v <= -2) {
                owner[-2 - v] = 0x7fffffff;
                todo[o] = -1;
            }
        }
        __syncthreads();
    }
}

// one thread per output element: the mean of its window, summed in double
template <class S>
__global__ void adaptive_avg_forward_kernel(const S* x, S* y, PoolGeom g, std::int64_t total) {
    using T = Compute<S>;
    MEDIMG_GRID_STRIDE(i, total) {
        const std::int64_t ow = i % g.Wo, oh = (i / g.Wo) % g.Ho, nc = i / (g.Wo * g.Ho);
        const S* in = x + nc * g.H * g.W;
        const std::int64_t h0 = adaptive_start(oh, g.Ho, g.H), h1 = adaptive_end(oh, g.Ho, g.H);
        const std::int64_t w0 = adaptive_start(ow, g.Wo, g.W), w1 = adaptive_end(ow, g.Wo, g.W);
        double s = 0.0;
        for (std::int64_t ih = h0; ih < h1; ++ih)
            for (std::int64_t iw = w0; iw < w1; ++iw) s += static_cast<double>(ld(in[ih * g.W + iw]));
        st(y + i, static_cast<T>(s / static_cast<double>((h1 - h0) * (w1 - w0))));
    }
}

// one thread per input element: the sum of dy[o] / |window o| over the windows containing it;
// windows containing row ih: oh in [floor(ih*Ho/H), ceil((ih+1)*Ho/H) - 1] (checked exactly)
template <class S>
__global__ void adaptive_avg_backward_kernel(const S* dy, S* dx, PoolGeom g, std::int64_t total) {
    using T = Compute<S>;
    MEDIMG_GRID_STRIDE(i, total) {
        const std::int64_t iw = i % g.W, ih = (i / g.W) % g.H, nc = i / (g.W * g.H);
        const S* gy = dy + nc * g.Ho * g.Wo;
        const std::int64_t oh0 = (ih * g.Ho) / g.H, oh1 = ((ih + 1) * g.Ho + g.H - 1) / g.H;
        const std::int64_t ow0 = (iw * g.Wo) / g.W, ow1 = ((iw + 1) * g.Wo + g.W - 1) / g.W;
        T s = T(0);
        for (std::int64_t oh = oh0; oh < oh1 && oh < g.Ho; ++oh) {
            const std::int64_t h0 = adaptive_start(oh, g.Ho, g.H), h1 = adaptive_end(oh, g.Ho, g.H);
            if (ih < h0 || ih >= h1) continue;
            for (std::int64_t ow = ow0; ow < ow1 && ow < g.Wo; ++ow) {
                const std::int64_t w0 = adaptive_start(ow, g.Wo, g.W), w1 = adaptive_end(ow, g.Wo, g.W);
                if (iw < w0 || iw >= w1) continue;
                s += ld(gy[oh * g.Wo + ow]) / static_cast<T>((h1 - h0) * (w1 - w0));
            }
        }
        st(dx + i, s);
    }
}

// avg_pool2d (no padding, whole windows): one thread per output element, the window summed in double
template <class T>
__global__ void avg_forward_kernel(const T* x, T* y, PoolGeom g, std::int64_t total) {
    MEDIMG_GRID_STRIDE(i, total) {
        const std::int64_t ow = i % g.Wo, oh = (i / g.Wo) % g.Ho, nc = i / (g.Wo * g.Ho);
        const T* in = x + nc * g.H * g.W + oh * g.sh * g.W + ow * g.sw;
        double s = 0.0;
        for (std::int64_t u = 0; u < g.kh; ++u)
            for (std::int64_t v = 0; v < g.kw; ++v) s += static_cast<double>(in[u * g.W + v]);
        y[i] = static_cast<T>(s * (1.0 / static_cast<double>(g.kh * g.kw)));
    }
}
// one thread per input element: dy / (kh*kw) summed over the windows containing it, in window
// order, as the CPU reference adds them (oh, ow ascending)
template <class T>
__global__ void avg_backward_kernel(const T* dy, T* dx, PoolGeom g, std::int64_t total) {
    MEDIMG_GRID_STRIDE(i, total) {
        const std::int64_t iw = i % g.W, ih = (i / g.W) % g.H, nc = i / (g.W * g.H);
        const T* gy = dy + nc * g.Ho * g.Wo;
        const T inv = static_cast<T>(1.0 / static_cast<double>(g.kh * g.kw));
        // windows oh with oh*sh <= ih < oh*sh + kh
        const std::int64_t oh0 = ih >= g.kh ? (ih - g.kh) / g.sh + 1 : 0, oh1 = ih / g.sh + 1 < g.Ho ? ih / g.sh + 1 : g.Ho;
        const std::int64_t ow0 = iw >= g.kw ? (iw - g.kw) / g.sw + 1 : 0, ow1 = iw / g.sw + 1 < g.Wo ? iw / g.sw + 1 : g.Wo;
        T s = T(0);
        for (std::int64_t oh = oh0; oh < oh1; ++oh)
            for (std::int64_t ow = ow0; ow < ow1; ++ow) s += gy[oh * g.Wo + ow] * inv;
        dx[i] = s;
    }
}
}  // namespace

template <class T>
PoolGeom pool_geom(const Tensor<T, Cuda>& big, const Tensor<T, Cuda>& small, const ops::MaxPool2dParams& p = {}) {
    return PoolGeom{big.size(2), big.size(3), small.size(2), small.size(3), p.kernel_h, p.kernel_w,
                    p.stride_h,  p.stride_w,  p.pad_h,         p.pad_w};
}

}  // namespace medimg::cuda::detail

namespace medimg::ops {

template <>
struct PoolImpl<Cuda> {
    // x: (N, C, H, W) -> y, argmax: (N, C, Ho, Wo)
    template <class T>
    static void max_forward(const Tensor<T, Cuda>& x, Tensor<T, Cuda>& y, Tensor<std::int32_t, Cuda>& argmax,
                            const MaxPool2dParams& p) {
        namespace cd = cuda::detail;
        const std::int64_t total = y.numel();
        if (total == 0) return;
        cd::with_storage<T>(x.storage(), [&](auto* tag) {
            using S = std::remove_pointer_t<decltype(tag)>;
            cd::max_pool_forward_kernel<S><<<cd::blocks_for(total), cd::kThreads, 0, cuda::stream()>>>(
                cd::stored<S>(x), cd::stored<S>(y), argmax.data(), cd::pool_geom(x, y, p), total);
        });
        MEDIMG_CUDA_CHECK(cudaGetLastError());
    }

    // dy, argmax: (N, C, Ho, Wo) -> dx: (N, C, H, W), overwritten
    template <class T>
    static void max_backward(const Tensor<T, Cuda>& dy, const Tensor<std::int32_t, Cuda>& argmax, Tensor<T, Cuda>& dx) {
        namespace cd = cuda::detail;
        cd::with_storage<T>(dy.storage(), [&](auto* tag) {
            using S = std::remove_pointer_t<decltype(tag)>;
            if constexpr (std::is_same_v<S, T>) {
                max_backward_stored<S, T>(cd::stored<S>(dy), argmax, cd::stored<T>(dx), dx);
            } else {  // half storage: add a pixel's contributions in float, round once
                auto sum = Tensor<float, Cuda>::empty(dx.shape());
                max_backward_stored<S, float>(cd::stored<S>(dy), argmax, sum.data(), dx);
                cd::convert_storage(sum.raw(), Precision::fp32, dx.raw(), dx.storage(), dx.numel());
            }
        });
    }
    /// max_backward from dy (argmax's shape) stored as SI into out (dx's shape) stored as SO.
    template <class SI, class SO, class T>
    static void max_backward_stored(const SI* dy, const Tensor<std::int32_t, Cuda>& argmax, SO* out, const Tensor<T, Cuda>& dx) {
        namespace cd = cuda::detail;
        const std::int64_t planes = dx.size(0) * dx.size(1), HW = dx.size(2) * dx.size(3), P = argmax.size(2) * argmax.size(3);
        if (planes == 0 || HW == 0) return;
        MEDIMG_CHECK(HW + P < 0x7fffffff, ShapeError, "max_pool2d_backward: planes of ", HW, " pixels are too large");
        const std::size_t scratch_bytes = static_cast<std::size_t>(HW + P) * sizeof(int);
        int optin = 0;
        MEDIMG_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, cuda::current_device()));
        if (scratch_bytes <= static_cast<std::size_t>(optin)) {
            if (scratch_bytes > 48 * 1024)
                MEDIMG_CUDA_CHECK(cudaFuncSetAttribute(cd::max_pool_backward_kernel<SI, SO>,
                                                       cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(scratch_bytes)));
            for (std::int64_t p0 = 0; p0 < planes; p0 += cd::kMaxPlanesPerLaunch) {
                const auto n = static_cast<unsigned>(std::min(cd::kMaxPlanesPerLaunch, planes - p0));
                cd::max_pool_backward_kernel<SI, SO><<<n, cd::kThreads, scratch_bytes, cuda::stream()>>>(dy, argmax.data(), out, HW,
                                                                                                         P, p0, nullptr);
                MEDIMG_CUDA_CHECK(cudaGetLastError());
            }
            return;
        }
        const std::int64_t chunk = std::min<std::int64_t>(planes, 256);
        cuda::DeviceBuffer scratch(static_cast<std::size_t>(chunk) * scratch_bytes);
        for (std::int64_t p0 = 0; p0 < planes; p0 += chunk) {
            const auto n = static_cast<unsigned>(std::min(chunk, planes - p0));
            cd::max_pool_backward_kernel<SI, SO><<<n, cd::kThreads, 0, cuda::stream()>>>(dy, argmax.data(), out, HW, P, p0,
                                                                                         scratch.as<int>());
            MEDIMG_CUDA_CHECK(cudaGetLastError());
        }
    }

    template <class T>
    static void avg_forward(const Tensor<T, Cuda>& x, Tensor<T, Cuda>& y, const AvgPool2dParams& p) {
        namespace cd = cuda::detail;
        const std::int64_t total = y.numel();
        if (total == 0) return;
        cd::avg_forward_kernel<T><<<cd::blocks_for(total), cd::kThreads, 0, cuda::stream()>>>(
            x.data(), y.data(), cd::pool_geom(x, y, MaxPool2dParams{p.kernel_h, p.kernel_w, p.stride_h, p.stride_w, 0, 0}),
            total);
        MEDIMG_CUDA_CHECK(cudaGetLastError());
    }
    template <class T>
    static void avg_backward(const Tensor<T, Cuda>& dy, Tensor<T, Cuda>& dx, const AvgPool2dParams& p) {
        namespace cd = cuda::detail;
        const std::int64_t total = dx.numel();
        if (total == 0) return;
        cd::avg_backward_kernel<T><<<cd::blocks_for(total), cd::kThreads, 0, cuda::stream()>>>(
            dy.data(), dx.data(), cd::pool_geom(dx, dy, MaxPool2dParams{p.kernel_h, p.kernel_w, p.stride_h, p.stride_w, 0, 0}),
            total);
        MEDIMG_CUDA_CHECK(cudaGetLastError());
    }

    template <class T>
    static void adaptive_avg_forward(const Tensor<T, Cuda>& x, Tensor<T, Cuda>& y) {
        namespace cd = cuda::detail;
        const std::int64_t total = y.numel();
        if (total == 0) return;
        cd::with_storage<T>(x.storage(), [&](auto* tag) {
            using S = std::remove_pointer_t<decltype(tag)>;
            cd::adaptive_avg_forward_kernel<S><<<cd::blocks_for(total), cd::kThreads, 0, cuda::stream()>>>(
                cd::stored<S>(x), cd::stored<S>(y), cd::pool_geom(x, y), total);
        });
        MEDIMG_CUDA_CHECK(cudaGetLastError());
    }

    template <class T>
    static void adaptive_avg_backward(const Tensor<T, Cuda>& dy, Tensor<T, Cuda>& dx) {
        namespace cd = cuda::detail;
        const std::int64_t total = dx.numel();
        if (total == 0) return;
        cd::with_storage<T>(dy.storage(), [&](auto* tag) {
            using S = std::remove_pointer_t<decltype(tag)>;
            cd::adaptive_avg_backward_kernel<S><<<cd::blocks_for(total), cd::kThreads, 0, cuda::stream()>>>(
                cd::stored<S>(dy), cd::stored<S>(dx), cd::pool_geom(dx, dy), total);
        });
        MEDIMG_CUDA_CHECK(cudaGetLastError());
    }
};

}  // namespace medimg::ops
