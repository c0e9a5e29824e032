// SPDX-License-Identifier: MIT
// nn/vit.hpp: the Vision Transformer (Dosovitskiy et al. 2021) with the parameter names of timm
// (vit_tiny_patch16_224, vit_small_patch16_224: `cls_token`, `pos_embed`, `patch_embed.proj`,
// `blocks.i.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`, `norm`, `head`) or of
// torchvision (vit_b_16: `class_token`, `conv_proj`, `encoder.pos_embedding`,
// `encoder.layers.encoder_layer_i.{ln_1, self_attention.{in_proj_weight, in_proj_bias, out_proj},
// ln_2, mlp.0, mlp.3}`, `encoder.ln`, `heads.head`), in their state_dict order, so their
// checkpoints load as they are.
//
//   x (N, C, H, W) -> patch embedding (a D x C x P x P convolution of stride P) -> (N, D, h, w)
//   -> tokens: [class token; the h w patch tokens] + position embedding -> (N, 1 + h w, D)
//   -> depth x block:  x = x + proj(attention(qkv(LN1(x))));  x = x + fc2(GELU(fc1(LN2(x))))
//   -> LN -> the class token -> head (N, num_classes)
// Both libraries compute the same thing (pre-norm blocks, LayerNorm eps 1e-6, exact GELU, MLP
// 4 D wide, no dropout by default); torchvision's MultiheadAttention packs q, k and v in
// in_proj_weight as timm's qkv Linear does, heads in consecutive columns.
//
// Input sizes: the position embedding holds a grid of (image_size / P)^2 positions. An input whose
// patch grid (floor(H / P), floor(W / P): the convolution drops a remainder, as in both libraries)
// differs resamples the grid's embeddings on the fly as timm's dynamic_img_size does
// (timm.layers.resample_abs_pos_embed: the class token's embedding kept, the grid resized by
// torch.nn.functional.interpolate(mode='bicubic', antialias=True, align_corners=False)); the
// resize is a fixed linear map, so the gradient reaches the stored embedding. load_pretrained
// resamples a checkpoint's grid the same way (io/checkpoint.hpp). torchvision's own
// interpolate_embeddings uses align_corners=True instead; medimg uses timm's rule for both name
// sets (docs/models.md).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "medimg/autograd/functions.hpp"
#include "medimg/nn/classifier.hpp"
#include "medimg/nn/init.hpp"
#include "medimg/nn/layers.hpp"
#include "medimg/nn/pos_embed.hpp"

namespace medimg::nn {

struct LayerNormOptions {
    std::int64_t normalized_shape;  // D, the last dimension
    double eps = 1e-5;
    bool elementwise_affine = true;
};

/// torch.nn.LayerNorm(D): weight (D) = 1, bias (D) = 0, over the last dimension.
template <class T, class B = Cpu>
class LayerNorm : public Module<T, B> {
public:
    using Var = autograd::Var<T, B>;
    explicit LayerNorm(const LayerNormOptions& o) : o_(o) {
        MEDIMG_CHECK(o.normalized_shape >= 1 && o.eps >= 0.0, ValueError, "LayerNorm: need normalized_shape >= 1 and eps >= 0, got ",
                     o.normalized_shape, " and ", o.eps);
        if (o.elementwise_affine) {
            weight_ = this->register_parameter("weight", Tensor<T, B>::ones(Shape{o.normalized_shape}));
            bias_ = this->register_parameter("bias", Tensor<T, B>::zeros(Shape{o.normalized_shape}));
        }
    }
    Var forward(const Var& x) override {
        const auto r = x.shape().rank();
        MEDIMG_CHECK(r >= 1 && x.shape()[r - 1] == o_.normalized_shape, ShapeError, "LayerNorm: input ", x.shape(),
                     " does not end in ", o_.normalized_shape);
        return autograd::layer_norm(x, weight_, bias_, o_.eps);
    }
    Var& weight() { return weight_; }
    Var& bias() { return bias_; }

private:
    LayerNormOptions o_;
    Var weight_, bias_;
};

/// torch.nn.GELU(approximate='none' | 'tanh').
template <class T, class B = Cpu>
class GELU : public Module<T, B> {
public:
    explicit GELU(ops::Gelu form = ops::Gelu::erf) : form_(form) {}
    autograd::Var<T, B> forward(const autograd::Var<T, B>& x) override { return autograd::gelu(x, form_); }

private:
    ops::Gelu form_;
};

namespace detail {

/// A Linear applied to every token: x (N, L, in) -> (N, L, out).
template <class T, class B>
autograd::Var<T, B> tokenwise(Module<T, B>& linear, const autograd::Var<T, B>& x) {
    MEDIMG_CHECK(x.shape().rank() == 3, ShapeError, "ViT: tokens must be (N, L, D), got ", x.shape());
    const std::int64_t N = x.size(0), L = x.size(1);
    auto y = linear(autograd::reshape(x, Shape{N * L, x.size(2)}));
    return autograd::reshape(y, Shape{N, L, y.size(1)});
}

}  // namespace detail

/// The position embedding pos (1, prefix + ih iw, D) resampled to an oh x ow grid, as timm's
/// resample_abs_pos_embed(pos, (oh, ow), (ih, iw), num_prefix_tokens=prefix); differentiable.
template <class T, class B>
autograd::Var<T, B> resample_pos_embed(const autograd::Var<T, B>& pos, std::int64_t prefix, std::int64_t ih, std::int64_t iw,
                                       std::int64_t oh, std::int64_t ow) {
    MEDIMG_CHECK(pos.shape().rank() == 3 && pos.size(0) == 1 && pos.size(1) == prefix + ih * iw, ShapeError,
                 "resample_pos_embed: embedding ", pos.shape(), " is not (1, ", prefix, " + ", ih, " x ", iw, ", D)");
    MEDIMG_CHECK(oh >= 1 && ow >= 1, ShapeError, "resample_pos_embed: target grid ", oh, " x ", ow, " is empty");
    if (oh == ih && ow == iw) return pos;
    const autograd::Var<T, B> m(detail::resample_matrix<T, B>(prefix, ih, iw, oh, ow));
    return autograd::bmm(m, pos);
}

enum class VitNames { timm, torchvision };

struct VitOptions {
    std::int64_t image_size = 224;  // the position grid is (image_size / patch_size)^2
    std::int64_t patch_size = 16;
    std::int64_t in_channels = 3;
    std::int64_t num_classes = 1000;
    std::int64_t embed_dim = 768;
    std::int64_t depth = 12;
    std::int64_t heads = 12;
    std::int64_t mlp_dim = 3072;  // 4 embed_dim in every model named here
    double eps = 1e-6;            // LayerNorm eps of timm's and torchvision's ViTs
    VitNames names = VitNames::timm;
    std::uint64_t seed = 0;
};

/// Multi-head self-attention over tokens (N, L, D) -> (N, L, D): one packed q/k/v projection,
/// autograd::attention, the output projection. timm's names (`qkv`, `proj` Linears; timm's init)
/// or torch.nn.MultiheadAttention's (`in_proj_weight`, `in_proj_bias` on this module, the
/// `out_proj` Linear; its init: xavier_uniform, biases 0). keep_attention(true) keeps each
/// forward's attention weights (N, heads, L, L) for attention rollout (explain/).
template <class T, class B = Cpu>
class VitAttention : public Module<T, B> {
public:
    using Var = autograd::Var<T, B>;
    VitAttention(std::int64_t dim, std::int64_t heads, VitNames names, Rng& rng) : heads_(heads) {
        if (names == VitNames::torchvision) {
            in_w_ = this->register_parameter(
                "in_proj_weight", init::make<T, B>(Shape{3 * dim, dim}, [&](Tensor<T, Cpu>& t) { init::xavier_uniform(t, rng); }));
            in_b_ = this->register_parameter("in_proj_bias", Tensor<T, B>::zeros(Shape{3 * dim}));
            proj_ = this->register_module("out_proj", std::make_shared<Linear<T, B>>(LinearOptions{dim, dim}, rng));
            init::refill(proj_->bias().value(), [](Tensor<T, Cpu>& t) { t.fill_(T(0)); });
        } else {
            qkv_ = this->register_module("qkv", std::make_shared<Linear<T, B>>(LinearOptions{dim, 3 * dim}, rng));
            proj_ = this->register_module("proj", std::make_shared<Linear<T, B>>(LinearOptions{dim, dim}, rng));
        }
    }
    Var forward(const Var& x) override {
        MEDIMG_CHECK(x.shape().rank() == 3, ShapeError, "VitAttention: input must be (N, L, D), got ", x.shape());
        const std::int64_t N = x.size(0), L = x.size(1), D = x.size(2);
        auto flat = autograd::reshape(x, Shape{N * L, D});
        auto qkv = qkv_ ? (*qkv_)(flat) : autograd::linear(flat, in_w_, in_b_);
        auto o = autograd::attention(autograd::reshape(qkv, Shape{N, L, 3 * D}), ops::AttentionParams{heads_},
                                     keep_ ? &attention_ : nullptr);
        return autograd::reshape((*proj_)(autograd::reshape(o, Shape{N * L, D})), Shape{N, L, D});
    }
    /// Keep (true) or stop keeping the attention weights of each forward.
    void keep_attention(bool on) {
        keep_ = on;
        if (!on) attention_ = Tensor<T, B>();
    }
    /// The attention weights of the last forward with keep_attention on: (N, heads, L, L).
    const Tensor<T, B>& attention() const { return attention_; }
    std::int64_t heads() const { return heads_; }

private:
    std::int64_t heads_;
    std::shared_ptr<Linear<T, B>> qkv_, proj_;
    Var in_w_, in_b_;
    bool keep_ = false;
    Tensor<T, B> attention_;
};

/// One pre-norm encoder block: x + attn(LN1(x)), then + MLP(LN2(x)); timm's Block
/// (`norm1`, `attn`, `norm2`, `mlp.fc1`, `mlp.fc2`) or torchvision's EncoderBlock (`ln_1`,
/// `self_attention`, `ln_2`, `mlp.0`, `mlp.3`: its MLPBlock's Linear, GELU, Dropout, Linear, Dropout).
template <class T, class B = Cpu>
class VitBlock : public Module<T, B> {
public:
    using Var = autograd::Var<T, B>;
    VitBlock(const VitOptions& o, Rng& rng) {
        const std::int64_t D = o.embed_dim;
        const bool tv = o.names == VitNames::torchvision;
        norm1_ = this->register_module(tv ? "ln_1" : "norm1", std::make_shared<LayerNorm<T, B>>(LayerNormOptions{D, o.eps}));
        attn_ = this->register_module(tv ? "self_attention" : "attn", std::make_shared<VitAttention<T, B>>(D, o.heads, o.names, rng));
        norm2_ = this->register_module(tv ? "ln_2" : "norm2", std::make_shared<LayerNorm<T, B>>(LayerNormOptions{D, o.eps}));
        mlp_ = this->register_module("mlp", std::make_shared<Sequential<T, B>>());
        fc1_ = mlp_->push_back(tv ? "0" : "fc1", std::make_shared<Linear<T, B>>(LinearOptions{D, o.mlp_dim}, rng));
        if (tv) {
            mlp_->push_back("1", std::make_shared<GELU<T, B>>());
            mlp_->push_back("2", std::make_shared<Identity<T, B>>());  // Dropout(0)
        }
        fc2_ = mlp_->push_back(tv ? "3" : "fc2", std::make_shared<Linear<T, B>>(LinearOptions{o.mlp_dim, D}, rng));
        if (tv) mlp_->push_back("4", std::make_shared<Identity<T, B>>());
    }
    Var forward(const Var& x) override {
        MEDIMG_CHECK(x.shape().rank() == 3, ShapeError, "VitBlock: input must be (N, L, D), got ", x.shape());
        auto x1 = autograd::add(x, (*attn_)((*norm1_)(x)));
        auto h = autograd::gelu(detail::tokenwise(*fc1_, (*norm2_)(x1)));
        return autograd::add(x1, detail::tokenwise(*fc2_, h));
    }
    VitAttention<T, B>& attention_module() { return *attn_; }

private:
    std::shared_ptr<LayerNorm<T, B>> norm1_, norm2_;
    std::shared_ptr<VitAttention<T, B>> attn_;
    std::shared_ptr<Sequential<T, B>> mlp_;
    std::shared_ptr<Linear<T, B>> fc1_, fc2_;
};

/// The Vision Transformer as an ImageClassifier. forward_features gives the normalised token
/// sequence (N, 1 + h w, D), as timm's forward_features (not a 4-d map: Grad-CAM reads a block's
/// tokens as a map, explain/); forward_head takes the class token and applies the head.
template <class T, class B = Cpu>
class VisionTransformer : public ImageClassifier<T, B> {
public:
    using Var = autograd::Var<T, B>;
    explicit VisionTransformer(const VitOptions& o) : o_(o) {
        MEDIMG_CHECK(o.patch_size >= 1 && o.image_size >= o.patch_size && o.embed_dim >= 1 && o.depth >= 1 && o.heads >= 1 &&
                         o.embed_dim % o.heads == 0 && o.mlp_dim >= 1 && o.in_channels >= 1 && o.num_classes >= 1,
                     ValueError, "VisionTransformer: need patch_size >= 1, image_size >= patch_size, heads dividing embed_dim ",
                     "and positive sizes; got image ", o.image_size, ", patch ", o.patch_size, ", dim ", o.embed_dim, ", heads ",
                     o.heads, ", depth ", o.depth);
        Rng rng(o.seed);
        const bool tv = o.names == VitNames::torchvision;
        const std::int64_t D = o.embed_dim, g = o.image_size / o.patch_size;
        grid_ = g;
        const Conv2dOptions pe{o.in_channels, D, o.patch_size, o.patch_size, 0, 1, true};
        const Shape pos_shape{1, 1 + g * g, D};
        if (tv) {
            // torchvision: conv_proj trunc_normal(std sqrt(1 / fan_in)), bias 0; class_token 0;
            // pos_embedding normal(std 0.02); MLP xavier_uniform weights, normal(std 1e-6) biases; head 0.
            patch_ = this->register_module("conv_proj", std::make_shared<Conv2d<T, B>>(pe, rng));
            cls_ = this->register_parameter("class_token", Tensor<T, B>::zeros(Shape{1, 1, D}));
            const double fin = static_cast<double>(o.in_channels * o.patch_size * o.patch_size);
            init::refill(patch_->weight().value(), [&](Tensor<T, Cpu>& t) { init::trunc_normal(t, rng, std::sqrt(1.0 / fin)); });
            init::refill(patch_->bias().value(), [](Tensor<T, Cpu>& t) { t.fill_(T(0)); });
            encoder_ = this->register_module("encoder", std::make_shared<Holder>());
            pos_ = encoder_->reg("pos_embedding", init::make<T, B>(pos_shape, [&](Tensor<T, Cpu>& t) { rng.fill_normal(t, 0.0, 0.02); }));
            blocks_ = encoder_->template sub<Sequential<T, B>>("layers");
            for (std::int64_t i = 0; i < o.depth; ++i) {
                auto b = blocks_->push_back("encoder_layer_" + std::to_string(i), std::make_shared<VitBlock<T, B>>(o, rng));
                block_list_.push_back(b);
                for (auto& [n, p] : b->named_parameters())
                    if (n.rfind("mlp.", 0) == 0)
                        init::refill(p.value(), [&](Tensor<T, Cpu>& t) {
                            if (t.rank() == 2) init::xavier_uniform(t, rng);
                            else rng.fill_normal(t, 0.0, 1e-6);
                        });
            }
            norm_ = encoder_->template sub<LayerNorm<T, B>>("ln", LayerNormOptions{D, o.eps});
            auto heads = this->register_module("heads", std::make_shared<Sequential<T, B>>());
            head_ = heads->push_back("head", std::make_shared<Linear<T, B>>(LinearOptions{D, o.num_classes}, rng));
            init::refill(head_->weight().value(), [](Tensor<T, Cpu>& t) { t.fill_(T(0)); });
            init::refill(head_->bias().value(), [](Tensor<T, Cpu>& t) { t.fill_(T(0)); });
        } else {
            // timm (weight_init ''): pos_embed trunc_normal(0.02), cls_token normal(1e-6), every
            // Linear trunc_normal(0.02) with bias 0, the patch convolution PyTorch's default.
            cls_ = this->register_parameter(
                "cls_token", init::make<T, B>(Shape{1, 1, D}, [&](Tensor<T, Cpu>& t) { rng.fill_normal(t, 0.0, 1e-6); }));
            pos_ = this->register_parameter(
                "pos_embed", init::make<T, B>(pos_shape, [&](Tensor<T, Cpu>& t) { init::trunc_normal(t, rng, 0.02); }));
            auto pm = this->register_module("patch_embed", std::make_shared<Holder>());
            patch_ = pm->template sub<Conv2d<T, B>>("proj", pe, rng);
            blocks_ = this->register_module("blocks", std::make_shared<Sequential<T, B>>());
            for (std::int64_t i = 0; i < o.depth; ++i)
                block_list_.push_back(blocks_->push_back(std::make_shared<VitBlock<T, B>>(o, rng)));
            norm_ = this->register_module("norm", std::make_shared<LayerNorm<T, B>>(LayerNormOptions{D, o.eps}));
            head_ = this->register_module("head", std::make_shared<Linear<T, B>>(LinearOptions{D, o.num_classes}, rng));
            for (auto& [n, p] : this->named_parameters())
                if (p.value().rank() == 2)
                    init::refill(p.value(), [&](Tensor<T, Cpu>& t) { init::trunc_normal(t, rng, 0.02); });
                else if (n.size() > 5 && n.compare(n.size() - 5, 5, ".bias") == 0 && n.rfind("patch_embed.", 0) != 0 &&
                         n.find("norm") == std::string::npos)
                    init::refill(p.value(), [](Tensor<T, Cpu>& t) { t.fill_(T(0)); });
        }
    }

    Var forward_features(const Var& x) override {
        MEDIMG_CHECK(x.shape().rank() == 4 && x.size(1) == o_.in_channels, ShapeError, "VisionTransformer: input must be (N, ",
                     o_.in_channels, ", H, W), got ", x.shape());
        MEDIMG_CHECK(x.size(2) >= o_.patch_size && x.size(3) >= o_.patch_size, ShapeError, "VisionTransformer: input ", x.shape(),
                     " is smaller than one ", o_.patch_size, " x ", o_.patch_size, " patch");
        auto p = (*patch_)(x);
        const std::int64_t h = p.size(2), w = p.size(3);
        auto pos = resample_pos_embed(pos_, 1, grid_, grid_, h, w);
        Var t = autograd::tokens(p, cls_, pos);
        for (auto& b : block_list_) t = (*b)(t);
        return (*norm_)(t);
    }
    Var forward_head(const Var& f, bool pre_logits = false) override {
        auto c = autograd::take_token(f, 0);
        return pre_logits ? c : (*head_)(c);
    }
    std::int64_t num_features() const override { return o_.embed_dim; }
    /// The last block's first LayerNorm, whose tokens (less the class token) Grad-CAM reads as a
    /// map (pytorch-grad-cam's choice for ViTs).
    std::string default_cam_layer(std::int64_t) const override {
        return o_.names == VitNames::torchvision ? "encoder.layers.encoder_layer_" + std::to_string(o_.depth - 1) + ".ln_1"
                                                 : "blocks." + std::to_string(o_.depth - 1) + ".norm1";
    }

    Linear<T, B>& classifier() { return *head_; }
    Var& position_embedding() { return pos_; }
    std::int64_t grid() const { return grid_; }
    const VitOptions& options() const { return o_; }
    const std::vector<std::shared_ptr<VitBlock<T, B>>>& blocks() const { return block_list_; }
    /// Every block keeps (true) or drops its attention weights (attention rollout, explain/).
    void keep_attention(bool on) {
        for (auto& b : block_list_) b->attention_module().keep_attention(on);
    }

private:
    /// A module that only holds named parameters and children (timm's PatchEmbed around `proj`,
    /// torchvision's Encoder around `pos_embedding`, `layers` and `ln`).
    struct Holder : Module<T, B> {
        Var forward(const Var&) override { throw ValueError("VisionTransformer: this part has no forward of its own"); }
        Var& reg(const std::string& name, Tensor<T, B> v) { return this->register_parameter(name, std::move(v)); }
        template <class M, class... A>
        std::shared_ptr<M> sub(const std::string& name, A&&... args) {
            return this->register_module(name, std::make_shared<M>(std::forward<A>(args)...));
        }
    };

    VitOptions o_;
    std::int64_t grid_ = 0;
    Var cls_, pos_;
    std::shared_ptr<Conv2d<T, B>> patch_;
    std::shared_ptr<Holder> encoder_;
    std::shared_ptr<Sequential<T, B>> blocks_;
    std::vector<std::shared_ptr<VitBlock<T, B>>> block_list_;
    std::shared_ptr<LayerNorm<T, B>> norm_;
    std::shared_ptr<Linear<T, B>> head_;
};

/// The named configurations: timm's vit_tiny_patch16_224 (D 192, 3 heads) and
/// vit_small_patch16_224 (D 384, 6 heads), torchvision's vit_b_16 (D 768, 12 heads); depth 12,
/// patch 16, MLP 4 D for all three.
inline VitOptions vit_options(const std::string& name) {
    VitOptions o;
    if (name == "vit_tiny_patch16_224") {
        o.embed_dim = 192;
        o.heads = 3;
    } else if (name == "vit_small_patch16_224") {
        o.embed_dim = 384;
        o.heads = 6;
    } else if (name == "vit_b_16") {
        o.names = VitNames::torchvision;
    } else {
        throw ValueError("vit_options: unknown ViT '" + name + "' (vit_tiny_patch16_224, vit_small_patch16_224, vit_b_16)");
    }
    o.mlp_dim = 4 * o.embed_dim;
    return o;
}

}  // namespace medimg::nn
