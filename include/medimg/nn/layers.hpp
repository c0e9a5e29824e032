// SPDX-License-Identifier: MIT
// nn/layers.hpp: the layers a ResNet is built from, as torch.nn modules with PyTorch's names,
// defaults and initialisation: Conv2d, BatchNorm2d, Linear, ReLU, MaxPool2d, AdaptiveAvgPool2d.
// Each forward calls one autograd function (autograd/functions.hpp). Options structs document
// the defaults (libtorch's habit).
#pragma once

#include <cstdint>
#include <memory>

#include "medimg/autograd/functions.hpp"
#include "medimg/nn/init.hpp"
#include "medimg/nn/module.hpp"

namespace medimg::nn {

struct Conv2dOptions {
    std::int64_t in_channels, out_channels, kernel_size;
    std::int64_t stride = 1, padding = 0, dilation = 1;
    bool bias = true;
};

/// weight (out, in, k, k) [+ bias (out)], PyTorch's default init unless re-initialised.
template <class T, class B = Cpu>
class Conv2d : public Module<T, B> {
public:
    using Var = autograd::Var<T, B>;
    Conv2d(const Conv2dOptions& o, Rng& rng) : o_(o) {
        MEDIMG_CHECK(o.in_channels >= 1 && o.out_channels >= 1 && o.kernel_size >= 1, ValueError,
                     "Conv2d: channels and kernel_size must be >= 1, got in ", o.in_channels, ", out ", o.out_channels,
                     ", kernel ", o.kernel_size);
        const Shape ws{o.out_channels, o.in_channels, o.kernel_size, o.kernel_size};
        const auto fin = init::fan_in(ws);
        weight_ = this->register_parameter(
            "weight", init::make<T, B>(ws, [&](Tensor<T, Cpu>& t) { init::default_uniform(t, fin, rng); }));
        if (o.bias)
            bias_ = this->register_parameter(
                "bias", init::make<T, B>(Shape{o.out_channels}, [&](Tensor<T, Cpu>& t) { init::default_uniform(t, fin, rng); }));
    }
    Var forward(const Var& x) override {
        const ops::Conv2dParams p{o_.stride, o_.stride, o_.padding, o_.padding, o_.dilation, o_.dilation};
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
        if (this->is_training()) {
            autograd::NoGrad guard;
            auto one = Tensor<T, B>::ones(Shape{});
            ops::add_(num_batches_tracked_, one);
        }
        return autograd::batch_norm(x, weight_, bias_, running_mean_, running_var_, this->is_training(), o_.momentum,
                                    o_.eps);
    }
    Var& weight() { return weight_; }
    Var& bias() { return bias_; }
    Tensor<T, B>& running_mean() { return running_mean_; }
    Tensor<T, B>& running_var() { return running_var_; }

private:
    BatchNorm2dOptions o_;
    Var weight_, bias_;
    Tensor<T, B> running_mean_, running_var_, num_batches_tracked_;
};

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

private:
    Var weight_, bias_;
};

template <class T, class B = Cpu>
class ReLU : public Module<T, B> {
public:
    autograd::Var<T, B> forward(const autograd::Var<T, B>& x) override { return autograd::relu(x); }
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
