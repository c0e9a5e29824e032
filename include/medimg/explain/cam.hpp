// SPDX-License-Identifier: MIT
// explain/cam.hpp: class activation maps from gradients, for any Module on either backend.
//   Grad-CAM   (Selvaraju et al. 2017, arXiv:1610.02391): w_k = mean_ij dS_c/dA_k,ij
//   Grad-CAM++ (Chattopadhay et al. 2018, arXiv:1710.11063, eq. 19 with the exp(S) factor left
//              out, as pytorch-grad-cam does): a_k,ij = g^2 / (2 g^2 + sum_ij(A_k) g^3 + 1e-6)
//              (0 where g = 0), w_k = sum_ij a_k,ij * ReLU(g_k,ij)
//   map = ReLU(sum_k w_k A_k), then scaled and upsampled as pytorch-grad-cam 1.5 shows it.
// A_k is the target module's output (a forward hook on it, named as PyTorch names it: "layer4",
// "layer4.1.conv2"); g its gradient for the class score S_c (the logit, before the softmax). The
// backward pass is partial: it starts at the logits and stops at the target module (whose output is
// re-rooted as a leaf), and no parameter gradient is computed.
// Not here: Score-CAM, Eigen-CAM, multi-layer aggregation, test-time augmentation smoothing.
#pragma once

#include "medimg/explain/common.hpp"

namespace medimg::explain {

enum class CamMethod { grad_cam, grad_cam_pp };
inline const char* cam_method_name(CamMethod m) { return m == CamMethod::grad_cam ? "gradcam" : "gradcam++"; }

struct CamOptions {
    CamMethod method = CamMethod::grad_cam;
    /// The target module's dotted name ("layer4", "layer3.1", "layer4.1.conv2"). Empty: the last
    /// module to produce a (N, C, h, w) output during the forward pass (layer4 for a ResNet).
    std::string layer;
    /// The class to explain: empty = the predicted one per image, one = that class for every
    /// image, N = one per image.
    std::vector<std::int64_t> classes;
};

/// x: (N, C, H, W) on backend B -> heatmap (N, H, W), raw (N, h, w), logits (N, K).
/// Requires: the model maps (N, C, H, W) to (N, K) logits; the target module is called exactly once
/// per forward pass and gives a (N, C', h, w) output. The model's mode and its parameters'
/// requires_grad are left as they were (it runs in eval mode meanwhile: BN with running statistics).
/// A ViT block's output, tokens (N, 1 + h w, C), is read as pytorch-grad-cam's reshape_transform
/// does for ViTs: the class token dropped, the patch tokens laid out as their (h, w) grid (the
/// grid of the input's aspect ratio: detail::token_grid).
/// Errors (ValueError): an unknown layer (the message lists every valid name), a layer whose output is
/// not (N, C, h, w) such as "fc", a target class out of range.
template <class T, class B>
Explanation grad_cam(nn::Module<T, B>& model, const Tensor<T, B>& x, const CamOptions& o = {}) {
    const char* fn = o.method == CamMethod::grad_cam ? "explain::grad_cam" : "explain::grad_cam_pp";
    MEDIMG_CHECK(x.rank() == 4 && x.numel() > 0, ShapeError, fn, ": input must be a non-empty (N, C, H, W) batch, got ",
                 x.shape());
    using Var = autograd::Var<T, B>;
    detail::FrozenEval<T, B> frozen(model);
    autograd::EnableGrad grad_on;

    // The target's output, re-rooted as a leaf that requires grad: the backward stops there.
    Var act;
    std::string layer = o.layer;
    int calls = 0;
    std::vector<nn::HookHandle> handles;
    if (!layer.empty()) {
        nn::Module<T, B>* target = nullptr;
        try {
            target = &model.get_submodule(layer);
        } catch (const ValueError& e) {
            throw ValueError(std::string(fn) + ": unknown layer '" + layer + "'" +
                             std::string(e.what()).substr(std::string(e.what()).find(';')));
        }
        MEDIMG_CHECK(target != &model, ValueError, fn, ": the layer must be a submodule (e.g. layer4), not the whole model");
        handles.push_back(target->register_forward_hook([&](nn::Module<T, B>&, const Var&, const Var& y) {
            ++calls;
            MEDIMG_CHECK(y.shape().rank() == 4 || (y.shape().rank() == 3 && y.shape()[1] >= 2), ValueError, fn, ": layer '",
                         layer, "' gives a ", y.shape(), " output with no spatial dimensions; a class activation map needs a ",
                         "(N, C, h, w) feature map such as a ResNet's layer4 or layer3, or a ViT block's tokens (N, 1 + h w, C)");
            act = Var(y.value(), true);
            return act;
        }));
    } else {
        // Every submodule with a (N, C, h, w) output is re-rooted; the last one to finish is the target.
        for (auto& [name, m] : model.named_modules()) {
            if (m == &model) continue;
            handles.push_back(m->register_forward_hook([&, name = name](nn::Module<T, B>&, const Var&, const Var& y) {
                if (y.shape().rank() != 4) return Var();
                act = Var(y.value(), true);
                layer = name;
                calls = 1;
                return act;
            }));
        }
    }
    const Var logits = model(Var(x));
    handles.clear();
    MEDIMG_CHECK(act.defined(), ValueError, fn, o.layer.empty() ? ": no submodule of the model gave a (N, C, h, w) output"
                                                             : ": layer '" + o.layer + "' was not called by the forward pass");
    MEDIMG_CHECK(calls == 1, ValueError, fn, ": layer '", layer, "' ran ", calls,
                 " times in one forward pass; a class activation map needs a module that runs once");

    Explanation e;
    e.method = cam_method_name(o.method);
    e.layer = layer;
    e.logits = detail::host_float(logits.value());
    e.classes = detail::target_classes(fn, e.logits, o.classes);
    const std::int64_t n = x.size(0), K = e.logits.size(1);
    MEDIMG_CHECK(e.logits.size(0) == n, ShapeError, fn, ": the model returned ", e.logits.shape(), " for a batch of ", n);

    // S = sum_n logits[n, c_n]: seed dS/dlogits (pytorch-grad-cam sums ClassifierOutputTarget over the batch).
    std::vector<T> seed(static_cast<std::size_t>(n * K), T(0));
    for (std::int64_t i = 0; i < n; ++i) seed[static_cast<std::size_t>(i * K + e.classes[static_cast<std::size_t>(i)])] = T(1);
    auto seed_t = Tensor<T, B>::from_vector(logits.shape(), seed);
    if (logits.value().half_storage()) seed_t = seed_t.to_storage(logits.value().storage());
    logits.backward(seed_t);

    auto A = detail::host_float(act.value());  // (N, C', h, w), or a ViT's tokens (N, 1 + h w, C')
    auto G = act.grad().defined() ? detail::host_float(act.grad()) : Tensor<float, Cpu>::zeros(A.shape());
    if (A.rank() == 3) {
        const auto [gh, gw] = detail::token_grid(A.size(1) - 1, x.size(2), x.size(3));
        A = detail::tokens_as_map(A, gh, gw);
        G = detail::tokens_as_map(G, gh, gw);
    }
    const std::int64_t C = A.size(1), h = A.size(2), w = A.size(3), hw = h * w;
    e.raw = Tensor<float, Cpu>::empty({n, h, w});
    std::vector<double> weight(static_cast<std::size_t>(C)), cam(static_cast<std::size_t>(hw));
    for (std::int64_t i = 0; i < n; ++i) {
        for (std::int64_t k = 0; k < C; ++k) {
            const float* a = A.data() + (i * C + k) * hw;
            const float* g = G.data() + (i * C + k) * hw;
            double wk = 0;
            if (o.method == CamMethod::grad_cam) {
                for (std::int64_t j = 0; j < hw; ++j) wk += g[j];
                wk /= static_cast<double>(hw);
            } else {
                double sum_a = 0;
                for (std::int64_t j = 0; j < hw; ++j) sum_a += a[j];
                for (std::int64_t j = 0; j < hw; ++j) {
                    const double g1 = g[j], g2 = g1 * g1, g3 = g2 * g1;
                    if (g1 == 0) continue;  // a_ij = 0 where the gradient is 0
                    const double alpha = g2 / (2 * g2 + sum_a * g3 + 1e-6);
                    wk += alpha * std::max(g1, 0.0);
                }
            }
            weight[static_cast<std::size_t>(k)] = wk;
        }
        std::fill(cam.begin(), cam.end(), 0.0);
        for (std::int64_t k = 0; k < C; ++k) {
            const float* a = A.data() + (i * C + k) * hw;
            const double wk = weight[static_cast<std::size_t>(k)];
            for (std::int64_t j = 0; j < hw; ++j) cam[static_cast<std::size_t>(j)] += wk * a[j];
        }
        float* r = e.raw.data() + i * hw;
        for (std::int64_t j = 0; j < hw; ++j) r[j] = static_cast<float>(std::max(cam[static_cast<std::size_t>(j)], 0.0));
    }
    e.heatmap = detail::heatmap_at(e.raw, x.size(2), x.size(3));
    return e;
}

/// Grad-CAM++: grad_cam with method = grad_cam_pp.
template <class T, class B>
Explanation grad_cam_pp(nn::Module<T, B>& model, const Tensor<T, B>& x, CamOptions o = {}) {
    o.method = CamMethod::grad_cam_pp;
    return grad_cam(model, x, o);
}

}  // namespace medimg::explain
