// SPDX-License-Identifier: MIT
// medimg-allreduce: the all-reduce bandwidth the gradient averaging of a data-parallel run sees
// (docs/distributed.md's cost model). Run under mpirun: `mpirun -np 2 medimg-allreduce [MB ...]`.
// For each size (default: ResNet18's gradients, 44.7 MB of float32, and a 25 MB bucket) it times
// MPI_Allreduce (sum, in place) 3 times unmeasured, then 10 times, and prints rank 0's median
// time, the algorithm bandwidth (bytes / time) and the bus bandwidth a ring would need,
// 2 (N - 1) / N x bytes / time (NCCL's busbw convention, nccl-tests' PERFORMANCE.md).
#include <medimg/dist/mpi.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) try {
    medimg::dist::Mpi mpi;
    std::vector<double> sizes_mb;
    for (int i = 1; i < argc; ++i) sizes_mb.push_back(std::atof(argv[i]));
    if (sizes_mb.empty()) sizes_mb = {44.7, 25.0, 1.0};
    for (double mb : sizes_mb) {
        const auto n = static_cast<std::int64_t>(mb * 1e6 / sizeof(float));
        std::vector<float> x(static_cast<std::size_t>(n), 1.0f);
        std::vector<double> t;
        for (int rep = 0; rep < 13; ++rep) {
            mpi.barrier();
            const auto t0 = std::chrono::steady_clock::now();
            mpi.allreduce_sum(x.data(), n);
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            if (rep >= 3) t.push_back(s);
        }
        std::sort(t.begin(), t.end());
        const double med = t[t.size() / 2], bytes = static_cast<double>(n) * sizeof(float), world = mpi.size();
        if (mpi.is_root())
            std::printf("%d ranks, %.1f MB: %.2f ms (median of %zu), algbw %.2f GB/s, busbw %.2f GB/s\n", mpi.size(), mb, med * 1e3,
                        t.size(), bytes / med / 1e9, 2 * (world - 1) / world * bytes / med / 1e9);
    }
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "medimg-allreduce: %s\n", e.what());
    return 1;
}
