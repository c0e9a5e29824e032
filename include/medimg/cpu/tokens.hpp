// SPDX-License-Identifier: MIT
// cpu/tokens.hpp: host TokensImpl (ops/tokens.hpp): the patch map's (D, h w) planes transposed
// into (h w, D) token rows with the class token and position embedding added, image by image over
// the threads; the batch sums of the backward (dcls, dpos) in double over images in order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "medimg/core/parallel.hpp"
#include "medimg/ops/tokens.hpp"

namespace medimg::ops {

template <>
struct TokensImpl<Cpu> {
    static constexpr std::int64_t kTile = 16;  // transpose tiles of kTile x kTile

    template <class T>
    static void forward(const Tensor<T, Cpu>& patches, const Tensor<T, Cpu>& cls, const Tensor<T, Cpu>& pos, Tensor<T, Cpu>& y,
                        const TokensShape& s) {
        const T* pp = pos.defined() ? pos.data() : nullptr;
        parallel_for(0, s.N, [&](std::int64_t n) {
            T* yn = y.data() + n * s.T * s.D;
            if (s.p == 1)
                for (std::int64_t c = 0; c < s.D; ++c) yn[c] = cls.data()[c] + (pp ? pp[c] : T(0));
            transpose_add(patches.data() + n * s.D * s.S, s.D, s.S, pp ? pp + s.p * s.D : nullptr, yn + s.p * s.D);
        });
    }

    template <class T>
    static void backward(const Tensor<T, Cpu>& dy, Tensor<T, Cpu>& dpatches, Tensor<T, Cpu>& dcls, Tensor<T, Cpu>& dpos,
                         const TokensShape& s) {
        if (dpatches.defined())
            parallel_for(0, s.N, [&](std::int64_t n) {  // dpatches[n] (D, S) = dy[n, p:] (S, D) transposed
                transpose_add(dy.data() + (n * s.T + s.p) * s.D, s.S, s.D, static_cast<const T*>(nullptr),
                              dpatches.data() + n * s.D * s.S);
            });
        if (dcls.defined() || dpos.defined()) {
            std::vector<double> acc(static_cast<std::size_t>(s.T * s.D), 0.0);  // sum over images of dy[n]
            const std::int64_t rows = dpos.defined() ? s.T : 1;                  // dcls alone needs token 0 only
            parallel_blocks(rows * s.D, 4096, [&](std::int64_t lo, std::int64_t hi) {
                for (std::int64_t n = 0; n < s.N; ++n) {
                    const T* dn = dy.data() + n * s.T * s.D;
                    for (std::int64_t i = lo; i < hi; ++i) acc[static_cast<std::size_t>(i)] += static_cast<double>(dn[i]);
                }
            });
            if (dcls.defined())
                for (std::int64_t c = 0; c < s.D; ++c) dcls.data()[c] = static_cast<T>(acc[static_cast<std::size_t>(c)]);
            if (dpos.defined())
                for (std::int64_t i = 0; i < s.T * s.D; ++i) dpos.data()[i] = static_cast<T>(acc[static_cast<std::size_t>(i)]);
        }
    }

    template <class T>
    static void take(const Tensor<T, Cpu>& x, std::int64_t index, Tensor<T, Cpu>& y) {
        const std::int64_t N = x.size(0), Tn = x.size(1), D = x.size(2);
        for (std::int64_t n = 0; n < N; ++n) std::copy_n(x.data() + (n * Tn + index) * D, D, y.data() + n * D);
    }
    template <class T>
    static void take_backward(const Tensor<T, Cpu>& dy, std::int64_t index, Tensor<T, Cpu>& dx) {
        const std::int64_t N = dx.size(0), Tn = dx.size(1), D = dx.size(2);
        std::fill(dx.data(), dx.data() + dx.numel(), T(0));
        for (std::int64_t n = 0; n < N; ++n) std::copy_n(dy.data() + n * D, D, dx.data() + (n * Tn + index) * D);
    }

private:
    /// out (cols, rows) = in (rows, cols) transposed, plus add (cols, rows) when given; tiled so
    /// both sides are read and written a cache line at a time.
    template <class T>
    static void transpose_add(const T* in, std::int64_t rows, std::int64_t cols, const T* add, T* out) {
        for (std::int64_t r0 = 0; r0 < rows; r0 += kTile)
            for (std::int64_t c0 = 0; c0 < cols; c0 += kTile) {
                const std::int64_t r1 = std::min(rows, r0 + kTile), c1 = std::min(cols, c0 + kTile);
                for (std::int64_t c = c0; c < c1; ++c)
                    for (std::int64_t r = r0; r < r1; ++r)
                        out[c * rows + r] = in[r * cols + c] + (add ? add[c * rows + r] : T(0));
            }
    }
};

}  // namespace medimg::ops
