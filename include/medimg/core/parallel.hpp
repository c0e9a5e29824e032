// SPDX-License-Identifier: MIT
// parallel.hpp: the CPU thread count, parallel_for / parallel_blocks / parallel_chunks, and the
// library's own thread pool that runs them.
//
// Why a pool of our own: OpenMP's regions end in a barrier that waits for every thread of the
// team, so one worker that starts late (descheduled by another process on a shared machine, or
// asleep under libgomp's wait policy) holds up the whole region; a batch-1 forward pass is a chain
// of a few hundred short regions and its latency was bimodal (RESULTS.md, "Threads (batch 1)").
// Here the caller and the workers take work items one at a time from a shared counter, and the
// caller returns as soon as every item has run: a worker that arrives late finds nothing left and
// nobody waited for it. Workers spin for a short while after a job (the next one usually follows
// within microseconds), then sleep on a condition variable, so an idle library leaves the cores
// to others. MEDIMG_POOL=0 in the environment runs the same calls as OpenMP regions instead.
//
// Determinism: parallel_for's f(i) and parallel_chunks' chunks are the same whichever thread runs
// them (chunks are a fixed partition of the range into num_threads() parts, numbered), so a fixed
// thread count gives bit-identical results run to run, as with OpenMP's static schedule.
// The thread count is OpenMP's (omp_get_max_threads: the cores, or OMP_NUM_THREADS); without
// OpenMP the build runs serially. Eigen's own GEMM threads follow the same count.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "medimg/error.hpp"

#ifdef _OPENMP
#  include <omp.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#  include <immintrin.h>
#endif

namespace medimg {

namespace detail {
/// Set on threads that must not start thread teams of their own (data-loader workers run beside
/// the training threads; nested teams would oversubscribe the cores).
inline bool& serial_thread() {
    thread_local bool serial = false;
    return serial;
}
/// True while this thread runs a pool job's items (nested calls then run serially).
inline bool& in_pool_job() {
    thread_local bool inside = false;
    return inside;
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#else
    std::this_thread::yield();
#endif
}

/// The library's thread pool (see the file header). One job at a time: a second thread that
/// calls run() while a job is under way runs its items itself.
class Pool {
public:
    /// How long an idle worker spins before it sleeps.
    static constexpr std::chrono::microseconds kSpin{200};

    static Pool& get() {
        static Pool* pool = new Pool;  // never destroyed: workers may still sleep at exit
        return *pool;
    }

    /// Calls call(ctx, i) once for every i in [0, n), on this thread and up to `threads - 1`
    /// workers; returns when all have returned. The first exception thrown by an item is
    /// rethrown here (later items still run).
    void run(std::int64_t n, int threads, void (*call)(void*, std::int64_t), void* ctx) {
        if (threads <= 1 || n <= 1 || in_pool_job()) {
            serial(n, call, ctx);
            return;
        }
        std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
        if (!busy.owns_lock()) {  // another thread's job is under way
            serial(n, call, ctx);
            return;
        }
        ensure_workers(threads - 1);
        const std::uint64_t gen = (counter_.load(std::memory_order_relaxed) >> 32) + 1;
        Job& job = jobs_[gen & 1];
        job.n.store(n, std::memory_order_relaxed);
        job.workers.store(threads - 1, std::memory_order_relaxed);
        job.call.store(call, std::memory_order_relaxed);
        job.ctx.store(ctx, std::memory_order_relaxed);
        job.done.store(0, std::memory_order_relaxed);
        job.error = nullptr;
        // Publishes the job. seq_cst on both sides (this store then the sleepers load; a worker's
        // sleepers increment then its counter load) so that a worker going to sleep either sees
        // this job or is seen here and woken: a release store could pass the load below.
        counter_.store(gen << 32, std::memory_order_seq_cst);
        if (sleepers_.load(std::memory_order_seq_cst) > 0) {
            std::lock_guard<std::mutex> g(sleep_mutex_);
            wake_.notify_all();
        }
        work(gen, job);
        while (job.done.load(std::memory_order_acquire) < n) cpu_relax();
        if (job.error) std::rethrow_exception(job.error);
    }

private:
    struct Job {
        std::atomic<std::int64_t> n{0};
        std::atomic<int> workers{0};
        std::atomic<void (*)(void*, std::int64_t)> call{nullptr};
        std::atomic<void*> ctx{nullptr};
        std::atomic<std::int64_t> done{0};
        std::exception_ptr error;  // written under error_mutex_
    };

    Pool() = default;

    static void serial(std::int64_t n, void (*call)(void*, std::int64_t), void* ctx) {
        const bool outer = in_pool_job();
        in_pool_job() = true;
        try {
            for (std::int64_t i = 0; i < n; ++i) call(ctx, i);
        } catch (...) {
            in_pool_job() = outer;
            throw;
        }
        in_pool_job() = outer;
    }

    /// Claims and runs items of job `gen` until none is left. An item is claimed by moving the
    /// counter (generation << 32 | next item) from i to i + 1 while it still names this job: a
    /// thread that read an older job's description can never run an item of a newer one, and a
    /// job's description stays in place until all its claimed items are done.
    void work(std::uint64_t gen, Job& job) {
        const std::int64_t n = job.n.load(std::memory_order_relaxed);
        const auto call = job.call.load(std::memory_order_relaxed);
        void* ctx = job.ctx.load(std::memory_order_relaxed);
        const bool outer = in_pool_job();
        in_pool_job() = true;
        std::uint64_t w = counter_.load(std::memory_order_acquire);
        while ((w >> 32) == gen) {
            const auto i = static_cast<std::int64_t>(w & 0xFFFFFFFFu);
            if (i >= n) break;
            if (!counter_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
            try {
                call(ctx, i);
            } catch (...) {
                std::lock_guard<std::mutex> g(error_mutex_);
                if (!job.error) job.error = std::current_exception();
            }
            job.done.fetch_add(1, std::memory_order_release);
            w = counter_.load(std::memory_order_acquire);
        }
        in_pool_job() = outer;
    }

    void ensure_workers(int count) {
        while (static_cast<int>(workers_.size()) < count) {
            const int index = static_cast<int>(workers_.size());
            workers_.emplace_back([this, index] { worker(index); });
            workers_.back().detach();
        }
    }

    void worker(int index) {
        std::uint64_t seen = counter_.load(std::memory_order_acquire) >> 32;
        for (;;) {
            std::uint64_t gen = counter_.load(std::memory_order_acquire) >> 32;
            if (gen == seen) {
                const auto until = std::chrono::steady_clock::now() + kSpin;
                int polls = 0;
                while ((gen = counter_.load(std::memory_order_acquire) >> 32) == seen) {
                    cpu_relax();
                    if (++polls % 64 == 0 && std::chrono::steady_clock::now() > until) break;
                }
                if (gen == seen) {
                    std::unique_lock<std::mutex> lock(sleep_mutex_);
                    sleepers_.fetch_add(1, std::memory_order_seq_cst);
                    wake_.wait(lock, [&] { return (counter_.load(std::memory_order_seq_cst) >> 32) != seen; });
                    sleepers_.fetch_sub(1, std::memory_order_seq_cst);
                    continue;
                }
            }
            seen = gen;
            Job& job = jobs_[gen & 1];
            if (index < job.workers.load(std::memory_order_relaxed)) work(gen, job);
        }
    }

    std::mutex busy_;                        // one job at a time
    std::atomic<std::uint64_t> counter_{0};  // generation << 32 | next item of the current job
    Job jobs_[2];                            // the current job's description, by generation parity
    std::mutex error_mutex_;
    std::mutex sleep_mutex_;
    std::condition_variable wake_;
    std::atomic<int> sleepers_{0};
    std::vector<std::thread> workers_;
};

/// Whether parallel work goes to the library's pool (default) or to OpenMP regions (MEDIMG_POOL=0).
inline bool use_pool() {
    static const bool on = [] {
        const char* e = std::getenv("MEDIMG_POOL");
        return !(e && std::string(e) == "0");
    }();
    return on;
}

/// Runs f(i) for i in [0, n) over `threads` threads: the pool, or an OpenMP region whose threads
/// take items from a shared counter.
template <class F>
void run_items(std::int64_t n, int threads, F&& f) {
    using Fn = std::remove_reference_t<F>;
#ifdef _OPENMP
    if (!use_pool()) {
#  pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
        for (std::int64_t i = 0; i < n; ++i) f(i);
        return;
    }
#endif
    Pool::get().run(n, threads, [](void* ctx, std::int64_t i) { (*static_cast<Fn*>(ctx))(i); },
                    const_cast<void*>(static_cast<const void*>(&f)));
}
}  // namespace detail

#ifdef _OPENMP
/// Threads used by CPU kernels (defaults to the number of cores, or OMP_NUM_THREADS).
inline int num_threads() { return omp_get_max_threads(); }
/// True inside a parallel region or pool job (kernels then run their inner loops serially).
inline bool in_parallel() { return omp_in_parallel() != 0 || detail::serial_thread() || detail::in_pool_job(); }
inline void set_num_threads(int n) {
    MEDIMG_CHECK(n >= 1, ValueError, "set_num_threads: need at least 1 thread, got ", n);
    omp_set_num_threads(n);
    Eigen::setNbThreads(n);
}
#else
inline int num_threads() { return 1; }
inline bool in_parallel() { return detail::serial_thread() || detail::in_pool_job(); }
inline void set_num_threads(int n) {
    MEDIMG_CHECK(n >= 1, ValueError, "set_num_threads: need at least 1 thread, got ", n);
}
#endif

/// Calls f(i) for i in [begin, end), in contiguous chunks spread over the threads (about four per
/// thread, taken as threads become free). Runs serially when the range is smaller than 2 * grain,
/// with one thread, or when already inside a parallel region.
template <class F>
void parallel_for(std::int64_t begin, std::int64_t end, F&& f, std::int64_t grain = 1) {
    const std::int64_t n = end - begin;
    if (n <= 0) return;
    const int t = num_threads();
    if (n < 2 * std::max<std::int64_t>(grain, 1) || t == 1 || in_parallel()) {
        for (std::int64_t i = begin; i < end; ++i) f(i);
        return;
    }
    const std::int64_t chunks = std::min<std::int64_t>(n, 4 * static_cast<std::int64_t>(t));
    detail::run_items(chunks, t, [&](std::int64_t c) {
        for (std::int64_t i = begin + n * c / chunks, hi = begin + n * (c + 1) / chunks; i < hi; ++i) f(i);
    });
}

/// Calls f(lo, hi) over [0, n) cut into blocks of `grain` elements, the blocks spread over the
/// threads: the shape of every memory-bound elementwise loop (more, smaller tasks only add
/// overhead; a fixed block size keeps reductions over blocks deterministic).
template <class F>
void parallel_blocks(std::int64_t n, std::int64_t grain, F&& f) {
    const std::int64_t nb = (n + grain - 1) / grain;
    parallel_for(0, nb, [&](std::int64_t b) { f(b * grain, std::min(n, (b + 1) * grain)); });
}

/// Calls f(chunk_begin, chunk_end, chunk_index) for a fixed split of [begin, end) into
/// min(num_threads(), n) chunks, numbered from 0; used where each chunk keeps private scratch or
/// partial sums (indexed by chunk_index: the chunks may run on any thread, one at a time each).
template <class F>
void parallel_chunks(std::int64_t begin, std::int64_t end, F&& f) {
    const std::int64_t n = end - begin;
    if (n <= 0) return;
    const int t = in_parallel() ? 1 : static_cast<int>(std::min<std::int64_t>(num_threads(), n));
    if (t == 1) {
        f(begin, end, 0);
        return;
    }
    detail::run_items(t, t, [&](std::int64_t id) { f(begin + n * id / t, begin + n * (id + 1) / t, static_cast<int>(id)); });
}

}  // namespace medimg
