// SPDX-License-Identifier: MIT
// optim/sgd.hpp: stochastic gradient descent with momentum, dampening, Nesterov momentum and L2
// weight decay, exactly torch.optim.SGD (the "Algorithm" box of its docs page; the update loop is
// OptimImpl<B>::sgd). The momentum buffer is created on a parameter's first update as a copy of
// the (decayed) gradient, without dampening, as PyTorch does. Not here: maximize, sparse grads.
#pragma once

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "medimg/optim/optimizer.hpp"

namespace medimg::optim {

/// torch.optim.SGD's arguments. lr has no default (PyTorch's `required`).
struct SGDOptions {
    explicit SGDOptions(double learning_rate) : lr(learning_rate) {}
    double lr;                  // learning rate, >= 0
    double momentum = 0.0;      // >= 0; 0 keeps no buffer
    double dampening = 0.0;     // buf = momentum * buf + (1 - dampening) * grad
    double weight_decay = 0.0;  // >= 0; L2 penalty: grad += weight_decay * p
    bool nesterov = false;      // needs momentum > 0 and dampening == 0
};

template <class T, class B = Cpu>
class SGD : public Optimizer<T, B> {
public:
    /// Throws ValueError ("SGD: invalid ...") for an empty or malformed parameter list or options
    /// PyTorch rejects: lr < 0, momentum < 0, weight_decay < 0, nesterov without momentum or with
    /// dampening; also any non-finite value.
    SGD(NamedParams<T, B> params, const SGDOptions& options)
        : Optimizer<T, B>("SGD", std::move(params), options.lr), options_(options) {
        const auto& o = options_;
        MEDIMG_CHECK(std::isfinite(o.momentum) && o.momentum >= 0.0, ValueError, "SGD: invalid momentum ", o.momentum,
                     " (must be >= 0)");
        MEDIMG_CHECK(std::isfinite(o.dampening), ValueError, "SGD: invalid dampening ", o.dampening, " (must be finite)");
        MEDIMG_CHECK(std::isfinite(o.weight_decay) && o.weight_decay >= 0.0, ValueError, "SGD: invalid weight_decay ",
                     o.weight_decay, " (must be >= 0)");
        MEDIMG_CHECK(!o.nesterov || (o.momentum > 0.0 && o.dampening == 0.0), ValueError,
                     "SGD: nesterov momentum requires momentum > 0 and dampening == 0, got momentum ", o.momentum,
                     " and dampening ", o.dampening);
    }
    /// Unnamed parameters are called "0", "1", ... in the state dict.
    SGD(const std::vector<autograd::Var<T, B>>& params, const SGDOptions& options) : SGD(name_params(params), options) {}

    /// The options given at construction (options().lr is the initial lr; see lr()).
    const SGDOptions& options() const { return options_; }

protected:
    void update(std::size_t i, Tensor<T, B>& p, const Tensor<T, B>& g) override {
        const auto& o = options_;
        SgdScalars<T> s{};
        s.neg_lr = static_cast<T>(-this->lr_);
        const double wd = this->decays(i) ? o.weight_decay : 0.0;
        s.weight_decay = static_cast<T>(wd);
        s.momentum = static_cast<T>(o.momentum);
        s.one_minus_dampening = static_cast<T>(1.0 - o.dampening);
        s.has_weight_decay = wd != 0.0;
        s.has_momentum = o.momentum != 0.0;
        s.nesterov = o.nesterov;
        T* buf = nullptr;
        if (s.has_momentum) {
            auto& b = this->state_[i]["momentum_buffer"];
            s.first_step = !b.defined();
            if (s.first_step) b = Tensor<T, B>::empty(p.shape());  // filled with d_p by the loop
            buf = b.data();
        }
        OptimImpl<B>::sgd(p.data(), g.data(), buf, p.numel(), s);
    }
    std::vector<std::string> state_names() const override {
        if (options_.momentum != 0.0) return {"momentum_buffer"};
        return {};
    }

private:
    SGDOptions options_;
};

}  // namespace medimg::optim
