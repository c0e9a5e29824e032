// SPDX-License-Identifier: MIT
// cuda/staging.cuh: how host batches reach the GPU during training, and the on-device count of
// right predictions (train/upload.hpp's BatchUploader<Cuda> and CorrectCounter<Cuda>).
//   PinnedPool     pinned (cudaHostAllocPortable) host blocks handed out as Tensor<T, Cpu> whose
//                  deleter gives the block back (thread-safe: the loader's workers collate batches
//                  into them). Best fit among free blocks, else a new block with 12.5% headroom, so
//                  a run settles on a fixed set: no cudaHostAlloc in steady state.
//   PinnedCopies   cudaMemcpyAsync straight from a pool tensor; the tensor handle is kept, with an
//                  event recorded after the copy, until the event has fired, so its block cannot
//                  go back to the pool (and to a worker) while the DMA still reads it.
//   PinnedStaging  for any other host tensor: a ring of pinned blocks, each with an event: a copy
//                  memcpys the host tensor into the next block (1 MiB pieces over the CPU threads),
//                  queues cudaMemcpyAsync from it on the backend's stream and records the block's
//                  event; a block is only rewritten after its event has fired. Blocks grow to the
//                  largest batch and are then reused. With four blocks (images + labels of two
//                  steps) a step never waits: the previous step's loss read has drained the stream.
//   count_correct  one thread per row: the first maximum (std::max_element's rule; NaN never
//                  wins a comparison) compared with the label, atomicAdd into a device counter
//                  (integers: the count is exact and deterministic).
//   GradClipper    clip_grad_norm with the squared norms (the deterministic double reduction of
//                  kernels/elementwise.cuh), the norm and the scale kept on the device; one kernel
//                  per gradient reads the scale there (train::clip_grad_norm's rule and rounding).
// Deliberately not here: decoding straight into pinned memory (each sample is decoded into its
// own tensor and copied once into its row of the pinned batch, on a worker thread), multiple
// devices (the copies serve the current device).
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/staging.cuh: include only from a TU compiled by nvcc"
#endif

#include <any>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include <cuda_runtime.h>

#include "medimg/core/parallel.hpp"
#include "medimg/cuda/check.hpp"
#include "medimg/cuda/context.hpp"
#include "medimg/cuda/kernels/common.cuh"
#include "medimg/cuda/kernels/elementwise.cuh"
#include "medimg/cuda/memory.cuh"
#include "medimg/nn/module.hpp"
#include "medimg/train/upload.hpp"

namespace medimg::cuda {

namespace detail {
/// The size of a new pinned block for `bytes`: whole pages, 12.5% headroom for a larger batch.
inline std::size_t pinned_capacity(std::size_t bytes) { return (bytes + bytes / 8 + 4095) / 4096 * 4096; }
/// Bytes held by a list of blocks (anything with a `capacity`).
template <class Blocks>
std::size_t total_capacity(const Blocks& blocks) {
    std::size_t s = 0;
    for (const auto& b : blocks) s += b.capacity;
    return s;
}
}  // namespace detail

/// Pinned host memory handed out as host tensors; see the file header. Hold it by shared_ptr:
/// every tensor it hands out keeps it alive.
class PinnedPool : public std::enable_shared_from_this<PinnedPool> {
public:
    PinnedPool() = default;
    ~PinnedPool() {  // every tensor is gone (they hold the pool); errors ignored in a destructor
        for (auto& b : blocks_) (void)cudaFreeHost(b.host);
    }
    PinnedPool(const PinnedPool&) = delete;
    PinnedPool& operator=(const PinnedPool&) = delete;

    /// An uninitialised host tensor in a pinned block (Tensor::empty for zero elements).
    template <class T>
    Tensor<T, Cpu> empty(const Shape& shape) {
        const std::size_t bytes = static_cast<std::size_t>(shape.numel()) * sizeof(T);
        if (bytes == 0) return Tensor<T, Cpu>::empty(shape);
        void* p = acquire(bytes);
        auto self = shared_from_this();
        return Tensor<T, Cpu>::from_storage(shape, std::shared_ptr<T>(static_cast<T*>(p), [self](T* q) { self->release(q); }));
    }
    /// True when [p, p + bytes) lies inside one of the pool's blocks.
    bool owns(const void* p, std::size_t bytes) const {
        const auto* c = static_cast<const unsigned char*>(p);
        std::lock_guard<std::mutex> lock(m_);
        for (const auto& b : blocks_) {
            const auto* lo = static_cast<const unsigned char*>(b.host);
            if (c >= lo && c + bytes <= lo + b.capacity) return true;
        }
        return false;
    }
    /// cudaHostAlloc calls so far.
    std::size_t host_allocations() const {
        std::lock_guard<std::mutex> lock(m_);
        return blocks_.size();
    }
    /// Blocks handed out and not yet given back.
    std::size_t in_use() const {
        std::lock_guard<std::mutex> lock(m_);
        std::size_t n = 0;
        for (const auto& b : blocks_) n += b.in_use;
        return n;
    }
    std::size_t pinned_bytes() const {
        std::lock_guard<std::mutex> lock(m_);
        return detail::total_capacity(blocks_);
    }

private:
    struct Block {
        void* host = nullptr;
        std::size_t capacity = 0;
        bool in_use = false;
    };
    void* acquire(std::size_t bytes) {
        std::lock_guard<std::mutex> lock(m_);
        Block* best = nullptr;
        for (auto& b : blocks_)
            if (!b.in_use && b.capacity >= bytes && (!best || b.capacity < best->capacity)) best = &b;
        if (!best) {
            Block b;
            b.capacity = detail::pinned_capacity(bytes);
            // Portable: pinned for every device context, whichever thread (a loader worker) asks.
            MEDIMG_CUDA_CHECK(cudaHostAlloc(&b.host, b.capacity, cudaHostAllocPortable));
            blocks_.push_back(b);
            best = &blocks_.back();
        }
        best->in_use = true;
        return best->host;
    }
    void release(void* p) noexcept {
        std::lock_guard<std::mutex> lock(m_);
        for (auto& b : blocks_)
            if (b.host == p) b.in_use = false;
    }

    mutable std::mutex m_;
    std::vector<Block> blocks_;
};

/// Host -> device copies straight from pinned host tensors (a PinnedPool's); see the file header.
class PinnedCopies {
public:
    PinnedCopies() = default;
    ~PinnedCopies() {  // the sources must outlive their copies; errors ignored in a destructor
        for (auto& s : slots_) {
            if (s.pending) (void)cudaEventSynchronize(s.done);
            s.keep.reset();
            if (s.done) (void)cudaEventDestroy(s.done);
        }
    }
    PinnedCopies(const PinnedCopies&) = delete;
    PinnedCopies& operator=(const PinnedCopies&) = delete;

    /// dst (device) <- t (pinned host), queued on stream(); t's storage is held until the copy ran.
    template <class T>
    void copy_to_device(T* dst, const Tensor<T, Cpu>& t) {
        if (t.numel() == 0) return;
        Slot& s = free_slot();
        if (!s.done) MEDIMG_CUDA_CHECK(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
        MEDIMG_CUDA_CHECK(cudaMemcpyAsync(dst, t.data(), t.bytes(), cudaMemcpyHostToDevice, stream()));
        MEDIMG_CUDA_CHECK(cudaEventRecord(s.done, stream()));
        s.keep = t;
        s.pending = true;
        s.order = ++issued_;
    }
    /// Copies whose source is still held (in flight, or finished but not yet noticed).
    std::size_t pending() const {
        std::size_t n = 0;
        for (const auto& s : slots_) n += s.pending;
        return n;
    }

private:
    struct Slot {
        cudaEvent_t done = nullptr;
        std::any keep;  // the source tensor (a handle on its pinned block)
        bool pending = false;
        std::uint64_t order = 0;
    };
    static constexpr std::size_t kSlots = 8;
    /// Lets go of every source whose copy has run; a free slot, waiting for the oldest copy when
    /// all kSlots are in flight.
    Slot& free_slot() {
        Slot* oldest = nullptr;
        for (auto& s : slots_) {
            if (!s.pending) continue;
            const cudaError_t e = cudaEventQuery(s.done);
            if (e == cudaSuccess) {
                s.pending = false;
                s.keep.reset();  // the block goes back to its pool
            } else if (e != cudaErrorNotReady) {
                MEDIMG_CUDA_CHECK(e);
            } else if (!oldest || s.order < oldest->order) {
                oldest = &s;
            }
        }
        for (auto& s : slots_)
            if (!s.pending) return s;
        MEDIMG_CUDA_CHECK(cudaEventSynchronize(oldest->done));
        oldest->pending = false;
        oldest->keep.reset();
        return *oldest;
    }
    std::array<Slot, kSlots> slots_;
    std::uint64_t issued_ = 0;
};

/// Pinned host staging blocks for host -> device copies on stream(); see the file header.
class PinnedStaging {
public:
    explicit PinnedStaging(int blocks = 4) : blocks_(static_cast<std::size_t>(blocks < 1 ? 1 : blocks)) {}
    ~PinnedStaging() {  // errors ignored: nothing useful can be done in a destructor
        for (auto& b : blocks_) {
            if (b.pending) (void)cudaEventSynchronize(b.done);
            if (b.host) (void)cudaFreeHost(b.host);
            if (b.done) (void)cudaEventDestroy(b.done);
        }
    }
    PinnedStaging(const PinnedStaging&) = delete;
    PinnedStaging& operator=(const PinnedStaging&) = delete;

    /// dst (device, `bytes`) <- src (host, `bytes`): waits only if the next block's previous copy
    /// is still in flight, memcpys src into it, queues the DMA and returns. src may be reused or
    /// freed at once; dst is ready for work queued after this call on stream().
    void copy_to_device(void* dst, const void* src, std::size_t bytes) {
        if (bytes == 0) return;
        Block& b = blocks_[next_];
        next_ = (next_ + 1) % blocks_.size();
        if (!b.done) MEDIMG_CUDA_CHECK(cudaEventCreateWithFlags(&b.done, cudaEventDisableTiming));
        if (b.pending) {
            MEDIMG_CUDA_CHECK(cudaEventSynchronize(b.done));
            b.pending = false;
        }
        if (b.capacity < bytes) {
            if (b.host) MEDIMG_CUDA_CHECK(cudaFreeHost(b.host));
            b.host = nullptr;
            b.capacity = 0;
            const std::size_t cap = detail::pinned_capacity(bytes);
            MEDIMG_CUDA_CHECK(cudaHostAlloc(&b.host, cap, cudaHostAllocDefault));
            b.capacity = cap;
            ++host_allocations_;
        }
        // The host copy in 1 MiB pieces over the CPU threads: one thread copies ~5-10 GB/s, a
        // 64x3x224x224 float batch is 38.5 MB.
        constexpr std::int64_t kPiece = std::int64_t(1) << 20;
        auto* to = static_cast<unsigned char*>(b.host);
        const auto* from = static_cast<const unsigned char*>(src);
        parallel_blocks(static_cast<std::int64_t>(bytes), kPiece, [&](std::int64_t lo, std::int64_t hi) {
            std::memcpy(to + lo, from + lo, static_cast<std::size_t>(hi - lo));
        });
        MEDIMG_CUDA_CHECK(cudaMemcpyAsync(dst, b.host, bytes, cudaMemcpyHostToDevice, stream()));
        MEDIMG_CUDA_CHECK(cudaEventRecord(b.done, stream()));
        b.pending = true;
    }

    /// cudaHostAlloc calls so far (constant once every block has seen the largest batch).
    std::size_t host_allocations() const { return host_allocations_; }
    /// Pinned bytes held.
    std::size_t pinned_bytes() const { return detail::total_capacity(blocks_); }

private:
    struct Block {
        void* host = nullptr;
        std::size_t capacity = 0;
        cudaEvent_t done = nullptr;  // recorded after the DMA that reads `host`
        bool pending = false;
    };
    std::vector<Block> blocks_;
    std::size_t next_ = 0;
    std::size_t host_allocations_ = 0;
};

namespace detail {
namespace {
// logits: (N, C), labels: (N) -> *count += #{i : first argmax of row i == labels[i]}
template <class T>
__global__ void count_correct_kernel(const T* logits, const std::int64_t* labels, std::int64_t N, std::int64_t C,
                                     unsigned long long* count) {
    MEDIMG_GRID_STRIDE(i, N) {
        const T* row = logits + i * C;
        std::int64_t best = 0;
        for (std::int64_t c = 1; c < C; ++c)
            if (row[best] < row[c]) best = c;
        if (best == labels[i]) atomicAdd(count, 1ULL);
    }
}

// sq: (k) squared gradient norms -> *scale = max_norm / (sqrt(sum sq) + 1e-6) (summed in
// parameter order, as clip_grad_norm adds its dots)
template <class A>
__global__ void clip_scale_kernel(const A* sq, std::int64_t k, double max_norm, A* scale) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    A s = 0.0;
    for (std::int64_t i = 0; i < k; ++i) s += sq[i];
    scale[0] = max_norm / (sqrt(s) + 1e-6);
}
// g *= scale when scale < 1, as ops::affine(g, T(scale), T(0), g) does on the host
template <class T>
__global__ void clip_apply_kernel(T* g, std::int64_t n, const double* scale) {
    const double s = scale[0];
    if (!(s < 1.0)) return;
    const T a = static_cast<T>(s);
    MEDIMG_GRID_STRIDE(i, n) g[i] = a * g[i] + T(0);
}
}  // namespace

template <class T>
void count_correct(const T* logits, const std::int64_t* labels, std::int64_t N, std::int64_t C, std::int64_t* count) {
    if (N <= 0 || C <= 0) return;
    static_assert(sizeof(std::int64_t) == sizeof(unsigned long long), "medimg: int64 counters are 64-bit");
    count_correct_kernel<T><<<blocks_for(N), kThreads, 0, stream()>>>(logits, labels, N, C,
                                                                       reinterpret_cast<unsigned long long*>(count));
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

inline void clip_scale(const double* sq, std::int64_t k, double max_norm, double* scale) {
    clip_scale_kernel<double><<<1, 1, 0, stream()>>>(sq, k, max_norm, scale);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void clip_apply(T* g, std::int64_t n, const double* scale) {
    if (n <= 0) return;
    clip_apply_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(g, n, scale);
    MEDIMG_CUDA_CHECK(cudaGetLastError());
}
}  // namespace detail

}  // namespace medimg::cuda

namespace medimg::train {

template <>
class BatchUploader<Cuda> {
public:
    /// A device copy of t, queued on the backend's stream; returns at once. A tensor from
    /// host_allocator()'s pool is copied by DMA straight from its block (held until the copy has
    /// run; do not write into it after this call), any other through pinned staging (t may be
    /// reused at once).
    template <class T>
    Tensor<T, Cuda> operator()(const Tensor<T, Cpu>& t) {
        auto d = Tensor<T, Cuda>::empty(t.shape());
        if (t.numel() > 0 && pool_->owns(t.data(), t.bytes()))
            direct_.copy_to_device(d.data(), t);
        else
            staging_.copy_to_device(d.data(), t.data(), t.bytes());
        return d;
    }
    /// For DataLoader::set_image_allocator: batches collated into this uploader's pinned pool.
    data::ImageAllocator host_allocator() const {
        return [pool = pool_](const Shape& s) { return pool->empty<float>(s); };
    }
    const cuda::PinnedStaging& staging() const { return staging_; }
    const cuda::PinnedPool& pool() const { return *pool_; }
    const cuda::PinnedCopies& direct() const { return direct_; }

private:
    std::shared_ptr<cuda::PinnedPool> pool_ = std::make_shared<cuda::PinnedPool>();
    cuda::PinnedStaging staging_{4};
    cuda::PinnedCopies direct_;  // declared last: destroyed first, waiting for its copies before
                                 // their blocks go back to the pool
};

template <>
class CorrectCounter<Cuda> {
public:
    template <class T>
    void add(const Tensor<T, Cuda>& logits, const Tensor<std::int64_t, Cuda>& labels) {
        MEDIMG_CHECK(logits.rank() == 2 && labels.rank() == 1 && logits.size(0) == labels.numel(), ShapeError,
                     "CorrectCounter::add: expected logits (N, C) and labels (N), got ", logits.shape(), " and ",
                     labels.shape());
        if (!count_.defined()) count_ = Tensor<std::int64_t, Cuda>::zeros(Shape{1});
        cuda::detail::count_correct(logits.data(), labels.data(), labels.numel(), logits.size(1), count_.data());
    }
    /// The count so far: one device -> host copy (call it once per epoch, outside the steps).
    std::int64_t count() const { return count_.defined() ? count_.item() : 0; }
    void reset() {
        if (count_.defined()) count_.zero_();
    }

private:
    Tensor<std::int64_t, Cuda> count_;
};

template <>
class GradClipper<Cuda> {
public:
    /// train::clip_grad_norm on the device; nothing is copied to the host (the norm, which
    /// clip_grad_norm returns, is not needed by the fit loop and stays on the device).
    template <class T>
    void operator()(const nn::NamedParams<T, Cuda>& params, double max_norm) {
        const auto P = static_cast<std::int64_t>(params.size());
        if (!buf_.defined() || buf_.numel() < P + 1) buf_ = Tensor<double, Cuda>::empty(Shape{P + 1});
        double* sq = buf_.data();  // (P) squared norms, then the scale
        std::int64_t k = 0;
        for (const auto& [name, p] : params) {
            const auto& g = p.grad();
            if (!g.defined()) continue;
            cuda::detail::reduce_to_device(cuda::detail::DotTerm<T>{g.data(), g.data()}, g.numel(), sq + k);
            ++k;
        }
        double* scale = sq + P;
        cuda::detail::clip_scale(sq, k, max_norm, scale);
        for (auto [name, p] : params) {  // Var is a handle: the copy shares the gradient
            auto& g = p.grad();
            if (g.defined()) cuda::detail::clip_apply(g.data(), g.numel(), scale);
        }
    }

private:
    Tensor<double, Cuda> buf_;  // (P + 1): the squared norms and the scale
};

}  // namespace medimg::train
