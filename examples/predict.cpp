// SPDX-License-Identifier: MIT
// medimg-predict: the probability of every class for one or more images (or every image in a
// folder), from a checkpoint alone: architecture, classes and preprocessing come from its
// metadata. --config is accepted for the prototype's command line and used only for
// runtime.threads. Output: one line per class, or with --json one object per image.
// --explain gradcam|gradcam++|occlusion|rollout also writes, per image, an overlay PNG (the exam in
// gray at its own resolution, the heat map blended over it, a colour bar, the class and its
// probability; docs/explain.md).
#include <medimg/medimg.hpp>
#include <medimg/train/run.hpp>

#include <filesystem>
#include <iostream>
#include <set>

#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "device.hpp"
#include "explain_overlay.hpp"

static const char* kUsage = R"(usage: medimg-predict --checkpoint FILE --image FILE|FOLDER [--image ...] [--config FILE [--set key=value ...]] [--json] [--calibration none|temperature]
                      [--explain gradcam|gradcam++|occlusion|rollout [--explain-layer NAME] [--explain-out DIR]
                       [--explain-class NAME] [--explain-patch N] [--explain-stride N]]

  --checkpoint FILE    a medimg checkpoint (e.g. artifacts/checkpoints/best.safetensors)
  --image PATH         an image, or a folder whose images are all predicted, its subfolders'
                       too (repeatable)
  --config FILE        optional; runtime.threads and runtime.device are used (preprocessing comes
                       from the checkpoint)
  --set key=value      override one key of --config (repeatable), e.g. --set runtime.device=cpu
  --calibration MODE   none or temperature: divide the logits by the temperature medimg-train fitted
                       on the validation split (default: temperature when the checkpoint holds one)
  --json               one JSON object per image: {"image", "probabilities", "predicted"}, and with
                       --explain an "explanation" object (method, layer, class, file, peak)
  --explain METHOD     where the model looked, per image: gradcam, gradcam++ (both at --explain-layer)
                       occlusion (a gray patch slid over the input) or rollout (attention rollout,
                       Vision Transformers only); writes DIR/<image>_<method>.png
  --explain-layer NAME the module whose output is explained, as PyTorch names it (layer4, layer3,
                       layer4.1.conv2; features.norm5 for densenet121, features.8 for
                       efficientnet_b0); default: the model's last stage, or an earlier one
                       where its map would be smaller than 4x4 (docs/explain.md)
  --explain-out DIR    where the overlays go (default: explanations; created if missing)
  --explain-class NAME the class to explain (default: the predicted one)
  --explain-patch N    occlusion patch side in input pixels (default image_size / 7, 32 at 224)
  --explain-stride N   occlusion stride (default half the patch)
  --help               this text

Research software: not for clinical diagnosis.
)";

/// Prints the class probabilities of every image, the network on backend B (the image is decoded
/// and transformed on the host, then copied; the logits come back for the softmax).
template <class B>
void predict_on(const medimg::io::Checkpoint& ck, const medimg::train::Preprocessing& pre,
                const std::vector<std::string>& images, bool json, const ExplainRequest& req, double temperature) {
    using namespace medimg;
    const auto& meta = ck.meta();
    auto model = nn::make_model<float, B>(meta.architecture,
                                           train::model_options(meta));
    ck.load_into(*model, meta.architecture);
    model->eval();
    autograd::NoGrad guard;
    std::int64_t explain_class = -1;  // -1: the predicted one
    if (!req.class_name.empty()) {
        const auto it = std::find(meta.classes.begin(), meta.classes.end(), req.class_name);
        std::string known;
        for (const auto& c : meta.classes) known += (known.empty() ? "" : ", ") + c;
        MEDIMG_CHECK(it != meta.classes.end(), ConfigError, "--explain-class: '", req.class_name,
                     "' is not a class of this checkpoint (", known, ")");
        explain_class = it - meta.classes.begin();
    }
    std::set<std::string> used_names;
    for (const auto& path : images) {
        auto x = pre.load_eval(path);
        const auto xb = on_backend<B>(x.reshape({1, x.size(0), x.size(1), x.size(2)}));
        const auto probs = nn::functional::softmax(on_host((*model)(autograd::Var<float, B>(xb)).value()), temperature);
        std::size_t best = 0;
        std::vector<double> p;
        for (std::size_t k = 0; k < meta.classes.size(); ++k) {
            p.push_back(probs[static_cast<std::int64_t>(k)]);
            if (p[k] > p[best]) best = k;
        }
        nlohmann::ordered_json explanation;
        if (!req.method.empty()) {
            const auto target = explain_class >= 0 ? explain_class : static_cast<std::int64_t>(best);
            const auto file = (std::filesystem::path(req.out_dir) / overlay_name(path, req.method, used_names)).string();
            char title[256];
            std::snprintf(title, sizeof title, "%s %.3f", meta.classes[best].c_str(), p[best]);
            auto ex = explained_overlay<B>(*model, xb, path, pre, meta.classes, target, req, title, file);
            ex.canvas.save_png(file);
            explanation = std::move(ex.info);
        }
        if (json) {
            nlohmann::ordered_json j;
            j["image"] = io::escape_invalid_utf8(path);  // JSON strings are UTF-8; other path bytes as \xNN
            j["probabilities"] = nlohmann::ordered_json::object();
            for (std::size_t k = 0; k < p.size(); ++k) j["probabilities"][meta.classes[k]] = p[k];
            j["predicted"] = meta.classes[best];
            if (!explanation.is_null()) j["explanation"] = explanation;
            std::cout << j.dump() << "\n";
        } else {
            if (images.size() > 1) std::cout << path << "\n";
            for (std::size_t k = 0; k < p.size(); ++k) {
                char line[160];
                std::snprintf(line, sizeof line, "%s%-12s %.6f\n", images.size() > 1 ? "  " : "", meta.classes[k].c_str(), p[k]);
                std::cout << line;
            }
            if (!explanation.is_null())
                std::cout << (images.size() > 1 ? "  " : "") << "explanation: " << explanation["file"].get<std::string>()
                          << " (" << req.method << (explanation.contains("layer") ? " at " + explanation["layer"].get<std::string>() : "")
                          << " for " << explanation["class"].get<std::string>() << ", peak at x="
                          << explanation["peak"]["x"].get<std::int64_t>() << " y=" << explanation["peak"]["y"].get<std::int64_t>() << ")\n";
        }
    }
}

/// predict_on<Gpu> when `gpu`, else on the CPU (a template: in a g++ build the Gpu branch is
/// discarded, not instantiated).
template <class Gpu>
void predict_on_device(bool gpu, const medimg::io::Checkpoint& ck, const medimg::train::Preprocessing& pre,
                       const std::vector<std::string>& images, bool json, const ExplainRequest& req, double temperature) {
    if constexpr (medimg::backend_available<Gpu>) {
        if (gpu) return predict_on<Gpu>(ck, pre, images, json, req, temperature);
    }
    predict_on<medimg::Cpu>(ck, pre, images, json, req, temperature);
}

int main(int argc, char** argv) try {
    using namespace medimg;
    namespace fs = std::filesystem;
    const auto args = cli::parse(argc, argv,
                                 {"--config", "--checkpoint", "--image", "--set", "--explain", "--explain-layer",
                                  "--explain-out", "--explain-class", "--explain-patch", "--explain-stride", "--calibration"},
                                 {"--json", "--help"}, kUsage);
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
    ExplainRequest req;
    req.method = args.get("--explain");
    MEDIMG_CHECK(!args.has("--explain") || req.method == "gradcam" || req.method == "gradcam++" || req.method == "occlusion" ||
                     req.method == "rollout",
                 ConfigError, "--explain: unknown method '", req.method, "' (gradcam, gradcam++, occlusion or rollout)");
    for (const char* k : {"--explain-layer", "--explain-out", "--explain-class", "--explain-patch", "--explain-stride"})
        MEDIMG_CHECK(!args.has(k) || args.has("--explain"), ConfigError, k, " needs --explain gradcam|gradcam++|occlusion|rollout");
    MEDIMG_CHECK(!args.has("--explain-layer") || req.method != "occlusion", ConfigError,
                 "--explain-layer: occlusion works on the input image, not on a layer (use gradcam or gradcam++)");
    req.layer = args.get("--explain-layer", req.layer);
    req.out_dir = args.get("--explain-out", req.out_dir);
    req.class_name = args.get("--explain-class");
    req.patch = static_cast<std::int64_t>(args.number("--explain-patch", 1, 4096, true, 0));    // 0: from the image size
    req.stride = static_cast<std::int64_t>(args.number("--explain-stride", 1, 4096, true, 0));
    MEDIMG_CHECK(!(req.patch || req.stride) || req.method == "occlusion", ConfigError,
                 "--explain-patch and --explain-stride are for --explain occlusion");
    const auto ck = io::Checkpoint::load(args.require("--checkpoint"));
    const auto& meta = ck.meta();
    const auto pre = train::Preprocessing::from_meta(meta);

    std::vector<std::string> images;
    MEDIMG_CHECK(args.has("--image"), ConfigError, "missing required option --image (see --help)");
    for (const auto& p : args.all("--image")) {
        std::error_code ec;
        if (fs::is_directory(p, ec)) {
            // As a data set's class folder is walked: subfolders too, regular files only (a FIFO
            // or socket is skipped, never opened), in ImageFolder's order.
            std::int64_t skipped = 0;
            const auto found = data::image_files_under(p, skipped, "predict");
            MEDIMG_CHECK(!found.empty(), IoError, "predict: folder '", p, "' holds no images");
            for (const auto& f : found) images.push_back(f.string());
        } else {
            images.push_back(p);
        }
    }
    // A volume (NIfTI, multi-frame DICOM) is predicted slice by slice, the slices the checkpoint's
    // data.volume_slices selects along its data.volume_axis; each is named "file[slice]".
    std::vector<std::string> samples;
    for (const auto& p : images) {
        const auto fmt = data::file_format(p);
        std::int64_t depth = 1;
        if ((fmt == data::FileFormat::dicom || fmt == data::FileFormat::nifti) && data::format_available(fmt)) {
            try {
                depth = data::slice_count(p, data::volume_axis(pre.volume_axis));
            } catch (const IoError&) {
                depth = 1;  // read below, where the error is reported
            }
        }
        if (fmt == data::FileFormat::nifti || depth > 1) {
            const auto picked = pre.slices.indices(depth);
            MEDIMG_CHECK(!picked.empty(), IoError, "predict: ", p, ": data.volume_slices of the checkpoint ('", pre.slices.text(),
                         "') selects none of its ", depth, " slices");
            for (auto k : picked) samples.push_back(data::SampleRef{p, k}.display());
        } else {
            samples.push_back(p);
        }
    }
    images = std::move(samples);
    if (!req.method.empty()) {
        std::error_code ec;
        std::filesystem::create_directories(req.out_dir, ec);
        MEDIMG_CHECK(!ec && std::filesystem::is_directory(req.out_dir), IoError, "--explain-out: cannot create folder '",
                     req.out_dir, "': ", ec ? ec.message() : "a file of that name exists");
    }
    const double temperature = train::calibration_temperature(meta, args.get("--calibration"), args.get("--checkpoint"));
    predict_on_device<Cuda>(gpu, ck, pre, images, json, req, temperature);
    return 0;
} catch (...) {
    return medimg::cli::fail("medimg-predict");  // one line for any exception (medimg::current_exception_message)
}
