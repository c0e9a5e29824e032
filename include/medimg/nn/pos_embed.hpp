// SPDX-License-Identifier: MIT
// nn/pos_embed.hpp: resampling a ViT's position-embedding grid to another grid, as timm's
// resample_abs_pos_embed (its prefix tokens kept, the grid resized by bicubic interpolation):
// the weights as a matrix (a fixed linear map, so nn/vit.hpp applies it with a differentiable
// product) and on the host for checkpoints (io::load_pretrained). Host-only and light: io includes it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"

namespace medimg::nn {

namespace detail {

/// The 1-D weights (out x in, row-major) of torch.nn.functional.interpolate(mode='bicubic',
/// align_corners=False) from `in` to `out` samples.
///  antialias=True (timm's resample_abs_pos_embed): Pillow's separable filter as ATen's
///    _upsample_bicubic2d_aa computes it, upsampling too: scale = in / out, support = 2 max(scale, 1),
///    output i centred at scale (i + 0.5), taps j in [trunc(centre - support + 0.5), trunc(centre +
///    support + 0.5)) clipped to [0, in) (no border replication), each weighted by the cubic
///    convolution kernel with a = -0.5 at (j - centre + 0.5) / max(scale, 1), normalised to sum 1.
///    Checked against torch in float64 over 652 size pairs (7e-15). ATen's CPU kernel copies row 0
///    into every row for an output of width 1 (make_vit_fixtures.py); this function does not;
///  antialias=False: Keys' cubic convolution with a = -0.75 (PyTorch's bicubic) at source
///    coordinate scale (i + 0.5) - 0.5, four taps with indices clamped to the border.
inline std::vector<double> bicubic_weights(std::int64_t in, std::int64_t out, bool antialias) {
    std::vector<double> w(static_cast<std::size_t>(in * out), 0.0);
    const double scale = static_cast<double>(in) / static_cast<double>(out);
    auto cubic = [](double x, double a) {
        x = std::abs(x);
        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
        if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
        return 0.0;
    };
    for (std::int64_t i = 0; i < out; ++i) {
        double* row = w.data() + i * in;
        if (antialias) {
            const double support = 2.0 * std::max(scale, 1.0), inv = 1.0 / std::max(scale, 1.0);
            const double centre = scale * (static_cast<double>(i) + 0.5);
            const auto lo = std::max<std::int64_t>(static_cast<std::int64_t>(centre - support + 0.5), 0);
            const auto hi = std::min<std::int64_t>(static_cast<std::int64_t>(centre + support + 0.5), in);
            double total = 0.0;
            for (std::int64_t j = lo; j < hi; ++j) total += row[j] = cubic((static_cast<double>(j) - centre + 0.5) * inv, -0.5);
            if (total != 0.0)
                for (std::int64_t j = lo; j < hi; ++j) row[j] /= total;
        } else {
            const double src = scale * (static_cast<double>(i) + 0.5) - 0.5;
            const double x0 = std::floor(src), t = src - x0;
            for (int tap = -1; tap <= 2; ++tap) {
                const auto j = std::clamp<std::int64_t>(static_cast<std::int64_t>(x0) + tap, 0, in - 1);
                row[j] += cubic(t - tap, -0.75);
            }
        }
    }
    return w;
}

/// The matrix M (1, prefix + oh ow, prefix + ih iw) with M pos = the position embedding pos
/// (1, prefix + ih iw, D) resampled to an oh x ow grid: the prefix tokens' embeddings kept, the
/// grid resized by separable bicubic weights (rows x columns, the outer product of bicubic_weights).
template <class T, class B>
Tensor<T, B> resample_matrix(std::int64_t prefix, std::int64_t ih, std::int64_t iw, std::int64_t oh, std::int64_t ow,
                             bool antialias = true) {
    const auto wy = bicubic_weights(ih, oh, antialias), wx = bicubic_weights(iw, ow, antialias);
    const std::int64_t rows = prefix + oh * ow, cols = prefix + ih * iw;
    auto m = Tensor<T, Cpu>::zeros(Shape{1, rows, cols});
    for (std::int64_t p = 0; p < prefix; ++p) m[p * cols + p] = T(1);
    for (std::int64_t y = 0; y < oh; ++y)
        for (std::int64_t x = 0; x < ow; ++x) {
            T* r = m.data() + (prefix + y * ow + x) * cols + prefix;
            for (std::int64_t u = 0; u < ih; ++u)
                for (std::int64_t v = 0; v < iw; ++v)
                    r[u * iw + v] = static_cast<T>(wy[static_cast<std::size_t>(y * ih + u)] * wx[static_cast<std::size_t>(x * iw + v)]);
        }
    if constexpr (std::is_same_v<B, Cpu>)
        return m;
    else
        return m.template to<B>();
}

/// The side of a square grid of n positions, or -1 when n is not a square.
inline std::int64_t square_side(std::int64_t n) {
    auto s = static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
    return s * s == n ? s : -1;
}

}  // namespace detail

/// pos (1, prefix + ih iw, D) resampled to an oh x ow grid on the host (load_pretrained's use).
template <class T>
Tensor<T, Cpu> resample_pos_embed_host(const Tensor<T, Cpu>& pos, std::int64_t prefix, std::int64_t ih, std::int64_t iw,
                                       std::int64_t oh, std::int64_t ow) {
    MEDIMG_CHECK(pos.rank() == 3 && pos.size(0) == 1 && pos.size(1) == prefix + ih * iw && oh >= 1 && ow >= 1, ShapeError,
                 "resample_pos_embed: embedding ", pos.shape(), " is not (1, ", prefix, " + ", ih, " x ", iw,
                 ", D) or the grid ", oh, " x ", ow, " is empty");
    const auto m = detail::resample_matrix<double, Cpu>(prefix, ih, iw, oh, ow);
    const std::int64_t rows = prefix + oh * ow, cols = prefix + ih * iw, D = pos.size(2);
    auto out = Tensor<T, Cpu>::empty(Shape{1, rows, D});
    std::vector<double> acc(static_cast<std::size_t>(D));
    for (std::int64_t r = 0; r < rows; ++r) {
        std::fill(acc.begin(), acc.end(), 0.0);
        for (std::int64_t j = 0; j < cols; ++j) {
            const double w = m[r * cols + j];
            if (w == 0.0) continue;
            for (std::int64_t c = 0; c < D; ++c) acc[static_cast<std::size_t>(c)] += w * static_cast<double>(pos[j * D + c]);
        }
        for (std::int64_t c = 0; c < D; ++c) out[r * D + c] = static_cast<T>(acc[static_cast<std::size_t>(c)]);
    }
    return out;
}

}  // namespace medimg::nn
