// SPDX-License-Identifier: MIT
// medimg-train: trains the configured ResNet on data/<split>/<class>/* (the prototype's train
// script). Prints one line per epoch (a live progress line when stdout is a terminal), writes
// <output.dir>/metrics.csv and checkpoints/{best,last}.safetensors, and evaluates the best
// checkpoint on the test split when it exists. --resume continues from last.safetensors.
// runtime.device: this file built by g++ is the CPU program (cuda is refused); train.cu, its nvcc
// twin, includes it unchanged and gets both backends, choosing once at the top (run_on below).
#include <medimg/medimg.hpp>
#include <medimg/train/run.hpp>

#include <unistd.h>

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
    run_on<Cuda>(cfg, args.has("--resume"), isatty(STDOUT_FILENO) != 0, stop);
    return 0;
} catch (const std::exception& e) {
    std::cerr << "medimg-train: " << e.what() << "\n";
    return 1;
}
