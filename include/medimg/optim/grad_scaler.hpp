// SPDX-License-Identifier: MIT
// optim/grad_scaler.hpp: dynamic loss scaling for fp16 training, as torch.amp.GradScaler
// (Micikevicius et al. 2018, "Mixed Precision Training", section 3.2; PyTorch's amp docs):
//   scaler.scale(loss).backward();   // the loss times S, so small fp16 gradients stay above 2^-24
//   scaler.unscale(opt);             // every gradient times 1/S; notes whether one is Inf or NaN
//   clip_grad_norm(...);             // optional, on the true gradients
//   scaler.step(opt);                // opt.step() only when every gradient was finite
//   scaler.update();                 // Inf/NaN: S *= backoff (0.5), else after growth_interval
//                                    // finite steps in a row S *= growth (2)
// Defaults are PyTorch's: S = 2^16, growth 2, backoff 0.5, interval 2000. S stays a power of two
// times the initial scale, so 1/S is exact. On a device backend, unscale() reads one integer back
// (torch does the same in step()). Backend-generic: the per-element loop is OptimImpl<B>::unscale.
// Deliberately not here: per-optimizer bookkeeping for several optimizers, sparse gradients.
#pragma once

#include <cmath>
#include <cstdint>

#include "medimg/autograd/functions.hpp"
#include "medimg/error.hpp"
#include "medimg/optim/optimizer.hpp"

namespace medimg::optim {

struct GradScalerOptions {
    double init_scale = 65536.0;
    double growth_factor = 2.0;
    double backoff_factor = 0.5;
    std::int64_t growth_interval = 2000;
};

/// What resuming needs (the scale and the count of finite steps since it last changed).
struct GradScalerState {
    double scale = 65536.0;
    std::int64_t growth_tracker = 0;
};

template <class T, class B = Cpu>
class GradScaler {
public:
    /// Requires: init_scale finite and > 0, growth_factor > 1, 0 < backoff_factor < 1,
    /// growth_interval >= 1 (ValueError naming the option otherwise).
    explicit GradScaler(const GradScalerOptions& o = {}) : o_(o), scale_(o.init_scale) {
        MEDIMG_CHECK(std::isfinite(o.init_scale) && o.init_scale > 0, ValueError, "GradScaler: init_scale must be finite and > 0, got ",
                     o.init_scale);
        MEDIMG_CHECK(std::isfinite(o.growth_factor) && o.growth_factor > 1, ValueError,
                     "GradScaler: growth_factor must be > 1, got ", o.growth_factor);
        MEDIMG_CHECK(o.backoff_factor > 0 && o.backoff_factor < 1, ValueError, "GradScaler: backoff_factor must be in (0, 1), got ",
                     o.backoff_factor);
        MEDIMG_CHECK(o.growth_interval >= 1, ValueError, "GradScaler: growth_interval must be >= 1, got ", o.growth_interval);
    }

    /// loss * S, whose backward gives S times the gradients.
    autograd::Var<T, B> scale(const autograd::Var<T, B>& loss) const { return autograd::scale(loss, static_cast<T>(scale_)); }

    /// Divides every gradient of `opt`'s parameters by S (once per step; a second call before
    /// update() is an error, as in PyTorch) and returns whether all of them were finite.
    bool unscale(Optimizer<T, B>& opt) {
        MEDIMG_CHECK(!unscaled_, ValueError, "GradScaler::unscale: already called since the last update()");
        if (!found_.defined()) found_ = Tensor<std::int64_t, B>::zeros(Shape{1});
        else found_.zero_();
        const T inv = static_cast<T>(1.0 / scale_);
        for (const auto& [name, p] : opt.params()) {
            auto g = p.grad();
            if (g.defined()) OptimImpl<B>::unscale(g.data(), g.numel(), inv, found_.data());
        }
        finite_ = found_.item() == 0;
        unscaled_ = true;
        return finite_;
    }

    /// opt.step() when the gradients (unscaled now if unscale() was not called) were all finite;
    /// returns whether it stepped.
    bool step(Optimizer<T, B>& opt) {
        if (!unscaled_) unscale(opt);
        if (finite_) opt.step();
        else ++skipped_;
        return finite_;
    }

    /// The next scale: backoff after a step with Inf/NaN gradients, growth after growth_interval
    /// finite steps in a row. Requires a step (unscale or step) since the last update.
    void update() {
        MEDIMG_CHECK(unscaled_, ValueError, "GradScaler::update: no unscale() or step() since the last update()");
        if (!finite_) {
            scale_ *= o_.backoff_factor;
            tracker_ = 0;
        } else if (++tracker_ >= o_.growth_interval) {
            const double grown = scale_ * o_.growth_factor;
            if (std::isfinite(static_cast<T>(grown))) scale_ = grown;  // torch keeps S when growing would overflow
            tracker_ = 0;
        }
        unscaled_ = false;
    }

    double get_scale() const { return scale_; }
    /// Steps skipped (non-finite gradients) since construction or reset_skipped().
    std::int64_t skipped() const { return skipped_; }
    void reset_skipped() { skipped_ = 0; }

    GradScalerState state() const { return {scale_, tracker_}; }
    /// Requires: scale finite and > 0, growth_tracker >= 0.
    void load_state(const GradScalerState& s) {
        MEDIMG_CHECK(std::isfinite(s.scale) && s.scale > 0 && s.growth_tracker >= 0, ValueError,
                     "GradScaler::load_state: invalid state (scale ", s.scale, ", growth_tracker ", s.growth_tracker, ")");
        scale_ = s.scale;
        tracker_ = s.growth_tracker;
        unscaled_ = false;
    }

private:
    GradScalerOptions o_;
    double scale_;
    std::int64_t tracker_ = 0;
    std::int64_t skipped_ = 0;
    bool unscaled_ = false;
    bool finite_ = true;
    Tensor<std::int64_t, B> found_;
};

}  // namespace medimg::optim
