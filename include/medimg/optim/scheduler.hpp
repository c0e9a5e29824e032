// SPDX-License-Identifier: MIT
// optim/scheduler.hpp: per-epoch learning-rate schedulers as torch.optim.lr_scheduler 1.13: StepLR,
// CosineAnnealingLR, LinearLR / LinearWarmup, SequentialLR (warmup_cosine() builds the usual one).
// step() uses PyTorch's chainable (recursive) form with its exact expressions, so the lrs match
// PyTorch bit for bit (products feeding an add are kept unfused: detail::rounded_product);
// closed_form_lr(epoch) is the formula, used where SequentialLR switches schedulers.
// Construction performs PyTorch's initial step (the optimizer's lr becomes the epoch-0 value).
// Not here: ReduceLROnPlateau, OneCycleLR, per-iteration (fractional epoch) stepping, verbose.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "medimg/error.hpp"
#include "medimg/optim/optimizer.hpp"

namespace medimg::optim {

/// A scheduler's resumable state: counters and learning rates by name (all exact in a double).
/// SequentialLR adds its children's entries prefixed "<index>.".
using SchedulerState = std::map<std::string, double>;

/// What every scheduler offers. A scheduler keeps a pointer to its optimizer, which must outlive it.
class LRScheduler {
public:
    virtual ~LRScheduler() = default;
    LRScheduler(const LRScheduler&) = delete;
    LRScheduler& operator=(const LRScheduler&) = delete;
    LRScheduler(LRScheduler&&) = default;
    LRScheduler& operator=(LRScheduler&&) = default;

    /// Advances one epoch and sets the optimizer's lr (call after the epoch's optimizer steps).
    virtual void step() = 0;
    /// The schedule's closed form at `epoch` (no side effects), for plots and previews; equals
    /// what step() produces up to rounding (the two differ by ~1e-16 relative).
    virtual double closed_form_lr(std::int64_t epoch) const = 0;
    /// The resumable state (counters and lrs); restore with load_state on a scheduler built with the
    /// same arguments, after restoring the optimizer's state_dict (which carries its lr).
    virtual SchedulerState state() const = 0;
    /// Requires: exactly the keys state() produces (ValueError naming the key otherwise),
    /// last_epoch an integer >= -1, counters non-negative integers, lrs finite and >= 0.
    void load_state(const SchedulerState& s) {
        const SchedulerState expected = state();
        for (const auto& [key, v] : expected)
            MEDIMG_CHECK(s.count(key), ValueError, name_, ".load_state: missing key '", key, "'");
        for (const auto& [key, v] : s) {
            MEDIMG_CHECK(expected.count(key), ValueError, name_, ".load_state: unknown key '", key, "'");
            const std::string leaf = key.substr(key.rfind('.') == std::string::npos ? 0 : key.rfind('.') + 1);
            const bool counter = leaf == "last_epoch" || leaf == "step_count";
            const double lowest = leaf == "last_epoch" ? -1.0 : 0.0;
            MEDIMG_CHECK(std::isfinite(v) && v >= lowest && (!counter || v == std::floor(v)), ValueError, name_,
                         ".load_state: invalid '", key, "' = ", v, counter ? " (must be an integer >= " : " (must be >= ",
                         lowest, ")");
        }
        restore(s, "");
    }

    /// The lr set by the last step (PyTorch's get_last_lr()[0]).
    double last_lr() const { return last_lr_; }
    /// Epochs stepped since construction (0 right after it; PyTorch's last_epoch).
    std::int64_t last_epoch() const { return last_epoch_; }
    const std::string& name() const { return name_; }
    OptimizerBase& optimizer() const { return *opt_; }

protected:
    LRScheduler(OptimizerBase& opt, std::string name) : opt_(&opt), name_(std::move(name)) {}
    /// Applies a validated state whose keys carry `prefix`.
    virtual void restore(const SchedulerState& s, const std::string& prefix) = 0;

    OptimizerBase* opt_;
    std::string name_;
    std::int64_t last_epoch_ = -1;
    double last_lr_ = 0.0;
};

class SequentialLR;

/// A scheduler with PyTorch's chainable form (the next lr from the optimizer's current lr) and a
/// closed form in base_lr; StepLR, CosineAnnealingLR and LinearLR are these.
class ChainableScheduler : public LRScheduler {
public:
    void step() override {
        ++step_count_;
        ++last_epoch_;
        apply(chainable_lr());
    }
    /// The lr the schedule starts from: the optimizer's initial_lr (its lr when the first
    /// scheduler was attached, as PyTorch's param_group['initial_lr']).
    double base_lr() const { return base_lr_; }
    SchedulerState state() const override {
        return {{"last_epoch", static_cast<double>(last_epoch_)},
                {"step_count", static_cast<double>(step_count_)},
                {"base_lr", base_lr_},
                {"last_lr", last_lr_}};
    }

protected:
    ChainableScheduler(OptimizerBase& opt, std::string name) : LRScheduler(opt, std::move(name)) {
        if (!opt.initial_lr()) opt.set_initial_lr(opt.lr());  // group.setdefault('initial_lr', group['lr'])
        base_lr_ = *opt.initial_lr();
    }
    /// PyTorch's _initial_step(); each constructor calls it last, once the options are set.
    void initial_step() {
        step_count_ = 0;
        step();
    }
    /// PyTorch's step(epoch): jump to `epoch` and use the closed form (SequentialLR's switch).
    void step_closed_form(std::int64_t epoch) {
        ++step_count_;
        last_epoch_ = epoch;
        apply(closed_form_lr(epoch));
    }
    /// PyTorch's get_lr() at last_epoch_, reading the optimizer's current lr.
    virtual double chainable_lr() const = 0;
    void apply(double lr) {
        opt_->set_lr(lr);
        last_lr_ = lr;
    }
    void restore(const SchedulerState& s, const std::string& prefix) override {
        last_epoch_ = static_cast<std::int64_t>(s.at(prefix + "last_epoch"));
        step_count_ = static_cast<std::int64_t>(s.at(prefix + "step_count"));
        base_lr_ = s.at(prefix + "base_lr");
        last_lr_ = s.at(prefix + "last_lr");
    }

    double base_lr_ = 0.0;
    std::int64_t step_count_ = 0;

    friend class SequentialLR;
};

/// torch.optim.lr_scheduler.StepLR: lr = base_lr * gamma^(epoch // step_size).
class StepLR : public ChainableScheduler {
public:
    /// Requires: step_size >= 1, gamma finite and > 0 (ValueError "StepLR: invalid ...").
    StepLR(OptimizerBase& opt, std::int64_t step_size, double gamma = 0.1)
        : ChainableScheduler(opt, "StepLR"), step_size_(step_size), gamma_(gamma) {
        MEDIMG_CHECK(step_size >= 1, ValueError, "StepLR: invalid step_size ", step_size, " (must be >= 1)");
        MEDIMG_CHECK(std::isfinite(gamma) && gamma > 0.0, ValueError, "StepLR: invalid gamma ", gamma, " (must be > 0)");
        initial_step();
    }
    double closed_form_lr(std::int64_t epoch) const override {
        return base_lr_ * std::pow(gamma_, static_cast<double>(floor_div(epoch, step_size_)));
    }
    std::int64_t step_size() const { return step_size_; }
    double gamma() const { return gamma_; }

protected:
    // chainable: multiply by gamma at every multiple of step_size
    double chainable_lr() const override {
        if (last_epoch_ == 0 || last_epoch_ % step_size_ != 0) return opt_->lr();
        return opt_->lr() * gamma_;
    }

private:
    static std::int64_t floor_div(std::int64_t a, std::int64_t b) {  // Python's //
        const std::int64_t q = a / b;
        return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
    }
    std::int64_t step_size_;
    double gamma_;
};

/// torch.optim.lr_scheduler.CosineAnnealingLR (Loshchilov & Hutter 2017, SGDR without restarts):
/// lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / t_max)) / 2. Past t_max the
/// chainable form keeps following the cosine (back up to base_lr at 2 t_max), as PyTorch does.
class CosineAnnealingLR : public ChainableScheduler {
public:
    /// Requires: t_max >= 1, eta_min finite and >= 0 (ValueError "CosineAnnealingLR: invalid ...").
    CosineAnnealingLR(OptimizerBase& opt, std::int64_t t_max, double eta_min = 0.0)
        : ChainableScheduler(opt, "CosineAnnealingLR"), t_max_(t_max), eta_min_(eta_min) {
        MEDIMG_CHECK(t_max >= 1, ValueError, "CosineAnnealingLR: invalid t_max ", t_max, " (must be >= 1)");
        MEDIMG_CHECK(std::isfinite(eta_min) && eta_min >= 0.0, ValueError, "CosineAnnealingLR: invalid eta_min ", eta_min,
                     " (must be >= 0)");
        initial_step();
    }
    double closed_form_lr(std::int64_t epoch) const override {
        const double e = static_cast<double>(epoch), t = static_cast<double>(t_max_);
        return eta_min_ + (base_lr_ - eta_min_) * (1.0 + std::cos(kPi * e / t)) / 2.0;
    }
    std::int64_t t_max() const { return t_max_; }
    double eta_min() const { return eta_min_; }

protected:
    // chainable (PyTorch 1.13 get_lr, expression for expression):
    //   lr_e = (1 + cos(pi e / T)) / (1 + cos(pi (e-1) / T)) * (lr_{e-1} - eta_min) + eta_min,
    // except where the denominator is 0 (e - 1 = T mod 2T), which adds the rise from the trough:
    //   lr_e = lr_{e-1} + (base_lr - eta_min) * (1 - cos(pi / T)) / 2.
    double chainable_lr() const override {
        const double lr = opt_->lr(), t = static_cast<double>(t_max_);
        const auto e = last_epoch_;
        if (e == 0) return lr;
        if ((e - 1 - t_max_) % (2 * t_max_) == 0) return lr + (base_lr_ - eta_min_) * (1.0 - std::cos(kPi / t)) / 2.0;
        const double ratio = (1.0 + std::cos(kPi * static_cast<double>(e) / t)) /
                             (1.0 + std::cos(kPi * static_cast<double>(e - 1) / t));
        return detail::rounded_product(ratio, lr - eta_min_) + eta_min_;
    }

private:
    static constexpr double kPi = 3.141592653589793;  // math.pi
    std::int64_t t_max_;
    double eta_min_;
};

/// torch.optim.lr_scheduler.LinearLR: the factor on base_lr moves linearly from start_factor to
/// end_factor over total_iters epochs, then stays: lr = base_lr * (start + (end - start) *
/// min(epoch, total_iters) / total_iters).
class LinearLR : public ChainableScheduler {
public:
    /// Requires: start_factor in (0, 1], end_factor in [0, 1], total_iters >= 1
    /// (ValueError "LinearLR: invalid ..."). PyTorch 1.13 accepts start_factor 0 but then divides
    /// by zero on the first step.
    explicit LinearLR(OptimizerBase& opt, double start_factor = 1.0 / 3, double end_factor = 1.0, std::int64_t total_iters = 5)
        : LinearLR(opt, "LinearLR", start_factor, end_factor, total_iters) {}
    double closed_form_lr(std::int64_t epoch) const override {
        return base_lr_ * (start_ + (end_ - start_) * static_cast<double>(std::min(total_iters_, epoch)) /
                                        static_cast<double>(total_iters_));
    }
    double start_factor() const { return start_; }
    double end_factor() const { return end_; }
    std::int64_t total_iters() const { return total_iters_; }

protected:
    LinearLR(OptimizerBase& opt, const char* name, double start_factor, double end_factor, std::int64_t total_iters)
        : ChainableScheduler(opt, name), start_(start_factor), end_(end_factor), total_iters_(total_iters) {
        MEDIMG_CHECK(start_factor > 0.0 && start_factor <= 1.0, ValueError, name, ": invalid start_factor ", start_factor,
                     " (must be in (0, 1])");
        MEDIMG_CHECK(end_factor >= 0.0 && end_factor <= 1.0, ValueError, name, ": invalid end_factor ", end_factor,
                     " (must be in [0, 1])");
        MEDIMG_CHECK(total_iters >= 1, ValueError, name, ": invalid total_iters ", total_iters, " (must be >= 1)");
        initial_step();
    }
    // chainable: lr_e = lr_{e-1} * (1 + (end - start) / (total * start + (e - 1) * (end - start)))
    double chainable_lr() const override {
        const double lr = opt_->lr();
        const auto e = last_epoch_;
        if (e == 0) return lr * start_;
        if (e > total_iters_) return lr;
        const double denom = detail::rounded_product(static_cast<double>(total_iters_), start_) +
                             detail::rounded_product(static_cast<double>(e - 1), end_ - start_);
        return lr * (1.0 + (end_ - start_) / denom);
    }

private:
    double start_, end_;
    std::int64_t total_iters_;
};

/// Linear warmup: LinearLR from start_factor to 1 over total_iters epochs.
class LinearWarmup : public LinearLR {
public:
    /// Requires: start_factor in (0, 1], total_iters >= 1 (ValueError "LinearWarmup: invalid ...").
    LinearWarmup(OptimizerBase& opt, double start_factor, std::int64_t total_iters)
        : LinearLR(opt, "LinearWarmup", start_factor, 1.0, total_iters) {}
};

/// torch.optim.lr_scheduler.SequentialLR: schedulers[i] drives the lr from milestones[i-1] on.
/// At a milestone the next scheduler starts with its closed form at epoch 0 (PyTorch's step(0)),
/// then continues with its chainable form. Build the children on the same optimizer first; like
/// PyTorch, construction resets the lr to initial_lr, rewinds every child by one epoch and
/// repeats the first child's initial step.
class SequentialLR : public LRScheduler {
public:
    /// Requires: at least one scheduler, all non-null and built on `opt`; milestones.size() ==
    /// schedulers.size() - 1, strictly increasing and >= 1 (ValueError "SequentialLR: ...").
    SequentialLR(OptimizerBase& opt, std::vector<std::shared_ptr<ChainableScheduler>> schedulers,
                 std::vector<std::int64_t> milestones)
        : LRScheduler(opt, "SequentialLR"), schedulers_(std::move(schedulers)), milestones_(std::move(milestones)) {
        MEDIMG_CHECK(!schedulers_.empty(), ValueError, "SequentialLR: needs at least one scheduler");
        for (std::size_t i = 0; i < schedulers_.size(); ++i) {
            MEDIMG_CHECK(schedulers_[i] != nullptr, ValueError, "SequentialLR: scheduler ", i, " is null");
            MEDIMG_CHECK(&schedulers_[i]->optimizer() == &opt, ValueError, "SequentialLR: scheduler ", i, " (",
                         schedulers_[i]->name(), ") belongs to a different optimizer");
        }
        MEDIMG_CHECK(milestones_.size() + 1 == schedulers_.size(), ValueError, "SequentialLR: expects one milestone fewer than ",
                     "schedulers, got ", schedulers_.size(), " schedulers and ", milestones_.size(), " milestones");
        for (std::size_t i = 0; i < milestones_.size(); ++i)
            MEDIMG_CHECK(milestones_[i] >= 1 && (i == 0 || milestones_[i] > milestones_[i - 1]), ValueError,
                         "SequentialLR: milestones must be >= 1 and strictly increasing, got ", milestones_[i], " at index ", i);
        last_epoch_ = 0;
        opt.set_lr(*opt.initial_lr());               // reset to the initial lr
        for (auto& s : schedulers_) --s->last_epoch_;  // undo the children's initial steps
        schedulers_[0]->initial_step();
        last_lr_ = schedulers_[0]->last_lr();
    }

    void step() override {
        ++last_epoch_;
        const std::size_t idx = active(last_epoch_);
        ChainableScheduler& s = *schedulers_[idx];
        if (idx > 0 && milestones_[idx - 1] == last_epoch_)
            s.step_closed_form(0);
        else
            s.step();
        last_lr_ = s.last_lr();
    }
    /// The active child's closed form at the epoch relative to its milestone.
    double closed_form_lr(std::int64_t epoch) const override {
        const std::size_t idx = active(epoch);
        return schedulers_[idx]->closed_form_lr(idx > 0 ? epoch - milestones_[idx - 1] : epoch);
    }
    SchedulerState state() const override {
        SchedulerState s{{"last_epoch", static_cast<double>(last_epoch_)}, {"last_lr", last_lr_}};
        for (std::size_t i = 0; i < schedulers_.size(); ++i)
            for (const auto& [key, v] : schedulers_[i]->state()) s[std::to_string(i) + "." + key] = v;
        return s;
    }
    const std::vector<std::shared_ptr<ChainableScheduler>>& schedulers() const { return schedulers_; }
    const std::vector<std::int64_t>& milestones() const { return milestones_; }

protected:
    void restore(const SchedulerState& s, const std::string& prefix) override {
        last_epoch_ = static_cast<std::int64_t>(s.at(prefix + "last_epoch"));
        last_lr_ = s.at(prefix + "last_lr");
        for (std::size_t i = 0; i < schedulers_.size(); ++i) schedulers_[i]->restore(s, prefix + std::to_string(i) + ".");
    }

private:
    std::size_t active(std::int64_t epoch) const {  // bisect_right(milestones, epoch)
        return static_cast<std::size_t>(std::upper_bound(milestones_.begin(), milestones_.end(), epoch) - milestones_.begin());
    }
    std::vector<std::shared_ptr<ChainableScheduler>> schedulers_;
    std::vector<std::int64_t> milestones_;
};

/// The common recipe: LinearWarmup(start_factor -> 1 over warmup_iters epochs), then
/// CosineAnnealingLR(t_max, eta_min) from epoch warmup_iters on (t_max counts epochs after the
/// warmup), as SequentialLR(opt, [LinearLR, CosineAnnealingLR], milestones=[warmup_iters]).
inline SequentialLR warmup_cosine(OptimizerBase& opt, std::int64_t warmup_iters, double start_factor, std::int64_t t_max,
                                  double eta_min = 0.0) {
    auto warm = std::make_shared<LinearWarmup>(opt, start_factor, warmup_iters);
    auto cosine = std::make_shared<CosineAnnealingLR>(opt, t_max, eta_min);
    return SequentialLR(opt, {warm, cosine}, {warmup_iters});
}

}  // namespace medimg::optim
