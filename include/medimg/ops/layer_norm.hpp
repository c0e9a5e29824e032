// SPDX-License-Identifier: MIT
// ops/layer_norm.hpp: the front door for layer normalisation over the last dimension, as
// torch.nn.LayerNorm(D, eps) (https://pytorch.org/docs/stable/generated/torch.nn.LayerNorm.html;
// Ba et al. 2016). x (..., D) is read as R = numel / D rows of D values:
//   mean_r = sum_i x_ri / D,  var_r = sum_i (x_ri - mean_r)^2 / D (biased, as PyTorch),
//   rstd_r = 1 / sqrt(var_r + eps),  xhat = (x - mean) * rstd,  y = xhat * gamma + beta
// backward (g = dy * gamma):
//   dx = rstd * (g - mean_i(g) - xhat * mean_i(g * xhat)),  dgamma = sum_r dy * xhat,  dbeta = sum_r dy
// The forward keeps mean and rstd (R each) for the backward, so x is the only activation saved.
// Float32 storage only (autograd widens half activations). Kernels: cpu/layer_norm.hpp,
// cuda/layer_norm.cuh.
#pragma once

#include <cstdint>

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"
#include "medimg/ops/storage.hpp"

namespace medimg::ops {

template <class B>
struct LayerNormImpl;

namespace detail {
/// Checks x (..., D) against gamma / beta (D, when defined) and per-row statistics (R); returns R.
template <class T, class B>
std::int64_t layer_norm_rows(const char* fn, const Tensor<T, B>& x, const Tensor<T, B>& gamma, const Tensor<T, B>& beta,
                             const Tensor<T, B>& mean, const Tensor<T, B>& rstd) {
    MEDIMG_CHECK(x.defined() && x.rank() >= 1 && x.shape()[x.rank() - 1] >= 1, ShapeError, fn,
                 ": input must be (..., D) with D >= 1, got ", x.shape());
    const std::int64_t D = x.shape()[x.rank() - 1], R = x.numel() / D;
    for (const auto* t : {&gamma, &beta})
        MEDIMG_CHECK(!t->defined() || t->shape() == Shape{D}, ShapeError, fn, ": weight and bias must be (", D,
                     ") for input ", x.shape(), ", got ", t->shape());
    for (const auto* t : {&mean, &rstd})
        MEDIMG_CHECK(t->defined() && t->numel() == R, ShapeError, fn, ": per-row statistics must hold ", R,
                     " values for input ", x.shape(), ", got ", t->shape());
    return R;
}
}  // namespace detail

/// y = layer_norm(x) (y may not alias x); writes mean and rstd (R values each).
/// gamma / beta undefined: elementwise_affine=False.  Ensures: y, mean, rstd overwritten.
template <class T, class B>
void layer_norm_forward(const Tensor<T, B>& x, const Tensor<T, B>& gamma, const Tensor<T, B>& beta, double eps,
                        Tensor<T, B>& y, Tensor<T, B>& mean, Tensor<T, B>& rstd) {
    detail::layer_norm_rows("layer_norm_forward", x, gamma, beta, mean, rstd);
    MEDIMG_CHECK(y.shape() == x.shape(), ShapeError, "layer_norm_forward: output ", y.shape(), " must match input ", x.shape());
    MEDIMG_CHECK(eps >= 0.0, ValueError, "layer_norm_forward: eps must be >= 0, got ", eps);
    detail::float32_only<T, B>("layer_norm_forward", {{"x", &x}, {"weight", &gamma}, {"bias", &beta}, {"y", &y}, {"mean", &mean}, {"rstd", &rstd}});
    LayerNormImpl<B>::forward(x, gamma, beta, eps, y, mean, rstd);
}

/// The gradients the defined ones of dx (like x), dgamma, dbeta (D) ask for, from the forward's
/// input x and its mean / rstd.  Ensures: each defined output overwritten.
template <class T, class B>
void layer_norm_backward(const Tensor<T, B>& x, const Tensor<T, B>& dy, const Tensor<T, B>& gamma, const Tensor<T, B>& mean,
                         const Tensor<T, B>& rstd, Tensor<T, B>& dx, Tensor<T, B>& dgamma, Tensor<T, B>& dbeta) {
    detail::layer_norm_rows("layer_norm_backward", x, gamma, Tensor<T, B>(), mean, rstd);
    MEDIMG_CHECK(dy.shape() == x.shape() && (!dx.defined() || dx.shape() == x.shape()), ShapeError,
                 "layer_norm_backward: dy ", dy.shape(), " and dx ", dx.shape(), " must match input ", x.shape());
    const std::int64_t D = x.shape()[x.rank() - 1];
    for (const auto* t : {&dgamma, &dbeta})
        MEDIMG_CHECK(!t->defined() || t->shape() == Shape{D}, ShapeError, "layer_norm_backward: dweight / dbias must be (",
                     D, "), got ", t->shape());
    detail::float32_only<T, B>("layer_norm_backward", {{"x", &x}, {"dy", &dy}, {"weight", &gamma}, {"mean", &mean},
                                                       {"rstd", &rstd}, {"dx", &dx}, {"dweight", &dgamma}, {"dbias", &dbeta}});
    LayerNormImpl<B>::backward(x, dy, gamma, mean, rstd, dx, dgamma, dbeta);
}

}  // namespace medimg::ops

#include "medimg/cpu/layer_norm.hpp"
#if MEDIMG_HAS_CUDA
#  include "medimg/cuda/layer_norm.cuh"
#endif
