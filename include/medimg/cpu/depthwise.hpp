// SPDX-License-Identifier: MIT
// cpu/depthwise.hpp: the depthwise convolution (groups = C_in, one input channel per group;
// MobileNet, EfficientNet's MBConv) as direct loops over planes. With one input channel per output
// channel there is no reduction over channels for a GEMM to exploit: im2col would copy kH*kW times
// the input to multiply it by a 1-row matrix. Instead each (kernel tap i, j) adds w[o, i, j] times
// a shifted input row to the output row, a contiguous multiply-add the compiler vectorises when the
// stride is 1 (strided taps gather).
//   output channel o reads input channel o / m, m = C_out / C_in (the channel multiplier).
// Planes run in parallel: forward over (n, o), input gradient over (n, c) (each sums its m output
// channels), weight gradient over o (each sums over n in order, in double per tap), so every result
// is independent of the thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "medimg/core/parallel.hpp"
#include "medimg/ops/conv2d.hpp"

namespace medimg::cpu::depthwise {

/// One plane's geometry: input H x W, output Ho x Wo, kernel kh x kw, the conv's stride, padding
/// and dilation.
struct Plane {
    std::int64_t H, W, Ho, Wo, kh, kw;
    ops::Conv2dParams p;
    /// Output columns ow in [lo, hi) whose input column ow*stride + dj lies inside [0, W).
    std::pair<std::int64_t, std::int64_t> valid_columns(std::int64_t dj) const {
        std::int64_t lo = dj >= 0 ? 0 : (-dj + p.stride_w - 1) / p.stride_w;
        std::int64_t hi = W - dj > 0 ? (W - dj + p.stride_w - 1) / p.stride_w : 0;
        lo = std::min(lo, Wo);
        return {lo, std::clamp(hi, lo, Wo)};
    }
    /// Calls f(i, j, oh, ih, dj, lo, hi) for every tap (i, j) and output row oh whose input row
    /// ih = oh*stride - pad + i*dilation is inside the image.
    template <class F>
    void for_each_row(F&& f) const {
        for (std::int64_t i = 0; i < kh; ++i)
            for (std::int64_t j = 0; j < kw; ++j) {
                const std::int64_t dj = j * p.dilation_w - p.pad_w;
                const auto [lo, hi] = valid_columns(dj);
                if (lo >= hi) continue;
                for (std::int64_t oh = 0; oh < Ho; ++oh) {
                    const std::int64_t ih = oh * p.stride_h - p.pad_h + i * p.dilation_h;
                    if (ih >= 0 && ih < H) f(i, j, oh, ih, dj, lo, hi);
                }
            }
    }
};

/// y (N, Co, Ho, Wo) = depthwise conv of x (N, C, H, W) with w (Co, 1, kh, kw) [+ b (Co)].
template <class T>
void forward(const T* x, std::int64_t N, std::int64_t C, const T* w, const T* b, std::int64_t Co, const Plane& g, T* y) {
    const std::int64_t m = Co / C, HW = g.H * g.W, P = g.Ho * g.Wo, sw = g.p.stride_w;
    parallel_for(0, N * Co, [&](std::int64_t no) {
        const std::int64_t n = no / Co, o = no % Co;
        const T* in = x + (n * C + o / m) * HW;
        const T* wo = w + o * g.kh * g.kw;
        T* out = y + no * P;
        std::fill(out, out + P, b ? b[o] : T(0));
        g.for_each_row([&](std::int64_t i, std::int64_t j, std::int64_t oh, std::int64_t ih, std::int64_t dj,
                           std::int64_t lo, std::int64_t hi) {
            const T wv = wo[i * g.kw + j];
            const T* src = in + ih * g.W + dj;
            T* dst = out + oh * g.Wo;
            if (sw == 1)
                for (std::int64_t ow = lo; ow < hi; ++ow) dst[ow] += wv * src[ow];
            else
                for (std::int64_t ow = lo; ow < hi; ++ow) dst[ow] += wv * src[ow * sw];
        });
    });
}

/// dx (N, C, H, W), overwritten, from dy (N, Co, Ho, Wo) and w (Co, 1, kh, kw).
template <class T>
void backward_data(const T* dy, const T* w, std::int64_t N, std::int64_t C, std::int64_t Co, const Plane& g, T* dx) {
    const std::int64_t m = Co / C, HW = g.H * g.W, P = g.Ho * g.Wo, sw = g.p.stride_w;
    parallel_for(0, N * C, [&](std::int64_t nc) {
        const std::int64_t n = nc / C, c = nc % C;
        T* out = dx + nc * HW;
        std::fill(out, out + HW, T(0));
        for (std::int64_t o = c * m; o < (c + 1) * m; ++o) {
            const T* gy = dy + (n * Co + o) * P;
            const T* wo = w + o * g.kh * g.kw;
            g.for_each_row([&](std::int64_t i, std::int64_t j, std::int64_t oh, std::int64_t ih, std::int64_t dj,
                               std::int64_t lo, std::int64_t hi) {
                const T wv = wo[i * g.kw + j];
                const T* src = gy + oh * g.Wo;
                T* dst = out + ih * g.W + dj;
                if (sw == 1)
                    for (std::int64_t ow = lo; ow < hi; ++ow) dst[ow] += wv * src[ow];
                else
                    for (std::int64_t ow = lo; ow < hi; ++ow) dst[ow * sw] += wv * src[ow];
            });
        }
    });
}

/// dw (Co, 1, kh, kw), overwritten: dw[o, i, j] = sum over n, oh, ow of dy[n, o, oh, ow] x[n, o/m, ih, iw].
template <class T>
void backward_filter(const T* x, const T* dy, std::int64_t N, std::int64_t C, std::int64_t Co, const Plane& g, T* dw) {
    const std::int64_t m = Co / C, HW = g.H * g.W, P = g.Ho * g.Wo, sw = g.p.stride_w, K = g.kh * g.kw;
    parallel_for(0, Co, [&](std::int64_t o) {
        std::vector<double> acc(static_cast<std::size_t>(K), 0.0);  // one filter's taps
        for (std::int64_t n = 0; n < N; ++n) {
            const T* in = x + (n * C + o / m) * HW;
            const T* gy = dy + (n * Co + o) * P;
            g.for_each_row([&](std::int64_t i, std::int64_t j, std::int64_t oh, std::int64_t ih, std::int64_t dj,
                               std::int64_t lo, std::int64_t hi) {
                const T* src = in + ih * g.W + dj;
                const T* gr = gy + oh * g.Wo;
                T s = 0;
                if (sw == 1)
                    for (std::int64_t ow = lo; ow < hi; ++ow) s += gr[ow] * src[ow];
                else
                    for (std::int64_t ow = lo; ow < hi; ++ow) s += gr[ow] * src[ow * sw];
                acc[static_cast<std::size_t>(i * g.kw + j)] += static_cast<double>(s);
            });
        }
        for (std::int64_t k = 0; k < K; ++k) dw[o * K + k] = static_cast<T>(acc[static_cast<std::size_t>(k)]);
    });
}

}  // namespace medimg::cpu::depthwise
