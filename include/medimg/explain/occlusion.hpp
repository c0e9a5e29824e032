// SPDX-License-Identifier: MIT
// explain/occlusion.hpp: occlusion sensitivity (Zeiler & Fergus 2014, arXiv:1311.2901), for any
// Module on either backend: a square patch slides over the input, is set to a baseline value, and
// the drop of the target class's score is the relevance of the pixels it covered. A pixel's value
// is the mean drop over every patch that covered it (Captum's Occlusion does the same averaging).
// Patches start at 0, stride, 2*stride, ...; when the last one does not reach the border, one more
// is placed flush with it, so every pixel is covered (Captum leaves such pixels at 0).
// The occluded copies go through the model in batches (forward passes only, under NoGrad).
// Not here: occluding several channels differently, random or blurred baselines.
#pragma once

#include "medimg/explain/common.hpp"

namespace medimg::explain {

enum class OcclusionScore {
    probability,  // the softmax probability of the class (Zeiler & Fergus): drops are in [-1, 1]
    logit,        // the raw logit (Captum's default on a model that returns logits)
};

struct OcclusionOptions {
    std::int64_t patch = 32;   // side of the square patch, in input pixels (clamped to the image)
    std::int64_t stride = 16;  // step between patch positions, in input pixels
    /// What the patch is set to, in the model's input space (after normalisation): 0 is the
    /// normalisation mean, i.e. an average-gray patch.
    double baseline = 0.0;
    OcclusionScore score = OcclusionScore::probability;
    std::vector<std::int64_t> classes;  // as CamOptions::classes: empty = the predicted class
    std::int64_t batch_size = 32;       // occluded copies per forward pass
};

/// The patch positions along one axis of length n: 0, stride, ... and one flush with the end.
inline std::vector<std::int64_t> occlusion_starts(std::int64_t n, std::int64_t patch, std::int64_t stride) {
    std::vector<std::int64_t> s;
    for (std::int64_t p = 0; p + patch <= n; p += stride) s.push_back(p);
    if (s.empty() || s.back() + patch < n) s.push_back(n - patch);
    return s;
}

/// x: (N, C, H, W) on backend B -> heatmap (N, H, W) = ReLU(mean drop) scaled to [0, 1],
/// raw (N, rows, cols) = the score drop at each patch position (signed; negative = the patch made
/// the class more likely), logits (N, K) of the unoccluded input.
/// Costs N * rows * cols forward passes in batches of batch_size (224 px, patch 32, stride 16:
/// 13 x 13 = 169 per image).
template <class T, class B>
Explanation occlusion(nn::Module<T, B>& model, const Tensor<T, B>& x, const OcclusionOptions& o = {}) {
    const char* fn = "explain::occlusion";
    MEDIMG_CHECK(x.rank() == 4 && x.numel() > 0, ShapeError, fn, ": input must be a non-empty (N, C, H, W) batch, got ",
                 x.shape());
    MEDIMG_CHECK(o.patch >= 1 && o.stride >= 1 && o.batch_size >= 1 && std::isfinite(o.baseline), ValueError, fn,
                 ": patch, stride and batch_size must be >= 1 and the baseline finite; got patch ", o.patch, ", stride ",
                 o.stride, ", batch_size ", o.batch_size, ", baseline ", o.baseline);
    using Var = autograd::Var<T, B>;
    detail::FrozenEval<T, B> frozen(model);
    autograd::NoGrad no_grad;
    const std::int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), plane = C * H * W;
    const std::int64_t ph = std::min(o.patch, H), pw = std::min(o.patch, W);
    const auto rows = occlusion_starts(H, ph, o.stride), cols = occlusion_starts(W, pw, o.stride);
    const auto R = static_cast<std::int64_t>(rows.size()), Q = static_cast<std::int64_t>(cols.size());

    Explanation e;
    e.method = "occlusion";
    e.logits = detail::host_float(model(Var(x)).value());
    e.classes = detail::target_classes(fn, e.logits, o.classes);
    const std::int64_t K = e.logits.size(1);
    MEDIMG_CHECK(e.logits.size(0) == N, ShapeError, fn, ": the model returned ", e.logits.shape(), " for a batch of ", N);
    const auto score = [&](const float* row, std::int64_t c) {
        return o.score == OcclusionScore::probability ? detail::probability(row, K, c) : static_cast<double>(row[c]);
    };

    const auto host = x.to_vector();  // (N, C, H, W) on the host
    e.raw = Tensor<float, Cpu>::empty({N, R, Q});
    e.heatmap = Tensor<float, Cpu>::zeros({N, H, W});
    std::vector<double> sum(static_cast<std::size_t>(H * W)), count(static_cast<std::size_t>(H * W));
    for (std::int64_t i = 0; i < N; ++i) {
        const std::int64_t c = e.classes[static_cast<std::size_t>(i)];
        const double base = score(e.logits.data() + i * K, c);
        std::fill(sum.begin(), sum.end(), 0.0);
        std::fill(count.begin(), count.end(), 0.0);
        for (std::int64_t first = 0; first < R * Q; first += o.batch_size) {
            const std::int64_t b = std::min(o.batch_size, R * Q - first);
            std::vector<T> batch(static_cast<std::size_t>(b * plane));  // (b, C, H, W)
            for (std::int64_t j = 0; j < b; ++j) {
                T* dst = batch.data() + j * plane;
                std::copy(host.begin() + i * plane, host.begin() + (i + 1) * plane, dst);
                const std::int64_t top = rows[static_cast<std::size_t>((first + j) / Q)];
                const std::int64_t left = cols[static_cast<std::size_t>((first + j) % Q)];
                for (std::int64_t ch = 0; ch < C; ++ch)
                    for (std::int64_t y = top; y < top + ph; ++y)
                        std::fill_n(dst + (ch * H + y) * W + left, pw, static_cast<T>(o.baseline));
            }
            const auto out = detail::host_float(model(Var(Tensor<T, B>::from_vector({b, C, H, W}, batch))).value());
            for (std::int64_t j = 0; j < b; ++j) {
                const double drop = base - score(out.data() + j * K, c);
                const std::int64_t pos = first + j, top = rows[static_cast<std::size_t>(pos / Q)],
                                   left = cols[static_cast<std::size_t>(pos % Q)];
                e.raw[i * R * Q + pos] = static_cast<float>(drop);
                for (std::int64_t y = top; y < top + ph; ++y)
                    for (std::int64_t xx = left; xx < left + pw; ++xx) {
                        sum[static_cast<std::size_t>(y * W + xx)] += drop;
                        count[static_cast<std::size_t>(y * W + xx)] += 1;
                    }
            }
        }
        float* dst = e.heatmap.data() + i * H * W;
        for (std::int64_t p = 0; p < H * W; ++p)
            dst[p] = static_cast<float>(std::max(sum[static_cast<std::size_t>(p)] / count[static_cast<std::size_t>(p)], 0.0));
        detail::min_max_scale(dst, H * W);
    }
    return e;
}

}  // namespace medimg::explain
