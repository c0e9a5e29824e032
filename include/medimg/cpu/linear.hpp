// SPDX-License-Identifier: MIT
// cpu/linear.hpp: host fully connected layer as three GEMMs (cpu/gemm.hpp). The bias passes run
// over rows in threads: a ViT's linear layers see N = batch x tokens rows (6304 at batch 32), where
// a serial column-strided bias sum took 7% of the training step.
#pragma once

#include <algorithm>
#include <vector>

#include "medimg/core/parallel.hpp"
#include "medimg/cpu/gemm.hpp"
#include "medimg/ops/linear.hpp"

namespace medimg::ops {

template <>
struct LinearImpl<Cpu> {
    // x: (N, in), w: (out, in) -> y: (N, out)
    template <class T>
    static void forward(const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& w, const Tensor<T, Cpu>& b, Tensor<T, Cpu>& y) {
        const std::int64_t N = x.size(0), in = x.size(1), out = w.size(0);
        cpu::gemm(false, true, N, out, in, x.data(), w.data(), y.data(), false);
        if (b.defined()) {
            T* ys = y.data();
            const T* bs = b.data();
            parallel_blocks(N, std::max<std::int64_t>(1, (1 << 14) / std::max<std::int64_t>(out, 1)), [&](std::int64_t lo, std::int64_t hi) {
                for (std::int64_t n = lo; n < hi; ++n) {
                    T* row = ys + n * out;
#pragma omp simd
                    for (std::int64_t o = 0; o < out; ++o) row[o] += bs[o];
                }
            });
        }
    }
    // dy: (N, out), w: (out, in) -> dx: (N, in)
    template <class T>
    static void backward_data(const Tensor<T, Cpu>& dy, const Tensor<T, Cpu>& w, Tensor<T, Cpu>& dx) {
        cpu::gemm(false, false, dy.size(0), w.size(1), w.size(0), dy.data(), w.data(), dx.data(), false);
    }
    // x: (N, in), dy: (N, out) -> dw: (out, in), db: (out)
    template <class T>
    static void backward_weight(const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& dy, Tensor<T, Cpu>& dw, Tensor<T, Cpu>& db) {
        const std::int64_t N = x.size(0), in = x.size(1), out = dw.size(0);
        cpu::gemm(true, false, out, in, N, dy.data(), x.data(), dw.data(), false);
        if (db.defined()) {  // sum over rows in double: a fixed split of rows, partial sums added in order
            const std::int64_t chunks = std::clamp<std::int64_t>(N / 64, 1, 16);
            std::vector<double> part(static_cast<std::size_t>(chunks * out), 0.0);
            const T* d = dy.data();
            parallel_for(0, chunks, [&](std::int64_t c) {
                double* acc = part.data() + c * out;
                for (std::int64_t n = N * c / chunks; n < N * (c + 1) / chunks; ++n) {
                    const T* row = d + n * out;
#pragma omp simd
                    for (std::int64_t o = 0; o < out; ++o) acc[o] += static_cast<double>(row[o]);
                }
            });
            for (std::int64_t o = 0; o < out; ++o) {
                double s = 0.0;
                for (std::int64_t c = 0; c < chunks; ++c) s += part[static_cast<std::size_t>(c * out + o)];
                db.data()[o] = static_cast<T>(s);
            }
        }
    }
};

}  // namespace medimg::ops
