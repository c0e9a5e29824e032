// SPDX-License-Identifier: MIT
// parallel.hpp: the CPU thread count and parallel_for. OpenMP when the build has it (the CMake
// target adds it), otherwise serial. Work is split statically, so a fixed thread count gives the
// same partition and therefore bit-identical reductions run to run.
// Eigen's own GEMM threads follow the same count (Eigen::setNbThreads).
#pragma once

#include <algorithm>
#include <cstdint>

#include <Eigen/Core>

#include "medimg/error.hpp"

#ifdef _OPENMP
#  include <omp.h>
#endif

namespace medimg {

namespace detail {
/// Set on threads that must not start thread teams of their own (data-loader workers run beside
/// the training threads; nested teams would oversubscribe the cores).
inline bool& serial_thread() {
    thread_local bool serial = false;
    return serial;
}
}  // namespace detail

#ifdef _OPENMP
/// Threads used by CPU kernels (defaults to the number of cores, or OMP_NUM_THREADS).
inline int num_threads() { return omp_get_max_threads(); }
/// True inside a parallel region (kernels then run their inner loops serially).
inline bool in_parallel() { return omp_in_parallel() != 0 || detail::serial_thread(); }
inline void set_num_threads(int n) {
    MEDIMG_CHECK(n >= 1, ValueError, "set_num_threads: need at least 1 thread, got ", n);
    omp_set_num_threads(n);
    Eigen::setNbThreads(n);
}
#else
inline int num_threads() { return 1; }
inline bool in_parallel() { return detail::serial_thread(); }
inline void set_num_threads(int n) {
    MEDIMG_CHECK(n >= 1, ValueError, "set_num_threads: need at least 1 thread, got ", n);
}
#endif

/// Calls f(i) for i in [begin, end), split into contiguous static chunks over the threads.
/// Runs serially when the range is smaller than `grain` or when already inside a parallel region.
template <class F>
void parallel_for(std::int64_t begin, std::int64_t end, F&& f, std::int64_t grain = 1) {
    const std::int64_t n = end - begin;
    if (n <= 0) return;
    if (n < 2 * std::max<std::int64_t>(grain, 1) || num_threads() == 1 || in_parallel()) {
        for (std::int64_t i = begin; i < end; ++i) f(i);
        return;
    }
#pragma omp parallel for schedule(static)
    for (std::int64_t i = begin; i < end; ++i) f(i);
}

/// Calls f(lo, hi) over [0, n) cut into blocks of `grain` elements, the blocks spread over the
/// threads: the shape of every memory-bound elementwise loop (more, smaller tasks only add
/// overhead; a fixed block size keeps reductions over blocks deterministic).
template <class F>
void parallel_blocks(std::int64_t n, std::int64_t grain, F&& f) {
    const std::int64_t nb = (n + grain - 1) / grain;
    parallel_for(0, nb, [&](std::int64_t b) { f(b * grain, std::min(n, (b + 1) * grain)); });
}

/// Calls f(chunk_begin, chunk_end, thread_index) once per thread over a static split of
/// [begin, end); used where each thread keeps private scratch or partial sums.
template <class F>
void parallel_chunks(std::int64_t begin, std::int64_t end, F&& f) {
    const std::int64_t n = end - begin;
    if (n <= 0) return;
    const int t = in_parallel() ? 1 : static_cast<int>(std::min<std::int64_t>(num_threads(), n));
    if (t == 1) {
        f(begin, end, 0);
        return;
    }
#pragma omp parallel num_threads(t)
    {
#ifdef _OPENMP
        const int id = omp_get_thread_num();
#else
        const int id = 0;
#endif
        const std::int64_t lo = begin + n * id / t, hi = begin + n * (id + 1) / t;
        f(lo, hi, id);
    }
}

}  // namespace medimg
