// SPDX-License-Identifier: MIT
// nn/models.hpp: the architectures a configuration names (model.name), built by name:
//   resnet18 | resnet34 | resnet50 | densenet121 | efficientnet_b0 | vit_b_16   (torchvision's names)
//   vit_tiny_patch16_224 | vit_small_patch16_224                             (timm's names)
// each with the first convolution (a ViT's patch embedding) taking in_channels (1 for grayscale
// scans) and a classifier for num_classes. A ViT's position grid is image_size / 16 per side
// (ModelOptions::image_size; other input sizes resample it, nn/vit.hpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "medimg/nn/classifier.hpp"
#include "medimg/nn/densenet.hpp"
#include "medimg/nn/efficientnet.hpp"
#include "medimg/nn/resnet.hpp"
#include "medimg/nn/vit.hpp"

namespace medimg::nn {

/// How the classifier (the last Linear) starts.
///  torchvision: as the constructor of the library whose names the architecture has (ResNet:
///               nn.Linear's default; DenseNet: that weight, bias 0; EfficientNet:
///               U(+-1/sqrt(num_classes)), bias 0; vit_b_16: 0; timm's ViTs: trunc_normal(0.02), bias 0);
///  linear:      torch.nn.Linear's default, U(+-1/sqrt(in_features)) for weight and bias: what
///               fine-tuning code that replaces the head with a new nn.Linear gets. With few
///               classes EfficientNet's rule gives U(+-0.71) on 1280 features, first logits of
///               standard deviation near 5 (docs/models.md).
enum class HeadInit { torchvision, linear };

struct ModelOptions {
    std::int64_t num_classes = 1000;
    std::int64_t in_channels = 3;  // 1 for grayscale scans
    std::uint64_t seed = 0;        // initialisation seed (and dropout / stochastic depth streams)
    /// Dropout before the classifier and the stochastic-depth rate (torchvision's `dropout`,
    /// `stochastic_depth_prob`); empty: the architecture's own (EfficientNet-B0: 0.2 and 0.2).
    /// Only architectures that have them take them (efficientnet_b0); make_model refuses the others.
    std::optional<double> dropout = std::nullopt, stochastic_depth = std::nullopt;
    HeadInit head_init = HeadInit::torchvision;
    /// The input side a ViT's position embedding is made for (its grid: image_size / 16 per side);
    /// the CNNs take any size and ignore it.
    std::int64_t image_size = 224;
};

/// Whether `name` has a classifier dropout and stochastic depth that ModelOptions can set.
inline bool model_has_dropout(const std::string& name) { return name == "efficientnet_b0"; }

/// The names make_model accepts, in the order documentation lists them.
inline const std::vector<std::string>& model_names() {
    static const std::vector<std::string> names{"resnet18",        "resnet34", "resnet50",
                                                "densenet121",     "efficientnet_b0",
                                                "vit_tiny_patch16_224", "vit_small_patch16_224", "vit_b_16"};
    return names;
}

/// The parameters timm's fine-tuning recipe keeps out of weight decay
/// (timm.optim.param_groups_weight_decay with model.no_weight_decay()): every parameter of rank
/// <= 1 (norm weights, biases), names ending in ".bias", and a ViT's position embedding and class
/// token (timm's pos_embed / cls_token, torchvision's pos_embedding / class_token).
template <class T, class B>
std::vector<std::string> no_weight_decay_names(const NamedParams<T, B>& params) {
    std::vector<std::string> out;
    auto ends = [](const std::string& s, const std::string& e) {
        return s.size() >= e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0;
    };
    for (const auto& [name, p] : params) {
        const std::string last = name.substr(name.rfind('.') == std::string::npos ? 0 : name.rfind('.') + 1);
        if (p.value().rank() <= 1 || ends(name, ".bias") || last == "pos_embed" || last == "cls_token" ||
            last == "pos_embedding" || last == "class_token")
            out.push_back(name);
    }
    return out;
}

/// Whether `name` is one of the Vision Transformers (whose training recipe differs: docs/models.md).
inline bool is_vit(const std::string& name) { return name.rfind("vit_", 0) == 0; }

/// The architecture `name` as an ImageClassifier. Throws ValueError naming the valid names.
template <class T = float, class B = Cpu>
std::shared_ptr<ImageClassifier<T, B>> make_model(const std::string& name, const ModelOptions& o) {
    const bool known = std::find(model_names().begin(), model_names().end(), name) != model_names().end();
    if (!known) {
        std::string valid;
        for (const auto& n : model_names()) valid += (valid.empty() ? "" : ", ") + n;
        throw ValueError("make_model: unknown architecture '" + name + "' (" + valid + ")");
    }
    for (const auto& [what, v] : {std::pair{"dropout", o.dropout}, std::pair{"stochastic_depth", o.stochastic_depth}}) {
        MEDIMG_CHECK(!v || model_has_dropout(name), ValueError, "make_model: ", name, " has no ", what,
                     " to set (torchvision's ", name, " has none; efficientnet_b0 has)");
        MEDIMG_CHECK(!v || (*v >= 0.0 && *v < 1.0), ValueError, "make_model: ", what, " must be in [0, 1), got ", *v);
    }
    // The head's own stream: the architecture's init draws stay what they were without the option.
    Rng head_rng(o.seed ^ 0x2545f4914f6cdd1dULL);
    const ResNetOptions r{o.num_classes, o.in_channels, o.seed};
    if (name == "resnet18") return std::make_shared<ResNet18<T, B>>(r);  // torchvision's fc is nn.Linear's default
    if (name == "resnet34") return std::make_shared<ResNet34<T, B>>(r);
    if (name == "resnet50") return std::make_shared<ResNet50<T, B>>(r);
    if (is_vit(name)) {
        VitOptions v = vit_options(name);
        v.num_classes = o.num_classes;
        v.in_channels = o.in_channels;
        v.seed = o.seed;
        v.image_size = o.image_size;
        MEDIMG_CHECK(o.image_size >= v.patch_size, ValueError, "make_model: ", name, " needs image_size >= ", v.patch_size,
                     ", got ", o.image_size);
        auto m = std::make_shared<VisionTransformer<T, B>>(v);
        if (o.head_init == HeadInit::linear) m->classifier().reset_parameters(head_rng);
        return m;
    }
    if (name == "densenet121") {
        DenseNetOptions d;
        d.num_classes = o.num_classes;
        d.in_channels = o.in_channels;
        d.seed = o.seed;
        auto m = densenet121<T, B>(d);
        if (o.head_init == HeadInit::linear) m->classifier().reset_parameters(head_rng);
        return m;
    }
    EfficientNetOptions e;  // efficientnet_b0
    e.num_classes = o.num_classes;
    e.in_channels = o.in_channels;
    e.seed = o.seed;
    if (o.dropout) e.dropout = *o.dropout;
    if (o.stochastic_depth) e.stochastic_depth_prob = *o.stochastic_depth;
    auto m = efficientnet_b0<T, B>(e);
    if (o.head_init == HeadInit::linear) m->classifier().reset_parameters(head_rng);
    return m;
}

}  // namespace medimg::nn
