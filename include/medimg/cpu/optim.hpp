// SPDX-License-Identifier: MIT
// cpu/optim.hpp: OptimImpl<Cpu>, the fused per-element loops behind optim::SGD, Adam and AdamW,
// split over threads in large chunks (memory-bound, like cpu/elementwise.hpp). Each loop repeats
// PyTorch 1.13's single-tensor CPU path op for op in T: its AVX2 `add(b, alpha)` and `addcmul` fuse
// the multiply-add, so those are std::fma here, every other op rounds once; float and double then
// match PyTorch bit for bit, whatever -ffp-contract says. Without -mfma each std::fma is a call to
// glibc's (hardware-dispatched) fma: ~4x slower loops (~90 ms per ResNet18-sized SGD step on one
// core); MEDIMG_NATIVE=ON inlines it. Not here: option/shape checks (the optimizers do them).
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <utility>

#include "medimg/core/parallel.hpp"
#include "medimg/optim/optimizer.hpp"

namespace medimg::optim {

template <>
struct OptimImpl<Cpu> {
    static constexpr std::int64_t grain = 1 << 15;  // elements per task below which threads do not pay

    template <class F>
    static void blocks(std::int64_t n, F&& f) {
        parallel_blocks(n, grain, std::forward<F>(f));
    }

    /// SGD (PyTorch docs, torch.optim.SGD "Algorithm"; Sutskever et al. 2013 for Nesterov):
    ///   d  = g + wd * p                       grad.add(param, alpha=wd)        if wd != 0
    ///   b  = d                                 first step (clone, no dampening) if momentum != 0
    ///   b  = momentum * b + (1 - dampening) d  buf.mul_(m).add_(d, alpha=1-dampening) later
    ///   d  = nesterov ? d + momentum * b : b
    ///   p  = p - lr * d                        param.add_(d, alpha=-lr)
    /// p, buf: (n) updated in place (buf unused without momentum); g: (n).
    template <class T>
    static void sgd(T* p, const T* g, T* buf, std::int64_t n, const SgdScalars<T>& s) {
        blocks(n, [&](std::int64_t lo, std::int64_t hi) {
            for (std::int64_t i = lo; i < hi; ++i) {
                T d = g[i];
                if (s.has_weight_decay) d = std::fma(p[i], s.weight_decay, d);
                if (s.has_momentum) {
                    const T b = s.first_step ? d : std::fma(d, s.one_minus_dampening, buf[i] * s.momentum);
                    buf[i] = b;
                    d = s.nesterov ? std::fma(b, s.momentum, d) : b;
                }
                p[i] = std::fma(d, s.neg_lr, p[i]);
            }
        });
    }

    /// Adam (Kingma & Ba 2015, Algorithm 1, with PyTorch's placement of eps) and AdamW
    /// (Loshchilov & Hutter 2019, Algorithm 2), as in torch.optim.Adam / AdamW "Algorithm":
    ///   p  = p * (1 - lr * wd)                 AdamW only (decoupled decay), before the rest
    ///   g  = g + wd * p                        Adam only (L2 penalty in the gradient)
    ///   m  = beta1 * m + (1 - beta1) * g       exp_avg.mul_(b1).add_(g, alpha=1-b1)
    ///   v  = beta2 * v + (1 - beta2) * g * g   exp_avg_sq.mul_(b2).addcmul_(g, g, value=1-b2)
    ///   vmax = max(vmax, v)                    amsgrad only (vmax != nullptr); used instead of v
    ///   denom = sqrt(v) / sqrt(1 - beta2^t) + eps
    ///   p  = p + (-lr / (1 - beta1^t)) * m / denom      param.addcdiv_(m, denom, value=-step_size)
    /// p, m, v, vmax: (n) updated in place; g: (n).
    template <class T>
    static void adam(T* p, const T* g, T* m, T* v, T* vmax, std::int64_t n, const AdamScalars<T>& s) {
        blocks(n, [&](std::int64_t lo, std::int64_t hi) {
            for (std::int64_t i = lo; i < hi; ++i) {
                T pi = p[i];
                if (s.decoupled_weight_decay) pi = pi * s.decay_factor;
                T gi = g[i];
                if (s.l2_weight_decay) gi = std::fma(pi, s.weight_decay, gi);
                const T mi = std::fma(gi, s.one_minus_beta1, m[i] * s.beta1);
                const T vi = std::fma(s.one_minus_beta2 * gi, gi, v[i] * s.beta2);
                m[i] = mi;
                v[i] = vi;
                T second = vi;
                if (vmax) {  // torch.maximum: the larger, NaN if either is NaN
                    const T mx = vmax[i];
                    second = (std::isnan(vi) || vi > mx) ? vi : mx;
                    vmax[i] = second;
                }
                const T denom = std::sqrt(second) / s.bias_correction2_sqrt + s.eps;
                p[i] = pi + (s.neg_step_size * mi) / denom;
            }
        });
    }

    /// GradScaler's unscale (torch._amp_foreach_non_finite_check_and_unscale_): g *= inv_scale;
    /// *found = 1 when some g was Inf or NaN (left as it was otherwise). found: one backend element.
    template <class T>
    static void unscale(T* g, std::int64_t n, T inv_scale, std::int64_t* found) {
        std::atomic<bool> bad{false};
        blocks(n, [&](std::int64_t lo, std::int64_t hi) {
            bool local = false;
            for (std::int64_t i = lo; i < hi; ++i) {
                local |= !std::isfinite(g[i]);
                g[i] *= inv_scale;
            }
            if (local) bad.store(true, std::memory_order_relaxed);
        });
        if (bad.load()) *found = 1;
    }
};

}  // namespace medimg::optim
