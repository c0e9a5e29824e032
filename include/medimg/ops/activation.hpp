// SPDX-License-Identifier: MIT
// ops/activation.hpp: the front door for the smooth activations EfficientNet uses, as torch.nn:
//   sigmoid(x) = 1 / (1 + exp(-x))                 backward: dx = dy * y * (1 - y)   (y = sigmoid(x))
//   silu(x)    = x * sigmoid(x)  (Swish, SiLU)     backward: dx = dy * s * (1 + x * (1 - s)), s = sigmoid(x)
// Forward and backward of silu read x (not y): s cannot be recovered from silu(x) alone.
// Each function checks shapes once, then forwards to ActivationImpl<B> (cpu/activation.hpp; the
// CUDA twin in cuda/activation.cuh). Float32 storage only (autograd widens half activations).
#pragma once

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"
#include "medimg/ops/elementwise.hpp"

namespace medimg::ops {

template <class B>
struct ActivationImpl;

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

}  // namespace medimg::ops

#include "medimg/cpu/activation.hpp"
#if MEDIMG_HAS_CUDA
#  include "medimg/cuda/activation.cuh"
#endif
