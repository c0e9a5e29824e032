// SPDX-License-Identifier: MIT
// nn/functional.hpp: what a program does with a trained classifier, so that no user rebuilds what
// medimg-predict does:
//   functional::softmax(logits, T)       row-wise softmax(z / T) of (N, K) logits, on the host, in double
//   predict_proba(model, x, T)           the model in eval mode, under NoGrad, on a batch x (N, C, H, W)
//                                        of its backend: class probabilities (N, K) on the host, in double
// T is the temperature of temperature scaling (1: the softmax as it is; medimg-train stores the
// fitted one in best.safetensors' metadata, train::calibration_temperature reads it).
// Deliberately not here: preprocessing (train::Preprocessing::load_eval), the arg-max.
#pragma once

#include <cmath>

#include "medimg/autograd/engine.hpp"
#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"
#include "medimg/nn/module.hpp"
#include "medimg/ops/softmax.hpp"

namespace medimg::nn {

namespace functional {
/// softmax(z / temperature) of every row of (N, K) logits, computed as exp(log_softmax) (no
/// overflow for large logits; the exponential in double). Requires temperature > 0 and finite.
template <class T>
Tensor<double, Cpu> softmax(const Tensor<T, Cpu>& logits, double temperature = 1.0) {
    MEDIMG_CHECK(logits.rank() == 2, ShapeError, "functional::softmax: logits must be (N, K), got ", logits.shape());
    MEDIMG_CHECK(temperature > 0 && std::isfinite(temperature), ValueError, "functional::softmax: temperature must be > 0, got ",
                 temperature);
    auto scaled = logits.clone();
    if (temperature != 1.0)
        for (std::int64_t i = 0; i < scaled.numel(); ++i) scaled[i] = static_cast<T>(scaled[i] / temperature);
    auto logp = Tensor<T, Cpu>::empty(scaled.shape());
    ops::log_softmax_forward(scaled, logp);
    auto p = Tensor<double, Cpu>::empty(logp.shape());
    for (std::int64_t i = 0; i < logp.numel(); ++i) p[i] = std::exp(static_cast<double>(logp[i]));
    return p;
}
}  // namespace functional

/// Class probabilities (N, K) of a batch x for a classifier on backend B, on the host: the model
/// is put in eval mode (and left there), gradients are not recorded.
template <class T, class B>
Tensor<double, Cpu> predict_proba(Module<T, B>& model, const Tensor<T, B>& x, double temperature = 1.0) {
    autograd::NoGrad guard;
    model.eval();
    const auto logits = model(autograd::Var<T, B>(x)).value();
    if constexpr (std::is_same_v<B, Cpu>)
        return functional::softmax(logits, temperature);
    else
        return functional::softmax(logits.template to<Cpu>(), temperature);
}

}  // namespace medimg::nn
