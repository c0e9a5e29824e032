// SPDX-License-Identifier: MIT
// autograd/grad_check.hpp: the one numerical-gradient checker every differentiable op is tested
// with (dlib's test_layer, tiny-dnn's gradient_check). Run it in double on the CPU:
//   numeric d f / d x_j = (f(x + h e_j) - f(x - h e_j)) / (2h)   (central difference, O(h^2))
// and compare with what backward() accumulated, |a - n| <= atol + rtol * |n|.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "medimg/autograd/variable.hpp"

namespace medimg::autograd {

struct GradCheckReport {
    bool ok = true;
    double max_abs_error = 0.0;
    std::string worst;  // "input 1, element 17: analytic 0.25, numeric 0.2500001"
};

/// f maps the inputs to a one-element Var. Every input with requires_grad is checked element by
/// element. f must be deterministic (f may update buffers such as BN running stats; they must not
/// change its output).
inline GradCheckReport grad_check(const std::function<Var<double, Cpu>(const std::vector<Var<double, Cpu>>&)>& f,
                                  std::vector<Var<double, Cpu>> inputs, double h = 1e-6, double rtol = 1e-5,
                                  double atol = 1e-6) {
    for (auto& v : inputs)
        if (v.requires_grad()) v.zero_grad();
    f(inputs).backward();
    GradCheckReport r;
    for (std::size_t k = 0; k < inputs.size(); ++k) {
        auto& v = inputs[k];
        if (!v.requires_grad()) continue;
        const auto analytic = v.grad().defined() ? v.grad().clone() : Tensor<double, Cpu>::zeros(v.shape());
        auto& x = v.value();
        NoGrad guard;
        for (std::int64_t j = 0; j < x.numel(); ++j) {
            const double orig = x[j];
            x[j] = orig + h;
            const double fp = f(inputs).value().item();
            x[j] = orig - h;
            const double fm = f(inputs).value().item();
            x[j] = orig;
            const double numeric = (fp - fm) / (2 * h);
            const double err = std::abs(analytic[j] - numeric);
            const bool bad = !(err <= atol + rtol * std::abs(numeric));
            if (bad) r.ok = false;
            if (err > r.max_abs_error || (bad && r.worst.empty()) || std::isnan(err)) {
                r.max_abs_error = std::max(r.max_abs_error, err);
                r.worst = "input " + std::to_string(k) + ", element " + std::to_string(j) + ": analytic " +
                          std::to_string(analytic[j]) + ", numeric " + std::to_string(numeric);
            }
        }
    }
    return r;
}

}  // namespace medimg::autograd
