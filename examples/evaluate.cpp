// SPDX-License-Identifier: MIT
// medimg-evaluate: accuracy, per-class sensitivity and specificity, ROC AUC (binary; macro
// one-vs-rest for more classes) and the confusion matrix of a checkpoint on a split of the
// configured data (--split train|val|test, default test). Preprocessing comes from the checkpoint.
#include <medimg/medimg.hpp>
#include <medimg/train/run.hpp>

#include <iostream>

#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "device.hpp"

static const char* kUsage = R"(usage: medimg-evaluate --config FILE --checkpoint FILE [--split test|val|train] [--json] [--set key=value ...]

  --config FILE      the configuration naming the data folders and classes
  --checkpoint FILE  a medimg checkpoint
  --split NAME       which split of the config to evaluate (default: test)
  --json             one JSON object instead of the text report
  --help             this text

Research software: not for clinical diagnosis.
)";

/// The checkpoint's model on backend B over every batch of `loader`.
template <class B>
medimg::train::Evaluation evaluate_on(const medimg::io::Checkpoint& ck, medimg::data::DataLoader& loader, std::int64_t classes) {
    using namespace medimg;
    auto model = nn::make_resnet<float, B>(ck.meta().architecture, nn::ResNetOptions{classes, ck.meta().in_channels});
    ck.load_into(*model, ck.meta().architecture);
    return train::evaluate(*model, loader, classes);
}

/// evaluate_on<Gpu> when `gpu`, else on the CPU. A template so that in a g++ build (no CUDA
/// backend) the Gpu branch is discarded, not instantiated.
template <class Gpu>
medimg::train::Evaluation evaluate_on_device(bool gpu, const medimg::io::Checkpoint& ck, medimg::data::DataLoader& loader,
                                             std::int64_t classes) {
    if constexpr (medimg::backend_available<Gpu>) {
        if (gpu) return evaluate_on<Gpu>(ck, loader, classes);
    }
    return evaluate_on<medimg::Cpu>(ck, loader, classes);
}

int main(int argc, char** argv) try {
    using namespace medimg;
    const auto args = cli::parse(argc, argv, {"--config", "--checkpoint", "--split", "--set"}, {"--json", "--help"});
    if (args.has("--help")) {
        std::cout << kUsage;
        return 0;
    }
    auto cfg = io::load_config(args.require("--config"), args.all("--set"));
    if (cfg.runtime.threads > 0) set_num_threads(static_cast<int>(cfg.runtime.threads));
    const std::string split = args.get("--split", "test");
    const std::string root = split == "train" ? cfg.data.train : split == "val" ? cfg.data.val : split == "test" ? cfg.data.test : "";
    MEDIMG_CHECK(!root.empty(), ConfigError, "--split must be train, val or test (with a folder configured), got '", split, "'");
    const auto ck = io::Checkpoint::load(args.require("--checkpoint"));
    MEDIMG_CHECK(ck.meta().classes == cfg.data.classes, IoError, "evaluate: ", args.get("--checkpoint"),
                 " was trained on other classes than data.classes of ", cfg.source);
    const auto pre = train::Preprocessing::from_meta(ck.meta());
    const bool gpu = use_gpu<Cuda>(cfg, "medimg-evaluate");
    const auto ds = data::FolderDataset::scan(root, cfg.data.classes);
    auto loader = train::make_loader(ds, pre.eval(), pre.read_channels, cfg, false);
    const auto classes = static_cast<std::int64_t>(cfg.data.classes.size());
    const auto ev = evaluate_on_device<Cuda>(gpu, ck, *loader, classes);
    if (args.has("--json")) {
        nlohmann::ordered_json j;
        j["split"] = split;
        j["images"] = ev.report.count;
        j["accuracy"] = ev.report.accuracy;
        j["roc_auc"] = ev.report.macro_auc;
        j["loss"] = ev.loss;
        for (std::size_t k = 0; k < cfg.data.classes.size(); ++k) {
            j["per_class"][cfg.data.classes[k]] = {{"sensitivity", ev.report.sensitivity[k]},
                                                   {"specificity", ev.report.specificity[k]},
                                                   {"roc_auc", ev.report.auc[k]}};
        }
        j["confusion_matrix"] = ev.report.confusion;
        j["classes"] = cfg.data.classes;
        std::cout << j.dump() << "\n";
    } else {
        train::print_report(std::cout, split.c_str(), ev, cfg.data.classes);
    }
    if (loader->skipped()) std::cerr << "medimg-evaluate: skipped " << loader->skipped() << " unreadable images\n";
    return 0;
} catch (const std::exception& e) {
    std::cerr << "medimg-evaluate: " << e.what() << "\n";
    return 1;
}
