// SPDX-License-Identifier: MIT
// cpu/linear.hpp: host fully connected layer as three GEMMs (cpu/gemm.hpp).
#pragma once

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
        if (b.defined())
            for (std::int64_t n = 0; n < N; ++n)
                for (std::int64_t o = 0; o < out; ++o) y.data()[n * out + o] += b.data()[o];
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
        if (db.defined())
            for (std::int64_t o = 0; o < out; ++o) {
                double s = 0.0;
                for (std::int64_t n = 0; n < N; ++n) s += dy.data()[n * out + o];
                db.data()[o] = static_cast<T>(s);
            }
    }
};

}  // namespace medimg::ops
