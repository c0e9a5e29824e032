// SPDX-License-Identifier: MIT
// nn/inference.hpp: the inference path of a convolution followed by batch normalisation.
// In evaluation mode BatchNorm2d is an affine map per channel with fixed statistics,
//   bn(z)_c = gamma_c (z_c - mean_c) / sqrt(var_c + eps) + beta_c,
// so bn(conv(x)) is one convolution with the filters of output channel c scaled by
// s_c = gamma_c / sqrt(var_c + eps) and the bias  beta_c + (b_c - mean_c) s_c  (b = the conv's own
// bias or 0): what PyTorch's torch.fx / torch.ao fuse_conv_bn_eval computes. ConvBn folds once,
// in double, into a cpu::FoldedConv (pre-packed filters, fused bias + residual + ReLU epilogue,
// cpu/inference.hpp) and folds again only when the versions of the six tensors it read
// (conv weight and bias, BN weight, bias, running mean and variance; Tensor::version) change, so
// training steps, load_state_dict and inference can alternate freely.
// It applies (active()) when all of these hold, otherwise the caller runs the modules as usual:
//   - fused_inference() is on (the default; MEDIMG_FUSE=0 in the environment turns it off: A/B
//     runs, and the tests that compare both paths),
//   - the CPU backend (the CUDA backend keeps cuDNN's separate convolution and BN: docs/gpu.md),
//   - gradients are off (NoGrad) and the BN module is in evaluation mode,
//   - no forward hook is registered on the modules involved (a hook must see their outputs),
//   - groups = 1 and the input holds float32 (not half) values.
// The results equal the unfused modules' within float rounding (the folded filters are rounded
// once; tests/cpu/test_inference.cpp checks every ResNet depth).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "medimg/cpu/inference.hpp"
#include "medimg/nn/layers.hpp"

namespace medimg::nn {

/// Whether eval-mode convolution + BatchNorm pairs run folded under NoGrad (see the file header).
/// Process-wide; not meant to change while a forward pass runs.
inline bool& fused_inference() {
    static bool on = detail::fuse_by_default();
    return on;
}

namespace detail {

template <class T, class B>
class ConvBn {
public:
    using Var = autograd::Var<T, B>;
    ConvBn() = default;
    /// `outer`: a module that wraps the pair (a downsample Sequential) whose hooks must see its output.
    ConvBn(std::shared_ptr<Conv2d<T, B>> conv, std::shared_ptr<BatchNorm2d<T, B>> bn, const Module<T, B>* outer = nullptr)
        : conv_(std::move(conv)), bn_(std::move(bn)), outer_(outer) {}

    /// Whether run() may replace bn(conv(x)) for this input now.
    bool active(const Var& x) const {
        if constexpr (!std::is_same_v<B, Cpu>) {
            return false;
        } else {
            return conv_ && fused_inference() && !autograd::is_grad_enabled() && !bn_->is_training() &&
                   conv_->options().groups == 1 && !x.value().half_storage() && conv_->forward_hook_count() == 0 &&
                   bn_->forward_hook_count() == 0 && (!outer_ || outer_->forward_hook_count() == 0);
        }
    }

    /// act(bn(conv(x)) + residual) with the folded convolution; requires active(x).
    Var run(const Var& x, const Var* residual, bool relu) {
        if constexpr (std::is_same_v<B, Cpu>) {
            refresh();
            const auto& o = conv_->options();
            const ops::Conv2dParams p{o.stride, o.stride, o.padding, o.padding, o.dilation, o.dilation, 1};
            const Shape ys = ops::conv2d_output_shape("ConvBn", x.shape(), folded_.weight_shape(), p);
            const T* res = nullptr;
            if (residual) {
                MEDIMG_CHECK(residual->shape() == ys, ShapeError, "ConvBn: residual ", residual->shape(),
                             " does not match the convolution's output ", ys);
                res = residual->value().data();
            }
            auto y = Tensor<T, Cpu>::empty(ys);
            folded_.forward(x.value(), res, relu, y);
            return Var(std::move(y));
        } else {
            throw ValueError("ConvBn::run: the folded path is CPU-only");
        }
    }

private:
    /// The tensors the folded form was computed from, by identity and version.
    struct Seen {
        const void* where = nullptr;
        std::uint64_t version = 0;
        bool operator==(const Seen& o) const { return where == o.where && version == o.version; }
    };
    std::vector<Seen> current() const {
        std::vector<Seen> s;
        auto add = [&](const Tensor<T, B>& t) { s.push_back({t.defined() ? t.raw() : nullptr, t.version()}); };
        add(conv_->weight().value());
        add(conv_->bias().defined() ? conv_->bias().value() : Tensor<T, B>());
        add(bn_->weight().value());
        add(bn_->bias().value());
        add(bn_->running_mean());
        add(bn_->running_var());
        return s;
    }
    bool all_tracked() const {
        auto ok = [](const Tensor<T, B>& t) { return t.version_tracked(); };
        return ok(conv_->weight().value()) && (!conv_->bias().defined() || ok(conv_->bias().value())) &&
               ok(bn_->weight().value()) && ok(bn_->bias().value()) && ok(bn_->running_mean()) && ok(bn_->running_var());
    }
    void refresh() {
        auto now = current();
        if (built_ && all_tracked() && now == seen_) return;  // an untracked tensor: fold every time
        const auto& w = conv_->weight().value();
        const std::int64_t Co = w.size(0), per = w.numel() / std::max<std::int64_t>(Co, 1);
        const double eps = bn_->options().eps;
        const T* gamma = bn_->weight().value().data();
        const T* beta = bn_->bias().value().data();
        const T* mean = bn_->running_mean().data();
        const T* var = bn_->running_var().data();
        const T* cb = conv_->bias().defined() ? conv_->bias().value().data() : nullptr;
        std::vector<T> fw(static_cast<std::size_t>(w.numel())), fb(static_cast<std::size_t>(Co));
        for (std::int64_t c = 0; c < Co; ++c) {
            const double s = static_cast<double>(gamma[c]) / std::sqrt(static_cast<double>(var[c]) + eps);
            for (std::int64_t i = 0; i < per; ++i)
                fw[static_cast<std::size_t>(c * per + i)] = static_cast<T>(static_cast<double>(w.data()[c * per + i]) * s);
            fb[static_cast<std::size_t>(c)] =
                static_cast<T>(static_cast<double>(beta[c]) + ((cb ? static_cast<double>(cb[c]) : 0.0) - static_cast<double>(mean[c])) * s);
        }
        const auto& o = conv_->options();
        folded_.assign(fw.data(), fb.data(), w.shape(), ops::Conv2dParams{o.stride, o.stride, o.padding, o.padding, o.dilation, o.dilation, 1});
        seen_ = std::move(now);
        built_ = true;
    }

    std::shared_ptr<Conv2d<T, B>> conv_;
    std::shared_ptr<BatchNorm2d<T, B>> bn_;
    const Module<T, B>* outer_ = nullptr;
    std::conditional_t<std::is_same_v<B, Cpu>, cpu::FoldedConv<T>, int> folded_{};
    std::vector<Seen> seen_;
    bool built_ = false;
};

}  // namespace detail
}  // namespace medimg::nn
