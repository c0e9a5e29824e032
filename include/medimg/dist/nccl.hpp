// SPDX-License-Identifier: MIT
// dist/nccl.hpp: the CUDA side of a data-parallel run. The processes are still started and
// connected by MPI (dist/mpi.hpp); the gradients and weights, which live on the GPUs, go over
// NCCL (https://docs.nvidia.com/deeplearning/nccl/), whose communicator is bootstrapped through
// MPI as NCCL's own examples do: rank 0 makes an ncclUniqueId, MPI broadcasts its bytes, every
// rank calls ncclCommInitRank. One GPU per process: local rank r on a machine uses device r (more
// processes on a machine than GPUs is refused: NCCL cannot put two ranks on one device).
//   NcclComm            that communicator (RAII), on medimg's stream of the chosen device
//   nccl_replicas       train::Replicas<T, Cuda> for run_training: rank 0's weights to all by
//                       ncclBroadcast; after each backward every gradient packed (device-to-device
//                       copies) into one buffer, ncclAllReduce with ncclAvg, unpacked; BN buffers
//                       broadcast before validation; the epoch's sums and the gathered validation
//                       outputs (host data) over MPI, exactly as on the CPU.
// Not yet here: buckets overlapped with the backward (the CPU path has them), SyncBatchNorm on CUDA.
// Everything is enqueued on medimg's one stream per device (cuda/context.hpp), so NCCL's kernels
// are ordered after the backward that produced the gradients and before the optimizer step.
// Compiled by nvcc only (MEDIMG_HAS_CUDA); links libnccl.
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/dist/nccl.hpp: include only from a TU compiled by nvcc"
#endif

#include <nccl.h>

#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "medimg/cuda/cuda.hpp"
#include "medimg/dist/mpi.hpp"
#include "medimg/dist/train.hpp"

namespace medimg::dist {

namespace detail {
inline void nccl_check(ncclResult_t r, const char* call) {
    if (r == ncclSuccess) return;
    throw Error(std::string("dist: ") + call + " failed: " + ncclGetErrorString(r));
}
template <class T>
ncclDataType_t nccl_type() {
    if constexpr (std::is_same_v<T, float>) return ncclFloat32;
    else if constexpr (std::is_same_v<T, double>) return ncclFloat64;
    else static_assert(!sizeof(T), "dist: no NCCL datatype for this element type");
}
}  // namespace detail

/// Picks this process's GPU (local rank r -> device r); call before any CUDA work of the process.
/// Returns the device.
inline int select_device_for_rank() {
    const LocalPlacement place = local_placement();
    const int gpus = cuda::device_count(), local = place.rank, here = place.size;
    MEDIMG_CHECK(gpus >= here, ConfigError, "runtime.distributed: ", here, " processes on this machine but ", gpus,
                 gpus == 1 ? " GPU" : " GPUs", "; start one process per GPU (mpirun -np N with N <= GPUs per machine)");
    MEDIMG_CUDA_CHECK(cudaSetDevice(local));
    return local;
}

class NcclComm {
public:
    explicit NcclComm(Mpi& mpi) : mpi_(mpi) {
        ncclUniqueId id;
        std::memset(&id, 0, sizeof id);
        if (mpi.is_root()) detail::nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
        mpi.broadcast(reinterpret_cast<char*>(&id), static_cast<std::int64_t>(sizeof id));
        mpi.guarded("ncclCommInitRank", [&] { detail::nccl_check(ncclCommInitRank(&comm_, mpi.size(), id, mpi.rank()), "ncclCommInitRank"); });
    }
    ~NcclComm() {
        if (comm_) ncclCommDestroy(comm_);
    }
    NcclComm(const NcclComm&) = delete;
    NcclComm& operator=(const NcclComm&) = delete;

    /// x <- the mean over ranks of x (in place, on medimg's stream).
    template <class T>
    void allreduce_mean(T* x, std::int64_t n) {
        detail::nccl_check(ncclAllReduce(x, x, static_cast<std::size_t>(n), detail::nccl_type<T>(), ncclAvg, comm_, cuda::stream()),
                           "ncclAllReduce");
    }
    template <class T>
    void broadcast(T* x, std::int64_t n, int root = 0) {
        detail::nccl_check(ncclBroadcast(x, x, static_cast<std::size_t>(n), detail::nccl_type<T>(), root, comm_, cuda::stream()),
                           "ncclBroadcast");
    }
    /// Waits for the stream under the MPI watchdog (a rank that hangs stalls NCCL's kernels too).
    void synchronize() {
        mpi_.guarded("cudaStreamSynchronize after NCCL", [] { MEDIMG_CUDA_CHECK(cudaStreamSynchronize(cuda::stream())); });
    }

private:
    Mpi& mpi_;
    ncclComm_t comm_ = nullptr;
};

/// Every parameter's gradient <- its mean over ranks: one ncclAllReduce over a flat device buffer.
template <class T>
class NcclGradients {
public:
    NcclGradients(NcclComm& comm, const nn::NamedParams<T, Cuda>& params) : comm_(comm), params_(params) {
        for (const auto& [n, p] : params_) elements_ += p.value().numel();
        flat_ = Tensor<T, Cuda>::empty({elements_});
    }
    void average() {
        const auto s = cuda::stream();
        std::int64_t off = 0;
        for (auto& [n, p] : params_) {
            const auto k = p.value().numel();
            if (p.grad().defined())
                MEDIMG_CUDA_CHECK(cudaMemcpyAsync(flat_.data() + off, p.grad().data(), k * sizeof(T), cudaMemcpyDeviceToDevice, s));
            else
                MEDIMG_CUDA_CHECK(cudaMemsetAsync(flat_.data() + off, 0, k * sizeof(T), s));
            off += k;
        }
        comm_.allreduce_mean(flat_.data(), elements_);
        off = 0;
        for (auto& [n, p] : params_) {
            const auto k = p.value().numel();
            if (p.grad().defined())
                MEDIMG_CUDA_CHECK(cudaMemcpyAsync(p.grad().data(), flat_.data() + off, k * sizeof(T), cudaMemcpyDeviceToDevice, s));
            off += k;
        }
    }

private:
    NcclComm& comm_;
    nn::NamedParams<T, Cuda> params_;
    std::int64_t elements_ = 0;
    Tensor<T, Cuda> flat_;
};

/// The Replicas of this process for run_training<T, Cuda> (the device already selected).
template <class T>
train::Replicas<T, Cuda> nccl_replicas(Mpi& mpi, const io::Config& c) {
    MEDIMG_CHECK(!c.model.sync_bn, ConfigError, "config: ", c.source,
                 ": 'model.sync_bn' is true but SyncBatchNorm runs on the CPU backend only in this version; set it false on CUDA");
    train::Replicas<T, Cuda> r;
    r.rank = mpi.rank();
    r.world = mpi.size();
    r.local_world = local_placement().size;
    struct State {
        std::unique_ptr<NcclComm> comm;
        std::unique_ptr<NcclGradients<T>> grads;
        nn::Module<T, Cuda>* model = nullptr;
        std::set<std::string> params;
    };
    auto st = std::make_shared<State>();
    Mpi* m = &mpi;
    const auto K = static_cast<std::int64_t>(c.data.classes.size());
    r.attach = [st, m](nn::Module<T, Cuda>& model) {
        st->model = &model;
        st->comm = std::make_unique<NcclComm>(*m);
        for (auto& e : model.state_dict()) st->comm->broadcast(e.value.data(), e.value.numel());
        for (const auto& [n, p] : model.named_parameters()) st->params.insert(n);
        st->grads = std::make_unique<NcclGradients<T>>(*st->comm, model.named_parameters());
        st->comm->synchronize();
    };
    r.after_backward = [st] { st->grads->average(); };
    r.sum = [m](std::vector<double>& v) { m->allreduce_sum(v.data(), static_cast<std::int64_t>(v.size())); };
    r.gather = [m, K](train::Evaluation& ev) { gather_evaluation(*m, ev, K); };
    r.before_validation = [st] {
        for (auto& e : st->model->state_dict())
            if (!st->params.count(e.name)) st->comm->broadcast(e.value.data(), e.value.numel());
    };
    r.barrier = [m] { m->barrier(); };
    r.agree = [m](const std::string& what, std::uint64_t h) { m->agree(what, h); };
    return r;
}

}  // namespace medimg::dist
