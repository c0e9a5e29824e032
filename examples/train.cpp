// SPDX-License-Identifier: MIT
// medimg-train: trains the configured ResNet on data/<split>/<class>/* (the prototype's train
// script). Prints one line per epoch (a live progress line when stdout is a terminal), writes
// <output.dir>/metrics.csv and checkpoints/{best,last}.safetensors, and evaluates the best
// checkpoint on the test split when it exists. --resume continues from last.safetensors.
// runtime.device: this file built by g++ is the CPU program (cuda is refused); train.cu, its nvcc
// twin, includes it unchanged and gets both backends, choosing once at the top (run_on below).
// runtime.distributed mpi: `mpirun -np N medimg-train --config FILE` trains one replica per
// process (run_distributed below; docs/distributed.md), where the build found MPI.
#include <medimg/medimg.hpp>
#include <medimg/train/run.hpp>
#if MEDIMG_WITH_MPI
#include <medimg/dist/train.hpp>
#if MEDIMG_WITH_NCCL && MEDIMG_HAS_CUDA
#include <medimg/dist/nccl.hpp>
#endif
#endif

#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <iostream>

#include "cli.hpp"
#include "device.hpp"

static const char* kUsage = R"(usage: medimg-train --config FILE [--set key=value ...] [--resume] [--stop-after-epoch N] [--print-config]

  --config FILE      YAML configuration (see configs/default.yaml, docs/configuration.md)
  --set key=value    override one key, e.g. --set train.lr=0.01 (repeatable)
  --resume           continue from <output.dir>/checkpoints/last.safetensors
  --stop-after-epoch N  stop after epoch N (e.g. to fit a time slot); continue later with --resume
  --print-config     print the configuration as it will be used (the file, the defaults it leaves
                     out and every --set, checked), as YAML, and exit without training
  --help             this text

Research software: not for clinical diagnosis.
)";

/// Trains on the device the config names (device.hpp). Gpu is medimg::Cuda; the branch that uses
/// it exists only where backend_available<Gpu> (a TU compiled by nvcc), so the g++ build never
/// instantiates Tensor<float, Cuda>.
template <class Gpu>
void run_on(const medimg::io::Config& cfg, bool resume, bool progress, std::int64_t stop) {
    using namespace medimg;
    if (use_gpu<Gpu>(cfg, "medimg-train")) {
        if constexpr (backend_available<Gpu>) {
            const int gpus = Memory<Gpu>::device_count();
            std::cout << "device: cuda (" << gpus << (gpus == 1 ? " GPU" : " GPUs") << ")\n";
            train::run_training<float, Gpu>(cfg, resume, std::cout, progress, stop);
            return;
        }
    }
    train::run_training<float, Cpu>(cfg, resume, std::cout, progress, stop);
}

#if MEDIMG_WITH_MPI
namespace {
char g_term_line[160];
std::size_t g_term_len = 0;
extern "C" void on_term(int) {  // async-signal-safe: write and _exit only
    if (g_term_len) {
        const ssize_t r = write(STDERR_FILENO, g_term_line, g_term_len);
        (void)r;
    }
    _exit(143);
}
}  // namespace

/// One process of a data-parallel run. Errors every rank raises alike (a ConfigError: the same
/// configuration, or hashes found unequal on all ranks) are printed by rank 0 and end each rank
/// normally; any other is printed with its rank and ends the whole job (MPI_Abort), since the
/// other ranks may be waiting for this one inside a collective.
/// On CUDA (runtime.device cuda / auto with a GPU, in a build with NCCL): one GPU per process,
/// gradients over NCCL (dist/nccl.hpp).
template <class Gpu>
int run_distributed(const medimg::io::Config& cfg, bool resume, bool progress, std::int64_t stop) {
    using namespace medimg;
    MEDIMG_CHECK(dist::launched_by_mpi(), ConfigError, "config: ", cfg.source,
                 ": 'runtime.distributed' is mpi but this process was not started by an MPI launcher; run "
                 "mpirun -np N medimg-train --config FILE (or srun on a cluster), or set runtime.distributed none");
    dist::Mpi mpi;
    // mpirun ends the surviving ranks with SIGTERM when one dies: say so in one line.
    g_term_len = static_cast<std::size_t>(std::snprintf(
        g_term_line, sizeof g_term_line,
        "medimg-train: rank %d: stopped by the launcher (another rank ended; see above); the last checkpoint is intact\n", mpi.rank()));
    signal(SIGTERM, on_term);
    mpi.set_timeout(cfg.runtime.dist_timeout, "medimg-train");
    std::ostringstream discard;
    discard.setstate(std::ios::badbit);  // the other ranks' lines are rank 0's: print once
    try {
        if (use_gpu<Gpu>(cfg, "medimg-train")) {
#if MEDIMG_WITH_NCCL
            if constexpr (backend_available<Gpu>) {
                const int device = dist::select_device_for_rank();
                if (mpi.is_root()) std::cout << "device: cuda, one GPU per process (rank 0 on GPU " << device << "), gradients over NCCL\n";
                train::run_training<float, Gpu>(cfg, resume, mpi.is_root() ? std::cout : discard, false, stop,
                                                dist::nccl_replicas<float>(mpi, cfg));
                std::cout << std::flush;
                return 0;
            }
#endif
            throw ConfigError("config: " + cfg.source +
                              ": 'runtime.distributed' mpi on a CUDA device needs NCCL, and this medimg-train was built without "
                              "it; use runtime.device cpu");
        }
        // No live progress line: mpirun hands each rank a pseudo-terminal even when its own output
        // goes to a file, so isatty cannot tell; the epoch lines remain.
        (void)progress;
        train::run_training<float, Cpu>(cfg, resume, mpi.is_root() ? std::cout : discard, false, stop,
                                        dist::replicas<float>(mpi, cfg));
        std::cout << std::flush;
        return 0;
    } catch (const ConfigError& e) {
        if (mpi.is_root()) std::cerr << "medimg-train: " << e.what() << "\n";
        return 1;
    } catch (...) {
        std::cerr << "medimg-train: rank " << mpi.rank() << ": " << current_exception_message() << "\n" << std::flush;
        MPI_Abort(MPI_COMM_WORLD, 1);
        return 1;
    }
}
#endif

int main(int argc, char** argv) try {
    using namespace medimg;
    const auto args = cli::parse(argc, argv, {"--config", "--set", "--stop-after-epoch"}, {"--resume", "--print-config", "--help"}, kUsage);
    if (args.has("--help")) {
        std::cout << kUsage;
        return 0;
    }
    const auto cfg = io::load_config(args.require("--config"), args.all("--set"));
    if (args.has("--print-config")) {
        std::cout << io::to_yaml(cfg);
        return 0;
    }
    const auto stop = static_cast<std::int64_t>(args.number("--stop-after-epoch", 0, 1e9, true, 0));
    const bool progress = isatty(STDOUT_FILENO) != 0;
    if (cfg.runtime.distributed == "mpi") {
#if MEDIMG_WITH_MPI
        return run_distributed<Cuda>(cfg, args.has("--resume"), progress, stop);
#else
        throw ConfigError("config: " + cfg.source +
                          ": 'runtime.distributed' is mpi but this medimg-train was built without MPI (bash scripts/install-deps.sh "
                          "installs OpenMPI; then rebuild)");
#endif
    }
    run_on<Cuda>(cfg, args.has("--resume"), progress, stop);
    return 0;
} catch (...) {
    return medimg::cli::fail("medimg-train");  // one line for any exception (medimg::current_exception_message)
}
