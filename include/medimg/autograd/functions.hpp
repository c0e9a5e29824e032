// SPDX-License-Identifier: MIT
// autograd/functions.hpp: every differentiable op, each backward right under its forward.
// A forward calls the ops:: front door (which checks shapes), then records a closure that
// computes the parents' gradients with the backend kernels and ADDS them (Node::accumulate; the
// rule is in engine.hpp). Parents that do not require grad are skipped, so frozen weights and
// inputs cost nothing. Optional arguments (bias, beta) are undefined Vars.
// Storage (mixed precision on the GPU): conv2d's output takes ops::conv2d_output_storage (bf16 /
// fp16 under autocast); batch_norm, relu, the poolings and add keep their input's storage (add of
// two storages widens both); linear gives float32 (the logits and the loss stay float32); mul,
// affine, sum, log_softmax, the losses and SSIM widen a half input through to_storage (a
// differentiable cast), as do sigmoid, silu, scale_channels, cat_channels, avg_pool2d, dropout and
// stochastic_depth and the transformer ops (layer_norm, gelu, attention, bmm, tokens, take_token);
// every gradient is stored as its value is (Node::storage).
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "medimg/autograd/variable.hpp"
#include "medimg/core/rng.hpp"
#include "medimg/ops/activation.hpp"
#include "medimg/ops/attention.hpp"
#include "medimg/ops/batch_norm.hpp"
#include "medimg/ops/channel.hpp"
#include "medimg/ops/conv2d.hpp"
#include "medimg/ops/elementwise.hpp"
#include "medimg/ops/layer_norm.hpp"
#include "medimg/ops/linear.hpp"
#include "medimg/ops/pooling.hpp"
#include "medimg/ops/softmax.hpp"
#include "medimg/ops/tokens.hpp"

namespace medimg::autograd {

namespace detail {
template <class T, class B>
bool wants(const std::shared_ptr<Node<T, B>>& n) {
    return n && n->requires_grad;
}
}  // namespace detail

// ---- storage ------------------------------------------------------------------------------
/// x stored as `storage` (Tensor::to_storage: float32 <-> bf16 / fp16), differentiable: the
/// gradient goes back in x's storage (torch's .to(dtype)). The same storage returns x itself.
template <class T, class B>
Var<T, B> to_storage(const Var<T, B>& x, Precision storage) {
    if (x.value().storage() == storage) return x;
    auto xn = x.node();
    return Var<T, B>::from_op("to_storage", x.value().to_storage(storage), {xn}, [xn](const Tensor<T, B>& dy) {
        xn->accumulate(dy, false);  // accumulate converts dy to x's storage
    });
}

namespace detail {
/// x as float32: what the ops without half-storage kernels (mul, affine, sum, log_softmax, the
/// losses, SSIM) take, as autocast runs its float32 ops on widened inputs.
template <class T, class B>
Var<T, B> widened(const Var<T, B>& x) {
    return x.defined() && x.value().half_storage() ? to_storage(x, Precision::fp32) : x;
}
}  // namespace detail

// ---- conv2d -------------------------------------------------------------------------------
/// x: (N, C_in, H, W), w: (C_out, C_in, kH, kW), b: (C_out) or undefined -> (N, C_out, Ho, Wo)
template <class T, class B>
Var<T, B> conv2d(const Var<T, B>& x, const Var<T, B>& w, const Var<T, B>& b, const ops::Conv2dParams& p = {}) {
    auto y = Tensor<T, B>::empty(ops::conv2d_output_shape("conv2d", x.shape(), w.shape(), p),
                                 ops::conv2d_output_storage(x.value()));
    ops::conv2d_forward(x.value(), w.value(), b.defined() ? b.value() : Tensor<T, B>(), y, p);
    auto xn = x.node(), wn = w.node(), bn = b.node();
    // Saved for backward: w for dx, x for dw (only what a wanted gradient needs).
    const Tensor<T, B> xs = detail::wants(wn) ? x.value() : Tensor<T, B>();
    const Tensor<T, B> ws = detail::wants(xn) ? w.value() : Tensor<T, B>();
    // backward: dx = conv_transpose(dy, w); dw = sum_n dy_n * im2col(x_n)^T; db = sum dy over (n, h, w)
    return Var<T, B>::from_op("conv2d", std::move(y), {xn, wn, bn}, [xn, wn, bn, xs, ws, p](const Tensor<T, B>& dy) {
        if (detail::wants(xn)) {
            auto dx = Tensor<T, B>::empty(xn->shape, xn->storage);
            ops::conv2d_backward_data(dy, ws, dx, p);
            xn->accumulate(dx, true);
        }
        if (detail::wants(wn)) {
            auto dw = Tensor<T, B>::empty(wn->shape);
            ops::conv2d_backward_filter(xs, dy, dw, p);
            wn->accumulate(dw, true);
        }
        if (detail::wants(bn)) {
            auto db = Tensor<T, B>::empty(bn->shape);
            ops::conv2d_backward_bias(dy, db);
            bn->accumulate(db, true);
        }
    });
}

// ---- batch_norm ---------------------------------------------------------------------------
/// x: (N, C[, H, W]); gamma, beta: (C) Vars (undefined = no affine); running stats: (C) buffers
/// updated in place when training (either may be undefined = track_running_stats=False).
template <class T, class B>
Var<T, B> batch_norm(const Var<T, B>& x, const Var<T, B>& gamma, const Var<T, B>& beta, Tensor<T, B> running_mean,
                     Tensor<T, B> running_var, bool training, double momentum = 0.1, double eps = 1e-5) {
    auto y = Tensor<T, B>::empty(x.shape(), x.value().storage());
    const Tensor<T, B> g = gamma.defined() ? gamma.value() : Tensor<T, B>();
    const Tensor<T, B> bt = beta.defined() ? beta.value() : Tensor<T, B>();
    const bool batch_stats = training || !running_mean.defined();
    Tensor<T, B> mean, invstd;  // what the forward normalised with, (C)
    if (batch_stats) {
        mean = Tensor<T, B>::empty({x.size(1)});
        invstd = Tensor<T, B>::empty({x.size(1)});
        ops::batch_norm_forward_training(x.value(), g, bt, running_mean, running_var, momentum, eps, y, mean, invstd);
    } else {
        ops::batch_norm_forward_inference(x.value(), g, bt, running_mean, running_var, eps, y);
        if (is_grad_enabled() && (x.requires_grad() || gamma.requires_grad() || beta.requires_grad())) {
            mean = running_mean.clone();
            invstd = Tensor<T, B>::empty({x.size(1)});
            ops::rsqrt(running_var, eps, invstd);
        }
    }
    auto xn = x.node(), gn = gamma.node(), bn = beta.node();
    const Tensor<T, B> xs = x.value();  // saved: the backward needs x and gamma
    // backward: see ops::batch_norm_backward (batch statistics depend on x; running ones do not)
    return Var<T, B>::from_op("batch_norm", std::move(y), {xn, gn, bn},
                              [xn, gn, bn, xs, g, mean, invstd, batch_stats](const Tensor<T, B>& dy) {
        Tensor<T, B> dx, dg, db;
        if (detail::wants(xn)) dx = Tensor<T, B>::empty(xn->shape, xn->storage);
        if (detail::wants(gn)) dg = Tensor<T, B>::empty(gn->shape);
        if (detail::wants(bn)) db = Tensor<T, B>::empty(bn->shape);
        ops::batch_norm_backward(xs, dy, g, mean, invstd, batch_stats, dx, dg, db);
        if (dx.defined()) xn->accumulate(dx, true);
        if (dg.defined()) gn->accumulate(dg, true);
        if (db.defined()) bn->accumulate(db, true);
    });
}

// ---- batch_norm + relu --------------------------------------------------------------------
/// relu(batch_norm(x) + residual) (residual may be undefined), as those ops in sequence. The CPU
/// runs it as one op (ops::batch_norm_relu_forward): one pass over the activation fewer each way,
/// and its backward keeps one bit per value for the ReLU instead of the output. Other backends
/// run the three ops.
template <class T, class B>
Var<T, B> batch_norm_relu(const Var<T, B>& x, const Var<T, B>& gamma, const Var<T, B>& beta, Tensor<T, B> running_mean,
                          Tensor<T, B> running_var, bool training, double momentum, double eps, const Var<T, B>& residual) {
    if constexpr (!std::is_same_v<B, Cpu>) {
        auto y = batch_norm(x, gamma, beta, running_mean, running_var, training, momentum, eps);
        return relu(residual.defined() ? add(y, residual) : y);
    } else {
        auto y = Tensor<T, B>::empty(x.shape(), x.value().storage());
        const std::int64_t rows = x.shape().rank() >= 2 ? x.shape()[0] * x.shape()[1] : 0;
        const std::int64_t S = rows > 0 ? x.value().numel() / rows : 0;
        auto mask = Tensor<std::uint16_t, B>::empty({rows, (S + 15) / 16});
        const Tensor<T, B> g = gamma.defined() ? gamma.value() : Tensor<T, B>();
        const Tensor<T, B> bt = beta.defined() ? beta.value() : Tensor<T, B>();
        const bool batch_stats = training || !running_mean.defined();
        const bool grads = is_grad_enabled() && (x.requires_grad() || gamma.requires_grad() || beta.requires_grad() ||
                                                 residual.requires_grad());
        Tensor<T, B> mean, invstd;  // what the forward normalised with, (C); kept when a backward may run
        if (batch_stats || grads) {
            mean = Tensor<T, B>::empty({x.shape()[1]});
            invstd = Tensor<T, B>::empty({x.shape()[1]});
        }
        ops::batch_norm_relu_forward(x.value(), g, bt, running_mean, running_var, batch_stats, momentum, eps,
                                     residual.defined() ? residual.value() : Tensor<T, B>(), y, mask, mean, invstd);
        auto xn = x.node(), gn = gamma.node(), bn = beta.node(), rn = residual.node();
        const Tensor<T, B> xs = x.value();
        return Var<T, B>::from_op("batch_norm_relu", std::move(y), {xn, gn, bn, rn},
                                  [xn, gn, bn, rn, xs, g, mask, mean, invstd, batch_stats](const Tensor<T, B>& dy) {
            Tensor<T, B> dx, dg, db, dr;
            if (detail::wants(xn)) dx = Tensor<T, B>::empty(xn->shape, xn->storage);
            if (detail::wants(gn)) dg = Tensor<T, B>::empty(gn->shape);
            if (detail::wants(bn)) db = Tensor<T, B>::empty(bn->shape);
            if (detail::wants(rn)) dr = Tensor<T, B>::empty(rn->shape, rn->storage);
            ops::batch_norm_relu_backward(xs, dy, mask, g, mean, invstd, batch_stats, dx, dg, db, dr);
            if (dx.defined()) xn->accumulate(dx, true);
            if (dg.defined()) gn->accumulate(dg, true);
            if (db.defined()) bn->accumulate(db, true);
            if (dr.defined()) rn->accumulate(dr, true);
        });
    }
}

// ---- relu ---------------------------------------------------------------------------------
template <class T, class B>
Var<T, B> relu(const Var<T, B>& x) {
    auto y = Tensor<T, B>::empty(x.shape(), x.value().storage());
    ops::relu_forward(x.value(), y);
    auto xn = x.node();
    // backward: dx = dy * [y > 0]  (uses the output, so x need not be kept)
    return Var<T, B>::from_op("relu", y, {xn}, [xn, y](const Tensor<T, B>& dy) {
        auto dx = Tensor<T, B>::empty(y.shape(), y.storage());
        ops::relu_backward(y, dy, dx);
        xn->accumulate(dx, true);
    });
}

// ---- pooling ------------------------------------------------------------------------------
/// x: (N, C, H, W) -> (N, C, Ho, Wo)
template <class T, class B>
Var<T, B> max_pool2d(const Var<T, B>& x, const ops::MaxPool2dParams& p) {
    const Shape ys = ops::max_pool2d_output_shape("max_pool2d", x.shape(), p);
    auto y = Tensor<T, B>::empty(ys, x.value().storage());
    auto xn = x.node();
    // backward: each window's gradient goes to its argmax. The CPU keeps the place in the window
    // (one byte per output; a 3x3 pool at 224 with batch 32 keeps 6 MiB instead of 25 MiB).
    if constexpr (std::is_same_v<B, Cpu>) {
        if (p.kernel_h * p.kernel_w <= 255) {
            auto place = Tensor<std::uint8_t, B>::empty(ys);
            ops::max_pool2d_forward_places(x.value(), y, place, p);
            return Var<T, B>::from_op("max_pool2d", std::move(y), {xn}, [xn, place, p](const Tensor<T, B>& dy) {
                auto dx = Tensor<T, B>::empty(xn->shape, xn->storage);
                ops::max_pool2d_backward_places(dy, place, dx, p);
                xn->accumulate(dx, true);
            });
        }
    }
    auto argmax = Tensor<std::int32_t, B>::empty(ys);
    ops::max_pool2d_forward(x.value(), y, argmax, p);
    return Var<T, B>::from_op("max_pool2d", std::move(y), {xn}, [xn, argmax](const Tensor<T, B>& dy) {
        auto dx = Tensor<T, B>::empty(xn->shape, xn->storage);
        ops::max_pool2d_backward(dy, argmax, dx);
        xn->accumulate(dx, true);
    });
}

/// x: (N, C, H, W) -> (N, C, out_h, out_w)
template <class T, class B>
Var<T, B> adaptive_avg_pool2d(const Var<T, B>& x, std::int64_t out_h = 1, std::int64_t out_w = 1) {
    MEDIMG_CHECK(x.shape().rank() == 4 && out_h >= 1 && out_w >= 1, ShapeError, "adaptive_avg_pool2d: input ", x.shape(),
                 " must be (N, C, H, W) and the output size (", out_h, ",", out_w, ") positive");
    auto y = Tensor<T, B>::empty({x.size(0), x.size(1), out_h, out_w}, x.value().storage());
    ops::adaptive_avg_pool2d_forward(x.value(), y);
    auto xn = x.node();
    // backward: each output's gradient spread evenly over its window
    return Var<T, B>::from_op("adaptive_avg_pool2d", std::move(y), {xn}, [xn](const Tensor<T, B>& dy) {
        auto dx = Tensor<T, B>::empty(xn->shape, xn->storage);
        ops::adaptive_avg_pool2d_backward(dy, dx);
        xn->accumulate(dx, true);
    });
}

/// x: (N, C, H, W) -> (N, C, Ho, Wo), the mean of each window (torch.nn.AvgPool2d, no padding).
template <class T, class B>
Var<T, B> avg_pool2d(const Var<T, B>& x_in, const ops::AvgPool2dParams& p = {}) {
    const Var<T, B> x = detail::widened(x_in);
    auto y = Tensor<T, B>::empty(ops::avg_pool2d_output_shape("avg_pool2d", x.shape(), p));
    ops::avg_pool2d_forward(x.value(), y, p);
    auto xn = x.node();
    // backward: each output's gradient spread evenly over its window
    return Var<T, B>::from_op("avg_pool2d", std::move(y), {xn}, [xn, p](const Tensor<T, B>& dy) {
        auto dx = Tensor<T, B>::empty(xn->shape);
        ops::avg_pool2d_backward(dy, dx, p);
        xn->accumulate(dx, true);
    });
}

// ---- linear -------------------------------------------------------------------------------
/// x: (N, in), w: (out, in), b: (out) or undefined -> (N, out)
template <class T, class B>
Var<T, B> linear(const Var<T, B>& x, const Var<T, B>& w, const Var<T, B>& b) {
    ops::check_linear("linear", x.shape(), w.shape());
    auto y = Tensor<T, B>::empty({x.size(0), w.size(0)});
    ops::linear_forward(x.value(), w.value(), b.defined() ? b.value() : Tensor<T, B>(), y);
    auto xn = x.node(), wn = w.node(), bn = b.node();
    // Saved for backward: w for dx, x for dw and db (the shared kernel computes both).
    const Tensor<T, B> xs = detail::wants(wn) || detail::wants(bn) ? x.value() : Tensor<T, B>();
    const Tensor<T, B> ws = detail::wants(xn) ? w.value() : Tensor<T, B>();
    // backward: dx = dy w;  dw = dy^T x;  db = sum_n dy
    return Var<T, B>::from_op("linear", std::move(y), {xn, wn, bn}, [xn, wn, bn, xs, ws](const Tensor<T, B>& dy) {
        if (detail::wants(xn)) {
            auto dx = Tensor<T, B>::empty(xn->shape, xn->storage);
            ops::linear_backward_data(dy, ws, dx);
            xn->accumulate(dx, true);
        }
        if (detail::wants(wn) || detail::wants(bn)) {
            auto dw = Tensor<T, B>::empty(wn->shape);
            Tensor<T, B> db = detail::wants(bn) ? Tensor<T, B>::empty(bn->shape) : Tensor<T, B>();
            ops::linear_backward_weight(xs, dy, dw, db);
            if (detail::wants(wn)) wn->accumulate(dw, true);
            if (db.defined()) bn->accumulate(db, true);
        }
    });
}

// ---- elementwise --------------------------------------------------------------------------
/// a + b (same shape).  backward: da = dy, db = dy
template <class T, class B>
Var<T, B> add(const Var<T, B>& a_in, const Var<T, B>& b_in) {
    // one storage for both: theirs when they agree, else float32 (autocast's widest-type rule)
    const bool same = a_in.value().storage() == b_in.value().storage();
    const Var<T, B> a = same ? a_in : detail::widened(a_in), b = same ? b_in : detail::widened(b_in);
    auto y = Tensor<T, B>::empty(a.shape(), a.value().storage());
    ops::add(a.value(), b.value(), y);
    auto an = a.node(), bn = b.node();
    return Var<T, B>::from_op("add", std::move(y), {an, bn}, [an, bn](const Tensor<T, B>& dy) {
        an->accumulate(dy, false);  // dy is shared by both parents: not owned
        bn->accumulate(dy, false);
    });
}

/// a * b elementwise (same shape; half storage is widened).  backward: da = dy * b, db = dy * a
template <class T, class B>
Var<T, B> mul(const Var<T, B>& a_in, const Var<T, B>& b_in) {
    const Var<T, B> a = detail::widened(a_in), b = detail::widened(b_in);
    auto y = Tensor<T, B>::empty(a.shape());
    ops::mul(a.value(), b.value(), y);
    auto an = a.node(), bn = b.node();
    const Tensor<T, B> as = detail::wants(bn) ? a.value() : Tensor<T, B>();  // saved: the other factor
    const Tensor<T, B> bs = detail::wants(an) ? b.value() : Tensor<T, B>();
    return Var<T, B>::from_op("mul", std::move(y), {an, bn}, [an, bn, as, bs](const Tensor<T, B>& dy) {
        if (detail::wants(an)) {
            auto da = Tensor<T, B>::empty(dy.shape());
            ops::mul(dy, bs, da);
            an->accumulate(da, true);
        }
        if (detail::wants(bn)) {
            auto db = Tensor<T, B>::empty(dy.shape());
            ops::mul(dy, as, db);
            bn->accumulate(db, true);
        }
    });
}

/// alpha * x + beta (half storage is widened).  backward: dx = alpha * dy
template <class T, class B>
Var<T, B> affine(const Var<T, B>& x_in, T alpha, T beta) {
    const Var<T, B> x = detail::widened(x_in);
    auto y = Tensor<T, B>::empty(x.shape());
    ops::affine(x.value(), alpha, beta, y);
    auto xn = x.node();
    return Var<T, B>::from_op("affine", std::move(y), {xn}, [xn, alpha](const Tensor<T, B>& dy) {
        auto dx = Tensor<T, B>::empty(dy.shape());
        ops::affine(dy, alpha, T(0), dx);
        xn->accumulate(dx, true);
    });
}
template <class T, class B>
Var<T, B> scale(const Var<T, B>& x, T alpha) {
    return affine(x, alpha, T(0));
}
template <class T, class B>
Var<T, B> add_scalar(const Var<T, B>& x, T beta) {
    return affine(x, T(1), beta);
}

// ---- smooth activations -------------------------------------------------------------------
/// sigmoid(x) = 1 / (1 + exp(-x)).  backward: dx = dy * y * (1 - y)
template <class T, class B>
Var<T, B> sigmoid(const Var<T, B>& x_in) {
    const Var<T, B> x = detail::widened(x_in);
    auto y = Tensor<T, B>::empty(x.shape());
    ops::sigmoid_forward(x.value(), y);
    auto xn = x.node();
    return Var<T, B>::from_op("sigmoid", y, {xn}, [xn, y](const Tensor<T, B>& dy) {
        auto dx = Tensor<T, B>::empty(y.shape());
        ops::sigmoid_backward(y, dy, dx);
        xn->accumulate(dx, true);
    });
}
/// silu(x) = x * sigmoid(x) (torch.nn.SiLU, Swish).  backward: dx = dy * s * (1 + x (1 - s))
template <class T, class B>
Var<T, B> silu(const Var<T, B>& x_in) {
    const Var<T, B> x = detail::widened(x_in);
    auto y = Tensor<T, B>::empty(x.shape());
    ops::silu_forward(x.value(), y);
    auto xn = x.node();
    const Tensor<T, B> xs = x.value();  // saved: the backward needs x
    return Var<T, B>::from_op("silu", std::move(y), {xn}, [xn, xs](const Tensor<T, B>& dy) {
        auto dx = Tensor<T, B>::empty(xs.shape());
        ops::silu_backward(xs, dy, dx);
        xn->accumulate(dx, true);
    });
}

// ---- per-channel scaling and concatenation ------------------------------------------------
/// y[n, c, ...] = x[n, c, ...] * s[n, c]: x (N, C, ...), s (N, C) (squeeze-and-excitation).
/// backward: dx = dy * s;  ds[n, c] = sum over the plane of dy * x
template <class T, class B>
Var<T, B> scale_channels(const Var<T, B>& x_in, const Var<T, B>& s_in) {
    const Var<T, B> x = detail::widened(x_in), s = detail::widened(s_in);
    auto y = Tensor<T, B>::empty(x.shape());
    ops::scale_channels(x.value(), s.value(), y);
    auto xn = x.node(), sn = s.node();
    const Tensor<T, B> xs = detail::wants(sn) ? x.value() : Tensor<T, B>();  // saved: the other factor
    const Tensor<T, B> ss = detail::wants(xn) ? s.value() : Tensor<T, B>();
    return Var<T, B>::from_op("scale_channels", std::move(y), {xn, sn}, [xn, sn, xs, ss](const Tensor<T, B>& dy) {
        Tensor<T, B> dx = detail::wants(xn) ? Tensor<T, B>::empty(xn->shape) : Tensor<T, B>();
        Tensor<T, B> ds = detail::wants(sn) ? Tensor<T, B>::empty(sn->shape) : Tensor<T, B>();
        ops::scale_channels_backward(xs, ss, dy, dx, ds);
        if (dx.defined()) xn->accumulate(dx, true);
        if (ds.defined()) sn->accumulate(ds, true);
    });
}

/// torch.cat(xs, dim=1): (N, C_i, ...) with equal N and plane shape -> (N, sum C_i, ...).
/// backward: each input gets its channel slice of dy.
template <class T, class B>
Var<T, B> cat_channels(const std::vector<Var<T, B>>& xs_in) {
    MEDIMG_CHECK(!xs_in.empty(), ShapeError, "cat_channels: no inputs");
    std::vector<Var<T, B>> xs;
    for (const auto& x : xs_in) xs.push_back(detail::widened(x));
    Shape out = xs[0].shape();
    MEDIMG_CHECK(out.rank() >= 2, ShapeError, "cat_channels: inputs must be (N, C, ...), got ", out);
    std::int64_t C = 0;
    for (const auto& x : xs) {
        Shape a = x.shape(), b = out;
        MEDIMG_CHECK(a.rank() == b.rank(), ShapeError, "cat_channels: ", xs[0].shape(), " and ", x.shape(),
                     " differ in rank");
        a[1] = b[1] = 0;
        MEDIMG_CHECK(a == b, ShapeError, "cat_channels: ", xs[0].shape(), " and ", x.shape(),
                     " differ outside the channel dimension");
        C += x.size(1);
    }
    out[1] = C;
    auto y = Tensor<T, B>::empty(out);
    std::vector<std::shared_ptr<Node<T, B>>> parents;
    std::vector<std::int64_t> offsets;
    std::int64_t c0 = 0;
    for (const auto& x : xs) {
        ops::copy_channels(x.value(), 0, y, c0, x.size(1));
        parents.push_back(x.node());
        offsets.push_back(c0);
        c0 += x.size(1);
    }
    auto ps = parents;
    return Var<T, B>::from_op("cat_channels", std::move(y), std::move(parents), [ps, offsets](const Tensor<T, B>& dy) {
        for (std::size_t i = 0; i < ps.size(); ++i) {
            if (!detail::wants(ps[i])) continue;
            auto dx = Tensor<T, B>::empty(ps[i]->shape);
            ops::copy_channels(dy, offsets[i], dx, 0, dx.size(1));
            ps[i]->accumulate(dx, true);
        }
    });
}

// ---- regularisation -----------------------------------------------------------------------
/// Inverted dropout (torch.nn.functional.dropout): in training each element is zeroed with
/// probability p and the rest scaled by 1 / (1 - p), the mask drawn from `rng` on the host (one
/// uniform per element in row-major order); identity when !training or p == 0.
/// backward: dx = dy * mask
template <class T, class B>
Var<T, B> dropout(const Var<T, B>& x_in, double p, bool training, Rng& rng) {
    MEDIMG_CHECK(p >= 0.0 && p <= 1.0, ValueError, "dropout: probability must be in [0, 1], got ", p);
    if (!training || p == 0.0) return x_in;
    const Var<T, B> x = detail::widened(x_in);
    auto host = Tensor<T, Cpu>::empty(x.shape());
    const T keep = p < 1.0 ? static_cast<T>(1.0 / (1.0 - p)) : T(0);
    for (std::int64_t i = 0; i < host.numel(); ++i) host[i] = rng.uniform() < p ? T(0) : keep;
    Tensor<T, B> mask;
    if constexpr (std::is_same_v<B, Cpu>)
        mask = host;
    else
        mask = host.template to<B>();
    auto y = Tensor<T, B>::empty(x.shape());
    ops::mul(x.value(), mask, y);
    auto xn = x.node();
    return Var<T, B>::from_op("dropout", std::move(y), {xn}, [xn, mask](const Tensor<T, B>& dy) {
        auto dx = Tensor<T, B>::empty(dy.shape());
        ops::mul(dy, mask, dx);
        xn->accumulate(dx, true);
    });
}

/// Stochastic depth, torchvision.ops.stochastic_depth(mode="row") (Huang et al. 2016): in
/// training each sample's whole residual branch x[n] is dropped with probability p and the kept
/// ones scaled by 1 / (1 - p), one uniform per sample from `rng`; identity when !training or p == 0.
/// backward: dx[n] = dy[n] * mask[n]
template <class T, class B>
Var<T, B> stochastic_depth(const Var<T, B>& x_in, double p, bool training, Rng& rng) {
    MEDIMG_CHECK(p >= 0.0 && p <= 1.0, ValueError, "stochastic_depth: probability must be in [0, 1], got ", p);
    if (!training || p == 0.0) return x_in;
    const Var<T, B> x = detail::widened(x_in);
    MEDIMG_CHECK(x.shape().rank() >= 1, ShapeError, "stochastic_depth: input must be (N, ...), got ", x.shape());
    const std::int64_t N = x.size(0);
    auto host = Tensor<T, Cpu>::empty(Shape{N, 1});
    const T keep = p < 1.0 ? static_cast<T>(1.0 / (1.0 - p)) : T(0);
    for (std::int64_t n = 0; n < N; ++n) host[n] = rng.uniform() < p ? T(0) : keep;
    Tensor<T, B> mask;
    if constexpr (std::is_same_v<B, Cpu>)
        mask = host;
    else
        mask = host.template to<B>();
    const Shape rows{N, 1, N ? x.value().numel() / N : 0};  // one "channel" per sample
    auto y = Tensor<T, B>::empty(x.shape());
    auto yv = y.reshape(rows);
    ops::scale_channels(x.value().reshape(rows), mask, yv);
    auto xn = x.node();
    return Var<T, B>::from_op("stochastic_depth", std::move(y), {xn}, [xn, mask, rows](const Tensor<T, B>& dy) {
        auto dx = Tensor<T, B>::empty(dy.shape());
        auto dxv = dx.reshape(rows);
        Tensor<T, B> none;
        ops::scale_channels_backward(Tensor<T, B>(), mask, dy.reshape(rows), dxv, none);
        xn->accumulate(dx, true);
    });
}

// ---- reductions and views -----------------------------------------------------------------
/// The sum of all elements, a scalar (half storage is widened).  backward: dx = dy (broadcast)
template <class T, class B>
Var<T, B> sum(const Var<T, B>& x_in) {
    const Var<T, B> x = detail::widened(x_in);
    auto y = Tensor<T, B>::scalar(static_cast<T>(ops::sum(x.value())));
    auto xn = x.node();
    return Var<T, B>::from_op("sum", std::move(y), {xn}, [xn](const Tensor<T, B>& dy) {
        xn->accumulate(Tensor<T, B>::full(xn->shape, dy.item()), true);
    });
}
/// The mean of all elements, a scalar.  backward: dx = dy / numel
template <class T, class B>
Var<T, B> mean(const Var<T, B>& x) {
    return scale(sum(x), static_cast<T>(1.0 / static_cast<double>(x.value().numel())));
}

/// The same values viewed with another shape.  backward: dy viewed back.
template <class T, class B>
Var<T, B> reshape(const Var<T, B>& x, const Shape& shape) {
    auto y = x.value().reshape(shape);
    auto xn = x.node();
    return Var<T, B>::from_op("reshape", std::move(y), {xn}, [xn](const Tensor<T, B>& dy) {
        xn->accumulate(dy.reshape(xn->shape), false);
    });
}
/// (N, ...) -> (N, prod(...)), as torch.flatten(x, 1).
template <class T, class B>
Var<T, B> flatten(const Var<T, B>& x) {
    MEDIMG_CHECK(x.shape().rank() >= 1, ShapeError, "flatten: needs rank >= 1, got ", x.shape());
    const std::int64_t n = x.size(0);
    return reshape(x, Shape{n, n ? x.value().numel() / n : 0});
}

// ---- log_softmax --------------------------------------------------------------------------
/// x: (N, C) -> log_softmax over C (half storage is widened).  backward: dx = dy - softmax * sum_c dy
template <class T, class B>
Var<T, B> log_softmax(const Var<T, B>& x_in) {
    const Var<T, B> x = detail::widened(x_in);
    auto y = Tensor<T, B>::empty(x.shape());
    ops::log_softmax_forward(x.value(), y);
    auto xn = x.node();
    return Var<T, B>::from_op("log_softmax", y, {xn}, [xn, y](const Tensor<T, B>& dy) {
        auto dx = Tensor<T, B>::empty(y.shape());
        ops::log_softmax_backward(y, dy, dx);
        xn->accumulate(dx, true);
    });
}

// ---- transformer ops ----------------------------------------------------------------------
/// torch.nn.functional.layer_norm over the last dimension: x (..., D), gamma / beta (D) or
/// undefined.  backward: ops/layer_norm.hpp (keeps x and the per-row mean and rstd)
template <class T, class B>
Var<T, B> layer_norm(const Var<T, B>& x_in, const Var<T, B>& gamma, const Var<T, B>& beta, double eps = 1e-5) {
    const Var<T, B> x = detail::widened(x_in);
    MEDIMG_CHECK(x.shape().rank() >= 1 && x.shape()[x.shape().rank() - 1] >= 1, ShapeError,
                 "layer_norm: input must be (..., D), got ", x.shape());
    const std::int64_t D = x.shape()[x.shape().rank() - 1], R = x.value().numel() / D;
    auto y = Tensor<T, B>::empty(x.shape());
    auto mu = Tensor<T, B>::empty({R}), rstd = Tensor<T, B>::empty({R});
    const Tensor<T, B> g = gamma.defined() ? gamma.value() : Tensor<T, B>();
    ops::layer_norm_forward(x.value(), g, beta.defined() ? beta.value() : Tensor<T, B>(), eps, y, mu, rstd);
    auto xn = x.node(), gn = gamma.node(), bn = beta.node();
    const Tensor<T, B> xs = x.value();
    return Var<T, B>::from_op("layer_norm", std::move(y), {xn, gn, bn}, [xn, gn, bn, xs, g, mu, rstd](const Tensor<T, B>& dy) {
        Tensor<T, B> dx, dg, db;
        if (detail::wants(xn)) dx = Tensor<T, B>::empty(xn->shape);
        if (detail::wants(gn)) dg = Tensor<T, B>::empty(gn->shape);
        if (detail::wants(bn)) db = Tensor<T, B>::empty(bn->shape);
        ops::layer_norm_backward(xs, dy, g, mu, rstd, dx, dg, db);
        if (dx.defined()) xn->accumulate(dx, true);
        if (dg.defined()) gn->accumulate(dg, true);
        if (db.defined()) bn->accumulate(db, true);
    });
}

/// gelu(x) (torch.nn.GELU; form erf = approximate='none', tanh = approximate='tanh').
/// backward: dx = dy * gelu'(x)
template <class T, class B>
Var<T, B> gelu(const Var<T, B>& x_in, ops::Gelu form = ops::Gelu::erf) {
    const Var<T, B> x = detail::widened(x_in);
    auto y = Tensor<T, B>::empty(x.shape());
    ops::gelu_forward(x.value(), y, form);
    auto xn = x.node();
    const Tensor<T, B> xs = x.value();  // saved: the backward needs x
    return Var<T, B>::from_op("gelu", std::move(y), {xn}, [xn, xs, form](const Tensor<T, B>& dy) {
        auto dx = Tensor<T, B>::empty(xs.shape());
        ops::gelu_backward(xs, dy, dx, form);
        xn->accumulate(dx, true);
    });
}

/// Multi-head scaled dot-product attention of the packed projections qkv (B, L, 3 H d) ->
/// (B, L, H d), heads side by side (ops/attention.hpp). `probs`, when given, receives the
/// attention weights (B, H, L, L) (attention rollout); nothing of size L^2 is kept for the backward.
/// backward: ops::attention_backward (recomputes the weights from the saved logsumexp)
template <class T, class B>
Var<T, B> attention(const Var<T, B>& qkv_in, const ops::AttentionParams& p, Tensor<T, B>* probs = nullptr) {
    const Var<T, B> qkv = detail::widened(qkv_in);
    const ops::AttentionShape s = ops::attention_shape("attention", qkv.shape(), p);
    auto y = Tensor<T, B>::empty({s.B, s.L, s.width()});
    auto lse = Tensor<T, B>::empty({s.B, s.H, s.L});
    Tensor<T, B> pr;
    if (probs) pr = Tensor<T, B>::empty({s.B, s.H, s.L, s.L});
    ops::attention_forward(qkv.value(), y, lse, pr, p);
    if (probs) *probs = pr;
    auto qn = qkv.node();
    const Tensor<T, B> qs = qkv.value();
    return Var<T, B>::from_op("attention", std::move(y), {qn}, [qn, qs, lse, p](const Tensor<T, B>& dy) {
        auto dqkv = Tensor<T, B>::empty(qs.shape());
        ops::attention_backward(qs, lse, dy, dqkv, p);
        qn->accumulate(dqkv, true);
    });
}

/// torch.bmm / torch.matmul of (batch, m, k) and (batch, k, n) stacks, either of batch 1 shared by
/// all (broadcast); ta / tb read a / b transposed.  backward: da = dc op(b)^T, db = op(a)^T dc,
/// summed over the batch for a shared operand.
template <class T, class B>
Var<T, B> bmm(const Var<T, B>& a_in, const Var<T, B>& b_in, bool ta = false, bool tb = false) {
    const Var<T, B> a = detail::widened(a_in), b = detail::widened(b_in);
    const ops::BmmShape s = ops::bmm_shape("bmm", a.shape(), b.shape(), ta, tb);
    auto c = Tensor<T, B>::empty({s.batch, s.m, s.n});
    ops::bmm(a.value(), b.value(), c, ta, tb);
    auto an = a.node(), bn = b.node();
    const Tensor<T, B> as = detail::wants(bn) ? a.value() : Tensor<T, B>();
    const Tensor<T, B> bs = detail::wants(an) ? b.value() : Tensor<T, B>();
    return Var<T, B>::from_op("bmm", std::move(c), {an, bn}, [an, bn, as, bs, s](const Tensor<T, B>& dc) {
        // A shared operand's gradient is the sum over the batch of the per-item products: one
        // accumulated product per item (a loop of bmm calls on batch-1 views).
        auto item = [](const Tensor<T, B>& t, std::int64_t i) {
            return t.size(0) == 1 ? t : t.slice0(i, 1);
        };
        if (detail::wants(an)) {
            auto da = Tensor<T, B>::empty(an->shape);
            // op(a) = dc op(b)^T; a itself = that, transposed back when ta
            if (!s.a_shared) {
                if (!s.ta) ops::bmm(dc, bs, da, false, !s.tb);  // da = dc op(b)^T
                else ops::bmm(bs, dc, da, s.tb, true);           // da = op(b) dc^T
            } else {
                for (std::int64_t i = 0; i < s.batch; ++i) {
                    auto dci = item(dc, i), bi = item(bs, i);
                    if (!s.ta) ops::bmm(dci, bi, da, false, !s.tb, i > 0);
                    else ops::bmm(bi, dci, da, s.tb, true, i > 0);
                }
            }
            an->accumulate(da, true);
        }
        if (detail::wants(bn)) {
            auto db = Tensor<T, B>::empty(bn->shape);
            if (!s.b_shared) {
                if (!s.tb) ops::bmm(as, dc, db, !s.ta, false);  // db = op(a)^T dc
                else ops::bmm(dc, as, db, true, s.ta);           // db = dc^T op(a)
            } else {
                for (std::int64_t i = 0; i < s.batch; ++i) {
                    auto dci = item(dc, i), ai = item(as, i);
                    if (!s.tb) ops::bmm(ai, dci, db, !s.ta, false, i > 0);
                    else ops::bmm(dci, ai, db, true, s.ta, i > 0);
                }
            }
            bn->accumulate(db, true);
        }
    });
}

/// The token sequence (N, T, D) a ViT's encoder reads from the patch embedding's map (N, D, h, w),
/// the class token (1, 1, D) and the position embedding (1, T, D), either undefined when absent
/// (ops/tokens.hpp).  backward: the map gets its tokens back; cls and pos the batch sums.
template <class T, class B>
Var<T, B> tokens(const Var<T, B>& patches_in, const Var<T, B>& cls, const Var<T, B>& pos) {
    const Var<T, B> patches = detail::widened(patches_in);
    const ops::TokensShape s = ops::tokens_shape("tokens", patches.shape(), cls.shape(), pos.shape(), cls.defined(), pos.defined());
    auto y = Tensor<T, B>::empty({s.N, s.T, s.D});
    ops::tokens_forward(patches.value(), cls.defined() ? cls.value() : Tensor<T, B>(), pos.defined() ? pos.value() : Tensor<T, B>(), y);
    auto xn = patches.node(), cn = cls.node(), pn = pos.node();
    const Shape ps = patches.shape();
    const bool with_cls = cls.defined();
    return Var<T, B>::from_op("tokens", std::move(y), {xn, cn, pn}, [xn, cn, pn, ps, with_cls](const Tensor<T, B>& dy) {
        Tensor<T, B> dx, dc, dp;
        if (detail::wants(xn)) dx = Tensor<T, B>::empty(ps);
        if (detail::wants(cn)) dc = Tensor<T, B>::empty(cn->shape);
        if (detail::wants(pn)) dp = Tensor<T, B>::empty(pn->shape);
        ops::tokens_backward(dy, ps, with_cls, dx, dc, dp);
        if (dx.defined()) xn->accumulate(dx, true);
        if (dc.defined()) cn->accumulate(dc, true);
        if (dp.defined()) pn->accumulate(dp, true);
    });
}

/// x[:, index] of x (N, T, D) -> (N, D).  backward: dy placed at that token, zeros elsewhere.
template <class T, class B>
Var<T, B> take_token(const Var<T, B>& x_in, std::int64_t index) {
    const Var<T, B> x = detail::widened(x_in);
    MEDIMG_CHECK(x.shape().rank() == 3, ShapeError, "take_token: input must be (N, T, D), got ", x.shape());
    auto y = Tensor<T, B>::empty({x.size(0), x.size(2)});
    ops::take_token_forward(x.value(), index, y);
    auto xn = x.node();
    return Var<T, B>::from_op("take_token", std::move(y), {xn}, [xn, index](const Tensor<T, B>& dy) {
        auto dx = Tensor<T, B>::empty(xn->shape);
        ops::take_token_backward(dy, index, dx);
        xn->accumulate(dx, true);
    });
}

}  // namespace medimg::autograd
