// SPDX-License-Identifier: MIT
// ops/batch_norm.hpp: the front door for batch normalisation over the channel axis (dim 1),
// as torch.nn.BatchNorm1d/2d. Statistics run over every axis but 1.
//   x: (N, C) or (N, C, H, W); gamma, beta, running_mean, running_var, save_mean, save_invstd: (C)
// Training: normalise with the batch mean and biased variance; update the running statistics as
//   running = (1 - momentum) * running + momentum * batch_stat, with the UNBIASED batch variance
//   (PyTorch's rule; https://pytorch.org/docs/stable/generated/torch.nn.BatchNorm2d.html).
// Inference: normalise with the running statistics.
// x, y, dy, dx share one storage: float32, or bf16 / fp16 on the GPU (mixed-precision activations;
// the per-channel tensors stay float32 and the arithmetic is float32 / double).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"
#include "medimg/ops/storage.hpp"

namespace medimg::ops {

template <class B>
struct BatchNormImpl;

namespace detail {
template <class T, class B>
void check_bn(const char* fn, const Tensor<T, B>& x, std::initializer_list<const Tensor<T, B>*> per_channel) {
    MEDIMG_CHECK(x.rank() == 2 || x.rank() == 4, ShapeError, fn, ": input must be (N, C) or (N, C, H, W), got ", x.shape());
    for (const auto* t : per_channel)
        MEDIMG_CHECK(!t->defined() || t->shape() == Shape{x.size(1)}, ShapeError, fn, ": per-channel tensor ", t->shape(),
                     " does not match the ", x.size(1), " channels of input ", x.shape());
}
}  // namespace detail

/// Training-mode forward.  Requires: at least 2 values per channel (else the variance is
/// undefined, as PyTorch also refuses).  Ensures: y, save_mean, save_invstd = 1/sqrt(var+eps)
/// overwritten; running stats (when defined) updated in place.
template <class T, class B>
void batch_norm_forward_training(const Tensor<T, B>& x, const Tensor<T, B>& gamma, const Tensor<T, B>& beta,
                                 Tensor<T, B>& running_mean, Tensor<T, B>& running_var, double momentum, double eps,
                                 Tensor<T, B>& y, Tensor<T, B>& save_mean, Tensor<T, B>& save_invstd) {
    detail::check_bn("batch_norm_forward_training", x, {&gamma, &beta, &running_mean, &running_var, &save_mean, &save_invstd});
    MEDIMG_CHECK(y.shape() == x.shape(), ShapeError, "batch_norm_forward_training: output ", y.shape(), " vs input ", x.shape());
    MEDIMG_CHECK(x.numel() / x.size(1) > 1, ValueError,
                 "batch_norm_forward_training: expected more than 1 value per channel when training, got input ", x.shape());
    detail::op_storage<T, B>("batch_norm_forward_training", true, {{"x", &x}, {"y", &y}});
    BatchNormImpl<B>::forward_training(x, gamma, beta, running_mean, running_var, momentum, eps, y, save_mean, save_invstd);
}

/// Inference-mode forward with the running statistics.  Ensures: y overwritten.
template <class T, class B>
void batch_norm_forward_inference(const Tensor<T, B>& x, const Tensor<T, B>& gamma, const Tensor<T, B>& beta,
                                  const Tensor<T, B>& running_mean, const Tensor<T, B>& running_var, double eps,
                                  Tensor<T, B>& y) {
    detail::check_bn("batch_norm_forward_inference", x, {&gamma, &beta, &running_mean, &running_var});
    MEDIMG_CHECK(running_mean.defined() && running_var.defined(), ValueError,
                 "batch_norm_forward_inference: needs running statistics");
    MEDIMG_CHECK(y.shape() == x.shape(), ShapeError, "batch_norm_forward_inference: output ", y.shape(), " vs input ", x.shape());
    detail::op_storage<T, B>("batch_norm_forward_inference", true, {{"x", &x}, {"y", &y}});
    BatchNormImpl<B>::forward_inference(x, gamma, beta, running_mean, running_var, eps, y);
}

/// Backward for either mode, given the mean and invstd the forward normalised with.
///   forward: xhat = (x - mean) * invstd;  y = gamma * xhat + beta
///   dbeta = sum(dy);  dgamma = sum(dy * xhat)
///   training (mean, invstd depend on x; M values per channel):
///     dx = gamma * invstd / M * (M * dy - dbeta - xhat * dgamma)
///   inference (constants): dx = gamma * invstd * dy
/// Ensures: dx, dgamma, dbeta overwritten (each may be undefined to skip it).
template <class T, class B>
void batch_norm_backward(const Tensor<T, B>& x, const Tensor<T, B>& dy, const Tensor<T, B>& gamma,
                         const Tensor<T, B>& mean, const Tensor<T, B>& invstd, bool training, Tensor<T, B>& dx,
                         Tensor<T, B>& dgamma, Tensor<T, B>& dbeta) {
    detail::check_bn("batch_norm_backward", x, {&gamma, &mean, &invstd, &dgamma, &dbeta});
    MEDIMG_CHECK(dy.shape() == x.shape() && (!dx.defined() || dx.shape() == x.shape()), ShapeError,
                 "batch_norm_backward: dy ", dy.shape(), " and dx ", dx.shape(), " must match input ", x.shape());
    detail::op_storage<T, B>("batch_norm_backward", true, {{"x", &x}, {"dy", &dy}, {"dx", &dx}});
    BatchNormImpl<B>::backward(x, dy, gamma, mean, invstd, training, dx, dgamma, dbeta);
}

/// Batch norm, an optional residual and ReLU as one op: y = max(0, bn(x) + residual), with the
/// batch statistics (batch_stats; the running ones updated as batch_norm_forward_training does) or
/// the running ones. mask receives the bits [y > 0] that batch_norm_relu_backward needs instead of
/// y: shape (N * C, ceil(H * W / 16)), bit i % 16 of word i / 16 of each (n, c) row. CPU backend
/// only. Ensures: y, mask, save_mean and save_invstd (when defined) overwritten.
template <class T, class B>
void batch_norm_relu_forward(const Tensor<T, B>& x, const Tensor<T, B>& gamma, const Tensor<T, B>& beta,
                             Tensor<T, B>& running_mean, Tensor<T, B>& running_var, bool batch_stats, double momentum,
                             double eps, const Tensor<T, B>& residual, Tensor<T, B>& y, Tensor<std::uint16_t, B>& mask,
                             Tensor<T, B>& save_mean, Tensor<T, B>& save_invstd) {
    static_assert(std::is_same_v<B, Cpu>, "batch_norm_relu_forward: CPU backend only");
    detail::check_bn("batch_norm_relu_forward", x, {&gamma, &beta, &running_mean, &running_var, &save_mean, &save_invstd});
    const std::int64_t rows = x.size(0) * x.size(1), S = x.numel() / std::max<std::int64_t>(rows, 1);
    MEDIMG_CHECK(y.shape() == x.shape() && (!residual.defined() || residual.shape() == x.shape()) &&
                     mask.shape() == Shape({rows, (S + 15) / 16}),
                 ShapeError, "batch_norm_relu_forward: output ", y.shape(), ", residual ", residual.shape(), " and mask ",
                 mask.shape(), " do not fit input ", x.shape());
    MEDIMG_CHECK(!batch_stats || x.numel() / x.size(1) > 1, ValueError,
                 "batch_norm_relu_forward: expected more than 1 value per channel when training, got input ", x.shape());
    MEDIMG_CHECK(batch_stats || (running_mean.defined() && running_var.defined()), ValueError,
                 "batch_norm_relu_forward: needs running statistics without batch statistics");
    detail::op_storage<T, B>("batch_norm_relu_forward", true, {{"x", &x}, {"residual", &residual}, {"y", &y}});
    BatchNormImpl<B>::forward_relu(x, gamma, beta, running_mean, running_var, batch_stats, momentum, eps,
                                   residual.defined() ? residual.data() : nullptr, y, mask, save_mean, save_invstd);
}

/// The backward of batch_norm_relu_forward: dresidual = dy [y > 0] (when defined), and
/// batch_norm_backward of that gate into dx, dgamma, dbeta (each may be undefined to skip it).
template <class T, class B>
void batch_norm_relu_backward(const Tensor<T, B>& x, const Tensor<T, B>& dy, const Tensor<std::uint16_t, B>& mask,
                              const Tensor<T, B>& gamma, const Tensor<T, B>& mean, const Tensor<T, B>& invstd,
                              bool batch_stats, Tensor<T, B>& dx, Tensor<T, B>& dgamma, Tensor<T, B>& dbeta,
                              Tensor<T, B>& dresidual) {
    static_assert(std::is_same_v<B, Cpu>, "batch_norm_relu_backward: CPU backend only");
    detail::check_bn("batch_norm_relu_backward", x, {&gamma, &mean, &invstd, &dgamma, &dbeta});
    const std::int64_t rows = x.size(0) * x.size(1), S = x.numel() / std::max<std::int64_t>(rows, 1);
    MEDIMG_CHECK(dy.shape() == x.shape() && (!dx.defined() || dx.shape() == x.shape()) &&
                     (!dresidual.defined() || dresidual.shape() == x.shape()) && mask.shape() == Shape({rows, (S + 15) / 16}),
                 ShapeError, "batch_norm_relu_backward: dy ", dy.shape(), ", dx ", dx.shape(), ", dresidual ",
                 dresidual.shape(), " and mask ", mask.shape(), " do not fit input ", x.shape());
    detail::op_storage<T, B>("batch_norm_relu_backward", true, {{"x", &x}, {"dy", &dy}, {"dx", &dx}, {"dresidual", &dresidual}});
    BatchNormImpl<B>::backward_relu(x, dy, mask, gamma, mean, invstd, batch_stats, dx, dgamma, dbeta, dresidual);
}

}  // namespace medimg::ops

#include "medimg/cpu/batch_norm.hpp"
#if MEDIMG_HAS_CUDA
#  include "medimg/cuda/batch_norm.cuh"
#endif
