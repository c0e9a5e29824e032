// SPDX-License-Identifier: MIT
// Tests for the Vision Transformer (nn/vit.hpp, nn/pos_embed.hpp) and its ops (ops/layer_norm.hpp,
// ops/attention.hpp, ops/tokens.hpp, GELU in ops/activation.hpp): central finite differences in
// double for every new differentiable op, the float kernels against double ones, the refusals,
// then parity with timm and torchvision from the fixtures tests/data/make_vit_fixtures.py writes
// (weights from the closed form ref::det_init; a real timm checkpoint as safetensors and .pth).
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "medimg/io/checkpoint.hpp"
#include "medimg/io/safetensors.hpp"
#include "medimg/medimg.hpp"
#include "medimg/optim/optim.hpp"
#include "reference.hpp"

using namespace medimg;
using namespace medimg::autograd;
using medimg::test::message_contains;
namespace ref = medimg::test::ref;
using D = Var<double, Cpu>;
using Ds = std::vector<D>;
using F = Var<float, Cpu>;

namespace {

constexpr double kParityRtol = 1e-4;
constexpr double kParityAtol = 1e-5;

std::string fixture(const std::string& name) { return std::string(MEDIMG_TEST_DATA_DIR) + "/vit/" + name; }

D param(const Shape& s, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
    return D::parameter(ref::random<double>(s, seed, lo, hi));
}
/// A scalar from y with fixed random weights, so every element's gradient path counts.
D weighted_sum(const D& y, std::uint64_t seed = 999) { return sum(mul(y, D(ref::random<double>(y.shape(), seed)))); }
void expect_gradients_match(const std::function<D(const Ds&)>& f, const Ds& inputs) {
    const auto r = grad_check(f, inputs, 1e-6, test::kGradRtol, test::kGradAtol);
    BOOST_CHECK_MESSAGE(r.ok, "gradient mismatch: " << r.worst << " (max abs error " << r.max_abs_error << ")");
}

/// The small configuration of make_vit_fixtures.py's real timm checkpoint (vit_timm_small).
nn::VitOptions timm_small() {
    nn::VitOptions o;
    o.image_size = 32;
    o.patch_size = 8;
    o.embed_dim = 48;
    o.depth = 2;
    o.heads = 3;
    o.mlp_dim = 192;
    o.num_classes = 3;
    return o;
}
/// A smaller one still, for the explanation tests.
nn::VitOptions small_vit(std::int64_t image = 32, std::int64_t depth = 2) {
    nn::VitOptions o = timm_small();
    o.image_size = image;
    o.embed_dim = 24;
    o.depth = depth;
    o.heads = 2;
    o.mlp_dim = 48;
    o.seed = 5;
    return o;
}

/// Attention written out with plain loops in double: the reference for the kernels.
Tensor<double, Cpu> naive_attention(const Tensor<double, Cpu>& qkv, std::int64_t H, Tensor<double, Cpu>* probs = nullptr) {
    const std::int64_t B = qkv.size(0), L = qkv.size(1), Dm = qkv.size(2) / 3, d = Dm / H;
    auto out = Tensor<double, Cpu>::zeros(Shape{B, L, Dm});
    if (probs) *probs = Tensor<double, Cpu>::zeros(Shape{B, H, L, L});
    const double sc = 1.0 / std::sqrt(static_cast<double>(d));
    for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t h = 0; h < H; ++h)
            for (std::int64_t i = 0; i < L; ++i) {
                std::vector<double> s(static_cast<std::size_t>(L));
                double mx = -1e300;
                for (std::int64_t j = 0; j < L; ++j) {
                    double v = 0;
                    for (std::int64_t c = 0; c < d; ++c)
                        v += qkv[(b * L + i) * 3 * Dm + h * d + c] * qkv[(b * L + j) * 3 * Dm + Dm + h * d + c];
                    s[static_cast<std::size_t>(j)] = v * sc;
                    mx = std::max(mx, v * sc);
                }
                double z = 0;
                for (auto& v : s) z += (v = std::exp(v - mx));
                for (std::int64_t j = 0; j < L; ++j) {
                    const double p = s[static_cast<std::size_t>(j)] / z;
                    if (probs) (*probs)[((b * H + h) * L + i) * L + j] = p;
                    for (std::int64_t c = 0; c < d; ++c)
                        out[(b * L + i) * Dm + h * d + c] += p * qkv[(b * L + j) * 3 * Dm + 2 * Dm + h * d + c];
                }
            }
    return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(vit_ops)

BOOST_AUTO_TEST_CASE(layer_norm_gradients_match_finite_differences_with_and_without_affine) {
    const Ds in{param({2, 3, 7}, 1, -2, 3), param({7}, 2, 0.5, 1.5), param({7}, 3)};
    expect_gradients_match([](const Ds& v) { return weighted_sum(layer_norm(v[0], v[1], v[2], 1e-5)); }, in);
    expect_gradients_match([](const Ds& v) { return weighted_sum(layer_norm(v[0], D(), D(), 1e-6)); }, {in[0]});
}

BOOST_AUTO_TEST_CASE(layer_norm_matches_the_definition_and_float_matches_double) {
    const auto x = ref::random<double>({5, 33}, 4, -3, 5);
    const auto g = ref::random<double>({33}, 5), b = ref::random<double>({33}, 6);
    NoGrad guard;
    auto y = layer_norm(D(x), D(g), D(b), 1e-6).value();
    for (std::int64_t r = 0; r < 5; ++r) {
        double m = 0, v = 0;
        for (int i = 0; i < 33; ++i) m += x[r * 33 + i] / 33;
        for (int i = 0; i < 33; ++i) v += (x[r * 33 + i] - m) * (x[r * 33 + i] - m) / 33;
        for (int i = 0; i < 33; ++i)
            BOOST_TEST(y[r * 33 + i] == (x[r * 33 + i] - m) / std::sqrt(v + 1e-6) * g[i] + b[i], boost::test_tools::tolerance(1e-12));
    }
    auto yf = layer_norm(F(x.cast<float>()), F(g.cast<float>()), F(b.cast<float>()), 1e-6).value();
    MEDIMG_CHECK_CLOSE_TENSORS(yf, y, test::kFloatRtol, test::kFloatAtol);
}

BOOST_AUTO_TEST_CASE(gelu_gradients_match_finite_differences_in_both_forms) {
    const Ds in{param({4, 9}, 7, -4, 4)};
    expect_gradients_match([](const Ds& v) { return weighted_sum(gelu(v[0], ops::Gelu::erf)); }, in);
    expect_gradients_match([](const Ds& v) { return weighted_sum(gelu(v[0], ops::Gelu::tanh)); }, in);
}

// ATen's vectorised erf and erf_poly are Abramowitz & Stegun 7.1.26 (absolute error 1.5e-7 on erf):
// GELU then differs from the double one by up to |x| 0.75e-7, its slope by about as much.
BOOST_AUTO_TEST_CASE(float_gelu_is_within_1e_6_of_double_including_large_inputs) {
    std::vector<double> xs;
    for (int i = -4000; i <= 4000; ++i) xs.push_back(i * 0.0025);
    for (double v : {-100.0, -30.0, -9.0, 9.0, 30.0, 100.0, 1e30, -1e30}) xs.push_back(v);
    const auto n = static_cast<std::int64_t>(xs.size());
    const auto xd = Tensor<double, Cpu>::from_vector({n}, xs);
    const auto xf = xd.cast<float>();
    for (auto form : {ops::Gelu::erf, ops::Gelu::tanh}) {
        auto yd = Tensor<double, Cpu>::empty({n}), dd = Tensor<double, Cpu>::empty({n});
        auto yf = Tensor<float, Cpu>::empty({n}), df = Tensor<float, Cpu>::empty({n});
        ops::gelu_forward(xd, yd, form);
        ops::gelu_forward(xf, yf, form);
        ops::gelu_backward(xd, Tensor<double, Cpu>::ones({n}), dd, form);
        ops::gelu_backward(xf, Tensor<float, Cpu>::ones({n}), df, form);
        MEDIMG_CHECK_CLOSE_TENSORS(yf, yd, 1e-6, 1e-6);
        MEDIMG_CHECK_CLOSE_TENSORS(df, dd, 1e-6, 1e-6);
    }
    // the exact form against its definition with libm's erf
    auto y = Tensor<double, Cpu>::empty({n});
    ops::gelu_forward(xd, y, ops::Gelu::erf);
    for (std::int64_t i = 0; i < n; i += 97)
        BOOST_TEST(y[i] == 0.5 * xs[i] * (1 + std::erf(xs[i] / std::sqrt(2.0))), boost::test_tools::tolerance(1e-14));
}

BOOST_AUTO_TEST_CASE(attention_gradients_match_finite_differences) {
    for (std::int64_t H : {1, 2}) {
        const Ds in{param({2, 5, 3 * 2 * H}, 10 + H, -1.5, 1.5)};
        expect_gradients_match([H](const Ds& v) { return weighted_sum(attention(v[0], ops::AttentionParams{H})); }, in);
    }
    const Ds in{param({1, 4, 6}, 13)};  // an explicit scale
    expect_gradients_match([](const Ds& v) { return weighted_sum(attention(v[0], ops::AttentionParams{1, 0.7})); }, in);
}

BOOST_AUTO_TEST_CASE(attention_matches_the_loops_and_float_matches_double) {
    for (auto [B, L, H, d] : std::vector<std::array<std::int64_t, 4>>{{2, 5, 1, 4}, {3, 17, 3, 8}, {1, 197, 3, 16}}) {
        BOOST_TEST_CONTEXT("B " << B << ", L " << L << ", H " << H << ", d " << d) {
            const auto qkv = ref::random<double>({B, L, 3 * H * d}, 20 + L, -2, 2);
            Tensor<double, Cpu> pr_ref;
            const auto want = naive_attention(qkv, H, &pr_ref);
            NoGrad guard;
            Tensor<double, Cpu> pr;
            MEDIMG_CHECK_CLOSE_TENSORS(attention(D(qkv), ops::AttentionParams{H}, &pr).value(), want, 1e-10, 1e-12);
            MEDIMG_CHECK_CLOSE_TENSORS(pr, pr_ref, 1e-10, 1e-12);
            Tensor<float, Cpu> prf;
            MEDIMG_CHECK_CLOSE_TENSORS(attention(F(qkv.cast<float>()), ops::AttentionParams{H}, &prf).value(), want,
                                       test::kFloatRtol, test::kFloatAtol);
            MEDIMG_CHECK_CLOSE_TENSORS(prf, pr_ref, test::kFloatRtol, test::kFloatAtol);
        }
    }
}

BOOST_AUTO_TEST_CASE(attention_backward_in_float_matches_double) {
    const auto qkv = ref::random<double>({2, 31, 3 * 2 * 8}, 30, -2, 2);
    const auto w = ref::random<double>({2, 31, 16}, 31);
    auto run = [&](auto tag) {
        using T = decltype(tag);
        auto x = Var<T, Cpu>::parameter(qkv.cast<T>());
        sum(mul(attention(x, ops::AttentionParams{2}), Var<T, Cpu>(w.cast<T>()))).backward();
        return x.grad();
    };
    MEDIMG_CHECK_CLOSE_TENSORS(run(float{}), run(double{}), test::kFloatRtol, test::kFloatAtol);
}

BOOST_AUTO_TEST_CASE(bmm_gradients_match_finite_differences_for_every_transpose_and_a_shared_operand) {
    for (bool ta : {false, true})
        for (bool tb : {false, true})
            BOOST_TEST_CONTEXT("ta " << ta << ", tb " << tb) {
                const Shape as = ta ? Shape{3, 4, 2} : Shape{3, 2, 4}, bs = tb ? Shape{3, 5, 4} : Shape{3, 4, 5};
                expect_gradients_match([ta, tb](const Ds& v) { return weighted_sum(bmm(v[0], v[1], ta, tb)); },
                                       {param(as, 40), param(bs, 41)});
                Shape a1 = as, b1 = bs;
                a1[0] = 1;
                b1[0] = 1;
                expect_gradients_match([ta, tb](const Ds& v) { return weighted_sum(bmm(v[0], v[1], ta, tb)); },
                                       {param(a1, 42), param(bs, 43)});
                expect_gradients_match([ta, tb](const Ds& v) { return weighted_sum(bmm(v[0], v[1], ta, tb)); },
                                       {param(as, 44), param(b1, 45)});
            }
}

BOOST_AUTO_TEST_CASE(tokens_and_take_token_gradients_match_finite_differences) {
    const Ds in{param({2, 3, 2, 3}, 50), param({1, 1, 3}, 51), param({1, 7, 3}, 52)};
    expect_gradients_match([](const Ds& v) { return weighted_sum(tokens(v[0], v[1], v[2])); }, in);
    expect_gradients_match([](const Ds& v) { return weighted_sum(tokens(v[0], D(), D())); }, {in[0]});
    expect_gradients_match([](const Ds& v) { return weighted_sum(take_token(tokens(v[0], v[1], v[2]), 3)); }, in);
}

BOOST_AUTO_TEST_CASE(tokens_put_the_class_token_first_and_the_patches_in_row_major_order) {
    auto p = Tensor<double, Cpu>::zeros({1, 2, 2, 2});  // D 2, grid 2x2
    for (int i = 0; i < 8; ++i) p[i] = i;                 // channel c, place s: c * 4 + s
    const auto cls = Tensor<double, Cpu>::from_vector({1, 1, 2}, {100, 200});
    NoGrad guard;
    auto y = tokens(D(p), D(cls), D()).value();
    BOOST_TEST(y.shape() == (Shape{1, 5, 2}));
    const std::vector<double> want{100, 200, 0, 4, 1, 5, 2, 6, 3, 7};
    BOOST_TEST(y.to_vector() == want, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(position_resampling_gradients_match_finite_differences) {
    expect_gradients_match([](const Ds& v) { return weighted_sum(nn::resample_pos_embed(v[0], 1, 4, 4, 3, 5)); },
                           {param({1, 17, 3}, 60)});
}

BOOST_AUTO_TEST_CASE(the_ops_refuse_shapes_that_do_not_fit_in_one_line) {
    NoGrad guard;
    BOOST_CHECK_EXCEPTION(attention(D(ref::random<double>({2, 5, 10}, 1)), ops::AttentionParams{2}), ShapeError,
                          message_contains("attention: qkv must be (B, L, 3 * heads * head_dim) with heads 2, got [2,5,10]"));
    BOOST_CHECK_EXCEPTION(layer_norm(D(ref::random<double>({2, 5}, 1)), D(ref::random<double>({4}, 2)), D(), 1e-5), ShapeError,
                          message_contains("weight and bias must be (5) for input [2,5], got [4]"));
    BOOST_CHECK_EXCEPTION(bmm(D(ref::random<double>({2, 3, 4}, 1)), D(ref::random<double>({2, 5, 6}, 2))), ShapeError,
                          message_contains("bmm: inner sizes differ: op(a) of [2,3,4] is (3, 4) but op(b) of [2,5,6] is (5, 6)"));
    BOOST_CHECK_EXCEPTION(bmm(D(ref::random<double>({2, 3, 4}, 1)), D(ref::random<double>({3, 4, 6}, 2))), ShapeError,
                          message_contains("batch sizes 2 and 3 differ and neither is 1"));
    BOOST_CHECK_EXCEPTION(tokens(D(ref::random<double>({1, 3, 2, 2}, 1)), D(), D(ref::random<double>({1, 6, 3}, 2))), ShapeError,
                          message_contains("position embedding must be (1, 4, 3) for patches [1,3,2,2], got [1,6,3]"));
    BOOST_CHECK_EXCEPTION(take_token(D(ref::random<double>({1, 3, 2}, 1)), 3), ShapeError,
                          message_contains("0 <= index < T, got [1,3,2] and index 3"));
}

BOOST_AUTO_TEST_CASE(position_resampling_matches_timm_up_and_down) {
    const auto f = io::SafetensorsFile::load(fixture("pos_resample.safetensors"));
    const auto pos = f.tensor<double>("posemb");
    for (auto [h, w] : std::vector<std::pair<int, int>>{{2, 2}, {3, 5}, {20, 20}, {14, 14}, {7, 9}})
        BOOST_TEST_CONTEXT(h << "x" << w) {
            NoGrad guard;
            const auto got = nn::resample_pos_embed(D(pos), 1, 14, 14, h, w).value();
            // timm resamples in float32: its values are up to 3.5e-6 from the double computation
            MEDIMG_CHECK_CLOSE_TENSORS(got, f.tensor<double>("resampled." + std::to_string(h) + "x" + std::to_string(w)), 1e-5, 1e-5);
            MEDIMG_CHECK_CLOSE_TENSORS(nn::resample_pos_embed_host(pos, 1, 14, 14, h, w), got, 1e-12, 1e-12);
        }
}

BOOST_AUTO_TEST_SUITE_END()

namespace {

/// A stored reference: whole, or (over 4096 elements) a sample KEY with KEY.index, KEY.sum and
/// KEY.sumsq (make_vit_fixtures.py).
void check_stored(const io::SafetensorsFile& f, const std::string& key, const Tensor<double, Cpu>& got, double rtol, double atol) {
    if (!f.contains(key + ".index")) {
        MEDIMG_CHECK_CLOSE_TENSORS(got, f.tensor<double>(key), rtol, atol);
        return;
    }
    const auto idx = f.tensor<std::int64_t>(key + ".index");
    const auto want = f.tensor<double>(key);
    auto sample = Tensor<double, Cpu>::empty(want.shape());
    for (std::int64_t i = 0; i < idx.numel(); ++i) sample[i] = got[idx[i]];
    MEDIMG_CHECK_CLOSE_TENSORS(sample, want, rtol, atol);
    double s = 0, q = 0;
    for (std::int64_t i = 0; i < got.numel(); ++i) {
        s += got[i];
        q += got[i] * got[i];
    }
    const double sumsq = f.tensor<double>(key + ".sumsq").item();
    BOOST_TEST(q == sumsq, boost::test_tools::tolerance(10 * rtol));
    BOOST_TEST(std::abs(s - f.tensor<double>(key + ".sum").item()) <= 10 * rtol * std::sqrt(sumsq * static_cast<double>(got.numel())) + atol,
               key << ".sum: " << s << " vs " << f.tensor<double>(key + ".sum").item());
}

template <class T>
std::shared_ptr<nn::ImageClassifier<T, Cpu>> det_vit(const std::string& name, std::int64_t image_size = 224) {
    nn::ModelOptions o{2, 3};
    o.image_size = image_size;
    auto m = nn::make_model<T>(name, o);
    ref::det_init(*m);
    return m;
}

/// The float32 logits and loss, then in double the training pass and the named gradients.
void check_vit(const std::string& name, std::int64_t image_size, const std::vector<std::string>& grads, double rtol64,
               double atol64) {
    const auto f = io::SafetensorsFile::load(fixture(name + ".safetensors"));
    const auto target = f.tensor<std::int64_t>("target");
    {
        auto m = det_vit<float>(name, image_size);
        const F x(f.tensor<float>("input"));
        m->eval();
        {
            NoGrad g;
            MEDIMG_CHECK_CLOSE_TENSORS((*m)(x).value(), f.tensor<float>("logits_eval"), kParityRtol, kParityAtol);
        }
        m->train();
        auto logits = (*m)(x);
        MEDIMG_CHECK_CLOSE_TENSORS(logits.value(), f.tensor<float>("logits_train"), kParityRtol, kParityAtol);
        BOOST_TEST(loss::cross_entropy(logits, target).value().item() == f.tensor<float>("loss").item(),
                   boost::test_tools::tolerance(1e-5f));
    }
    if (grads.empty()) return;
    auto m = det_vit<double>(name, image_size);
    m->train();
    auto logits = (*m)(D(f.tensor<double>("input")));
    MEDIMG_CHECK_CLOSE_TENSORS(logits.value(), f.tensor<double>("f64.logits_train"), rtol64, atol64);
    auto loss = loss::cross_entropy(logits, target);
    BOOST_TEST(loss.value().item() == f.tensor<double>("f64.loss").item(), boost::test_tools::tolerance(rtol64));
    loss.backward();
    for (const auto& n : grads)
        BOOST_TEST_CONTEXT("grad of " << n) {
            auto& p = m->parameter(n);
            BOOST_REQUIRE_MESSAGE(p.grad().defined(), "no gradient reached " << n);
            check_stored(f, "f64.grad." + n, p.grad(), rtol64, atol64);
        }
    if (!f.contains("f64.adamw.head.weight")) return;
    optim::AdamWOptions ao;
    ao.lr = 1e-3;
    ao.weight_decay = 0.05;
    optim::AdamW<double> opt(m->named_parameters(), ao);
    opt.set_no_weight_decay(nn::no_weight_decay_names(m->named_parameters()));
    opt.step();
    for (const std::string n : {"cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight",
                                "blocks.0.norm1.weight", "norm.bias", "head.weight", "head.bias"})
        BOOST_TEST_CONTEXT("after AdamW: " << n) { check_stored(f, "f64.adamw." + n, m->parameter(n).value(), rtol64, atol64); }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(vit_models)

BOOST_AUTO_TEST_CASE(the_named_vits_have_their_librarys_names_order_and_counts) {
    const std::map<std::string, std::int64_t> counts{
        {"vit_tiny_patch16_224", 5717416}, {"vit_small_patch16_224", 22050664}, {"vit_b_16", 86567656}};
    for (const auto& [name, count] : counts)
        BOOST_TEST_CONTEXT(name) {
            auto m = nn::make_model<float>(name, nn::ModelOptions{1000, 3});
            BOOST_TEST(m->parameter_count() == count);
            BOOST_TEST(m->num_features() == (name == "vit_b_16" ? 768 : name == "vit_tiny_patch16_224" ? 192 : 384));
        }
    // the order of a timm checkpoint (make_vit_fixtures.py lists it) on a small configuration
    nn::VitOptions o = timm_small();
    nn::VisionTransformer<float> small(o);
    std::vector<std::string> names;
    for (const auto& e : small.state_dict()) names.push_back(e.name);
    BOOST_REQUIRE(names.size() == 32u);
    BOOST_TEST(names[0] == "cls_token");
    BOOST_TEST(names[1] == "pos_embed");
    BOOST_TEST(names[2] == "patch_embed.proj.weight");
    BOOST_TEST(names[6] == "blocks.0.attn.qkv.weight");
    BOOST_TEST(names[12] == "blocks.0.mlp.fc1.weight");
    BOOST_TEST(names[31] == "head.bias");
    auto tv = nn::make_model<float>("vit_b_16", nn::ModelOptions{2, 3});
    const auto sd = tv->state_dict();
    BOOST_TEST(sd[0].name == "class_token");
    BOOST_TEST(sd[1].name == "conv_proj.weight");
    BOOST_TEST(sd[3].name == "encoder.pos_embedding");
    BOOST_TEST(sd[6].name == "encoder.layers.encoder_layer_0.self_attention.in_proj_weight");
    BOOST_TEST(sd[8].name == "encoder.layers.encoder_layer_0.self_attention.out_proj.weight");
    BOOST_TEST(sd[12].name == "encoder.layers.encoder_layer_0.mlp.0.weight");
    BOOST_TEST(sd[14].name == "encoder.layers.encoder_layer_0.mlp.3.weight");
    BOOST_TEST(sd.back().name == "heads.head.bias");
}

BOOST_AUTO_TEST_CASE(the_position_grid_follows_the_image_size_and_other_inputs_resample_it) {
    nn::ModelOptions o{2, 1};
    o.image_size = 64;
    auto m = nn::make_model<float>("vit_tiny_patch16_224", o);
    BOOST_TEST(m->parameter("pos_embed").shape() == (Shape{1, 17, 192}));
    m->eval();
    NoGrad g;
    BOOST_TEST((*m)(F(ref::random<float>({1, 1, 64, 64}, 1))).shape() == (Shape{1, 2}));
    BOOST_TEST((*m)(F(ref::random<float>({2, 1, 48, 80}, 2))).shape() == (Shape{2, 2}));  // grid 3x5
    BOOST_TEST(m->forward_features(F(ref::random<float>({1, 1, 48, 80}, 2))).shape() == (Shape{1, 16, 192}));
    BOOST_CHECK_EXCEPTION((*m)(F(ref::random<float>({1, 1, 8, 64}, 3))), ShapeError,
                          message_contains("is smaller than one 16 x 16 patch"));
    BOOST_CHECK_EXCEPTION(nn::make_model<float>("vit_b_16", [] { nn::ModelOptions x{2, 3}; x.image_size = 8; return x; }()),
                          ValueError, message_contains("vit_b_16 needs image_size >= 16, got 8"));
}

BOOST_AUTO_TEST_CASE(no_weight_decay_follows_timms_rule) {
    auto m = nn::make_model<float>("vit_tiny_patch16_224", nn::ModelOptions{2, 3});
    const auto skip = nn::no_weight_decay_names(m->named_parameters());
    BOOST_TEST(skip.size() == 3u + 12u * 8u + 3u);  // cls, pos, patch bias; per block 4 LN + 4 biases; norm, head bias
    for (const auto& n : skip) BOOST_TEST((n.find("weight") == std::string::npos || n.find("norm") != std::string::npos), n);
    auto tv = nn::make_model<float>("vit_b_16", nn::ModelOptions{2, 3});
    const auto skip_tv = nn::no_weight_decay_names(tv->named_parameters());
    BOOST_TEST(std::count(skip_tv.begin(), skip_tv.end(), "class_token") == 1);
    BOOST_TEST(std::count(skip_tv.begin(), skip_tv.end(), "encoder.pos_embedding") == 1);
    BOOST_TEST(std::count(skip_tv.begin(), skip_tv.end(), "encoder.layers.encoder_layer_3.self_attention.in_proj_bias") == 1);
    optim::AdamW<float> opt(m->named_parameters(), optim::AdamWOptions{});
    BOOST_CHECK_EXCEPTION(opt.set_no_weight_decay({"nope.weight"}), ValueError,
                          message_contains("AdamW.set_no_weight_decay: no parameter named 'nope.weight'"));
}

BOOST_AUTO_TEST_CASE(attention_weights_are_kept_on_request_and_rows_sum_to_one) {
    nn::VisionTransformer<float> m(small_vit());
    m.eval();
    NoGrad g;
    m(F(ref::random<float>({2, 3, 32, 32}, 4)));
    BOOST_TEST(!m.blocks()[0]->attention_module().attention().defined());
    m.keep_attention(true);
    m(F(ref::random<float>({2, 3, 32, 32}, 4)));
    const auto& a = m.blocks()[1]->attention_module().attention();
    BOOST_REQUIRE(a.shape() == (Shape{2, 2, 17, 17}));
    for (std::int64_t r = 0; r < 2 * 2 * 17; ++r) {
        double s = 0;
        for (int j = 0; j < 17; ++j) s += a[r * 17 + j];
        BOOST_TEST(s == 1.0, boost::test_tools::tolerance(1e-5));
    }
    m.keep_attention(false);
    BOOST_TEST(!m.blocks()[1]->attention_module().attention().defined());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(vit_parity)

// timm resamples the position grid in float32 even in a double model (make_vit_fixtures.py), so
// vit_tiny's float64 references are ~1e-9 relative from a double computation and the grid rows of
// the pos_embed gradient ~3e-7: the double bounds are 1e-6 / 1e-8 there, 1e-7 / 1e-10 for
// torchvision's vit_b_16 (no resampling).
BOOST_AUTO_TEST_CASE(vit_tiny_matches_timm_with_a_resampled_grid_in_logits_gradients_and_adamw) {
    check_vit("vit_tiny_patch16_224", 224,
              {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "blocks.0.norm1.weight",
               "blocks.0.norm1.bias", "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias", "blocks.0.attn.proj.weight",
               "blocks.0.mlp.fc1.weight", "blocks.5.mlp.fc2.bias", "blocks.11.norm2.weight", "norm.weight", "norm.bias",
               "head.weight", "head.bias"},
              1e-6, 1e-8);
}

BOOST_AUTO_TEST_CASE(vit_b_16_matches_torchvision_in_logits_and_gradients) {
    const std::string l0 = "encoder.layers.encoder_layer_0.";
    check_vit("vit_b_16", 32,
              {"class_token", "encoder.pos_embedding", "conv_proj.weight", "conv_proj.bias", l0 + "ln_1.weight",
               l0 + "self_attention.in_proj_weight", l0 + "self_attention.in_proj_bias", l0 + "self_attention.out_proj.weight",
               l0 + "mlp.0.weight", "encoder.layers.encoder_layer_11.mlp.3.bias", "encoder.ln.weight", "heads.head.weight",
               "heads.head.bias"},
              1e-7, 1e-10);
}

BOOST_AUTO_TEST_CASE(vit_small_matches_timm_on_a_non_square_input) { check_vit("vit_small_patch16_224", 224, {}, 0, 0); }

BOOST_AUTO_TEST_CASE(a_timm_checkpoint_loads_from_safetensors_and_pth_and_gives_timms_logits) {
    nn::VitOptions o = timm_small();
    const auto ref_file = io::SafetensorsFile::load(fixture("vit_timm_small_logits.safetensors"));
    const F x(ref_file.tensor<float>("input"));
    for (const std::string file : {"vit_timm_small.safetensors", "vit_timm_small.pth"})
        BOOST_TEST_CONTEXT(file) {
            nn::VisionTransformer<float> m(o);
            const auto r = io::load_pretrained(m, fixture(file));
            BOOST_TEST(r.loaded.size() == 32u);
            BOOST_TEST(r.adapted.empty());
            m.eval();
            NoGrad g;
            MEDIMG_CHECK_CLOSE_TENSORS(m(x).value(), ref_file.tensor<float>("logits_eval"), 1e-5, 1e-5);
        }
    // gray input: the patch embedding summed over the input channels, as timm's adapt_input_conv
    o.in_channels = 1;
    nn::VisionTransformer<float> gray(o);
    const auto r = io::load_pretrained(gray, fixture("vit_timm_small.safetensors"));
    BOOST_REQUIRE(r.adapted.size() == 1u);
    BOOST_TEST(r.adapted[0].find("patch_embed.proj.weight") == 0);
    gray.eval();
    NoGrad g;
    auto xg = ref_file.tensor<float>("input").slice0(0, 2);
    auto first = Tensor<float, Cpu>::empty({2, 1, 32, 32});
    for (std::int64_t n = 0; n < 2; ++n)
        for (std::int64_t i = 0; i < 32 * 32; ++i) first[n * 1024 + i] = xg[n * 3 * 1024 + i];
    MEDIMG_CHECK_CLOSE_TENSORS(gray(F(first)).value(), ref_file.tensor<float>("logits_eval_gray"), 1e-5, 1e-5);
}

BOOST_AUTO_TEST_CASE(a_checkpoint_made_for_another_grid_is_resampled_on_load) {
    nn::VitOptions o = timm_small();
    o.image_size = 48;  // grid 6x6 instead of the checkpoint's 4x4
    nn::VisionTransformer<float> m(o);
    const auto r = io::load_pretrained(m, fixture("vit_timm_small.safetensors"));
    BOOST_REQUIRE(r.adapted.size() == 1u);
    BOOST_TEST(r.adapted[0] == "pos_embed [1,17,48] -> [1,37,48] (grid 4x4 resampled to 6x6, bicubic)");
    // the same as feeding 48x48 inputs to the 32 model, which resamples on the fly
    o.image_size = 32;
    nn::VisionTransformer<float> native(o);
    (void)io::load_pretrained(native, fixture("vit_timm_small.safetensors"));
    m.eval();
    native.eval();
    NoGrad g;
    const F x(ref::random<float>({1, 3, 48, 48}, 9));
    MEDIMG_CHECK_CLOSE_TENSORS(m(x).value(), native(x).value(), 1e-5, 1e-6);
}

BOOST_AUTO_TEST_SUITE_END()


BOOST_AUTO_TEST_SUITE(vit_explain)

BOOST_AUTO_TEST_CASE(rollout_of_uniform_attention_is_the_closed_form_and_gives_a_flat_map) {
    // q = k = 0 (the qkv weights' and biases' first two thirds zeroed): every block attends
    // uniformly, A = J / L, A' = (J / L + I) / 2, and after `depth` blocks the class token's row
    // holds (1 - 2^-depth) / L on every patch.
    nn::VisionTransformer<double> m(small_vit(32, 3));
    for (auto& [n, p] : m.named_parameters())
        if (n.find("attn.qkv") != std::string::npos) {
            auto& t = p.value();
            const std::int64_t rows = t.size(0), per = t.numel() / rows;
            for (std::int64_t i = 0; i < 2 * rows / 3 * per; ++i) t[i] = 0;
        }
    const auto x = ref::random<double>({2, 3, 32, 32}, 6);
    const auto e = explain::attention_rollout(m, x);
    BOOST_TEST(e.method == "rollout");
    BOOST_REQUIRE(e.raw.shape() == (Shape{2, 4, 4}));
    for (std::int64_t i = 0; i < e.raw.numel(); ++i) BOOST_TEST(e.raw[i] == (1.0 - 0.125) / 17.0, boost::test_tools::tolerance(1e-6));
    BOOST_TEST(e.heatmap.shape() == (Shape{2, 32, 32}));
    for (std::int64_t i = 0; i < e.heatmap.numel(); ++i) BOOST_TEST(e.heatmap[i] == 0.0f);  // nothing stands out
    BOOST_TEST(!m.blocks()[0]->attention_module().attention().defined());  // not kept afterwards
}

BOOST_AUTO_TEST_CASE(one_blocks_rollout_is_half_the_class_tokens_mean_attention_on_a_non_square_grid) {
    // A' = (A + I) / 2 with rows of A summing to 1 needs no renormalisation: for one block the map
    // is 0.5 * the head-mean attention of the class token to each patch.
    nn::VisionTransformer<float> m(small_vit(32, 1));
    m.eval();
    const auto x = ref::random<float>({1, 3, 48, 32}, 7);  // grid 6x4: rollout's map takes the input's shape
    const auto e = explain::attention_rollout(m, x);
    BOOST_REQUIRE(e.raw.shape() == (Shape{1, 6, 4}));
    BOOST_TEST(e.heatmap.shape() == (Shape{1, 48, 32}));
    // one block: raw = 0.5 * (class token's head-mean attention to each patch) / row sum (= 1)
    m.keep_attention(true);
    NoGrad g;
    m(F(x));
    const auto& a = m.blocks()[0]->attention_module().attention();
    for (std::int64_t j = 0; j < 24; ++j)
        BOOST_TEST(e.raw[j] == 0.5f * 0.5f * (a[1 + j] + a[25 * 25 + 1 + j]), boost::test_tools::tolerance(1e-5f));
    BOOST_CHECK_EXCEPTION(explain::attention_rollout(m, x, [] { explain::RolloutOptions o; o.discard_ratio = 1.0; return o; }()),
                          ValueError, message_contains("discard_ratio must be in [0, 1), got 1"));
}

BOOST_AUTO_TEST_CASE(grad_cam_reads_a_vit_blocks_tokens_as_the_patch_grid) {
    nn::VisionTransformer<float> m(small_vit(32, 2));
    const auto x = ref::random<float>({2, 3, 32, 48}, 8);  // grid 4x6
    explain::CamOptions o;
    o.layer = m.default_cam_layer(32);
    BOOST_TEST(o.layer == "blocks.1.norm1");
    const auto e = explain::grad_cam(m, x, o);
    BOOST_REQUIRE(e.raw.shape() == (Shape{2, 4, 6}));
    BOOST_TEST(e.heatmap.shape() == (Shape{2, 32, 48}));
    for (std::int64_t i = 0; i < e.raw.numel(); ++i) BOOST_TEST((std::isfinite(e.raw[i]) && e.raw[i] >= 0.0f));
    auto tv = nn::make_model<float>("vit_b_16", nn::ModelOptions{2, 3});
    BOOST_TEST(tv->default_cam_layer(224) == "encoder.layers.encoder_layer_11.ln_1");
}

BOOST_AUTO_TEST_SUITE_END()
