// SPDX-License-Identifier: MIT
// autograd/loss.hpp: differentiable losses (namespace medimg::loss). Cross-entropy is fused with
// log-softmax for stability and follows torch.nn.functional.cross_entropy exactly (formula in
// ops/softmax.hpp): mean reduction, optional class weights, label smoothing.
#pragma once

#include <cstdint>

#include "medimg/autograd/functions.hpp"

namespace medimg::loss {

template <class T, class B = Cpu>
struct CrossEntropyOptions {
    Tensor<T, B> weight;           // (C) class weights, or undefined for 1
    double label_smoothing = 0.0;  // in [0, 1]
};

/// logits: (N, C), target: (N) class indices in [0, C) -> scalar mean loss.
template <class T, class B>
autograd::Var<T, B> cross_entropy(const autograd::Var<T, B>& logits_in, const Tensor<std::int64_t, B>& target,
                                  const CrossEntropyOptions<T, B>& opt = {}) {
    const autograd::Var<T, B> logits = autograd::detail::widened(logits_in);  // float32, as autocast
    const ops::CrossEntropyParams p{opt.label_smoothing};
    auto logp = Tensor<T, B>::empty(logits.shape());
    auto loss = Tensor<T, B>::empty(Shape{});
    ops::cross_entropy_forward(logits.value(), target, opt.weight, p, logp, loss);
    auto ln = logits.node();
    const Tensor<T, B> weight = opt.weight;
    return autograd::Var<T, B>::from_op("cross_entropy", std::move(loss), {ln},
                                        [ln, logp, target, weight, p](const Tensor<T, B>& dloss) {
        auto dx = Tensor<T, B>::empty(logp.shape());
        ops::cross_entropy_backward(logp, target, weight, p, dloss, dx);
        ln->accumulate(dx, true);
    });
}

}  // namespace medimg::loss
