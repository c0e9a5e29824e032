// SPDX-License-Identifier: MIT
// autograd/ssim_loss.hpp: SSIM as a differentiable op, autograd::ssim(x, y, options) -> scalar Var,
// so that 1 - ssim can be a training or registration loss. The forward value IS metrics::ssim's mean
// (same function, same numbers, scikit-image's two conventions); the backward recomputes the five
// filtered moments on the CPU in float64 and applies the adjoint filter (derivation below).
// Inputs (H, W), (C, H, W) or (N, C, H, W); the value is the mean over images and channels.
// Var<T, Cuda> inputs take the overload at the bottom: forward and backward on the device through
// metrics::SsimImpl<Cuda> (cuda/ssim.cuh). Deliberately not here: MS-SSIM's gradient, gradients
// of the full map's border (the mean never uses it), second derivatives. Slower than a fused
// kernel would be; correctness first.
#pragma once

#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "medimg/autograd/functions.hpp"
#include "medimg/autograd/variable.hpp"
#include "medimg/core/parallel.hpp"
#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"
#include "medimg/metrics/ssim.hpp"

namespace medimg::autograd {

// ---- the derivation ---------------------------------------------------------------------------
// One (H, W) plane, window radius r, 1-D taps w_k (k = -r..r, symmetric: the uniform window has
// w_k = 1 / win_size, the Gaussian the normalised taps of metrics::detail::make_kernel), 2-D window
// w_k w_l. For a plane z let (F z)(p) = sum_{k,l} w_k w_l z(p_i + k, p_j + l) at the positions p of
// the crop P = [r, H - r) x [r, W - r) that scikit-image averages. F z at those positions reads only
// pixels inside the image, so the reflect padding is never touched and plays no part below (had the
// border been included, the adjoint of reflect would fold padded taps back onto the pixels they
// copy: index -1 onto 0, H onto H - 1).
// The five moments at p:  mx = F x,  my = F y,  exx = F x^2,  eyy = F y^2,  exy = F (x y), and
//   vx = cov (exx - mx^2),  vy = cov (eyy - my^2),  vxy = cov (exy - mx my)
//   (cov = NP / (NP - 1), NP = win_size^2, for the uniform window's sample covariance; 1 for the
//   Gaussian's population covariance)
//   A1 = 2 mx my + C1,  A2 = 2 vxy + C2,  B1 = mx^2 + my^2 + C1,  B2 = vx + vy + C2
//   S(p) = A1 A2 / (B1 B2)                             (Wang et al. 2004, eq. 13)
// and the loss of the plane is L = g sum_{p in P} S(p), g = upstream / (|P| * planes).
// Partial derivatives of S (B1, B2 > 0 when C1, C2 > 0):
//   dS/dA1 = A2 / (B1 B2),  dS/dA2 = A1 / (B1 B2),  dS/dB1 = -S / B1,  dS/dB2 = -S / B2
//   dS/dmx  = 2 my dS/dA1 - 2 cov my dS/dA2 + 2 mx dS/dB1 - 2 cov mx dS/dB2   (my: swap x and y)
//   dS/dexx = dS/deyy = cov dS/dB2,   dS/dexy = 2 cov dS/dA2
// Chain rule through the linear filters: with maps over P
//   a_x = g dS/dmx,  a_y = g dS/dmy,  b = g dS/dexx,  c = g dS/dexy,
// d/dx_j of sum_p a(p) (F z)(p) is (F^T a)_j dz_j/dx_j, so
//   dL/dx = F^T a_x + 2 x (F^T b) + y (F^T c),     dL/dy = F^T a_y + 2 y (F^T b) + x (F^T c)
// where F^T scatters each crop value back over its window: (F^T a)(i, j) = sum over crop positions
// p with |i - p_i| <= r and |j - p_j| <= r of w_{i - p_i} w_{j - p_j} a(p) (a zero outside P; the
// window is symmetric, so F^T is the same correlation on the zero-extended map). Both F and F^T are
// separable: rows then columns, and columns then rows.

namespace detail {

/// The 1-D window, covariance factor and constants of metrics::ssim's options.
struct SsimGradKernel {
    int r = 3;
    std::vector<double> w;  // 2r + 1 taps, w[k + r] = w_k
    double cov = 1.0, c1 = 0.0, c2 = 0.0;
};

inline SsimGradKernel ssim_grad_kernel(const metrics::SsimOptions& o) {
    const bool uniform = o.window == metrics::Window::uniform;
    const auto k = metrics::detail::make_kernel(uniform, o.win_size, o.sigma, o.data_range, o.k1, o.k2);
    SsimGradKernel g;
    g.r = k.radius;
    g.cov = k.cov_norm;
    g.c1 = k.c1;
    g.c2 = k.c2;
    g.w.resize(static_cast<std::size_t>(2 * g.r + 1));
    for (int d = -g.r; d <= g.r; ++d)
        g.w[static_cast<std::size_t>(d + g.r)] =
            uniform ? 1.0 / static_cast<double>(o.win_size) : k.half[static_cast<std::size_t>(d < 0 ? -d : d)];
    return g;
}

/// Adds g * dL/dx and g * dL/dy of one plane's SSIM sum into dx, dy (either may be null).
/// x, y: (H, W) planes; dx, dy: (H, W), accumulated (+=).
template <class T>
void ssim_plane_backward(const T* x, const T* y, std::int64_t H, std::int64_t W, const SsimGradKernel& k, double g,
                         T* dx, T* dy) {
    const int r = k.r;
    const std::int64_t Hc = H - 2 * r, Wc = W - 2 * r, taps = 2 * r + 1;
    const double* w = k.w.data();
    const double cov = k.cov, c1 = k.c1, c2 = k.c2;

    // F along rows for the five products: (H, Wc) each; then along columns: (Hc, Wc) each.
    std::vector<double> rows(static_cast<std::size_t>(5 * H * Wc));  // [q][i][j], q = x, y, xx, yy, xy
    parallel_for(0, H, [&](std::int64_t i) {
        const T* xr = x + i * W;
        const T* yr = y + i * W;
        for (std::int64_t j = 0; j < Wc; ++j) {
            double s[5] = {0, 0, 0, 0, 0};
            for (std::int64_t t = 0; t < taps; ++t) {
                const double xv = static_cast<double>(xr[j + t]), yv = static_cast<double>(yr[j + t]), wt = w[t];
                s[0] += wt * xv;
                s[1] += wt * yv;
                s[2] += wt * xv * xv;
                s[3] += wt * yv * yv;
                s[4] += wt * xv * yv;
            }
            for (int q = 0; q < 5; ++q) rows[static_cast<std::size_t>((q * H + i) * Wc + j)] = s[q];
        }
    }, 8);

    // The moments at each crop position -> the four adjoint inputs a_x, a_y, b, c: (Hc, Wc) each.
    std::vector<double> adj(static_cast<std::size_t>(4 * Hc * Wc));  // [q][p_i][p_j], q = a_x, a_y, b, c
    parallel_for(0, Hc, [&](std::int64_t p) {
        for (std::int64_t j = 0; j < Wc; ++j) {
            double m[5] = {0, 0, 0, 0, 0};
            for (std::int64_t t = 0; t < taps; ++t)
                for (int q = 0; q < 5; ++q) m[q] += w[t] * rows[static_cast<std::size_t>((q * H + p + t) * Wc + j)];
            const double mx = m[0], my = m[1];
            const double vx = cov * (m[2] - mx * mx), vy = cov * (m[3] - my * my), vxy = cov * (m[4] - mx * my);
            const double A1 = 2.0 * mx * my + c1, A2 = 2.0 * vxy + c2;
            const double B1 = mx * mx + my * my + c1, B2 = vx + vy + c2;
            const double den = B1 * B2, S = A1 * A2 / den;
            const double dA1 = A2 / den, dA2 = A1 / den, dB1 = -S / B1, dB2 = -S / B2;
            const double dmx = 2.0 * my * dA1 - 2.0 * cov * my * dA2 + 2.0 * mx * dB1 - 2.0 * cov * mx * dB2;
            const double dmy = 2.0 * mx * dA1 - 2.0 * cov * mx * dA2 + 2.0 * my * dB1 - 2.0 * cov * my * dB2;
            const std::size_t o = static_cast<std::size_t>(p * Wc + j), n = static_cast<std::size_t>(Hc * Wc);
            adj[o] = g * dmx;
            adj[n + o] = g * dmy;
            adj[2 * n + o] = g * cov * dB2;
            adj[3 * n + o] = g * 2.0 * cov * dA2;
        }
    }, 8);

    // F^T, columns first: (Hc, Wc) -> (H, Wc), each row i gathering crop rows p = i - t, t in [0, 2r].
    std::vector<double> cols(static_cast<std::size_t>(4 * H * Wc));
    parallel_for(0, H, [&](std::int64_t i) {
        for (int q = 0; q < 4; ++q) {
            double* out = cols.data() + (q * H + i) * Wc;
            for (std::int64_t j = 0; j < Wc; ++j) out[j] = 0.0;
            for (std::int64_t t = 0; t < taps; ++t) {
                const std::int64_t p = i - t;
                if (p < 0 || p >= Hc) continue;
                const double* in = adj.data() + (q * Hc + p) * Wc;
                for (std::int64_t j = 0; j < Wc; ++j) out[j] += w[t] * in[j];
            }
        }
    }, 8);

    // ... then rows: (H, Wc) -> (H, W), and the products with x and y.
    parallel_for(0, H, [&](std::int64_t i) {
        std::vector<double> full(static_cast<std::size_t>(4 * W), 0.0);  // F^T a_x, F^T a_y, F^T b, F^T c
        for (int q = 0; q < 4; ++q) {
            const double* in = cols.data() + (q * H + i) * Wc;
            double* out = full.data() + q * W;
            for (std::int64_t j = 0; j < Wc; ++j)
                for (std::int64_t t = 0; t < taps; ++t) out[j + t] += w[t] * in[j];
        }
        for (std::int64_t j = 0; j < W; ++j) {
            const double xv = static_cast<double>(x[i * W + j]), yv = static_cast<double>(y[i * W + j]);
            const double fb = full[static_cast<std::size_t>(2 * W + j)], fc = full[static_cast<std::size_t>(3 * W + j)];
            if (dx) dx[i * W + j] += static_cast<T>(full[static_cast<std::size_t>(j)] + 2.0 * xv * fb + yv * fc);
            if (dy) dy[i * W + j] += static_cast<T>(full[static_cast<std::size_t>(W + j)] + 2.0 * yv * fb + xv * fc);
        }
    }, 8);
}

}  // namespace detail

/// Differentiable mean SSIM.
///   x, y: (H, W), (C, H, W) or (N, C, H, W), same shape, values in [0, options.data_range].
///   -> a scalar (shape ()) Var: metrics::ssim(x, y, options).mean for (H, W) and (C, H, W); for
///      (N, C, H, W) the mean over the N images of their SSIM (each the mean over its channels).
/// options: as metrics::ssim (window, win_size, sigma, data_range, K1, K2); `full` is ignored.
/// Requires: equal shapes; H, W >= the window side; valid options. Throws ShapeError starting
///   "autograd::ssim: " for ranks and shapes, and metrics::ssim's "ssim: " errors otherwise.
/// Ensures: backward adds dL/dx and dL/dy (the derivation above) into inputs that require grad.
template <class T>
Var<T, Cpu> ssim(const Var<T, Cpu>& x, const Var<T, Cpu>& y, const metrics::SsimOptions& options = {}) {
    MEDIMG_CHECK(x.defined() && y.defined(), ShapeError, "autograd::ssim: undefined input");
    MEDIMG_CHECK(x.shape() == y.shape(), ShapeError, "autograd::ssim: shapes differ: x ", x.shape(), " vs y ", y.shape());
    const int rank = x.shape().rank();
    MEDIMG_CHECK(rank >= 2 && rank <= 4, ShapeError, "autograd::ssim: expected (H, W), (C, H, W) or (N, C, H, W), got ",
                 x.shape());
    const std::int64_t H = x.size(-2), W = x.size(-1), planes = x.value().numel() / (H * W);
    // Every plane has the same crop, so the mean over images of per-image channel means is the
    // mean over all N * C planes: one metrics::ssim call on an (N * C, H, W) view.
    const Shape planar = rank == 2 ? Shape{H, W} : Shape{planes, H, W};
    metrics::SsimOptions o = options;
    o.full = false;
    o.arithmetic = metrics::Arithmetic::float64;  // the value of the function the backward differentiates
    const double value = metrics::ssim(x.value().reshape(planar), y.value().reshape(planar), o).mean;

    auto xn = x.node(), yn = y.node();
    const Tensor<T, Cpu> xs = x.value(), ys = y.value();  // saved: both images enter both gradients
    // backward: see the derivation at the top of this file.
    return Var<T, Cpu>::from_op(
        "ssim", Tensor<T, Cpu>::scalar(static_cast<T>(value)), {xn, yn}, [xn, yn, xs, ys, o, H, W, planes](const Tensor<T, Cpu>& dl) {
            const bool want_x = xn && xn->requires_grad, want_y = yn && yn->requires_grad;
            const auto k = detail::ssim_grad_kernel(o);
            const double crop = static_cast<double>(H - 2 * k.r) * static_cast<double>(W - 2 * k.r);
            const double g = static_cast<double>(dl.item()) / (crop * static_cast<double>(planes));
            Tensor<T, Cpu> dx = want_x ? Tensor<T, Cpu>::zeros(xs.shape()) : Tensor<T, Cpu>();
            Tensor<T, Cpu> dy = want_y ? Tensor<T, Cpu>::zeros(ys.shape()) : Tensor<T, Cpu>();
            for (std::int64_t pl = 0; pl < planes; ++pl)
                detail::ssim_plane_backward(xs.data() + pl * H * W, ys.data() + pl * H * W, H, W, k, g,
                                            want_x ? dx.data() + pl * H * W : nullptr,
                                            want_y ? dy.data() + pl * H * W : nullptr);
            if (want_x) xn->accumulate(dx, true);
            if (want_y) yn->accumulate(dy, true);
        });
}

/// Differentiable mean SSIM on another backend (Var<T, Cuda>): the same contract as above (inputs
/// with half storage - mixed-precision activations - are widened to float32 first), with
/// the forward value and the whole backward computed on the device (metrics::SsimImpl<B>; the
/// value stays in a device scalar and the backward reads the upstream gradient there, so neither
/// direction waits for the host). Agrees with the Cpu version to summation order.
template <class T, class B, std::enable_if_t<!std::is_same_v<B, Cpu>, int> = 0>
Var<T, B> ssim(const Var<T, B>& x_in, const Var<T, B>& y_in, const metrics::SsimOptions& options = {}) {
    MEDIMG_CHECK(x_in.defined() && y_in.defined(), ShapeError, "autograd::ssim: undefined input");
    const Var<T, B> x = detail::widened(x_in), y = detail::widened(y_in);  // float32 (half activations widen)
    MEDIMG_CHECK(x.shape() == y.shape(), ShapeError, "autograd::ssim: shapes differ: x ", x.shape(), " vs y ", y.shape());
    const int rank = x.shape().rank();
    MEDIMG_CHECK(rank >= 2 && rank <= 4, ShapeError, "autograd::ssim: expected (H, W), (C, H, W) or (N, C, H, W), got ",
                 x.shape());
    const std::int64_t H = x.size(-2), W = x.size(-1), planes = x.value().numel() / (H * W);
    const Shape planar = rank == 2 ? Shape{H, W} : Shape{planes, H, W};
    metrics::SsimOptions o = options;
    o.full = false;
    metrics::detail::check_ssim_args(x.value().reshape(planar), y.value().reshape(planar), o);  // metrics::ssim's errors
    const auto kern = metrics::detail::make_kernel(o.window == metrics::Window::uniform, o.win_size, o.sigma, o.data_range,
                                                   o.k1, o.k2);
    const double crop = static_cast<double>(H - 2 * kern.radius) * static_cast<double>(W - 2 * kern.radius);
    auto sums = Tensor<double, B>::empty({planes});
    metrics::SsimImpl<B>::planes(x.value().data(), y.value().data(), planes, H, W, kern, nullptr, sums.data(), nullptr);
    auto value = Tensor<T, B>::empty(Shape{});
    metrics::SsimImpl<B>::mean(sums.data(), planes, crop, value.data());

    auto xn = x.node(), yn = y.node();
    const Tensor<T, B> xs = x.value(), ys = y.value();  // saved: both images enter both gradients
    // backward: the derivation at the top of this file; g = dl / (crop * planes) on the device.
    return Var<T, B>::from_op(
        "ssim", std::move(value), {xn, yn}, [xn, yn, xs, ys, kern, H, W, planes, crop](const Tensor<T, B>& dl) {
            const bool want_x = xn && xn->requires_grad, want_y = yn && yn->requires_grad;
            Tensor<T, B> dx = want_x ? Tensor<T, B>::zeros(xs.shape()) : Tensor<T, B>();
            Tensor<T, B> dy = want_y ? Tensor<T, B>::zeros(ys.shape()) : Tensor<T, B>();
            metrics::SsimImpl<B>::backward(xs.data(), ys.data(), planes, H, W, kern, dl.data(),
                                           crop * static_cast<double>(planes), want_x ? dx.data() : nullptr,
                                           want_y ? dy.data() : nullptr);
            if (want_x) xn->accumulate(dx, true);
            if (want_y) yn->accumulate(dy, true);
        });
}

}  // namespace medimg::autograd
