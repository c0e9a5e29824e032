// SPDX-License-Identifier: MIT
// ops/channel.hpp: the front door for per-(image, channel) operations on (N, C, ...) tensors:
//   scale_channels:  y[n, c, q] = x[n, c, q] * s[n, c]      (squeeze-and-excitation's gate; with
//                    C = 1 and s (N, 1), one factor per image: stochastic depth)
//       backward:    dx = dy * s[n, c];  ds[n, c] = sum over q of dy * x   (in double)
//   copy_channels:   dst[:, d0 + k] = src[:, s0 + k] for k < count (same N and plane size):
//                    concatenation along channels and its adjoint, the split.
// q runs over the plane (all dimensions after the first two). Each function checks shapes once,
// then forwards to ChannelImpl<B> (cpu/channel.hpp; the CUDA twin in cuda/channel.cuh).
// Float32 storage only.
#pragma once

#include <cstdint>

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"

namespace medimg::ops {

template <class B>
struct ChannelImpl;

namespace detail {
/// The plane size of an (N, C, ...) tensor: numel / (N * C); rank >= 2.
template <class T, class B>
std::int64_t plane_size(const char* fn, const char* name, const Tensor<T, B>& t) {
    MEDIMG_CHECK(t.defined() && t.rank() >= 2, ShapeError, fn, ": ", name, " must be (N, C, ...), got ", t.shape());
    const std::int64_t nc = t.size(0) * t.size(1);
    return nc ? t.numel() / nc : 0;
}
}  // namespace detail

/// y = x * s[n, c] broadcast over each plane (y may be x).  Requires: s (N, C), y x's shape.
template <class T, class B>
void scale_channels(const Tensor<T, B>& x, const Tensor<T, B>& s, Tensor<T, B>& y) {
    const std::int64_t P = detail::plane_size("scale_channels", "x", x);
    MEDIMG_CHECK(s.defined() && (s.shape() == Shape{x.size(0), x.size(1)}), ShapeError, "scale_channels: scale must be (",
                 x.size(0), ", ", x.size(1), ") for input ", x.shape(), ", got ", s.shape());
    MEDIMG_CHECK(y.defined() && y.shape() == x.shape(), ShapeError, "scale_channels: output is ", y.shape(), ", expected ",
                 x.shape());
    ChannelImpl<B>::scale(x.data(), s.data(), y.data(), x.size(0) * x.size(1), P);
}

/// dx = dy * s[n, c] and ds[n, c] = sum over the plane of dy * x; either output may be undefined
/// (not wanted).  Ensures: the defined outputs overwritten.
template <class T, class B>
void scale_channels_backward(const Tensor<T, B>& x, const Tensor<T, B>& s, const Tensor<T, B>& dy, Tensor<T, B>& dx,
                             Tensor<T, B>& ds) {
    const std::int64_t P = detail::plane_size("scale_channels_backward", "dy", dy);
    const Shape ns{dy.size(0), dy.size(1)};
    MEDIMG_CHECK((!dx.defined() || (s.defined() && s.shape() == ns && dx.shape() == dy.shape())) &&
                     (!ds.defined() || (x.defined() && x.shape() == dy.shape() && ds.shape() == ns)),
                 ShapeError, "scale_channels_backward: dy ", dy.shape(), ", x ", x.shape(), ", scale ", s.shape(), ", dx ",
                 dx.shape(), ", dscale ", ds.shape(), " do not fit");
    if (dx.defined()) ChannelImpl<B>::scale(dy.data(), s.data(), dx.data(), ns.numel(), P);
    if (ds.defined()) ChannelImpl<B>::plane_dot(dy.data(), x.data(), ds.data(), ns.numel(), P);
}

/// Copies channels [s0, s0 + count) of src into channels [d0, d0 + count) of dst.
/// Requires: same N and plane size; the ranges inside both tensors.
template <class T, class B>
void copy_channels(const Tensor<T, B>& src, std::int64_t s0, Tensor<T, B>& dst, std::int64_t d0, std::int64_t count) {
    const std::int64_t P = detail::plane_size("copy_channels", "src", src);
    MEDIMG_CHECK(detail::plane_size("copy_channels", "dst", dst) == P && dst.size(0) == src.size(0), ShapeError,
                 "copy_channels: src ", src.shape(), " and dst ", dst.shape(), " differ in batch or plane size");
    MEDIMG_CHECK(count >= 0 && s0 >= 0 && d0 >= 0 && s0 + count <= src.size(1) && d0 + count <= dst.size(1), ShapeError,
                 "copy_channels: channels [", s0, ", ", s0 + count, ") of src ", src.shape(), " into [", d0, ", ", d0 + count,
                 ") of dst ", dst.shape(), " fall outside");
    ChannelImpl<B>::copy(src.data(), src.size(1), s0, dst.data(), dst.size(1), d0, count, src.size(0), P);
}

}  // namespace medimg::ops

#include "medimg/cpu/channel.hpp"
#if MEDIMG_HAS_CUDA
#  include "medimg/cuda/channel.cuh"
#endif
