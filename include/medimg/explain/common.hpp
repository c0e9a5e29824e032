// SPDX-License-Identifier: MIT
// explain/common.hpp: what every explanation method shares: the result type (Explanation), the
// target classes (given, or the predicted ones), the guards that run a model in eval mode with
// frozen parameters and restore both afterwards, and the map post-processing pytorch-grad-cam
// applies (min-max scaling with its 1e-7, bilinear upsampling to the input size).
// Maps are computed on the host in double from the layer's values copied off the backend: they are
// (N, h, w) - a few thousand numbers - so no device kernel is worth having for them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "medimg/autograd/variable.hpp"
#include "medimg/core/tensor.hpp"
#include "medimg/data/transforms.hpp"
#include "medimg/error.hpp"
#include "medimg/nn/module.hpp"

namespace medimg::explain {

/// One explanation of a batch. heatmap is what a person looks at; raw is the method's own map.
struct Explanation {
    std::string method;                  // "gradcam" | "gradcam++" | "occlusion"
    std::string layer;                   // the target module's dotted name (CAM methods; "" for occlusion)
    Tensor<float, Cpu> heatmap;          // (N, H, W) at the input's resolution, in [0, 1]
    Tensor<float, Cpu> raw;              // (N, h, w): CAM: ReLU(sum_k w_k A_k) at the layer's resolution,
                                         // unscaled; occlusion: the score drop per patch position (signed)
    Tensor<float, Cpu> logits;           // (N, K) of the unmodified input
    std::vector<std::int64_t> classes;   // the class explained, per image
};

/// The (row, column) of the largest value of image n of a (N, H, W) map (the first one on ties).
inline std::pair<std::int64_t, std::int64_t> peak(const Tensor<float, Cpu>& maps, std::int64_t n) {
    MEDIMG_CHECK(maps.rank() == 3 && n >= 0 && n < maps.size(0), ShapeError, "explain::peak: need image ", n,
                 " of a (N, H, W) map, got shape ", maps.shape());
    const std::int64_t h = maps.size(1), w = maps.size(2);
    const float* p = maps.data() + n * h * w;
    const std::int64_t i = std::max_element(p, p + h * w) - p;
    return {i / w, i % w};
}

/// A (H, W) heat map over the network's input, laid back onto the source image it was made from
/// by torchvision's eval preprocessing, Resize(resize) (the shorter side becomes `resize`) then
/// CenterCrop(H, W): each source pixel centre is carried into crop coordinates and the map is read
/// there bilinearly (clamped at the crop's border); pixels outside the crop, which the network
/// never saw, get 0. -> (src_h, src_w). With resize = H = W = the source size this is the identity.
inline Tensor<float, Cpu> heatmap_on_source(const Tensor<float, Cpu>& heat, std::int64_t src_h, std::int64_t src_w,
                                            std::int64_t resize) {
    MEDIMG_CHECK(heat.rank() == 2 && heat.numel() > 0 && src_h >= 1 && src_w >= 1 && resize >= 1, ShapeError,
                 "explain::heatmap_on_source: need a non-empty (H, W) map, a source size >= 1 and resize >= 1; got map ",
                 heat.shape(), ", source ", src_h, "x", src_w, ", resize ", resize);
    const std::int64_t H = heat.size(0), W = heat.size(1);
    const auto [rh, rw] = data::shorter_side_size(src_h, src_w, resize);  // the resized image
    const double top = static_cast<double>(data::detail::round_half_even((rh - H) / 2.0));
    const double left = static_cast<double>(data::detail::round_half_even((rw - W) / 2.0));
    // Per source row / column: the two map taps and the weight of the second, or none when the
    // pixel centre lies outside the crop. Computed once per axis.
    struct Tap {
        std::int64_t i0 = 0, i1 = 0;
        double f = 0;
        bool inside = false;
    };
    const auto taps = [](std::int64_t src, std::int64_t resized, double offset, std::int64_t n) {
        std::vector<Tap> t(static_cast<std::size_t>(src));
        for (std::int64_t i = 0; i < src; ++i) {
            double c = (i + 0.5) * static_cast<double>(resized) / static_cast<double>(src) - 0.5 - offset;
            auto& tap = t[static_cast<std::size_t>(i)];
            tap.inside = c >= -0.5 && c <= n - 0.5;
            c = std::clamp(c, 0.0, static_cast<double>(n - 1));  // clamped bilinear
            tap.i0 = std::min(static_cast<std::int64_t>(c), n - 1);
            tap.i1 = std::min(tap.i0 + 1, n - 1);
            tap.f = c - static_cast<double>(tap.i0);
        }
        return t;
    };
    const auto ty = taps(src_h, rh, top, H), tx = taps(src_w, rw, left, W);
    auto out = Tensor<float, Cpu>::zeros({src_h, src_w});
    for (std::int64_t y = 0; y < src_h; ++y) {
        const auto& a = ty[static_cast<std::size_t>(y)];
        if (!a.inside) continue;
        for (std::int64_t x = 0; x < src_w; ++x) {
            const auto& b = tx[static_cast<std::size_t>(x)];
            if (!b.inside) continue;
            const double v = (1 - a.f) * ((1 - b.f) * heat[a.i0 * W + b.i0] + b.f * heat[a.i0 * W + b.i1]) +
                             a.f * ((1 - b.f) * heat[a.i1 * W + b.i0] + b.f * heat[a.i1 * W + b.i1]);
            out[y * src_w + x] = static_cast<float>(v);
        }
    }
    return out;
}

namespace detail {

/// Restores the model's train/eval mode and every parameter's requires_grad when it goes out of
/// scope. While alive the model is in eval mode (BN uses its running statistics and is not updated:
/// explaining never changes the model, whatever mode it was handed in) and no parameter requires
/// grad, so a backward pass computes only the gradients the explanation needs (no dW).
template <class T, class B>
class FrozenEval {
public:
    explicit FrozenEval(nn::Module<T, B>& m) : m_(m), was_training_(m.is_training()) {
        for (auto& [name, p] : m.named_parameters()) {
            params_.emplace_back(p, p.requires_grad());
            p.set_requires_grad(false);
        }
        m.eval();
    }
    ~FrozenEval() {
        m_.train(was_training_);
        for (auto& [p, r] : params_) p.set_requires_grad(r);
    }
    FrozenEval(const FrozenEval&) = delete;
    FrozenEval& operator=(const FrozenEval&) = delete;

private:
    nn::Module<T, B>& m_;
    bool was_training_;
    std::vector<std::pair<autograd::Var<T, B>, bool>> params_;
};

/// The class to explain per image: `given` empty = the argmax of each row of logits (the predicted
/// class, pytorch-grad-cam's default); one entry = that class for every image; N entries = one each.
inline std::vector<std::int64_t> target_classes(const char* fn, const Tensor<float, Cpu>& logits,
                                                const std::vector<std::int64_t>& given) {
    MEDIMG_CHECK(logits.rank() == 2, ShapeError, fn, ": the model must return (N, classes) logits, got ", logits.shape());
    const std::int64_t n = logits.size(0), k = logits.size(1);
    MEDIMG_CHECK(given.empty() || given.size() == 1 || static_cast<std::int64_t>(given.size()) == n, ValueError, fn,
                 ": give no target class (the predicted one), one for every image, or one per image; got ", given.size(),
                 " for a batch of ", n);
    std::vector<std::int64_t> out(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
        if (given.empty()) {
            const float* row = logits.data() + i * k;
            out[static_cast<std::size_t>(i)] = std::max_element(row, row + k) - row;
        } else {
            const std::int64_t c = given.size() == 1 ? given[0] : given[static_cast<std::size_t>(i)];
            MEDIMG_CHECK(c >= 0 && c < k, ValueError, fn, ": target class ", c, " is out of range for a model with ", k,
                         " classes");
            out[static_cast<std::size_t>(i)] = c;
        }
    }
    return out;
}

/// pytorch-grad-cam's scale_cam_image on one map: v - min, then / (1e-7 + max); an all-equal map
/// becomes all zero (it says nothing about where the model looked).
inline void min_max_scale(float* v, std::int64_t count) {
    const auto [lo, hi] = std::minmax_element(v, v + count);
    const float mn = *lo, range = *hi - *lo;
    for (std::int64_t i = 0; i < count; ++i) v[i] = (v[i] - mn) / (1e-7f + range);
}

/// maps (N, h, w) -> (N, H, W) as pytorch-grad-cam shows them: each map scaled to [0, 1], resized
/// bilinearly (align_corners=False, clamped at the borders: OpenCV's INTER_LINEAR and torch's
/// interpolate when enlarging; data::resize), then scaled again (its aggregate step; the resize does
/// not reach the old extremes exactly).
inline Tensor<float, Cpu> heatmap_at(const Tensor<float, Cpu>& maps, std::int64_t H, std::int64_t W) {
    const std::int64_t n = maps.size(0), h = maps.size(1), w = maps.size(2);
    auto out = Tensor<float, Cpu>::empty({n, H, W});
    for (std::int64_t i = 0; i < n; ++i) {
        auto one = maps.slice0(i, 1).clone();  // (1, h, w)
        min_max_scale(one.data(), h * w);
        auto big = (h == H && w == W) ? one : data::resize(one, H, W);  // (1, H, W)
        float* dst = out.data() + i * H * W;
        std::copy(big.data(), big.data() + H * W, dst);
        min_max_scale(dst, H * W);
    }
    return out;
}

/// The (h, w) grid of `patches` tokens (h w = patches) for an H x W input: the factorisation whose
/// h / w is closest to H / W (a ViT's patch grid is floor(H / P) x floor(W / P)).
inline std::pair<std::int64_t, std::int64_t> token_grid(std::int64_t patches, std::int64_t H, std::int64_t W) {
    MEDIMG_CHECK(patches >= 1, ShapeError, "explain: a token sequence needs a class token and at least one patch token");
    std::pair<std::int64_t, std::int64_t> best{patches, 1};
    double err = 1e300;
    const double want = std::log(static_cast<double>(H) / static_cast<double>(W));
    for (std::int64_t h = 1; h <= patches; ++h)
        if (patches % h == 0) {
            const double e = std::abs(std::log(static_cast<double>(h) / static_cast<double>(patches / h)) - want);
            if (e < err) {
                err = e;
                best = {h, patches / h};
            }
        }
    return best;
}

/// Tokens (N, 1 + h w, C) without their first (class) token, as a map (N, C, h, w).
inline Tensor<float, Cpu> tokens_as_map(const Tensor<float, Cpu>& t, std::int64_t h, std::int64_t w) {
    const std::int64_t N = t.size(0), L = t.size(1), C = t.size(2);
    MEDIMG_CHECK(L == 1 + h * w, ShapeError, "explain: tokens ", t.shape(), " are not 1 + ", h, " x ", w);
    auto m = Tensor<float, Cpu>::empty({N, C, h, w});
    for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t j = 0; j < h * w; ++j)
            for (std::int64_t c = 0; c < C; ++c) m[(n * C + c) * h * w + j] = t[(n * L + 1 + j) * C + c];
    return m;
}

/// One row of the logits as a softmax probability of class c (computed in double).
inline double probability(const float* row, std::int64_t k, std::int64_t c) {
    const double mx = *std::max_element(row, row + k);
    double z = 0;
    for (std::int64_t j = 0; j < k; ++j) z += std::exp(static_cast<double>(row[j]) - mx);
    return std::exp(static_cast<double>(row[c]) - mx) / z;
}

template <class T, class B>
Tensor<float, Cpu> host_float(const Tensor<T, B>& t) {
    return Tensor<float, Cpu>::from_vector(t.shape(), [&] {
        const auto v = t.to_vector();  // half storage widened exactly
        return std::vector<float>(v.begin(), v.end());
    }());
}

}  // namespace detail
}  // namespace medimg::explain
