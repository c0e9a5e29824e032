// SPDX-License-Identifier: MIT
// nn/efficientnet.hpp: EfficientNet-B0 (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling
// for Convolutional Neural Networks"), laid out exactly as torchvision.models.efficientnet so
// state_dicts interchange:
//   features.0      conv 3x3/2 (32) -> BN -> SiLU                       (Conv2dNormActivation)
//   features.1 .. 7 stages of MBConv blocks: (expand ratio, kernel, stride, in, out, blocks)
//                   (1,3,1,32,16,1) (6,3,2,16,24,2) (6,5,2,24,40,2) (6,3,2,40,80,3)
//                   (6,5,1,80,112,3) (6,5,2,112,192,4) (6,3,1,192,320,1)
//   features.8      conv 1x1 (1280) -> BN -> SiLU
//   avgpool -> classifier.0 Dropout(0.2) -> classifier.1 Linear(1280, classes)
// MBConv (block.*): [expand 1x1 -> BN -> SiLU] -> depthwise kxk/s -> BN -> SiLU
//   -> squeeze-excitation (global pool -> fc1 1x1 -> SiLU -> fc2 1x1 -> sigmoid -> scale channels,
//      squeeze channels = max(1, in / 4)) -> project 1x1 -> BN; when stride 1 and in == out,
//   stochastic depth (row mode, p = 0.2 * block index / 16) and the residual sum.
// BatchNorm: PyTorch's defaults (eps 1e-5, momentum 0.1), which torchvision keeps for B0-B4.
// Init as torchvision: conv kaiming_normal (fan_out) with zero bias, BN 1 / 0, Linear
// U(-1/sqrt(out_features), +) with zero bias.
// Randomness (dropout, stochastic depth) is drawn from generators the model owns, seeded from the
// construction seed; reseed() restarts them (a resumed run reseeds per epoch, as for ResNet data).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "medimg/nn/classifier.hpp"
#include "medimg/nn/layers.hpp"

namespace medimg::nn {

/// torchvision.ops.StochasticDepth(p, "row"): drops a sample's whole residual branch in training.
template <class T, class B = Cpu>
class StochasticDepth : public Module<T, B> {
public:
    StochasticDepth(double p, std::shared_ptr<Rng> rng) : p_(p), rng_(std::move(rng)) {
        MEDIMG_CHECK(p >= 0.0 && p <= 1.0, ValueError, "StochasticDepth: probability must be in [0, 1], got ", p);
    }
    autograd::Var<T, B> forward(const autograd::Var<T, B>& x) override {
        return autograd::stochastic_depth(x, p_, this->is_training(), *rng_);
    }
    double p() const { return p_; }
    void set_p(double p) {
        MEDIMG_CHECK(p >= 0.0 && p <= 1.0, ValueError, "StochasticDepth: probability must be in [0, 1], got ", p);
        p_ = p;
    }

private:
    double p_;
    std::shared_ptr<Rng> rng_;
};

/// torchvision.ops.SqueezeExcitation with SiLU inside and a sigmoid gate (Hu et al. 2018):
/// avgpool -> fc1 (1x1 conv, bias) -> activation -> fc2 -> scale_activation -> x * gate.
template <class T, class B = Cpu>
class SqueezeExcitation : public Module<T, B> {
public:
    using Var = autograd::Var<T, B>;
    SqueezeExcitation(std::int64_t channels, std::int64_t squeeze, Rng& rng) : channels_(channels) {
        this->register_module("avgpool", std::make_shared<AdaptiveAvgPool2d<T, B>>(1, 1));
        fc1_ = this->register_module("fc1", std::make_shared<Conv2d<T, B>>(Conv2dOptions{channels, squeeze, 1}, rng));
        fc2_ = this->register_module("fc2", std::make_shared<Conv2d<T, B>>(Conv2dOptions{squeeze, channels, 1}, rng));
        this->register_module("activation", std::make_shared<SiLU<T, B>>());
        this->register_module("scale_activation", std::make_shared<Sigmoid<T, B>>());
    }
    Var forward(const Var& x) override {
        auto s = autograd::adaptive_avg_pool2d(x, 1, 1);
        s = autograd::sigmoid((*fc2_)(autograd::silu((*fc1_)(s))));
        return autograd::scale_channels(x, autograd::reshape(s, Shape{x.size(0), channels_}));
    }

private:
    std::int64_t channels_;
    std::shared_ptr<Conv2d<T, B>> fc1_, fc2_;
};

namespace detail {
/// torchvision's _make_divisible(v, 8): v rounded to the nearest multiple of 8 (at least 8), one
/// step up when rounding lost more than 10% (from the MobileNet reference code).
inline std::int64_t make_divisible(double v, std::int64_t divisor = 8) {
    std::int64_t r = std::max<std::int64_t>(divisor, static_cast<std::int64_t>(v + divisor / 2.0) / divisor * divisor);
    if (static_cast<double>(r) < 0.9 * v) r += divisor;
    return r;
}

/// torchvision's Conv2dNormActivation: conv (no bias, padding (k-1)/2) -> BN [-> SiLU], children "0", "1", "2".
template <class T, class B>
std::shared_ptr<Sequential<T, B>> conv_bn_act(std::int64_t in, std::int64_t out, std::int64_t k, std::int64_t stride,
                                              std::int64_t groups, bool activation, Rng& rng) {
    auto s = std::make_shared<Sequential<T, B>>();
    s->push_back(std::make_shared<Conv2d<T, B>>(Conv2dOptions{in, out, k, stride, (k - 1) / 2, 1, false, groups}, rng));
    s->push_back(std::make_shared<BatchNorm2d<T, B>>(BatchNorm2dOptions{out}));
    if (activation) s->push_back(std::make_shared<SiLU<T, B>>());
    return s;
}
}  // namespace detail

/// One row of EfficientNet's Table 1 (torchvision's MBConvConfig at width and depth 1).
struct MBConvConfig {
    std::int64_t expand_ratio, kernel, stride, in_channels, out_channels, layers;
};

/// The inverted residual block with squeeze-excitation (torchvision's MBConv).
template <class T, class B = Cpu>
class MBConv : public Module<T, B> {
public:
    using Var = autograd::Var<T, B>;
    MBConv(const MBConvConfig& c, double stochastic_depth_prob, std::shared_ptr<Rng> drop_rng, Rng& rng)
        : residual_(c.stride == 1 && c.in_channels == c.out_channels) {
        MEDIMG_CHECK(c.stride == 1 || c.stride == 2, ValueError, "MBConv: stride must be 1 or 2, got ", c.stride);
        const std::int64_t expanded = detail::make_divisible(static_cast<double>(c.in_channels * c.expand_ratio));
        block_ = this->register_module("block", std::make_shared<Sequential<T, B>>());
        if (expanded != c.in_channels) block_->push_back(detail::conv_bn_act<T, B>(c.in_channels, expanded, 1, 1, 1, true, rng));
        block_->push_back(detail::conv_bn_act<T, B>(expanded, expanded, c.kernel, c.stride, expanded, true, rng));
        block_->push_back(std::make_shared<SqueezeExcitation<T, B>>(expanded, std::max<std::int64_t>(1, c.in_channels / 4), rng));
        block_->push_back(detail::conv_bn_act<T, B>(expanded, c.out_channels, 1, 1, 1, false, rng));
        drop_ = this->register_module("stochastic_depth",
                                      std::make_shared<StochasticDepth<T, B>>(stochastic_depth_prob, std::move(drop_rng)));
    }
    Var forward(const Var& x) override {
        Var r = (*block_)(x);
        if (!residual_) return r;
        return autograd::add((*drop_)(r), x);
    }

private:
    bool residual_;
    std::shared_ptr<Sequential<T, B>> block_;
    std::shared_ptr<StochasticDepth<T, B>> drop_;
};

struct EfficientNetOptions {
    std::int64_t num_classes = 1000;
    std::int64_t in_channels = 3;  // 1 for grayscale scans
    std::uint64_t seed = 0;        // initialisation seed; dropout and stochastic depth draw from seed-derived streams
    double dropout = 0.2;          // before the classifier (B0)
    double stochastic_depth_prob = 0.2;
    std::vector<MBConvConfig> stages{{1, 3, 1, 32, 16, 1},   {6, 3, 2, 16, 24, 2},  {6, 5, 2, 24, 40, 2},
                                     {6, 3, 2, 40, 80, 3},   {6, 5, 1, 80, 112, 3}, {6, 5, 2, 112, 192, 4},
                                     {6, 3, 1, 192, 320, 1}};  // B0
    std::int64_t last_channels = 1280;                         // 4 x the last stage's output
};

/// Input (N, in_channels, H, W), H, W >= 32; output logits (N, num_classes).
template <class T, class B = Cpu>
class EfficientNet : public ImageClassifier<T, B> {
public:
    using Var = autograd::Var<T, B>;

    explicit EfficientNet(const EfficientNetOptions& o = {}) : o_(o), drop_rng_(std::make_shared<Rng>()) {
        MEDIMG_CHECK(o.num_classes >= 1 && o.in_channels >= 1 && !o.stages.empty() && o.last_channels >= 1, ValueError,
                     "EfficientNet: num_classes, in_channels and last_channels must be >= 1 and the stages non-empty");
        Rng rng(o.seed);
        reseed(o.seed);
        features_ = this->register_module("features", std::make_shared<Sequential<T, B>>());
        features_->push_back(detail::conv_bn_act<T, B>(o.in_channels, o.stages[0].in_channels, 3, 2, 1, true, rng));
        std::int64_t total = 0, id = 0;
        for (const auto& s : o.stages) total += s.layers;
        for (const auto& s : o.stages) {
            auto stage = std::make_shared<Sequential<T, B>>();
            for (std::int64_t l = 0; l < s.layers; ++l) {
                MBConvConfig c = s;
                if (l > 0) {
                    c.in_channels = c.out_channels;
                    c.stride = 1;
                }
                const double p = o.stochastic_depth_prob * static_cast<double>(id++) / static_cast<double>(total);
                stage->push_back(std::make_shared<MBConv<T, B>>(c, p, drop_rng_, rng));
            }
            features_->push_back(stage);
        }
        features_->push_back(detail::conv_bn_act<T, B>(o.stages.back().out_channels, o.last_channels, 1, 1, 1, true, rng));
        this->register_module("avgpool", std::make_shared<AdaptiveAvgPool2d<T, B>>(1, 1));
        classifier_ = this->register_module("classifier", std::make_shared<Sequential<T, B>>());
        dropout_ = classifier_->push_back(std::make_shared<Dropout<T, B>>(o.dropout, o.seed ^ 0x9e3779b97f4a7c15ULL));
        fc_ = classifier_->push_back(std::make_shared<Linear<T, B>>(LinearOptions{o.last_channels, o.num_classes}, rng));
        reset_parameters(rng);
    }

    /// features(x): (N, last_channels, H/32, W/32), after the last SiLU.
    Var forward_features(const Var& x) override {
        MEDIMG_CHECK(x.shape().rank() == 4 && x.size(1) == o_.in_channels, ShapeError, "EfficientNet: input must be (N, ",
                     o_.in_channels, ", H, W), got ", x.shape());
        return (*features_)(x);
    }
    Var forward_head(const Var& features, bool pre_logits = false) override {
        auto pooled = autograd::flatten(autograd::adaptive_avg_pool2d(features, 1, 1));
        return pre_logits ? pooled : (*classifier_)(pooled);
    }
    std::int64_t num_features() const override { return o_.last_channels; }
    /// features.8 (the last 1x1 conv block, 1/32 of the side) from 97 px up, then the 112-channel
    /// stage features.5 (1/16) and the 40-channel stage features.3 (1/8).
    std::string default_cam_layer(std::int64_t image_size) const override {
        const std::string last = "features." + std::to_string(o_.stages.size() + 1);
        if ((image_size + 31) / 32 >= 4 || o_.stages.size() != 7) return last;
        return (image_size + 15) / 16 >= 4 ? "features.5" : "features.3";
    }
    /// Sets the classifier's dropout and the stochastic-depth schedule (block b of B drops with
    /// probability stochastic_depth_prob * b / B), e.g. 0 and 0 to compare with another framework.
    void set_drop_probabilities(double dropout, double stochastic_depth_prob) {
        dropout_->set_p(dropout);
        std::vector<StochasticDepth<T, B>*> blocks;
        for (auto& [name, m] : this->named_modules())
            if (auto* sd = dynamic_cast<StochasticDepth<T, B>*>(m)) blocks.push_back(sd);
        for (std::size_t b = 0; b < blocks.size(); ++b)
            blocks[b]->set_p(stochastic_depth_prob * static_cast<double>(b) / static_cast<double>(blocks.size()));
        o_.dropout = dropout;
        o_.stochastic_depth_prob = stochastic_depth_prob;
    }
    /// Restarts the dropout and stochastic-depth streams from `seed`.
    void reseed(std::uint64_t seed) override {
        drop_rng_->reseed(seed ^ 0x5851f42d4c957f2dULL);
        if (dropout_) dropout_->reseed(seed ^ 0x9e3779b97f4a7c15ULL);
    }
    const EfficientNetOptions& options() const { return o_; }
    Linear<T, B>& classifier() { return *fc_; }

private:
    void reset_parameters(Rng& rng) {
        for (auto& [name, p] : this->named_parameters()) {
            auto& v = p.value();
            if (v.rank() == 4)
                init::refill(v, [&](Tensor<T, Cpu>& h) { init::kaiming_normal(h, rng, init::FanMode::fan_out); });
            else if (v.rank() == 1 && name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0 &&
                     name.find(".fc") != std::string::npos)
                v.zero_();  // squeeze-excitation conv biases
        }
        const double r = 1.0 / std::sqrt(static_cast<double>(o_.num_classes));
        init::refill(fc_->weight().value(), [&](Tensor<T, Cpu>& h) { rng.fill_uniform(h, -r, r); });
        fc_->bias().value().zero_();
    }

    EfficientNetOptions o_;
    std::shared_ptr<Rng> drop_rng_;
    std::shared_ptr<Sequential<T, B>> features_, classifier_;
    std::shared_ptr<Dropout<T, B>> dropout_;
    std::shared_ptr<Linear<T, B>> fc_;
};

/// torchvision.models.efficientnet_b0's layout (5,288,548 parameters at 1000 classes).
template <class T = float, class B = Cpu>
std::shared_ptr<EfficientNet<T, B>> efficientnet_b0(EfficientNetOptions o = {}) {
    o.stages = EfficientNetOptions{}.stages;
    o.last_channels = 1280;
    return std::make_shared<EfficientNet<T, B>>(o);
}

}  // namespace medimg::nn
