// SPDX-License-Identifier: MIT
// Tests for dist/sampler.hpp: each rank's share of an epoch equals what
// torch.utils.data.DistributedSampler gives (worked out by hand from its code: pad by repeating
// the order from its start, or cut; then every world-th position from the rank), the shards cover
// the epoch, and bad ranks are refused. No MPI needed (the MPI side: tests/dist/test_mpi.cpp).
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "helpers.hpp"
#include "medimg/dist/sampler.hpp"

using namespace medimg;
using medimg::test::message_contains;
using V = std::vector<std::int64_t>;

BOOST_AUTO_TEST_SUITE(dist_sampler)

BOOST_AUTO_TEST_CASE(shards_follow_distributed_sampler_with_padding_and_with_drop_last) {
    const V order{10, 11, 12, 13, 14, 15, 16, 17, 18, 19};  // n = 10 over 3 ranks
    // padded to 12 by repeating 10, 11
    BOOST_TEST(dist::shard(order, 0, 3, false) == (V{10, 13, 16, 19}), boost::test_tools::per_element());
    BOOST_TEST(dist::shard(order, 1, 3, false) == (V{11, 14, 17, 10}), boost::test_tools::per_element());
    BOOST_TEST(dist::shard(order, 2, 3, false) == (V{12, 15, 18, 11}), boost::test_tools::per_element());
    // cut to 9
    BOOST_TEST(dist::shard(order, 0, 3, true) == (V{10, 13, 16}), boost::test_tools::per_element());
    BOOST_TEST(dist::shard(order, 2, 3, true) == (V{12, 15, 18}), boost::test_tools::per_element());
    // an exact multiple: no padding, no cut, the same either way
    const V six{5, 4, 3, 2, 1, 0};
    BOOST_TEST(dist::shard(six, 1, 3, false) == dist::shard(six, 1, 3, true), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(more_ranks_than_samples_repeat_the_order_or_give_nothing) {
    const V one{7};
    for (int r = 0; r < 4; ++r) {
        BOOST_TEST(dist::shard(one, r, 4, false) == (V{7}), boost::test_tools::per_element());
        BOOST_TEST(dist::shard(one, r, 4, true).empty());
    }
    BOOST_TEST(dist::samples_per_rank(2, 5, true) == 0);
    BOOST_TEST(dist::samples_per_rank(0, 3, false) == 0);
    BOOST_TEST(dist::shard(V{}, 0, 3, false).empty());
}

BOOST_AUTO_TEST_CASE(the_shards_of_every_rank_cover_the_epoch) {
    V order(23);
    for (std::int64_t i = 0; i < 23; ++i) order[static_cast<std::size_t>(i)] = (i * 7) % 23;  // a permutation
    for (std::int64_t world : {1, 2, 4, 5}) {
        V all;
        for (std::int64_t r = 0; r < world; ++r) {
            const auto s = dist::shard(order, r, world, false);
            BOOST_TEST(static_cast<std::int64_t>(s.size()) == dist::samples_per_rank(23, world, false));
            all.insert(all.end(), s.begin(), s.end());
        }
        std::sort(all.begin(), all.end());
        all.erase(std::unique(all.begin(), all.end()), all.end());
        BOOST_TEST(all.size() == 23u, "world " << world);
    }
}

BOOST_AUTO_TEST_CASE(a_rank_outside_the_world_is_refused) {
    BOOST_CHECK_EXCEPTION(dist::shard(V{1, 2}, 2, 2, false), ValueError, message_contains("dist::shard: rank 2 is not in [0, 2)"));
    BOOST_CHECK_EXCEPTION(dist::shard(V{1, 2}, 0, 0, false), ValueError, message_contains("rank 0 is not in [0, 0)"));
}

BOOST_AUTO_TEST_SUITE_END()
