// SPDX-License-Identifier: MIT
// train/setup.hpp: turns a validated io::Config into the objects the fit loop runs: datasets,
// transform pipelines, loaders, the model (optionally pretrained), the optimizer, the LR schedule
// and the loss options; and restores them from a checkpoint for --resume, predict and evaluate.
// The checkpoint's metadata carries the preprocessing (read channels, image size, resize,
// mean/std), so a checkpoint alone is enough to run predict.
#pragma once

#include <cmath>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "medimg/data/dataset.hpp"
#include "medimg/data/image.hpp"
#include "medimg/data/intensity.hpp"
#include "medimg/data/readers.hpp"
#include "medimg/data/loader.hpp"
#include "medimg/data/transforms.hpp"
#include "medimg/io/checkpoint.hpp"
#include "medimg/io/config.hpp"
#include "medimg/io/text.hpp"
#include "medimg/nn/models.hpp"
#include "medimg/optim/optim.hpp"
#include "medimg/train/fit.hpp"

namespace medimg::train {

/// The temperature a program divides the logits by (docs/evaluation.md): mode "none" -> 1;
/// "temperature" -> the one stored in the checkpoint by medimg-train (fitted on the validation
/// split), an error when it holds none; "" (the default) -> the stored one when there is one, else 1.
inline double calibration_temperature(const io::CheckpointMeta& m, const std::string& mode, const std::string& checkpoint) {
    MEDIMG_CHECK(mode.empty() || mode == "none" || mode == "temperature", ConfigError, "--calibration: unknown mode '", mode,
                 "' (none or temperature)");
    const auto it = m.extra.find("temperature");
    if (mode == "none" || (mode.empty() && it == m.extra.end())) return 1.0;
    MEDIMG_CHECK(it != m.extra.end(), ConfigError, "--calibration temperature: ", checkpoint,
                 " holds no temperature (medimg-train stores one, fitted on the validation split, in best.safetensors); "
                 "use --calibration none");
    double t = 0;
    MEDIMG_CHECK(io::parse_number(it->second, t) && t > 0, IoError, "checkpoint: ", checkpoint, ": metadata 'temperature' is '",
                 io::clipped(it->second), "', not a positive number");
    return t;
}

/// Reads the sample (an image, a DICOM file, a slice of a volume: data/readers.hpp) and runs
/// `pipeline` on it; one the pipeline cannot take (smaller than the crop with `resize: none`) is
/// an IoError naming it.
inline Tensor<float, Cpu> load_transformed(const data::SampleRef& sample, const data::ReadSettings& read,
                                           const data::TransformPipeline& pipeline, Rng& rng) {
    auto pixels = data::read_sample(sample, read);
    try {
        return pipeline(pixels, rng);
    } catch (const ShapeError& e) {
        throw IoError("image '" + sample.display() + "': " + e.what());
    }
}

/// How images become model inputs: what the checkpoint's metadata records.
struct Preprocessing {
    int read_channels = 3;   // channels the file is converted to when read
    int model_channels = 3;  // channels the network takes (3 when gray input is replicated)
    std::int64_t image_size = 224, resize = 256;
    std::vector<double> mean, std;  // per model channel
    data::IntensitySetting intensity;  // data.window: how DICOM / NIfTI values become [0, 1]
    std::string volume_axis = "axial";  // data.volume_axis
    data::SliceSelection slices;        // data.volume_slices

    data::ReadSettings read_settings() const {
        data::ReadSettings r;
        r.channels = read_channels;
        r.intensity = intensity;
        r.axis = data::volume_axis(volume_axis);
        return r;
    }
    data::VolumeOptions volume_options() const { return {slices, data::volume_axis(volume_axis)}; }

    data::TransformOptions transform_options() const {
        data::TransformOptions t;
        t.image_size = image_size;
        t.resize_to = resize;
        t.mean = mean;
        t.std = std;
        t.channels = model_channels;
        return t;
    }
    data::TransformPipeline eval() const { return data::eval_pipeline(transform_options()); }
    /// Reads one sample and runs the eval pipeline: (model_channels, image_size, image_size).
    Tensor<float, Cpu> load_eval(const data::SampleRef& sample) const {
        Rng unused(0);
        return load_transformed(sample, read_settings(), eval(), unused);
    }
    /// A file, or a slice of a volume named as SampleRef::display() writes it ("scan.nii.gz[40]").
    Tensor<float, Cpu> load_eval(const std::string& name) const { return load_eval(data::SampleRef::from_display(name)); }
    void to_meta(io::CheckpointMeta& m) const {
        m.in_channels = model_channels;
        m.image_size = image_size;
        m.mean = mean;
        m.std = std;
        m.extra["read_channels"] = std::to_string(read_channels);
        m.extra["resize"] = resize == data::TransformOptions::no_resize ? "none" : std::to_string(resize);
        m.extra["window"] = intensity.text();
        m.extra["volume_axis"] = volume_axis;
        m.extra["volume_slices"] = slices.text();
    }
    static Preprocessing from_meta(const io::CheckpointMeta& m) {
        Preprocessing p;
        p.model_channels = static_cast<int>(m.in_channels);
        p.image_size = m.image_size;
        p.mean = m.mean;
        p.std = m.std;
        auto get = [&](const char* k, std::int64_t dflt, std::int64_t lo) -> std::int64_t {
            const auto it = m.extra.find(k);
            if (it == m.extra.end()) return dflt;
            if (std::string(k) == "resize" && it->second == "none") return data::TransformOptions::no_resize;
            double v = 0;
            MEDIMG_CHECK(io::parse_number(it->second, v) && v == std::floor(v) && v >= static_cast<double>(lo) && v <= 65536.0,
                         IoError, "checkpoint: metadata '", k, "' is '", it->second, "', not an integer from ", lo, " to 65536");
            return static_cast<std::int64_t>(v);
        };
        p.read_channels = static_cast<int>(get("read_channels", m.in_channels, 1));
        p.resize = get("resize", m.image_size * 256 / 224, 1);
        // Checkpoints written before the medical formats hold none of these: the defaults.
        auto text = [&](const char* k, const char* dflt) {
            const auto it = m.extra.find(k);
            return it == m.extra.end() ? std::string(dflt) : it->second;
        };
        try {
            p.intensity = data::IntensitySetting::parse(text("window", "file"), "window");
            p.volume_axis = text("volume_axis", "axial");
            (void)data::volume_axis(p.volume_axis);
            p.slices = data::SliceSelection::parse(text("volume_slices", "all"));
        } catch (const ConfigError& e) {
            throw IoError(std::string("checkpoint: metadata: ") + e.what());
        }
        return p;
    }
    static Preprocessing from_config(const io::Config& c) {
        Preprocessing p;
        p.read_channels = static_cast<int>(c.data.channels);
        const bool replicate = c.data.channels == 1 && c.model.gray_input == "replicate";
        p.model_channels = replicate ? 3 : p.read_channels;
        p.image_size = c.data.image_size;
        static_assert(io::DataConfig::no_resize == data::TransformOptions::no_resize, "resize: none means the same on both sides");
        p.resize = c.data.resize;
        p.intensity = data::IntensitySetting::parse(c.data.window);
        p.volume_axis = c.data.volume_axis;
        p.slices = data::SliceSelection::parse(c.data.volume_slices);
        p.mean = c.data.mean;
        p.std = c.data.std;
        if (replicate) {
            p.mean.assign(3, c.data.mean[0]);
            p.std.assign(3, c.data.std[0]);
        }
        return p;
    }
};

/// The model section as nn::make_model takes it (dropout, stochastic depth, head init, seed).
inline nn::ModelOptions model_options(const io::Config& c, std::int64_t num_classes, std::int64_t in_channels) {
    nn::ModelOptions o;
    o.num_classes = num_classes;
    o.in_channels = in_channels;
    o.seed = c.train.seed;
    o.dropout = c.model.dropout;
    o.stochastic_depth = c.model.stochastic_depth;
    o.head_init = c.model.head_init == "linear" ? nn::HeadInit::linear : nn::HeadInit::torchvision;
    o.image_size = c.data.image_size;
    return o;
}

/// The options a checkpoint's model is rebuilt with before its weights load: its class count,
/// input channels and image size (a ViT's position grid; `classes` overrides the class count).
inline nn::ModelOptions model_options(const io::CheckpointMeta& m, std::int64_t classes = -1) {
    nn::ModelOptions o;
    o.num_classes = classes >= 0 ? classes : static_cast<std::int64_t>(m.classes.size());
    o.in_channels = m.in_channels;
    o.image_size = m.image_size;
    return o;
}

inline data::TransformPipeline train_transforms(const io::Config& c, const Preprocessing& p) {
    auto t = p.transform_options();
    t.random_resized_crop = c.data.augment.random_resized_crop;
    t.crop_scale = {c.data.augment.crop_scale_min, 1.0};
    t.hflip_p = c.data.augment.hflip ? 0.5 : 0.0;
    t.rotation_degrees = c.data.augment.rotation_degrees;
    t.brightness = c.data.augment.brightness;
    t.contrast = c.data.augment.contrast;
    return data::train_pipeline(t);
}

/// A loader over `ds` that decodes with `read_channels` and applies `pipeline`. The loader keeps a
/// pointer to `ds`: the dataset must outlive it (a temporary is refused at compile time, below).
inline std::unique_ptr<data::DataLoader> make_loader(const data::FolderDataset& ds, data::TransformPipeline pipeline,
                                                     const data::ReadSettings& read, const io::Config& c, bool training,
                                                     std::int64_t rank = 0, std::int64_t world = 1);
std::unique_ptr<data::DataLoader> make_loader(data::FolderDataset&& ds, data::TransformPipeline pipeline, const data::ReadSettings& read,
                                              const io::Config& c, bool training, std::int64_t rank = 0, std::int64_t world = 1) = delete;
/// rank, world: a data-parallel run's share (training: DistributedSampler's padded shards;
/// evaluation: an unpadded stride, the ranks' outputs gathered afterwards).
inline std::unique_ptr<data::DataLoader> make_loader(const data::FolderDataset& ds, data::TransformPipeline pipeline,
                                                     const data::ReadSettings& read, const io::Config& c, bool training,
                                                     std::int64_t rank, std::int64_t world) {
    data::LoaderOptions o;
    o.batch_size = c.train.batch_size;
    o.shuffle = training;
    o.balanced = training && c.data.sampler == "balanced";
    o.drop_last = training && c.train.drop_last;
    o.seed = c.train.seed;
    o.workers = static_cast<int>(c.runtime.workers);
    o.skip_errors = c.data.skip_unreadable;
    o.shard_rank = rank;
    o.shard_world = world;
    o.shard_even = training;
    const auto* dsp = &ds;
    return std::make_unique<data::DataLoader>(
        ds.labels(),
        [dsp, pipeline = std::move(pipeline), read](std::int64_t i, Rng& rng) {
            return load_transformed(dsp->sample(i), read, pipeline, rng);
        },
        o);
}

namespace detail {
template <class T, class B>
std::unique_ptr<optim::Optimizer<T, B>> make_optimizer_for_all(const io::Config& c, const nn::NamedParams<T, B>& params) {
    const auto& t = c.train;
    if (t.optimizer == "sgd") {
        optim::SGDOptions o(t.lr);
        o.momentum = t.momentum;
        o.nesterov = t.nesterov;
        o.weight_decay = t.weight_decay;
        return std::make_unique<optim::SGD<T, B>>(params, o);
    }
    if (t.optimizer == "adamw") {
        optim::AdamWOptions o;
        o.lr = t.lr;
        o.beta1 = t.betas[0];
        o.beta2 = t.betas[1];
        o.weight_decay = t.weight_decay;
        return std::make_unique<optim::AdamW<T, B>>(params, o);
    }
    optim::AdamOptions o;
    o.lr = t.lr;
    o.beta1 = t.betas[0];
    o.beta2 = t.betas[1];
    o.weight_decay = t.weight_decay;
    return std::make_unique<optim::Adam<T, B>>(params, o);
}

}  // namespace detail

/// The optimizer the config names over `params`, with weight decay skipped where
/// train.weight_decay_skip says: norms_biases: timm's fine-tuning rule (nn::no_weight_decay_names:
/// rank <= 1, biases, position embedding, class token); none: every parameter decays (torch.optim
/// with one group); auto (the default): norms_biases for the ViTs, none for the CNNs.
template <class T, class B>
std::unique_ptr<optim::Optimizer<T, B>> make_optimizer(const io::Config& c, const nn::NamedParams<T, B>& params) {
    auto opt = detail::make_optimizer_for_all(c, params);
    const auto& skip = c.train.weight_decay_skip;
    if (skip == "norms_biases" || (skip == "auto" && nn::is_vit(c.model.name))) opt->set_no_weight_decay(nn::no_weight_decay_names(params));
    return opt;
}

/// warmup (LinearLR from 0.1 to 1 over warmup_epochs), then step / cosine / constant.
inline std::shared_ptr<optim::LRScheduler> make_scheduler(const io::Config& c, optim::OptimizerBase& opt) {
    const auto& t = c.train;
    std::shared_ptr<optim::ChainableScheduler> main;
    if (t.scheduler == "step") main = std::make_shared<optim::StepLR>(opt, t.step_size, t.gamma);
    if (t.scheduler == "cosine")
        main = std::make_shared<optim::CosineAnnealingLR>(opt, std::max<std::int64_t>(1, t.epochs - t.warmup_epochs));
    if (t.warmup_epochs == 0) return main;  // may be null: a constant lr
    auto warm = std::make_shared<optim::LinearWarmup>(opt, 0.1, t.warmup_epochs);
    if (!main) return warm;
    return std::make_shared<optim::SequentialLR>(opt, std::vector<std::shared_ptr<optim::ChainableScheduler>>{warm, main},
                                                 std::vector<std::int64_t>{t.warmup_epochs});
}

}  // namespace medimg::train
