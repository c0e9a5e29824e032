// SPDX-License-Identifier: MIT
// metrics/regions.hpp: where two exams differ, as regions: the connected parts (8-neighbours) of
// an SSIM map below a threshold, inside the pixels where the map is valid, each with its area,
// centroid, bounding box and mean SSIM. medimg-compare reports them and outlines them on its panel.
// Deliberately not here: region growing, morphology, 3-D.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"

namespace medimg::metrics {

struct Region {
    std::int64_t area = 0;          // pixels
    double cx = 0, cy = 0;          // centroid (x the column, y the row)
    std::int64_t x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // bounding box, inclusive
    double mean_ssim = 0;
};

struct Regions {
    std::vector<Region> regions;     // largest first
    std::vector<std::int32_t> label; // H x W, row-major: 1 + the index into regions, 0 outside every region
};

/// The connected parts of {map < threshold} within `valid` (H x W, nonzero = counts), largest first
/// (ties: top-most, then left-most first); parts smaller than min_area pixels are dropped.
inline Regions low_ssim_regions(const Tensor<double, Cpu>& map, const std::vector<bool>& valid, double threshold, std::int64_t min_area = 1) {
    MEDIMG_CHECK(map.rank() == 2 && static_cast<std::int64_t>(valid.size()) == map.numel(), ShapeError,
                 "metrics::low_ssim_regions: need an (H, W) map and H x W validity flags, got ", map.shape(), " and ", valid.size());
    const std::int64_t H = map.size(0), W = map.size(1);
    Regions out;
    std::vector<std::int32_t> comp(static_cast<std::size_t>(H * W), 0);
    std::vector<Region> found;
    std::vector<std::int64_t> stack;
    const auto low = [&](std::int64_t i) { return valid[static_cast<std::size_t>(i)] && map[i] < threshold; };
    for (std::int64_t start = 0; start < H * W; ++start) {
        if (!low(start) || comp[static_cast<std::size_t>(start)] != 0) continue;
        const auto id = static_cast<std::int32_t>(found.size() + 1);
        Region r{0, 0, 0, start % W, start / W, start % W, start / W, 0};
        stack.assign(1, start);
        comp[static_cast<std::size_t>(start)] = id;
        double sx = 0, sy = 0, ss = 0;
        while (!stack.empty()) {
            const std::int64_t i = stack.back();
            stack.pop_back();
            const std::int64_t y = i / W, x = i % W;
            ++r.area;
            sx += static_cast<double>(x), sy += static_cast<double>(y), ss += map[i];
            r.x0 = std::min(r.x0, x), r.x1 = std::max(r.x1, x), r.y0 = std::min(r.y0, y), r.y1 = std::max(r.y1, y);
            for (std::int64_t dy = -1; dy <= 1; ++dy)
                for (std::int64_t dx = -1; dx <= 1; ++dx) {
                    const std::int64_t ny = y + dy, nx = x + dx;
                    if (ny < 0 || nx < 0 || ny >= H || nx >= W) continue;
                    const std::int64_t j = ny * W + nx;
                    if (!low(j) || comp[static_cast<std::size_t>(j)] != 0) continue;
                    comp[static_cast<std::size_t>(j)] = id;
                    stack.push_back(j);
                }
        }
        r.cx = sx / static_cast<double>(r.area);
        r.cy = sy / static_cast<double>(r.area);
        r.mean_ssim = ss / static_cast<double>(r.area);
        found.push_back(r);
    }
    // keep the large ones, largest first (found is in scan order, so a stable sort breaks ties by position)
    std::vector<std::size_t> order;
    for (std::size_t k = 0; k < found.size(); ++k)
        if (found[k].area >= min_area) order.push_back(k);
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return found[a].area > found[b].area; });
    std::vector<std::int32_t> renumber(found.size() + 1, 0);
    for (std::size_t n = 0; n < order.size(); ++n) {
        out.regions.push_back(found[order[n]]);
        renumber[order[n] + 1] = static_cast<std::int32_t>(n + 1);
    }
    out.label.resize(comp.size());
    for (std::size_t i = 0; i < comp.size(); ++i) out.label[i] = renumber[static_cast<std::size_t>(comp[i])];
    return out;
}

}  // namespace medimg::metrics
