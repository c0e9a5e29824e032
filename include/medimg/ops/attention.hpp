// SPDX-License-Identifier: MIT
// ops/attention.hpp: the front door for multi-head scaled dot-product attention and batched
// matrix products, what a Vision Transformer's blocks compute.
//
// attention: qkv (B, L, 3 * H * d) is the output of the block's qkv projection as timm's
// Attention and torch.nn.MultiheadAttention's in_proj produce it: token l of image b holds
// [q | k | v], each H heads of d values (qkv.reshape(B, L, 3, H, d) in timm). For every (b, h):
//   S = q k^T * scale (L, L),  P = softmax_rows(S),  o = P v (L, d)
// written to out (B, L, H * d), heads side by side (timm's x.transpose(1, 2).reshape(B, L, C)),
// the input of the output projection. scale = 1 / sqrt(d) unless given
// (torch.nn.functional.scaled_dot_product_attention's default; Vaswani et al. 2017).
// The softmax is the stable one (row maximum subtracted); the forward keeps only
// lse = logsumexp(S) per row, (B, H, L), and the backward recomputes P = exp(S - lse) one (b, h)
// at a time, so memory does not hold B x H x L^2 values for the backward (the "flash attention"
// bookkeeping, Dao et al. 2022, without its tiling). With `probs` defined the forward also writes
// P (B, H, L, L): what attention rollout reads (explain/).
// backward, per (b, h), from dO (the gradient of o):
//   dv = P^T dO,  dP = dO v^T,  dS = P * (dP - rowsum(P * dP)),  dq = scale dS k,  dk = scale dS^T q
// written into dqkv (B, L, 3 * H * d) at the places q, k, v came from.
//
// bmm: c[i] = op(a[i]) op(b[i]) for each of the batch (torch.bmm with optional transposes);
// a or b may have batch 1 and is then shared by every c[i] (torch.matmul's broadcast).
// Float32 storage only. Kernels: cpu/attention.hpp, cuda/attention.cuh.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"
#include "medimg/ops/storage.hpp"

namespace medimg::ops {

template <class B>
struct AttentionImpl;

struct AttentionParams {
    std::int64_t heads = 1;
    double scale = 0.0;  // 0: 1 / sqrt(head_dim)
};

/// The sizes of one attention call, checked: B images, L tokens, H heads of d values.
struct AttentionShape {
    std::int64_t B = 0, L = 0, H = 0, d = 0;
    double scale = 1.0;
    std::int64_t width() const { return H * d; }  // the model width, D
};

inline AttentionShape attention_shape(const char* fn, const Shape& qkv, const AttentionParams& p) {
    MEDIMG_CHECK(p.heads >= 1, ValueError, fn, ": heads must be >= 1, got ", p.heads);
    MEDIMG_CHECK(qkv.rank() == 3 && qkv[2] % (3 * p.heads) == 0 && qkv[2] > 0, ShapeError, fn,
                 ": qkv must be (B, L, 3 * heads * head_dim) with heads ", p.heads, ", got ", qkv);
    MEDIMG_CHECK(std::isfinite(p.scale) && p.scale >= 0.0, ValueError, fn, ": scale must be finite and >= 0 (0: 1 / sqrt(head_dim)), got ",
                 p.scale);
    AttentionShape s;
    s.B = qkv[0];
    s.L = qkv[1];
    s.H = p.heads;
    s.d = qkv[2] / (3 * p.heads);
    s.scale = p.scale > 0.0 ? p.scale : 1.0 / std::sqrt(static_cast<double>(s.d));
    return s;
}

/// out (B, L, H d) = attention of qkv; lse (B, H, L) the log-sum-exp of each row of scaled scores;
/// probs (B, H, L, L) the attention weights, when defined. out must not alias qkv.
/// Ensures: out, lse (, probs) overwritten.
template <class T, class B>
void attention_forward(const Tensor<T, B>& qkv, Tensor<T, B>& out, Tensor<T, B>& lse, Tensor<T, B>& probs,
                       const AttentionParams& p) {
    const AttentionShape s = attention_shape("attention_forward", qkv.shape(), p);
    MEDIMG_CHECK(out.shape() == (Shape{s.B, s.L, s.width()}), ShapeError, "attention_forward: output is ", out.shape(),
                 ", expected ", Shape{s.B, s.L, s.width()}, " for qkv ", qkv.shape());
    MEDIMG_CHECK(lse.shape() == (Shape{s.B, s.H, s.L}), ShapeError, "attention_forward: lse is ", lse.shape(), ", expected ",
                 Shape{s.B, s.H, s.L});
    MEDIMG_CHECK(!probs.defined() || probs.shape() == (Shape{s.B, s.H, s.L, s.L}), ShapeError, "attention_forward: probs is ",
                 probs.shape(), ", expected ", Shape{s.B, s.H, s.L, s.L});
    detail::float32_only<T, B>("attention_forward", {{"qkv", &qkv}, {"out", &out}, {"lse", &lse}, {"probs", &probs}});
    AttentionImpl<B>::forward(qkv, out, lse, probs, s);
}

/// dqkv (B, L, 3 H d) from dout (B, L, H d), the forward's qkv and lse (dqkv aliases neither).
/// Ensures: dqkv overwritten.
template <class T, class B>
void attention_backward(const Tensor<T, B>& qkv, const Tensor<T, B>& lse, const Tensor<T, B>& dout, Tensor<T, B>& dqkv,
                        const AttentionParams& p) {
    const AttentionShape s = attention_shape("attention_backward", qkv.shape(), p);
    MEDIMG_CHECK(dout.shape() == (Shape{s.B, s.L, s.width()}) && dqkv.shape() == qkv.shape() &&
                     lse.shape() == (Shape{s.B, s.H, s.L}),
                 ShapeError, "attention_backward: dout ", dout.shape(), ", dqkv ", dqkv.shape(), " and lse ", lse.shape(),
                 " do not fit qkv ", qkv.shape(), " with ", s.H, " heads");
    detail::float32_only<T, B>("attention_backward", {{"qkv", &qkv}, {"lse", &lse}, {"dout", &dout}, {"dqkv", &dqkv}});
    AttentionImpl<B>::backward(qkv, lse, dout, dqkv, s);
}

/// The sizes of one bmm: batch, c (batch, m, n) = op(a) (m, k) op(b) (k, n).
struct BmmShape {
    std::int64_t batch = 0, m = 0, n = 0, k = 0;
    bool ta = false, tb = false, a_shared = false, b_shared = false;
};

inline BmmShape bmm_shape(const char* fn, const Shape& a, const Shape& b, bool ta, bool tb) {
    MEDIMG_CHECK(a.rank() == 3 && b.rank() == 3, ShapeError, fn, ": a and b must be (batch, rows, cols), got ", a, " and ", b);
    BmmShape s;
    s.ta = ta;
    s.tb = tb;
    s.m = ta ? a[2] : a[1];
    s.k = ta ? a[1] : a[2];
    const std::int64_t kb = tb ? b[2] : b[1];
    s.n = tb ? b[1] : b[2];
    MEDIMG_CHECK(s.k == kb, ShapeError, fn, ": inner sizes differ: op(a) of ", a, " is (", s.m, ", ", s.k, ") but op(b) of ", b,
                 " is (", kb, ", ", s.n, ")", ta || tb ? " (after the transposes asked for)" : "");
    MEDIMG_CHECK(a[0] == b[0] || a[0] == 1 || b[0] == 1, ShapeError, fn, ": batch sizes ", a[0], " and ", b[0],
                 " differ and neither is 1 (a ", a, ", b ", b, ")");
    s.batch = std::max(a[0], b[0]);
    s.a_shared = a[0] == 1 && s.batch > 1;
    s.b_shared = b[0] == 1 && s.batch > 1;
    return s;
}

/// c (batch, m, n) = op(a) op(b) per batch item, or += when accumulate; c aliases neither a nor b.
/// Ensures: c written.
template <class T, class B>
void bmm(const Tensor<T, B>& a, const Tensor<T, B>& b, Tensor<T, B>& c, bool ta = false, bool tb = false,
         bool accumulate = false) {
    const BmmShape s = bmm_shape("bmm", a.shape(), b.shape(), ta, tb);
    MEDIMG_CHECK(c.shape() == (Shape{s.batch, s.m, s.n}), ShapeError, "bmm: output is ", c.shape(), ", expected ",
                 Shape{s.batch, s.m, s.n}, " for a ", a.shape(), " and b ", b.shape());
    detail::float32_only<T, B>("bmm", {{"a", &a}, {"b", &b}, {"c", &c}});
    AttentionImpl<B>::bmm(a, b, c, s, accumulate);
}

}  // namespace medimg::ops

#include "medimg/cpu/attention.hpp"
#if MEDIMG_HAS_CUDA
#  include "medimg/cuda/attention.cuh"
#endif
