// SPDX-License-Identifier: MIT
// nn/resnet.hpp: the ResNet family (He et al. 2015, "Deep Residual Learning for Image
// Recognition"), laid out exactly as torchvision.models.resnet so state_dicts interchange:
//   conv1 7x7/2 -> bn1 -> relu -> maxpool 3x3/2 -> layer1..layer4 -> avgpool -> fc
// BasicBlock (18/34): 3x3 -> BN -> ReLU -> 3x3 -> BN, + identity or downsample, ReLU.
// Bottleneck (50): 1x1 -> 3x3 (stride here, torchvision's "v1.5") -> 1x1 (x4), + shortcut, ReLU.
// Downsample = 1x1 conv (stride) + BN when the shape changes (option B projection shortcuts).
// Init as torchvision: conv kaiming_normal(fan_out, relu), BN weight 1 / bias 0, fc PyTorch's
// default; zero_init_residual optional. https://pytorch.org/vision/stable/models/resnet.html
// Inference (eval mode under NoGrad, on the CPU): every conv + BN pair runs folded, with the
// residual add and the ReLU in the convolution's epilogue (nn/inference.hpp); same numbers within
// float rounding, unchanged modules, hooks respected. Otherwise (training, or gradients on) each
// BN + ReLU, with the block's residual add, runs as one op (BatchNorm2d::forward_relu); same
// values, one pass over the activation fewer each way, one bit per value kept for the ReLU.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "medimg/nn/classifier.hpp"
#include "medimg/nn/inference.hpp"
#include "medimg/nn/layers.hpp"

namespace medimg::nn {

namespace detail {
template <class T, class B>
std::shared_ptr<Conv2d<T, B>> conv(std::int64_t in, std::int64_t out, std::int64_t k, std::int64_t stride, Rng& rng) {
    return std::make_shared<Conv2d<T, B>>(Conv2dOptions{in, out, k, stride, k / 2, 1, false}, rng);
}
template <class T, class B>
std::shared_ptr<BatchNorm2d<T, B>> bn(std::int64_t c) {
    return std::make_shared<BatchNorm2d<T, B>>(BatchNorm2dOptions{c});
}
/// 1x1 conv + BN shortcut when stride or width changes, else nullptr (identity).
template <class T, class B>
std::shared_ptr<Sequential<T, B>> shortcut(std::int64_t in, std::int64_t out, std::int64_t stride, Rng& rng) {
    if (stride == 1 && in == out) return nullptr;
    auto s = std::make_shared<Sequential<T, B>>();
    s->push_back(conv<T, B>(in, out, 1, stride, rng));
    s->push_back(bn<T, B>(out));
    return s;
}
/// The folded form of a shortcut Sequential (conv, bn); empty for the identity.
template <class T, class B>
ConvBn<T, B> folded_shortcut(const std::shared_ptr<Sequential<T, B>>& s) {
    if (!s) return {};
    return ConvBn<T, B>(std::static_pointer_cast<Conv2d<T, B>>(s->child("0")), std::static_pointer_cast<BatchNorm2d<T, B>>(s->child("1")),
                        s.get());
}
}  // namespace detail

template <class T, class B = Cpu>
class BasicBlock : public Module<T, B> {
public:
    using Var = autograd::Var<T, B>;
    static constexpr std::int64_t expansion = 1;
    BasicBlock(std::int64_t in, std::int64_t planes, std::int64_t stride, Rng& rng) {
        conv1_ = this->register_module("conv1", detail::conv<T, B>(in, planes, 3, stride, rng));
        bn1_ = this->register_module("bn1", detail::bn<T, B>(planes));
        conv2_ = this->register_module("conv2", detail::conv<T, B>(planes, planes, 3, 1, rng));
        bn2_ = this->register_module("bn2", detail::bn<T, B>(planes));
        if (auto d = detail::shortcut<T, B>(in, planes * expansion, stride, rng)) downsample_ = this->register_module("downsample", d);
        f1_ = detail::ConvBn<T, B>(conv1_, bn1_);
        f2_ = detail::ConvBn<T, B>(conv2_, bn2_);
        fd_ = detail::folded_shortcut(downsample_);
    }
    Var forward(const Var& x) override {
        if (f1_.active(x) && f2_.active(x) && (!downsample_ || fd_.active(x))) {  // inference: three passes fewer
            const Var h = f1_.run(x, nullptr, true);
            const Var shortcut = downsample_ ? fd_.run(x, nullptr, false) : x;
            return f2_.run(h, &shortcut, true);
        }
        const Var h = bn1_->forward_relu((*conv1_)(x));  // batch norm + ReLU as one op (BatchNorm2d::forward_relu)
        const Var z = (*conv2_)(h);
        const Var shortcut = downsample_ ? (*downsample_)(x) : x;
        return bn2_->forward_relu(z, shortcut);
    }
    /// The BN whose weight zero_init_residual sets to 0.
    BatchNorm2d<T, B>& last_bn() { return *bn2_; }

private:
    std::shared_ptr<Conv2d<T, B>> conv1_, conv2_;
    std::shared_ptr<BatchNorm2d<T, B>> bn1_, bn2_;
    std::shared_ptr<Sequential<T, B>> downsample_;
    detail::ConvBn<T, B> f1_, f2_, fd_;
};

template <class T, class B = Cpu>
class Bottleneck : public Module<T, B> {
public:
    using Var = autograd::Var<T, B>;
    static constexpr std::int64_t expansion = 4;
    Bottleneck(std::int64_t in, std::int64_t planes, std::int64_t stride, Rng& rng) {
        conv1_ = this->register_module("conv1", detail::conv<T, B>(in, planes, 1, 1, rng));
        bn1_ = this->register_module("bn1", detail::bn<T, B>(planes));
        conv2_ = this->register_module("conv2", detail::conv<T, B>(planes, planes, 3, stride, rng));
        bn2_ = this->register_module("bn2", detail::bn<T, B>(planes));
        conv3_ = this->register_module("conv3", detail::conv<T, B>(planes, planes * expansion, 1, 1, rng));
        bn3_ = this->register_module("bn3", detail::bn<T, B>(planes * expansion));
        if (auto d = detail::shortcut<T, B>(in, planes * expansion, stride, rng)) downsample_ = this->register_module("downsample", d);
        f1_ = detail::ConvBn<T, B>(conv1_, bn1_);
        f2_ = detail::ConvBn<T, B>(conv2_, bn2_);
        f3_ = detail::ConvBn<T, B>(conv3_, bn3_);
        fd_ = detail::folded_shortcut(downsample_);
    }
    Var forward(const Var& x) override {
        if (f1_.active(x) && f2_.active(x) && f3_.active(x) && (!downsample_ || fd_.active(x))) {
            const Var h = f2_.run(f1_.run(x, nullptr, true), nullptr, true);
            const Var shortcut = downsample_ ? fd_.run(x, nullptr, false) : x;
            return f3_.run(h, &shortcut, true);
        }
        Var h = bn1_->forward_relu((*conv1_)(x));
        h = bn2_->forward_relu((*conv2_)(h));
        const Var z = (*conv3_)(h);
        const Var shortcut = downsample_ ? (*downsample_)(x) : x;
        return bn3_->forward_relu(z, shortcut);
    }
    BatchNorm2d<T, B>& last_bn() { return *bn3_; }

private:
    std::shared_ptr<Conv2d<T, B>> conv1_, conv2_, conv3_;
    std::shared_ptr<BatchNorm2d<T, B>> bn1_, bn2_, bn3_;
    std::shared_ptr<Sequential<T, B>> downsample_;
    detail::ConvBn<T, B> f1_, f2_, f3_, fd_;
};

struct ResNetOptions {
    std::int64_t num_classes = 1000;
    std::int64_t in_channels = 3;  // 1 for grayscale scans
    std::uint64_t seed = 0;        // initialisation seed
    bool zero_init_residual = false;
};

/// ResNet<T, B, Block, L1, L2, L3, L4>: Lk blocks in stage k. Input (N, in_channels, H, W) with
/// H, W >= 32 (five stride-2 stages); output logits (N, num_classes).
template <class T, class B, template <class, class> class Block, int L1, int L2, int L3, int L4>
class ResNet : public ImageClassifier<T, B> {
public:
    using Var = autograd::Var<T, B>;
    using BlockT = Block<T, B>;

    explicit ResNet(const ResNetOptions& o = {}) : o_(o) {
        MEDIMG_CHECK(o.num_classes >= 1 && o.in_channels >= 1, ValueError, "ResNet: num_classes and in_channels must be >= 1, got ",
                     o.num_classes, " and ", o.in_channels);
        Rng rng(o.seed);
        conv1_ = this->register_module("conv1", std::make_shared<Conv2d<T, B>>(Conv2dOptions{o.in_channels, 64, 7, 2, 3, 1, false}, rng));
        bn1_ = this->register_module("bn1", detail::bn<T, B>(64));
        std::int64_t in = 64;
        const int blocks[4] = {L1, L2, L3, L4};
        for (int s = 0; s < 4; ++s) {
            auto stage = std::make_shared<Sequential<T, B>>();
            const std::int64_t planes = 64LL << s;
            for (int b = 0; b < blocks[s]; ++b) {
                stage->push_back(std::make_shared<BlockT>(in, planes, (b == 0 && s > 0) ? 2 : 1, rng));
                in = planes * BlockT::expansion;
            }
            layers_[s] = this->register_module("layer" + std::to_string(s + 1), stage);
        }
        fc_ = this->register_module("fc", std::make_shared<Linear<T, B>>(LinearOptions{in, o.num_classes}, rng));
        stem_ = detail::ConvBn<T, B>(conv1_, bn1_);
        reset_parameters(rng);
    }

    /// The last stage's feature map, (N, 512 x expansion, H/32, W/32) (timm's forward_features).
    Var forward_features(const Var& x) override {
        MEDIMG_CHECK(x.shape().rank() == 4 && x.size(1) == o_.in_channels, ShapeError, "ResNet: input must be (N, ",
                     o_.in_channels, ", H, W), got ", x.shape());
        auto h = stem_.active(x) ? stem_.run(x, nullptr, true) : bn1_->forward_relu((*conv1_)(x));
        h = autograd::max_pool2d(h, ops::MaxPool2dParams{3, 3, 2, 2, 1, 1});
        for (auto& stage : layers_) h = (*stage)(h);
        return h;
    }
    /// Global average pooling, then fc: the logits (N, num_classes); with pre_logits, the pooled
    /// embedding (N, 512 x expansion) fc would read (timm's forward_head).
    Var forward_head(const Var& features, bool pre_logits = false) override {
        auto pooled = autograd::flatten(autograd::adaptive_avg_pool2d(features, 1, 1));
        return pre_logits ? pooled : (*fc_)(pooled);
    }
    std::int64_t num_features() const override { return 512 * BlockT::expansion; }
    /// layer4 (1/32 of the side; 7x7 at 224, pytorch-grad-cam's usual choice) from 97 px up,
    /// layer3 (1/16) from 49 px, layer2 below.
    std::string default_cam_layer(std::int64_t image_size) const override {
        return detail::deepest_layer_at_least_4(image_size, {{32, "layer4"}, {16, "layer3"}, {8, "layer2"}});
    }

    const ResNetOptions& options() const { return o_; }
    Linear<T, B>& fc() { return *fc_; }
    Conv2d<T, B>& conv1() { return *conv1_; }
    /// Re-draws fc with PyTorch's default init (used when pretrained weights have another class count).
    void reset_fc(Rng& rng) {
        auto fresh = Linear<T, Cpu>(LinearOptions{fc_->weight().shape()[1], o_.num_classes}, rng);
        copy_from_host(fc_->weight().value(), fresh.weight().value());
        copy_from_host(fc_->bias().value(), fresh.bias().value());
    }

private:
    static void copy_from_host(Tensor<T, B>& dst, const Tensor<T, Cpu>& src) {
        if constexpr (std::is_same_v<B, Cpu>)
            dst.copy_(src);
        else
            dst.copy_(src.template to<B>());
    }
    // torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu") for every conv, BN 1/0.
    void reset_parameters(Rng& rng) {
        for (auto& [name, p] : this->named_parameters()) {
            if (p.value().rank() != 4) continue;
            auto host = Tensor<T, Cpu>::empty(p.shape());
            init::kaiming_normal(host, rng, init::FanMode::fan_out);
            copy_from_host(p.value(), host);
        }
        if (o_.zero_init_residual)
            for (auto& stage : layers_)
                for (std::size_t b = 0; b < stage->size(); ++b)
                    std::static_pointer_cast<BlockT>(stage->child(std::to_string(b)))->last_bn().weight().value().zero_();
    }

    ResNetOptions o_;
    std::shared_ptr<Conv2d<T, B>> conv1_;
    std::shared_ptr<BatchNorm2d<T, B>> bn1_;
    std::shared_ptr<Sequential<T, B>> layers_[4];
    std::shared_ptr<Linear<T, B>> fc_;
    detail::ConvBn<T, B> stem_;
};

template <class T = float, class B = Cpu>
using ResNet18 = ResNet<T, B, BasicBlock, 2, 2, 2, 2>;
template <class T = float, class B = Cpu>
using ResNet34 = ResNet<T, B, BasicBlock, 3, 4, 6, 3>;
template <class T = float, class B = Cpu>
using ResNet50 = ResNet<T, B, Bottleneck, 3, 4, 6, 3>;

}  // namespace medimg::nn

namespace medimg::nn {

/// The architecture named in a config ("resnet18" | "resnet34" | "resnet50") as a Module.
template <class T = float, class B = Cpu>
std::shared_ptr<Module<T, B>> make_resnet(const std::string& name, const ResNetOptions& o) {
    if (name == "resnet18") return std::make_shared<ResNet18<T, B>>(o);
    if (name == "resnet34") return std::make_shared<ResNet34<T, B>>(o);
    if (name == "resnet50") return std::make_shared<ResNet50<T, B>>(o);
    throw ValueError("make_resnet: unknown architecture '" + name + "' (resnet18, resnet34 or resnet50)");
}

}  // namespace medimg::nn
