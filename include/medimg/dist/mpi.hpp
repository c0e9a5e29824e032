// SPDX-License-Identifier: MIT
// dist/mpi.hpp: the processes of a data-parallel run and the messages between them, over MPI
// (the MPI 3.1 standard, https://www.mpi-forum.org/docs/; Debian's OpenMPI). `mpirun -np N prog`
// (or srun on a cluster) starts N copies; each makes one dist::Mpi, which initialises MPI (thread
// level FUNNELED: only the thread that made it talks to MPI) and finalises it when destroyed.
// Collectives are in place and blocking; every rank must make the same calls in the same order.
//   allreduce_sum   x <- the elementwise sum of every rank's x (MPI_Allreduce, MPI_SUM)
//   broadcast       x <- root's x (MPI_Bcast)
//   allgather       the concatenation of every rank's vector, in rank order (MPI_Allgatherv)
//   agree           throws on every rank, naming the ranks that differ, unless all hold the same
//                   64-bit value (a hash of the configuration, the parameter layout)
// and, over a module: broadcast_state (rank 0's parameters and buffers to all: the start of
// training) and average_gradients (every gradient all-reduced and divided by the world size in
// one flat buffer: DistributedDataParallel's averaging, without its overlap with the backward).
// Errors: an MPI call that fails throws medimg::Error with the call and MPI's own error string
// (MPI_ERRORS_RETURN is set on the world communicator).
// A rank that dies: mpirun (and srun --kill-on-bad-exit) ends the others itself. A rank that hangs,
// or a launcher that does not: with set_timeout(s), a watchdog thread ends this process with one
// line on stderr when one collective has waited s seconds (MPI has no timeout of its own), and
// the launcher then ends the rest. Checkpoints are written atomically, so the last one is intact.
// Link: MPI::MPI_CXX (CMake's FindMPI); this header includes <mpi.h> and nothing includes it by
// default (medimg.hpp does not).
#pragma once

#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"
#include "medimg/nn/module.hpp"

namespace medimg::dist {

namespace detail {
inline void check(int rc, const char* call) {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    throw Error(std::string("dist: ") + call + " failed: " + std::string(text, static_cast<std::size_t>(len)));
}
template <class T>
MPI_Datatype type_of() {
    if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
    else if constexpr (std::is_same_v<T, double>) return MPI_DOUBLE;
    else if constexpr (std::is_same_v<T, std::int64_t>) return MPI_INT64_T;
    else if constexpr (std::is_same_v<T, std::uint64_t>) return MPI_UINT64_T;
    else if constexpr (std::is_same_v<T, std::int32_t>) return MPI_INT32_T;
    else if constexpr (std::is_same_v<T, char>) return MPI_CHAR;
    else static_assert(!sizeof(T), "dist: no MPI datatype for this element type");
}
/// MPI counts are int: a larger message goes in pieces of at most 2^30 elements.
constexpr std::int64_t kMaxCount = std::int64_t(1) << 30;
}  // namespace detail

/// Whether this process was started by an MPI launcher (mpirun / mpiexec / srun with PMI or PMIx):
/// the variables OpenMPI, MPICH and Slurm set for each rank.
inline bool launched_by_mpi() {
    for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
        if (std::getenv(v)) return true;
    return false;
}

/// This process's place among the job's processes on this machine: its index there and their
/// number (MPI 3's shared-memory split of the world; needs MPI initialised, i.e. an Mpi alive).
struct LocalPlacement {
    int rank = 0;
    int size = 1;
};
inline LocalPlacement local_placement() {
    MPI_Comm local;
    detail::check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local), "MPI_Comm_split_type");
    LocalPlacement p;
    MPI_Comm_rank(local, &p.rank);
    MPI_Comm_size(local, &p.size);
    MPI_Comm_free(&local);
    return p;
}

class Mpi {
public:
    /// Initialises MPI (unless the program did) and reads rank and world size.
    Mpi() {
        int init = 0;
        detail::check(MPI_Initialized(&init), "MPI_Initialized");
        if (!init) {
            int provided = 0;
            detail::check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
            owner_ = true;
        }
        detail::check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
        detail::check(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
        detail::check(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
    }
    ~Mpi() {
        // MPI_Finalize waits for every rank: under the watchdog, which stops afterwards.
        int fin = 0;
        if (owner_ && MPI_Finalized(&fin) == MPI_SUCCESS && !fin) guarded("MPI_Finalize", [] { MPI_Finalize(); });
        if (watchdog_.joinable()) {
            {
                std::lock_guard<std::mutex> lock(watch_m_);
                watch_stop_ = true;
            }
            watch_cv_.notify_all();
            watchdog_.join();
        }
    }
    Mpi(const Mpi&) = delete;
    Mpi& operator=(const Mpi&) = delete;

    int rank() const { return rank_; }
    int size() const { return size_; }
    bool is_root() const { return rank_ == 0; }

    /// From now on a collective that waits more than `seconds` ends this process (exit status 1)
    /// after one line on stderr: "<program>: rank R: waited S s in <call> for the other ranks ...".
    void set_timeout(double seconds, std::string program) {
        MEDIMG_CHECK(seconds > 0 && !watchdog_.joinable(), ValueError, "dist::Mpi::set_timeout: need seconds > 0, once; got ", seconds);
        timeout_ = seconds;
        program_ = std::move(program);
        watchdog_ = std::thread([this] { watch(); });
    }
    /// Runs f() (MPI calls that may wait for other ranks) under the watchdog, as `call`.
    template <class F>
    void guarded(const char* call, F&& f) {
        struct Scope {
            Mpi& m;
            Scope(Mpi& mm, const char* c) : m(mm) {
                m.waiting_in_.store(c);
                m.waiting_since_.store(now_ns());
            }
            ~Scope() { m.waiting_since_.store(0); }
        } scope(*this, call);
        f();
    }

    /// x[0, n) <- the sum over ranks, in place.
    template <class T>
    void allreduce_sum(T* x, std::int64_t n) {
        for (std::int64_t off = 0; off < n; off += detail::kMaxCount) {
            const int c = static_cast<int>(std::min(detail::kMaxCount, n - off));
            guarded("MPI_Allreduce", [&] {
                detail::check(MPI_Allreduce(MPI_IN_PLACE, x + off, c, detail::type_of<T>(), MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
            });
        }
    }
    /// x[0, n) <- root's x[0, n).
    template <class T>
    void broadcast(T* x, std::int64_t n, int root = 0) {
        for (std::int64_t off = 0; off < n; off += detail::kMaxCount) {
            const int c = static_cast<int>(std::min(detail::kMaxCount, n - off));
            guarded("MPI_Bcast", [&] { detail::check(MPI_Bcast(x + off, c, detail::type_of<T>(), root, MPI_COMM_WORLD), "MPI_Bcast"); });
        }
    }
    /// Every rank's `mine`, concatenated in rank order (ranks may hold different lengths).
    template <class T>
    std::vector<T> allgather(const std::vector<T>& mine) {
        MEDIMG_CHECK(static_cast<std::int64_t>(mine.size()) < detail::kMaxCount, ValueError, "dist::allgather: ", mine.size(),
                     " elements on rank ", rank_, " exceed one message");
        std::vector<int> counts(static_cast<std::size_t>(size_)), displs(static_cast<std::size_t>(size_));
        const int c = static_cast<int>(mine.size());
        guarded("MPI_Allgather", [&] { detail::check(MPI_Allgather(&c, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD), "MPI_Allgather"); });
        std::int64_t total = 0;
        for (int r = 0; r < size_; ++r) {
            displs[static_cast<std::size_t>(r)] = static_cast<int>(total);
            total += counts[static_cast<std::size_t>(r)];
        }
        MEDIMG_CHECK(total < detail::kMaxCount, ValueError, "dist::allgather: ", total, " elements in all exceed one message");
        std::vector<T> out(static_cast<std::size_t>(total));
        guarded("MPI_Allgatherv", [&] {
            detail::check(MPI_Allgatherv(mine.data(), c, detail::type_of<T>(), out.data(), counts.data(), displs.data(),
                                         detail::type_of<T>(), MPI_COMM_WORLD),
                          "MPI_Allgatherv");
        });
        return out;
    }
    void barrier() {
        guarded("MPI_Barrier", [&] { detail::check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); });
    }

    /// Throws ConfigError on every rank unless every rank holds the same `value`; the message
    /// names `what` and the ranks whose value differs from rank 0's.
    void agree(const std::string& what, std::uint64_t value) {
        const auto all = allgather(std::vector<std::uint64_t>{value});
        std::string differ;
        for (int r = 1; r < size_; ++r)
            if (all[static_cast<std::size_t>(r)] != all[0]) differ += (differ.empty() ? "" : ", ") + std::to_string(r);
        MEDIMG_CHECK(differ.empty(), ConfigError, "dist: ", what, " differs between ranks (rank ", differ,
                     " against rank 0); every rank must run the same configuration");
    }

private:
    static std::int64_t now_ns() {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
    }
    void watch() {
        std::unique_lock<std::mutex> lock(watch_m_);
        while (!watch_cv_.wait_for(lock, std::chrono::milliseconds(200), [this] { return watch_stop_; })) {
            const std::int64_t since = waiting_since_.load();
            if (since == 0) continue;
            const double waited = static_cast<double>(now_ns() - since) * 1e-9;
            if (waited < timeout_) continue;
            std::fprintf(stderr,
                         "%s: rank %d: waited %.0f s in %s for the other ranks (runtime.dist_timeout): a rank died or hangs; "
                         "ending the job (the last checkpoint is intact)\n",
                         program_.c_str(), rank_, waited, waiting_in_.load());
            std::fflush(stderr);
            std::_Exit(1);  // not MPI_Abort: only the main thread may call MPI (FUNNELED)
        }
    }

    int rank_ = 0, size_ = 1;
    bool owner_ = false;
    double timeout_ = 0;
    std::string program_;
    std::atomic<std::int64_t> waiting_since_{0};  // 0: not inside a collective
    std::atomic<const char*> waiting_in_{""};
    std::thread watchdog_;
    std::mutex watch_m_;
    std::condition_variable watch_cv_;
    bool watch_stop_ = false;
};

/// Rank 0's parameters and buffers copied to every rank (the replicas start equal).
template <class T>
void broadcast_state(Mpi& mpi, nn::Module<T, Cpu>& m) {
    for (auto& e : m.state_dict()) mpi.broadcast(e.value.data(), e.value.numel());
}

/// Every parameter's gradient <- its mean over ranks, through one flat buffer (one all-reduce per
/// step, not one per tensor). A parameter without a gradient on this rank counts as zeros; it must
/// then have none on every rank, or the layouts differ (refused: MPI would mix tensors).
template <class T>
void average_gradients(Mpi& mpi, nn::Module<T, Cpu>& m) {
    auto params = m.named_parameters();
    std::vector<std::uint64_t> layout;  // which parameters have gradients here
    std::int64_t n = 0;
    for (auto& [name, p] : params) {
        layout.push_back(p.grad().defined() ? 1u : 0u);
        if (p.grad().defined()) n += p.grad().numel();
    }
    std::uint64_t h = 1469598103934665603ULL;  // FNV-1a over the layout
    for (auto b : layout) h = (h ^ b) * 1099511628211ULL;
    mpi.agree("the set of parameters with gradients", h);
    std::vector<T> flat(static_cast<std::size_t>(n));
    std::int64_t off = 0;
    for (auto& [name, p] : params)
        if (p.grad().defined()) {
            const auto& g = p.grad();
            std::copy(g.data(), g.data() + g.numel(), flat.data() + off);
            off += g.numel();
        }
    mpi.allreduce_sum(flat.data(), n);
    const T inv = T(1) / static_cast<T>(mpi.size());
    off = 0;
    for (auto& [name, p] : params)
        if (p.grad().defined()) {
            auto g = p.grad();
            for (std::int64_t i = 0; i < g.numel(); ++i) g.data()[i] = flat[static_cast<std::size_t>(off + i)] * inv;
            off += g.numel();
        }
}

}  // namespace medimg::dist
