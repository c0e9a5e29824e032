// SPDX-License-Identifier: MIT
// io/config.hpp: the YAML configuration of the programs (configs/default.yaml, documented field
// by field in docs/configuration.md), read with yaml-cpp and validated against one schema table:
// an unknown key (with a "did you mean" hint), a wrong type or an out-of-range value is a
// ConfigError naming the file and the dotted key. `--set key=value` overrides are applied to the
// YAML tree before validation, so they are checked the same way. Every key has a default.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "medimg/data/intensity.hpp"
#include "medimg/data/slices.hpp"
#include "medimg/error.hpp"
#include "medimg/io/input_file.hpp"
#include "medimg/io/utf8.hpp"

namespace medimg::io {

struct AugmentConfig {
    bool random_resized_crop = true;
    double crop_scale_min = 0.08;  // RandomResizedCrop scale=(min, 1)
    bool hflip = true;
    double rotation_degrees = 0.0;
    double brightness = 0.0;       // jitter factor drawn from [1 - b, 1 + b]
    double contrast = 0.0;
};

struct DataConfig {
    std::string train = "data/train", val = "data/val", test = "data/test";  // test: "" = none
    std::vector<std::string> classes{"normal", "lesao"};
    std::int64_t image_size = 224;
    static constexpr std::int64_t no_resize = -1;  // `resize: none`
    std::int64_t resize = 256;  // eval: resize the shorter side to this, then center-crop image_size;
                                // no_resize: the centre crop alone (images used at their own scale)
    std::int64_t channels = 3;
    std::vector<double> mean{0.485, 0.456, 0.406}, std{0.229, 0.224, 0.225};
    bool skip_unreadable = false;
    std::string sampler = "shuffle";  // shuffle | balanced (class-balanced draws with replacement)
    // Medical formats (docs/formats.md): how DICOM / NIfTI values become [0, 1] and which slices of
    // a volume are samples. window: file | minmax | brain | subdural | bone | lung | abdomen |
    // [center, width] (kept as data::IntensitySetting::text()).
    std::string window = "file";
    std::string volume_axis = "axial";   // axial | coronal | sagittal (of the volume in RAS+)
    std::string volume_slices = "all";   // all | middle | every N | range [a, b]
    AugmentConfig augment;
};

struct ModelConfig {
    std::string name = "resnet18";  // resnet18 | resnet34 | resnet50 | densenet121 | efficientnet_b0 | vit_tiny_patch16_224 | vit_small_patch16_224 | vit_b_16
    std::string pretrained;         // .pth/.pt/.safetensors with torchvision names; "" = none
    std::string gray_input = "sum_conv1";  // channels 1 with 3-channel weights: sum_conv1 | replicate
    std::optional<double> dropout = std::nullopt, stochastic_depth = std::nullopt;  // empty (`default`): the architecture's own
    std::string head_init = "torchvision";  // torchvision | linear (nn::HeadInit)
    bool sync_bn = false;  // data-parallel runs: BatchNorm statistics over every rank's batch (SyncBatchNorm)
};

struct TrainConfig {
    std::int64_t batch_size = 32;
    std::int64_t epochs = 10;
    std::string optimizer = "adam";  // sgd | adam | adamw
    double lr = 1e-3;
    double momentum = 0.9;           // sgd
    bool nesterov = false;           // sgd
    std::vector<double> betas{0.9, 0.999};  // adam, adamw
    double weight_decay = 0.0;
    std::string weight_decay_skip = "auto";  // auto | none | norms_biases (train/setup.hpp's make_optimizer)
    std::string scheduler = "none";  // none | step | cosine
    std::int64_t step_size = 5;      // step
    double gamma = 0.1;              // step
    std::int64_t warmup_epochs = 0;  // linear warmup before the schedule
    double label_smoothing = 0.0;
    std::string class_weights = "none";     // none | auto | list (see class_weight_values)
    std::vector<double> class_weight_values;
    std::int64_t early_stopping_patience = 0;  // epochs without improvement; 0 = off
    std::string checkpoint_metric = "val_acc";  // val_acc | val_auc | val_loss
    std::uint64_t seed = 42;
    bool drop_last = false;
    double grad_clip_norm = 0.0;  // 0 = off
    std::string lr_scaling = "none";  // none | linear: under runtime.distributed, lr x number of ranks (Goyal et al. 2017)
};

struct RuntimeConfig {
    std::string device = "cpu";  // cpu | cuda | auto
    std::string precision = "fp32";  // fp32 | bf16 | fp16 (the last two: CUDA only; core/precision.hpp)
    std::int64_t threads = 0;    // 0 = all cores
    std::int64_t workers = 2;    // decoding threads
    std::string distributed = "none";  // none | mpi (one replica per process started by mpirun / srun; docs/distributed.md)
    double bucket_cap_mb = 25;         // mpi: gradients all-reduced in buckets of this size (DDP's bucket_cap_mb)
    double dist_timeout = 600;         // mpi: seconds a rank waits for the others before ending the job
};

struct Config {
    DataConfig data;
    ModelConfig model;
    TrainConfig train;
    RuntimeConfig runtime;
    std::string output_dir = "artifacts";
    std::string source = "<defaults>";  // the file it came from, for messages
};

namespace detail {

struct Field {
    std::string key;
    std::string kind;  // for messages: "a number", "an integer", ...
    std::function<void(Config&, const YAML::Node&, const std::string& where)> set;
    std::function<YAML::Node(const Config&)> get;
};

[[noreturn]] inline void bad(const std::string& where, const std::string& key, const std::string& what) {
    throw ConfigError("config: " + where + ": '" + key + "' " + what);
}
inline std::string shown(const YAML::Node& n) {
    if (n.IsScalar()) return "'" + n.Scalar() + "'";
    std::ostringstream os;
    os << YAML::Dump(n);
    std::string s = os.str();
    std::replace(s.begin(), s.end(), '\n', ' ');
    return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}
inline double as_number(const YAML::Node& n, const std::string& where, const std::string& key, const char* what = "a number") {
    if (!n.IsScalar()) bad(where, key, std::string("must be ") + what + ", got " + shown(n));
    const std::string& s = n.Scalar();
    try {
        std::size_t used = 0;
        const double v = std::stod(s, &used);
        if (used != s.size() || !std::isfinite(v)) throw std::invalid_argument(s);
        return v;
    } catch (const std::exception&) {
        bad(where, key, std::string("must be ") + what + ", got " + shown(n));
    }
}

/// Paths and names with control characters (a stray carriage return from a CRLF file, a tab) are
/// refused: they are almost always mistakes, and to_yaml could not write them back unchanged.
inline void check_no_control_chars(const std::string& s, const std::string& where, const std::string& key) {
    for (unsigned char ch : s)
        if (ch < 0x20 || ch == 0x7f) {
            char code[8];
            std::snprintf(code, sizeof code, "0x%02x", ch);
            bad(where, key, std::string("contains the control character ") + code + " (a stray carriage return or tab?)");
        }
}

struct Range {
    double lo = -std::numeric_limits<double>::infinity(), hi = std::numeric_limits<double>::infinity();
    bool lo_open = false, hi_open = false;
    void check(double v, const std::string& where, const std::string& key) const {
        const bool ok = (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
        if (ok) return;
        std::ostringstream os;
        os << "must be ";
        if (std::isfinite(lo)) os << (lo_open ? "> " : ">= ") << lo;
        if (std::isfinite(lo) && std::isfinite(hi)) os << " and ";
        if (std::isfinite(hi)) os << (hi_open ? "< " : "<= ") << hi;
        os << ", got " << v;
        bad(where, key, os.str());
    }
};
inline Range at_least(double lo) { return {lo, std::numeric_limits<double>::infinity(), false, false}; }
inline Range above(double lo) { return {lo, std::numeric_limits<double>::infinity(), true, false}; }
inline Range between(double lo, double hi) { return {lo, hi, false, false}; }

template <class Ref>
Field number(std::string key, Ref ref, Range r) {
    return {key, "a number",
            [=](Config& c, const YAML::Node& n, const std::string& w) {
                const double v = as_number(n, w, key);
                r.check(v, w, key);
                ref(c) = v;
            },
            [=](const Config& c) { return YAML::Node(ref(const_cast<Config&>(c))); }};
}
template <class Ref>
Field integer(std::string key, Ref ref, Range r) {
    return {key, "an integer",
            [=](Config& c, const YAML::Node& n, const std::string& w) {
                const double v = as_number(n, w, key, "an integer");
                if (v != std::floor(v) || std::abs(v) > 9e15) bad(w, key, "must be an integer, got " + shown(n));
                r.check(v, w, key);
                ref(c) = static_cast<std::remove_reference_t<decltype(ref(c))>>(v);
            },
            [=](const Config& c) { return YAML::Node(ref(const_cast<Config&>(c))); }};
}
template <class Ref>
Field boolean(std::string key, Ref ref) {
    return {key, "true or false",
            [=](Config& c, const YAML::Node& n, const std::string& w) {
                const std::string s = n.IsScalar() ? n.Scalar() : "";
                if (s == "true" || s == "True" || s == "yes") ref(c) = true;
                else if (s == "false" || s == "False" || s == "no") ref(c) = false;
                else bad(w, key, "must be true or false, got " + shown(n));
            },
            [=](const Config& c) { return YAML::Node(ref(const_cast<Config&>(c))); }};
}
template <class Ref>
Field text(std::string key, Ref ref, std::vector<std::string> choices = {}) {
    return {key, "a string",
            [=](Config& c, const YAML::Node& n, const std::string& w) {
                if (n.IsNull()) {
                    if (!choices.empty()) bad(w, key, "must be one of the choices, got nothing");
                    ref(c) = "";
                    return;
                }
                if (!n.IsScalar()) bad(w, key, "must be a string, got " + shown(n));
                if (!choices.empty() && std::find(choices.begin(), choices.end(), n.Scalar()) == choices.end()) {
                    std::string list;
                    for (const auto& ch : choices) list += (list.empty() ? "" : ", ") + ch;
                    bad(w, key, "must be one of " + list + "; got " + shown(n));
                }
                check_no_control_chars(n.Scalar(), w, key);
                ref(c) = n.Scalar();
            },
            [=](const Config& c) { return YAML::Node(ref(const_cast<Config&>(c))); }};
}
template <class Ref>
Field numbers(std::string key, Ref ref, std::size_t min_count, std::size_t max_count, Range r) {
    return {key, "a list of numbers",
            [=](Config& c, const YAML::Node& n, const std::string& w) {
                if (!n.IsSequence()) bad(w, key, "must be a list of numbers, got " + shown(n));
                if (n.size() < min_count || n.size() > max_count)
                    bad(w, key, "must have " + (min_count == max_count ? std::to_string(min_count) : std::to_string(min_count) + " to " + std::to_string(max_count)) +
                                    " values, got " + std::to_string(n.size()));
                std::vector<double> v;
                for (const auto& e : n) {
                    v.push_back(as_number(e, w, key));
                    r.check(v.back(), w, key);
                }
                ref(c) = v;
            },
            [=](const Config& c) { return YAML::Node(ref(const_cast<Config&>(c))); }};
}
template <class Ref>
Field strings(std::string key, Ref ref, std::size_t min_count) {
    return {key, "a list of names",
            [=](Config& c, const YAML::Node& n, const std::string& w) {
                if (!n.IsSequence()) bad(w, key, "must be a list of names, got " + shown(n));
                if (n.size() < min_count) bad(w, key, "must have at least " + std::to_string(min_count) + " entries, got " + std::to_string(n.size()));
                std::vector<std::string> v;
                for (const auto& e : n) {
                    if (!e.IsScalar() || e.Scalar().empty()) bad(w, key, "entries must be non-empty names, got " + shown(e));
                    check_no_control_chars(e.Scalar(), w, key);
                    if (std::find(v.begin(), v.end(), e.Scalar()) != v.end()) bad(w, key, "lists '" + e.Scalar() + "' twice");
                    v.push_back(e.Scalar());
                }
                ref(c) = v;
            },
            [=](const Config& c) { return YAML::Node(ref(const_cast<Config&>(c))); }};
}

/// The word `word` (default, none) or what `inner` reads. The word is kept by unset(c) and
/// recognised by is_unset(c); a value that is neither is refused naming both.
inline Field or_word(Field inner, std::string word, std::function<void(Config&)> unset, std::function<bool(const Config&)> is_unset) {
    inner.kind = word + " or " + inner.kind;
    auto set = inner.set;
    auto get = inner.get;
    inner.set = [=, key = inner.key, kind = inner.kind](Config& c, const YAML::Node& n, const std::string& w) {
        if (n.IsScalar() && n.Scalar() == word) return unset(c);
        as_number(n, w, key, kind.c_str());  // neither the word nor a number: name both
        set(c, n, w);
    };
    inner.get = [=](const Config& c) { return is_unset(c) ? YAML::Node(word) : get(c); };
    return inner;
}
/// An optional number: `default` leaves it empty (the library's own value).
template <class Ref>
Field number_or_default(std::string key, Ref ref, Range r) {
    Field f{key, "a number",
            [=](Config& c, const YAML::Node& n, const std::string& w) {
                const double v = as_number(n, w, key);
                r.check(v, w, key);
                ref(c) = v;
            },
            [=](const Config& c) { return YAML::Node(ref(const_cast<Config&>(c)).value_or(0.0)); }};
    return or_word(std::move(f), "default", [=](Config& c) { ref(c).reset(); },
                   [=](const Config& c) { return !ref(const_cast<Config&>(c)).has_value(); });
}

#define MEDIMG_CFG_REF(member) [](Config& c) -> auto& { return c.member; }

/// data.window: a word (file, minmax, a preset) or [center, width]; stored as the setting's text.
inline Field window_field() {
    const std::string key = "data.window";
    return {key, "file, minmax, a preset or [center, width]",
            [=](Config& c, const YAML::Node& n, const std::string& w) {
                std::string text;
                if (n.IsScalar()) {
                    text = n.Scalar();
                } else if (n.IsSequence() && n.size() == 2) {
                    as_number(n[0], w, key, "[center, width] of numbers");
                    as_number(n[1], w, key, "[center, width] of numbers");
                    text = "[" + n[0].Scalar() + ", " + n[1].Scalar() + "]";
                } else {
                    bad(w, key, "must be file, minmax, brain, subdural, bone, lung, abdomen or [center, width], got " + shown(n));
                }
                try {
                    c.data.window = data::IntensitySetting::parse(text, key).text();
                } catch (const ConfigError& e) {
                    const std::string m = e.what();
                    const auto q = m.find("' ");  // "'data.window' must ..." -> "must ..."
                    bad(w, key, q == std::string::npos ? m : m.substr(q + 2));
                }
            },
            [](const Config& c) {
                const auto s = data::IntensitySetting::parse(c.data.window);
                if (s.kind != data::IntensitySetting::Kind::fixed || !s.preset.empty()) return YAML::Node(c.data.window);
                YAML::Node n(YAML::NodeType::Sequence);
                n.push_back(s.window.center);
                n.push_back(s.window.width);
                n.SetStyle(YAML::EmitterStyle::Flow);
                return n;
            }};
}
/// data.volume_slices: all | middle | every N | range [a, b] (a string).
inline Field slices_field() {
    const std::string key = "data.volume_slices";
    return {key, "all, middle, every N or range [a, b]",
            [=](Config& c, const YAML::Node& n, const std::string& w) {
                if (!n.IsScalar()) bad(w, key, "must be all, middle, every N or range [a, b], got " + shown(n));
                try {
                    c.data.volume_slices = data::SliceSelection::parse(n.Scalar()).text();
                } catch (const ConfigError& e) {
                    const std::string m = e.what();
                    const auto q = m.find("' ");
                    bad(w, key, q == std::string::npos ? m : m.substr(q + 2));
                }
            },
            [](const Config& c) { return YAML::Node(c.data.volume_slices); }};
}

inline const std::vector<Field>& schema() {
    static const std::vector<Field> fields = [] {
        std::vector<Field> f;
        f.push_back(text("data.train", MEDIMG_CFG_REF(data.train)));
        f.push_back(text("data.val", MEDIMG_CFG_REF(data.val)));
        f.push_back(text("data.test", MEDIMG_CFG_REF(data.test)));
        f.push_back(strings("data.classes", MEDIMG_CFG_REF(data.classes), 2));
        f.push_back(integer("data.image_size", MEDIMG_CFG_REF(data.image_size), between(32, 4096)));
        f.push_back(or_word(integer("data.resize", MEDIMG_CFG_REF(data.resize), between(32, 8192)), "none",
                            [](Config& c) { c.data.resize = DataConfig::no_resize; },
                            [](const Config& c) { return c.data.resize == DataConfig::no_resize; }));
        f.push_back(integer("data.channels", MEDIMG_CFG_REF(data.channels), between(1, 3)));
        f.push_back(numbers("data.mean", MEDIMG_CFG_REF(data.mean), 1, 3, between(-1e6, 1e6)));
        f.push_back(numbers("data.std", MEDIMG_CFG_REF(data.std), 1, 3, above(0)));
        f.push_back(boolean("data.skip_unreadable", MEDIMG_CFG_REF(data.skip_unreadable)));
        f.push_back(text("data.sampler", MEDIMG_CFG_REF(data.sampler), {"shuffle", "balanced"}));
        f.push_back(window_field());
        f.push_back(text("data.volume_axis", MEDIMG_CFG_REF(data.volume_axis), {"axial", "coronal", "sagittal"}));
        f.push_back(slices_field());
        f.push_back(boolean("data.augment.random_resized_crop", MEDIMG_CFG_REF(data.augment.random_resized_crop)));
        f.push_back(number("data.augment.crop_scale_min", MEDIMG_CFG_REF(data.augment.crop_scale_min), {0, 1, true, false}));
        f.push_back(boolean("data.augment.hflip", MEDIMG_CFG_REF(data.augment.hflip)));
        f.push_back(number("data.augment.rotation_degrees", MEDIMG_CFG_REF(data.augment.rotation_degrees), between(0, 180)));
        f.push_back(number("data.augment.brightness", MEDIMG_CFG_REF(data.augment.brightness), between(0, 1)));
        f.push_back(number("data.augment.contrast", MEDIMG_CFG_REF(data.augment.contrast), between(0, 1)));
        f.push_back(text("model.name", MEDIMG_CFG_REF(model.name), {"resnet18", "resnet34", "resnet50", "densenet121", "efficientnet_b0",
                                                                     "vit_tiny_patch16_224", "vit_small_patch16_224", "vit_b_16"}));
        f.push_back(text("model.pretrained", MEDIMG_CFG_REF(model.pretrained)));
        f.push_back(text("model.gray_input", MEDIMG_CFG_REF(model.gray_input), {"sum_conv1", "replicate"}));
        f.push_back(number_or_default("model.dropout", MEDIMG_CFG_REF(model.dropout), {0, 1, false, true}));
        f.push_back(number_or_default("model.stochastic_depth", MEDIMG_CFG_REF(model.stochastic_depth), {0, 1, false, true}));
        f.push_back(text("model.head_init", MEDIMG_CFG_REF(model.head_init), {"torchvision", "linear"}));
        f.push_back(boolean("model.sync_bn", MEDIMG_CFG_REF(model.sync_bn)));
        f.push_back(integer("train.batch_size", MEDIMG_CFG_REF(train.batch_size), between(1, 65536)));
        f.push_back(integer("train.epochs", MEDIMG_CFG_REF(train.epochs), between(1, 100000)));
        f.push_back(text("train.optimizer", MEDIMG_CFG_REF(train.optimizer), {"sgd", "adam", "adamw"}));
        f.push_back(number("train.lr", MEDIMG_CFG_REF(train.lr), above(0)));
        f.push_back(number("train.momentum", MEDIMG_CFG_REF(train.momentum), {0, 1, false, true}));
        f.push_back(boolean("train.nesterov", MEDIMG_CFG_REF(train.nesterov)));
        f.push_back(numbers("train.betas", MEDIMG_CFG_REF(train.betas), 2, 2, {0, 1, false, true}));
        f.push_back(number("train.weight_decay", MEDIMG_CFG_REF(train.weight_decay), at_least(0)));
        f.push_back(text("train.weight_decay_skip", MEDIMG_CFG_REF(train.weight_decay_skip), {"auto", "none", "norms_biases"}));
        f.push_back(text("train.scheduler", MEDIMG_CFG_REF(train.scheduler), {"none", "step", "cosine"}));
        f.push_back(integer("train.step_size", MEDIMG_CFG_REF(train.step_size), at_least(1)));
        f.push_back(number("train.gamma", MEDIMG_CFG_REF(train.gamma), {0, 1, true, false}));
        f.push_back(integer("train.warmup_epochs", MEDIMG_CFG_REF(train.warmup_epochs), at_least(0)));
        f.push_back(number("train.label_smoothing", MEDIMG_CFG_REF(train.label_smoothing), {0, 1, false, true}));
        f.push_back({"train.class_weights", "none, auto or a list of numbers",
                     [](Config& c, const YAML::Node& n, const std::string& w) {
                         if (n.IsScalar() && (n.Scalar() == "none" || n.Scalar() == "auto")) {
                             c.train.class_weights = n.Scalar();
                             c.train.class_weight_values.clear();
                             return;
                         }
                         if (!n.IsSequence()) bad(w, "train.class_weights", "must be none, auto or a list of numbers, got " + shown(n));
                         c.train.class_weights = "list";
                         c.train.class_weight_values.clear();
                         for (const auto& e : n) {
                             const double v = as_number(e, w, "train.class_weights");
                             above(0).check(v, w, "train.class_weights");
                             c.train.class_weight_values.push_back(v);
                         }
                     },
                     [](const Config& c) {
                         return c.train.class_weights == "list" ? YAML::Node(c.train.class_weight_values)
                                                                : YAML::Node(c.train.class_weights);
                     }});
        f.push_back(integer("train.early_stopping_patience", MEDIMG_CFG_REF(train.early_stopping_patience), at_least(0)));
        f.push_back(text("train.checkpoint_metric", MEDIMG_CFG_REF(train.checkpoint_metric), {"val_acc", "val_auc", "val_loss"}));
        f.push_back(integer("train.seed", MEDIMG_CFG_REF(train.seed), between(0, 9e15)));
        f.push_back(boolean("train.drop_last", MEDIMG_CFG_REF(train.drop_last)));
        f.push_back(number("train.grad_clip_norm", MEDIMG_CFG_REF(train.grad_clip_norm), at_least(0)));
        f.push_back(text("train.lr_scaling", MEDIMG_CFG_REF(train.lr_scaling), {"none", "linear"}));
        f.push_back(text("runtime.device", MEDIMG_CFG_REF(runtime.device), {"cpu", "cuda", "auto"}));
        f.push_back(text("runtime.precision", MEDIMG_CFG_REF(runtime.precision), {"fp32", "bf16", "fp16"}));
        f.push_back(integer("runtime.threads", MEDIMG_CFG_REF(runtime.threads), between(0, 1024)));
        f.push_back(integer("runtime.workers", MEDIMG_CFG_REF(runtime.workers), between(0, 256)));
        f.push_back(text("runtime.distributed", MEDIMG_CFG_REF(runtime.distributed), {"none", "mpi"}));
        f.push_back(number("runtime.bucket_cap_mb", MEDIMG_CFG_REF(runtime.bucket_cap_mb), {0.001, 4096, false, false}));
        f.push_back(number("runtime.dist_timeout", MEDIMG_CFG_REF(runtime.dist_timeout), {1, 86400, false, false}));
        f.push_back(text("output.dir", MEDIMG_CFG_REF(output_dir)));
        return f;
    }();
    return fields;
}
#undef MEDIMG_CFG_REF

inline std::size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<std::size_t> d(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) d[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t prev = d[0]++;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t cur = d[j];
            d[j] = std::min({d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1)});
            prev = cur;
        }
    }
    return d[b.size()];
}
inline std::string suggestion(const std::string& key) {
    if (key.size() > 64) return "";  // no real key is that long; the edit distances would cost O(size) each
    std::string best;
    std::size_t bd = 4;
    for (const auto& f : schema())  // every key and every section above it
        for (std::size_t dot = 0; dot != std::string::npos;) {
            dot = f.key.find('.', dot + 1);
            const std::string cand = f.key.substr(0, dot);
            const std::size_t d = edit_distance(key, cand);
            if (d < bd) bd = d, best = cand;
        }
    return best.empty() ? "" : " (did you mean '" + best + "'?)";
}
inline bool is_section(const std::string& prefix) {
    for (const auto& f : schema())
        if (f.key.rfind(prefix + ".", 0) == 0) return true;
    return false;
}
inline const Field* find_field(const std::string& key) {
    for (const auto& f : schema())
        if (f.key == key) return &f;
    return nullptr;
}
/// Applies every leaf of `node` (a map) under `prefix`; unknown keys are errors.
inline void apply(Config& c, const YAML::Node& node, const std::string& prefix, const std::string& where) {
    for (const auto& kv : node) {
        if (!kv.first.IsScalar())  // e.g. "[a, b]: 1"; as<std::string>() would throw a yaml-cpp exception
            throw ConfigError("config: " + where + ": " + (prefix.empty() ? std::string("a top-level key") : "a key in '" + prefix + "'") +
                              " is not a name, got " + shown(kv.first));
        const std::string key = (prefix.empty() ? "" : prefix + ".") + kv.first.Scalar();
        if (const Field* f = find_field(key)) {
            f->set(c, kv.second, where);
        } else if (is_section(key)) {
            if (!kv.second.IsMap()) bad(where, key, "must be a section (a map of keys), got " + shown(kv.second));
            apply(c, kv.second, key, where);
        } else {
            throw ConfigError("config: " + where + ": unknown key '" + key + "'" + suggestion(key));
        }
    }
}
/// Sets `value` at the dotted `key` of the tree, creating sections as needed.
inline void set_path(YAML::Node root, const std::string& key, const YAML::Node& value) {
    std::vector<std::string> parts;
    std::string part;
    std::istringstream is(key);
    while (std::getline(is, part, '.')) parts.push_back(part);
    std::vector<YAML::Node> chain{root};
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
        YAML::Node next = chain.back()[parts[i]];
        if (!next.IsMap()) next = YAML::Node(YAML::NodeType::Map);
        chain.back()[parts[i]] = next;
        chain.push_back(next);
    }
    chain.back()[parts.back()] = value;
}
}  // namespace detail

/// Configuration text longer than this is refused before parsing (a real config is a few KB), so
/// that a wrong file cannot drive yaml-cpp into unbounded memory. (Nesting is bounded by
/// yaml-cpp itself: deeper than 2000 levels is a YAML::DeepRecursion, reported as invalid YAML.)
inline constexpr std::size_t max_config_bytes = std::size_t{1} << 20;

namespace detail {
/// Refuses a mapping that holds a key twice, anywhere in the tree: YAML 1.2 requires unique keys
/// (https://yaml.org/spec/1.2.2/#mapping), and yaml-cpp keeps both entries (lookups then see the
/// first, a loop both), so a repeated key would silently take one of two values. One line naming
/// the dotted key and both lines.
inline void refuse_duplicate_keys(const YAML::Node& n, const std::string& source, const std::string& prefix = "") {
    if (n.IsSequence()) {
        for (const auto& e : n) refuse_duplicate_keys(e, source, prefix);
        return;
    }
    if (!n.IsMap()) return;
    std::vector<std::pair<std::string, int>> seen;
    for (auto it = n.begin(); it != n.end(); ++it) {
        const std::string key = it->first.IsScalar() ? it->first.Scalar() : std::string("<complex key>");
        const int line = it->first.Mark().line + 1;
        for (const auto& [k, l] : seen)
            if (k == key)
                throw ConfigError("config: " + source + ": key '" + prefix + key + "' appears twice (lines " + std::to_string(l) +
                                  " and " + std::to_string(line) + "); YAML requires unique keys");
        seen.emplace_back(key, line);
        refuse_duplicate_keys(it->second, source, prefix + key + ".");
    }
}
}  // namespace detail

/// Parses YAML text (named `source` in messages) plus `key=value` overrides into a validated Config.
inline Config parse_config(const std::string& yaml_text, const std::string& source,
                           const std::vector<std::string>& overrides = {}) {
    if (yaml_text.size() > max_config_bytes)
        throw ConfigError("config: " + source + ": longer than " + std::to_string(max_config_bytes) +
                          " bytes (io::max_config_bytes); is this a configuration file?");
    YAML::Node root;
    try {
        root = YAML::Load(yaml_text);
    } catch (const YAML::Exception& e) {
        throw ConfigError("config: " + source + ": not valid YAML (line " + std::to_string(e.mark.line + 1) + ": " + e.msg + ")");
    }
    if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
    if (!root.IsMap()) throw ConfigError("config: " + source + ": the top level must be a map of sections");
    Config c;
    c.source = source;
    try {  // the checks below throw ConfigError; a yaml-cpp exception here would be a gap in them
        detail::apply(c, root, "", source);
    } catch (const YAML::Exception& e) {
        throw ConfigError("config: " + source + ": " + e.what());
    }
    detail::refuse_duplicate_keys(root, source);  // after the values' own checks (a bad value is named first)
    for (const auto& o : overrides) {
        const auto eq = o.find('=');
        if (eq == std::string::npos || eq == 0)
            throw ConfigError("config: --set " + o + ": expected key=value, e.g. --set train.lr=0.01");
        const std::string key = o.substr(0, eq);
        if (!detail::find_field(key)) throw ConfigError("config: --set: unknown key '" + key + "'" + detail::suggestion(key));
        YAML::Node value;
        try {
            value = YAML::Load(o.substr(eq + 1));
        } catch (const YAML::Exception& e) {
            throw ConfigError("config: --set " + o + ": value is not valid YAML (" + e.msg + ")");
        }
        try {
            detail::find_field(key)->set(c, value, "--set");
        } catch (const YAML::Exception& e) {
            throw ConfigError("config: --set " + o + ": " + e.what());
        }
    }
    // Cross-field checks.
    const auto ch = static_cast<std::size_t>(c.data.channels);
    if (c.data.channels == 2) detail::bad(source, "data.channels", "must be 1 or 3, got 2");
    if (c.data.mean.size() != ch && c.data.mean.size() != 1)
        detail::bad(source, "data.mean", "has " + std::to_string(c.data.mean.size()) + " values for " + std::to_string(ch) + " channels");
    if (c.data.std.size() != ch && c.data.std.size() != 1)
        detail::bad(source, "data.std", "has " + std::to_string(c.data.std.size()) + " values for " + std::to_string(ch) + " channels");
    if (c.data.mean.size() == 1) c.data.mean.assign(ch, c.data.mean[0]);
    if (c.data.std.size() == 1) c.data.std.assign(ch, c.data.std[0]);
    for (const auto& [key, v] : {std::pair{"model.dropout", c.model.dropout}, std::pair{"model.stochastic_depth", c.model.stochastic_depth}})
        if (v && c.model.name != "efficientnet_b0")  // nn::model_has_dropout
            detail::bad(source, key, "is set but " + c.model.name + " has none (torchvision's " + c.model.name +
                                         " has no such layer; efficientnet_b0 has)");
    if (c.data.resize != DataConfig::no_resize && c.data.resize < c.data.image_size)
        detail::bad(source, "data.resize", "(" + std::to_string(c.data.resize) + ") must be >= data.image_size (" +
                                                std::to_string(c.data.image_size) + ")");
    if (c.train.class_weights == "list" && c.train.class_weight_values.size() != c.data.classes.size())
        detail::bad(source, "train.class_weights", "has " + std::to_string(c.train.class_weight_values.size()) + " values for " +
                                                       std::to_string(c.data.classes.size()) + " classes");
    if (c.train.nesterov && c.train.momentum <= 0) detail::bad(source, "train.nesterov", "needs train.momentum > 0");
    if (c.runtime.precision != "fp32" && c.runtime.device == "cpu")
        detail::bad(source, "runtime.precision", "is " + c.runtime.precision +
                                                     ", which needs runtime.device cuda or auto (the CPU backend computes in fp32)");
    // Class names go into checkpoint metadata (JSON) and must read back exactly; paths need not be UTF-8.
    for (const auto& name : c.data.classes)
        if (!valid_utf8(name))
            detail::bad(source, "data.classes", "'" + escape_invalid_utf8(name) +
                                                    "' is not valid UTF-8 (class names are stored in checkpoints as JSON)");
    return c;
}

/// Reads and validates a config file; a missing file is a ConfigError naming it.
inline Config load_config(const std::string& path, const std::vector<std::string>& overrides = {}) {
    check_input_file<ConfigError>(path, "config");  // a FIFO would block the open below; a folder, socket or device too
    std::ifstream in(path, std::ios::binary);
    if (!in) throw ConfigError("config: cannot open '" + path + "'");
    std::string text;  // read at most max_config_bytes + 1 bytes: parse_config refuses longer text
    char buf[1 << 16];
    while (text.size() <= max_config_bytes && (in.read(buf, sizeof buf) || in.gcount() > 0))
        text.append(buf, static_cast<std::size_t>(in.gcount()));
    if (in.bad()) throw ConfigError("config: cannot read '" + path + "'");
    return parse_config(text, path, overrides);
}

/// The full effective configuration as YAML (what checkpoints store).
inline std::string to_yaml(const Config& c) {
    YAML::Node root(YAML::NodeType::Map);
    for (const auto& f : detail::schema()) detail::set_path(root, f.key, f.get(c));
    YAML::Emitter out;
    out << root;
    return std::string(out.c_str()) + "\n";
}

}  // namespace medimg::io
