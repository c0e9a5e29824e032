// SPDX-License-Identifier: MIT
// ops/pooling.hpp: the front door for max pooling, average pooling and adaptive average pooling
// (as torch.nn.MaxPool2d with ceil_mode=False, dilation=1; torch.nn.AvgPool2d with padding=0,
// ceil_mode=False, DenseNet's transition; and torch.nn.AdaptiveAvgPool2d).
//   max_pool2d:  x: (N, C, H, W) -> y: (N, C, Ho, Wo), argmax: (N, C, Ho, Wo) int32 index h*W + w
//                Ho = (H + 2*pad - k) / stride + 1; padding counts as -inf; pad <= k/2 (PyTorch's rule)
//   avg_pool2d:  x: (N, C, H, W) -> y: (N, C, Ho, Wo), Ho = (H - k) / stride + 1, the mean of each
//                k x k window (no padding, so every window is whole)
//   adaptive_avg_pool2d: window of output o along a side of length L -> [floor(o*L/O), ceil((o+1)*L/O))
#pragma once

#include <cstdint>
#include <type_traits>

#include "medimg/core/tensor.hpp"
#include "medimg/ops/storage.hpp"
#include "medimg/error.hpp"

namespace medimg::ops {

struct MaxPool2dParams {
    std::int64_t kernel_h = 2, kernel_w = 2;
    std::int64_t stride_h = 2, stride_w = 2;
    std::int64_t pad_h = 0, pad_w = 0;
};

struct AvgPool2dParams {
    std::int64_t kernel_h = 2, kernel_w = 2;
    std::int64_t stride_h = 2, stride_w = 2;
};

template <class B>
struct PoolImpl;

inline Shape max_pool2d_output_shape(const char* fn, const Shape& x, const MaxPool2dParams& p) {
    MEDIMG_CHECK(x.rank() == 4, ShapeError, fn, ": input must be (N, C, H, W), got ", x);
    MEDIMG_CHECK(p.kernel_h >= 1 && p.kernel_w >= 1 && p.stride_h >= 1 && p.stride_w >= 1, ValueError, fn,
                 ": kernel and stride must be >= 1, got kernel (", p.kernel_h, ",", p.kernel_w, "), stride (", p.stride_h,
                 ",", p.stride_w, ")");
    MEDIMG_CHECK(p.pad_h >= 0 && p.pad_w >= 0 && 2 * p.pad_h <= p.kernel_h && 2 * p.pad_w <= p.kernel_w, ValueError, fn,
                 ": padding (", p.pad_h, ",", p.pad_w, ") must be between 0 and half the kernel (", p.kernel_h, ",",
                 p.kernel_w, ")");
    const std::int64_t ho = (x[2] + 2 * p.pad_h - p.kernel_h) / p.stride_h + 1;
    const std::int64_t wo = (x[3] + 2 * p.pad_w - p.kernel_w) / p.stride_w + 1;
    MEDIMG_CHECK(x[2] + 2 * p.pad_h >= p.kernel_h && x[3] + 2 * p.pad_w >= p.kernel_w, ShapeError, fn, ": kernel ",
                 p.kernel_h, "x", p.kernel_w, " does not fit input ", x);
    return Shape{x[0], x[1], ho, wo};
}

/// Ensures: y and argmax overwritten.
template <class T, class B>
void max_pool2d_forward(const Tensor<T, B>& x, Tensor<T, B>& y, Tensor<std::int32_t, B>& argmax,
                        const MaxPool2dParams& p) {
    const Shape ys = max_pool2d_output_shape("max_pool2d_forward", x.shape(), p);
    MEDIMG_CHECK(y.shape() == ys && argmax.shape() == ys, ShapeError, "max_pool2d_forward: output ", y.shape(),
                 " / argmax ", argmax.shape(), ", expected ", ys);
    detail::op_storage<T, B>("max_pool2d_forward", true, {{"x", &x}, {"y", &y}});
    PoolImpl<B>::max_forward(x, y, argmax, p);
}

/// dx[argmax] += dy (each window routes its gradient to its maximum).  Ensures: dx overwritten.
template <class T, class B>
void max_pool2d_backward(const Tensor<T, B>& dy, const Tensor<std::int32_t, B>& argmax, Tensor<T, B>& dx) {
    MEDIMG_CHECK(dy.shape() == argmax.shape() && dx.rank() == 4 && dy.rank() == 4 && dx.size(0) == dy.size(0) &&
                     dx.size(1) == dy.size(1),
                 ShapeError, "max_pool2d_backward: dy ", dy.shape(), ", argmax ", argmax.shape(), ", dx ", dx.shape(),
                 " do not fit");
    detail::op_storage<T, B>("max_pool2d_backward", true, {{"dy", &dy}, {"dx", &dx}});
    PoolImpl<B>::max_backward(dy, argmax, dx);
}

/// max_pool2d_forward keeping, per window, the place of its maximum inside the window (uint8,
/// row-major in the kernel; windows of at most 255 values) instead of its index in the plane:
/// what training keeps for backward, a quarter of the int32 indices' memory. CPU backend only
/// (the CUDA backend keeps int32 indices). Ensures: y and place overwritten.
template <class T, class B>
void max_pool2d_forward_places(const Tensor<T, B>& x, Tensor<T, B>& y, Tensor<std::uint8_t, B>& place,
                               const MaxPool2dParams& p) {
    static_assert(std::is_same_v<B, Cpu>, "max_pool2d_forward_places: CPU backend only");
    const Shape ys = max_pool2d_output_shape("max_pool2d_forward_places", x.shape(), p);
    MEDIMG_CHECK(y.shape() == ys && place.shape() == ys, ShapeError, "max_pool2d_forward_places: output ", y.shape(),
                 " / place ", place.shape(), ", expected ", ys);
    MEDIMG_CHECK(p.kernel_h * p.kernel_w <= 255, ValueError, "max_pool2d_forward_places: a ", p.kernel_h, "x",
                 p.kernel_w, " window has more than 255 places; use max_pool2d_forward");
    detail::op_storage<T, B>("max_pool2d_forward_places", true, {{"x", &x}, {"y", &y}});
    PoolImpl<B>::max_forward(x, y, place, p);
}

/// dx[window corner + place] += dy, the backward of max_pool2d_forward_places with the same p.
/// Ensures: dx overwritten.
template <class T, class B>
void max_pool2d_backward_places(const Tensor<T, B>& dy, const Tensor<std::uint8_t, B>& place, Tensor<T, B>& dx,
                                const MaxPool2dParams& p) {
    static_assert(std::is_same_v<B, Cpu>, "max_pool2d_backward_places: CPU backend only");
    MEDIMG_CHECK(dy.shape() == place.shape() && dx.rank() == 4 &&
                     max_pool2d_output_shape("max_pool2d_backward_places", dx.shape(), p) == dy.shape(),
                 ShapeError, "max_pool2d_backward_places: dy ", dy.shape(), ", place ", place.shape(), ", dx ", dx.shape(),
                 " do not fit");
    detail::op_storage<T, B>("max_pool2d_backward_places", true, {{"dy", &dy}, {"dx", &dx}});
    PoolImpl<B>::max_backward(dy, place, dx, p);
}

inline Shape avg_pool2d_output_shape(const char* fn, const Shape& x, const AvgPool2dParams& p) {
    MEDIMG_CHECK(x.rank() == 4, ShapeError, fn, ": input must be (N, C, H, W), got ", x);
    MEDIMG_CHECK(p.kernel_h >= 1 && p.kernel_w >= 1 && p.stride_h >= 1 && p.stride_w >= 1, ValueError, fn,
                 ": kernel and stride must be >= 1, got kernel (", p.kernel_h, ",", p.kernel_w, "), stride (", p.stride_h,
                 ",", p.stride_w, ")");
    MEDIMG_CHECK(x[2] >= p.kernel_h && x[3] >= p.kernel_w, ShapeError, fn, ": kernel ", p.kernel_h, "x", p.kernel_w,
                 " does not fit input ", x);
    return Shape{x[0], x[1], (x[2] - p.kernel_h) / p.stride_h + 1, (x[3] - p.kernel_w) / p.stride_w + 1};
}

/// y = the mean of each window.  Ensures: y overwritten.
template <class T, class B>
void avg_pool2d_forward(const Tensor<T, B>& x, Tensor<T, B>& y, const AvgPool2dParams& p) {
    const Shape ys = avg_pool2d_output_shape("avg_pool2d_forward", x.shape(), p);
    MEDIMG_CHECK(y.shape() == ys, ShapeError, "avg_pool2d_forward: output ", y.shape(), ", expected ", ys);
    detail::op_storage<T, B>("avg_pool2d_forward", true, {{"x", &x}, {"y", &y}});
    PoolImpl<B>::avg_forward(x, y, p);
}

/// dx[window] += dy / (kH * kW).  Ensures: dx overwritten.
template <class T, class B>
void avg_pool2d_backward(const Tensor<T, B>& dy, Tensor<T, B>& dx, const AvgPool2dParams& p) {
    MEDIMG_CHECK(dx.rank() == 4 && dy.shape() == avg_pool2d_output_shape("avg_pool2d_backward", dx.shape(), p), ShapeError,
                 "avg_pool2d_backward: dy ", dy.shape(), " does not fit dx ", dx.shape());
    detail::op_storage<T, B>("avg_pool2d_backward", true, {{"dy", &dy}, {"dx", &dx}});
    PoolImpl<B>::avg_backward(dy, dx, p);
}

/// x: (N, C, H, W) -> y: (N, C, Ho, Wo) with Ho, Wo taken from y.  Ensures: y overwritten.
template <class T, class B>
void adaptive_avg_pool2d_forward(const Tensor<T, B>& x, Tensor<T, B>& y) {
    MEDIMG_CHECK(x.rank() == 4 && y.rank() == 4 && x.size(0) == y.size(0) && x.size(1) == y.size(1) && y.size(2) >= 1 &&
                     y.size(3) >= 1,
                 ShapeError, "adaptive_avg_pool2d_forward: input ", x.shape(), " and output ", y.shape(), " do not fit");
    detail::op_storage<T, B>("adaptive_avg_pool2d_forward", true, {{"x", &x}, {"y", &y}});
    PoolImpl<B>::adaptive_avg_forward(x, y);
}

/// Ensures: dx overwritten.
template <class T, class B>
void adaptive_avg_pool2d_backward(const Tensor<T, B>& dy, Tensor<T, B>& dx) {
    MEDIMG_CHECK(dx.rank() == 4 && dy.rank() == 4 && dx.size(0) == dy.size(0) && dx.size(1) == dy.size(1), ShapeError,
                 "adaptive_avg_pool2d_backward: dy ", dy.shape(), " and dx ", dx.shape(), " do not fit");
    detail::op_storage<T, B>("adaptive_avg_pool2d_backward", true, {{"dy", &dy}, {"dx", &dx}});
    PoolImpl<B>::adaptive_avg_backward(dy, dx);
}

}  // namespace medimg::ops

#include "medimg/cpu/pooling.hpp"
#if MEDIMG_HAS_CUDA
#  include "medimg/cuda/pooling.cuh"
#endif
