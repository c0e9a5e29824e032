// SPDX-License-Identifier: MIT
// nn/layers.hpp: the layers the models are built from, as torch.nn modules with PyTorch's names,
// defaults and initialisation: Conv2d (groups included), BatchNorm2d, Linear, ReLU, SiLU, Sigmoid,
// MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Dropout, Identity.
// Each forward calls one autograd function (autograd/functions.hpp). Options structs document
// the defaults (libtorch's habit).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "medimg/autograd/functions.hpp"
#include "medimg/autograd/sync_batch_norm.hpp"
#include "medimg/nn/init.hpp"
#include "medimg/nn/module.hpp"

namespace medimg::nn {

namespace detail {
/// False when MEDIMG_FUSE=0 is in the environment: the fused paths then stay off by default
/// (A/B runs; see fused_batch_norm_relu() and fused_inference()).
inline bool fuse_by_default() {
    const char* e = std::getenv("MEDIMG_FUSE");
    return !(e && std::string(e) == "0");
}
}  // namespace detail

/// Whether BatchNorm2d::forward_relu runs batch norm, the residual add and ReLU as one op
/// (autograd::batch_norm_relu) where no hook needs the batch norm's own output. On by default;
/// MEDIMG_FUSE=0 turns it off. Process-wide; not meant to change while a forward pass runs.
inline bool& fused_batch_norm_relu() {
    static bool on = detail::fuse_by_default();
    return on;
}

struct Conv2dOptions {
    std::int64_t in_channels, out_channels, kernel_size;
    std::int64_t stride = 1, padding = 0, dilation = 1;
    bool bias = true;
    std::int64_t groups = 1;  // in_channels: depthwise
};

/// weight (out, in / groups, k, k) [+ bias (out)], PyTorch's default init unless re-initialised.
template <class T, class B = Cpu>
class Conv2d : public Module<T, B> {
public:
    using Var = autograd::Var<T, B>;
    Conv2d(const Conv2dOptions& o, Rng& rng) : o_(o) {
        MEDIMG_CHECK(o.in_channels >= 1 && o.out_channels >= 1 && o.kernel_size >= 1 && o.groups >= 1, ValueError,
                     "Conv2d: channels, kernel_size and groups must be >= 1, got in ", o.in_channels, ", out ",
                     o.out_channels, ", kernel ", o.kernel_size, ", groups ", o.groups);
        MEDIMG_CHECK(o.in_channels % o.groups == 0 && o.out_channels % o.groups == 0, ValueError, "Conv2d: groups ",
                     o.groups, " must divide in_channels ", o.in_channels, " and out_channels ", o.out_channels);
        const Shape ws{o.out_channels, o.in_channels / o.groups, o.kernel_size, o.kernel_size};
        const auto fin = init::fan_in(ws);
        weight_ = this->register_parameter(
            "weight", init::make<T, B>(ws, [&](Tensor<T, Cpu>& t) { init::default_uniform(t, fin, rng); }));
        if (o.bias)
            bias_ = this->register_parameter(
                "bias", init::make<T, B>(Shape{o.out_channels}, [&](Tensor<T, Cpu>& t) { init::default_uniform(t, fin, rng); }));
    }
    Var forward(const Var& x) override {
        const ops::Conv2dParams p{o_.stride, o_.stride, o_.padding, o_.padding, o_.dilation, o_.dilation, o_.groups};
        return autograd::conv2d(x, weight_, bias_, p);
    }
    Var& weight() { return weight_; }
    Var& bias() { return bias_; }
    const Conv2dOptions& options() const { return o_; }

private:
    Conv2dOptions o_;
    Var weight_, bias_;
};

struct BatchNorm2dOptions {
    std::int64_t num_features;
    double eps = 1e-5;
    double momentum = 0.1;
};

/// weight (C) = 1, bias (C) = 0; buffers running_mean (C) = 0, running_var (C) = 1,
/// num_batches_tracked (scalar) = 0, incremented on every training forward.
template <class T, class B = Cpu>
class BatchNorm2d : public Module<T, B> {
public:
    using Var = autograd::Var<T, B>;
    explicit BatchNorm2d(const BatchNorm2dOptions& o) : o_(o) {
        MEDIMG_CHECK(o.num_features >= 1 && o.eps > 0 && o.momentum >= 0 && o.momentum <= 1, ValueError,
                     "BatchNorm2d: need num_features >= 1, eps > 0, momentum in [0, 1]; got ", o.num_features, ", ", o.eps,
                     ", ", o.momentum);
        const Shape c{o.num_features};
        weight_ = this->register_parameter("weight", Tensor<T, B>::ones(c));
        bias_ = this->register_parameter("bias", Tensor<T, B>::zeros(c));
        running_mean_ = this->register_buffer("running_mean", Tensor<T, B>::zeros(c));
        running_var_ = this->register_buffer("running_var", Tensor<T, B>::ones(c));
        num_batches_tracked_ = this->register_buffer("num_batches_tracked", Tensor<T, B>::zeros(Shape{}), true);
    }
    Var forward(const Var& x) override {
        MEDIMG_CHECK(x.shape().rank() == 4, ShapeError, "BatchNorm2d: input must be (N, C, H, W), got ", x.shape());
        if (this->is_training()) count_batch();
        if (this->is_training() && replicas_)
            return autograd::sync_batch_norm(x, weight_, bias_, running_mean_, running_var_, o_.momentum, o_.eps, replicas_);
        return autograd::batch_norm(x, weight_, bias_, running_mean_, running_var_, this->is_training(), o_.momentum,
                                    o_.eps);
    }
    /// relu(this(x) + residual) (residual may be undefined: relu(this(x))), what a ResNet block
    /// does after each convolution. One op (autograd::batch_norm_relu) when fused_batch_norm_relu()
    /// is on and no hook on this module must see its own output; else this module, add and ReLU.
    Var forward_relu(const Var& x, const Var& residual = Var()) {
        if (!fused_batch_norm_relu() || this->forward_hook_count() > 0 || this->backward_hook_count() > 0 || replicas_) {
            Var y = (*this)(x);
            return autograd::relu(residual.defined() ? autograd::add(y, residual) : y);
        }
        MEDIMG_CHECK(x.shape().rank() == 4, ShapeError, "BatchNorm2d: input must be (N, C, H, W), got ", x.shape());
        MEDIMG_CHECK(!residual.defined() || residual.shape() == x.shape(), ShapeError, "BatchNorm2d::forward_relu: residual ",
                     residual.shape(), " does not match input ", x.shape());
        if (this->is_training()) count_batch();
        return autograd::batch_norm_relu(x, weight_, bias_, running_mean_, running_var_, this->is_training(), o_.momentum,
                                         o_.eps, residual);
    }
    Var& weight() { return weight_; }
    Var& bias() { return bias_; }
    Tensor<T, B>& running_mean() { return running_mean_; }
    Tensor<T, B>& running_var() { return running_var_; }
    const BatchNorm2dOptions& options() const { return o_; }
    /// SyncBatchNorm: in training, statistics over every replica's batch, summed through `r`
    /// (autograd/sync_batch_norm.hpp); null: this process's batch alone. See convert_sync_batch_norm.
    void set_replicas(std::shared_ptr<autograd::ReplicaSum> r) { replicas_ = std::move(r); }
    bool synchronized() const { return replicas_ != nullptr; }
    /// num_batches_tracked += 1, what every training forward does (for code that normalises with
    /// this module's parameters and statistics without calling forward, e.g. a fused op). The
    /// running statistics that forward then updates count as written (Tensor::version).
    void count_batch() {
        autograd::NoGrad guard;
        auto one = Tensor<T, B>::ones(Shape{});
        ops::add_(num_batches_tracked_, one);
        num_batches_tracked_.bump_version();
        running_mean_.bump_version();
        running_var_.bump_version();
    }

private:
    BatchNorm2dOptions o_;
    Var weight_, bias_;
    Tensor<T, B> running_mean_, running_var_, num_batches_tracked_;
    std::shared_ptr<autograd::ReplicaSum> replicas_;
};

/// Makes every BatchNorm2d in `m` a SyncBatchNorm over `r` (torch's
/// SyncBatchNorm.convert_sync_batch_norm; here the same module switches how it computes its training
/// statistics, so names, state_dict and checkpoints do not change). Returns how many it switched.
template <class T, class B>
std::int64_t convert_sync_batch_norm(Module<T, B>& m, std::shared_ptr<autograd::ReplicaSum> r) {
    std::int64_t n = 0;
    for (auto& [name, sub] : m.named_modules())
        if (auto* bn = dynamic_cast<BatchNorm2d<T, B>*>(sub)) {
            bn->set_replicas(r);
            ++n;
        }
    return n;
}

struct LinearOptions {
    std::int64_t in_features, out_features;
    bool bias = true;
};

/// y = x W^T + b; W (out, in), b (out); PyTorch's default init.
template <class T, class B = Cpu>
class Linear : public Module<T, B> {
public:
    using Var = autograd::Var<T, B>;
    Linear(const LinearOptions& o, Rng& rng) {
        MEDIMG_CHECK(o.in_features >= 1 && o.out_features >= 1, ValueError, "Linear: features must be >= 1, got in ",
                     o.in_features, ", out ", o.out_features);
        const Shape ws{o.out_features, o.in_features};
        weight_ = this->register_parameter(
            "weight", init::make<T, B>(ws, [&](Tensor<T, Cpu>& t) { init::default_uniform(t, o.in_features, rng); }));
        if (o.bias)
            bias_ = this->register_parameter("bias", init::make<T, B>(Shape{o.out_features}, [&](Tensor<T, Cpu>& t) {
                                                 init::default_uniform(t, o.in_features, rng);
                                             }));
    }
    Var forward(const Var& x) override { return autograd::linear(x, weight_, bias_); }
    Var& weight() { return weight_; }
    Var& bias() { return bias_; }
    /// Draws PyTorch's default init again (torch.nn.Linear.reset_parameters): weight and bias
    /// from U(-1/sqrt(in_features), 1/sqrt(in_features)), in place.
    void reset_parameters(Rng& rng) {
        const std::int64_t in = weight_.value().size(1);
        init::refill(weight_.value(), [&](Tensor<T, Cpu>& t) { init::default_uniform(t, in, rng); });
        if (bias_.defined()) init::refill(bias_.value(), [&](Tensor<T, Cpu>& t) { init::default_uniform(t, in, rng); });
    }

private:
    Var weight_, bias_;
};

template <class T, class B = Cpu>
class ReLU : public Module<T, B> {
public:
    autograd::Var<T, B> forward(const autograd::Var<T, B>& x) override { return autograd::relu(x); }
};

template <class T, class B = Cpu>
class SiLU : public Module<T, B> {
public:
    autograd::Var<T, B> forward(const autograd::Var<T, B>& x) override { return autograd::silu(x); }
};

template <class T, class B = Cpu>
class Sigmoid : public Module<T, B> {
public:
    autograd::Var<T, B> forward(const autograd::Var<T, B>& x) override { return autograd::sigmoid(x); }
};

/// Passes its input through (torch.nn.Identity): a named placeholder, e.g. a removed head.
template <class T, class B = Cpu>
class Identity : public Module<T, B> {
public:
    autograd::Var<T, B> forward(const autograd::Var<T, B>& x) override { return x; }
};

/// torch.nn.Dropout(p): inverted dropout in training mode, identity in eval mode. The mask comes
/// from the module's own generator (seeded at construction; reseed() to restart the stream), not
/// from a global one.
template <class T, class B = Cpu>
class Dropout : public Module<T, B> {
public:
    explicit Dropout(double p = 0.5, std::uint64_t seed = 0) : p_(p), rng_(seed) {
        MEDIMG_CHECK(p >= 0.0 && p <= 1.0, ValueError, "Dropout: probability must be in [0, 1], got ", p);
    }
    autograd::Var<T, B> forward(const autograd::Var<T, B>& x) override {
        return autograd::dropout(x, p_, this->is_training(), rng_);
    }
    void reseed(std::uint64_t seed) { rng_.reseed(seed); }
    double p() const { return p_; }
    void set_p(double p) {
        MEDIMG_CHECK(p >= 0.0 && p <= 1.0, ValueError, "Dropout: probability must be in [0, 1], got ", p);
        p_ = p;
    }

private:
    double p_;
    Rng rng_;
};

template <class T, class B = Cpu>
class AvgPool2d : public Module<T, B> {
public:
    explicit AvgPool2d(std::int64_t kernel, std::int64_t stride = 0)
        : p_{kernel, kernel, stride ? stride : kernel, stride ? stride : kernel} {}
    autograd::Var<T, B> forward(const autograd::Var<T, B>& x) override { return autograd::avg_pool2d(x, p_); }

private:
    ops::AvgPool2dParams p_;
};

template <class T, class B = Cpu>
class MaxPool2d : public Module<T, B> {
public:
    MaxPool2d(std::int64_t kernel, std::int64_t stride, std::int64_t padding = 0)
        : p_{kernel, kernel, stride, stride, padding, padding} {}
    autograd::Var<T, B> forward(const autograd::Var<T, B>& x) override { return autograd::max_pool2d(x, p_); }

private:
    ops::MaxPool2dParams p_;
};

template <class T, class B = Cpu>
class AdaptiveAvgPool2d : public Module<T, B> {
public:
    explicit AdaptiveAvgPool2d(std::int64_t out_h = 1, std::int64_t out_w = 1) : h_(out_h), w_(out_w) {}
    autograd::Var<T, B> forward(const autograd::Var<T, B>& x) override {
        return autograd::adaptive_avg_pool2d(x, h_, w_);
    }

private:
    std::int64_t h_, w_;
};

}  // namespace medimg::nn
