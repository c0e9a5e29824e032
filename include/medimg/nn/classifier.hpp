// SPDX-License-Identifier: MIT
// nn/classifier.hpp: ImageClassifier, what every medimg image model is (ResNet, DenseNet,
// EfficientNet, and a researcher's own): a Module split as timm splits its models,
//   forward(x) = forward_head(forward_features(x))
//   forward_features(x): the last feature map, (N, C, h, w), what Grad-CAM explains
//   forward_head(f, pre_logits): global pooling [+ dropout] + classifier; with pre_logits the
//                                pooled embedding (N, C) the classifier reads
//   features(x) = forward_head(forward_features(x), true): the embedding of x
// plus the names the programs need: the model's default Grad-CAM layer for an input size.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

#include "medimg/nn/module.hpp"

namespace medimg::nn {

template <class T, class B = Cpu>
class ImageClassifier : public Module<T, B> {
public:
    using Var = autograd::Var<T, B>;

    Var forward(const Var& x) override { return forward_head(forward_features(x)); }
    /// The last feature map, (N, num_features(), h, w).
    virtual Var forward_features(const Var& x) = 0;
    /// Pooling and classifier: logits (N, num_classes), or with pre_logits the pooled embedding.
    virtual Var forward_head(const Var& features, bool pre_logits = false) = 0;
    /// The pooled embedding of x: forward_head(forward_features(x), true).
    Var features(const Var& x) { return forward_head(forward_features(x), true); }

    /// Channels of forward_features' map (and of the embedding).
    virtual std::int64_t num_features() const = 0;
    /// The dotted name of the module Grad-CAM explains by default for square inputs of this side:
    /// the deepest one whose map is still at least 4x4.
    virtual std::string default_cam_layer(std::int64_t image_size) const = 0;
    /// Restarts the streams of the model's own randomness (dropout, stochastic depth) from `seed`;
    /// nothing for models without any. Training calls it at the start of every epoch with a seed
    /// derived from the run's seed and the epoch, so a resumed run draws what an uninterrupted one
    /// would have.
    virtual void reseed(std::uint64_t seed) { (void)seed; }
};

namespace detail {
/// The deepest of the names whose map (ceil(image_size / stride), the size a padded stride-2
/// network gives) is at least 4 pixels wide; strides descend (32, 16, 8), the last name is the
/// fallback. A 2x2 map cannot point finer than a quadrant (docs/explain.md).
inline std::string deepest_layer_at_least_4(std::int64_t image_size, std::initializer_list<std::pair<int, const char*>> by_stride) {
    const char* last = "";
    for (const auto& [stride, name] : by_stride) {
        last = name;
        if ((image_size + stride - 1) / stride >= 4) return name;
    }
    return last;
}
}  // namespace detail

}  // namespace medimg::nn
