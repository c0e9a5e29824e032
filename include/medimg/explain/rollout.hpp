// SPDX-License-Identifier: MIT
// explain/rollout.hpp: attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in
// Transformers", eq. 1), the Vision Transformer's own explanation. Each block's attention weights
// (N, heads, L, L) are fused over the heads (mean, as the paper; max or min as jacobgil/vit-explain
// offers), the residual connection is accounted for as A' = 0.5 A + 0.5 I, rows renormalised, and
// the blocks multiplied from the first: R = A'_depth ... A'_1. The class token's row of R, over
// the patch tokens, laid out as the patch grid, is the map: how much of what the class token
// finally holds came from each patch. As jacobgil/vit-explain, discard_ratio > 0 first zeroes that
// fraction of each fused matrix's smallest entries (never entry [0, 0], the class token's attention
// to itself), a sharper variant; the default 0 is the paper's.
// Rollout looks at attention only, not at the class: the map is the same for every class (unlike
// Grad-CAM); `classes` reports the predicted (or given) class for the overlay's caption.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "medimg/explain/common.hpp"
#include "medimg/nn/vit.hpp"

namespace medimg::explain {

enum class HeadFusion { mean, max, min };

struct RolloutOptions {
    HeadFusion head_fusion = HeadFusion::mean;
    double discard_ratio = 0.0;            // in [0, 1): the fraction of smallest fused weights zeroed per block
    std::vector<std::int64_t> classes;     // as CamOptions::classes (reported only)
};

/// Attention rollout of a ViT over the batch x (N, C, H, W): heatmap (N, H, W) in [0, 1], raw
/// (N, h, w) the class token's rolled-out attention to each patch (rows of R sum to 1, so raw sums
/// to 1 minus what stays on the class token).
template <class T, class B>
Explanation attention_rollout(nn::VisionTransformer<T, B>& model, const Tensor<T, B>& x, const RolloutOptions& o = {}) {
    const char* fn = "explain::attention_rollout";
    MEDIMG_CHECK(x.rank() == 4 && x.numel() > 0, ShapeError, fn, ": input must be a non-empty (N, C, H, W) batch, got ", x.shape());
    MEDIMG_CHECK(o.discard_ratio >= 0.0 && o.discard_ratio < 1.0, ValueError, fn, ": discard_ratio must be in [0, 1), got ",
                 o.discard_ratio);
    detail::FrozenEval<T, B> frozen(model);
    autograd::NoGrad guard;
    model.keep_attention(true);
    autograd::Var<T, B> logits;
    try {
        logits = model(autograd::Var<T, B>(x));
    } catch (...) {
        model.keep_attention(false);
        throw;
    }
    std::vector<Tensor<float, Cpu>> att;  // per block (N, heads, L, L) on the host
    for (const auto& b : model.blocks()) att.push_back(detail::host_float(b->attention_module().attention()));
    model.keep_attention(false);

    Explanation e;
    e.method = "rollout";
    e.logits = detail::host_float(logits.value());
    e.classes = detail::target_classes(fn, e.logits, o.classes);
    const std::int64_t N = x.size(0), L = att.front().size(2), heads = att.front().size(1);
    const auto [gh, gw] = detail::token_grid(L - 1, x.size(2), x.size(3));
    e.raw = Tensor<float, Cpu>::empty({N, gh, gw});
    const auto LL = static_cast<std::size_t>(L * L);
    // Only the class token's row of R = A'_depth ... A'_1 is needed: v = e_0^T, then v <- v A'_k
    // from the last block to the first (L^2 work per block instead of L^3).
    std::vector<std::vector<double>> fused(att.size(), std::vector<double>(LL));
    std::vector<double> order, v(static_cast<std::size_t>(L)), next(static_cast<std::size_t>(L));
    for (std::int64_t n = 0; n < N; ++n) {
        for (std::size_t k = 0; k < att.size(); ++k) {
            const auto& a = att[k];
            auto& A = fused[k];
            for (std::size_t q = 0; q < LL; ++q) {  // fuse the heads
                double f = o.head_fusion == HeadFusion::mean ? 0.0 : a[n * heads * L * L + static_cast<std::int64_t>(q)];
                for (std::int64_t h = 0; h < heads; ++h) {
                    const double s = a[(n * heads + h) * L * L + static_cast<std::int64_t>(q)];
                    if (o.head_fusion == HeadFusion::mean) f += s / static_cast<double>(heads);
                    else if (o.head_fusion == HeadFusion::max) f = std::max(f, s);
                    else f = std::min(f, s);
                }
                A[q] = f;
            }
            if (o.discard_ratio > 0.0) {  // vit-explain: the smallest entries of the flattened matrix but [0, 0]
                order.assign(A.begin(), A.end());
                const auto cnt = static_cast<std::size_t>(o.discard_ratio * static_cast<double>(LL));
                if (cnt > 0) {
                    std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(cnt - 1), order.end());
                    const double cut = order[cnt - 1];
                    std::size_t zeroed = 0;
                    for (std::size_t q = 0; q < LL && zeroed < cnt; ++q)
                        if (q != 0 && A[q] <= cut) {
                            A[q] = 0.0;
                            ++zeroed;
                        }
                }
            }
            for (std::int64_t i = 0; i < L; ++i) {  // A' = (A + I) / 2, rows renormalised
                double s = 0;
                for (std::int64_t j = 0; j < L; ++j) {
                    auto& w = A[static_cast<std::size_t>(i * L + j)];
                    w = 0.5 * w + (i == j ? 0.5 : 0.0);
                    s += w;
                }
                for (std::int64_t j = 0; j < L; ++j) A[static_cast<std::size_t>(i * L + j)] /= s;
            }
        }
        std::fill(v.begin(), v.end(), 0.0);
        v[0] = 1.0;
        for (auto k = fused.size(); k-- > 0;) {
            std::fill(next.begin(), next.end(), 0.0);
            for (std::int64_t i = 0; i < L; ++i) {
                const double vi = v[static_cast<std::size_t>(i)];
                if (vi == 0.0) continue;
                const double* row = fused[k].data() + i * L;
                for (std::int64_t j = 0; j < L; ++j) next[static_cast<std::size_t>(j)] += vi * row[j];
            }
            v.swap(next);
        }
        for (std::int64_t j = 0; j < gh * gw; ++j) e.raw[n * gh * gw + j] = static_cast<float>(v[static_cast<std::size_t>(1 + j)]);
    }
    e.heatmap = detail::heatmap_at(e.raw, x.size(2), x.size(3));
    return e;
}

}  // namespace medimg::explain
