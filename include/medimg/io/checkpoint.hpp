// SPDX-License-Identifier: MIT
// io/checkpoint.hpp: checkpoints and pretrained weights, as safetensors files with PyTorch's
// parameter names, so that `safetensors.torch.load_file` + `model.load_state_dict` reads ours
// and a torchvision/timm ResNet state_dict saved as safetensors (or with torch.save, through
// io/weights_file.hpp) loads here as "pretrained".
// One file holds: the model's state_dict (F32; num_batches_tracked as I64), the optimizer state
// under the "optimizer." prefix (PyTorch ignores it with strict=False, or filter it out), and
// the metadata (architecture, classes, preprocessing, epoch, metrics, config) as JSON strings
// in "__metadata__". Writes are atomic (temporary file, fsync, rename).
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "medimg/io/safetensors.hpp"
#include "medimg/io/text.hpp"
#include "medimg/io/utf8.hpp"
#include "medimg/io/weights_file.hpp"
#include "medimg/nn/module.hpp"
#include "medimg/nn/pos_embed.hpp"

namespace medimg::io {

/// What a checkpoint says about itself; stored as strings in the safetensors metadata.
struct CheckpointMeta {
    std::string architecture;          // "resnet18", "resnet34", "resnet50"
    std::vector<std::string> classes;  // in the model's output order
    std::int64_t in_channels = 3;
    std::int64_t image_size = 224;
    std::vector<double> mean, std;     // normalisation per channel
    std::int64_t epoch = 0;
    std::map<std::string, double> metrics;
    std::string config;                // the configuration used (YAML text)
    std::map<std::string, std::string> extra;
};

inline constexpr const char* kCheckpointFormat = "medimg-checkpoint";
inline constexpr const char* kOptimizerPrefix = "optimizer.";

namespace detail {
template <class T, class B>
Tensor<T, Cpu> to_host(const Tensor<T, B>& t) {
    if constexpr (std::is_same_v<B, Cpu>)
        return t;
    else
        return t.template to<Cpu>();
}
inline void put_meta(SafetensorsWriter& w, const CheckpointMeta& m) {
    w.set_metadata("format", kCheckpointFormat);
    w.set_metadata("format_version", "1");
    w.set_metadata("architecture", m.architecture);
    w.set_metadata("classes", nlohmann::json(m.classes).dump());
    w.set_metadata("in_channels", std::to_string(m.in_channels));
    w.set_metadata("image_size", std::to_string(m.image_size));
    w.set_metadata("normalize_mean", nlohmann::json(m.mean).dump());
    w.set_metadata("normalize_std", nlohmann::json(m.std).dump());
    w.set_metadata("epoch", std::to_string(m.epoch));
    w.set_metadata("metrics", nlohmann::json(m.metrics).dump());
    // The config record is for people; a path in it need not be UTF-8 but JSON must be, so bytes
    // that are not UTF-8 are written as \xNN (the config the run uses is unaffected).
    if (!m.config.empty()) w.set_metadata("config", escape_invalid_utf8(m.config));
    for (const auto& [k, v] : m.extra) w.set_metadata(k, v);
}
/// Refuses weights holding NaN or an infinity in one line naming the file, the tensor and the
/// first such element: such a checkpoint (training diverged, or the file was damaged) would make
/// every prediction NaN while the program reports success.
template <class T>
void refuse_non_finite(const char* what, const std::string& file, const std::string& name, const Tensor<T, Cpu>& t) {
    if constexpr (std::is_floating_point_v<T>)
        for (std::int64_t i = 0; i < t.numel(); ++i)
            if (!std::isfinite(t[i]))
                throw IoError(::medimg::detail::concat(what, ": ", file, ": '", name, "' holds ", t[i], " at element ", i,
                                                       " of ", t.shape(), "; the weights are damaged or training diverged"));
}

}  // namespace detail

/// Writes model (+ optional optimizer state) + metadata to `path`, atomically.
template <class T, class B>
void save_checkpoint(const std::string& path, const nn::Module<T, B>& model, const CheckpointMeta& meta,
                     const std::map<std::string, Tensor<T, Cpu>>& optimizer_state = {}) {
    SafetensorsWriter w;
    for (const auto& e : model.state_dict()) {
        const auto host = detail::to_host(e.value);
        if (e.integer)
            w.add(e.name, host.template cast<std::int64_t>());
        else
            w.add(e.name, host.template cast<float>());
    }
    for (const auto& [k, v] : optimizer_state) w.add(kOptimizerPrefix + k, v.template cast<float>());
    detail::put_meta(w, meta);
    w.write(path);
}

/// A checkpoint read back: metadata parsed, tensors available by name.
class Checkpoint {
public:
    static Checkpoint load(const std::string& path) { return from_file(SafetensorsFile::load(path)); }
    /// A checkpoint file image already in memory; `name` stands for the file in messages.
    static Checkpoint load_from_memory(const void* data, std::size_t size, const std::string& name = "<memory>") {
        return from_file(SafetensorsFile::load_from_memory(data, size, name));
    }

    /// Parses the metadata of a loaded safetensors file.
    static Checkpoint from_file(SafetensorsFile file) {
        Checkpoint c(std::move(file));
        const std::string& path = c.file_.name();
        const auto& md = c.file_.metadata();
        auto get = [&](const char* key) -> std::string {
            auto it = md.find(key);
            MEDIMG_CHECK(it != md.end(), IoError, "checkpoint: ", path, ": metadata key '", key,
                         "' is missing (not a medimg checkpoint? pretrained weights load with load_pretrained)");
            return it->second;
        };
        MEDIMG_CHECK(get("format") == kCheckpointFormat, IoError, "checkpoint: ", path, ": format is '", get("format"),
                     "', expected '", kCheckpointFormat, "'");
        // Each value is checked by itself, so that a damaged one is named with the file, never
        // reported as std::stoll's "stoll" or nlohmann's "[json.exception...]" text.
        auto integer = [&](const char* key) -> std::int64_t {
            const std::string v = get(key);
            std::int64_t x = 0;
            MEDIMG_CHECK(parse_integer(v, x), IoError, "checkpoint: ", path, ": metadata '", key, "' must be a whole number, got '",
                         clipped(v), "'");
            return x;
        };
        auto json = [&](const char* key, const char* what, auto as) {
            const std::string v = get(key);
            try {
                return nlohmann::json::parse(v).get<decltype(as)>();
            } catch (const nlohmann::json::exception&) {
                throw IoError(::medimg::detail::concat("checkpoint: ", path, ": metadata '", key, "' must be ", what, ", got '",
                                                       clipped(v), "'"));
            }
        };
        auto& m = c.meta_;
        m.architecture = get("architecture");
        m.classes = json("classes", "a JSON list of class names", std::vector<std::string>{});
        m.in_channels = integer("in_channels");
        m.image_size = integer("image_size");
        m.mean = json("normalize_mean", "a JSON list of numbers", std::vector<double>{});
        m.std = json("normalize_std", "a JSON list of numbers", std::vector<double>{});
        m.epoch = integer("epoch");
        m.metrics = json("metrics", "a JSON object of numbers", std::map<std::string, double>{});
        if (const auto it = md.find("config"); it != md.end()) m.config = it->second;
        for (const auto& [k, v] : md)
            if (!known_key(k)) m.extra[k] = v;
        return c;
    }

    const CheckpointMeta& meta() const { return meta_; }
    const SafetensorsFile& file() const { return file_; }

    /// The model part (every key without the optimizer prefix), converted to T.
    template <class T>
    std::map<std::string, Tensor<T, Cpu>> model_state() const {
        std::map<std::string, Tensor<T, Cpu>> out;
        for (const auto& k : file_.keys())
            if (k.rfind(kOptimizerPrefix, 0) != 0) out[k] = file_.tensor<T>(k);
        return out;
    }
    /// The optimizer part, prefix removed.
    template <class T>
    std::map<std::string, Tensor<T, Cpu>> optimizer_state() const {
        std::map<std::string, Tensor<T, Cpu>> out;
        const std::string p = kOptimizerPrefix;
        for (const auto& k : file_.keys())
            if (k.rfind(p, 0) == 0) out[k.substr(p.size())] = file_.tensor<T>(k);
        return out;
    }
    /// Loads the weights into `model` (strict), after checking that the architecture and class
    /// count agree; each mismatch is one line naming the file and both values. A tensor holding
    /// NaN or an infinity is refused, naming it (detail::refuse_non_finite).
    template <class T, class B>
    void load_into(nn::Module<T, B>& model, const std::string& expected_architecture = "") const {
        MEDIMG_CHECK(expected_architecture.empty() || expected_architecture == meta_.architecture, IoError, "checkpoint: ",
                     file_.name(), ": holds a ", meta_.architecture, " but the model is a ", expected_architecture);
        auto state = model_state<T>();
        for (const auto& [name, t] : state) detail::refuse_non_finite("checkpoint", file_.name(), name, t);
        for (const auto& e : model.state_dict()) {
            auto it = state.find(e.name);
            if (it != state.end() && it->second.shape() != e.value.shape())
                throw IoError(::medimg::detail::concat("checkpoint: ", file_.name(), ": '", e.name, "' is ", it->second.shape(),
                                                       " in the file but ", e.value.shape(), " in the model",
                                                       e.name.rfind("fc.", 0) == 0 ? " (another class count?)" : ""));
        }
        try {
            model.load_state_dict(to_backend<T, B>(state));
        } catch (const ValueError& err) {
            throw IoError("checkpoint: " + file_.name() + ": " + err.what());
        }
    }

private:
    explicit Checkpoint(SafetensorsFile f) : file_(std::move(f)) {}
    static bool known_key(const std::string& k) {
        for (const char* s : {"format", "format_version", "architecture", "classes", "in_channels", "image_size",
                              "normalize_mean", "normalize_std", "epoch", "metrics", "config"})
            if (k == s) return true;
        return false;
    }
    template <class T, class B>
    static std::map<std::string, Tensor<T, B>> to_backend(const std::map<std::string, Tensor<T, Cpu>>& in) {
        if constexpr (std::is_same_v<B, Cpu>)
            return in;
        else {
            std::map<std::string, Tensor<T, B>> out;
            for (const auto& [k, v] : in) out[k] = v.template to<B>();
            return out;
        }
    }
    SafetensorsFile file_;
    CheckpointMeta meta_;
};

namespace detail {
/// Whether a state_dict key is a ViT's position embedding (timm's or torchvision's name).
inline bool is_pos_embed(const std::string& name) {
    for (const std::string end : {"pos_embed", "pos_embedding"})
        if (name.size() >= end.size() && name.compare(name.size() - end.size(), end.size(), end) == 0) return true;
    return false;
}
}  // namespace detail

/// What load_pretrained did, for the program to print.
struct PretrainedReport {
    std::vector<std::string> loaded, adapted, reinitialised, ignored;
};

/// Loads a torchvision/timm-named state_dict (any medimg architecture: ResNet, DenseNet,
/// EfficientNet, ...) from a safetensors or torch.save .pth/.pt file (io::WeightsFile decides by
/// the first bytes) as "pretrained":
///  - the stem, the first 4-d parameter (conv1.weight, features.conv0.weight, features.0.0.weight),
///    with 3 input channels into a 1-channel model: summed over the input-channel axis (a gray
///    image x gives the same response as the RGB image (x, x, x));
///  - the head, the module owning the last parameter (fc., classifier., classifier.1.), whose
///    shapes do not match num_classes: left as initialised (re-initialised head);
///  - a ViT's position embedding (pos_embed, encoder.pos_embedding: (1, 1 + g^2, D)) made for
///    another square grid: resampled to the model's grid as timm's checkpoint filter does
///    (nn/pos_embed.hpp; a 224 checkpoint into a model for 384 inputs, or for 128);
///  - num_batches_tracked may be absent (older torchvision files); other missing keys are errors;
///  - keys the model does not have are ignored and listed.
template <class T, class B>
PretrainedReport load_pretrained(nn::Module<T, B>& model, const std::string& path) {
    const auto file = WeightsFile::load(path);
    PretrainedReport r;
    std::map<std::string, Tensor<T, B>> state;
    auto mine = model.state_dict();
    const auto params = model.named_parameters();
    std::string stem, head;
    for (const auto& [name, p] : params)
        if (stem.empty() && p.value().rank() == 4) stem = name;
    if (!params.empty()) head = params.back().first.substr(0, params.back().first.rfind('.') + 1);
    for (const auto& e : mine) {
        const bool counter = e.name.size() >= 19 && e.name.compare(e.name.size() - 19, 19, "num_batches_tracked") == 0;
        if (!file.contains(e.name)) {
            MEDIMG_CHECK(counter, IoError, "pretrained: ", path, ": missing '", e.name,
                         "' (is this the same architecture, with torchvision names?)");
            continue;
        }
        auto t = file.tensor<T>(e.name);
        detail::refuse_non_finite("pretrained", path, e.name, t);
        const Shape want = e.value.shape();
        if (t.shape() != want && e.name == stem && t.rank() == 4 && want.rank() == 4 && want[1] == 1 &&
            t.size(0) == want[0] && t.size(2) == want[2] && t.size(3) == want[3]) {
            auto summed = Tensor<T, Cpu>::zeros(want);  // w1[o, 0, u, v] = sum_c w[o, c, u, v]
            const std::int64_t C = t.size(1), K = want[2] * want[3];
            for (std::int64_t o = 0; o < want[0]; ++o)
                for (std::int64_t c = 0; c < C; ++c)
                    for (std::int64_t q = 0; q < K; ++q) summed[o * K + q] += t[(o * C + c) * K + q];
            t = summed;
            r.adapted.push_back(e.name + " " + file.shape(e.name).to_string() + " -> " + want.to_string() +
                                " (summed over input channels)");
        } else if (t.shape() != want && detail::is_pos_embed(e.name) && t.rank() == 3 && want.rank() == 3 && t.size(0) == 1 &&
                   want[0] == 1 && t.size(2) == want[2] && nn::detail::square_side(t.size(1) - 1) > 0 &&
                   nn::detail::square_side(want[1] - 1) > 0) {
            const std::int64_t gi = nn::detail::square_side(t.size(1) - 1), go = nn::detail::square_side(want[1] - 1);
            t = nn::resample_pos_embed_host(t, 1, gi, gi, go, go);
            r.adapted.push_back(e.name + " " + file.shape(e.name).to_string() + " -> " + want.to_string() + " (grid " +
                                std::to_string(gi) + "x" + std::to_string(gi) + " resampled to " + std::to_string(go) + "x" +
                                std::to_string(go) + ", bicubic)");
        } else if (t.shape() != want && !head.empty() && e.name.rfind(head, 0) == 0) {
            r.reinitialised.push_back(e.name + " " + t.shape().to_string() + " -> " + want.to_string());
            continue;
        } else {
            MEDIMG_CHECK(t.shape() == want, IoError, "pretrained: ", path, ": '", e.name, "' is ", t.shape(),
                         " in the file but ", want, " in the model");
            r.loaded.push_back(e.name);
        }
        if constexpr (std::is_same_v<B, Cpu>)
            state[e.name] = t;
        else
            state[e.name] = t.template to<B>();
    }
    for (const auto& k : file.keys())
        if (std::none_of(mine.begin(), mine.end(), [&](const nn::StateEntry<T, B>& e) { return e.name == k; }))
            r.ignored.push_back(k);
    model.load_state_dict(state, /*strict=*/false);
    return r;
}

}  // namespace medimg::io
