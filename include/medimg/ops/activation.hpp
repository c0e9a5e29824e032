// SPDX-License-Identifier: MIT
// ops/activation.hpp: the front door for the smooth activations EfficientNet uses, as torch.nn:
//   sigmoid(x) = 1 / (1 + exp(-x))                 backward: dx = dy * y * (1 - y)   (y = sigmoid(x))
//   silu(x)    = x * sigmoid(x)  (Swish, SiLU)     backward: dx = dy * s * (1 + x * (1 - s)), s = sigmoid(x)
//   gelu(x)    = x * Phi(x) = x / 2 * (1 + erf(x / sqrt 2))   (torch.nn.GELU(), Hendrycks & Gimpel 2016)
//                backward: dx = dy * (Phi(x) + x * phi(x)),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
//   gelu tanh  = x / 2 * (1 + tanh(u)), u = sqrt(2 / pi) (x + 0.044715 x^3)  (GELU(approximate='tanh'))
//                backward: dx = dy * (1/2 (1 + tanh u) + x/2 (1 - tanh^2 u) sqrt(2 / pi) (1 + 3 * 0.044715 x^2))
// Forward and backward of silu and gelu read x (not y): the backward cannot be recovered from y.
// Each function checks shapes once, then forwards to ActivationImpl<B> (cpu/activation.hpp; the
// CUDA twin in cuda/activation.cuh). Float32 storage only (autograd widens half activations).
#pragma once

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"
#include "medimg/ops/elementwise.hpp"

namespace medimg::ops {

template <class B>
struct ActivationImpl;

/// The two forms of GELU torch.nn.GELU offers (its `approximate` argument: 'none' | 'tanh').
enum class Gelu { erf, tanh };

/// y = sigmoid(x) (y may be x).
template <class T, class B>
void sigmoid_forward(const Tensor<T, B>& x, Tensor<T, B>& y) {
    detail::check_same("sigmoid_forward", "x", x, "y", y);
    ActivationImpl<B>::sigmoid_forward(x.data(), y.data(), x.numel());
}
/// dx = dy * y * (1 - y), y the forward output.  Ensures: dx overwritten.
template <class T, class B>
void sigmoid_backward(const Tensor<T, B>& y, const Tensor<T, B>& dy, Tensor<T, B>& dx) {
    detail::check_same("sigmoid_backward", "y", y, "dy", dy);
    detail::check_same("sigmoid_backward", "y", y, "dx", dx);
    ActivationImpl<B>::sigmoid_backward(y.data(), dy.data(), dx.data(), y.numel());
}
/// y = x * sigmoid(x).
template <class T, class B>
void silu_forward(const Tensor<T, B>& x, Tensor<T, B>& y) {
    detail::check_same("silu_forward", "x", x, "y", y);
    ActivationImpl<B>::silu_forward(x.data(), y.data(), x.numel());
}
/// dx = dy * s * (1 + x * (1 - s)), s = sigmoid(x), x the forward input.  Ensures: dx overwritten.
template <class T, class B>
void silu_backward(const Tensor<T, B>& x, const Tensor<T, B>& dy, Tensor<T, B>& dx) {
    detail::check_same("silu_backward", "x", x, "dy", dy);
    detail::check_same("silu_backward", "x", x, "dx", dx);
    ActivationImpl<B>::silu_backward(x.data(), dy.data(), dx.data(), x.numel());
}

/// y = gelu(x) in the chosen form (y may be x).
template <class T, class B>
void gelu_forward(const Tensor<T, B>& x, Tensor<T, B>& y, Gelu form = Gelu::erf) {
    detail::check_same("gelu_forward", "x", x, "y", y);
    ActivationImpl<B>::gelu_forward(x.data(), y.data(), x.numel(), form);
}
/// dx = dy * gelu'(x), x the forward input.  Ensures: dx overwritten.
template <class T, class B>
void gelu_backward(const Tensor<T, B>& x, const Tensor<T, B>& dy, Tensor<T, B>& dx, Gelu form = Gelu::erf) {
    detail::check_same("gelu_backward", "x", x, "dy", dy);
    detail::check_same("gelu_backward", "x", x, "dx", dx);
    ActivationImpl<B>::gelu_backward(x.data(), dy.data(), dx.data(), x.numel(), form);
}

}  // namespace medimg::ops

#include "medimg/cpu/activation.hpp"
#if MEDIMG_HAS_CUDA
#  include "medimg/cuda/activation.cuh"
#endif
