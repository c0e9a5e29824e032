// SPDX-License-Identifier: MIT
// data/loader.hpp: DataLoader, batches of (N, C, H, W) images and (N) labels, decoded by
// background worker threads into a bounded queue of batches, handed out in order.
// Determinism: the epoch's order is a Fisher-Yates shuffle seeded by (seed, epoch), and every
// sample's augmentation draws from an Rng seeded by (seed, epoch, index), so the batches are
// identical whatever the number of workers (tested). With `balanced`, the epoch is instead N draws
// with replacement, each class equally likely (torch's WeightedRandomSampler with weights
// 1 / class count, replacement=True), seeded the same way; a sample drawn twice gets two
// augmentations (its Rng is seeded by the draw's position, not its index). A sample whose loader throws either fails
// the epoch (the error is re-thrown in the consumer, naming the file) or, with skip_errors, is
// left out of its batch and counted. Batches are collated into memory from
// LoaderOptions::allocate_images when set (thread-safe; the CUDA fit loop sets a pool of pinned
// blocks, cuda/staging.cuh, so a batch goes to the GPU by DMA with no host copy), else
// Tensor::empty. In a data-parallel run (LoaderOptions::shard_world > 1) every process computes the
// same epoch order and takes its rank's share of it (dist/sampler.hpp: DistributedSampler's padding
// for training; an unpadded stride for evaluation, so each sample is scored once over all ranks);
// a sample's augmentation stream does not depend on which rank draws it. Deliberately not here: decoding straight into the batch (each sample is one
// tensor, copied once into its row).
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <numeric>
#include <optional>
#include <thread>
#include <vector>

#include "medimg/core/parallel.hpp"
#include "medimg/core/rng.hpp"
#include "medimg/core/tensor.hpp"
#include "medimg/dist/sampler.hpp"
#include "medimg/error.hpp"

namespace medimg::data {

struct Batch {
    Tensor<float, Cpu> images;          // (N, C, H, W)
    Tensor<std::int64_t, Cpu> labels;   // (N)
    std::vector<std::int64_t> indices;  // dataset indices, in batch order
};

/// Memory for one collated (N, C, H, W) batch of images; called from the worker threads.
using ImageAllocator = std::function<Tensor<float, Cpu>(const Shape&)>;

struct LoaderOptions {
    std::int64_t batch_size = 32;
    bool shuffle = true;
    bool drop_last = false;
    std::uint64_t seed = 0;
    int workers = 2;          // 0 = decode on the calling thread
    int prefetch_batches = 4; // bound on batches decoded ahead (per loader)
    bool skip_errors = false;
    ImageAllocator allocate_images{};  // empty: Tensor<float, Cpu>::empty
    bool balanced = false;    // epochs of N class-balanced draws with replacement (overrides shuffle)
    // Data-parallel runs: this process's share of each epoch's order, positions shard_rank,
    // shard_rank + shard_world, ... With shard_even (training) the order is first padded (or, with
    // drop_last, cut) to a multiple of shard_world as DistributedSampler does, so every rank runs the
    // same number of steps; without (evaluation) it is not, so the shards partition the split.
    std::int64_t shard_rank = 0, shard_world = 1;
    bool shard_even = true;
};

/// load(index, rng) -> one (C, H, W) image with the same shape for every index.
using SampleFn = std::function<Tensor<float, Cpu>(std::int64_t index, Rng& rng)>;

class DataLoader {
public:
    DataLoader(std::vector<std::int64_t> labels, SampleFn load, LoaderOptions o)
        : labels_(std::move(labels)), load_(std::move(load)), o_(o) {
        MEDIMG_CHECK(o.batch_size >= 1 && o.workers >= 0 && o.prefetch_batches >= 1, ValueError,
                     "DataLoader: batch_size and prefetch_batches must be >= 1 and workers >= 0, got ", o.batch_size, ", ",
                     o.prefetch_batches, ", ", o.workers);
        MEDIMG_CHECK(!labels_.empty(), ValueError, "DataLoader: the dataset is empty");
        MEDIMG_CHECK(o.shard_world >= 1 && o.shard_rank >= 0 && o.shard_rank < o.shard_world, ValueError, "DataLoader: shard_rank ",
                     o.shard_rank, " is not in [0, ", o.shard_world, ")");
    }
    ~DataLoader() { stop(); }
    DataLoader(const DataLoader&) = delete;
    DataLoader& operator=(const DataLoader&) = delete;

    /// Samples in the dataset.
    std::int64_t size() const { return static_cast<std::int64_t>(labels_.size()); }
    /// Samples this loader hands out per epoch: size(), or this rank's share of it.
    std::int64_t epoch_size() const {
        const auto n = size(), w = o_.shard_world, r = o_.shard_rank;
        if (w == 1) return n;
        if (o_.shard_even) return dist::samples_per_rank(n, w, o_.drop_last);
        return r < n ? (n - r + w - 1) / w : 0;
    }
    std::int64_t num_batches() const {
        const auto n = epoch_size(), b = o_.batch_size;
        return o_.drop_last ? n / b : (n + b - 1) / b;
    }
    /// Where batches are collated from now on (empty: Tensor::empty). Call between epochs: an
    /// epoch in progress is stopped.
    void set_image_allocator(ImageAllocator a) {
        stop();
        o_.allocate_images = std::move(a);
    }
    /// Samples left out since construction because their loader threw (skip_errors only).
    std::int64_t skipped() const { return skipped_.load(); }

    /// The dataset order of epoch `epoch`.
    std::vector<std::int64_t> order(std::int64_t epoch) const {
        std::vector<std::int64_t> idx(labels_.size());
        std::iota(idx.begin(), idx.end(), 0);
        if (o_.balanced) {  // a class uniformly among those present, then a member uniformly
            std::map<std::int64_t, std::vector<std::int64_t>> members;
            for (std::size_t i = 0; i < labels_.size(); ++i) members[labels_[i]].push_back(static_cast<std::int64_t>(i));
            std::vector<const std::vector<std::int64_t>*> classes;
            for (const auto& [y, m] : members) classes.push_back(&m);
            Rng r(mix(o_.seed, static_cast<std::uint64_t>(epoch), 0xba1a));
            for (auto& v : idx) {
                const auto& m = *classes[r.randint(classes.size())];
                v = m[r.randint(m.size())];
            }
        } else if (o_.shuffle) {
            Rng r(mix(o_.seed, static_cast<std::uint64_t>(epoch), 0x5eed));
            for (std::size_t i = idx.size(); i > 1; --i) std::swap(idx[i - 1], idx[r.randint(i)]);
        }
        return idx;
    }

    /// Starts decoding epoch `epoch`; then call next() until it returns nothing.
    void start_epoch(std::int64_t epoch) {
        stop();
        epoch_ = epoch;
        order_ = order(epoch);
        // A balanced epoch's draw k gets augmentation stream k (its position in the whole epoch's
        // order), any other sample its dataset index: the same whichever rank takes it.
        streams_.resize(order_.size());
        for (std::size_t k = 0; k < order_.size(); ++k) streams_[k] = o_.balanced ? static_cast<std::int64_t>(k) : order_[k];
        if (o_.shard_world > 1) {
            const auto n = static_cast<std::int64_t>(order_.size()), w = o_.shard_world;
            const std::int64_t end = o_.shard_even ? dist::samples_per_rank(n, w, o_.drop_last) * w : n;
            std::vector<std::int64_t> mine, mine_streams;
            for (std::int64_t k = o_.shard_rank; k < end; k += w) {  // k >= n: DistributedSampler's padding
                mine.push_back(order_[static_cast<std::size_t>(k % n)]);
                mine_streams.push_back(streams_[static_cast<std::size_t>(k % n)]);
            }
            order_ = std::move(mine);
            streams_ = std::move(mine_streams);
        }
        next_to_make_ = 0;
        next_to_take_ = 0;
        ready_.clear();
        error_ = nullptr;
        stopping_ = false;
        for (int w = 0; w < o_.workers; ++w) threads_.emplace_back([this] { work(); });
    }
    /// The next batch in order, or nothing at the end of the epoch.
    std::optional<Batch> next() {
        if (next_to_take_ >= num_batches()) return std::nullopt;
        const std::int64_t b = next_to_take_++;
        if (o_.workers == 0) return make(b);
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [&] { return ready_.count(b) || error_; });
        if (error_) {
            auto e = error_;
            lock.unlock();
            stop();
            std::rethrow_exception(e);
        }
        Batch out = std::move(ready_.at(b));
        ready_.erase(b);
        lock.unlock();
        cv_.notify_all();
        return out;
    }

private:
    static std::uint64_t mix(std::uint64_t a, std::uint64_t b, std::uint64_t c) {
        Rng r(a ^ (b * 0x9e3779b97f4a7c15ULL) ^ (c * 0xc2b2ae3d27d4eb4fULL));
        return r.next_u64();
    }
    Batch make(std::int64_t b) {
        const std::int64_t lo = b * o_.batch_size, hi = std::min<std::int64_t>(lo + o_.batch_size, epoch_size());
        std::vector<Tensor<float, Cpu>> imgs;
        Batch out;
        for (std::int64_t k = lo; k < hi; ++k) {
            const std::int64_t i = order_[static_cast<std::size_t>(k)];
            const std::int64_t stream = streams_[static_cast<std::size_t>(k)];  // a repeated draw gets its own augmentation
            Rng rng(mix(o_.seed, static_cast<std::uint64_t>(epoch_), static_cast<std::uint64_t>(stream) + 1));
            try {
                imgs.push_back(load_(i, rng));
            } catch (const Error&) {
                if (!o_.skip_errors) throw;
                ++skipped_;
                continue;
            }
            MEDIMG_CHECK(imgs.back().rank() == 3 && imgs.back().shape() == imgs.front().shape(), ShapeError,
                         "DataLoader: sample ", i, " has shape ", imgs.back().shape(), " but the batch holds ", imgs.front().shape(),
                         " (every image must come out of the transforms at the same size)");
            out.indices.push_back(i);
        }
        const auto n = static_cast<std::int64_t>(imgs.size());
        const Shape s = n ? imgs.front().shape() : Shape{0, 0, 0};
        const Shape bs{n, s[0], s[1], s[2]};
        out.images = o_.allocate_images ? o_.allocate_images(bs) : Tensor<float, Cpu>::empty(bs);
        MEDIMG_CHECK(out.images.defined() && out.images.shape() == bs, ShapeError, "DataLoader: the image allocator returned ",
                     out.images.defined() ? out.images.shape() : Shape{}, " for a batch of ", bs);
        out.labels = Tensor<std::int64_t, Cpu>::empty({n});
        for (std::int64_t k = 0; k < n; ++k) {
            std::copy(imgs[static_cast<std::size_t>(k)].data(), imgs[static_cast<std::size_t>(k)].data() + s.numel(),
                      out.images.data() + k * s.numel());
            out.labels[k] = labels_[static_cast<std::size_t>(out.indices[static_cast<std::size_t>(k)])];
        }
        return out;
    }
    void work() {
        medimg::detail::serial_thread() = true;  // kernels called from here run on this thread only
        for (;;) {
            std::int64_t b;
            {
                std::unique_lock<std::mutex> lock(m_);
                // Bounded: never more than prefetch_batches decoded and not yet taken.
                cv_.wait(lock, [&] { return stopping_ || next_to_make_ < std::min(num_batches(), next_to_take_ + o_.prefetch_batches); });
                if (stopping_ || next_to_make_ >= num_batches()) return;
                b = next_to_make_++;
            }
            try {
                Batch batch = make(b);
                std::lock_guard<std::mutex> lock(m_);
                ready_.emplace(b, std::move(batch));
            } catch (...) {
                std::lock_guard<std::mutex> lock(m_);
                if (!error_) error_ = std::current_exception();
            }
            cv_.notify_all();
        }
    }
    void stop() {
        {
            std::lock_guard<std::mutex> lock(m_);
            stopping_ = true;
        }
        cv_.notify_all();
        for (auto& t : threads_) t.join();
        threads_.clear();
    }

    std::vector<std::int64_t> labels_;
    SampleFn load_;
    LoaderOptions o_;
    std::int64_t epoch_ = 0;
    std::vector<std::int64_t> order_, streams_;  // this epoch's samples (this rank's share) and their Rng streams
    std::mutex m_;
    std::condition_variable cv_;
    std::vector<std::thread> threads_;
    std::int64_t next_to_make_ = 0;
    std::atomic<std::int64_t> next_to_take_{0};
    std::map<std::int64_t, Batch> ready_;
    std::exception_ptr error_;
    bool stopping_ = false;
    std::atomic<std::int64_t> skipped_{0};
};

}  // namespace medimg::data
