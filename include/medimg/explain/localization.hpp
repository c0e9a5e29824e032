// SPDX-License-Identifier: MIT
// explain/localization.hpp: does a heat map point at the lesion? Scores of a (H, W) map against a
// ground-truth mask of the same size (a disc around a phantom lesion, or any 0/1 mask):
//   pointing game (Zhang et al. 2016, "Top-down Neural Attention by Excitation Backprop",
//     arXiv:1608.00507): a hit when the map's maximum lies inside the mask (they allow 15 pixels
//     of tolerance at 224 px: dilate the mask, e.g. disc_mask with a larger radius);
//   energy inside (Wang et al. 2020, Score-CAM, arXiv:1910.01279, section 4.2, "energy-based
//     pointing game"): sum(map * mask) / sum(map).
// Not here: bounding boxes, IoU of thresholded maps, deletion/insertion curves.
#pragma once

#include <cmath>
#include <cstdint>

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"

namespace medimg::explain {

/// (H, W) mask: 1 where the pixel centre (x, y) (whole numbers) is within `radius` of (cx, cy), else 0.
inline Tensor<float, Cpu> disc_mask(std::int64_t H, std::int64_t W, double cx, double cy, double radius) {
    MEDIMG_CHECK(H >= 1 && W >= 1 && std::isfinite(cx) && std::isfinite(cy) && radius >= 0, ValueError,
                 "explain::disc_mask: need H, W >= 1, a finite centre and radius >= 0; got ", H, "x", W, ", centre (", cx,
                 ", ", cy, "), radius ", radius);
    auto m = Tensor<float, Cpu>::zeros({H, W});
    for (std::int64_t y = 0; y < H; ++y)
        for (std::int64_t x = 0; x < W; ++x) {
            const double dx = static_cast<double>(x) - cx, dy = static_cast<double>(y) - cy;
            if (dx * dx + dy * dy <= radius * radius) m[y * W + x] = 1.f;
        }
    return m;
}

namespace detail {
inline void check_map_and_mask(const char* fn, const Tensor<float, Cpu>& map, const Tensor<float, Cpu>& mask) {
    MEDIMG_CHECK(map.rank() == 2 && map.numel() > 0 && mask.shape() == map.shape(), ShapeError, fn,
                 ": need a non-empty (H, W) map and a mask of the same shape, got ", map.shape(), " and ", mask.shape());
}
}  // namespace detail

/// The pointing game's verdict for one map: true when its maximum lies inside the mask (mask > 0.5).
/// A maximum shared by several pixels (a plateau, as occlusion maps have) counts at the centroid of
/// those pixels, rounded to the nearest pixel, so no corner of the plateau is favoured.
inline bool pointing_hit(const Tensor<float, Cpu>& map, const Tensor<float, Cpu>& mask) {
    detail::check_map_and_mask("explain::pointing_hit", map, mask);
    const std::int64_t W = map.size(1), n = map.numel();
    float best = map[0];
    for (std::int64_t i = 1; i < n; ++i) best = std::max(best, map[i]);
    double sy = 0, sx = 0, count = 0;
    for (std::int64_t i = 0; i < n; ++i)
        if (map[i] == best) {
            sy += static_cast<double>(i / W);
            sx += static_cast<double>(i % W);
            count += 1;
        }
    const auto y = static_cast<std::int64_t>(std::lround(sy / count)), x = static_cast<std::int64_t>(std::lround(sx / count));
    return mask[y * W + x] > 0.5f;
}

/// The share of the map's mass inside the mask, sum(map * mask) / sum(map), in [0, 1] for a
/// non-negative map; 0 for a map that is all zero (it points nowhere).
inline double energy_inside(const Tensor<float, Cpu>& map, const Tensor<float, Cpu>& mask) {
    detail::check_map_and_mask("explain::energy_inside", map, mask);
    double in = 0, all = 0;
    for (std::int64_t i = 0; i < map.numel(); ++i) {
        MEDIMG_CHECK(map[i] >= 0.f, ValueError, "explain::energy_inside: the map must be non-negative, got ", map[i],
                     " at flat index ", i);
        all += map[i];
        if (mask[i] > 0.5f) in += map[i];
    }
    return all > 0 ? in / all : 0.0;
}

}  // namespace medimg::explain
