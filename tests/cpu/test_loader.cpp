// SPDX-License-Identifier: MIT
// Tests for data/dataset.hpp and data/loader.hpp: class order from the config, sorted files,
// skipped non-images, missing/empty class folders; batches that are identical for 0, 1 and 3
// workers, a seeded per-epoch shuffle, drop_last, the prefetch bound, and error handling.
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "helpers.hpp"
#include "medimg/data/dataset.hpp"
#include "medimg/data/loader.hpp"

using namespace medimg;
using medimg::test::message_contains;
namespace fs = std::filesystem;
namespace tt = boost::test_tools;

namespace {
struct Tree {
    fs::path root = fs::temp_directory_path() / ("medimg-ds-" + std::to_string(Rng(std::random_device{}()).next_u64()));
    void file(const std::string& rel) {
        fs::create_directories((root / rel).parent_path());
        std::ofstream(root / rel) << "x";
    }
    ~Tree() { fs::remove_all(root); }
};
/// A fake decoder: a 1x2x2 image holding the index and one augmentation draw.
Tensor<float, Cpu> fake(std::int64_t i, Rng& rng) {
    auto t = Tensor<float, Cpu>::full({1, 2, 2}, static_cast<float>(i));
    t[3] = static_cast<float>(rng.uniform());
    return t;
}
std::vector<std::vector<float>> run_epoch(data::DataLoader& l, std::int64_t epoch) {
    std::vector<std::vector<float>> out;
    l.start_epoch(epoch);
    while (auto b = l.next()) out.push_back(b->images.to_vector());
    return out;
}
}  // namespace

BOOST_AUTO_TEST_SUITE(loader)

BOOST_AUTO_TEST_CASE(dataset_takes_class_order_from_config_and_sorts_files) {
    Tree t;
    t.file("train/normal/b.png");
    t.file("train/normal/a.PNG");
    t.file("train/normal/notes.txt");
    t.file("train/lesao/z.jpg");
    t.file("train/other/ignored.png");
    const auto d = data::FolderDataset::scan((t.root / "train").string(), {"normal", "lesao"});
    BOOST_TEST(d.size() == 3);
    BOOST_TEST(fs::path(d.path(0)).filename() == "a.PNG");
    BOOST_TEST(d.label(2) == 1);
    BOOST_TEST(d.skipped_non_images() == 1);
    BOOST_TEST((d.class_counts() == std::vector<std::int64_t>{2, 1}));
    BOOST_TEST(d.balanced_class_weights()[1] == 1.5);  // 3 / (2 * 1)
}

BOOST_AUTO_TEST_CASE(dataset_walks_subfolders_in_imagefolder_order) {
    // A folder per patient inside a class folder. The expected order is what torchvision 0.14's
    // ImageFolder lists for the same tree (checked by hand; its os.walk folders sorted by their
    // path string, so "a b" comes before "a/deep"), less the hidden folder, which it would take.
    Tree t;
    for (const char* f : {"train/lesao/b.png", "train/lesao/a b/x.png", "train/lesao/a/z.png", "train/lesao/a/y.png",
                          "train/lesao/a/deep/w.png", "train/lesao/A/q.png", "train/lesao/.ipynb_checkpoints/b-checkpoint.png",
                          "train/lesao/a/notes.txt", "train/normal/n.png", "train/normal/p1/m.png"})
        t.file(f);
    // links: one back to the class folder (a loop os.walk would follow until the path is too
    // long), and two to one folder outside the data set (walked once, through the first by path)
    fs::create_directory_symlink(t.root / "train/normal", t.root / "train/normal/p1/loop");
    t.file("elsewhere/e.png");
    fs::create_directory_symlink(t.root / "elsewhere", t.root / "train/normal/z_link");
    fs::create_directory_symlink(t.root / "elsewhere", t.root / "train/normal/y_link");
    const auto d = data::FolderDataset::scan((t.root / "train").string(), {"normal", "lesao"});
    std::vector<std::string> rel;
    for (std::int64_t i = 0; i < d.size(); ++i) rel.push_back(fs::path(d.path(i)).lexically_relative(t.root / "train").string());
    const std::vector<std::string> expected = {"normal/n.png", "normal/p1/m.png", "normal/y_link/e.png", "lesao/b.png",
                                               "lesao/A/q.png", "lesao/a/y.png", "lesao/a/z.png", "lesao/a b/x.png",
                                               "lesao/a/deep/w.png"};
    BOOST_TEST(rel == expected, tt::per_element());
    BOOST_TEST((d.class_counts() == std::vector<std::int64_t>{3, 6}));
    BOOST_TEST(d.skipped_non_images() == 1);  // notes.txt
    // the order does not depend on the order the file system lists entries in: a second scan agrees
    const auto again = data::FolderDataset::scan((t.root / "train").string(), {"normal", "lesao"});
    for (std::int64_t i = 0; i < d.size(); ++i) BOOST_TEST(again.path(i) == d.path(i));
    // a class folder whose images are all in subfolders is not empty
    Tree u;
    u.file("train/normal/p1/a.png");
    u.file("train/lesao/p2/b.png");
    BOOST_TEST(data::FolderDataset::scan((u.root / "train").string(), {"normal", "lesao"}).size() == 2);
}

BOOST_AUTO_TEST_CASE(dataset_rejects_missing_or_empty_class_folders) {
    Tree t;
    t.file("train/normal/a.png");
    t.file("train/lesao/readme.md");
    BOOST_CHECK_EXCEPTION(data::FolderDataset::scan((t.root / "nope").string(), {"normal"}), IoError,
                          message_contains("does not exist or is not a folder"));
    BOOST_CHECK_EXCEPTION(data::FolderDataset::scan((t.root / "train").string(), {"normal", "tumor"}), IoError,
                          message_contains("tumor' is missing"));
    BOOST_CHECK_EXCEPTION(data::FolderDataset::scan((t.root / "train").string(), {"normal", "lesao"}), IoError,
                          message_contains("lesao' holds no images"));
}

BOOST_AUTO_TEST_CASE(batches_are_identical_for_any_number_of_workers) {
    std::vector<std::int64_t> labels(23);
    for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int64_t>(i % 2);
    std::vector<std::vector<std::vector<float>>> runs;
    for (int workers : {0, 1, 3}) {
        data::DataLoader l(labels, fake, {5, true, false, 9, workers, 2, false});
        BOOST_TEST(l.num_batches() == 5);
        runs.push_back(run_epoch(l, 1));
        auto again = run_epoch(l, 1);
        BOOST_TEST((again == runs.back()));
        BOOST_TEST((run_epoch(l, 2) != runs.back()));  // another epoch, another order and draws
    }
    BOOST_TEST((runs[0] == runs[1]));
    BOOST_TEST((runs[0] == runs[2]));
    std::set<float> seen;  // every index exactly once per epoch
    for (auto& b : runs[0])
        for (std::size_t k = 0; k < b.size(); k += 4) seen.insert(b[k]);
    BOOST_TEST(seen.size() == 23u);
}

BOOST_AUTO_TEST_CASE(the_balanced_sampler_draws_every_class_equally_often_and_is_seeded) {
    // 90 of class 0, 10 of class 1: balanced epochs hold about half of each, drawn with replacement.
    std::vector<std::int64_t> labels(100, 0);
    for (std::size_t i = 90; i < 100; ++i) labels[i] = 1;
    data::LoaderOptions o{10, true, false, 4, /*workers=*/2, 2, false};
    o.balanced = true;
    data::DataLoader l(labels, fake, o);
    BOOST_TEST(l.size() == 100);  // an epoch is still N draws
    std::int64_t rare = 0, total = 0;
    bool repeated_with_other_draw = false;
    for (std::int64_t epoch = 1; epoch <= 20; ++epoch) {
        const auto run = run_epoch(l, epoch);
        std::map<float, float> draw_of;  // index -> its augmentation draw in this epoch
        for (const auto& b : run)
            for (std::size_t k = 0; k < b.size(); k += 4) {
                ++total;
                rare += b[k] >= 90.f;
                const auto [it, fresh] = draw_of.emplace(b[k], b[k + 3]);
                if (!fresh && it->second != b[k + 3]) repeated_with_other_draw = true;
            }
        if (epoch == 1) BOOST_TEST((run_epoch(l, 1) == run));  // seeded: the same epoch again
    }
    // 2000 draws, p = 0.5: the rare share lies within 0.5 +- 0.05 (4.5 standard deviations)
    BOOST_TEST(std::abs(static_cast<double>(rare) / static_cast<double>(total) - 0.5) < 0.05, "rare share " << rare << "/" << total);
    BOOST_TEST(repeated_with_other_draw);  // a sample drawn twice is augmented twice, differently
    o.balanced = false;
    data::DataLoader plain(labels, fake, o);
    std::int64_t plain_rare = 0;
    for (const auto& b : run_epoch(plain, 1))
        for (std::size_t k = 0; k < b.size(); k += 4) plain_rare += b[k] >= 90.f;
    BOOST_TEST(plain_rare == 10);
}

BOOST_AUTO_TEST_CASE(drop_last_and_the_prefetch_bound_hold) {
    std::vector<std::int64_t> labels(10, 0);
    std::atomic<int> made{0};
    data::DataLoader l(labels, [&](std::int64_t i, Rng& r) { ++made; return fake(i, r); }, {4, false, true, 0, 2, 1, false});
    BOOST_TEST(l.num_batches() == 2);
    l.start_epoch(0);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    BOOST_TEST(made.load() <= 4);  // one batch ahead at most
    int n = 0;
    while (auto b = l.next()) n += static_cast<int>(b->labels.numel());
    BOOST_TEST(n == 8);
}

BOOST_AUTO_TEST_CASE(a_failing_sample_fails_the_epoch_or_is_skipped_and_counted) {
    std::vector<std::int64_t> labels(6, 1);
    auto flaky = [](std::int64_t i, Rng& r) {
        if (i == 4) throw IoError("image: data/x/4.png: truncated");
        return fake(i, r);
    };
    for (int workers : {0, 2}) {
        data::DataLoader strict(labels, flaky, {3, false, false, 0, workers, 2, false});
        strict.start_epoch(0);
        BOOST_CHECK_EXCEPTION(while (strict.next()) {}, IoError, message_contains("data/x/4.png"));
        data::DataLoader lenient(labels, flaky, {3, false, false, 0, workers, 2, true});
        lenient.start_epoch(0);
        int n = 0;
        while (auto b = lenient.next()) n += static_cast<int>(b->labels.numel());
        BOOST_TEST(n == 5);
        BOOST_TEST(lenient.skipped() == 1);
    }
}

BOOST_AUTO_TEST_CASE(batches_are_collated_into_memory_from_the_image_allocator) {
    // A pool of the kind the CUDA fit loop hands the loader (pinned blocks there): every batch,
    // the short last one and the one a skipped sample shortened included, is collated into a
    // block from it; the values are the default loader's; blocks come back when batches are dropped.
    struct Pool {
        std::mutex m;
        std::vector<std::unique_ptr<float[]>> blocks;
        std::vector<float*> free;
        std::set<const float*> handed_out;
        std::atomic<int> calls{0};
        Tensor<float, Cpu> operator()(const Shape& s) {
            ++calls;
            std::lock_guard<std::mutex> lock(m);
            float* p;
            if (free.empty()) {
                blocks.push_back(std::make_unique<float[]>(64));
                p = blocks.back().get();
            } else {
                p = free.back();
                free.pop_back();
            }
            if (s.numel() > 64) throw ValueError("test pool: block too small");  // no Boost.Test on workers
            handed_out.insert(p);
            return Tensor<float, Cpu>::from_storage(s, std::shared_ptr<float>(p, [this](float* q) {
                                                        std::lock_guard<std::mutex> l(m);
                                                        free.push_back(q);
                                                    }));
        }
    };
    std::vector<std::int64_t> labels(7, 0);
    auto flaky = [](std::int64_t i, Rng& r) {
        if (i == 2) throw IoError("image: data/x/2.png: truncated");
        return fake(i, r);
    };
    for (int workers : {0, 2}) {
        BOOST_TEST_CONTEXT("workers " << workers) {
            data::DataLoader plain(labels, flaky, {3, true, false, 5, workers, 2, true});
            const auto expected = run_epoch(plain, 1);
            auto pool = std::make_shared<Pool>();
            data::LoaderOptions o{3, true, false, 5, workers, 2, true};
            o.allocate_images = [pool](const Shape& s) { return (*pool)(s); };
            data::DataLoader pooled(labels, flaky, o);
            pooled.start_epoch(1);
            std::vector<std::vector<float>> got;
            while (auto b = pooled.next()) {
                std::lock_guard<std::mutex> lock(pool->m);
                BOOST_TEST(pool->handed_out.count(b->images.data()) == 1u);
                got.push_back(b->images.to_vector());
            }
            BOOST_TEST(got == expected);
            BOOST_TEST(pool->calls.load() == 3);            // batches of 3, 2 (sample 2 skipped) and 1
            {
                std::lock_guard<std::mutex> lock(pool->m);
                BOOST_TEST(pool->free.size() == pool->blocks.size());  // every batch handed its block back
            }
            // Switched off between epochs: back to Tensor::empty.
            pooled.set_image_allocator({});
            BOOST_TEST(run_epoch(pooled, 1) == expected);
            BOOST_TEST(pool->calls.load() == 3);
        }
    }
    data::LoaderOptions bad{3, false, false, 0, 0, 2, false};
    bad.allocate_images = [](const Shape&) { return Tensor<float, Cpu>::empty({3, 1, 2}); };
    data::DataLoader l(labels, fake, bad);
    l.start_epoch(0);
    BOOST_CHECK_EXCEPTION(l.next(), ShapeError,
                          message_contains("DataLoader: the image allocator returned [3,1,2] for a batch of [3,1,2,2]"));
}

BOOST_AUTO_TEST_SUITE_END()
