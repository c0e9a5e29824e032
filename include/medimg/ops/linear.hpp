// SPDX-License-Identifier: MIT
// ops/linear.hpp: the front door for the fully connected layer (torch.nn.Linear's layout).
//   x: (N, in), w: (out, in), b: (out) or undefined -> y: (N, out);  y = x w^T + b
//   backward: dx = dy w (N, in);  dw = dy^T x (out, in);  db = sum_n dy (out)
#pragma once

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"
#include "medimg/ops/storage.hpp"

namespace medimg::ops {

template <class B>
struct LinearImpl;

inline void check_linear(const char* fn, const Shape& x, const Shape& w) {
    MEDIMG_CHECK(x.rank() == 2, ShapeError, fn, ": input must be (N, in_features), got ", x);
    MEDIMG_CHECK(w.rank() == 2, ShapeError, fn, ": weight must be (out_features, in_features), got ", w);
    MEDIMG_CHECK(x[1] == w[1], ShapeError, fn, ": input has ", x[1], " features but weight expects ", w[1], " (input ", x,
                 ", weight ", w, ")");
}

/// Ensures: y overwritten.
template <class T, class B>
void linear_forward(const Tensor<T, B>& x, const Tensor<T, B>& w, const Tensor<T, B>& b, Tensor<T, B>& y) {
    check_linear("linear_forward", x.shape(), w.shape());
    MEDIMG_CHECK(!b.defined() || b.shape() == Shape{w.size(0)}, ShapeError, "linear_forward: bias must be (", w.size(0),
                 "), got ", b.shape());
    MEDIMG_CHECK(y.shape() == (Shape{x.size(0), w.size(0)}), ShapeError, "linear_forward: output is ", y.shape(),
                 ", expected ", Shape{x.size(0), w.size(0)});
    detail::op_storage<T, B>("linear_forward", false, {{"x", &x}, {"weight", &w}, {"bias", &b}, {"y", &y}});
    LinearImpl<B>::forward(x, w, b, y);
}
/// Ensures: dx overwritten.
template <class T, class B>
void linear_backward_data(const Tensor<T, B>& dy, const Tensor<T, B>& w, Tensor<T, B>& dx) {
    check_linear("linear_backward_data", dx.shape(), w.shape());
    MEDIMG_CHECK(dy.shape() == (Shape{dx.size(0), w.size(0)}), ShapeError, "linear_backward_data: dy ", dy.shape(),
                 " does not fit dx ", dx.shape(), " and weight ", w.shape());
    detail::op_storage<T, B>("linear_backward_data", false, {{"dy", &dy}, {"weight", &w}, {"dx", &dx}});
    LinearImpl<B>::backward_data(dy, w, dx);
}
/// Ensures: dw (and db when defined) overwritten.
template <class T, class B>
void linear_backward_weight(const Tensor<T, B>& x, const Tensor<T, B>& dy, Tensor<T, B>& dw, Tensor<T, B>& db) {
    check_linear("linear_backward_weight", x.shape(), dw.shape());
    MEDIMG_CHECK(dy.shape() == (Shape{x.size(0), dw.size(0)}) && (!db.defined() || db.shape() == Shape{dw.size(0)}),
                 ShapeError, "linear_backward_weight: dy ", dy.shape(), " / db ", db.shape(), " do not fit input ",
                 x.shape(), " and weight ", dw.shape());
    detail::op_storage<T, B>("linear_backward_weight", false, {{"x", &x}, {"dy", &dy}, {"dw", &dw}, {"db", &db}});
    LinearImpl<B>::backward_weight(x, dy, dw, db);
}

}  // namespace medimg::ops

#include "medimg/cpu/linear.hpp"
#if MEDIMG_HAS_CUDA
#  include "medimg/cuda/linear.cuh"
#endif
