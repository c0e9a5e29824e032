// SPDX-License-Identifier: MIT
// ops/elementwise.hpp: the front door for elementwise arithmetic, ReLU and full reductions.
// Each function checks shapes once, then forwards to ElementwiseImpl<B> (cpu/elementwise.hpp;
// the CUDA twin in cuda/). Outputs are caller-allocated so buffers can be reused.
// add_, add and the two ReLU functions also take tensors with half storage (one format for all of
// a call's tensors; ops/storage.hpp) on backends that read it: they are what mixed-precision
// activations and their gradients pass through. The rest take float32 storage only.
#pragma once

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"
#include "medimg/ops/storage.hpp"

namespace medimg::ops {

template <class B>
struct ElementwiseImpl;

namespace detail {
template <class T, class B>
void check_same(const char* fn, const char* an, const Tensor<T, B>& a, const char* bn, const Tensor<T, B>& b) {
    MEDIMG_CHECK(a.defined() && b.defined(), ShapeError, fn, ": undefined tensor");
    MEDIMG_CHECK(a.shape() == b.shape(), ShapeError, fn, ": ", an, " ", a.shape(), " and ", bn, " ", b.shape(),
                 " must have the same shape");
}
}  // namespace detail

/// y += x.  Requires: same shape.
template <class T, class B>
void add_(Tensor<T, B>& y, const Tensor<T, B>& x) {
    detail::check_same("add_", "y", y, "x", x);
    const Precision s = detail::op_storage<T, B>("add_", true, {{"y", &y}, {"x", &x}});
    if constexpr (reads_half_storage<B>)
        if (s != Precision::fp32) return ElementwiseImpl<B>::add_stored(y.raw(), y.raw(), x.raw(), y.numel(), s);
    ElementwiseImpl<B>::axpy(y.data(), T(1), x.data(), y.numel());
}
/// y += alpha * x.  Requires: same shape.
template <class T, class B>
void axpy_(Tensor<T, B>& y, T alpha, const Tensor<T, B>& x) {
    detail::check_same("axpy_", "y", y, "x", x);
    ElementwiseImpl<B>::axpy(y.data(), alpha, x.data(), y.numel());
}
/// y = alpha * x + beta (y may be x).  Requires: same shape.
template <class T, class B>
void affine(const Tensor<T, B>& x, T alpha, T beta, Tensor<T, B>& y) {
    detail::check_same("affine", "x", x, "y", y);
    ElementwiseImpl<B>::affine(x.data(), alpha, beta, y.data(), x.numel());
}
/// y = a + b.  Requires: same shapes.
template <class T, class B>
void add(const Tensor<T, B>& a, const Tensor<T, B>& b, Tensor<T, B>& y) {
    detail::check_same("add", "a", a, "b", b);
    detail::check_same("add", "a", a, "y", y);
    const Precision s = detail::op_storage<T, B>("add", true, {{"a", &a}, {"b", &b}, {"y", &y}});
    if constexpr (reads_half_storage<B>)
        if (s != Precision::fp32) return ElementwiseImpl<B>::add_stored(y.raw(), a.raw(), b.raw(), a.numel(), s);
    ElementwiseImpl<B>::add(a.data(), b.data(), y.data(), a.numel());
}
/// y = a * b (elementwise).  Requires: same shapes.
template <class T, class B>
void mul(const Tensor<T, B>& a, const Tensor<T, B>& b, Tensor<T, B>& y) {
    detail::check_same("mul", "a", a, "b", b);
    detail::check_same("mul", "a", a, "y", y);
    ElementwiseImpl<B>::mul(a.data(), b.data(), y.data(), a.numel());
}
/// y = max(x, 0).
template <class T, class B>
void relu_forward(const Tensor<T, B>& x, Tensor<T, B>& y) {
    detail::check_same("relu_forward", "x", x, "y", y);
    const Precision s = detail::op_storage<T, B>("relu_forward", true, {{"x", &x}, {"y", &y}});
    if constexpr (reads_half_storage<B>)
        if (s != Precision::fp32) return ElementwiseImpl<B>::relu_forward_stored(x.raw(), y.raw(), x.numel(), s);
    ElementwiseImpl<B>::relu_forward(x.data(), y.data(), x.numel());
}
/// dx = dy where y > 0, else 0 (overwrites dx). y is the forward output.
template <class T, class B>
void relu_backward(const Tensor<T, B>& y, const Tensor<T, B>& dy, Tensor<T, B>& dx) {
    detail::check_same("relu_backward", "y", y, "dy", dy);
    detail::check_same("relu_backward", "y", y, "dx", dx);
    const Precision s = detail::op_storage<T, B>("relu_backward", true, {{"y", &y}, {"dy", &dy}, {"dx", &dx}});
    if constexpr (reads_half_storage<B>)
        if (s != Precision::fp32)
            return ElementwiseImpl<B>::relu_backward_stored(y.raw(), dy.raw(), dx.raw(), y.numel(), s);
    ElementwiseImpl<B>::relu_backward(y.data(), dy.data(), dx.data(), y.numel());
}
/// y = 1 / sqrt(x + eps) (BatchNorm's inverse standard deviation).
template <class T, class B>
void rsqrt(const Tensor<T, B>& x, double eps, Tensor<T, B>& y) {
    detail::check_same("rsqrt", "x", x, "y", y);
    ElementwiseImpl<B>::rsqrt(x.data(), eps, y.data(), x.numel());
}
/// The sum of all elements, accumulated in double, returned on the host.
template <class T, class B>
double sum(const Tensor<T, B>& x) {
    MEDIMG_CHECK(x.defined(), ShapeError, "sum: undefined tensor");
    return ElementwiseImpl<B>::sum(x.data(), x.numel());
}
/// The sum of a*b over all elements, in double.
template <class T, class B>
double dot(const Tensor<T, B>& a, const Tensor<T, B>& b) {
    detail::check_same("dot", "a", a, "b", b);
    return ElementwiseImpl<B>::dot(a.data(), b.data(), a.numel());
}

}  // namespace medimg::ops

#include "medimg/cpu/elementwise.hpp"
#if MEDIMG_HAS_CUDA
#  include "medimg/cuda/elementwise.cuh"
#endif
