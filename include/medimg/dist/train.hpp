// SPDX-License-Identifier: MIT
// dist/train.hpp: medimg-train as one process of a data-parallel run (runtime.distributed: mpi):
// fills train::Replicas with the MPI side of each step, so run_training / fit stay free of MPI.
//   attach            SyncBatchNorm when model.sync_bn, rank 0's parameters and buffers to every
//                     rank, then the gradient buckets (dist/data_parallel.hpp) hooked on the model
//   before/after_backward   arm the buckets / wait for them: gradients averaged over the ranks
//   sum               the epoch's loss and counts over the ranks
//   gather            each rank's share of a split -> every rank holds the whole split's outputs,
//                     in dataset order, and recomputes loss and report from them (AUC over the
//                     gathered scores, not an average of per-rank AUCs)
//   before_validation rank 0's BN running statistics to every rank (without SyncBatchNorm each
//                     rank's follow its own batches; DDP broadcasts them at every forward)
//   agree             a hash equal on every rank, or a ConfigError naming what differs
// The CUDA backend is not covered here yet (its gradients would go over NCCL): a CUDA run with
// runtime.distributed is refused where the device is chosen (examples/train.cpp).
#pragma once

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <numeric>

#include "medimg/dist/data_parallel.hpp"
#include "medimg/dist/mpi.hpp"
#include "medimg/io/config.hpp"
#include "medimg/metrics/classification.hpp"
#include "medimg/nn/layers.hpp"
#include "medimg/train/fit.hpp"

namespace medimg::dist {

/// The whole split's evaluation from every rank's share: outputs concatenated, put back in
/// dataset order, the mean loss weighted by each rank's count, the report recomputed.
inline void gather_evaluation(Mpi& mpi, train::Evaluation& ev, std::int64_t num_classes) {
    const auto n_local = static_cast<double>(ev.labels.size());
    std::vector<double> loss{ev.loss * n_local, n_local};
    mpi.allreduce_sum(loss.data(), 2);
    auto probs = mpi.allgather(ev.probs);
    auto labels = mpi.allgather(ev.labels);
    auto indices = mpi.allgather(ev.indices);
    const auto n = labels.size();
    MEDIMG_CHECK(probs.size() == n * static_cast<std::size_t>(num_classes) && indices.size() == n, ValueError,
                 "dist: gathered ", probs.size(), " scores, ", n, " labels and ", indices.size(), " indices for ", num_classes,
                 " classes");
    std::vector<std::size_t> perm(n);
    std::iota(perm.begin(), perm.end(), std::size_t(0));
    std::stable_sort(perm.begin(), perm.end(), [&](std::size_t a, std::size_t b) { return indices[a] < indices[b]; });
    const auto K = static_cast<std::size_t>(num_classes);
    ev.probs.assign(n * K, 0.0);
    ev.labels.assign(n, 0);
    ev.indices.assign(n, 0);
    for (std::size_t i = 0; i < n; ++i) {
        std::copy_n(probs.begin() + static_cast<std::ptrdiff_t>(perm[i] * K), K, ev.probs.begin() + static_cast<std::ptrdiff_t>(i * K));
        ev.labels[i] = labels[perm[i]];
        ev.indices[i] = indices[perm[i]];
    }
    ev.loss = loss[0] / loss[1];
    ev.report = metrics::classification_report(ev.probs, ev.labels, num_classes);
}

/// The Replicas of this process for run_training<T, Cpu>.
template <class T>
train::Replicas<T, Cpu> replicas(Mpi& mpi, const io::Config& c) {
    train::Replicas<T, Cpu> r;
    r.rank = mpi.rank();
    r.world = mpi.size();
    r.local_world = local_placement().size;
    struct State {
        std::unique_ptr<GradientReducer<T>> reducer;
        nn::Module<T, Cpu>* model = nullptr;
    };
    auto st = std::make_shared<State>();
    Mpi* m = &mpi;
    const bool sync_bn = c.model.sync_bn;
    const double bucket_mb = c.runtime.bucket_cap_mb;
    const auto K = static_cast<std::int64_t>(c.data.classes.size());
    r.attach = [st, m, sync_bn, bucket_mb](nn::Module<T, Cpu>& model) {
        st->model = &model;
        if (sync_bn) nn::convert_sync_batch_norm(model, std::make_shared<MpiReplicaSum>(*m));
        broadcast_state(*m, model);
        st->reducer = std::make_unique<GradientReducer<T>>(*m, model.named_parameters(), bucket_mb);
    };
    r.before_backward = [st] { st->reducer->start_step(); };
    r.after_backward = [st] { st->reducer->finish_step(); };
    r.sum = [m](std::vector<double>& v) { m->allreduce_sum(v.data(), static_cast<std::int64_t>(v.size())); };
    r.gather = [m, K](train::Evaluation& ev) { gather_evaluation(*m, ev, K); };
    r.before_validation = [st, m, sync_bn] {
        if (!sync_bn && st->model) broadcast_buffers(*m, *st->model);
    };
    r.barrier = [m] { m->barrier(); };
    r.comm_wait_seconds = [st] { return st->reducer ? st->reducer->wait_seconds() : 0.0; };
    r.agree = [m](const std::string& what, std::uint64_t h) { m->agree(what, h); };
    return r;
}

}  // namespace medimg::dist
