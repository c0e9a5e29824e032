// SPDX-License-Identifier: MIT
// The CUDA side of data parallelism (dist/nccl.hpp), run by ctest as `mpirun -np 2 test_nccl`
// (dist.nccl): one GPU per rank, the NCCL communicator bootstrapped through MPI. Without a GPU per
// rank (this machine has none) it prints "SKIPPED" with the reason and exits 0 before MPI starts,
// which ctest reports as skipped. Checks, on every rank:
//   - ncclAllReduce with ncclAvg of rank-dependent values gives their mean;
//   - a small ViT on CUDA, rank 0's weights broadcast by NCCL, each rank half of a batch, the
//     gradients averaged by NcclGradients: equal to one CPU process's gradients on the whole batch.
// A failure prints one line per check and exits 1 (no Boost: the program is also an MPI program).
#include <cstdio>
#include <cstdlib>
#include <string>

#include "medimg/dist/nccl.hpp"
#include "medimg/medimg.hpp"
#include "reference.hpp"
#include "small_vit.hpp"

using namespace medimg;
namespace ref = medimg::test::ref;

namespace {
int failures = 0;
void expect(bool ok, int rank, const std::string& what) {
    if (ok) return;
    ++failures;
    std::printf("FAIL (rank %d): %s\n", rank, what.c_str());
}
}  // namespace

int main() try {
    const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    const int needed = local ? std::atoi(local) : 1;
    if (cuda::device_count() < needed) {
        std::printf("dist.nccl: SKIPPED: %d CUDA devices for %d processes on this machine (one GPU per process)\n", cuda::device_count(),
                    needed);
        return 0;
    }
    dist::Mpi mpi;
    dist::select_device_for_rank();
    dist::NcclComm comm(mpi);
    const int r = mpi.rank(), w = mpi.size();

    auto v = Tensor<float, Cpu>::full({1000}, static_cast<float>(r + 1)).to<Cuda>();
    comm.allreduce_mean(v.data(), v.numel());
    const auto vh = v.to<Cpu>();
    expect(std::abs(vh[999] - (w + 1) / 2.0f) < 1e-6f, r, "ncclAvg of 1..world is not (world + 1) / 2");

    const nn::VitOptions o = medimg::test::small_vit_options();
    const int per = 2;
    const auto x = ref::random<float>({per * w, 3, 32, 32}, 3);
    auto y = Tensor<std::int64_t, Cpu>::empty({per * w});
    for (int i = 0; i < per * w; ++i) y[i] = i % 3;
    nn::VisionTransformer<float, Cpu> cpu(o);  // rank 0's init is the reference everywhere
    dist::broadcast_state(mpi, cpu);
    nn::VisionTransformer<float, Cuda> gpu(o);
    {
        std::map<std::string, Tensor<float, Cuda>> s;
        for (auto& e : nn::VisionTransformer<float, Cpu>(o).state_dict()) s[e.name] = e.value.to<Cuda>();  // another init ...
        gpu.load_state_dict(s);
    }
    for (auto& e : gpu.state_dict()) comm.broadcast(e.value.data(), e.value.numel());  // ... replaced by rank 0's
    loss::cross_entropy(cpu(autograd::Var<float, Cpu>(x)), y).backward();
    dist::NcclGradients<float> grads(comm, gpu.named_parameters());
    auto ys = Tensor<std::int64_t, Cpu>::empty({per});
    for (int i = 0; i < per; ++i) ys[i] = y[per * r + i];
    loss::cross_entropy(gpu(autograd::Var<float, Cuda>(x.slice0(per * r, per).clone().to<Cuda>())), ys.to<Cuda>()).backward();
    grads.average();
    comm.synchronize();
    const auto a = cpu.named_parameters();
    const auto b = gpu.named_parameters();
    for (std::size_t k = 0; k < a.size(); ++k) {
        const auto want = a[k].second.grad(), got = b[k].second.grad().to<Cpu>();
        double worst = 0;
        for (std::int64_t i = 0; i < want.numel(); ++i)
            worst = std::max(worst, std::abs(static_cast<double>(got[i]) - want[i]) / (1e-4 + std::abs(static_cast<double>(want[i]))));
        expect(worst < 1e-2, r, a[k].first + ": averaged gradient differs from one process's, worst relative " + std::to_string(worst));
    }
    std::printf("rank %d: %s\n", r, failures ? "failed" : "ncclAvg and the averaged ViT gradients match");
    return failures ? 1 : 0;
} catch (const std::exception& e) {
    std::printf("FAIL: %s\n", e.what());
    return 1;
}
