// SPDX-License-Identifier: MIT
// dist/sampler.hpp: each process's share of an epoch in data-parallel training, as
// torch.utils.data.DistributedSampler cuts it (https://pytorch.org/docs/stable/data.html,
// torch/utils/data/distributed.py): every rank computes the same epoch order (same seed), then
//   drop_last = false: the order is padded to a multiple of world by repeating it from its start
//                      (whole repeats when it is shorter than the padding), each rank gets
//                      ceil(n / world) samples;
//   drop_last = true:  the order is cut to floor(n / world) * world (when n % world != 0), each
//                      rank gets floor(n / world);
// and rank r takes positions r, r + world, r + 2 world, ... of that list. The shards are disjoint
// (up to the padding's repeats) and together cover the epoch, whatever the order was.
// No MPI here: the cut is arithmetic (dist/mpi.hpp carries the messages between processes).
#pragma once

#include <cstdint>
#include <vector>

#include "medimg/error.hpp"

namespace medimg::dist {

/// Samples per rank for an epoch of n samples over `world` ranks (DistributedSampler.num_samples).
inline std::int64_t samples_per_rank(std::int64_t n, std::int64_t world, bool drop_last) {
    MEDIMG_CHECK(world >= 1 && n >= 0, ValueError, "dist::samples_per_rank: need world >= 1 and n >= 0, got ", world, " and ", n);
    if (drop_last && n % world != 0) return (n - world + world - 1) / world;  // ceil((n - world) / world)
    return (n + world - 1) / world;
}

/// Rank `rank`'s share of `order` (the epoch's order, the same on every rank).
inline std::vector<std::int64_t> shard(const std::vector<std::int64_t>& order, std::int64_t rank, std::int64_t world,
                                       bool drop_last) {
    MEDIMG_CHECK(world >= 1 && rank >= 0 && rank < world, ValueError, "dist::shard: rank ", rank, " is not in [0, ", world,
                 ")");
    const auto n = static_cast<std::int64_t>(order.size());
    const std::int64_t per = samples_per_rank(n, world, drop_last), total = per * world;
    std::vector<std::int64_t> out;
    if (per <= 0 || n == 0) return out;
    out.reserve(static_cast<std::size_t>(per));
    for (std::int64_t i = rank; i < total; i += world) out.push_back(order[static_cast<std::size_t>(i % n)]);
    return out;
}

}  // namespace medimg::dist
