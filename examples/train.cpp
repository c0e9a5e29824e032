// SPDX-License-Identifier: MIT
// medimg-train: trains the configured ResNet on data/<split>/<class>/* (the prototype's train
// script). Prints one line per epoch (a live progress line when stdout is a terminal), writes
// <output.dir>/metrics.csv and checkpoints/{best,last}.safetensors, and evaluates the best
// checkpoint on the test split when it exists. --resume continues from last.safetensors.
#include <medimg/medimg.hpp>
#include <medimg/train/run.hpp>

#include <unistd.h>

#include <iostream>

#include "cli.hpp"

static const char* kUsage = R"(usage: medimg-train --config FILE [--set key=value ...] [--resume] [--stop-after-epoch N]

  --config FILE      YAML configuration (see configs/default.yaml, docs/configuration.md)
  --set key=value    override one key, e.g. --set train.lr=0.01 (repeatable)
  --resume           continue from <output.dir>/checkpoints/last.safetensors
  --stop-after-epoch N  stop after epoch N (e.g. to fit a time slot); continue later with --resume
  --help             this text

Research software: not for clinical diagnosis.
)";

int main(int argc, char** argv) try {
    using namespace medimg;
    const auto args = cli::parse(argc, argv, {"--config", "--set", "--stop-after-epoch"}, {"--resume", "--help"});
    if (args.has("--help")) {
        std::cout << kUsage;
        return 0;
    }
    const auto cfg = io::load_config(args.require("--config"), args.all("--set"));
    MEDIMG_CHECK(cfg.runtime.device != "cuda", ConfigError, "config: ", cfg.source,
                 ": 'runtime.device' is cuda but this build of medimg-train has no CUDA backend (use cpu or auto)");
    const std::int64_t stop = args.has("--stop-after-epoch") ? std::stoll(args.get("--stop-after-epoch")) : 0;
    MEDIMG_CHECK(stop >= 0, ConfigError, "--stop-after-epoch must be >= 0, got ", stop);
    train::run_training<float, Cpu>(cfg, args.has("--resume"), std::cout, isatty(STDOUT_FILENO) != 0, stop);
    return 0;
} catch (const std::exception& e) {
    std::cerr << "medimg-train: " << e.what() << "\n";
    return 1;
}
