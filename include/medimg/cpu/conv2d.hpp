// SPDX-License-Identifier: MIT
// cpu/conv2d.hpp: convolution on the host as im2col + GEMM (the reference the CUDA backend is
// tested against). Per image n:
//   cols = im2col(x_n)               // (K = C_in*kH*kW, P = Ho*Wo); skipped for 1x1 stride 1 pad 0
//   y_n  = W * cols                  // (C_out, K) x (K, P) -> (C_out, P)
//   dcols = W^T * dy_n; dx_n = col2im(dcols)
//   dW  += dy_n * cols^T             // summed over images in per-thread partials, fixed order
// Threads go over images when the batch has at least as many images as threads (each with its
// own column buffer), otherwise into Eigen's GEMM. Deliberately not here: Winograd, NHWC,
// groups (see the CPU performance issue).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "medimg/core/parallel.hpp"
#include "medimg/cpu/gemm.hpp"
#include "medimg/ops/conv2d.hpp"

namespace medimg::cpu {

struct ConvGeom {
    std::int64_t C, H, W, kh, kw, Ho, Wo;
    ops::Conv2dParams p;
    std::int64_t K() const { return C * kh * kw; }
    std::int64_t P() const { return Ho * Wo; }
    bool is_pointwise() const {
        return kh == 1 && kw == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0;
    }
};

/// cols[(c*kh + i)*kw + j][oh*Wo + ow] = x[c][oh*s - pad + i*d][ow*s - pad + j*d], 0 outside.
/// x: (C, H, W) -> cols: (K, P)
template <class T>
void im2col(const T* x, const ConvGeom& g, T* cols) {
    const auto& p = g.p;
    for (std::int64_t c = 0; c < g.C; ++c)
        for (std::int64_t i = 0; i < g.kh; ++i)
            for (std::int64_t j = 0; j < g.kw; ++j) {
                T* row = cols + ((c * g.kh + i) * g.kw + j) * g.P();
                const T* plane = x + c * g.H * g.W;
                const std::int64_t dj = j * p.dilation_w - p.pad_w;
                // Output columns whose input column lies inside [0, W): ow in [lo, hi).
                std::int64_t lo = dj >= 0 ? 0 : (-dj + p.stride_w - 1) / p.stride_w;
                std::int64_t hi = g.W - dj > 0 ? (g.W - dj + p.stride_w - 1) / p.stride_w : 0;
                lo = std::min(lo, g.Wo);
                hi = std::clamp(hi, lo, g.Wo);
                for (std::int64_t oh = 0; oh < g.Ho; ++oh) {
                    T* out = row + oh * g.Wo;
                    const std::int64_t ih = oh * p.stride_h - p.pad_h + i * p.dilation_h;
                    if (ih < 0 || ih >= g.H) {
                        std::fill(out, out + g.Wo, T(0));
                        continue;
                    }
                    const T* in = plane + ih * g.W;
                    std::fill(out, out + lo, T(0));
                    if (p.stride_w == 1)
                        std::memcpy(out + lo, in + lo + dj, static_cast<std::size_t>(hi - lo) * sizeof(T));
                    else
                        for (std::int64_t ow = lo; ow < hi; ++ow) out[ow] = in[ow * p.stride_w + dj];
                    std::fill(out + hi, out + g.Wo, T(0));
                }
            }
}

/// The adjoint of im2col: dx[c][ih][iw] += every cols entry that im2col read from there.
/// cols: (K, P) -> dx: (C, H, W), which the caller zeroes first.
template <class T>
void col2im(const T* cols, const ConvGeom& g, T* dx) {
    const auto& p = g.p;
    for (std::int64_t c = 0; c < g.C; ++c)
        for (std::int64_t i = 0; i < g.kh; ++i)
            for (std::int64_t j = 0; j < g.kw; ++j) {
                const T* row = cols + ((c * g.kh + i) * g.kw + j) * g.P();
                T* plane = dx + c * g.H * g.W;
                const std::int64_t dj = j * p.dilation_w - p.pad_w;
                std::int64_t lo = dj >= 0 ? 0 : (-dj + p.stride_w - 1) / p.stride_w;
                std::int64_t hi = g.W - dj > 0 ? (g.W - dj + p.stride_w - 1) / p.stride_w : 0;
                lo = std::min(lo, g.Wo);
                hi = std::clamp(hi, lo, g.Wo);
                for (std::int64_t oh = 0; oh < g.Ho; ++oh) {
                    const std::int64_t ih = oh * p.stride_h - p.pad_h + i * p.dilation_h;
                    if (ih < 0 || ih >= g.H) continue;
                    const T* in = row + oh * g.Wo;
                    T* out = plane + ih * g.W;
                    for (std::int64_t ow = lo; ow < hi; ++ow) out[ow * p.stride_w + dj] += in[ow];
                }
            }
}

template <class T>
ConvGeom conv_geom(const Tensor<T, Cpu>& x, const Shape& w, const Shape& y, const ops::Conv2dParams& p) {
    return ConvGeom{x.size(1), x.size(2), x.size(3), w[2], w[3], y[2], y[3], p};
}

/// Runs f(n, cols_buffer) for every image: over images in parallel when the batch covers the
/// threads, else serially (the GEMM inside then threads itself).
template <class T, class F>
void for_each_image(std::int64_t N, std::int64_t col_elems, F&& f) {
    if (N >= num_threads()) {
        parallel_chunks(0, N, [&](std::int64_t lo, std::int64_t hi, int) {
            std::vector<T> cols(static_cast<std::size_t>(col_elems));
            for (std::int64_t n = lo; n < hi; ++n) f(n, cols.data());
        });
    } else {
        std::vector<T> cols(static_cast<std::size_t>(col_elems));
        for (std::int64_t n = 0; n < N; ++n) f(n, cols.data());
    }
}

}  // namespace medimg::cpu

namespace medimg::ops {

template <>
struct Conv2dImpl<Cpu> {
    // x: (N, C_in, H, W), w: (C_out, C_in, kH, kW), b: (C_out)? -> y: (N, C_out, Ho, Wo)
    template <class T>
    static void forward(const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& w, const Tensor<T, Cpu>& b, Tensor<T, Cpu>& y,
                        const Conv2dParams& p) {
        const auto g = cpu::conv_geom(x, w.shape(), y.shape(), p);
        const std::int64_t N = x.size(0), Co = w.size(0), K = g.K(), P = g.P();
        const T* xd = x.data();
        const T* wd = w.data();
        T* yd = y.data();
        cpu::for_each_image<T>(N, g.is_pointwise() ? 0 : K * P, [&](std::int64_t n, T* cols) {
            const T* xn = xd + n * g.C * g.H * g.W;
            if (!g.is_pointwise()) cpu::im2col(xn, g, cols);
            T* yn = yd + n * Co * P;
            cpu::gemm(false, false, Co, P, K, wd, g.is_pointwise() ? xn : cols, yn, false);  // (Co, P)
            if (b.defined())
                for (std::int64_t c = 0; c < Co; ++c) {
                    const T bc = b.data()[c];
                    for (std::int64_t q = 0; q < P; ++q) yn[c * P + q] += bc;
                }
        });
    }

    // dy: (N, C_out, Ho, Wo), w: (C_out, C_in, kH, kW) -> dx: (N, C_in, H, W), overwritten
    template <class T>
    static void backward_data(const Tensor<T, Cpu>& dy, const Tensor<T, Cpu>& w, Tensor<T, Cpu>& dx,
                              const Conv2dParams& p) {
        const auto g = cpu::conv_geom(dx, w.shape(), dy.shape(), p);
        const std::int64_t N = dx.size(0), Co = w.size(0), K = g.K(), P = g.P();
        cpu::for_each_image<T>(N, g.is_pointwise() ? 0 : K * P, [&](std::int64_t n, T* cols) {
            T* dxn = dx.data() + n * g.C * g.H * g.W;
            const T* dyn = dy.data() + n * Co * P;
            if (g.is_pointwise()) {
                cpu::gemm(true, false, K, P, Co, w.data(), dyn, dxn, false);  // (C_in, P)
            } else {
                cpu::gemm(true, false, K, P, Co, w.data(), dyn, cols, false);  // (K, P)
                std::fill(dxn, dxn + g.C * g.H * g.W, T(0));
                cpu::col2im(cols, g, dxn);
            }
        });
    }

    // x: (N, C_in, H, W), dy: (N, C_out, Ho, Wo) -> dw: (C_out, C_in, kH, kW), overwritten
    template <class T>
    static void backward_filter(const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& dy, Tensor<T, Cpu>& dw,
                                const Conv2dParams& p) {
        const auto g = cpu::conv_geom(x, dw.shape(), dy.shape(), p);
        const std::int64_t N = x.size(0), Co = dw.size(0), K = g.K(), P = g.P();
        auto image_into = [&](std::int64_t n, T* cols, T* acc) {  // acc (Co, K) += dy_n * cols_n^T
            const T* xn = x.data() + n * g.C * g.H * g.W;
            if (!g.is_pointwise()) cpu::im2col(xn, g, cols);
            cpu::gemm(false, true, Co, K, P, dy.data() + n * Co * P, g.is_pointwise() ? xn : cols, acc, true);
        };
        dw.zero_();
        const int t = static_cast<int>(std::min<std::int64_t>(num_threads(), N));
        if (t <= 1 || N < num_threads()) {
            std::vector<T> cols(static_cast<std::size_t>(g.is_pointwise() ? 0 : K * P));
            for (std::int64_t n = 0; n < N; ++n) image_into(n, cols.data(), dw.data());
            return;
        }
        // Per-thread partial sums, added in thread order: deterministic for a fixed thread count.
        std::vector<std::vector<T>> part(static_cast<std::size_t>(t));
        parallel_chunks(0, N, [&](std::int64_t lo, std::int64_t hi, int id) {
            auto& acc = part[static_cast<std::size_t>(id)];
            acc.assign(static_cast<std::size_t>(Co * K), T(0));
            std::vector<T> cols(static_cast<std::size_t>(g.is_pointwise() ? 0 : K * P));
            for (std::int64_t n = lo; n < hi; ++n) image_into(n, cols.data(), acc.data());
        });
        for (const auto& acc : part)
            for (std::int64_t i = 0; i < Co * K; ++i) dw.data()[i] += acc[static_cast<std::size_t>(i)];
    }

    // dy: (N, C_out, Ho, Wo) -> db: (C_out), overwritten
    template <class T>
    static void backward_bias(const Tensor<T, Cpu>& dy, Tensor<T, Cpu>& db) {
        const std::int64_t N = dy.size(0), C = dy.size(1), P = dy.size(2) * dy.size(3);
        parallel_for(0, C, [&](std::int64_t c) {
            double s = 0.0;
            for (std::int64_t n = 0; n < N; ++n) {
                const T* row = dy.data() + (n * C + c) * P;
                for (std::int64_t q = 0; q < P; ++q) s += row[q];
            }
            db.data()[c] = static_cast<T>(s);
        });
    }
};

}  // namespace medimg::ops
