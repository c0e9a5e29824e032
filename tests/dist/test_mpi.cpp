// SPDX-License-Identifier: MIT
// Tests for dist/mpi.hpp, run by ctest as `mpirun -np 2 test_mpi` (dist.mpi; skipped with a message
// where MPI is absent): every rank runs every case, in the same order, so the collectives pair up.
// The collectives on float, double and int64 (including a broadcast from rank 1 and an allgather of
// unequal lengths), the configuration check, the epoch shards, the state broadcast, and data
// parallelism itself: each rank's gradient of its half of a batch, averaged, and one AdamW step give
// the weights one process gets from the whole batch (a ViT: LayerNorm, no batch statistics).
// dist/data_parallel.hpp: the gradient buckets equal one all-reduce, a parameter used on one rank
// only is refused on both, SyncBatchNorm equals BatchNorm over the whole batch (outputs, running
// statistics, every gradient). dist/train.hpp through train::run_training, medimg-train's own
// path: two ranks on half batches (a ResNet18 with SyncBatchNorm; a ViT) end with the weights and
// metrics of one process on the whole global batch.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <memory>
#include <numeric>
#include <vector>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "helpers.hpp"
#include "medimg/data/phantom.hpp"
#include "medimg/dist/data_parallel.hpp"
#include "medimg/dist/mpi.hpp"
#include "medimg/dist/sampler.hpp"
#include "medimg/dist/train.hpp"
#include "medimg/train/run.hpp"
#include "medimg/medimg.hpp"
#include "medimg/optim/optim.hpp"
#include "reference.hpp"
#include "small_vit.hpp"

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
    const nn::VitOptions o = medimg::test::small_vit_options();
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

BOOST_AUTO_TEST_CASE(gradient_buckets_give_the_average_of_one_all_reduce) {
    auto& w = world();
    const nn::VitOptions o = medimg::test::small_vit_options();
    const auto x = ref::random<double>({2, 3, 32, 32}, 10 + static_cast<std::uint64_t>(w.rank()));  // each rank its own batch
    auto y = Tensor<std::int64_t, Cpu>::from_vector({2}, {w.rank(), 2});
    nn::VisionTransformer<double> a(o), b(o);
    dist::broadcast_state(w, a);
    dist::broadcast_state(w, b);
    loss::cross_entropy(a(autograd::Var<double, Cpu>(x)), y).backward();
    dist::average_gradients(w, a);
    // buckets of ~2 KB: many, launched while the backward runs
    dist::GradientReducer<double> reducer(w, b.named_parameters(), 0.002, 0.001);
    BOOST_TEST(reducer.bucket_count() > 10u);
    for (int step = 0; step < 2; ++step) {  // twice: the hooks re-arm
        for (auto& [n, p] : b.named_parameters()) p.zero_grad();
        reducer.start_step();
        loss::cross_entropy(b(autograd::Var<double, Cpu>(x)), y).backward();
        reducer.finish_step();
        const auto pa = a.named_parameters(), pb = b.named_parameters();
        for (std::size_t k = 0; k < pa.size(); ++k)
            BOOST_TEST_CONTEXT(pa[k].first) { MEDIMG_CHECK_CLOSE_TENSORS(pb[k].second.grad(), pa[k].second.grad(), 0.0, 0.0); }
    }
    BOOST_TEST(reducer.steps() == 2);
}

BOOST_AUTO_TEST_CASE(a_parameter_with_a_gradient_on_one_rank_only_is_refused_on_both) {
    auto& w = world();
    auto p0 = autograd::Var<float, Cpu>::parameter(Tensor<float, Cpu>::ones({3}));
    auto p1 = autograd::Var<float, Cpu>::parameter(Tensor<float, Cpu>::ones({3}));
    nn::NamedParams<float, Cpu> params{{"used", p0}, {"branch", p1}};
    dist::GradientReducer<float> reducer(w, params);
    reducer.start_step();
    auto loss = autograd::sum(p0);
    if (w.rank() == 0) loss = autograd::add(loss, autograd::sum(p1));  // rank 1 never touches "branch"
    loss.backward();
    BOOST_CHECK_EXCEPTION(reducer.finish_step(), ValueError, message_contains("every rank must use the same parameters"));
}

BOOST_AUTO_TEST_CASE(sync_batch_norm_equals_batch_norm_over_the_whole_batch) {
    auto& w = world();
    const auto x = ref::random<double>({4, 3, 5, 6}, 21);
    const auto wy = ref::random<double>({4, 3, 5, 6}, 22);  // loss = mean over images of sum(y * wy)
    nn::BatchNorm2dOptions bo;
    bo.num_features = 3;
    nn::BatchNorm2d<double> single(bo), synced(bo);
    for (auto* m : {&single, &synced}) {
        auto g = m->weight().value();
        auto b = m->bias().value();
        for (int c = 0; c < 3; ++c) g[c] = 0.5 + c, b[c] = 0.1 * c;
    }
    BOOST_TEST(nn::convert_sync_batch_norm(synced, std::make_shared<dist::MpiReplicaSum>(w)) == 1);
    autograd::Var<double, Cpu> xa(x.clone(), true);
    auto ya = single(xa);
    autograd::scale(autograd::sum(autograd::mul(ya, autograd::Var<double, Cpu>(wy))), 0.25).backward();
    // this rank's two images; its loss is the mean over its own images
    autograd::Var<double, Cpu> xb(x.slice0(2 * w.rank(), 2).clone(), true);
    auto yb = synced(xb);
    autograd::scale(autograd::sum(autograd::mul(yb, autograd::Var<double, Cpu>(wy.slice0(2 * w.rank(), 2).clone()))), 0.5)
        .backward();
    MEDIMG_CHECK_CLOSE_TENSORS(yb.value(), ya.value().slice0(2 * w.rank(), 2).clone(), 1e-12, 1e-12);
    MEDIMG_CHECK_CLOSE_TENSORS(synced.running_mean(), single.running_mean(), 1e-12, 1e-12);
    MEDIMG_CHECK_CLOSE_TENSORS(synced.running_var(), single.running_var(), 1e-12, 1e-12);
    // each rank's dx is world x the whole batch's (its loss weighs its images world times more);
    // the parameters' gradients averaged over the ranks are the whole batch's
    auto dx = xb.grad().clone();
    ops::affine(dx, 0.5, 0.0, dx);
    MEDIMG_CHECK_CLOSE_TENSORS(dx, xa.grad().slice0(2 * w.rank(), 2).clone(), 1e-12, 1e-12);
    nn::NamedParams<double, Cpu> gb{{"weight", synced.weight()}, {"bias", synced.bias()}};
    for (auto& [n, p] : gb) {
        auto g = p.grad();
        w.allreduce_sum(g.data(), g.numel());
        ops::affine(g, 0.5, 0.0, g);
    }
    MEDIMG_CHECK_CLOSE_TENSORS(synced.weight().grad(), single.weight().grad(), 1e-12, 1e-12);
    MEDIMG_CHECK_CLOSE_TENSORS(synced.bias().grad(), single.bias().grad(), 1e-12, 1e-12);
}

BOOST_AUTO_TEST_CASE(a_resnet18_with_sync_batch_norm_on_half_batches_has_the_whole_batch_gradients) {
    auto& w = world();
    nn::ModelOptions mo;
    mo.num_classes = 2;
    mo.in_channels = 1;
    auto single = nn::make_model<double, Cpu>("resnet18", mo);
    auto replica = nn::make_model<double, Cpu>("resnet18", mo);
    replica->load_state_dict([&] {
        std::map<std::string, Tensor<double, Cpu>> m;
        for (auto& e : single->state_dict()) m[e.name] = e.value.clone();
        return m;
    }());
    BOOST_TEST(nn::convert_sync_batch_norm(*replica, std::make_shared<dist::MpiReplicaSum>(w)) == 20);
    dist::GradientReducer<double> reducer(w, replica->named_parameters());
    const auto x = ref::random<double>({8, 1, 32, 32}, 31);
    auto y = Tensor<std::int64_t, Cpu>::from_vector({8}, {0, 1, 1, 0, 1, 0, 0, 1});
    single->train();
    replica->train();
    loss::cross_entropy((*single)(autograd::Var<double, Cpu>(x)), y).backward();
    auto ys = Tensor<std::int64_t, Cpu>::empty({4});
    for (int i = 0; i < 4; ++i) ys[i] = y[4 * w.rank() + i];
    reducer.start_step();
    loss::cross_entropy((*replica)(autograd::Var<double, Cpu>(x.slice0(4 * w.rank(), 4).clone())), ys).backward();
    reducer.finish_step();
    const auto a = single->named_parameters(), b = replica->named_parameters();
    for (std::size_t k = 0; k < a.size(); ++k)
        BOOST_TEST_CONTEXT(a[k].first) { MEDIMG_CHECK_CLOSE_TENSORS(b[k].second.grad(), a[k].second.grad(), 1e-9, 1e-12); }
}

namespace {
/// A folder every rank sees (rank 0 makes it; the name is broadcast).
std::string shared_temp_dir() {
    auto& w = world();
    std::vector<char> name(256, 0);
    if (w.is_root()) {
        std::string t = (std::filesystem::temp_directory_path() / "medimg-dist-XXXXXX").string();
        BOOST_REQUIRE(mkdtemp(t.data()) != nullptr);
        std::copy(t.begin(), t.end(), name.begin());
    }
    w.broadcast(name.data(), static_cast<std::int64_t>(name.size()));
    return std::string(name.data());
}

std::vector<std::vector<double>> csv_rows(const std::string& path) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    std::vector<std::vector<double>> rows;
    while (std::getline(in, line)) {
        std::vector<double> r;
        std::stringstream ss(line);
        std::string cell;
        while (std::getline(ss, cell, ',')) r.push_back(std::stod(cell));
        r.pop_back();  // seconds
        rows.push_back(r);
    }
    return rows;
}

/// medimg-train's path on two ranks (batch 4 each) and on one process (batch 8): the same weights
/// after the epoch, and the same metrics.csv figures (validation gathered over the ranks).
void two_ranks_equal_one_process(const std::string& model_yaml, const std::string& train_yaml, std::size_t epochs, double rtol,
                                 double atol) {
    auto& w = world();
    const std::string root = shared_temp_dir();
    namespace fs = std::filesystem;
    if (w.is_root()) {
        const std::int64_t counts[3] = {32, 10, 6};
        data::write_phantom_dataset(root + "/data", 32, counts, 5);
    }
    w.barrier();
    const std::string yaml = "data: {train: " + root + "/data/train, val: " + root + "/data/val, test: " + root +
                             "/data/test, image_size: 32, resize: 32, channels: 1, mean: [0.3], std: [0.25]}\n" + model_yaml +
                             "\ntrain: {epochs: " + std::to_string(epochs) + ", batch_size: 4, seed: 9, " + train_yaml + "}\n"
                             "runtime: {threads: 1, workers: 1, distributed: mpi}\noutput: {dir: " +
                             root + "/two}\n";
    const auto cfg = io::parse_config(yaml, "two.yaml");
    std::ostringstream sink;
    train::run_training<float, Cpu>(cfg, false, sink, false, 0, dist::replicas<float>(w, cfg));
    if (w.is_root()) {
        auto one = cfg;
        one.train.batch_size = 8;
        one.runtime.distributed = "none";
        one.output_dir = root + "/one";
        train::run_training<float, Cpu>(one, false, sink, false, 0);
        const auto model = cfg.model.name;
        auto a = nn::make_model<float, Cpu>(model, train::model_options(one, 2, 1));
        auto b = nn::make_model<float, Cpu>(model, train::model_options(one, 2, 1));
        io::Checkpoint::load(root + "/one/checkpoints/last.safetensors").load_into(*a);
        io::Checkpoint::load(root + "/two/checkpoints/last.safetensors").load_into(*b);
        const auto sa = a->state_dict(), sb = b->state_dict();
        for (std::size_t k = 0; k < sa.size(); ++k)
            BOOST_TEST_CONTEXT(sa[k].name) { MEDIMG_CHECK_CLOSE_TENSORS(sb[k].value, sa[k].value, rtol, atol); }
        const auto ra = csv_rows(root + "/one/metrics.csv"), rb = csv_rows(root + "/two/metrics.csv");
        BOOST_TEST_REQUIRE(ra.size() == epochs);
        BOOST_TEST_REQUIRE(rb.size() == epochs);
        for (std::size_t e = 0; e < epochs; ++e)
            for (std::size_t k = 0; k < ra[e].size(); ++k) BOOST_TEST(rb[e][k] == ra[e][k], boost::test_tools::tolerance(1e-4));
        BOOST_TEST(!fs::exists(root + "/two/checkpoints/last.safetensors.tmp-0"));
    }
    w.barrier();
    if (w.is_root()) fs::remove_all(root);
}
}  // namespace

BOOST_AUTO_TEST_CASE(training_on_two_ranks_with_sync_batch_norm_equals_one_process_on_the_global_batch) {
    two_ranks_equal_one_process("model: {name: resnet18, sync_bn: true}", "optimizer: sgd, lr: 0.001, momentum: 0", 1, 1e-3, 1e-5);
}

BOOST_AUTO_TEST_CASE(training_a_vit_on_two_ranks_equals_one_process_on_the_global_batch) {
    two_ranks_equal_one_process("model: {name: vit_tiny_patch16_224}", "optimizer: sgd, lr: 0.02, momentum: 0.9", 2, 2e-3, 2e-4);
}

BOOST_AUTO_TEST_SUITE_END()
