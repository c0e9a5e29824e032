// SPDX-License-Identifier: MIT
// Tests for core/: Shape, Tensor (views, copies, transfers), Rng reproducibility, threads.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <numeric>
#include <thread>
#include <vector>

#include "helpers.hpp"
#include "medimg/core/parallel.hpp"
#include "medimg/core/rng.hpp"
#include "medimg/core/tensor.hpp"

using namespace medimg;
using medimg::test::message_contains;

BOOST_AUTO_TEST_SUITE(tensor)

BOOST_AUTO_TEST_CASE(shape_reports_rank_numel_and_prints) {
    Shape s{8, 3, 224, 224};
    BOOST_TEST(s.rank() == 4);
    BOOST_TEST(s.numel() == 8 * 3 * 224 * 224);
    BOOST_TEST(s.dim(-1) == 224);
    BOOST_TEST(s.to_string() == "[8,3,224,224]");
    BOOST_TEST(Shape{}.numel() == 1);
    BOOST_CHECK_EXCEPTION(s.dim(4), ShapeError, message_contains("Shape::dim: index 4 out of range for [8,3,224,224]"));
    BOOST_CHECK_EXCEPTION((Shape{1, 2, 3, 4, 5, 6, 7}), ShapeError, message_contains("rank 7"));
    BOOST_CHECK_EXCEPTION((Shape{2, -1}), ShapeError, message_contains("negative dimension -1"));
}

BOOST_AUTO_TEST_CASE(tensor_copies_share_storage_and_clone_does_not) {
    auto a = Tensor<float>::from_vector({2, 2}, {1, 2, 3, 4});
    auto b = a;
    b[0] = 10;
    BOOST_TEST(a[0] == 10.0f);
    auto c = a.clone();
    c[1] = 20;
    BOOST_TEST(a[1] == 2.0f);
    BOOST_TEST(reinterpret_cast<std::uintptr_t>(a.data()) % 64 == 0u);
}

BOOST_AUTO_TEST_CASE(reshape_and_slice_are_views) {
    auto a = Tensor<double>::from_vector({3, 2}, {0, 1, 2, 3, 4, 5});
    auto r = a.reshape({2, 3});
    BOOST_TEST(r.size(0) == 2);
    BOOST_TEST(r.shares_storage_with(a));
    auto s = a.slice0(1, 2);
    BOOST_TEST(s.shape() == (Shape{2, 2}));
    BOOST_TEST(s[0] == 2.0);
    s[3] = 50;
    BOOST_TEST(a[5] == 50.0);
    BOOST_CHECK_EXCEPTION(a.reshape({4, 2}), ShapeError, message_contains("cannot view [3,2] (6 elements) as [4,2]"));
    BOOST_CHECK_EXCEPTION(a.slice0(2, 2), ShapeError, message_contains("rows [2, 4) out of range for [3,2]"));
}

BOOST_AUTO_TEST_CASE(from_storage_wraps_caller_memory_until_the_last_view_lets_go) {
    static float block[6];
    int released = 0;
    {
        auto t = Tensor<float>::from_storage({2, 3}, std::shared_ptr<float>(block, [&](float* p) {
                                                 BOOST_TEST(p == block);
                                                 ++released;
                                             }));
        BOOST_TEST(t.data() == block);
        t.fill_(2.5f);
        BOOST_TEST(block[5] == 2.5f);
        auto row = t.slice0(1, 1).reshape({3});  // views keep the storage alive
        t = Tensor<float>();
        BOOST_TEST(released == 0);
        BOOST_TEST(row.data() == block + 3);
    }
    BOOST_TEST(released == 1);
    BOOST_TEST(Tensor<float>::from_storage({0, 4}, nullptr).numel() == 0);
    BOOST_CHECK_EXCEPTION(Tensor<float>::from_storage({2}, nullptr), ValueError,
                          message_contains("Tensor::from_storage: no storage for shape [2]"));
}

BOOST_AUTO_TEST_CASE(factories_fill_and_check_sizes) {
    auto z = Tensor<float>::zeros({3});
    auto o = Tensor<float>::full({3}, 2.5f);
    for (int i = 0; i < 3; ++i) {
        BOOST_TEST(z[i] == 0.0f);
        BOOST_TEST(o[i] == 2.5f);
    }
    BOOST_TEST(Tensor<float>::scalar(3.0f).item() == 3.0f);
    BOOST_TEST(!Tensor<float>().defined());
    BOOST_CHECK_EXCEPTION(Tensor<float>::from_vector({2, 2}, {1, 2, 3}), ShapeError,
                          message_contains("3 values for shape [2,2]"));
    BOOST_CHECK_EXCEPTION(o.item(), ShapeError, message_contains("Tensor::item"));
    auto d = o.cast<double>();
    BOOST_TEST(d[2] == 2.5);
    auto h = o.to<Cpu>();
    BOOST_TEST(!h.shares_storage_with(o));
    BOOST_TEST(h[1] == 2.5f);
}

BOOST_AUTO_TEST_CASE(rng_is_reproducible_and_well_distributed) {
    Rng a(42), b(42), c(43);
    BOOST_TEST(a.next_u64() == b.next_u64());
    BOOST_TEST(a.next_u64() != c.next_u64());
    // Pinned value: the same seed must give this on every machine and compiler.
    Rng pinned(0);
    BOOST_TEST(pinned.next_u64() == 0x99ec5f36cb75f2b4ULL);
    Rng r(7);
    double s = 0, s2 = 0;
    const int n = 200000;
    for (int i = 0; i < n; ++i) {
        const double x = r.normal();
        s += x;
        s2 += x * x;
    }
    BOOST_TEST(std::abs(s / n) < 0.01);
    BOOST_TEST(std::abs(s2 / n - 1.0) < 0.02);
    int hist[5] = {};
    for (int i = 0; i < 50000; ++i) ++hist[r.randint(5)];
    for (int h : hist) BOOST_TEST(std::abs(h - 10000) < 400);
}

BOOST_AUTO_TEST_CASE(thread_count_is_settable_and_validated) {
    const int before = num_threads();
    set_num_threads(1);
    BOOST_TEST(num_threads() == 1);
    set_num_threads(before);
    BOOST_CHECK_EXCEPTION(set_num_threads(0), ValueError, message_contains("set_num_threads"));
    std::vector<int> hit(1000, 0);
    parallel_for(0, 1000, [&](std::int64_t i) { hit[static_cast<std::size_t>(i)] += 1; });
    BOOST_TEST(std::count(hit.begin(), hit.end(), 1) == 1000);
}

BOOST_AUTO_TEST_CASE(the_thread_pool_runs_every_item_once_and_passes_exceptions_on) {
    // core/parallel.hpp's pool: thousands of jobs of every small size back to back (a worker that
    // read an older job must never run an item of a newer one), fixed chunks, nesting (serial
    // inside), two threads calling at once (one runs its items itself), and an exception thrown by
    // an item reaching the caller after the job has finished. Runs on OpenMP regions instead when
    // MEDIMG_POOL=0, where exceptions cannot leave a region: that part is then skipped.
    if (num_threads() < 2) set_num_threads(2);
    for (int rep = 0; rep < 5000; ++rep) {
        const std::int64_t n = 1 + rep % 37;
        std::vector<int> hit(static_cast<std::size_t>(n), 0);
        parallel_for(0, n, [&](std::int64_t i) { hit[static_cast<std::size_t>(i)] += 1; });
        BOOST_REQUIRE(std::count(hit.begin(), hit.end(), 1) == n);
        std::vector<std::int64_t> sums(static_cast<std::size_t>(num_threads()), 0);
        parallel_chunks(0, n, [&](std::int64_t lo, std::int64_t hi, int id) {
            for (std::int64_t i = lo; i < hi; ++i) sums[static_cast<std::size_t>(id)] += i;
        });
        BOOST_REQUIRE(std::accumulate(sums.begin(), sums.end(), std::int64_t{0}) == n * (n - 1) / 2);
    }
    std::atomic<int> inner{0};
    parallel_for(0, 8, [&](std::int64_t) {
        BOOST_CHECK(in_parallel());
        parallel_for(0, 8, [&](std::int64_t) { inner.fetch_add(1); });
    });
    BOOST_TEST(inner.load() == 64);
    std::atomic<std::int64_t> total{0};
    auto caller = [&] {
        for (int rep = 0; rep < 2000; ++rep) parallel_for(0, 16, [&](std::int64_t i) { total.fetch_add(i); });
    };
    std::thread other(caller);
    caller();
    other.join();
    BOOST_TEST(total.load() == 2 * 2000 * 120);
    if (!detail::use_pool()) return;
    std::vector<std::atomic<int>> ran(64);
    BOOST_CHECK_EXCEPTION(parallel_for(0, 64,
                                       [&](std::int64_t i) {
                                           ran[static_cast<std::size_t>(i)].fetch_add(1);
                                           if (i == 37) throw ValueError("item 37");
                                       }),
                          ValueError, message_contains("item 37"));
    // the other chunks still ran (37's chunk stops at 37; chunks are at most 8 long with 2+ threads)
    int done = 0;
    for (const auto& r : ran) done += r.load();
    BOOST_TEST(done >= 57);
    BOOST_TEST(ran[0].load() == 1);
    BOOST_TEST(ran[63].load() == 1);
}

BOOST_AUTO_TEST_CASE(large_host_blocks_are_reused_and_released) {
    release_host_cache();
    const float* first = nullptr;
    {
        auto a = Tensor<float>::zeros({1 << 20});  // 4 MiB
        first = a.data();
    }
    BOOST_TEST(host_cache_bytes() == std::size_t{4} << 20);
    {
        auto b = Tensor<float>::empty({3 << 18});  // 3 MiB: fits the cached 4 MiB block (within 2x)
        BOOST_TEST(b.data() == first);
        BOOST_TEST(host_cache_bytes() == 0u);
        auto c = Tensor<float>::empty({1 << 18});  // 1 MiB: nothing cached fits, a fresh block
        BOOST_TEST(c.data() != first);
    }
    BOOST_TEST(release_host_cache() == (std::size_t{5} << 20));
    BOOST_TEST(host_cache_bytes() == 0u);
}

BOOST_AUTO_TEST_SUITE_END()
