// SPDX-License-Identifier: MIT
// ops/tokens.hpp: the front door for the token-sequence bookkeeping of a Vision Transformer.
//
// tokens: the patch embedding's output map becomes the sequence the encoder reads,
//   patches (N, D, h, w), cls (1, 1, D) or undefined, pos (1, T, D) or undefined  ->  y (N, T, D)
//   y[n, 0]      = cls + pos[0]                              (with a class token; T = 1 + h w)
//   y[n, p + i]  = patches[n, :, i] + pos[p + i],  i = row-major place in the h x w grid, p = 0 or 1
// which is timm's `x.flatten(2).transpose(1, 2)`, `cat((cls_token.expand(N, -1, -1), x), 1)` and
// `x + pos_embed` in one pass (torchvision: the same with class_token and pos_embedding).
// backward: dpatches[n, :, i] = dy[n, p + i];  dcls = sum_n dy[n, 0];  dpos = sum_n dy[n].
//
// take_token: y (N, D) = x[:, index] of x (N, T, D) (timm's global_pool='token', torchvision's
// x[:, 0]); backward: dx is dy at that token and 0 elsewhere.
// Float32 storage only. Kernels: cpu/tokens.hpp, cuda/tokens.cuh.
#pragma once

#include <cstdint>

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"
#include "medimg/ops/storage.hpp"

namespace medimg::ops {

template <class B>
struct TokensImpl;

/// The sizes of one tokens call: N images, D channels, S = h w patches, p prefix tokens (0 | 1), T = p + S.
struct TokensShape {
    std::int64_t N = 0, D = 0, S = 0, p = 0, T = 0;
};

inline TokensShape tokens_shape(const char* fn, const Shape& patches, const Shape& cls, const Shape& pos, bool has_cls,
                                bool has_pos) {
    MEDIMG_CHECK(patches.rank() == 4 && patches[1] >= 1, ShapeError, fn, ": patches must be (N, D, h, w), got ", patches);
    TokensShape s;
    s.N = patches[0];
    s.D = patches[1];
    s.S = patches[2] * patches[3];
    s.p = has_cls ? 1 : 0;
    s.T = s.p + s.S;
    MEDIMG_CHECK(!has_cls || cls == (Shape{1, 1, s.D}), ShapeError, fn, ": class token must be (1, 1, ", s.D, "), got ", cls);
    MEDIMG_CHECK(!has_pos || pos == (Shape{1, s.T, s.D}), ShapeError, fn, ": position embedding must be (1, ", s.T, ", ", s.D,
                 ") for patches ", patches, has_cls ? " and a class token" : "", ", got ", pos,
                 " (another input size? ViT resamples its grid: nn/vit.hpp)");
    return s;
}

/// y (N, T, D) from the patch map, the class token and the position embedding (either may be
/// undefined).  Ensures: y overwritten.
template <class T, class B>
void tokens_forward(const Tensor<T, B>& patches, const Tensor<T, B>& cls, const Tensor<T, B>& pos, Tensor<T, B>& y) {
    const TokensShape s = tokens_shape("tokens_forward", patches.shape(), cls.shape(), pos.shape(), cls.defined(), pos.defined());
    MEDIMG_CHECK(y.shape() == (Shape{s.N, s.T, s.D}), ShapeError, "tokens_forward: output is ", y.shape(), ", expected ",
                 Shape{s.N, s.T, s.D});
    detail::float32_only<T, B>("tokens_forward", {{"patches", &patches}, {"cls", &cls}, {"pos", &pos}, {"y", &y}});
    TokensImpl<B>::forward(patches, cls, pos, y, s);
}

/// The defined ones of dpatches (N, D, h, w), dcls (1, 1, D), dpos (1, T, D) from dy (N, T, D);
/// `with_cls`: whether the forward had a class token.  Ensures: each defined output overwritten.
template <class T, class B>
void tokens_backward(const Tensor<T, B>& dy, const Shape& patches_shape, bool with_cls, Tensor<T, B>& dpatches,
                     Tensor<T, B>& dcls, Tensor<T, B>& dpos) {
    MEDIMG_CHECK(patches_shape.rank() == 4, ShapeError, "tokens_backward: patches must be (N, D, h, w), got ", patches_shape);
    MEDIMG_CHECK(with_cls || !dcls.defined(), ValueError, "tokens_backward: a class-token gradient without a class token");
    const std::int64_t D = patches_shape[1], T_ = (with_cls ? 1 : 0) + patches_shape[2] * patches_shape[3];
    const TokensShape s = tokens_shape("tokens_backward", patches_shape, dcls.defined() ? dcls.shape() : Shape{1, 1, D},
                                       dpos.defined() ? dpos.shape() : Shape{1, T_, D}, with_cls, true);
    MEDIMG_CHECK(dy.shape() == (Shape{s.N, s.T, s.D}), ShapeError, "tokens_backward: dy is ", dy.shape(), ", expected ",
                 Shape{s.N, s.T, s.D});
    MEDIMG_CHECK(!dpatches.defined() || dpatches.shape() == patches_shape, ShapeError, "tokens_backward: dpatches is ",
                 dpatches.shape(), ", expected ", patches_shape);
    detail::float32_only<T, B>("tokens_backward", {{"dy", &dy}, {"dpatches", &dpatches}, {"dcls", &dcls}, {"dpos", &dpos}});
    TokensImpl<B>::backward(dy, dpatches, dcls, dpos, s);
}

/// y (N, D) = x[:, index] for x (N, T, D).  Ensures: y overwritten.
template <class T, class B>
void take_token_forward(const Tensor<T, B>& x, std::int64_t index, Tensor<T, B>& y) {
    MEDIMG_CHECK(x.rank() == 3 && index >= 0 && index < x.size(1), ShapeError, "take_token_forward: input must be (N, T, D) with ",
                 "0 <= index < T, got ", x.shape(), " and index ", index);
    MEDIMG_CHECK(y.shape() == (Shape{x.size(0), x.size(2)}), ShapeError, "take_token_forward: output is ", y.shape(),
                 ", expected ", Shape{x.size(0), x.size(2)});
    detail::float32_only<T, B>("take_token_forward", {{"x", &x}, {"y", &y}});
    TokensImpl<B>::take(x, index, y);
}
/// dx (N, T, D) = dy (N, D) at token `index`, 0 elsewhere.  Ensures: dx overwritten.
template <class T, class B>
void take_token_backward(const Tensor<T, B>& dy, std::int64_t index, Tensor<T, B>& dx) {
    MEDIMG_CHECK(dx.rank() == 3 && index >= 0 && index < dx.size(1) && dy.shape() == (Shape{dx.size(0), dx.size(2)}),
                 ShapeError, "take_token_backward: dy ", dy.shape(), " and index ", index, " do not fit dx ", dx.shape());
    detail::float32_only<T, B>("take_token_backward", {{"dy", &dy}, {"dx", &dx}});
    TokensImpl<B>::take_backward(dy, index, dx);
}

}  // namespace medimg::ops

#include "medimg/cpu/tokens.hpp"
#if MEDIMG_HAS_CUDA
#  include "medimg/cuda/tokens.cuh"
#endif
