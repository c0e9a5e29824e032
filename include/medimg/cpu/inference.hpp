// SPDX-License-Identifier: MIT
// cpu/inference.hpp: a convolution prepared once for inference. FoldedConv holds filters and a
// bias that the caller has already folded (nn/inference.hpp folds BatchNorm into them) and keeps
// them in the form every later call wants:
//   - im2col path: the filters (C_out, K) packed in the GEMM micro-kernel's panel layout
//     (cpu::PackedWeights), so no call packs them again (10% of a batch-1 ResNet18 forward);
//   - Winograd path (3x3 stride 1 pad 1, cpu/winograd.hpp): the 16 (F(2x2)) or 36 (F(4x4))
//     transformed filter matrices U[xi] (C_out, C_in), transformed and packed once (the transform
//     alone was 4%); which tile a call takes depends on its batch and image size, so both may exist;
// and writes y = act(conv(x) + bias + residual) in one pass per image group while the group's
// output is in cache (cpu::Epilogue), instead of BatchNorm, add and ReLU passes over memory.
// Each form is built on first use (which path runs depends on the batch and the image size).
// groups = 1 only (ResNet's convolutions); the caller keeps the general path for others.
#pragma once

#include <cstdint>
#include <vector>

#include "medimg/cpu/conv2d.hpp"

namespace medimg::cpu {

template <class T>
class FoldedConv {
public:
    /// w (C_out, C_in, kH, kW) and bias (C_out), copied. Requires p.groups == 1.
    void assign(const T* w, const T* bias, const Shape& wshape, const ops::Conv2dParams& p) {
        MEDIMG_CHECK(p.groups == 1 && wshape.rank() == 4, ValueError, "FoldedConv: needs groups = 1 and a (C_out, C_in, kH, kW) "
                     "weight, got groups ", p.groups, " and weight ", wshape);
        wshape_ = wshape;
        p_ = p;
        w_.assign(w, w + wshape.numel());
        b_.assign(bias, bias + wshape[0]);
        direct_ready_ = false;
        winograd2_.clear();
        winograd4_.clear();
    }
    const Shape& weight_shape() const { return wshape_; }
    const ops::Conv2dParams& params() const { return p_; }

    /// y (N, C_out, Ho, Wo) = act(conv(x) + bias + residual): residual null or of y's shape, act
    /// ReLU when relu. y is allocated by the caller (ops::conv2d_output_shape).
    void forward(const Tensor<T, Cpu>& x, const T* residual, bool relu, Tensor<T, Cpu>& y) {
        const auto g = conv_geom(x, wshape_, y.shape(), p_);
        const std::int64_t N = x.size(0), Co = wshape_[0], C = g.C;
        if (N == 0 || Co == 0) return;
        const Epilogue<T> ep{b_.data(), residual, relu};
        if (const int m = C > 0 ? winograd::tile(g.kh, g.kw, p_, N, g.H, g.W) : 0) {
            auto& packed = m == 4 ? winograd4_ : winograd2_;
            if (packed.empty()) {
                const int P = winograd::positions(m);
                std::vector<T> U(static_cast<std::size_t>(P * Co * C));
                winograd::filter_transform(m, w_.data(), Co, C, false, U.data());
                packed.resize(static_cast<std::size_t>(P));
                for (int xi = 0; xi < P; ++xi) packed[static_cast<std::size_t>(xi)].assign(U.data() + xi * Co * C, Co, C);
            }
            winograd::convolve(m, x.data(), N, C, g.H, g.W, Co,
                               [&](int xi, std::int64_t n, const T* V, std::int64_t ldv, T* M, std::int64_t ldm) {
                                   packed[static_cast<std::size_t>(xi)].multiply(n, V, ldv, M, ldm, false);
                               },
                               ep, y.data());
            return;
        }
        if (!direct_ready_) {
            direct_.assign(w_.data(), Co, g.K());
            direct_ready_ = true;
        }
        im2col_forward(x.data(), N, g, Co, [&](std::int64_t n, const T* B, std::int64_t ldb, T* out, std::int64_t ldc) {
            direct_.multiply(n, B, ldb, out, ldc, false);
        }, ep, y.data());
    }

private:
    Shape wshape_;
    ops::Conv2dParams p_;
    std::vector<T> w_, b_;
    PackedWeights<T> direct_;
    bool direct_ready_ = false;
    std::vector<PackedWeights<T>> winograd2_, winograd4_;  // F(2x2): 16, F(4x4): 36 when built
};

}  // namespace medimg::cpu
