// SPDX-License-Identifier: MIT
// optim/optimizer.hpp: what every optimizer shares. OptimizerBase is the type-erased part a
// learning-rate scheduler drives (lr, initial_lr); Optimizer<T, B> adds the named parameters,
// step() (skips parameters whose grad is undefined, runs under NoGrad), zero_grad() (forgets the
// grads, PyTorch's set_to_none=True) and state_dict()/load_state_dict() for exact resumption.
// Also the backend contract: the per-element update scalars and `OptimImpl<B>` (cpu/optim.hpp).
// Deliberately not here: parameter groups (one lr for all parameters), sparse gradients,
// maximize, closures (LBFGS-style re-evaluation).
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "medimg/autograd/variable.hpp"
#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"

namespace medimg::optim {

/// Parameters by name, in model order: {"conv1.weight", w}, ... A Var is a shared handle, so the
/// optimizer updating `var.value()` in place updates the model.
template <class T, class B = Cpu>
using NamedParams = std::vector<std::pair<std::string, autograd::Var<T, B>>>;

/// Optimizer state as host tensors, keyed "<param>.<state>" plus "step", "lr", "lr_residual".
template <class T>
using StateDict = std::map<std::string, Tensor<T, Cpu>>;

/// Names unnamed parameters "0", "1", ... (PyTorch's state_dict numbering).
template <class T, class B>
NamedParams<T, B> name_params(const std::vector<autograd::Var<T, B>>& params) {
    NamedParams<T, B> named;
    named.reserve(params.size());
    for (std::size_t i = 0; i < params.size(); ++i) named.emplace_back(std::to_string(i), params[i]);
    return named;
}

namespace detail {
/// a * b rounded to a double before it is used. Python rounds every product, while GCC's default
/// -ffp-contract=fast fuses `a * b + c` into one fma when FMA is enabled (-march=native), which
/// would move host-side hyper-parameter arithmetic (schedules, 1 - lr * wd) off PyTorch's values.
inline double rounded_product(double a, double b) {
    volatile double p = a * b;
    return p;
}
}  // namespace detail

// ---- backend contract -----------------------------------------------------------------------
// Each optimizer turns its double hyper-parameters into T exactly where PyTorch's kernels do
// (a Python float Scalar is converted to the tensor's dtype: `alpha.to<scalar_t>()`), then calls
// one fused per-element loop of OptimImpl<B>. The loops follow the single-tensor (foreach=False)
// op order; see cpu/optim.hpp.

/// Scalars of one SGD update, already converted to T.
template <class T>
struct SgdScalars {
    T neg_lr;               // -lr
    T weight_decay;         // used only when has_weight_decay
    T momentum;             // used only when has_momentum
    T one_minus_dampening;  // 1 - dampening, computed in double, then converted
    bool has_weight_decay;  // weight_decay != 0 (in double, as PyTorch tests it)
    bool has_momentum;      // momentum != 0
    bool nesterov;
    bool first_step;  // the momentum buffer is created now: buf = d_p (no dampening)
};

/// Scalars of one Adam / AdamW update, already converted to T.
template <class T>
struct AdamScalars {
    T beta1, one_minus_beta1;    // 1 - beta1 computed in double, then converted
    T beta2, one_minus_beta2;
    T eps;
    T neg_step_size;             // -(lr / (1 - beta1^t))
    T bias_correction2_sqrt;     // sqrt(1 - beta2^t)
    T weight_decay;              // Adam: L2 term added to the gradient
    T decay_factor;              // AdamW: 1 - lr * weight_decay
    bool l2_weight_decay;        // Adam with weight_decay != 0
    bool decoupled_weight_decay; // AdamW with weight_decay != 0
};

/// Fused per-element update loops, specialised per backend (cpu/optim.hpp). Pointers are backend
/// memory of n elements; every loop overwrites p and the state it is given in place.
template <class B>
struct OptimImpl;

// ---- the type-erased part a scheduler drives -----------------------------------------------
class OptimizerBase {
public:
    virtual ~OptimizerBase() = default;
    // Not copyable or movable: a copy would share the state tensors (handles), and schedulers
    // keep a pointer to their optimizer. Hold optimizers in place or in a unique_ptr.
    OptimizerBase(const OptimizerBase&) = delete;
    OptimizerBase& operator=(const OptimizerBase&) = delete;

    /// One update of every parameter that has a gradient.
    virtual void step() = 0;
    /// Forgets every parameter's gradient (set to undefined).
    virtual void zero_grad() = 0;

    /// The class name ("SGD", "Adam", "AdamW"), the prefix of every message.
    const std::string& name() const { return name_; }
    /// The learning rate the next step() uses (a scheduler changes it between steps).
    double lr() const { return lr_; }
    /// Requires: lr finite and >= 0 (ValueError otherwise).
    void set_lr(double lr) {
        check_lr(lr);
        lr_ = lr;
    }
    /// The lr when the first scheduler was attached (PyTorch's param_group['initial_lr'], set
    /// with setdefault: later schedulers see the same base lr). Empty before any scheduler.
    const std::optional<double>& initial_lr() const { return initial_lr_; }
    void set_initial_lr(double lr) { initial_lr_ = lr; }
    /// How many times step() has run (also restored by load_state_dict).
    std::int64_t step_count() const { return step_count_; }

protected:
    OptimizerBase(std::string name, double lr) : name_(std::move(name)) {
        check_lr(lr);
        lr_ = lr;
    }
    void check_lr(double lr) const {
        MEDIMG_CHECK(std::isfinite(lr) && lr >= 0.0, ValueError, name_, ": invalid learning rate ", lr, " (must be >= 0)");
    }

    std::string name_;
    double lr_ = 0.0;
    std::optional<double> initial_lr_;
    std::int64_t step_count_ = 0;
};

// ---- Optimizer<T, B> -------------------------------------------------------------------------
template <class T, class B = Cpu>
class Optimizer : public OptimizerBase {
public:
    using Var = autograd::Var<T, B>;

    const NamedParams<T, B>& params() const { return params_; }

    /// Updates every parameter whose grad is defined, in place, under NoGrad.
    /// Requires: each defined grad has its parameter's shape (ShapeError otherwise).
    void step() final {
        autograd::NoGrad guard;
        for (const auto& [pname, p] : params_) {
            const auto& g = p.grad();
            MEDIMG_CHECK(!g.defined() || g.shape() == p.shape(), ShapeError, name_, ".step: gradient of '", pname,
                         "' has shape ", g.shape(), " but the parameter has shape ", p.shape());
        }
        ++step_count_;
        for (std::size_t i = 0; i < params_.size(); ++i) {
            auto& p = params_[i].second;
            if (!p.grad().defined()) continue;  // PyTorch: `if p.grad is not None`
            update(i, p.value(), p.grad());
            p.value().bump_version();  // the update wrote through the kernels, not the Tensor API
        }
    }

    void zero_grad() final {
        for (auto& [pname, p] : params_) p.zero_grad();
    }

    /// Takes these parameters out of weight decay (their decay is 0 whatever the options say):
    /// PyTorch's second param group with weight_decay=0, as timm's param_groups_weight_decay builds
    /// it for fine-tuning (nn::no_weight_decay_names). Throws ValueError naming a parameter this
    /// optimizer does not hold. Replaces an earlier call's list.
    void set_no_weight_decay(const std::vector<std::string>& names) {
        std::vector<bool> skip(params_.size(), false);
        for (const auto& n : names) {
            std::size_t i = 0;
            while (i < params_.size() && params_[i].first != n) ++i;
            MEDIMG_CHECK(i < params_.size(), ValueError, name_, ".set_no_weight_decay: no parameter named '", n, "'");
            skip[i] = true;
        }
        no_decay_ = std::move(skip);
    }
    /// Whether parameter i's updates include weight decay (not excluded by set_no_weight_decay).
    bool decays(std::size_t i) const { return no_decay_.empty() || !no_decay_[i]; }

    /// Everything needed to continue training bit for bit, as host copies:
    ///   "<param>.<state>"  per-parameter state of the parameter's shape (momentum_buffer,
    ///                      exp_avg, exp_avg_sq, max_exp_avg_sq), present once created;
    ///   "<param>.step"     per-parameter update count, rank 0 (Adam/AdamW, as PyTorch);
    ///   "step"             step_count(), rank 0;
    ///   "lr"               the learning rate rounded to T, rank 0;
    ///   "lr_residual"      (2): lr - T(lr) as two T parts, so that
    ///                      double(lr) + (double(r[0]) + double(r[1])) restores the double lr exactly
    ///                      (a float cannot hold it, and resuming must reproduce every rounding).
    /// Other hyper-parameters come from the options the optimizer is constructed with.
    StateDict<T> state_dict() const {
        StateDict<T> sd;
        for (std::size_t i = 0; i < params_.size(); ++i) {
            const std::string& pname = params_[i].first;
            for (const auto& [key, t] : state_[i])
                if (t.defined()) sd[pname + "." + key] = t.template to<Cpu>();
            if (per_param_step() && param_step_[i] > 0)
                sd[pname + ".step"] = Tensor<T, Cpu>::scalar(static_cast<T>(param_step_[i]));
        }
        sd["step"] = Tensor<T, Cpu>::scalar(static_cast<T>(step_count_));
        const T hi = static_cast<T>(lr_);
        const double r = lr_ - static_cast<double>(hi);  // exact: a double minus its nearest T
        const T mid = static_cast<T>(r);
        const T lo = static_cast<T>(r - static_cast<double>(mid));
        sd["lr"] = Tensor<T, Cpu>::scalar(hi);
        sd["lr_residual"] = Tensor<T, Cpu>::from_vector({2}, {mid, lo});
        return sd;
    }

    /// Restores a state_dict(). Validates everything before changing anything:
    /// ValueError for an unknown key, parameter or state name, a missing "step"/"lr", incomplete
    /// per-parameter state (Adam needs exp_avg, exp_avg_sq and step together), or a step that is
    /// not a non-negative integer; ShapeError (naming the key and both shapes) for a state tensor
    /// whose shape differs from its parameter's, or a scalar entry with more than one element.
    void load_state_dict(const StateDict<T>& sd) {
        const std::string fn = name_ + ".load_state_dict";
        std::map<std::string, std::size_t> index;
        for (std::size_t i = 0; i < params_.size(); ++i) index[params_[i].first] = i;
        const std::vector<std::string> names = state_names();
        auto expected = [&]() {
            std::string s;
            for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
            if (per_param_step()) s += (s.empty() ? "" : ", ") + std::string("step");
            return s.empty() ? std::string("none") : s;
        };
        auto scalar_of = [&](const std::string& key, const Tensor<T, Cpu>& t) {
            MEDIMG_CHECK(t.defined() && t.numel() == 1, ShapeError, fn, ": '", key, "' must hold one element, got shape ",
                         t.shape());
            return static_cast<double>(t[0]);
        };
        auto count_of = [&](const std::string& key, const Tensor<T, Cpu>& t) {
            const double v = scalar_of(key, t);
            MEDIMG_CHECK(std::isfinite(v) && v >= 0.0 && v == std::floor(v), ValueError, fn, ": '", key,
                         "' must be a non-negative integer, got ", v);
            return static_cast<std::int64_t>(v);
        };

        std::vector<std::map<std::string, Tensor<T, B>>> new_state(params_.size());
        std::vector<std::int64_t> new_param_step(params_.size(), 0);
        std::vector<std::set<std::string>> seen(params_.size());
        std::optional<std::int64_t> new_step;
        std::optional<double> new_lr;
        std::optional<Tensor<T, Cpu>> residual;
        for (const auto& [key, t] : sd) {
            if (key == "step") {
                new_step = count_of(key, t);
                continue;
            }
            if (key == "lr") {
                new_lr = scalar_of(key, t);
                continue;
            }
            if (key == "lr_residual") {
                MEDIMG_CHECK(t.defined() && t.shape() == Shape({2}), ShapeError, fn, ": 'lr_residual' has shape ", t.shape(),
                             ", expected [2]");
                residual = t;
                continue;
            }
            const auto dot = key.rfind('.');
            MEDIMG_CHECK(dot != std::string::npos, ValueError, fn, ": unknown key '", key,
                         "' (expected step, lr, lr_residual or <param>.<state>)");
            const std::string pname = key.substr(0, dot), what = key.substr(dot + 1);
            const auto it = index.find(pname);
            MEDIMG_CHECK(it != index.end(), ValueError, fn, ": unknown parameter '", pname, "' in key '", key, "'");
            const std::size_t i = it->second;
            if (what == "step" && per_param_step()) {
                new_param_step[i] = count_of(key, t);
                MEDIMG_CHECK(new_param_step[i] >= 1, ValueError, fn, ": '", key, "' must be >= 1 when present, got 0");
            } else {
                bool known = false;
                for (const auto& n : names) known = known || n == what;
                MEDIMG_CHECK(known, ValueError, fn, ": unexpected state '", what, "' in key '", key, "' (", name_,
                             " with these options keeps: ", expected(), ")");
                const Shape& ps = params_[i].second.shape();
                MEDIMG_CHECK(t.defined() && t.shape() == ps, ShapeError, fn, ": '", key, "' has shape ", t.shape(),
                             " but parameter '", pname, "' has shape ", ps);
                new_state[i][what] = t.template to<B>();
            }
            seen[i].insert(what);
        }
        MEDIMG_CHECK(new_step.has_value(), ValueError, fn, ": missing key 'step'");
        MEDIMG_CHECK(new_lr.has_value(), ValueError, fn, ": missing key 'lr'");
        const std::size_t full = names.size() + (per_param_step() ? 1 : 0);
        for (std::size_t i = 0; i < params_.size(); ++i)
            MEDIMG_CHECK(seen[i].empty() || seen[i].size() == full, ValueError, fn, ": incomplete state for parameter '",
                         params_[i].first, "': has ", seen[i].size(), " of ", full, " entries (", expected(), ")");
        double lr = *new_lr;
        if (residual) lr += static_cast<double>((*residual)[0]) + static_cast<double>((*residual)[1]);
        check_lr(lr);

        state_ = std::move(new_state);
        param_step_ = std::move(new_param_step);
        step_count_ = *new_step;
        lr_ = lr;
    }

protected:
    Optimizer(std::string name, NamedParams<T, B> params, double lr)
        : OptimizerBase(std::move(name), lr), params_(std::move(params)) {
        MEDIMG_CHECK(!params_.empty(), ValueError, name_, ": got an empty parameter list");
        std::set<std::string> names;
        std::set<const void*> nodes;
        for (const auto& [pname, p] : params_) {
            MEDIMG_CHECK(p.defined(), ValueError, name_, ": parameter '", pname, "' is an undefined Var");
            MEDIMG_CHECK(p.is_leaf(), ValueError, name_, ": can't optimize a non-leaf Var ('", pname, "', made by ",
                         p.node()->op, ")");
            MEDIMG_CHECK(names.insert(pname).second, ValueError, name_, ": duplicate parameter name '", pname, "'");
            MEDIMG_CHECK(nodes.insert(p.node().get()).second, ValueError, name_, ": parameter '", pname,
                         "' appears twice in the list (it would be updated twice per step)");
        }
        state_.resize(params_.size());
        param_step_.assign(params_.size(), 0);
    }

    /// Updates parameter i in place from its gradient g (same shape, defined).
    virtual void update(std::size_t i, Tensor<T, B>& p, const Tensor<T, B>& g) = 0;
    /// The per-parameter state tensors this optimizer keeps (given its options).
    virtual std::vector<std::string> state_names() const = 0;
    /// True when each parameter counts its own updates ("<param>.step"; Adam, AdamW).
    virtual bool per_param_step() const { return false; }

    NamedParams<T, B> params_;
    std::vector<std::map<std::string, Tensor<T, B>>> state_;  // per parameter, by state name
    std::vector<std::int64_t> param_step_;                     // per parameter; 0 = no update yet
    std::vector<bool> no_decay_;                               // per parameter once set; empty: all decay
};

}  // namespace medimg::optim

// The Cpu loops, and in a TU compiled by nvcc their CUDA twin (one fused kernel per optimizer).
#include "medimg/cpu/optim.hpp"
#if MEDIMG_HAS_CUDA
#  include "medimg/cuda/optim.cuh"
#endif
