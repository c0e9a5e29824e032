// SPDX-License-Identifier: MIT
// cpu/batch_norm.hpp: host batch normalisation, one channel per task. Statistics are two-pass
// (mean, then squared deviations) in double, so float inputs with a large mean lose nothing;
// the row sums are vectorised (`omp simd` reductions reorder the double additions only).
// Undefined gamma/beta mean 1/0 (affine = false).
#pragma once

#include <cmath>
#include <cstdint>

#include "medimg/core/parallel.hpp"
#include "medimg/ops/batch_norm.hpp"

namespace medimg::ops {

template <>
struct BatchNormImpl<Cpu> {
    struct Geom {
        std::int64_t N, C, S;  // S = H*W (1 for (N, C) input)
        std::int64_t M() const { return N * S; }
    };
    template <class T>
    static Geom geom(const Tensor<T, Cpu>& x) {
        return {x.size(0), x.size(1), x.rank() == 4 ? x.size(2) * x.size(3) : 1};
    }
    /// f(const T* row) over the N rows of channel c, each S long.
    template <class T, class F>
    static void rows(const Geom& g, const T* base, std::int64_t c, F&& f) {
        for (std::int64_t n = 0; n < g.N; ++n) f(base + (n * g.C + c) * g.S, (n * g.C + c) * g.S);
    }
    template <class T>
    static double at_or(const Tensor<T, Cpu>& t, std::int64_t c, double dflt) {
        return t.defined() ? static_cast<double>(t.data()[c]) : dflt;
    }

    template <class T>
    static void forward_training(const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& gamma, const Tensor<T, Cpu>& beta,
                                 Tensor<T, Cpu>& running_mean, Tensor<T, Cpu>& running_var, double momentum, double eps,
                                 Tensor<T, Cpu>& y, Tensor<T, Cpu>& save_mean, Tensor<T, Cpu>& save_invstd) {
        const Geom g = geom(x);
        parallel_for(0, g.C, [&](std::int64_t c) {
            double s = 0.0;
            rows(g, x.data(), c, [&](const T* r, std::int64_t) {
                double rs = 0.0;
#pragma omp simd reduction(+ : rs)
                for (std::int64_t i = 0; i < g.S; ++i) rs += r[i];
                s += rs;
            });
            const double mean = s / static_cast<double>(g.M());
            double ss = 0.0;
            rows(g, x.data(), c, [&](const T* r, std::int64_t) {
                double rs = 0.0;
#pragma omp simd reduction(+ : rs)
                for (std::int64_t i = 0; i < g.S; ++i) rs += (r[i] - mean) * (r[i] - mean);
                ss += rs;
            });
            const double var = ss / static_cast<double>(g.M());  // biased: used to normalise
            const double invstd = 1.0 / std::sqrt(var + eps);
            const double ga = at_or(gamma, c, 1.0), be = at_or(beta, c, 0.0);
            const T scale = static_cast<T>(ga * invstd), shift = static_cast<T>(be - ga * invstd * mean);
            rows(g, x.data(), c, [&](const T* r, std::int64_t off) {
                T* o = y.data() + off;
                for (std::int64_t i = 0; i < g.S; ++i) o[i] = r[i] * scale + shift;
            });
            if (save_mean.defined()) save_mean.data()[c] = static_cast<T>(mean);
            if (save_invstd.defined()) save_invstd.data()[c] = static_cast<T>(invstd);
            if (running_mean.defined())
                running_mean.data()[c] = static_cast<T>((1.0 - momentum) * running_mean.data()[c] + momentum * mean);
            if (running_var.defined()) {
                const double unbiased = ss / static_cast<double>(g.M() - 1);
                running_var.data()[c] = static_cast<T>((1.0 - momentum) * running_var.data()[c] + momentum * unbiased);
            }
        });
    }

    template <class T>
    static void forward_inference(const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& gamma, const Tensor<T, Cpu>& beta,
                                  const Tensor<T, Cpu>& running_mean, const Tensor<T, Cpu>& running_var, double eps,
                                  Tensor<T, Cpu>& y) {
        const Geom g = geom(x);
        parallel_for(0, g.C, [&](std::int64_t c) {
            const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var.data()[c]) + eps);
            const double ga = at_or(gamma, c, 1.0), be = at_or(beta, c, 0.0);
            const T scale = static_cast<T>(ga * invstd);
            const T shift = static_cast<T>(be - ga * invstd * running_mean.data()[c]);
            rows(g, x.data(), c, [&](const T* r, std::int64_t off) {
                T* o = y.data() + off;
                for (std::int64_t i = 0; i < g.S; ++i) o[i] = r[i] * scale + shift;
            });
        });
    }

    template <class T>
    static void backward(const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& dy, const Tensor<T, Cpu>& gamma,
                         const Tensor<T, Cpu>& mean_t, const Tensor<T, Cpu>& invstd_t, bool training, Tensor<T, Cpu>& dx,
                         Tensor<T, Cpu>& dgamma, Tensor<T, Cpu>& dbeta) {
        const Geom g = geom(x);
        parallel_for(0, g.C, [&](std::int64_t c) {
            const double mean = mean_t.data()[c], invstd = invstd_t.data()[c];
            double sdy = 0.0, sdyx = 0.0;  // dbeta, dgamma
            rows(g, x.data(), c, [&](const T* r, std::int64_t off) {
                const T* d = dy.data() + off;
                double a = 0.0, b = 0.0;
#pragma omp simd reduction(+ : a, b)
                for (std::int64_t i = 0; i < g.S; ++i) {
                    a += d[i];
                    b += d[i] * (r[i] - mean);
                }
                sdy += a;
                sdyx += b * invstd;
            });
            if (dbeta.defined()) dbeta.data()[c] = static_cast<T>(sdy);
            if (dgamma.defined()) dgamma.data()[c] = static_cast<T>(sdyx);
            if (!dx.defined()) return;
            const double k = at_or(gamma, c, 1.0) * invstd;
            const double M = static_cast<double>(g.M());
            rows(g, x.data(), c, [&](const T* r, std::int64_t off) {
                const T* d = dy.data() + off;
                T* o = dx.data() + off;
                if (training)
                    for (std::int64_t i = 0; i < g.S; ++i)
                        o[i] = static_cast<T>(k * (d[i] - sdy / M - (r[i] - mean) * invstd * sdyx / M));
                else
                    for (std::int64_t i = 0; i < g.S; ++i) o[i] = static_cast<T>(k * d[i]);
            });
        });
    }
};

}  // namespace medimg::ops
