// SPDX-License-Identifier: MIT
// optim/adam.hpp: Adam (Kingma & Ba 2015) with PyTorch's L2 weight decay, and AdamW (Loshchilov &
// Hutter 2019) with decoupled weight decay, exactly torch.optim.Adam / torch.optim.AdamW
// (the "Algorithm" boxes of their docs pages; the update loop is OptimImpl<B>::adam).
// Bias correction as PyTorch's single-tensor path, in double on the host: step_size =
// lr / (1 - beta1^t), denom = sqrt(v) / sqrt(1 - beta2^t) + eps, with t counted per parameter.
// Not here: maximize, capturable/fused flags, sparse gradients (SparseAdam).
#pragma once

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "medimg/optim/optimizer.hpp"

namespace medimg::optim {

/// torch.optim.Adam's arguments and defaults.
struct AdamOptions {
    double lr = 1e-3;
    double beta1 = 0.9;         // betas[0], in [0, 1)
    double beta2 = 0.999;       // betas[1], in [0, 1)
    double eps = 1e-8;          // >= 0, added to sqrt(v_hat)
    double weight_decay = 0.0;  // >= 0; L2 penalty added to the gradient
    bool amsgrad = false;       // Reddi et al. 2018: normalise by the running max of v
};

/// torch.optim.AdamW's arguments and defaults (weight_decay 1e-2, decoupled: p *= 1 - lr * wd).
struct AdamWOptions {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 1e-2;
    bool amsgrad = false;
};

namespace detail {
/// What Adam and AdamW share; they differ only in where weight decay enters.
template <class T, class B>
class AdamCore : public Optimizer<T, B> {
protected:
    /// Throws ValueError ("<name>: invalid ...") for the options torch.optim.Adam rejects:
    /// lr < 0, eps < 0, a beta outside [0, 1), weight_decay < 0; also any non-finite value.
    AdamCore(std::string name, NamedParams<T, B> params, const AdamOptions& o, bool decoupled)
        : Optimizer<T, B>(std::move(name), std::move(params), o.lr), o_(o), decoupled_(decoupled) {
        const std::string& n = this->name_;
        MEDIMG_CHECK(std::isfinite(o.eps) && o.eps >= 0.0, ValueError, n, ": invalid eps ", o.eps, " (must be >= 0)");
        MEDIMG_CHECK(o.beta1 >= 0.0 && o.beta1 < 1.0, ValueError, n, ": invalid beta1 ", o.beta1, " (must be in [0, 1))");
        MEDIMG_CHECK(o.beta2 >= 0.0 && o.beta2 < 1.0, ValueError, n, ": invalid beta2 ", o.beta2, " (must be in [0, 1))");
        MEDIMG_CHECK(std::isfinite(o.weight_decay) && o.weight_decay >= 0.0, ValueError, n, ": invalid weight_decay ",
                     o.weight_decay, " (must be >= 0)");
    }

    void update(std::size_t i, Tensor<T, B>& p, const Tensor<T, B>& g) override {
        auto& st = this->state_[i];
        if (this->param_step_[i] == 0) {  // lazy state, as PyTorch: zeros on the first update
            st["exp_avg"] = Tensor<T, B>::zeros(p.shape());
            st["exp_avg_sq"] = Tensor<T, B>::zeros(p.shape());
            if (o_.amsgrad) st["max_exp_avg_sq"] = Tensor<T, B>::zeros(p.shape());
        }
        const auto t = static_cast<double>(++this->param_step_[i]);  // state['step'] += 1; step_t.item()
        const double lr = this->lr_;
        // bias corrections (Kingma & Ba 2015, Algorithm 1), host double as PyTorch's Python floats
        const double bias_correction1 = 1.0 - std::pow(o_.beta1, t);
        const double bias_correction2 = 1.0 - std::pow(o_.beta2, t);
        const double step_size = lr / bias_correction1;
        AdamScalars<T> s{};
        s.beta1 = static_cast<T>(o_.beta1);
        s.one_minus_beta1 = static_cast<T>(1.0 - o_.beta1);
        s.beta2 = static_cast<T>(o_.beta2);
        s.one_minus_beta2 = static_cast<T>(1.0 - o_.beta2);
        s.eps = static_cast<T>(o_.eps);
        s.neg_step_size = static_cast<T>(-step_size);
        s.bias_correction2_sqrt = static_cast<T>(std::sqrt(bias_correction2));
        const double wd = this->decays(i) ? o_.weight_decay : 0.0;
        s.weight_decay = static_cast<T>(wd);
        s.decay_factor = static_cast<T>(1.0 - detail::rounded_product(lr, wd));
        s.l2_weight_decay = !decoupled_ && wd != 0.0;
        s.decoupled_weight_decay = decoupled_ && wd != 0.0;
        T* vmax = o_.amsgrad ? st["max_exp_avg_sq"].data() : nullptr;
        OptimImpl<B>::adam(p.data(), g.data(), st["exp_avg"].data(), st["exp_avg_sq"].data(), vmax, p.numel(), s);
    }
    std::vector<std::string> state_names() const override {
        if (o_.amsgrad) return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
        return {"exp_avg", "exp_avg_sq"};
    }
    bool per_param_step() const override { return true; }

    AdamOptions o_;
    bool decoupled_;
};
}  // namespace detail

/// torch.optim.Adam: weight_decay adds weight_decay * p to the gradient (an L2 penalty).
template <class T, class B = Cpu>
class Adam : public detail::AdamCore<T, B> {
public:
    explicit Adam(NamedParams<T, B> params, const AdamOptions& options = {})
        : detail::AdamCore<T, B>("Adam", std::move(params), options, false) {}
    explicit Adam(const std::vector<autograd::Var<T, B>>& params, const AdamOptions& options = {})
        : Adam(name_params(params), options) {}
    /// The options given at construction (options().lr is the initial lr; see lr()).
    const AdamOptions& options() const { return this->o_; }
};

/// torch.optim.AdamW: p *= 1 - lr * weight_decay before the Adam update (decoupled decay).
template <class T, class B = Cpu>
class AdamW : public detail::AdamCore<T, B> {
public:
    explicit AdamW(NamedParams<T, B> params, const AdamWOptions& options = {})
        : detail::AdamCore<T, B>("AdamW", std::move(params), to_core(options), true), options_(options) {}
    explicit AdamW(const std::vector<autograd::Var<T, B>>& params, const AdamWOptions& options = {})
        : AdamW(name_params(params), options) {}
    const AdamWOptions& options() const { return options_; }

private:
    static AdamOptions to_core(const AdamWOptions& w) {
        AdamOptions o;
        o.lr = w.lr;
        o.beta1 = w.beta1;
        o.beta2 = w.beta2;
        o.eps = w.eps;
        o.weight_decay = w.weight_decay;
        o.amsgrad = w.amsgrad;
        return o;
    }
    AdamWOptions options_;
};

}  // namespace medimg::optim
