// SPDX-License-Identifier: MIT
// dist/data_parallel.hpp: what keeps the replicas of a data-parallel run equal, over MPI
// (dist/mpi.hpp) on the CPU backend, as torch's DistributedDataParallel does:
//   GradientReducer     averages every gradient over the ranks in buckets that are all-reduced
//                       (MPI_Iallreduce, non-blocking) as soon as the backward pass has finished
//                       them, so communication overlaps the rest of the backward; finish() waits
//                       for the last ones and writes the averages into the gradients.
//   MpiReplicaSum       the sums SyncBatchNorm needs (autograd/sync_batch_norm.hpp).
//   broadcast_buffers   rank 0's buffers (BN running statistics) to every rank: without
//                       SyncBatchNorm each rank's running statistics follow its own batches.
// Buckets (DDP's Reducer, torch/csrc/distributed/c10d/reducer.cpp): parameters in reverse
// registration order (roughly the order the backward finishes them), cut when a bucket reaches
// bucket_cap_mb (the first at 1 MB, so communication starts early, as DDP's first bucket). A
// parameter's gradient is copied into its bucket by a hook that fires when the gradient is
// complete (Var::register_hook on the leaf); buckets are launched strictly in index order on every
// rank (MPI requires the ranks' collectives in one order). Each bucket carries one extra element,
// the count of its parameters that had a gradient on this rank: after the sum it must be world x
// that count on every rank, otherwise a parameter was used on some ranks only (refused in one line;
// DDP's find_unused_parameters is not offered). OpenMPI progresses a non-blocking collective only
// inside MPI calls (no progress thread by default), so each hook also tests the buckets in flight.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "medimg/autograd/sync_batch_norm.hpp"
#include "medimg/dist/mpi.hpp"
#include "medimg/nn/module.hpp"

namespace medimg::dist {

/// SyncBatchNorm's sums over MPI (nn::convert_sync_batch_norm(model, std::make_shared<MpiReplicaSum>(mpi))).
class MpiReplicaSum : public autograd::ReplicaSum {
public:
    explicit MpiReplicaSum(Mpi& mpi) : mpi_(mpi) {}
    void sum(double* x, std::int64_t n) override { mpi_.allreduce_sum(x, n); }

private:
    Mpi& mpi_;
};

/// Rank 0's buffers (not parameters) copied to every rank.
template <class T>
void broadcast_buffers(Mpi& mpi, nn::Module<T, Cpu>& m) {
    std::set<std::string> params;
    for (const auto& [name, p] : m.named_parameters()) params.insert(name);
    for (auto& e : m.state_dict())
        if (!params.count(e.name)) mpi.broadcast(e.value.data(), e.value.numel());
}

template <class T>
class GradientReducer {
public:
    /// Registers a gradient hook on every parameter of `params` (they stay registered; the hooks do
    /// nothing outside start_step() .. finish_step()).
    GradientReducer(Mpi& mpi, const nn::NamedParams<T, Cpu>& params, double bucket_cap_mb = 25, double first_bucket_mb = 1)
        : s_(std::make_shared<State>(mpi)) {
        MEDIMG_CHECK(bucket_cap_mb > 0 && first_bucket_mb > 0, ValueError, "GradientReducer: bucket sizes must be > 0 MB, got ",
                     bucket_cap_mb, " and ", first_bucket_mb);
        auto& s = *s_;
        s.params = params;
        const std::size_t P = params.size();
        s.bucket_of.resize(P);
        s.offset.resize(P);
        std::uint64_t layout = 1469598103934665603ULL;  // FNV-1a over names and sizes: the ranks' layouts must agree
        for (std::size_t k = 0; k < P; ++k) {
            const std::size_t i = P - 1 - k;  // reverse registration order
            const auto& [name, p] = params[i];
            const auto n = p.value().numel();
            // The bucket being filled is full when n more elements would pass its cap (bucket 0: the
            // first bucket's cap). A parameter larger than a cap gets a bucket of its own.
            const double cap = (s.buckets.size() <= 1 ? first_bucket_mb : bucket_cap_mb) * 1e6 / sizeof(T);
            if (s.buckets.empty() || (s.buckets.back().elements > 0 && static_cast<double>(s.buckets.back().elements + n) > cap))
                s.buckets.emplace_back();
            auto& b = s.buckets.back();
            s.bucket_of[i] = s.buckets.size() - 1;
            s.offset[i] = b.elements;
            b.members.push_back(i);
            b.elements += n;
            for (char c : name) layout = (layout ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
            layout = (layout ^ static_cast<std::uint64_t>(n)) * 1099511628211ULL;
        }
        for (auto& b : s.buckets) b.flat.resize(static_cast<std::size_t>(b.elements + 1));
        mpi.agree("the model's parameters (names and sizes)", layout);
        std::weak_ptr<State> weak = s_;
        for (std::size_t i = 0; i < P; ++i) {
            auto v = params[i].second;
            v.register_hook([weak, i](const Tensor<T, Cpu>& g) {
                if (auto st = weak.lock()) st->ready(i, g);
            });
        }
    }

    /// Arms the hooks for one backward pass.
    void start_step() {
        auto& s = *s_;
        for (auto& b : s.buckets) {
            b.pending = static_cast<std::int64_t>(b.members.size());
            b.present = 0;
            b.launched = b.done = false;
        }
        s.have.assign(s.params.size(), false);
        s.next_launch = 0;
        s.armed = true;
    }

    /// After backward(): launches the buckets still waiting (their missing gradients as zeros),
    /// waits for all, checks every rank had the same gradients, and writes the averages.
    void finish_step() {
        auto& s = *s_;
        MEDIMG_CHECK(s.armed, ValueError, "GradientReducer::finish_step without start_step");
        s.armed = false;
        for (auto& b : s.buckets)
            if (b.pending > 0) {  // a parameter without a gradient this step
                for (auto i : b.members)
                    if (!s.have[i]) {
                        const auto n = s.params[i].second.value().numel();
                        std::fill_n(b.flat.data() + s.offset[i], n, T(0));
                    }
                b.pending = 0;
            }
        s.launch_ready();
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<MPI_Request> reqs;
        for (auto& b : s.buckets)
            if (!b.done) reqs.push_back(b.request);
        s.mpi.guarded("MPI_Waitall", [&] {
            detail::check(MPI_Waitall(static_cast<int>(reqs.size()), reqs.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
        });
        s.wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const T inv = T(1) / static_cast<T>(s.mpi.size());
        for (auto& b : s.buckets) {
            const double total = static_cast<double>(b.flat.back());
            if (total != static_cast<double>(b.present) * s.mpi.size()) {
                std::string missing;
                for (auto i : b.members)
                    if (!s.have[i]) missing += (missing.empty() ? "" : ", ") + s.params[i].first;
                throw ValueError("dist: rank " + std::to_string(s.mpi.rank()) + " has " + std::to_string(b.present) + " of " +
                                 std::to_string(b.members.size()) + " gradients in a bucket where the ranks hold " +
                                 std::to_string(static_cast<long long>(total)) + " in all" +
                                 (missing.empty() ? "" : " (missing here: " + missing + ")") +
                                 "; every rank must use the same parameters in each step");
            }
            for (auto i : b.members) {
                if (!s.have[i]) continue;  // no gradient on any rank: left undefined
                auto g = s.params[i].second.grad();
                const T* src = b.flat.data() + s.offset[i];
                for (std::int64_t e = 0; e < g.numel(); ++e) g.data()[e] = src[e] * inv;
            }
        }
        ++s.steps;
    }

    std::size_t bucket_count() const { return s_->buckets.size(); }
    /// Seconds spent in finish_step waiting for communication the backward did not hide.
    double wait_seconds() const { return s_->wait_seconds; }
    std::int64_t steps() const { return s_->steps; }

private:
    struct Bucket {
        std::vector<std::size_t> members;
        std::int64_t elements = 0;
        std::vector<T> flat;  // elements + 1 (the count of gradients present)
        std::int64_t pending = 0, present = 0;
        bool launched = false, done = false;
        MPI_Request request = MPI_REQUEST_NULL;
    };
    struct State {
        explicit State(Mpi& m) : mpi(m) {}
        Mpi& mpi;
        nn::NamedParams<T, Cpu> params;
        std::vector<std::size_t> bucket_of;
        std::vector<std::int64_t> offset;
        std::vector<Bucket> buckets;
        std::vector<bool> have;
        std::size_t next_launch = 0;
        bool armed = false;
        double wait_seconds = 0;
        std::int64_t steps = 0;

        void ready(std::size_t i, const Tensor<T, Cpu>& g) {
            if (!armed || have[i]) return;
            have[i] = true;
            auto& b = buckets[bucket_of[i]];
            std::copy(g.data(), g.data() + g.numel(), b.flat.data() + offset[i]);
            ++b.present;
            --b.pending;
            launch_ready();
            progress();
        }
        /// Launches, in index order, every bucket whose gradients are all in.
        void launch_ready() {
            while (next_launch < buckets.size() && buckets[next_launch].pending == 0) {
                auto& b = buckets[next_launch++];
                b.flat.back() = static_cast<T>(b.present);
                MEDIMG_CHECK(b.elements + 1 < detail::kMaxCount, ValueError, "dist: a gradient bucket of ", b.elements,
                             " elements exceeds one MPI message");
                detail::check(MPI_Iallreduce(MPI_IN_PLACE, b.flat.data(), static_cast<int>(b.elements + 1), detail::type_of<T>(),
                                             MPI_SUM, MPI_COMM_WORLD, &b.request),
                              "MPI_Iallreduce");
                b.launched = true;
            }
        }
        /// Lets MPI move the buckets in flight along (it progresses only inside MPI calls).
        void progress() {
            for (auto& b : buckets)
                if (b.launched && !b.done) {
                    int flag = 0;
                    detail::check(MPI_Test(&b.request, &flag, MPI_STATUS_IGNORE), "MPI_Test");
                    if (flag) b.done = true;
                }
        }
    };
    std::shared_ptr<State> s_;
};

}  // namespace medimg::dist
