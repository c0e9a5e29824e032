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

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "medimg/data/intensity.hpp"
#include "medimg/data/slices.hpp"
#include "medimg/io/safetensors.hpp"
#include "medimg/io/text.hpp"
#include "medimg/io/utf8.hpp"
#include "medimg/io/weights_file.hpp"
#include "medimg/nn/models.hpp"
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
        c.check_meta_();
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

    // Every metadata value is checked against the range the YAML config accepts for the same
    // setting (io/config.hpp's schema), so that a damaged or hostile checkpoint is refused in one
    // line naming the key and the file before its values size an allocation (a model of 10^9
    // classes, a resize to 10^6 pixels) or reach a parser. Message shape as the config's:
    // "checkpoint: <file>: metadata '<key>' must be ..., got ...".
    void check_meta_() const {
        const std::string& path = file_.name();
        const auto& m = meta_;
        auto bad = [&](const std::string& key, const auto&... what) {
            return IoError(::medimg::detail::concat("checkpoint: ", path, ": metadata '", key, "' ", what...));
        };
        auto join = [](const std::vector<std::string>& v) {
            std::string s;
            for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
            return s;
        };
        auto between = [&](const std::string& key, double v, double lo, double hi) {
            if (!(v >= lo && v <= hi)) throw bad(key, "must be >= ", lo, " and <= ", hi, ", got ", v);
        };
        // model.name: a name, not necessarily a built-in one (a model of one's own saves checkpoints
        // too, docs/extending.md); the programs refuse names nn::make_model does not know.
        const bool name_ok = !m.architecture.empty() && m.architecture.size() <= 64 &&
                             std::all_of(m.architecture.begin(), m.architecture.end(), [](unsigned char ch) {
                                 return std::isalnum(ch) || ch == '_' || ch == '-' || ch == '.';
                             });
        if (!name_ok)
            throw bad("architecture", "must be a model name of 1 to 64 letters, digits, '_', '-' or '.' (one of ",
                      join(nn::model_names()), " for the programs); got '", clipped(m.architecture), "'");
        // data.classes: at least 2 non-empty names without control characters, none twice.
        if (m.classes.size() < 2) throw bad("classes", "must have at least 2 entries, got ", m.classes.size());
        for (std::size_t i = 0; i < m.classes.size(); ++i) {
            const std::string& n = m.classes[i];
            if (n.empty()) throw bad("classes", "entries must be non-empty names, got '' at position ", i);
            for (const unsigned char ch : n)
                if (ch < 0x20 || ch == 0x7f) throw bad("classes", "entry ", i, " contains the control character ", static_cast<int>(ch));
            if (std::find(m.classes.begin(), m.classes.begin() + static_cast<std::ptrdiff_t>(i), n) != m.classes.begin() + static_cast<std::ptrdiff_t>(i))
                throw bad("classes", "lists '", clipped(n), "' twice");
        }
        // The head's outputs are the classes: a count that differs would size the model wrongly.
        for (const char* head : {"fc.weight", "classifier.weight", "classifier.1.weight", "head.weight", "heads.head.weight"}) {
            if (!file_.contains(head)) continue;
            const Shape hs = file_.shape(head);
            if (hs.rank() == 2 && hs[0] != static_cast<std::int64_t>(m.classes.size()))
                throw bad("classes", "lists ", m.classes.size(), " classes but the head '", head, "' has ", hs[0], " outputs ", hs);
            break;
        }
        // data.channels as the model takes it: 1 or 3 (2 is refused by the config too).
        if (m.in_channels != 1 && m.in_channels != 3) throw bad("in_channels", "must be 1 or 3, got ", m.in_channels);
        between("image_size", static_cast<double>(m.image_size), 32, 4096);  // data.image_size
        // data.mean / data.std: one per model channel; std > 0.
        if (static_cast<std::int64_t>(m.mean.size()) != m.in_channels)
            throw bad("normalize_mean", "has ", m.mean.size(), " values for ", m.in_channels, " channels");
        if (static_cast<std::int64_t>(m.std.size()) != m.in_channels)
            throw bad("normalize_std", "has ", m.std.size(), " values for ", m.in_channels, " channels");
        for (const double v : m.mean) between("normalize_mean", v, -1e6, 1e6);
        for (const double v : m.std)
            if (!(v > 0 && std::isfinite(v))) throw bad("normalize_std", "must be > 0, got ", v);
        between("epoch", static_cast<double>(m.epoch), 0, 100000);  // train.epochs
        for (const auto& [k, v] : m.metrics)
            if (!std::isfinite(v)) throw bad("metrics", "holds ", v, " for '", clipped(k), "'; expected finite numbers");
        if (const auto it = file_.metadata().find("format_version"); it != file_.metadata().end() && it->second != "1")
            throw bad("format_version", "must be 1 (this medimg's checkpoint format), got '", clipped(it->second), "'");
        // The preprocessing settings train/setup.hpp's Preprocessing::from_meta reads.
        auto integer_in = [&](const char* key, std::int64_t lo, std::int64_t hi) -> std::int64_t {
            const std::string& v = m.extra.at(key);
            std::int64_t x = 0;
            if (!parse_integer(v, x)) throw bad(key, "must be an integer, got '", clipped(v), "'");
            between(key, static_cast<double>(x), static_cast<double>(lo), static_cast<double>(hi));
            return x;
        };
        if (m.extra.count("read_channels")) {
            const std::int64_t rc = integer_in("read_channels", 1, 3);  // data.channels
            if (rc == 2) throw bad("read_channels", "must be 1 or 3, got 2");
        }
        if (const auto it = m.extra.find("resize"); it != m.extra.end() && it->second != "none") {
            const std::int64_t r = integer_in("resize", 32, 8192);  // data.resize
            if (r < m.image_size) throw bad("resize", "(", r, ") must be >= image_size (", m.image_size, ")");
        }
        if (const auto it = m.extra.find("temperature"); it != m.extra.end()) {
            double t = 0;
            if (!parse_number(it->second, t) || !(t > 0)) throw bad("temperature", "must be a number > 0, got '", clipped(it->second), "'");
        }
        try {
            if (const auto it = m.extra.find("window"); it != m.extra.end()) (void)data::IntensitySetting::parse(it->second, "window");
            if (const auto it = m.extra.find("volume_axis"); it != m.extra.end()) (void)data::volume_axis(it->second);
            if (const auto it = m.extra.find("volume_slices"); it != m.extra.end()) (void)data::SliceSelection::parse(it->second);
        } catch (const ConfigError& e) {
            throw IoError(::medimg::detail::concat("checkpoint: ", path, ": metadata ", e.what()));
        }
    }

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
