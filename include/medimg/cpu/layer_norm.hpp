// SPDX-License-Identifier: MIT
// cpu/layer_norm.hpp: host LayerNormImpl (ops/layer_norm.hpp). Rows are independent: the forward
// and dx split rows over threads; each row is read twice (mean, then the centred sum of squares:
// the two-pass variance, exact where sum(x^2) - D mean^2 would cancel) and written once. dgamma
// and dbeta sum over rows, in double, per fixed chunk of rows, then over chunks in order, so
// they do not depend on which thread ran what.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "medimg/core/parallel.hpp"
#include "medimg/ops/layer_norm.hpp"

namespace medimg::ops {

template <>
struct LayerNormImpl<Cpu> {
    static constexpr std::int64_t kRowsPerTask = 16;

    template <class T>
    static void forward(const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& gamma, const Tensor<T, Cpu>& beta, double eps,
                        Tensor<T, Cpu>& y, Tensor<T, Cpu>& mean, Tensor<T, Cpu>& rstd) {
        const std::int64_t D = x.shape()[x.rank() - 1], R = D ? x.numel() / D : 0;
        const T* xs = x.data();
        T* ys = y.data();
        const T* g = gamma.defined() ? gamma.data() : nullptr;
        const T* b = beta.defined() ? beta.data() : nullptr;
        T* ms = mean.data();
        T* rs = rstd.data();
        parallel_blocks(R, kRowsPerTask, [&](std::int64_t lo, std::int64_t hi) {
            for (std::int64_t r = lo; r < hi; ++r) {
                const T* xr = xs + r * D;
                T* yr = ys + r * D;
                T s = 0;
#pragma omp simd reduction(+ : s)
                for (std::int64_t i = 0; i < D; ++i) s += xr[i];
                const T m = s / static_cast<T>(D);
                T q = 0;
#pragma omp simd reduction(+ : q)
                for (std::int64_t i = 0; i < D; ++i) q += (xr[i] - m) * (xr[i] - m);
                const T inv = static_cast<T>(1.0 / std::sqrt(static_cast<double>(q) / static_cast<double>(D) + eps));
                ms[r] = m;
                rs[r] = inv;
                if (g && b) {
#pragma omp simd
                    for (std::int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - m) * inv * g[i] + b[i];
                } else if (g) {
#pragma omp simd
                    for (std::int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - m) * inv * g[i];
                } else {
#pragma omp simd
                    for (std::int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - m) * inv + (b ? b[i] : T(0));
                }
            }
        });
    }

    template <class T>
    static void backward(const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& dy, const Tensor<T, Cpu>& gamma,
                         const Tensor<T, Cpu>& mean, const Tensor<T, Cpu>& rstd, Tensor<T, Cpu>& dx, Tensor<T, Cpu>& dgamma,
                         Tensor<T, Cpu>& dbeta) {
        const std::int64_t D = x.shape()[x.rank() - 1], R = D ? x.numel() / D : 0;
        const T* xs = x.data();
        const T* dys = dy.data();
        const T* g = gamma.defined() ? gamma.data() : nullptr;
        const T* ms = mean.data();
        const T* rs = rstd.data();
        if (dx.defined()) {
            T* dxs = dx.data();
            parallel_blocks(R, kRowsPerTask, [&](std::int64_t lo, std::int64_t hi) {
                for (std::int64_t r = lo; r < hi; ++r) {
                    const T* xr = xs + r * D;
                    const T* dyr = dys + r * D;
                    T* dxr = dxs + r * D;
                    const T m = ms[r], inv = rs[r];
                    T sa = 0, sb = 0;  // sum of g, sum of g * xhat
#pragma omp simd reduction(+ : sa, sb)
                    for (std::int64_t i = 0; i < D; ++i) {
                        const T gi = g ? dyr[i] * g[i] : dyr[i];
                        sa += gi;
                        sb += gi * (xr[i] - m) * inv;
                    }
                    const T a = sa / static_cast<T>(D), c = sb / static_cast<T>(D);
#pragma omp simd
                    for (std::int64_t i = 0; i < D; ++i) {
                        const T gi = g ? dyr[i] * g[i] : dyr[i];
                        dxr[i] = inv * (gi - a - (xr[i] - m) * inv * c);
                    }
                }
            });
        }
        if (!dgamma.defined() && !dbeta.defined()) return;
        const int chunks = static_cast<int>(std::min<std::int64_t>(std::max(1, num_threads()), std::max<std::int64_t>(R, 1)));
        std::vector<double> part(static_cast<std::size_t>(2 * chunks * D), 0.0);
        parallel_for(0, chunks, [&](std::int64_t c) {
            double* pg = part.data() + 2 * c * D;
            double* pb = pg + D;
            for (std::int64_t r = R * c / chunks; r < R * (c + 1) / chunks; ++r) {
                const T* xr = xs + r * D;
                const T* dyr = dys + r * D;
                const T m = ms[r], inv = rs[r];
#pragma omp simd
                for (std::int64_t i = 0; i < D; ++i) {
                    pg[i] += static_cast<double>(dyr[i] * ((xr[i] - m) * inv));
                    pb[i] += static_cast<double>(dyr[i]);
                }
            }
        });
        for (std::int64_t i = 0; i < D; ++i) {
            double sg = 0, sb = 0;
            for (int c = 0; c < chunks; ++c) {
                sg += part[static_cast<std::size_t>(2 * c * D + i)];
                sb += part[static_cast<std::size_t>((2 * c + 1) * D + i)];
            }
            if (dgamma.defined()) dgamma.data()[i] = static_cast<T>(sg);
            if (dbeta.defined()) dbeta.data()[i] = static_cast<T>(sb);
        }
    }
};

}  // namespace medimg::ops
