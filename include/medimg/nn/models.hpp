// SPDX-License-Identifier: MIT
// nn/models.hpp: the architectures a configuration names (model.name), built by name:
//   resnet18 | resnet34 | resnet50 | densenet121 | efficientnet_b0
// each with torchvision's parameter names, the first convolution taking in_channels (1 for
// grayscale scans) and a classifier for num_classes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "medimg/nn/classifier.hpp"
#include "medimg/nn/densenet.hpp"
#include "medimg/nn/efficientnet.hpp"
#include "medimg/nn/resnet.hpp"

namespace medimg::nn {

struct ModelOptions {
    std::int64_t num_classes = 1000;
    std::int64_t in_channels = 3;  // 1 for grayscale scans
    std::uint64_t seed = 0;        // initialisation seed (and dropout / stochastic depth streams)
};

/// The names make_model accepts, in the order documentation lists them.
inline const std::vector<std::string>& model_names() {
    static const std::vector<std::string> names{"resnet18", "resnet34", "resnet50", "densenet121", "efficientnet_b0"};
    return names;
}

/// The architecture `name` as an ImageClassifier. Throws ValueError naming the valid names.
template <class T = float, class B = Cpu>
std::shared_ptr<ImageClassifier<T, B>> make_model(const std::string& name, const ModelOptions& o) {
    const ResNetOptions r{o.num_classes, o.in_channels, o.seed};
    if (name == "resnet18") return std::make_shared<ResNet18<T, B>>(r);
    if (name == "resnet34") return std::make_shared<ResNet34<T, B>>(r);
    if (name == "resnet50") return std::make_shared<ResNet50<T, B>>(r);
    if (name == "densenet121") {
        DenseNetOptions d;
        d.num_classes = o.num_classes;
        d.in_channels = o.in_channels;
        d.seed = o.seed;
        return densenet121<T, B>(d);
    }
    if (name == "efficientnet_b0") {
        EfficientNetOptions e;
        e.num_classes = o.num_classes;
        e.in_channels = o.in_channels;
        e.seed = o.seed;
        return efficientnet_b0<T, B>(e);
    }
    std::string valid;
    for (const auto& n : model_names()) valid += (valid.empty() ? "" : ", ") + n;
    throw ValueError("make_model: unknown architecture '" + name + "' (" + valid + ")");
}

}  // namespace medimg::nn
