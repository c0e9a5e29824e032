// SPDX-License-Identifier: MIT
// cuda/allocator.hpp: the caching device allocator behind Memory<Cuda>. Requests are rounded up to
// a size class (multiples of 512 B up to 4 KiB, then four classes per power of two: at most 25%
// slack), and a freed block goes onto its class's free list instead of back to cudaFree. A training
// step asks for the same sizes every iteration, so after the first step allocate() is a map lookup
// with no cudaMalloc / cudaFree (both synchronise the device).
// Reuse is safe without events because all medimg work runs on one stream (context.hpp): a block
// freed by the host is only handed out again to work queued behind its last use.
// When cudaMalloc runs out of memory the cache is emptied and the request retried once.
// Deliberately not here: block splitting/merging (PyTorch's allocator), per-stream pools.
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/allocator.hpp: include only from a TU compiled by nvcc"
#endif

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <cuda_runtime.h>

#include "medimg/cuda/check.hpp"
#include "medimg/cuda/context.hpp"
#include "medimg/cuda/device.hpp"

namespace medimg::cuda {

/// Counters of one device's cache (all bytes are size-class bytes).
struct AllocatorStats {
    std::size_t bytes_in_use = 0;       // handed out and not yet freed
    std::size_t bytes_cached = 0;       // on free lists, ready for reuse
    std::size_t peak_bytes_in_use = 0;  // since the last reset_peak()
    std::size_t device_allocations = 0; // cudaMalloc calls that succeeded
    std::size_t device_frees = 0;       // cudaFree calls (empty_cache, out-of-memory retries)
    std::size_t cache_hits = 0;         // allocate() served from a free list
    std::size_t requests = 0;           // allocate() calls with bytes > 0
};

class CachingAllocator {
public:
    /// The process-wide allocator (never destroyed: tensors in static storage may outlive main).
    static CachingAllocator& instance() {
        static auto* a = new CachingAllocator();
        return *a;
    }

    /// The size class a request of `bytes` is served from.
    static std::size_t size_class(std::size_t bytes) {
        constexpr std::size_t small = 512;
        if (bytes <= 4096) return (bytes + small - 1) / small * small;
        std::size_t p = 4096;
        while (p * 2 <= bytes) p *= 2;  // p <= bytes < 2p
        const std::size_t step = p / 4;
        return (bytes + step - 1) / step * step;
    }

    /// A device block of at least `bytes` on the current device; nullptr for 0 bytes.
    void* allocate(std::size_t bytes) {
        if (bytes == 0) return nullptr;
        const std::size_t cls = size_class(bytes);
        const int dev = current_device();
        std::lock_guard<std::mutex> lock(mu_);
        Pool& pool = pools_[dev];
        ++pool.stats.requests;
        auto& list = pool.free[cls];
        void* p = nullptr;
        if (!list.empty()) {
            p = list.back();
            list.pop_back();
            pool.stats.bytes_cached -= cls;
            ++pool.stats.cache_hits;
        } else {
            p = device_malloc(pool, cls, dev);
        }
        blocks_[p] = Block{cls, dev};
        pool.stats.bytes_in_use += cls;
        if (pool.stats.bytes_in_use > pool.stats.peak_bytes_in_use) pool.stats.peak_bytes_in_use = pool.stats.bytes_in_use;
        return p;
    }

    /// Returns a block to its free list (no cudaFree). Unknown pointers are ignored.
    void deallocate(void* p) noexcept {
        if (!p) return;
        std::lock_guard<std::mutex> lock(mu_);
        const auto it = blocks_.find(p);
        if (it == blocks_.end()) return;
        Pool& pool = pools_[it->second.device];
        pool.free[it->second.bytes].push_back(p);
        pool.stats.bytes_in_use -= it->second.bytes;
        pool.stats.bytes_cached += it->second.bytes;
        blocks_.erase(it);
    }

    /// cudaFree every cached block of the current device (after the stream has drained).
    void empty_cache() {
        const int dev = current_device();
        MEDIMG_CUDA_CHECK(cudaStreamSynchronize(stream()));
        std::lock_guard<std::mutex> lock(mu_);
        release_cached(pools_[dev]);
    }

    AllocatorStats stats() {
        const int dev = current_device();
        std::lock_guard<std::mutex> lock(mu_);
        return pools_[dev].stats;
    }
    void reset_peak() {
        const int dev = current_device();
        std::lock_guard<std::mutex> lock(mu_);
        pools_[dev].stats.peak_bytes_in_use = pools_[dev].stats.bytes_in_use;
    }

private:
    struct Block {
        std::size_t bytes;
        int device;
    };
    struct Pool {
        std::map<std::size_t, std::vector<void*>> free;  // size class -> blocks
        AllocatorStats stats;
    };

    CachingAllocator() = default;

    void release_cached(Pool& pool) {  // mu_ held
        for (auto& [cls, list] : pool.free) {
            for (void* p : list) {
                (void)cudaFree(p);
                ++pool.stats.device_frees;
            }
            pool.stats.bytes_cached -= cls * list.size();
            list.clear();
        }
    }

    void* device_malloc(Pool& pool, std::size_t cls, int dev) {  // mu_ held
        void* p = nullptr;
        cudaError_t e = cudaMalloc(&p, cls);
        if (e == cudaErrorMemoryAllocation && pool.stats.bytes_cached > 0) {
            (void)cudaGetLastError();
            (void)cudaStreamSynchronize(detail::device_state(dev).stream);
            release_cached(pool);
            e = cudaMalloc(&p, cls);
        }
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            std::size_t free_b = 0, total_b = 0;
            (void)cudaMemGetInfo(&free_b, &total_b);
            (void)cudaGetLastError();
            detail::throw_cuda_error("cudaMalloc", __FILE__, __LINE__,
                                     ::medimg::detail::concat(cudaGetErrorString(e), " (", cudaGetErrorName(e),
                                                              ") allocating ", cls, " bytes on device ", dev, "; medimg holds ",
                                                              pool.stats.bytes_in_use, " bytes in use, device has ", free_b,
                                                              " of ", total_b, " bytes free"));
        }
        ++pool.stats.device_allocations;
        return p;
    }

    std::mutex mu_;
    std::map<int, Pool> pools_;
    std::unordered_map<void*, Block> blocks_;
};

/// A device buffer from the cache, returned to it when the object dies (workspaces, scratch).
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(std::size_t bytes) : p_(CachingAllocator::instance().allocate(bytes)), bytes_(bytes) {}
    ~DeviceBuffer() { CachingAllocator::instance().deallocate(p_); }
    DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), bytes_(o.bytes_) { o.p_ = nullptr, o.bytes_ = 0; }
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
        if (this != &o) {
            CachingAllocator::instance().deallocate(p_);
            p_ = o.p_, bytes_ = o.bytes_;
            o.p_ = nullptr, o.bytes_ = 0;
        }
        return *this;
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    void* get() const { return p_; }
    template <class T>
    T* as() const { return static_cast<T*>(p_); }
    std::size_t bytes() const { return bytes_; }

private:
    void* p_ = nullptr;
    std::size_t bytes_ = 0;
};

/// Frees every cached block of the current device (torch.cuda.empty_cache()).
inline void empty_cache() { CachingAllocator::instance().empty_cache(); }
/// The current device's allocator counters (torch.cuda.memory_stats(), in brief).
inline AllocatorStats allocator_stats() { return CachingAllocator::instance().stats(); }

}  // namespace medimg::cuda
