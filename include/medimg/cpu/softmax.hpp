// SPDX-License-Identifier: MIT
// cpu/softmax.hpp: host log-softmax and softmax cross-entropy, one row per task, in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "medimg/core/parallel.hpp"
#include "medimg/ops/softmax.hpp"

namespace medimg::ops {

template <>
struct SoftmaxImpl<Cpu> {
    template <class T>
    static void log_softmax_forward(const Tensor<T, Cpu>& x, Tensor<T, Cpu>& y) {
        const std::int64_t C = x.size(1);
        parallel_for(0, x.size(0), [&](std::int64_t i) {
            const T* r = x.data() + i * C;
            T* o = y.data() + i * C;
            const double m = *std::max_element(r, r + C);
            double s = 0.0;
            for (std::int64_t c = 0; c < C; ++c) s += std::exp(r[c] - m);
            const double lse = m + std::log(s);
            for (std::int64_t c = 0; c < C; ++c) o[c] = static_cast<T>(r[c] - lse);
        }, 64);
    }
    template <class T>
    static void log_softmax_backward(const Tensor<T, Cpu>& y, const Tensor<T, Cpu>& dy, Tensor<T, Cpu>& dx) {
        const std::int64_t C = y.size(1);
        parallel_for(0, y.size(0), [&](std::int64_t i) {
            const T* yr = y.data() + i * C;
            const T* g = dy.data() + i * C;
            T* o = dx.data() + i * C;
            double s = 0.0;
            for (std::int64_t c = 0; c < C; ++c) s += g[c];
            for (std::int64_t c = 0; c < C; ++c) o[c] = static_cast<T>(g[c] - std::exp(static_cast<double>(yr[c])) * s);
        }, 64);
    }

    template <class T>
    static double weight_of(const Tensor<T, Cpu>& w, std::int64_t c) {
        return w.defined() ? static_cast<double>(w.data()[c]) : 1.0;
    }
    template <class T>
    static void check_targets(const Tensor<std::int64_t, Cpu>& target, std::int64_t C) {
        for (std::int64_t i = 0; i < target.numel(); ++i)
            MEDIMG_CHECK(target[i] >= 0 && target[i] < C, ValueError, "cross_entropy: target[", i, "] = ", target[i],
                         " is not a class index in [0, ", C, ")");
    }
    template <class T>
    static double total_weight(const Tensor<std::int64_t, Cpu>& target, const Tensor<T, Cpu>& w) {
        double s = 0.0;
        for (std::int64_t i = 0; i < target.numel(); ++i) s += weight_of(w, target[i]);
        return s;
    }

    template <class T>
    static void cross_entropy_forward(const Tensor<T, Cpu>& logits, const Tensor<std::int64_t, Cpu>& target,
                                      const Tensor<T, Cpu>& w, const CrossEntropyParams& p, Tensor<T, Cpu>& logp,
                                      Tensor<T, Cpu>& loss) {
        const std::int64_t N = logits.size(0), C = logits.size(1);
        check_targets<T>(target, C);
        log_softmax_forward(logits, logp);
        const double e = p.label_smoothing;
        double num = 0.0;
        for (std::int64_t i = 0; i < N; ++i) {
            const T* r = logp.data() + i * C;
            const std::int64_t y = target[i];
            double smooth = 0.0;
            if (e > 0.0)
                for (std::int64_t c = 0; c < C; ++c) smooth += weight_of(w, c) * -static_cast<double>(r[c]);
            num += (1.0 - e) * weight_of(w, y) * -static_cast<double>(r[y]) + e / static_cast<double>(C) * smooth;
        }
        const double den = total_weight(target, w);
        loss[0] = static_cast<T>(den != 0.0 ? num / den : std::numeric_limits<double>::quiet_NaN());  // as PyTorch
    }

    template <class T>
    static void cross_entropy_backward(const Tensor<T, Cpu>& logp, const Tensor<std::int64_t, Cpu>& target,
                                       const Tensor<T, Cpu>& w, const CrossEntropyParams& p,
                                       const Tensor<T, Cpu>& dloss, Tensor<T, Cpu>& dlogits) {
        const std::int64_t N = logp.size(0), C = logp.size(1);
        const double e = p.label_smoothing;
        const double scale = static_cast<double>(dloss[0]) / total_weight(target, w);
        parallel_for(0, N, [&](std::int64_t i) {
            const T* r = logp.data() + i * C;
            T* o = dlogits.data() + i * C;
            const std::int64_t y = target[i];
            double gsum = 0.0;  // sum_c g[i,c]
            for (std::int64_t c = 0; c < C; ++c) {
                const double g = -((c == y ? (1.0 - e) * weight_of(w, y) : 0.0) + e / static_cast<double>(C) * weight_of(w, c));
                gsum += g;
                o[c] = static_cast<T>(g);  // temporarily holds g
            }
            for (std::int64_t c = 0; c < C; ++c)
                o[c] = static_cast<T>(scale * (static_cast<double>(o[c]) - std::exp(static_cast<double>(r[c])) * gsum));
        }, 64);
    }
};

}  // namespace medimg::ops
