// SPDX-License-Identifier: MIT
// cpu/pooling.hpp: host max pooling, average pooling and adaptive average pooling, one (n, c)
// plane per task.
// Ties in max pooling go to the first maximum in row-major window order; NaN wins (as PyTorch).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "medimg/core/parallel.hpp"
#include "medimg/ops/pooling.hpp"

namespace medimg::ops {

template <>
struct PoolImpl<Cpu> {
    /// Where a window's maximum sits, as I holds it: int32 -> its index ih * W + iw in the plane
    /// (the ops:: contract); uint8 -> its place (ih - h0) * kw + (iw - w0) in the window (windows
    /// of at most 255 values; 255 = none), a quarter of the memory that training keeps for backward.
    template <class I>
    static I encode(std::int64_t ih, std::int64_t iw, std::int64_t h0, std::int64_t w0, std::int64_t W, std::int64_t kw) {
        if constexpr (std::is_same_v<I, std::uint8_t>)
            return static_cast<I>(ih < 0 ? 255 : (ih - h0) * kw + (iw - w0));
        else
            return static_cast<I>(ih < 0 ? -1 : ih * W + iw);
    }

    template <class T, class I>
    static void max_forward(const Tensor<T, Cpu>& x, Tensor<T, Cpu>& y, Tensor<I, Cpu>& argmax, const MaxPool2dParams& p) {
        static_assert(std::is_same_v<I, std::int32_t> || std::is_same_v<I, std::uint8_t>, "max_forward: int32 or uint8 indices");
        const std::int64_t H = x.size(2), W = x.size(3), Ho = y.size(2), Wo = y.size(3), kw = p.kernel_w;
        // The general scan (any window, clipped at the borders, NaN checked per value) is the
        // reference; windows inside the plane's columns take a branch-free scan (max and place by
        // select, NaN noted on the side) and fall back to it only when they hold a NaN. Same
        // answer, ties included; the general scan alone was ~10% of ResNet18 inference.
        auto general = [&](const T* in, std::int64_t oh, std::int64_t ow, T& best_out, I& at_out) {
            const std::int64_t h0 = oh * p.stride_h - p.pad_h, w0 = ow * p.stride_w - p.pad_w;
            T best = -std::numeric_limits<T>::infinity();
            std::int64_t bi = -1, bj = -1;
            for (std::int64_t ih = std::max<std::int64_t>(h0, 0); ih < std::min(h0 + p.kernel_h, H); ++ih)
                for (std::int64_t iw = std::max<std::int64_t>(w0, 0); iw < std::min(w0 + p.kernel_w, W); ++iw) {
                    const T v = in[ih * W + iw];
                    if (bi < 0 || v > best || std::isnan(v)) {
                        best = v;
                        bi = ih;
                        bj = iw;
                        if (std::isnan(v)) goto done;
                    }
                }
        done:
            best_out = best;
            at_out = encode<I>(bi, bj, h0, w0, W, kw);
        };
        parallel_for(0, x.size(0) * x.size(1), [&](std::int64_t nc) {
            const T* in = x.data() + nc * H * W;
            T* out = y.data() + nc * Ho * Wo;
            I* idx = argmax.data() + nc * Ho * Wo;
            for (std::int64_t oh = 0; oh < Ho; ++oh) {
                const std::int64_t h0 = oh * p.stride_h - p.pad_h;
                const std::int64_t hlo = std::max<std::int64_t>(h0, 0), hhi = std::min(h0 + p.kernel_h, H);
                for (std::int64_t ow = 0; ow < Wo; ++ow) {
                    const std::int64_t w0 = ow * p.stride_w - p.pad_w;
                    T& o = out[oh * Wo + ow];
                    I& oi = idx[oh * Wo + ow];
                    if (w0 < 0 || w0 + kw > W || hlo >= hhi) {
                        general(in, oh, ow, o, oi);
                        continue;
                    }
                    std::int64_t bi = hlo, bj = 0;
                    T best = in[hlo * W + w0];
                    bool nan = best != best;
                    for (std::int64_t ih = hlo; ih < hhi; ++ih) {
                        const T* row = in + ih * W + w0;
                        for (std::int64_t j = 0; j < kw; ++j) {
                            const T v = row[j];
                            const bool gt = v > best;
                            best = gt ? v : best;
                            bi = gt ? ih : bi;
                            bj = gt ? j : bj;
                            nan |= v != v;
                        }
                    }
                    if (nan) {
                        general(in, oh, ow, o, oi);
                    } else {
                        o = best;
                        oi = encode<I>(bi, w0 + bj, h0, w0, W, kw);
                    }
                }
            }
        });
    }

    template <class T>
    static void max_backward(const Tensor<T, Cpu>& dy, const Tensor<std::int32_t, Cpu>& argmax, Tensor<T, Cpu>& dx) {
        const std::int64_t HW = dx.size(2) * dx.size(3), P = dy.size(2) * dy.size(3);
        parallel_for(0, dx.size(0) * dx.size(1), [&](std::int64_t nc) {
            T* out = dx.data() + nc * HW;
            std::fill(out, out + HW, T(0));
            const T* g = dy.data() + nc * P;
            const std::int32_t* idx = argmax.data() + nc * P;
            for (std::int64_t q = 0; q < P; ++q)
                if (idx[q] >= 0) out[idx[q]] += g[q];
        });
    }

    /// max_backward with places in the window (uint8, as max_forward<T, uint8_t> writes them).
    template <class T>
    static void max_backward(const Tensor<T, Cpu>& dy, const Tensor<std::uint8_t, Cpu>& place, Tensor<T, Cpu>& dx,
                             const MaxPool2dParams& p) {
        const std::int64_t H = dx.size(2), W = dx.size(3), Ho = dy.size(2), Wo = dy.size(3);
        std::int64_t offset[256];  // place -> (row, column) offset in the plane from the window's corner
        for (std::int64_t k = 0; k < 255; ++k) offset[k] = (k / p.kernel_w) * W + k % p.kernel_w;
        parallel_for(0, dx.size(0) * dx.size(1), [&](std::int64_t nc) {
            T* out = dx.data() + nc * H * W;
            std::fill(out, out + H * W, T(0));
            const T* g = dy.data() + nc * Ho * Wo;
            const std::uint8_t* idx = place.data() + nc * Ho * Wo;
            for (std::int64_t oh = 0; oh < Ho; ++oh) {
                const std::int64_t corner = (oh * p.stride_h - p.pad_h) * W - p.pad_w;
                for (std::int64_t ow = 0; ow < Wo; ++ow) {
                    const std::uint8_t k = idx[oh * Wo + ow];
                    if (k != 255) out[corner + ow * p.stride_w + offset[k]] += g[oh * Wo + ow];
                }
            }
        });
    }

    template <class T>
    static void avg_forward(const Tensor<T, Cpu>& x, Tensor<T, Cpu>& y, const AvgPool2dParams& p) {
        const std::int64_t H = x.size(2), W = x.size(3), Ho = y.size(2), Wo = y.size(3);
        const double inv = 1.0 / static_cast<double>(p.kernel_h * p.kernel_w);
        parallel_for(0, x.size(0) * x.size(1), [&](std::int64_t nc) {
            const T* in = x.data() + nc * H * W;
            T* out = y.data() + nc * Ho * Wo;
            for (std::int64_t oh = 0; oh < Ho; ++oh)
                for (std::int64_t ow = 0; ow < Wo; ++ow) {
                    double s = 0.0;
                    for (std::int64_t i = 0; i < p.kernel_h; ++i) {
                        const T* row = in + (oh * p.stride_h + i) * W + ow * p.stride_w;
                        for (std::int64_t j = 0; j < p.kernel_w; ++j) s += row[j];
                    }
                    out[oh * Wo + ow] = static_cast<T>(s * inv);
                }
        });
    }

    template <class T>
    static void avg_backward(const Tensor<T, Cpu>& dy, Tensor<T, Cpu>& dx, const AvgPool2dParams& p) {
        const std::int64_t H = dx.size(2), W = dx.size(3), Ho = dy.size(2), Wo = dy.size(3);
        const T inv = static_cast<T>(1.0 / static_cast<double>(p.kernel_h * p.kernel_w));
        parallel_for(0, dx.size(0) * dx.size(1), [&](std::int64_t nc) {
            T* out = dx.data() + nc * H * W;
            std::fill(out, out + H * W, T(0));
            const T* g = dy.data() + nc * Ho * Wo;
            for (std::int64_t oh = 0; oh < Ho; ++oh)
                for (std::int64_t ow = 0; ow < Wo; ++ow) {
                    const T share = g[oh * Wo + ow] * inv;
                    for (std::int64_t i = 0; i < p.kernel_h; ++i) {
                        T* row = out + (oh * p.stride_h + i) * W + ow * p.stride_w;
                        for (std::int64_t j = 0; j < p.kernel_w; ++j) row[j] += share;
                    }
                }
        });
    }

    static std::int64_t start_index(std::int64_t o, std::int64_t out, std::int64_t in) { return (o * in) / out; }
    static std::int64_t end_index(std::int64_t o, std::int64_t out, std::int64_t in) {
        return ((o + 1) * in + out - 1) / out;
    }

    template <class T>
    static void adaptive_avg_forward(const Tensor<T, Cpu>& x, Tensor<T, Cpu>& y) {
        const std::int64_t H = x.size(2), W = x.size(3), Ho = y.size(2), Wo = y.size(3);
        parallel_for(0, x.size(0) * x.size(1), [&](std::int64_t nc) {
            const T* in = x.data() + nc * H * W;
            T* out = y.data() + nc * Ho * Wo;
            for (std::int64_t oh = 0; oh < Ho; ++oh) {
                const std::int64_t h0 = start_index(oh, Ho, H), h1 = end_index(oh, Ho, H);
                for (std::int64_t ow = 0; ow < Wo; ++ow) {
                    const std::int64_t w0 = start_index(ow, Wo, W), w1 = end_index(ow, Wo, W);
                    double s = 0.0;
                    for (std::int64_t ih = h0; ih < h1; ++ih)
                        for (std::int64_t iw = w0; iw < w1; ++iw) s += in[ih * W + iw];
                    out[oh * Wo + ow] = static_cast<T>(s / static_cast<double>((h1 - h0) * (w1 - w0)));
                }
            }
        });
    }

    template <class T>
    static void adaptive_avg_backward(const Tensor<T, Cpu>& dy, Tensor<T, Cpu>& dx) {
        const std::int64_t H = dx.size(2), W = dx.size(3), Ho = dy.size(2), Wo = dy.size(3);
        parallel_for(0, dx.size(0) * dx.size(1), [&](std::int64_t nc) {
            T* out = dx.data() + nc * H * W;
            std::fill(out, out + H * W, T(0));
            const T* g = dy.data() + nc * Ho * Wo;
            for (std::int64_t oh = 0; oh < Ho; ++oh) {
                const std::int64_t h0 = start_index(oh, Ho, H), h1 = end_index(oh, Ho, H);
                for (std::int64_t ow = 0; ow < Wo; ++ow) {
                    const std::int64_t w0 = start_index(ow, Wo, W), w1 = end_index(ow, Wo, W);
                    const T share = g[oh * Wo + ow] / static_cast<T>((h1 - h0) * (w1 - w0));
                    for (std::int64_t ih = h0; ih < h1; ++ih)
                        for (std::int64_t iw = w0; iw < w1; ++iw) out[ih * W + iw] += share;
                }
            }
        });
    }
};

}  // namespace medimg::ops
