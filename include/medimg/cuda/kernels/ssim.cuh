// SPDX-License-Identifier: MIT
// cuda/kernels/ssim.cuh: the own kernels behind metrics::SsimImpl<Cuda> (cuda/ssim.cuh), the GPU
// twin of metrics/ssim.hpp's plane loops and autograd/ssim_loss.hpp's backward. Everything is
// computed in double from T inputs, as on the CPU, with one thread per output pixel:
//   forward   rows (4 window sums along rows, scipy 'reflect' borders) -> map (the same down the
//             columns, then SSIM and cs per pixel; Wang et al. 2004, eq. 13) -> per-plane sums over
//             the crop (one block per plane, fixed order: the same bits on every run)
//   backward  the five moments on the crop, their adjoints a_x, a_y, b, c, and the transposed
//             filter F^T (columns, then rows), the derivation in autograd/ssim_loss.hpp
// Deliberately not here: shared-memory tiling, running sums for the uniform window (the CPU's
// trick): each output reads its 2r + 1 taps, simple to check against the CPU and fast enough for
// metric and loss sizes (a 512x512 plane is ~1 M taps per pass).
// Launchers (no _kernel suffix) queue on the current device's stream and check the launch.
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/kernels/ssim.cuh: include only from a TU compiled by nvcc"
#endif

#include <algorithm>
#include <cstdint>

#include "medimg/cuda/check.hpp"
#include "medimg/cuda/context.hpp"
#include "medimg/cuda/kernels/common.cuh"

namespace medimg::cuda::detail {

/// The largest window radius metrics::ssim accepts (win_size <= 129; Gaussian radius <= 64).
inline constexpr int kSsimMaxRadius = 64;

/// One SSIM computation's window and constants, passed by value to every kernel (~1.6 KB of
/// kernel parameters, under the 4 KB limit of every architecture).
struct SsimWindow {
    int r = 3;             // radius; the window side is 2r + 1 and the crop drops r on each side
    bool uniform = true;   // uniform: plain sums scaled by inv; Gaussian: normalised taps, inv = 1
    double inv = 1.0;      // metrics::detail::SsimKernel::inv_norm
    double cov = 1.0;      // NP / (NP - 1) for the uniform window's sample covariance, else 1
    double c1 = 0.0, c2 = 0.0;
    double half[kSsimMaxRadius + 1] = {};   // forward Gaussian taps by distance from the centre
    double w[2 * kSsimMaxRadius + 1] = {};  // backward 1-D taps, w[t] = w_{t - r} (1 / side when uniform)
};

/// scipy.ndimage mode='reflect' (d c b a | a b c d | d c b a), valid for -n <= i < 2n.
__device__ __forceinline__ std::int64_t ssim_reflect(std::int64_t i, std::int64_t n) {
    if (i < 0) return -i - 1;
    if (i >= n) return 2 * n - i - 1;
    return i;
}

namespace {

// Every kernel is a template (STYLE.md's ODR rule); those that only read and write the float64
// intermediates take their accumulation type A (always double here) as the parameter.

// ---- forward ------------------------------------------------------------------------------------
// x, y: (P, H, W) -> rows: (P, 4, H, W), the row-filtered x, y, x y, (x - y)^2 (the four sums of
// metrics::detail: load_products + box_row / conv_row_sym).
template <class T>
__global__ void ssim_rows_kernel(const T* x, const T* y, std::int64_t planes, std::int64_t H, std::int64_t W,
                                 SsimWindow win, double* rows) {
    const std::int64_t HW = H * W, n = planes * HW;
    const int r = win.r;
    MEDIMG_GRID_STRIDE(idx, n) {
        const std::int64_t p = idx / HW, rem = idx - p * HW, i = rem / W, j = rem - i * W;
        const T* xr = x + p * HW + i * W;
        const T* yr = y + p * HW + i * W;
        double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
        if (win.uniform) {
            for (int t = -r; t <= r; ++t) {
                const std::int64_t c = ssim_reflect(j + t, W);
                const double xv = static_cast<double>(xr[c]), yv = static_cast<double>(yr[c]);
                const double d = xv - yv;
                s0 += xv;
                s1 += yv;
                s2 += mul_rn(xv, yv);
                s3 += mul_rn(d, d);
            }
        } else {
            // out = h_0 v(j) + sum_{k=1..r} h_k (v(j - k) + v(j + k))   (scipy's symmetric-kernel path)
            const double xc = static_cast<double>(xr[j]), yc = static_cast<double>(yr[j]), dc = xc - yc;
            const double h0 = win.half[0];
            s0 = h0 * xc;
            s1 = h0 * yc;
            s2 = h0 * mul_rn(xc, yc);
            s3 = h0 * mul_rn(dc, dc);
            for (int k = 1; k <= r; ++k) {
                const std::int64_t lo = ssim_reflect(j - k, W), hi = ssim_reflect(j + k, W);
                const double xl = static_cast<double>(xr[lo]), yl = static_cast<double>(yr[lo]);
                const double xh = static_cast<double>(xr[hi]), yh = static_cast<double>(yr[hi]);
                const double dl = xl - yl, dh = xh - yh, hk = win.half[k];
                s0 += hk * (xl + xh);
                s1 += hk * (yl + yh);
                s2 += hk * (mul_rn(xl, yl) + mul_rn(xh, yh));
                s3 += hk * (mul_rn(dl, dl) + mul_rn(dh, dh));
            }
        }
        double* o = rows + p * 4 * HW + i * W + j;
        o[0] = s0;
        o[HW] = s1;
        o[2 * HW] = s2;
        o[3 * HW] = s3;
    }
}

// rows: (P, 4, H, W) -> map: (P, H, W) SSIM and, when cs is not null, cs: (P, H, W) =
// (2 s_xy + C2) / (s_x^2 + s_y^2 + C2): the column pass with reflect borders, then
// metrics::detail::ssim_values' formula term for term.
template <class A>
__global__ void ssim_map_kernel(const A* rows, std::int64_t planes, std::int64_t H, std::int64_t W, SsimWindow win,
                                A* map, A* cs) {
    const std::int64_t HW = H * W, n = planes * HW;
    const int r = win.r;
    MEDIMG_GRID_STRIDE(idx, n) {
        const std::int64_t p = idx / HW, rem = idx - p * HW, i = rem / W, j = rem - i * W;
        A q[4];
        for (int k4 = 0; k4 < 4; ++k4) {
            const A* col = rows + (p * 4 + k4) * HW + j;
            A s;
            if (win.uniform) {
                s = 0.0;
                for (int t = -r; t <= r; ++t) s += col[ssim_reflect(i + t, H) * W];
            } else {
                s = win.half[0] * col[i * W];
                for (int k = 1; k <= r; ++k) s += win.half[k] * (col[ssim_reflect(i - k, H) * W] + col[ssim_reflect(i + k, H) * W]);
            }
            q[k4] = s;
        }
        const double inv = win.inv, cov = win.cov;
        const double mx = q[0] * inv, my = q[1] * inv;
        const double mxy = mx * my, d = mx - my;
        const double a1 = 2.0 * mxy + win.c1;                          // 2 mu_x mu_y + C1
        const double b1 = a1 + d * d;                                  // mu_x^2 + mu_y^2 + C1
        const double a2 = 2.0 * (cov * (q[2] * inv - mxy)) + win.c2;  // 2 s_xy + C2
        const double b2 = a2 + cov * (q[3] * inv - d * d);            // s_x^2 + s_y^2 + C2
        map[idx] = (a1 * a2) / (b1 * b2);
        if (cs) cs[idx] = a2 / b2;
    }
}

// map: (P, H, W) -> sums[p] = sum of map over the crop [r, H - r) x [r, W - r) of plane p.
// One block per plane (grid-stride over planes), blockDim.x = kThreads, fixed tree order.
template <class A>
__global__ void ssim_crop_sums_kernel(const A* map, std::int64_t planes, std::int64_t H, std::int64_t W, int r,
                                      A* sums) {
    __shared__ double shared[kThreads];
    const std::int64_t Hc = H - 2 * r, Wc = W - 2 * r, nc = Hc * Wc, HW = H * W;
    for (std::int64_t p = blockIdx.x; p < planes; p += gridDim.x) {  // uniform across the block
        double s = 0.0;
        for (std::int64_t k = threadIdx.x; k < nc; k += blockDim.x) {
            const std::int64_t ii = k / Wc, jj = k - ii * Wc;
            s += map[p * HW + (ii + r) * W + jj + r];
        }
        const double total = block_sum(s, shared);
        if (threadIdx.x == 0) sums[p] = total;
    }
}

// out[0] = (sum_p sums[p] / crop) / planes: metrics::ssim's per-channel mean, then the mean over
// channels, in the CPU's order (one thread: planes is small).
template <class T>
__global__ void ssim_mean_kernel(const double* sums, std::int64_t planes, double crop, T* out) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    double total = 0.0;
    for (std::int64_t p = 0; p < planes; ++p) total += sums[p] / crop;
    out[0] = static_cast<T>(total / static_cast<double>(planes));
}

// in: (P, H, W) -> out: (P, ceil(H/2), ceil(W/2)), the 2x2 mean; an odd side repeats its last
// row/column (metrics::detail::downsample2).
template <class T>
__global__ void ssim_downsample2_kernel(const T* in, std::int64_t planes, std::int64_t H, std::int64_t W, double* out) {
    const std::int64_t h = (H + 1) / 2, w = (W + 1) / 2, n = planes * h * w;
    MEDIMG_GRID_STRIDE(idx, n) {
        const std::int64_t p = idx / (h * w), rem = idx - p * h * w, i = rem / w, j = rem - i * w;
        const T* r0 = in + p * H * W + (2 * i) * W;
        const T* r1 = in + p * H * W + (2 * i + 1 < H ? 2 * i + 1 : H - 1) * W;
        const std::int64_t j0 = 2 * j, j1 = 2 * j + 1 < W ? 2 * j + 1 : W - 1;
        out[idx] = 0.25 * ((static_cast<double>(r0[j0]) + static_cast<double>(r0[j1])) +
                           (static_cast<double>(r1[j0]) + static_cast<double>(r1[j1])));
    }
}

// ---- backward (autograd/ssim_loss.hpp, detail::ssim_plane_backward step by step) ----------------
// x, y: (P, H, W) -> rows5: (P, 5, H, Wc), F along rows of x, y, x^2, y^2, x y at the valid
// columns (the crop never reads the reflect padding).
template <class T>
__global__ void ssim_grad_rows_kernel(const T* x, const T* y, std::int64_t planes, std::int64_t H, std::int64_t W,
                                      SsimWindow win, double* rows5) {
    const int r = win.r, taps = 2 * r + 1;
    const std::int64_t Wc = W - 2 * r, n = planes * H * Wc;
    MEDIMG_GRID_STRIDE(idx, n) {
        const std::int64_t p = idx / (H * Wc), rem = idx - p * H * Wc, i = rem / Wc, j = rem - i * Wc;
        const T* xr = x + p * H * W + i * W + j;
        const T* yr = y + p * H * W + i * W + j;
        double s[5] = {0.0, 0.0, 0.0, 0.0, 0.0};
        for (int t = 0; t < taps; ++t) {
            const double xv = static_cast<double>(xr[t]), yv = static_cast<double>(yr[t]), wt = win.w[t];
            s[0] += wt * xv;
            s[1] += wt * yv;
            s[2] += wt * xv * xv;
            s[3] += wt * yv * yv;
            s[4] += wt * xv * yv;
        }
        for (int q = 0; q < 5; ++q) rows5[((p * 5 + q) * H + i) * Wc + j] = s[q];
    }
}

// rows5: (P, 5, H, Wc) -> adj: (P, 4, Hc, Wc) = g * (dS/dmx, dS/dmy, cov dS/dB2, 2 cov dS/dA2),
// g = dl[0] / denom read on the device (no host synchronisation inside backward).
template <class T>
__global__ void ssim_grad_adjoint_kernel(const double* rows5, std::int64_t planes, std::int64_t H, std::int64_t W,
                                         SsimWindow win, const T* dl, double denom, double* adj) {
    const int r = win.r, taps = 2 * r + 1;
    const std::int64_t Hc = H - 2 * r, Wc = W - 2 * r, nc = Hc * Wc, n = planes * nc;
    const double cov = win.cov, c1 = win.c1, c2 = win.c2;
    const double g = static_cast<double>(dl[0]) / denom;
    MEDIMG_GRID_STRIDE(idx, n) {
        const std::int64_t p = idx / nc, rem = idx - p * nc, pi = rem / Wc, j = rem - pi * Wc;
        double m[5] = {0.0, 0.0, 0.0, 0.0, 0.0};
        for (int t = 0; t < taps; ++t)
            for (int q = 0; q < 5; ++q) m[q] += win.w[t] * rows5[((p * 5 + q) * H + pi + t) * Wc + j];
        const double mx = m[0], my = m[1];
        const double vx = cov * (m[2] - mx * mx), vy = cov * (m[3] - my * my), vxy = cov * (m[4] - mx * my);
        const double A1 = 2.0 * mx * my + c1, A2 = 2.0 * vxy + c2;
        const double B1 = mx * mx + my * my + c1, B2 = vx + vy + c2;
        const double den = B1 * B2, S = A1 * A2 / den;
        const double dA1 = A2 / den, dA2 = A1 / den, dB1 = -S / B1, dB2 = -S / B2;
        const double dmx = 2.0 * my * dA1 - 2.0 * cov * my * dA2 + 2.0 * mx * dB1 - 2.0 * cov * mx * dB2;
        const double dmy = 2.0 * mx * dA1 - 2.0 * cov * mx * dA2 + 2.0 * my * dB1 - 2.0 * cov * my * dB2;
        double* o = adj + p * 4 * nc + pi * Wc + j;
        o[0] = g * dmx;
        o[nc] = g * dmy;
        o[2 * nc] = g * cov * dB2;
        o[3 * nc] = g * 2.0 * cov * dA2;
    }
}

// adj: (P, 4, Hc, Wc) -> cols: (P, 4, H, Wc), F^T down the columns: row i gathers crop rows
// pi = i - t, t in [0, 2r], zero outside the crop.
template <class A>
__global__ void ssim_grad_cols_kernel(const A* adj, std::int64_t planes, std::int64_t H, std::int64_t W,
                                      SsimWindow win, A* cols) {
    const int r = win.r, taps = 2 * r + 1;
    const std::int64_t Hc = H - 2 * r, Wc = W - 2 * r, n = planes * 4 * H * Wc;
    MEDIMG_GRID_STRIDE(idx, n) {
        const std::int64_t pq = idx / (H * Wc), rem = idx - pq * H * Wc, i = rem / Wc, j = rem - i * Wc;
        A out = 0.0;
        for (int t = 0; t < taps; ++t) {
            const std::int64_t pi = i - t;
            if (pi < 0 || pi >= Hc) continue;
            out += win.w[t] * adj[(pq * Hc + pi) * Wc + j];
        }
        cols[idx] = out;
    }
}

// cols: (P, 4, H, Wc) -> F^T along the rows (column jj gathers crop columns j = jj - t, in the
// CPU's order of additions: t from 2r down), then
//   dx += F^T a_x + 2 x F^T b + y F^T c,   dy += F^T a_y + 2 y F^T b + x F^T c.
// dx, dy: (P, H, W), accumulated (+=); either may be null.
template <class T>
__global__ void ssim_grad_input_kernel(const double* cols, const T* x, const T* y, std::int64_t planes, std::int64_t H,
                                       std::int64_t W, SsimWindow win, T* dx, T* dy) {
    const int r = win.r;
    const std::int64_t Wc = W - 2 * r, HW = H * W, n = planes * HW;
    MEDIMG_GRID_STRIDE(idx, n) {
        const std::int64_t p = idx / HW, rem = idx - p * HW, i = rem / W, jj = rem - i * W;
        double f[4];
        for (int q = 0; q < 4; ++q) {
            const double* in = cols + ((p * 4 + q) * H + i) * Wc;
            double acc = 0.0;
            for (int t = 2 * r; t >= 0; --t) {
                const std::int64_t j = jj - t;
                if (j < 0 || j >= Wc) continue;
                acc += win.w[t] * in[j];
            }
            f[q] = acc;
        }
        const double xv = static_cast<double>(x[idx]), yv = static_cast<double>(y[idx]);
        if (dx) dx[idx] += static_cast<T>(f[0] + 2.0 * xv * f[2] + yv * f[3]);
        if (dy) dy[idx] += static_cast<T>(f[1] + 2.0 * yv * f[2] + xv * f[3]);
    }
}

}  // namespace

// ---- launchers ------------------------------------------------------------------------------------
template <class T>
void ssim_rows(const T* x, const T* y, std::int64_t planes, std::int64_t H, std::int64_t W, const SsimWindow& win,
               double* rows) {
    const std::int64_t n = planes * H * W;
    if (n <= 0) return;
    ssim_rows_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(x, y, planes, H, W, win, rows);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

inline void ssim_map(const double* rows, std::int64_t planes, std::int64_t H, std::int64_t W, const SsimWindow& win,
                     double* map, double* cs) {
    const std::int64_t n = planes * H * W;
    if (n <= 0) return;
    ssim_map_kernel<double><<<blocks_for(n), kThreads, 0, stream()>>>(rows, planes, H, W, win, map, cs);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

inline void ssim_crop_sums(const double* map, std::int64_t planes, std::int64_t H, std::int64_t W, int r, double* sums) {
    if (planes <= 0) return;
    const auto blocks = static_cast<unsigned>(std::min<std::int64_t>(planes, kMaxBlocks));
    ssim_crop_sums_kernel<double><<<blocks, kThreads, 0, stream()>>>(map, planes, H, W, r, sums);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void ssim_mean(const double* sums, std::int64_t planes, double crop, T* out) {
    ssim_mean_kernel<T><<<1, 1, 0, stream()>>>(sums, planes, crop, out);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void ssim_downsample2(const T* in, std::int64_t planes, std::int64_t H, std::int64_t W, double* out) {
    const std::int64_t n = planes * ((H + 1) / 2) * ((W + 1) / 2);
    if (n <= 0) return;
    ssim_downsample2_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(in, planes, H, W, out);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void ssim_grad_rows(const T* x, const T* y, std::int64_t planes, std::int64_t H, std::int64_t W, const SsimWindow& win,
                    double* rows5) {
    const std::int64_t n = planes * H * (W - 2 * win.r);
    if (n <= 0) return;
    ssim_grad_rows_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(x, y, planes, H, W, win, rows5);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void ssim_grad_adjoint(const double* rows5, std::int64_t planes, std::int64_t H, std::int64_t W, const SsimWindow& win,
                       const T* dl, double denom, double* adj) {
    const std::int64_t n = planes * (H - 2 * win.r) * (W - 2 * win.r);
    if (n <= 0) return;
    ssim_grad_adjoint_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(rows5, planes, H, W, win, dl, denom, adj);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

inline void ssim_grad_cols(const double* adj, std::int64_t planes, std::int64_t H, std::int64_t W, const SsimWindow& win,
                           double* cols) {
    const std::int64_t n = planes * 4 * H * (W - 2 * win.r);
    if (n <= 0) return;
    ssim_grad_cols_kernel<double><<<blocks_for(n), kThreads, 0, stream()>>>(adj, planes, H, W, win, cols);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void ssim_grad_input(const double* cols, const T* x, const T* y, std::int64_t planes, std::int64_t H, std::int64_t W,
                     const SsimWindow& win, T* dx, T* dy) {
    const std::int64_t n = planes * H * W;
    if (n <= 0 || (!dx && !dy)) return;
    ssim_grad_input_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(cols, x, y, planes, H, W, win, dx, dy);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

}  // namespace medimg::cuda::detail
