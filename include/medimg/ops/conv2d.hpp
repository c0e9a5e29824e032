// SPDX-License-Identifier: MIT
// ops/conv2d.hpp: the front door for 2-D convolution (cross-correlation, as torch.nn.Conv2d).
// Checks shapes once, then forwards to Conv2dImpl<B> (cpu/conv2d.hpp: im2col + GEMM, a direct
// depthwise kernel; cuda/conv2d.cuh: cuDNN).
//   x: (N, C_in, H, W), w: (C_out, C_in/groups, kH, kW), b: (C_out) or undefined -> y: (N, C_out, Ho, Wo)
//   Ho = (H + 2*pad_h - dilation_h*(kH-1) - 1) / stride_h + 1   (floor), likewise Wo.
// groups G (torch's meaning): input channels and output channels split into G equal parts; output
// channel o reads only input part o / (C_out/G). G = C_in is the depthwise convolution
// (MobileNet / EfficientNet), whose w is (C_out, 1, kH, kW).
#pragma once

#include <cstdint>
#include <string>

#include "medimg/core/tensor.hpp"
#include "medimg/ops/storage.hpp"
#include "medimg/error.hpp"

namespace medimg::ops {

struct Conv2dParams {
    std::int64_t stride_h = 1, stride_w = 1;
    std::int64_t pad_h = 0, pad_w = 0;
    std::int64_t dilation_h = 1, dilation_w = 1;
    std::int64_t groups = 1;
};

template <class B>
struct Conv2dImpl;

namespace detail {
inline std::int64_t conv_out_size(std::int64_t in, std::int64_t k, std::int64_t s, std::int64_t p, std::int64_t d) {
    return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}
inline void check_conv2d_params(const char* fn, const Conv2dParams& p) {
    MEDIMG_CHECK(p.stride_h >= 1 && p.stride_w >= 1 && p.dilation_h >= 1 && p.dilation_w >= 1 && p.pad_h >= 0 &&
                     p.pad_w >= 0 && p.groups >= 1,
                 ValueError, fn, ": stride, dilation and groups must be >= 1 and padding >= 0; got stride (", p.stride_h,
                 ",", p.stride_w, "), padding (", p.pad_h, ",", p.pad_w, "), dilation (", p.dilation_h, ",", p.dilation_w,
                 "), groups ", p.groups);
}
}  // namespace detail

/// The output shape of conv2d for input shape x and weight shape w; throws ShapeError naming both
/// when they do not fit.
inline Shape conv2d_output_shape(const char* fn, const Shape& x, const Shape& w, const Conv2dParams& p) {
    detail::check_conv2d_params(fn, p);
    MEDIMG_CHECK(x.rank() == 4, ShapeError, fn, ": input must be (N, C_in, H, W), got ", x);
    MEDIMG_CHECK(w.rank() == 4, ShapeError, fn, ": weight must be (C_out, C_in, kH, kW), got ", w);
    MEDIMG_CHECK(x[1] % p.groups == 0 && w[0] % p.groups == 0, ShapeError, fn, ": groups ", p.groups,
                 " must divide the input channels and the output channels (input ", x, ", weight ", w, ")");
    MEDIMG_CHECK(x[1] == w[1] * p.groups, ShapeError, fn, ": input has ", x[1], " channels but weight expects ", w[1],
                 p.groups > 1 ? " per group x " + std::to_string(p.groups) + " groups" : std::string(), " (input ", x,
                 ", weight ", w, ")");
    const auto ho = detail::conv_out_size(x[2], w[2], p.stride_h, p.pad_h, p.dilation_h);
    const auto wo = detail::conv_out_size(x[3], w[3], p.stride_w, p.pad_w, p.dilation_w);
    MEDIMG_CHECK(ho >= 1 && wo >= 1, ShapeError, fn, ": kernel ", w[2], "x", w[3], " (dilation ", p.dilation_h, ",",
                 p.dilation_w, ") does not fit input ", x, " with padding (", p.pad_h, ",", p.pad_w, ")");
    return Shape{x[0], w[0], ho, wo};
}

/// y = conv2d(x, w) + b.  Requires: shapes as in the file header; b undefined or (C_out).
/// Ensures: y overwritten.
template <class T, class B>
void conv2d_forward(const Tensor<T, B>& x, const Tensor<T, B>& w, const Tensor<T, B>& b, Tensor<T, B>& y,
                    const Conv2dParams& p) {
    const Shape ys = conv2d_output_shape("conv2d_forward", x.shape(), w.shape(), p);
    MEDIMG_CHECK(!b.defined() || b.shape() == Shape{w.size(0)}, ShapeError, "conv2d_forward: bias must be (", w.size(0),
                 "), got ", b.shape());
    MEDIMG_CHECK(y.shape() == ys, ShapeError, "conv2d_forward: output is ", y.shape(), ", expected ", ys);
    detail::op_storage<T, B>("conv2d_forward", false, {{"x", &x}, {"weight", &w}, {"bias", &b}, {"y", &y}});
    Conv2dImpl<B>::forward(x, w, b, y, p);
}

/// dx = d(loss)/dx given dy.  Ensures: dx overwritten.
template <class T, class B>
void conv2d_backward_data(const Tensor<T, B>& dy, const Tensor<T, B>& w, Tensor<T, B>& dx, const Conv2dParams& p) {
    const Shape ys = conv2d_output_shape("conv2d_backward_data", dx.shape(), w.shape(), p);
    MEDIMG_CHECK(dy.shape() == ys, ShapeError, "conv2d_backward_data: dy is ", dy.shape(), ", expected ", ys, " for dx ",
                 dx.shape(), " and weight ", w.shape());
    detail::op_storage<T, B>("conv2d_backward_data", false, {{"dy", &dy}, {"weight", &w}, {"dx", &dx}});
    Conv2dImpl<B>::backward_data(dy, w, dx, p);
}

/// dw = d(loss)/dw given x and dy.  Ensures: dw overwritten.
template <class T, class B>
void conv2d_backward_filter(const Tensor<T, B>& x, const Tensor<T, B>& dy, Tensor<T, B>& dw, const Conv2dParams& p) {
    const Shape ys = conv2d_output_shape("conv2d_backward_filter", x.shape(), dw.shape(), p);
    MEDIMG_CHECK(dy.shape() == ys, ShapeError, "conv2d_backward_filter: dy is ", dy.shape(), ", expected ", ys,
                 " for input ", x.shape(), " and weight ", dw.shape());
    detail::op_storage<T, B>("conv2d_backward_filter", false, {{"x", &x}, {"dy", &dy}, {"dw", &dw}});
    Conv2dImpl<B>::backward_filter(x, dy, dw, p);
}

/// db[c] = sum over n, h, w of dy[n, c, h, w].  Ensures: db overwritten.
template <class T, class B>
void conv2d_backward_bias(const Tensor<T, B>& dy, Tensor<T, B>& db) {
    MEDIMG_CHECK(dy.rank() == 4 && db.shape() == Shape{dy.size(1)}, ShapeError, "conv2d_backward_bias: dy ", dy.shape(),
                 " and db ", db.shape(), " do not fit");
    detail::op_storage<T, B>("conv2d_backward_bias", false, {{"dy", &dy}, {"db", &db}});
    Conv2dImpl<B>::backward_bias(dy, db);
}

/// The storage autograd gives a convolution's output: x's when x holds half storage, else what the
/// backend's mixed precision asks for (autocast: bf16 / fp16 activations on the GPU while
/// cuda::settings().precision is bf16 / fp16 and half_activations is on), else fp32.
template <class T, class B>
Precision conv2d_output_storage(const Tensor<T, B>& x) {
    if (x.half_storage()) return x.storage();
    if constexpr (reads_half_storage<B> && std::is_same_v<T, float>)
        return Conv2dImpl<B>::autocast_storage();
    else
        return Precision::fp32;
}

}  // namespace medimg::ops

#include "medimg/cpu/conv2d.hpp"
#if MEDIMG_HAS_CUDA
#  include "medimg/cuda/conv2d.cuh"
#endif
