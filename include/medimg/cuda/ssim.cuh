// SPDX-License-Identifier: MIT
// cuda/ssim.cuh: metrics::SsimImpl<Cuda>, the GPU side of metrics/ssim.hpp (ssim, ms_ssim,
// mean_absolute_error on Tensor<T, Cuda>) and of autograd::ssim's forward and backward on the GPU.
// Same conventions and float64 arithmetic as the CPU code (scikit-image's two windows, reflect
// borders, the crop, the derivation in autograd/ssim_loss.hpp); own kernels in kernels/ssim.cuh.
// Pointers are device memory; results stay on the device (the front doors copy what the host
// needs). Planes are processed in chunks of about 1 M pixels, so scratch stays ~100 MB whatever
// the batch. Deliberately not here: a fused single-pass kernel, float32 arithmetic.
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/ssim.cuh: include only from a TU compiled by nvcc"
#endif

#include <algorithm>
#include <cstdint>

#include "medimg/cuda/allocator.hpp"
#include "medimg/cuda/kernels/elementwise.cuh"
#include "medimg/cuda/kernels/ssim.cuh"
#include "medimg/cuda/memory.cuh"
#include "medimg/error.hpp"
#include "medimg/metrics/ssim.hpp"

namespace medimg::cuda::detail {

/// The kernels' view of metrics::detail::SsimKernel. The backward taps are autograd's
/// (ssim_grad_kernel): 1 / win_size (= 1 / (2r + 1)) for the uniform window, the normalised
/// Gaussian taps by distance otherwise.
inline SsimWindow ssim_window(const metrics::detail::SsimKernel& k) {
    MEDIMG_CHECK(k.radius >= 1 && k.radius <= kSsimMaxRadius, ValueError, "ssim: window radius ", k.radius,
                 " is outside [1, ", kSsimMaxRadius, "]");
    SsimWindow w;
    w.r = k.radius;
    w.uniform = k.uniform;
    w.inv = k.inv_norm;
    w.cov = k.cov_norm;
    w.c1 = k.c1;
    w.c2 = k.c2;
    for (int d = 0; d <= k.radius; ++d) w.half[d] = k.uniform ? 1.0 : k.half[static_cast<std::size_t>(d)];
    for (int d = -k.radius; d <= k.radius; ++d)
        w.w[d + k.radius] = k.uniform ? 1.0 / static_cast<double>(2 * k.radius + 1) : k.half[static_cast<std::size_t>(d < 0 ? -d : d)];
    return w;
}

/// Planes per chunk: about 2^20 pixels, at least one plane.
inline std::int64_t ssim_chunk(std::int64_t H, std::int64_t W) {
    return std::max<std::int64_t>(1, (std::int64_t(1) << 20) / std::max<std::int64_t>(1, H * W));
}

/// f(i) = |a[i] - b[i]| in double (mean_absolute_error).
template <class T>
struct AbsDiffTerm {
    const T* a;
    const T* b;
    __device__ __forceinline__ double operator()(std::int64_t i) const {
        return fabs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    }
};

}  // namespace medimg::cuda::detail

namespace medimg::metrics {

template <>
struct SsimImpl<Cuda> {
    /// SSIM of P planes. x, y: (P, H, W); map: (P, H, W) or null; sums: (P), the sum of the SSIM
    /// map over each plane's crop; cs_sums: (P) or null, the same for cs (MS-SSIM). Overwrites.
    template <class T>
    static void planes(const T* x, const T* y, std::int64_t P, std::int64_t H, std::int64_t W, const detail::SsimKernel& k,
                       double* map, double* sums, double* cs_sums) {
        namespace cd = cuda::detail;
        const auto win = cd::ssim_window(k);
        const std::int64_t HW = H * W, chunk = std::min(P, cd::ssim_chunk(H, W));
        cuda::DeviceBuffer rows(static_cast<std::size_t>(4 * chunk * HW) * sizeof(double));
        cuda::DeviceBuffer map_scratch(map ? 0 : static_cast<std::size_t>(chunk * HW) * sizeof(double));
        cuda::DeviceBuffer cs_map(cs_sums ? static_cast<std::size_t>(chunk * HW) * sizeof(double) : 0);
        for (std::int64_t p0 = 0; p0 < P; p0 += chunk) {
            const std::int64_t n = std::min(chunk, P - p0);
            double* m = map ? map + p0 * HW : map_scratch.as<double>();
            cd::ssim_rows(x + p0 * HW, y + p0 * HW, n, H, W, win, rows.as<double>());
            cd::ssim_map(rows.as<double>(), n, H, W, win, m, cs_sums ? cs_map.as<double>() : nullptr);
            cd::ssim_crop_sums(m, n, H, W, win.r, sums + p0);
            if (cs_sums) cd::ssim_crop_sums(cs_map.as<double>(), n, H, W, win.r, cs_sums + p0);
        }
    }

    /// out[0] = (sum_p sums[p] / crop) / P, as T, on the device (autograd::ssim's value).
    template <class T>
    static void mean(const double* sums, std::int64_t P, double crop, T* out) {
        cuda::detail::ssim_mean(sums, P, crop, out);
    }

    /// in: (P, H, W) -> out: (P, ceil(H/2), ceil(W/2)), MS-SSIM's 2x2 mean.
    template <class T>
    static void downsample2(const T* in, std::int64_t P, std::int64_t H, std::int64_t W, double* out) {
        cuda::detail::ssim_downsample2(in, P, H, W, out);
    }

    /// dx += dL/dx, dy += dL/dy of L = dl[0] / denom * sum over planes and crop of SSIM
    /// (autograd/ssim_loss.hpp). x, y, dx, dy: (P, H, W) (dx or dy may be null); dl: one element.
    template <class T>
    static void backward(const T* x, const T* y, std::int64_t P, std::int64_t H, std::int64_t W, const detail::SsimKernel& k,
                         const T* dl, double denom, T* dx, T* dy) {
        namespace cd = cuda::detail;
        if (!dx && !dy) return;
        const auto win = cd::ssim_window(k);
        const std::int64_t r = win.r, Hc = H - 2 * r, Wc = W - 2 * r, HW = H * W;
        const std::int64_t chunk = std::min(P, cd::ssim_chunk(H, W));
        cuda::DeviceBuffer rows5(static_cast<std::size_t>(5 * chunk * H * Wc) * sizeof(double));
        cuda::DeviceBuffer adj(static_cast<std::size_t>(4 * chunk * Hc * Wc) * sizeof(double));
        cuda::DeviceBuffer cols(static_cast<std::size_t>(4 * chunk * H * Wc) * sizeof(double));
        for (std::int64_t p0 = 0; p0 < P; p0 += chunk) {
            const std::int64_t n = std::min(chunk, P - p0);
            cd::ssim_grad_rows(x + p0 * HW, y + p0 * HW, n, H, W, win, rows5.as<double>());
            cd::ssim_grad_adjoint(rows5.as<double>(), n, H, W, win, dl, denom, adj.as<double>());
            cd::ssim_grad_cols(adj.as<double>(), n, H, W, win, cols.as<double>());
            cd::ssim_grad_input(cols.as<double>(), x + p0 * HW, y + p0 * HW, n, H, W, win, dx ? dx + p0 * HW : nullptr,
                                dy ? dy + p0 * HW : nullptr);
        }
    }

    /// sum |a[i] - b[i]| over n elements, in double, on the host (waits for the stream).
    template <class T>
    static double abs_diff_sum(const T* a, const T* b, std::int64_t n) {
        return cuda::detail::reduce(cuda::detail::AbsDiffTerm<T>{a, b}, n);
    }
};

}  // namespace medimg::metrics
