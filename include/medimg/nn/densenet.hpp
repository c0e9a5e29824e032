// SPDX-License-Identifier: MIT
// nn/densenet.hpp: DenseNet-BC (Huang et al. 2017, "Densely Connected Convolutional Networks"),
// laid out exactly as torchvision.models.densenet so state_dicts interchange:
//   features: conv0 7x7/2 -> norm0 -> relu0 -> pool0 3x3/2
//             -> denseblock1 -> transition1 -> ... -> denseblock4 -> norm5
//   head:     relu -> global average pool -> classifier (Linear)
// Dense layer l of a block sees the concatenation of the block input and the l earlier layers'
// outputs: norm1 -> relu -> conv1 1x1 (bn_size*k channels) -> norm2 -> relu -> conv2 3x3 (k).
// Transition: norm -> relu -> conv 1x1 (half the channels) -> avg pool 2x2/2.
// densenet121: growth k = 32, blocks (6, 12, 24, 16), 64 initial features, bn_size 4.
// Init as torchvision: conv kaiming_normal (fan_in, relu gain), BN 1 / 0, classifier weight
// PyTorch's default and bias 0.
//
// Memory (Pleiss et al. 2017, "Memory-Efficient Implementation of DenseNets"): a naive dense layer
// copies all earlier features into a new concatenation, normalises and rectifies it, and keeps all
// three for its backward pass, so activation memory grows with the square of the block depth
// (torchvision's default, memory_efficient=False). Here (memory_efficient = true, the default) the
// first half of each layer, conv1(relu(norm1(cat(earlier)))), is one autograd function that builds
// the concatenation in a scratch tensor, keeps nothing but the earlier feature maps it already
// shares with the block and the per-channel statistics, and rebuilds the concatenation and the
// normalised map in its backward pass: memory linear in depth for about 15% more arithmetic.
// Hooks on norm1 / conv1 of a dense layer do not fire on that path; hook the layer itself, a block,
// a transition or norm5 (the default Grad-CAM layer, as pytorch-grad-cam's model.features[-1]).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "medimg/nn/classifier.hpp"
#include "medimg/nn/layers.hpp"

namespace medimg::nn {

namespace detail {

/// conv(relu(bn(cat(xs)))) for a 1x1 convolution without bias, keeping no concatenation or
/// normalised map for the backward pass (see the top of this file). Same values and gradients as
/// the composition of cat_channels, BatchNorm2d, relu and Conv2d, running statistics included.
template <class T, class B>
autograd::Var<T, B> concat_bn_relu_conv1x1(const std::vector<autograd::Var<T, B>>& xs_in, BatchNorm2d<T, B>& bn,
                                            Conv2d<T, B>& conv) {
    using Var = autograd::Var<T, B>;
    using Tn = Tensor<T, B>;
    MEDIMG_CHECK(!xs_in.empty(), ShapeError, "dense layer: no input feature maps");
    std::vector<Var> xs;
    for (const auto& x : xs_in) xs.push_back(autograd::detail::widened(x));
    const Shape first = xs[0].shape();
    MEDIMG_CHECK(first.rank() == 4, ShapeError, "dense layer: feature maps must be (N, C, H, W), got ", first);
    std::int64_t C = 0;
    std::vector<Tn> values;
    std::vector<std::shared_ptr<autograd::Node<T, B>>> nodes;
    for (const auto& x : xs) {
        MEDIMG_CHECK(x.shape().rank() == 4 && x.size(0) == first[0] && x.size(2) == first[2] && x.size(3) == first[3],
                     ShapeError, "dense layer: feature maps ", first, " and ", x.shape(), " differ outside the channels");
        C += x.size(1);
        values.push_back(x.value());
        nodes.push_back(x.node());
    }
    const Shape cs{first[0], C, first[2], first[3]};
    MEDIMG_CHECK(bn.options().num_features == C, ShapeError, "dense layer: norm1 has ", bn.options().num_features,
                 " channels but the feature maps have ", C);
    const auto concat = [values, cs]() {
        auto t = Tn::empty(cs);
        std::int64_t c0 = 0;
        for (const auto& v : values) {
            ops::copy_channels(v, 0, t, c0, v.size(1));
            c0 += v.size(1);
        }
        return t;
    };
    const bool training = bn.is_training();
    const double eps = bn.options().eps, momentum = bn.options().momentum;
    const Tn gamma = bn.weight().value(), beta = bn.bias().value(), w = conv.weight().value();
    const Tn running_mean = bn.running_mean(), running_var = bn.running_var();
    const auto& co = conv.options();
    MEDIMG_CHECK(co.kernel_size == 1 && co.stride == 1 && co.padding == 0 && co.groups == 1 && !conv.bias().defined(),
                 ValueError, "dense layer: conv1 must be a 1x1 convolution without bias");
    const ops::Conv2dParams p{};

    // normalised and rectified concatenation; training: the batch statistics into mean / invstd
    // and, when `update`, the running statistics moved as BatchNorm2d's forward moves them
    const auto normalised = [=](const Tn& cat, Tn& mean, Tn& invstd, bool update, Tn rm, Tn rv) {
        auto h = Tn::empty(cat.shape());
        if (training) {
            mean = Tn::empty({C});
            invstd = Tn::empty({C});
            Tn none_m, none_v;
            ops::batch_norm_forward_training(cat, gamma, beta, update ? rm : none_m, update ? rv : none_v,
                                             momentum, eps, h, mean, invstd);
        } else {
            ops::batch_norm_forward_inference(cat, gamma, beta, running_mean, running_var, eps, h);
        }
        ops::relu_forward(h, h);
        return h;
    };

    Tn mean, invstd;
    Tn y;
    {
        const auto cat = concat();
        const auto h = normalised(cat, mean, invstd, true, bn.running_mean(), bn.running_var());
        if (training) bn.count_batch();
        y = Tn::empty(ops::conv2d_output_shape("dense layer conv1", cs, w.shape(), p));
        ops::conv2d_forward(h, w, Tn(), y, p);
    }  // the concatenation and the normalised map are freed here
    auto gn = bn.weight().node(), bn_bias = bn.bias().node(), wn = conv.weight().node();
    std::vector<std::shared_ptr<autograd::Node<T, B>>> parents = nodes;
    parents.push_back(gn);
    parents.push_back(bn_bias);
    parents.push_back(wn);
    // backward: rebuild cat and h = relu(bn(cat)); dw = conv_filter(h, dy); dh = conv_data(dy, w)
    // masked by h > 0; bn backward to d(cat); d(cat) split into the inputs' channel ranges.
    return Var::from_op("dense_bottleneck", std::move(y), std::move(parents),
                        [=](const Tn& dy) {
                            const auto cat = concat();
                            Tn m, is;
                            const auto h = normalised(cat, m, is, false, Tn(), Tn());
                            if (!training) {
                                m = running_mean.clone();
                                is = Tn::empty({C});
                                ops::rsqrt(running_var, eps, is);
                            }
                            if (autograd::detail::wants(wn)) {
                                auto dw = Tn::empty(w.shape());
                                ops::conv2d_backward_filter(h, dy, dw, p);
                                wn->accumulate(dw, true);
                            }
                            bool inputs = false;
                            for (const auto& n : nodes) inputs = inputs || autograd::detail::wants(n);
                            if (!inputs && !autograd::detail::wants(gn) && !autograd::detail::wants(bn_bias)) return;
                            auto dh = Tn::empty(cs);
                            ops::conv2d_backward_data(dy, w, dh, p);
                            ops::relu_backward(h, dh, dh);
                            Tn dcat = inputs ? Tn::empty(cs) : Tn();
                            Tn dg = autograd::detail::wants(gn) ? Tn::empty({C}) : Tn();
                            Tn db = autograd::detail::wants(bn_bias) ? Tn::empty({C}) : Tn();
                            ops::batch_norm_backward(cat, dh, gamma, m, is, training, dcat, dg, db);
                            if (dg.defined()) gn->accumulate(dg, true);
                            if (db.defined()) bn_bias->accumulate(db, true);
                            std::int64_t c0 = 0;
                            for (const auto& n : nodes) {
                                if (autograd::detail::wants(n)) {
                                    auto dx = Tn::empty(n->shape);
                                    ops::copy_channels(dcat, c0, dx, 0, n->shape[1]);
                                    n->accumulate(dx, true);
                                }
                                c0 += n->shape[1];
                            }
                        });
}

}  // namespace detail

/// One dense layer: norm1 -> relu -> conv1 1x1 -> norm2 -> relu -> conv2 3x3, on the
/// concatenation of its inputs (torchvision's _DenseLayer).
template <class T, class B = Cpu>
class DenseLayer : public Module<T, B> {
public:
    using Var = autograd::Var<T, B>;
    DenseLayer(std::int64_t in, std::int64_t growth, std::int64_t bn_size, bool memory_efficient, Rng& rng)
        : memory_efficient_(memory_efficient) {
        norm1_ = this->register_module("norm1", std::make_shared<BatchNorm2d<T, B>>(BatchNorm2dOptions{in}));
        conv1_ = this->register_module(
            "conv1", std::make_shared<Conv2d<T, B>>(Conv2dOptions{in, bn_size * growth, 1, 1, 0, 1, false}, rng));
        norm2_ = this->register_module("norm2", std::make_shared<BatchNorm2d<T, B>>(BatchNorm2dOptions{bn_size * growth}));
        conv2_ = this->register_module(
            "conv2", std::make_shared<Conv2d<T, B>>(Conv2dOptions{bn_size * growth, growth, 3, 1, 1, 1, false}, rng));
    }
    Var forward(const Var& x) override { return forward_list({x}); }
    /// The new feature map (N, growth, H, W) from the block input and the earlier layers' outputs.
    Var forward_list(const std::vector<Var>& inputs) {
        // SyncBatchNorm (norm1_ synchronised) takes the plain path: the fused one normalises itself.
        Var b = memory_efficient_ && !norm1_->synchronized() ? detail::concat_bn_relu_conv1x1(inputs, *norm1_, *conv1_)
                                  : (*conv1_)(autograd::relu((*norm1_)(autograd::cat_channels(inputs))));
        return (*conv2_)(autograd::relu((*norm2_)(b)));
    }

private:
    bool memory_efficient_;
    std::shared_ptr<BatchNorm2d<T, B>> norm1_, norm2_;
    std::shared_ptr<Conv2d<T, B>> conv1_, conv2_;
};

/// denselayer1..L; output: the concatenation of the input and every layer's output
/// (in + L * growth channels), torchvision's _DenseBlock.
template <class T, class B = Cpu>
class DenseBlock : public Module<T, B> {
public:
    using Var = autograd::Var<T, B>;
    DenseBlock(std::int64_t layers, std::int64_t in, std::int64_t growth, std::int64_t bn_size, bool memory_efficient,
               Rng& rng) {
        for (std::int64_t l = 0; l < layers; ++l)
            layers_.push_back(this->register_module(
                "denselayer" + std::to_string(l + 1),
                std::make_shared<DenseLayer<T, B>>(in + l * growth, growth, bn_size, memory_efficient, rng)));
    }
    Var forward(const Var& x) override {
        std::vector<Var> features{x};
        for (auto& layer : layers_) features.push_back(layer->run_forward_hooks(Var(), layer->forward_list(features)));
        return autograd::cat_channels(features);
    }

private:
    std::vector<std::shared_ptr<DenseLayer<T, B>>> layers_;
};

struct DenseNetOptions {
    std::int64_t num_classes = 1000;
    std::int64_t in_channels = 3;  // 1 for grayscale scans
    std::uint64_t seed = 0;        // initialisation seed
    std::int64_t growth_rate = 32;
    std::vector<std::int64_t> block_config{6, 12, 24, 16};  // densenet121
    std::int64_t num_init_features = 64;
    std::int64_t bn_size = 4;
    bool memory_efficient = true;  // see the top of this file; false = torchvision's default path
};

/// Input (N, in_channels, H, W) with H, W >= 32; output logits (N, num_classes).
template <class T, class B = Cpu>
class DenseNet : public ImageClassifier<T, B> {
public:
    using Var = autograd::Var<T, B>;

    explicit DenseNet(const DenseNetOptions& o = {}) : o_(o) {
        MEDIMG_CHECK(o.num_classes >= 1 && o.in_channels >= 1 && o.growth_rate >= 1 && o.bn_size >= 1 &&
                         !o.block_config.empty(),
                     ValueError, "DenseNet: num_classes, in_channels, growth_rate, bn_size must be >= 1 and the block "
                     "configuration non-empty");
        Rng rng(o.seed);
        features_ = this->register_module("features", std::make_shared<Sequential<T, B>>());
        std::int64_t c = o.num_init_features;
        features_->push_back("conv0", std::make_shared<Conv2d<T, B>>(Conv2dOptions{o.in_channels, c, 7, 2, 3, 1, false}, rng));
        features_->push_back("norm0", std::make_shared<BatchNorm2d<T, B>>(BatchNorm2dOptions{c}));
        features_->push_back("relu0", std::make_shared<ReLU<T, B>>());
        features_->push_back("pool0", std::make_shared<MaxPool2d<T, B>>(3, 2, 1));
        for (std::size_t i = 0; i < o.block_config.size(); ++i) {
            const std::int64_t layers = o.block_config[i];
            features_->push_back("denseblock" + std::to_string(i + 1),
                                 std::make_shared<DenseBlock<T, B>>(layers, c, o.growth_rate, o.bn_size, o.memory_efficient, rng));
            c += layers * o.growth_rate;
            if (i + 1 == o.block_config.size()) break;
            auto t = std::make_shared<Sequential<T, B>>();  // torchvision's _Transition
            t->push_back("norm", std::make_shared<BatchNorm2d<T, B>>(BatchNorm2dOptions{c}));
            t->push_back("relu", std::make_shared<ReLU<T, B>>());
            t->push_back("conv", std::make_shared<Conv2d<T, B>>(Conv2dOptions{c, c / 2, 1, 1, 0, 1, false}, rng));
            t->push_back("pool", std::make_shared<AvgPool2d<T, B>>(2, 2));
            features_->push_back("transition" + std::to_string(i + 1), t);
            c /= 2;
        }
        features_->push_back("norm5", std::make_shared<BatchNorm2d<T, B>>(BatchNorm2dOptions{c}));
        num_features_ = c;
        classifier_ = this->register_module("classifier", std::make_shared<Linear<T, B>>(LinearOptions{c, o.num_classes}, rng));
        reset_parameters(rng);
    }

    /// relu(features(x)): (N, num_features, H/32, W/32).
    Var forward_features(const Var& x) override {
        MEDIMG_CHECK(x.shape().rank() == 4 && x.size(1) == o_.in_channels, ShapeError, "DenseNet: input must be (N, ",
                     o_.in_channels, ", H, W), got ", x.shape());
        return autograd::relu((*features_)(x));
    }
    Var forward_head(const Var& features, bool pre_logits = false) override {
        auto pooled = autograd::flatten(autograd::adaptive_avg_pool2d(features, 1, 1));
        return pre_logits ? pooled : (*classifier_)(pooled);
    }
    std::int64_t num_features() const override { return num_features_; }
    /// features.norm5 (1/32 of the side; pytorch-grad-cam's model.features[-1]) from 97 px up,
    /// then the third and second dense blocks (1/16, 1/8).
    std::string default_cam_layer(std::int64_t image_size) const override {
        return detail::deepest_layer_at_least_4(image_size,
                                                {{32, "features.norm5"}, {16, "features.denseblock3"}, {8, "features.denseblock2"}});
    }
    const DenseNetOptions& options() const { return o_; }
    Linear<T, B>& classifier() { return *classifier_; }

private:
    // torchvision: kaiming_normal_ (fan_in, gain sqrt 2) for every conv; BN 1 / 0 (as built);
    // classifier bias 0 (its weight keeps PyTorch's default init).
    void reset_parameters(Rng& rng) {
        for (auto& [name, p] : this->named_parameters())
            if (p.value().rank() == 4) init::refill(p.value(), [&](Tensor<T, Cpu>& h) { init::kaiming_normal(h, rng); });
        classifier_->bias().value().zero_();
    }

    DenseNetOptions o_;
    std::int64_t num_features_ = 0;
    std::shared_ptr<Sequential<T, B>> features_;
    std::shared_ptr<Linear<T, B>> classifier_;
};

/// torchvision.models.densenet121's layout (7,978,856 parameters at 1000 classes).
template <class T = float, class B = Cpu>
std::shared_ptr<DenseNet<T, B>> densenet121(DenseNetOptions o = {}) {
    o.growth_rate = 32;
    o.block_config = {6, 12, 24, 16};
    o.num_init_features = 64;
    o.bn_size = 4;
    return std::make_shared<DenseNet<T, B>>(o);
}

}  // namespace medimg::nn
