// SPDX-License-Identifier: MIT
// nn/init.hpp: weight initialisation as torch.nn.init and torchvision define it, drawn from a
// medimg::Rng (the same seed gives the same weights everywhere; the numbers differ from
// PyTorch's generator, the distributions do not).
//   kaiming_normal (He et al. 2015), gain sqrt(2) for ReLU: std = sqrt(2 / fan)
//   PyTorch's default Linear/Conv init: weight U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform
//   with a = sqrt(5)), bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
#pragma once

#include <cmath>
#include <utility>
#include <cstdint>

#include "medimg/core/rng.hpp"
#include "medimg/core/tensor.hpp"

namespace medimg::nn::init {

/// fan_in = dims[1] * receptive field, fan_out = dims[0] * receptive field (torch's definition).
inline std::int64_t fan_in(const Shape& s) {
    std::int64_t rf = 1;
    for (int i = 2; i < s.rank(); ++i) rf *= s[i];
    return s.rank() >= 2 ? s[1] * rf : s[0];
}
inline std::int64_t fan_out(const Shape& s) {
    std::int64_t rf = 1;
    for (int i = 2; i < s.rank(); ++i) rf *= s[i];
    return s[0] * rf;
}

enum class FanMode { fan_in, fan_out };

/// Normal(0, sqrt(2 / fan)): torchvision's ResNet conv init uses fan_out.
template <class T>
void kaiming_normal(Tensor<T, Cpu>& w, Rng& rng, FanMode mode = FanMode::fan_in) {
    const double fan = static_cast<double>(mode == FanMode::fan_in ? fan_in(w.shape()) : fan_out(w.shape()));
    rng.fill_normal(w, 0.0, std::sqrt(2.0 / fan));
}

/// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for a weight, and for its bias with the weight's fan_in.
template <class T>
void default_uniform(Tensor<T, Cpu>& t, std::int64_t fan_in_of_weight, Rng& rng) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in_of_weight));
    rng.fill_uniform(t, -bound, bound);
}

/// Normal(mean, std) truncated to [lo, hi] (absolute bounds, as torch.nn.init.trunc_normal_ and
/// timm's trunc_normal_, default [-2, 2]) by redrawing values outside: the distribution is the
/// same, the draws differ from torch's inverse-CDF method.
template <class T>
void trunc_normal(Tensor<T, Cpu>& t, Rng& rng, double std, double mean = 0.0, double lo = -2.0, double hi = 2.0) {
    for (std::int64_t i = 0; i < t.numel(); ++i) {
        double v = 0.0;
        do v = rng.normal(mean, std);
        while (v < lo || v > hi);
        t[i] = static_cast<T>(v);
    }
}

/// U(-b, b), b = sqrt(6 / (fan_in + fan_out)) (torch.nn.init.xavier_uniform_, Glorot & Bengio 2010).
template <class T>
void xavier_uniform(Tensor<T, Cpu>& w, Rng& rng) {
    const double b = std::sqrt(6.0 / static_cast<double>(fan_in(w.shape()) + fan_out(w.shape())));
    rng.fill_uniform(w, -b, b);
}

/// A host-initialised tensor moved to backend B (initialisation always draws on the host so the
/// numbers do not depend on the device).
template <class T, class B, class F>
Tensor<T, B> make(const Shape& s, F&& fill) {
    auto t = Tensor<T, Cpu>::empty(s);
    fill(t);
    if constexpr (std::is_same_v<B, Cpu>)
        return t;
    else
        return t.template to<B>();
}

/// Re-initialises dst in place from a host fill (a model's reset_parameters).
template <class T, class B, class F>
void refill(Tensor<T, B>& dst, F&& fill) {
    dst.copy_(make<T, B>(dst.shape(), std::forward<F>(fill)));
}

}  // namespace medimg::nn::init
