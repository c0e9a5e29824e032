// SPDX-License-Identifier: MIT
// cpu/conv2d.hpp: convolution on the host as im2col + GEMM (the reference the CUDA backend is
// tested against). Per image n (or a group of images side by side):
//   cols = im2col(x_n)               // (K = C_in*kH*kW, P = Ho*Wo); skipped for 1x1 stride 1 pad 0
//   y_n  = W * cols                  // (C_out, K) x (K, P) -> (C_out, P)
//   dcols = W^T * dy_n; dx_n = col2im(dcols)
//   dW  += dy_n * cols^T             // summed over groups in per-thread partials, fixed order
// Images go in groups side by side through one GEMM (see image_groups); threads go over groups
// when there are enough, otherwise into the GEMM. 3x3 stride-1 pad-1 convolutions (forward and
// input gradient, weight gradient) go through Winograd F(2x2, 3x3) instead (cpu/winograd.hpp):
// 2.25x fewer multiply-adds. Grouped convolutions: depthwise ones (one input channel per group)
// through direct per-plane loops (cpu/depthwise.hpp); other group counts run the groups=1 path per
// group on channel slices gathered into contiguous buffers (ResNeXt-style groups are not used by any
// medimg model yet, so that path is plain rather than fast). Deliberately not here: NHWC.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <utility>
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
    /// Output columns ow in [lo, hi) whose input column ow*stride + dj lies inside [0, W).
    std::pair<std::int64_t, std::int64_t> valid_columns(std::int64_t dj) const {
        std::int64_t lo = dj >= 0 ? 0 : (-dj + p.stride_w - 1) / p.stride_w;
        std::int64_t hi = W - dj > 0 ? (W - dj + p.stride_w - 1) / p.stride_w : 0;
        lo = std::min(lo, Wo);
        return {lo, std::clamp(hi, lo, Wo)};
    }
    bool is_pointwise() const {
        return kh == 1 && kw == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0;
    }
};

/// cols[(c*kh + i)*kw + j][oh*Wo + ow] = x[c][oh*s - pad + i*d][ow*s - pad + j*d], 0 outside.
/// x: (C, H, W) -> cols: (K, P), rows `ld` apart (ld >= P: several images side by side)
template <class T>
void im2col(const T* x, const ConvGeom& g, T* cols, std::int64_t ld) {
    const auto& p = g.p;
    for (std::int64_t c = 0; c < g.C; ++c)
        for (std::int64_t i = 0; i < g.kh; ++i)
            for (std::int64_t j = 0; j < g.kw; ++j) {
                T* row = cols + ((c * g.kh + i) * g.kw + j) * ld;
                const T* plane = x + c * g.H * g.W;
                const std::int64_t dj = j * p.dilation_w - p.pad_w;
                const auto [lo, hi] = g.valid_columns(dj);
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
/// cols: (K, P) with rows `ld` apart -> dx: (C, H, W), which the caller zeroes first.
template <class T>
void col2im(const T* cols, const ConvGeom& g, T* dx, std::int64_t ld) {
    const auto& p = g.p;
    for (std::int64_t c = 0; c < g.C; ++c)
        for (std::int64_t i = 0; i < g.kh; ++i)
            for (std::int64_t j = 0; j < g.kw; ++j) {
                const T* row = cols + ((c * g.kh + i) * g.kw + j) * ld;
                T* plane = dx + c * g.H * g.W;
                const std::int64_t dj = j * p.dilation_w - p.pad_w;
                const auto [lo, hi] = g.valid_columns(dj);
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

/// im2col / col2im split over input channels when called outside a parallel region: a group that
/// runs alone (batch 1, or fewer groups than threads) threads its GEMM, and its column buffer was
/// then filled by one thread while the other waited. Channel slices write disjoint rows of cols
/// (and disjoint planes of dx), so the result is the same.
template <class T>
void im2col_parallel(const T* x, const ConvGeom& g, T* cols, std::int64_t ld) {
    if (in_parallel() || num_threads() == 1 || g.C < 2) return im2col(x, g, cols, ld);
    parallel_chunks(0, g.C, [&](std::int64_t lo, std::int64_t hi, int) {
        ConvGeom part = g;
        part.C = hi - lo;
        im2col(x + lo * g.H * g.W, part, cols + lo * g.kh * g.kw * ld, ld);
    });
}
template <class T>
void col2im_parallel(const T* cols, const ConvGeom& g, T* dx, std::int64_t ld) {
    if (in_parallel() || num_threads() == 1 || g.C < 2) return col2im(cols, g, dx, ld);
    parallel_chunks(0, g.C, [&](std::int64_t lo, std::int64_t hi, int) {
        ConvGeom part = g;
        part.C = hi - lo;
        col2im(cols + lo * g.kh * g.kw * ld, part, dx + lo * g.H * g.W, ld);
    });
}

/// Images are processed in groups of g, side by side in one GEMM, so that layers with small
/// feature maps (P = Ho*Wo of 49 or 16) still give the GEMM hundreds of columns and the weights
/// are packed once per group rather than once per image. Groups run in parallel when there are at
/// least as many as threads (each GEMM then serial), otherwise the GEMM threads itself.
struct Groups {
    std::int64_t size, count;
};
inline Groups image_groups(std::int64_t N, std::int64_t P) {
    constexpr std::int64_t kTargetColumns = 512;
    std::int64_t g = std::clamp<std::int64_t>((kTargetColumns + P - 1) / P, 1, N);
    const std::int64_t t = num_threads();
    if (N >= t) {
        g = std::min(g, (N + t - 1) / t);  // keep at least one group per thread
        // A whole number of groups per thread: batch 32 at P = 49 (ResNet18's layer4 at 224) gave
        // 3 groups of 11 on 2 threads, one thread idle a third of the time; now 4 groups of 8.
        const std::int64_t count = (N + g - 1) / g, per_thread = (count + t - 1) / t;
        g = (N + per_thread * t - 1) / (per_thread * t);
    }
    return {g, (N + g - 1) / g};
}

/// Per-thread scratch for column buffers, grown on demand and never zeroed (every element is
/// written before it is read). A std::vector per call zero-filled up to 7 MB per image group and
/// faulted its pages in again: ~4% of a ResNet18 training step at 224 (perf: memset, clear_page).
/// `slot` keeps the buffers of one call apart (0, 1: columns / outputs; 2: Winograd's filters).
template <class T>
T* conv_scratch(int slot, std::int64_t n) {
    struct Buf {
        std::unique_ptr<T[]> p;
        std::int64_t n = 0;
    };
    thread_local Buf bufs[3];
    Buf& b = bufs[slot];
    if (b.n < n) {
        b.p.reset(new T[static_cast<std::size_t>(n)]);  // default-initialised: no fill
        b.n = n;
    }
    return b.p.get();
}

/// Runs f(first_image, images) for every group.
template <class T, class F>
void for_each_group(std::int64_t N, const Groups& gr, F&& f) {
    auto run = [&](std::int64_t lo, std::int64_t hi) {
        for (std::int64_t b = lo; b < hi; ++b) {
            const std::int64_t n0 = b * gr.size;
            f(n0, std::min(gr.size, N - n0));
        }
    };
    if (gr.count >= num_threads() && !in_parallel())
        parallel_chunks(0, gr.count, [&](std::int64_t lo, std::int64_t hi, int) { run(lo, hi); });
    else
        run(0, gr.count);
}

/// What a convolution's output gets before it is stored (the inference path's fused tail):
/// y = act(conv + bias[c] + residual), each part optional. residual has y's shape (N, C_out, Ho, Wo).
template <class T>
struct Epilogue {
    const T* bias = nullptr;
    const T* residual = nullptr;
    bool relu = false;
    bool empty() const { return !bias && !residual && !relu; }
};
/// dst[q] = act(src[q] + b + res[q]) for q < n (src may be dst; res may be null).
template <class T>
void epilogue_row(T* dst, const T* src, std::int64_t n, T b, const T* res, bool relu) {
    if (res) {
        if (relu)
            for (std::int64_t q = 0; q < n; ++q) dst[q] = std::max(src[q] + b + res[q], T(0));
        else
            for (std::int64_t q = 0; q < n; ++q) dst[q] = src[q] + b + res[q];
    } else if (relu) {
        for (std::int64_t q = 0; q < n; ++q) dst[q] = std::max(src[q] + b, T(0));
    } else {
        for (std::int64_t q = 0; q < n; ++q) dst[q] = src[q] + b;
    }
}

/// y (N, Co, Ho, Wo) = ep(W * im2col(x)) for x (N, C, H, W): per group of g images, cols (K, g*P)
/// = im2col, out (C_out, g*P) = mul(g*P, cols, ld, out, ld) (the product with the filters W (C_out,
/// K), a plain or a pre-packed GEMM), then the epilogue while the group's output is in cache.
template <class T, class Mul>
void im2col_forward(const T* x, std::int64_t N, const ConvGeom& g, std::int64_t Co, Mul&& mul, const Epilogue<T>& ep, T* y) {
    const std::int64_t K = g.K(), P = g.P(), CHW = g.C * g.H * g.W;
    const auto gr = image_groups(N, P);
    for_each_group<T>(N, gr, [&](std::int64_t n0, std::int64_t ng) {
        const std::int64_t ld = ng * P;
        const bool direct = ng == 1;  // write straight into y
        const bool no_cols = direct && g.is_pointwise();
        T* cols = no_cols ? nullptr : conv_scratch<T>(0, K * ld);
        T* out = direct ? y + n0 * Co * P : conv_scratch<T>(1, Co * ld);
        if (!no_cols)
            for (std::int64_t j = 0; j < ng; ++j) im2col_parallel(x + (n0 + j) * CHW, g, cols + j * P, ld);
        mul(ld, no_cols ? x + n0 * CHW : cols, ld, out, ld);  // (Co, g*P)
        if (direct && ep.empty()) return;
        // over (image, channel) rows; threaded when this group runs alone (batch 1), else serial
        parallel_for(0, ng * Co, [&](std::int64_t r) {
            const std::int64_t j = r / Co, c = r % Co, at = ((n0 + j) * Co + c) * P;
            epilogue_row(y + at, direct ? y + at : out + c * ld + j * P, P, ep.bias ? ep.bias[c] : T(0),
                         ep.residual ? ep.residual + at : nullptr, ep.relu);
        }, std::max<std::int64_t>(1, 8192 / std::max<std::int64_t>(P, 1)));
    });
}

}  // namespace medimg::cpu

#include "medimg/cpu/depthwise.hpp"
#include "medimg/cpu/winograd.hpp"

namespace medimg::ops {

template <>
struct Conv2dImpl<Cpu> {
    // x: (N, C_in, H, W), w: (C_out, C_in, kH, kW), b: (C_out)? -> y: (N, C_out, Ho, Wo)
    // Per group of g images: cols (K, g*P) = im2col; out (C_out, g*P) = W * cols; scatter to y.
    template <class T>
    static void forward(const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& w, const Tensor<T, Cpu>& b, Tensor<T, Cpu>& y,
                        const Conv2dParams& p) {
        if (p.groups > 1) {
            if (is_depthwise(x.shape(), w.shape(), p))
                return cpu::depthwise::forward(x.data(), x.size(0), x.size(1), w.data(), b.defined() ? b.data() : nullptr,
                                               w.size(0), plane(x.shape(), w.shape(), y.shape(), p), y.data());
            return per_group(x, w, y, p, [&](const Tensor<T, Cpu>& xg, const Tensor<T, Cpu>& wg, Tensor<T, Cpu>& yg,
                                             std::int64_t o0, const Conv2dParams& q) {
                forward(xg, wg, b.defined() ? b.slice0(o0, wg.size(0)) : Tensor<T, Cpu>(), yg, q);
            });
        }
        const auto g = cpu::conv_geom(x, w.shape(), y.shape(), p);
        const std::int64_t N = x.size(0), Co = w.size(0), K = g.K();
        if (N == 0 || Co == 0) return;
        const cpu::Epilogue<T> ep{b.defined() ? b.data() : nullptr};
        if (const int m = g.C > 0 ? cpu::winograd::tile(g.kh, g.kw, p, N, g.H, g.W) : 0) {
            T* U = cpu::conv_scratch<T>(2, cpu::winograd::positions(m) * Co * g.C);
            cpu::winograd::filter_transform(m, w.data(), Co, g.C, false, U);
            cpu::winograd::convolve(m, x.data(), N, g.C, g.H, g.W, Co, cpu::winograd::plain_filters(U, Co, g.C), ep, y.data());
            return;
        }
        cpu::im2col_forward(x.data(), N, g, Co, [&](std::int64_t n, const T* B, std::int64_t ldb, T* out, std::int64_t ldc) {
            cpu::gemm_ld(false, false, Co, n, K, w.data(), K, B, ldb, out, ldc, false);
        }, ep, y.data());
    }

    // ---- groups > 1 ----
    static bool is_depthwise(const Shape& x, const Shape& w, const Conv2dParams& p) {
        return p.groups == x[1] && w[1] == 1;
    }
    static cpu::depthwise::Plane plane(const Shape& x, const Shape& w, const Shape& y, const Conv2dParams& p) {
        return {x[2], x[3], y[2], y[3], w[2], w[3], p};
    }
    /// Copies `count` channels of every image: src channels [s0, s0+count) of (N, Cs, P) into dst
    /// channels [d0, d0+count) of (N, Cd, P).
    template <class T>
    static void copy_channels(const T* src, std::int64_t Cs, std::int64_t s0, T* dst, std::int64_t Cd, std::int64_t d0,
                              std::int64_t count, std::int64_t N, std::int64_t P) {
        for (std::int64_t n = 0; n < N; ++n)
            std::copy(src + (n * Cs + s0) * P, src + (n * Cs + s0 + count) * P, dst + (n * Cd + d0) * P);
    }
    enum class Direction { forward, data, filter };
    /// The general grouped case: for each group gi, the input-side slice of `x` (channels
    /// [gi*C/G, ...)) and the output-side slice of `y` (channels [gi*Co/G, ...)) gathered into
    /// contiguous tensors, w's rows for the group as a view, f(x_g, w_g, y_g, first output channel,
    /// params with groups = 1), then the slice the direction writes scattered back: y (forward),
    /// x (= dx, data); the filter direction writes its w view in place.
    template <class T, class X, class F>
    static void per_group(X& x, const Tensor<T, Cpu>& w, Tensor<T, Cpu>& y, const Conv2dParams& p, F&& f,
                          Direction dir = Direction::forward) {
        const std::int64_t N = x.size(0), C = x.size(1), Co = w.size(0), G = p.groups, Cg = C / G, Cog = Co / G;
        const std::int64_t HW = x.size(2) * x.size(3), P = y.size(2) * y.size(3);
        Conv2dParams q = p;
        q.groups = 1;
        auto xg = Tensor<T, Cpu>::empty({N, Cg, x.size(2), x.size(3)});
        auto yg = Tensor<T, Cpu>::empty({N, Cog, y.size(2), y.size(3)});
        for (std::int64_t gi = 0; gi < G; ++gi) {
            if (dir != Direction::data) copy_channels(x.data(), C, gi * Cg, xg.data(), Cg, 0, Cg, N, HW);
            if (dir != Direction::forward) copy_channels(y.data(), Co, gi * Cog, yg.data(), Cog, 0, Cog, N, P);
            auto wg = w.slice0(gi * Cog, Cog);
            f(xg, wg, yg, gi * Cog, q);
            if (dir == Direction::forward) copy_channels(yg.data(), Cog, 0, y.data(), Co, gi * Cog, Cog, N, P);
            if constexpr (!std::is_const_v<X>)
                if (dir == Direction::data) copy_channels(xg.data(), Cg, 0, x.data(), C, gi * Cg, Cg, N, HW);
        }
    }

    /// Copies dy of images [n0, n0+ng) side by side: (C_out, ng*P).
    template <class T>
    static void gather_dy(const Tensor<T, Cpu>& dy, std::int64_t n0, std::int64_t ng, std::int64_t Co, std::int64_t P, T* dst) {
        const std::int64_t ld = ng * P;
        for (std::int64_t j = 0; j < ng; ++j)
            for (std::int64_t c = 0; c < Co; ++c)
                std::copy(dy.data() + ((n0 + j) * Co + c) * P, dy.data() + ((n0 + j) * Co + c + 1) * P, dst + c * ld + j * P);
    }

    // dy: (N, C_out, Ho, Wo), w: (C_out, C_in, kH, kW) -> dx: (N, C_in, H, W), overwritten
    // Per group: dcols (K, g*P) = W^T * dy_group; col2im per image.
    template <class T>
    static void backward_data(const Tensor<T, Cpu>& dy, const Tensor<T, Cpu>& w, Tensor<T, Cpu>& dx,
                              const Conv2dParams& p) {
        if (p.groups > 1) {
            if (is_depthwise(dx.shape(), w.shape(), p))
                return cpu::depthwise::backward_data(dy.data(), w.data(), dx.size(0), dx.size(1), w.size(0),
                                                     plane(dx.shape(), w.shape(), dy.shape(), p), dx.data());
            // gathered: dx's group slice as "x" (written back), dy's as "y" (read)
            auto dyc = dy;
            return per_group(dx, w, dyc, p, [&](Tensor<T, Cpu>& dxg, const Tensor<T, Cpu>& wg, Tensor<T, Cpu>& dyg,
                                                std::int64_t, const Conv2dParams& q) { backward_data(dyg, wg, dxg, q); },
                             Direction::data);
        }
        const auto g = cpu::conv_geom(dx, w.shape(), dy.shape(), p);
        const std::int64_t N = dx.size(0), Co = w.size(0), K = g.K(), P = g.P(), CHW = g.C * g.H * g.W;
        if (N == 0 || g.C == 0) return;
        if (const int m = cpu::winograd::tile(g.kh, g.kw, p, N, g.H, g.W)) {
            // dx = the pad-1 3x3 convolution of dy with rot180(w), channel axes swapped
            if (Co == 0) {
                dx.zero_();
                return;
            }
            T* U = cpu::conv_scratch<T>(2, cpu::winograd::positions(m) * g.C * Co);
            cpu::winograd::filter_transform(m, w.data(), g.C, Co, true, U);
            cpu::winograd::convolve(m, dy.data(), N, Co, g.H, g.W, g.C, cpu::winograd::plain_filters(U, g.C, Co),
                                    cpu::Epilogue<T>{}, dx.data());
            return;
        }
        const auto gr = cpu::image_groups(N, P);
        cpu::for_each_group<T>(N, gr, [&](std::int64_t n0, std::int64_t ng) {
            const std::int64_t ld = ng * P;
            const bool direct = ng == 1;
            if (direct && g.is_pointwise()) {
                cpu::gemm_ld(true, false, K, P, Co, w.data(), K, dy.data() + n0 * Co * P, P, dx.data() + n0 * CHW, P, false);
                return;
            }
            T* dcols = cpu::conv_scratch<T>(0, K * ld);
            const T* dyg = dy.data() + n0 * Co * P;
            if (!direct) {
                T* gathered = cpu::conv_scratch<T>(1, Co * ld);
                gather_dy(dy, n0, ng, Co, P, gathered);
                dyg = gathered;
            }
            cpu::gemm_ld(true, false, K, ld, Co, w.data(), K, dyg, ld, dcols, ld, false);  // (K, g*P)
            for (std::int64_t j = 0; j < ng; ++j) {
                T* dxn = dx.data() + (n0 + j) * CHW;
                std::fill(dxn, dxn + CHW, T(0));
                cpu::col2im_parallel(dcols + j * P, g, dxn, ld);
            }
        });
    }

    // x: (N, C_in, H, W), dy: (N, C_out, Ho, Wo) -> dw: (C_out, C_in, kH, kW), overwritten
    // dW = sum over groups of dy_group (Co, g*P) * cols_group^T (g*P, K); per-thread partials
    // are added in thread order, so a fixed thread count gives bit-identical results.
    template <class T>
    static void backward_filter(const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& dy, Tensor<T, Cpu>& dw,
                                const Conv2dParams& p) {
        if (p.groups > 1) {
            if (is_depthwise(x.shape(), dw.shape(), p))
                return cpu::depthwise::backward_filter(x.data(), dy.data(), x.size(0), x.size(1), dw.size(0),
                                                       plane(x.shape(), dw.shape(), dy.shape(), p), dw.data());
            auto dyc = dy;
            return per_group(x, dw, dyc, p, [&](const Tensor<T, Cpu>& xg, const Tensor<T, Cpu>& dwg, Tensor<T, Cpu>& dyg,
                                                std::int64_t, const Conv2dParams& q) {
                auto view = dwg;  // a view of dw's rows for this group: written in place
                backward_filter(xg, dyg, view, q);
            }, Direction::filter);
        }
        const auto g = cpu::conv_geom(x, dw.shape(), dy.shape(), p);
        const std::int64_t N = x.size(0), Co = dw.size(0), K = g.K(), P = g.P(), CHW = g.C * g.H * g.W;
        if (const int m = N > 0 && Co > 0 && g.C > 0 ? cpu::winograd::weight_tile(g.kh, g.kw, p, N, g.H, g.W) : 0) {
            cpu::winograd::weight_gradient(m, x.data(), dy.data(), N, g.C, g.H, g.W, Co, dw.data());
            return;
        }
        const auto gr = cpu::image_groups(N, P);
        auto group_into = [&](std::int64_t n0, std::int64_t ng, T* acc) {
            const std::int64_t ld = ng * P;
            const bool direct = ng == 1;
            const bool no_cols = direct && g.is_pointwise();
            T* cols = no_cols ? nullptr : cpu::conv_scratch<T>(0, K * ld);
            if (!no_cols)
                for (std::int64_t j = 0; j < ng; ++j) cpu::im2col_parallel(x.data() + (n0 + j) * CHW, g, cols + j * P, ld);
            const T* dyg = dy.data() + n0 * Co * P;
            if (!direct) {
                T* gathered = cpu::conv_scratch<T>(1, Co * ld);
                gather_dy(dy, n0, ng, Co, P, gathered);
                dyg = gathered;
            }
            const T* B = no_cols ? x.data() + n0 * CHW : cols;
            cpu::gemm_ld(false, true, Co, K, ld, dyg, ld, B, ld, acc, K, true);  // (Co, K) += (Co, gP)(gP, K)
        };
        dw.zero_();
        const int t = static_cast<int>(std::min<std::int64_t>(num_threads(), gr.count));
        if (t <= 1 || in_parallel()) {
            for (std::int64_t b = 0; b < gr.count; ++b) group_into(b * gr.size, std::min(gr.size, N - b * gr.size), dw.data());
            return;
        }
        std::vector<std::vector<T>> part(static_cast<std::size_t>(t));
        parallel_chunks(0, gr.count, [&](std::int64_t lo, std::int64_t hi, int id) {
            auto& acc = part[static_cast<std::size_t>(id)];
            acc.assign(static_cast<std::size_t>(Co * K), T(0));
            for (std::int64_t b = lo; b < hi; ++b) group_into(b * gr.size, std::min(gr.size, N - b * gr.size), acc.data());
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
