// SPDX-License-Identifier: MIT
// reference.hpp: naive, obviously-correct implementations that the fast kernels are tested
// against (the seven-loop convolution lives here and nowhere else). Written over xtensor views
// of the tensors' storage, where 4-d indexing reads as the formula does. Computed in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <xtensor/xadapt.hpp>
#include <xtensor/xtensor.hpp>

#include "medimg/core/rng.hpp"
#include "medimg/core/tensor.hpp"
#include "medimg/ops/conv2d.hpp"
#include "medimg/nn/module.hpp"
#include "medimg/ops/pooling.hpp"

namespace medimg::test::ref {

template <class T>
auto view4(const Tensor<T, Cpu>& t) {
    std::array<std::size_t, 4> s{};
    for (int i = 0; i < 4; ++i) s[static_cast<std::size_t>(i)] = static_cast<std::size_t>(t.size(i));
    return xt::adapt(t.data(), static_cast<std::size_t>(t.numel()), xt::no_ownership(), s);
}
template <class T>
auto view4(Tensor<T, Cpu>& t) {
    std::array<std::size_t, 4> s{};
    for (int i = 0; i < 4; ++i) s[static_cast<std::size_t>(i)] = static_cast<std::size_t>(t.size(i));
    return xt::adapt(t.data(), static_cast<std::size_t>(t.numel()), xt::no_ownership(), s);
}

template <class T>
Tensor<T, Cpu> random(const Shape& s, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
    Rng r(seed);
    auto t = Tensor<T, Cpu>::empty(s);
    r.fill_uniform(t, lo, hi);
    return t;
}

/// y[n,o,i,j] = b[o] + sum_{c,u,v} x[n, g*Cg + c, i*s - p + u*d, j*s - p + v*d] * w[o,c,u,v], where
/// c runs over the Cg = C_in/groups channels of output o's group g = o / (C_out/groups).
template <class T>
Tensor<double, Cpu> conv2d(const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& w, const Tensor<T, Cpu>& b,
                           const ops::Conv2dParams& p) {
    const Shape ys = ops::conv2d_output_shape("ref::conv2d", x.shape(), w.shape(), p);
    auto y = Tensor<double, Cpu>::zeros(ys);
    auto X = view4(x);
    auto W = view4(w);
    auto Y = view4(y);
    const std::int64_t H = x.size(2), Wd = x.size(3);
    for (std::int64_t n = 0; n < ys[0]; ++n)
        for (std::int64_t o = 0; o < ys[1]; ++o)
            for (std::int64_t i = 0; i < ys[2]; ++i)
                for (std::int64_t j = 0; j < ys[3]; ++j) {
                    double s = b.defined() ? static_cast<double>(b[o]) : 0.0;
                    const std::int64_t Cg = w.size(1), g = o / (ys[1] / p.groups);
                    for (std::int64_t c = 0; c < Cg; ++c)
                        for (std::int64_t u = 0; u < w.size(2); ++u)
                            for (std::int64_t v = 0; v < w.size(3); ++v) {
                                const std::int64_t ih = i * p.stride_h - p.pad_h + u * p.dilation_h;
                                const std::int64_t iw = j * p.stride_w - p.pad_w + v * p.dilation_w;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= Wd) continue;
                                s += static_cast<double>(X(n, g * Cg + c, ih, iw)) * static_cast<double>(W(o, c, u, v));
                            }
                    Y(n, o, i, j) = s;
                }
    return y;
}

/// Max over each window; padding is -inf.
template <class T>
Tensor<double, Cpu> max_pool2d(const Tensor<T, Cpu>& x, const ops::MaxPool2dParams& p) {
    const Shape ys = ops::max_pool2d_output_shape("ref::max_pool2d", x.shape(), p);
    auto y = Tensor<double, Cpu>::empty(ys);
    auto X = view4(x);
    auto Y = view4(y);
    for (std::int64_t n = 0; n < ys[0]; ++n)
        for (std::int64_t c = 0; c < ys[1]; ++c)
            for (std::int64_t i = 0; i < ys[2]; ++i)
                for (std::int64_t j = 0; j < ys[3]; ++j) {
                    double m = -std::numeric_limits<double>::infinity();
                    for (std::int64_t u = 0; u < p.kernel_h; ++u)
                        for (std::int64_t v = 0; v < p.kernel_w; ++v) {
                            const std::int64_t ih = i * p.stride_h - p.pad_h + u, iw = j * p.stride_w - p.pad_w + v;
                            if (ih >= 0 && ih < x.size(2) && iw >= 0 && iw < x.size(3))
                                m = std::max(m, static_cast<double>(X(n, c, ih, iw)));
                        }
                    Y(n, c, i, j) = m;
                }
    return y;
}

/// PyTorch's adaptive windows: [floor(o*L/O), ceil((o+1)*L/O)).
template <class T>
Tensor<double, Cpu> adaptive_avg_pool2d(const Tensor<T, Cpu>& x, std::int64_t oh, std::int64_t ow) {
    auto y = Tensor<double, Cpu>::empty({x.size(0), x.size(1), oh, ow});
    auto X = view4(x);
    auto Y = view4(y);
    const std::int64_t H = x.size(2), W = x.size(3);
    for (std::int64_t n = 0; n < x.size(0); ++n)
        for (std::int64_t c = 0; c < x.size(1); ++c)
            for (std::int64_t i = 0; i < oh; ++i)
                for (std::int64_t j = 0; j < ow; ++j) {
                    const auto h0 = static_cast<std::int64_t>(std::floor(double(i) * H / oh));
                    const auto h1 = static_cast<std::int64_t>(std::ceil(double(i + 1) * H / oh));
                    const auto w0 = static_cast<std::int64_t>(std::floor(double(j) * W / ow));
                    const auto w1 = static_cast<std::int64_t>(std::ceil(double(j + 1) * W / ow));
                    double s = 0;
                    for (auto a = h0; a < h1; ++a)
                        for (auto b = w0; b < w1; ++b) s += static_cast<double>(X(n, c, a, b));
                    Y(n, c, i, j) = s / double((h1 - h0) * (w1 - w0));
                }
    return y;
}

/// Batch statistics per channel: mean and biased variance over (N, H, W).
template <class T>
void channel_stats(const Tensor<T, Cpu>& x, std::vector<double>& mean, std::vector<double>& var) {
    const std::int64_t N = x.size(0), C = x.size(1), S = x.numel() / (N * C);
    mean.assign(static_cast<std::size_t>(C), 0.0);
    var.assign(static_cast<std::size_t>(C), 0.0);
    for (std::int64_t c = 0; c < C; ++c) {
        double s = 0, s2 = 0;
        for (std::int64_t n = 0; n < N; ++n)
            for (std::int64_t q = 0; q < S; ++q) s += static_cast<double>(x[(n * C + c) * S + q]);
        const double m = s / double(N * S);
        for (std::int64_t n = 0; n < N; ++n)
            for (std::int64_t q = 0; q < S; ++q) {
                const double d = static_cast<double>(x[(n * C + c) * S + q]) - m;
                s2 += d * d;
            }
        mean[static_cast<std::size_t>(c)] = m;
        var[static_cast<std::size_t>(c)] = s2 / double(N * S);
    }
}

/// Mirror of det_uniform in make_resnet_fixtures.py: splitmix64((k << 32) + i) -> [-1, 1).
inline double det_uniform(std::uint64_t k, std::uint64_t i) {
    std::uint64_t z = (k << 32) + i + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z = z ^ (z >> 31);
    return static_cast<double>(z >> 11) * 0x1.0p-53 * 2.0 - 1.0;
}

/// Mirror of det_value in make_resnet_fixtures.py: every state_dict entry of m from the closed form
/// (used by the ResNet, model and explanation fixtures: no weights are stored).
template <class T>
void det_init(nn::Module<T, Cpu>& m) {
    std::uint64_t k = 0;
    for (auto& e : m.state_dict()) {
        auto& t = e.value;
        const auto& s = t.shape();
        for (std::int64_t i = 0; i < t.numel(); ++i) {
            const double x = det_uniform(k, static_cast<std::uint64_t>(i));
            double v;
            const auto ends = [&](const char* suffix) {
                const std::string n(suffix);
                return e.name.size() >= n.size() && e.name.compare(e.name.size() - n.size(), n.size(), n) == 0;
            };
            if (ends("num_batches_tracked")) v = 0;
            else if (ends("running_var")) v = 1.0 + 0.5 * x * x;
            else if (ends("running_mean")) v = 0.1 * x;
            else if (s.rank() == 4) v = std::sqrt(6.0 / static_cast<double>(s[1] * s[2] * s[3])) * x;
            else if (s.rank() == 2) v = x / std::sqrt(static_cast<double>(s[1]));
            else if (ends("weight")) v = 1.0 + 0.2 * x;
            else v = 0.1 * x;
            t[i] = static_cast<T>(v);
        }
        ++k;
    }
}

}  // namespace medimg::test::ref
