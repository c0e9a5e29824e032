// SPDX-License-Identifier: MIT
// medimg-predict: the probability of every class for one or more images (or every image in a
// folder), from a checkpoint alone: architecture, classes and preprocessing come from its
// metadata. --config is accepted for the prototype's command line and used only for
// runtime.threads. Output: one line per class, or with --json one object per image.
#include <medimg/medimg.hpp>
#include <medimg/train/run.hpp>

#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "device.hpp"

static const char* kUsage = R"(usage: medimg-predict --checkpoint FILE --image FILE|FOLDER [--image ...] [--config FILE] [--json]

  --checkpoint FILE  a medimg checkpoint (e.g. artifacts/checkpoints/best.safetensors)
  --image PATH       an image, or a folder whose images are all predicted (repeatable)
  --config FILE      optional; only runtime.threads is used (preprocessing comes from the checkpoint)
  --json             one JSON object per image: {"image", "probabilities", "predicted"}
  --help             this text

Research software: not for clinical diagnosis.
)";

/// Prints the class probabilities of every image, the network on backend B (the image is decoded
/// and transformed on the host, then copied; the logits come back for the softmax).
template <class B>
void predict_on(const medimg::io::Checkpoint& ck, const medimg::train::Preprocessing& pre,
                const std::vector<std::string>& images, bool json) {
    using namespace medimg;
    const auto& meta = ck.meta();
    auto model = nn::make_resnet<float, B>(meta.architecture,
                                           nn::ResNetOptions{static_cast<std::int64_t>(meta.classes.size()), meta.in_channels});
    ck.load_into(*model, meta.architecture);
    model->eval();
    autograd::NoGrad guard;
    for (const auto& path : images) {
        auto x = pre.load_eval(path);
        const auto logits = on_host((*model)(autograd::Var<float, B>(on_backend<B>(x.reshape({1, x.size(0), x.size(1), x.size(2)})))).value());
        auto logp = Tensor<float>::empty(logits.shape());
        ops::log_softmax_forward(logits, logp);
        std::size_t best = 0;
        std::vector<double> p;
        for (std::size_t k = 0; k < meta.classes.size(); ++k) {
            p.push_back(std::exp(static_cast<double>(logp[static_cast<std::int64_t>(k)])));
            if (p[k] > p[best]) best = k;
        }
        if (json) {
            nlohmann::ordered_json j;
            j["image"] = io::escape_invalid_utf8(path);  // JSON strings are UTF-8; other path bytes as \xNN
            j["probabilities"] = nlohmann::ordered_json::object();
            for (std::size_t k = 0; k < p.size(); ++k) j["probabilities"][meta.classes[k]] = p[k];
            j["predicted"] = meta.classes[best];
            std::cout << j.dump() << "\n";
        } else {
            if (images.size() > 1) std::cout << path << "\n";
            for (std::size_t k = 0; k < p.size(); ++k) {
                char line[160];
                std::snprintf(line, sizeof line, "%s%-12s %.6f\n", images.size() > 1 ? "  " : "", meta.classes[k].c_str(), p[k]);
                std::cout << line;
            }
        }
    }
}

/// predict_on<Gpu> when `gpu`, else on the CPU (a template: in a g++ build the Gpu branch is
/// discarded, not instantiated).
template <class Gpu>
void predict_on_device(bool gpu, const medimg::io::Checkpoint& ck, const medimg::train::Preprocessing& pre,
                       const std::vector<std::string>& images, bool json) {
    if constexpr (medimg::backend_available<Gpu>) {
        if (gpu) return predict_on<Gpu>(ck, pre, images, json);
    }
    predict_on<medimg::Cpu>(ck, pre, images, json);
}

int main(int argc, char** argv) try {
    using namespace medimg;
    namespace fs = std::filesystem;
    const auto args = cli::parse(argc, argv, {"--config", "--checkpoint", "--image", "--set"}, {"--json", "--help"});
    if (args.has("--help")) {
        std::cout << kUsage;
        return 0;
    }
    bool gpu = false;  // without --config: the CPU
    if (args.has("--config")) {
        const auto cfg = io::load_config(args.get("--config"), args.all("--set"));
        if (cfg.runtime.threads > 0) set_num_threads(static_cast<int>(cfg.runtime.threads));
        gpu = use_gpu<Cuda>(cfg, "medimg-predict");
    }
    const bool json = args.has("--json");
    const auto ck = io::Checkpoint::load(args.require("--checkpoint"));
    const auto& meta = ck.meta();
    const auto pre = train::Preprocessing::from_meta(meta);

    std::vector<std::string> images;
    MEDIMG_CHECK(args.has("--image"), ConfigError, "missing required option --image (see --help)");
    for (const auto& p : args.all("--image")) {
        std::error_code ec;
        if (fs::is_directory(p, ec)) {
            std::vector<std::string> found;
            for (const auto& e : fs::directory_iterator(p))
                if (e.is_regular_file() && data::is_image_file(e.path())) found.push_back(e.path().string());
            MEDIMG_CHECK(!found.empty(), IoError, "predict: folder '", p, "' holds no images");
            std::sort(found.begin(), found.end());
            images.insert(images.end(), found.begin(), found.end());
        } else {
            images.push_back(p);
        }
    }
    predict_on_device<Cuda>(gpu, ck, pre, images, json);
    return 0;
} catch (const std::exception& e) {
    std::cerr << "medimg-predict: " << e.what() << "\n";
    return 1;
}
