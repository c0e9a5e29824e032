// SPDX-License-Identifier: MIT
// Tests for dist/mpi.hpp, run by ctest as `mpirun -np 2 test_mpi` (dist.mpi; skipped with a message
// where MPI is absent): every rank runs every case, in the same order, so the collectives pair up.
// The collectives on float, double and int64 (including a broadcast from rank 1 and an allgather of
// unequal lengths), the configuration check, the epoch shards, the state broadcast, and data
// parallelism itself: each rank's gradient of its half of a batch, averaged, and one AdamW step give
// the weights one process gets from the whole batch (a ViT: LayerNorm, no batch statistics).
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <memory>
#include <numeric>
#include <vector>

#include "helpers.hpp"
#include "medimg/dist/mpi.hpp"
#include "medimg/dist/sampler.hpp"
#include "medimg/medimg.hpp"
#include "medimg/optim/optim.hpp"
#include "reference.hpp"

using namespace medimg;
using medimg::test::message_contains;
namespace ref = medimg::test::ref;

namespace {
/// One MPI per process: initialised before the first case, finalised after the last.
struct World {
    World() { mpi = std::make_unique<dist::Mpi>(); }
    static std::unique_ptr<dist::Mpi> mpi;
};
std::unique_ptr<dist::Mpi> World::mpi;
dist::Mpi& world() { return *World::mpi; }
}  // namespace

BOOST_TEST_GLOBAL_FIXTURE(World);

BOOST_AUTO_TEST_SUITE(dist_mpi)

BOOST_AUTO_TEST_CASE(the_job_has_two_ranks_started_by_mpirun) {
    BOOST_TEST(dist::launched_by_mpi());
    BOOST_REQUIRE(world().size() == 2);
    BOOST_TEST(world().is_root() == (world().rank() == 0));
}

BOOST_AUTO_TEST_CASE(allreduce_broadcast_and_allgather_carry_every_type) {
    auto& w = world();
    const int r = w.rank();
    std::vector<float> f(1001, static_cast<float>(r + 1));
    std::vector<double> d(7, 0.5 * (r + 1));
    std::vector<std::int64_t> i(3, std::int64_t(1) << (40 + r));
    w.allreduce_sum(f.data(), static_cast<std::int64_t>(f.size()));
    w.allreduce_sum(d.data(), static_cast<std::int64_t>(d.size()));
    w.allreduce_sum(i.data(), static_cast<std::int64_t>(i.size()));
    BOOST_TEST(std::all_of(f.begin(), f.end(), [](float v) { return v == 3.0f; }));
    BOOST_TEST(std::all_of(d.begin(), d.end(), [](double v) { return v == 1.5; }));
    BOOST_TEST(i[2] == (std::int64_t(1) << 40) + (std::int64_t(1) << 41));
    std::vector<double> b{double(r), double(r) + 0.25};
    w.broadcast(b.data(), 2, 1);  // from rank 1
    BOOST_TEST(b[0] == 1.0);
    BOOST_TEST(b[1] == 1.25);
    std::vector<std::int64_t> mine(static_cast<std::size_t>(r + 1), r * 10);  // rank 0: 1 value, rank 1: 2
    const auto all = w.allgather(mine);
    BOOST_TEST(all == (std::vector<std::int64_t>{0, 10, 10}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(agree_refuses_on_every_rank_when_one_rank_differs) {
    auto& w = world();
    BOOST_CHECK_NO_THROW(w.agree("the configuration", 42));
    BOOST_CHECK_EXCEPTION(w.agree("the configuration", w.rank() == 1 ? 7 : 42), ConfigError,
                          message_contains("dist: the configuration differs between ranks (rank 1 against rank 0)"));
}

BOOST_AUTO_TEST_CASE(the_shards_of_an_epoch_are_disjoint_and_cover_it) {
    auto& w = world();
    std::vector<std::int64_t> order(11);
    std::iota(order.begin(), order.end(), 100);
    std::reverse(order.begin(), order.end());
    for (bool drop : {false, true}) {
        const auto mine = dist::shard(order, w.rank(), w.size(), drop);
        BOOST_TEST(static_cast<std::int64_t>(mine.size()) == (drop ? 5 : 6));
        auto all = w.allgather(mine);
        std::sort(all.begin(), all.end());
        if (drop) {  // 10 distinct samples, the last of the order left out
            BOOST_TEST((std::adjacent_find(all.begin(), all.end()) == all.end()));
            BOOST_TEST(all.front() == 101);
        } else {  // all 11, and the first of the order (110) twice: the padding
            BOOST_TEST(all.size() == 12u);
            BOOST_TEST(std::count(all.begin(), all.end(), 110) == 2);
        }
    }
}

BOOST_AUTO_TEST_CASE(broadcast_state_makes_the_replicas_equal) {
    auto& w = world();
    nn::ModelOptions o{3, 1, static_cast<std::uint64_t>(17 + w.rank())};  // a different init per rank
    auto m = nn::make_model<float>("resnet18", o);
    dist::broadcast_state(w, *m);
    for (auto& e : m->state_dict()) {
        std::vector<float> v(e.value.data(), e.value.data() + e.value.numel()), mine = v;
        w.broadcast(v.data(), static_cast<std::int64_t>(v.size()), 1);  // rank 1's copy, to compare with
        BOOST_TEST_CONTEXT(e.name) { BOOST_TEST((v == mine)); }
    }
}

BOOST_AUTO_TEST_CASE(averaged_half_batch_gradients_and_one_adamw_step_equal_one_process_on_the_whole_batch) {
    auto& w = world();
    nn::VitOptions o;
    o.image_size = 32;
    o.patch_size = 8;
    o.embed_dim = 24;
    o.depth = 2;
    o.heads = 2;
    o.mlp_dim = 48;
    o.num_classes = 3;
    const auto x = ref::random<double>({4, 3, 32, 32}, 3);
    auto y = Tensor<std::int64_t, Cpu>::from_vector({4}, {0, 2, 1, 2});
    optim::AdamWOptions ao;
    ao.lr = 1e-2;
    // one process, the whole batch of 4
    nn::VisionTransformer<double> single(o);
    optim::AdamW<double> opt1(single.named_parameters(), ao);
    loss::cross_entropy(single(autograd::Var<double, Cpu>(x)), y).backward();
    opt1.step();
    // this rank: its half of the batch (the mean over 2 equals halves' mean of means), averaged gradients
    nn::VisionTransformer<double> replica(o);
    dist::broadcast_state(w, replica);
    optim::AdamW<double> opt2(replica.named_parameters(), ao);
    const auto xs = x.slice0(2 * w.rank(), 2).clone();
    auto ys = Tensor<std::int64_t, Cpu>::from_vector({2}, {y[2 * w.rank()], y[2 * w.rank() + 1]});
    loss::cross_entropy(replica(autograd::Var<double, Cpu>(xs)), ys).backward();
    dist::average_gradients(w, replica);
    opt2.step();
    const auto a = single.named_parameters(), b = replica.named_parameters();
    for (std::size_t k = 0; k < a.size(); ++k)
        BOOST_TEST_CONTEXT(a[k].first) { MEDIMG_CHECK_CLOSE_TENSORS(b[k].second.value(), a[k].second.value(), 1e-9, 1e-12); }
}

BOOST_AUTO_TEST_SUITE_END()
