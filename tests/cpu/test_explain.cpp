// SPDX-License-Identifier: MIT
// Tests for explain/ and the hooks it stands on (nn::Module forward hooks and name lookup,
// autograd::Var gradient hooks): Grad-CAM and Grad-CAM++ against pytorch-grad-cam 1.5.7 on a
// torchvision ResNet18 (fixtures by tests/data/make_explain_fixtures.py, weights from the shared
// closed form ref::det_init), occlusion against a direct one-patch-at-a-time loop, and bad input.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "helpers.hpp"
#include "reference.hpp"
#include "medimg/io/safetensors.hpp"
#include "medimg/medimg.hpp"

using namespace medimg;
using medimg::test::message_contains;
using V = autograd::Var<float, Cpu>;

namespace {

// The maps are float32 networks on both sides (the same sums in another order through ~20 layers,
// ~1e-6 relative in activations and gradients), then scaled to [0, 1] by their own range, which
// can magnify an absolute error by 1/range of the raw map; measured largest difference: see the
// BOOST_TEST_MESSAGE in the fixture case (4e-6 here). 1e-4 absolute on values in [0, 1] leaves a
// wide margin while a wrong formula (Grad-CAM++'s alpha, a missing ReLU, the other class's
// gradient, align_corners=True upsampling) moves pixels by 1e-2 or more. (A constant factor on all
// weights would not show: the maps are scaled by their own range, as pytorch-grad-cam's are.)
constexpr double kCamAtol = 1e-4;

std::string fixture(const std::string& name) { return std::string(MEDIMG_TEST_DATA_DIR) + "/explain/" + name; }

/// The fixture's model: torchvision's ResNet18 with a 1-channel conv1 and 2 classes.
std::shared_ptr<nn::ResNet18<float>> fixture_model() {
    auto m = std::make_shared<nn::ResNet18<float>>(nn::ResNetOptions{2, 1});
    test::ref::det_init(*m);
    m->eval();
    return m;
}

/// Image n of a (N, H, W) map as a (H, W) tensor.
Tensor<float> row(const Tensor<float>& maps, std::int64_t n) {
    return maps.slice0(n, 1).reshape({maps.size(1), maps.size(2)});
}

}  // namespace

BOOST_AUTO_TEST_SUITE(explain_hooks)

// ---- the hooks ---------------------------------------------------------------------------
BOOST_AUTO_TEST_CASE(named_modules_follow_torchvision_names_in_registration_order) {
    nn::ResNet18<float> m(nn::ResNetOptions{2, 1});
    std::vector<std::string> names;
    for (auto& [n, mod] : m.named_modules()) names.push_back(n);
    BOOST_TEST(names.front() == "");
    BOOST_TEST(names[1] == "conv1");
    BOOST_TEST(names[2] == "bn1");
    BOOST_TEST(names[3] == "layer1");
    BOOST_TEST(names[4] == "layer1.0");
    BOOST_TEST(names[5] == "layer1.0.conv1");
    BOOST_TEST(names.back() == "fc");
    for (const char* n : {"layer4.1.conv2", "layer3.0.downsample", "layer3.0.downsample.0", "layer2.1.bn2"})
        BOOST_TEST((std::find(names.begin(), names.end(), n) != names.end()), n);
    BOOST_TEST(&m.get_submodule("") == &m);
    BOOST_TEST(&m.get_submodule("fc") == static_cast<nn::Module<float>*>(&m.fc()));
    BOOST_CHECK_EXCEPTION(m.get_submodule("layer5"), ValueError, message_contains("valid names: conv1, bn1, layer1, layer1.0"));
}

BOOST_AUTO_TEST_CASE(forward_hooks_see_and_may_replace_a_submodules_output_until_removed) {
    auto m = fixture_model();
    const auto x = test::ref::random<float>({1, 1, 32, 32}, 5);
    const auto plain = (*m)(V(x)).value().clone();
    Shape seen;
    int calls = 0;
    {
        auto handle = m->get_submodule("layer4").register_forward_hook([&](nn::Module<float>&, const V&, const V& y) {
            seen = y.shape();
            ++calls;
            return V();  // keep the output
        });
        BOOST_TEST(m->get_submodule("layer4").forward_hook_count() == 1u);
        MEDIMG_CHECK_CLOSE_TENSORS((*m)(V(x)).value(), plain, 0.0, 0.0);
        BOOST_TEST(calls == 1);
        BOOST_TEST(seen == (Shape{1, 512, 1, 1}));
        // A replacing hook: zero features give logits = the fc bias.
        auto zero = m->get_submodule("layer4").register_forward_hook(
            [](nn::Module<float>&, const V&, const V& y) { return V(Tensor<float>::zeros(y.shape())); });
        const auto z = (*m)(V(x)).value();
        MEDIMG_CHECK_CLOSE_TENSORS(z.reshape({2}), m->fc().bias().value(), 1e-6, 1e-6);
        BOOST_TEST(calls == 2);
        zero.remove();
        MEDIMG_CHECK_CLOSE_TENSORS((*m)(V(x)).value(), plain, 0.0, 0.0);
    }  // the handle's destruction removes the first hook
    BOOST_TEST(m->get_submodule("layer4").forward_hook_count() == 0u);
    (*m)(V(x));
    BOOST_TEST(calls == 3);
}

BOOST_AUTO_TEST_CASE(gradient_hooks_see_the_complete_gradient_of_a_value) {
    // y = x*x used twice: dL/dy must arrive summed before the hook runs.
    auto x = V::parameter(Tensor<float>::from_vector({3}, {1.f, -2.f, 3.f}));
    auto y = autograd::mul(x, x);
    std::vector<float> got;
    int calls = 0;
    y.register_hook([&](const Tensor<float>& g) {
        got = g.to_vector();
        ++calls;
    });
    auto loss = autograd::sum(autograd::add(autograd::scale(y, 2.f), y));  // dL/dy = 3
    loss.backward();
    BOOST_TEST(calls == 1);
    BOOST_TEST(got == (std::vector<float>{3.f, 3.f, 3.f}), boost::test_tools::per_element());
    BOOST_TEST(x.grad().to_vector() == (std::vector<float>{6.f, -12.f, 18.f}), boost::test_tools::per_element());
    auto frozen = V(Tensor<float>::ones({2}));
    BOOST_CHECK_EXCEPTION(frozen.register_hook([](const Tensor<float>&) {}), ValueError,
                          message_contains("does not require grad"));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(explain_maps)

// ---- Grad-CAM and Grad-CAM++ against pytorch-grad-cam -------------------------------------
BOOST_AUTO_TEST_CASE(grad_cam_and_grad_cam_pp_match_pytorch_grad_cam_for_both_layers_and_classes) {
    const auto f = io::SafetensorsFile::load(fixture("resnet18_cam.safetensors"));
    auto m = fixture_model();
    const auto x = f.tensor<float>("input");  // (2, 1, 64, 64)
    MEDIMG_CHECK_CLOSE_TENSORS((*m)(V(x)).value(), f.tensor<float>("logits"), 1e-4, 1e-5);
    double worst = 0;
    for (const auto method : {explain::CamMethod::grad_cam, explain::CamMethod::grad_cam_pp})
        for (const std::string layer : {"layer4", "layer3"})
            for (const std::string targets : {"t01", "t10"}) {
                const std::string key = std::string(method == explain::CamMethod::grad_cam ? "gradcam" : "gradcampp") + "." +
                                        layer + "." + targets;
                BOOST_TEST_CONTEXT(key) {
                    explain::CamOptions o;
                    o.method = method;
                    o.layer = layer;
                    o.classes = targets == "t01" ? std::vector<std::int64_t>{0, 1} : std::vector<std::int64_t>{1, 0};
                    const auto e = explain::grad_cam(*m, x, o);
                    const auto want = f.tensor<float>(key);
                    BOOST_TEST(e.heatmap.shape() == want.shape());
                    MEDIMG_CHECK_CLOSE_TENSORS(e.heatmap, want, 0.0, kCamAtol);
                    worst = std::max(worst, test::compare(e.heatmap, want, 0.0, 1.0).max_diff);
                    BOOST_TEST(e.layer == layer);
                    BOOST_TEST(e.classes == o.classes);
                    const std::int64_t side = layer == "layer4" ? 2 : 4;  // 64 px / 32 and / 16
                    BOOST_TEST(e.raw.shape() == (Shape{2, side, side}));
                    for (float v : e.raw.to_vector()) BOOST_TEST(v >= 0.f);
                }
            }
    BOOST_TEST_MESSAGE("largest |medimg - pytorch-grad-cam| over 8 fixture maps: " << worst);
}

BOOST_AUTO_TEST_CASE(the_default_target_is_the_predicted_class_and_the_default_layer_the_last_map) {
    const auto f = io::SafetensorsFile::load(fixture("resnet18_cam.safetensors"));
    auto m = fixture_model();
    const auto x = f.tensor<float>("input");
    const auto logits = f.tensor<float>("logits");
    const auto e = explain::grad_cam(*m, x);  // no layer, no classes
    BOOST_TEST(e.layer == "layer4");
    const auto t01 = f.tensor<float>("gradcam.layer4.t01"), t10 = f.tensor<float>("gradcam.layer4.t10");
    for (std::int64_t n = 0; n < 2; ++n) {
        const std::int64_t pred = logits[n * 2 + 1] > logits[n * 2] ? 1 : 0;
        BOOST_TEST(e.classes[static_cast<std::size_t>(n)] == pred);
        const bool in_t01 = pred == n;  // t01 explains class n for image n
        MEDIMG_CHECK_CLOSE_TENSORS(row(e.heatmap, n), row(in_t01 ? t01 : t10, n), 0.0, kCamAtol);
    }
}

BOOST_AUTO_TEST_CASE(explaining_changes_nothing_in_the_model_and_computes_no_weight_gradient) {
    auto m = fixture_model();
    const auto x = test::ref::random<float>({1, 1, 64, 64}, 9);
    explain::CamOptions o;
    o.layer = "layer3";
    const auto in_eval = explain::grad_cam(*m, x, o);
    m->train();  // the wrong mode: BN would use batch statistics and update its running ones
    const auto running = m->get_submodule("layer3.0.bn1").state_dict()[2].value.clone();  // running_mean
    const auto in_train = explain::grad_cam(*m, x, o);
    BOOST_TEST(m->is_training());
    MEDIMG_CHECK_CLOSE_TENSORS(in_train.heatmap, in_eval.heatmap, 0.0, 0.0);
    MEDIMG_CHECK_CLOSE_TENSORS(m->get_submodule("layer3.0.bn1").state_dict()[2].value, running, 0.0, 0.0);
    for (auto& [name, p] : m->named_parameters()) {
        BOOST_TEST(p.requires_grad(), name);
        BOOST_TEST(!p.grad().defined(), name);
    }
    BOOST_TEST(m->get_submodule("layer3").forward_hook_count() == 0u);
}

// ---- occlusion ------------------------------------------------------------------------------
BOOST_AUTO_TEST_CASE(occlusion_matches_a_direct_loop_over_patches) {
    auto m = fixture_model();
    const auto x = test::ref::random<float>({2, 1, 30, 30}, 13);
    explain::OcclusionOptions o;
    o.patch = 8;
    o.stride = 6;       // 0, 6, 12, 18 and one flush with the border at 22
    o.batch_size = 7;   // batches that do not divide the 25 positions
    o.baseline = -0.5;
    o.classes = {1, 0};
    const auto e = explain::occlusion(*m, x, o);
    const std::vector<std::int64_t> starts{0, 6, 12, 18, 22};
    BOOST_TEST(explain::occlusion_starts(30, 8, 6) == starts, boost::test_tools::per_element());
    BOOST_TEST(e.raw.shape() == (Shape{2, 5, 5}));
    BOOST_TEST(e.heatmap.shape() == (Shape{2, 30, 30}));
    for (std::int64_t n = 0; n < 2; ++n) {
        const std::int64_t c = o.classes[static_cast<std::size_t>(n)];
        auto img = x.slice0(n, 1).clone();  // (1, 1, 30, 30)
        const auto p = [&](const Tensor<float>& in) {
            // as occlusion runs the model: under NoGrad, so through the same (folded) inference
            // path; the drops are differences of close probabilities, which float rounding of
            // another path would move by more than the tolerance
            autograd::NoGrad no_grad;
            const auto l = (*m)(V(in)).value();
            return std::exp(static_cast<double>(l[c])) / (std::exp(static_cast<double>(l[0])) + std::exp(static_cast<double>(l[1])));
        };
        const double base = p(img);
        std::vector<double> sum(900, 0.0), cnt(900, 0.0);
        for (std::size_t r = 0; r < starts.size(); ++r)
            for (std::size_t q = 0; q < starts.size(); ++q) {
                auto occ = img.clone();
                for (std::int64_t y = starts[r]; y < starts[r] + 8; ++y)
                    for (std::int64_t xx = starts[q]; xx < starts[q] + 8; ++xx) occ[y * 30 + xx] = -0.5f;
                const double drop = base - p(occ);
                BOOST_TEST(e.raw[n * 25 + static_cast<std::int64_t>(r * 5 + q)] == drop, boost::test_tools::tolerance(1e-5));
                for (std::int64_t y = starts[r]; y < starts[r] + 8; ++y)
                    for (std::int64_t xx = starts[q]; xx < starts[q] + 8; ++xx) {
                        sum[static_cast<std::size_t>(y * 30 + xx)] += drop;
                        cnt[static_cast<std::size_t>(y * 30 + xx)] += 1;
                    }
            }
        auto want = Tensor<float>::empty({30, 30});
        for (std::int64_t i = 0; i < 900; ++i) want[i] = static_cast<float>(std::max(sum[static_cast<std::size_t>(i)] / cnt[static_cast<std::size_t>(i)], 0.0));
        explain::detail::min_max_scale(want.data(), 900);
        MEDIMG_CHECK_CLOSE_TENSORS(row(e.heatmap, n), want, 0.0, 1e-4);
    }
}

// ---- back onto the exam -------------------------------------------------------------------
BOOST_AUTO_TEST_CASE(heat_maps_go_back_onto_the_source_pixels_through_resize_and_centre_crop) {
    // Same size and no crop: the identity, exactly.
    const auto heat = test::ref::random<float>({8, 8}, 3, 0.0, 1.0);
    MEDIMG_CHECK_CLOSE_TENSORS(explain::heatmap_on_source(heat, 8, 8, 8), heat, 0.0, 0.0);
    // A 10x20 exam, Resize(8) -> 8x16, CenterCrop(8) keeps resized columns [4, 12), i.e. source
    // columns 5..14 (pixel centres inside the crop); the others never reached the network.
    const auto on = explain::heatmap_on_source(Tensor<float>::ones({8, 8}), 10, 20, 8);
    BOOST_TEST(on.shape() == (Shape{10, 20}));
    for (std::int64_t y = 0; y < 10; ++y)
        for (std::int64_t x = 0; x < 20; ++x) BOOST_TEST(on[y * 20 + x] == (x >= 5 && x <= 14 ? 1.f : 0.f), y << "," << x);
    // Enlarging reads bilinearly: a left-to-right ramp stays a ramp, within its range.
    auto ramp = Tensor<float>::empty({4, 4});
    for (std::int64_t i = 0; i < 16; ++i) ramp[i] = static_cast<float>(i % 4) / 3.f;
    const auto big = explain::heatmap_on_source(ramp, 16, 16, 4);
    for (std::int64_t x = 1; x < 16; ++x) BOOST_TEST(big[5 * 16 + x] >= big[5 * 16 + x - 1]);
    BOOST_TEST(big[5 * 16 + 0] == 0.f);
    BOOST_TEST(big[5 * 16 + 15] == 1.f);
    BOOST_CHECK_EXCEPTION(explain::heatmap_on_source(Tensor<float>::ones({1, 8, 8}), 8, 8, 8), ShapeError,
                          message_contains("explain::heatmap_on_source: need a non-empty (H, W) map"));
}

// ---- bad input ------------------------------------------------------------------------------
BOOST_AUTO_TEST_CASE(an_unknown_layer_is_refused_with_every_valid_name) {
    auto m = fixture_model();
    const auto x = test::ref::random<float>({1, 1, 32, 32}, 1);
    explain::CamOptions o;
    o.layer = "layer5";
    BOOST_CHECK_EXCEPTION(explain::grad_cam(*m, x, o), ValueError, [](const ValueError& e) {
        const std::string s = e.what();
        return s.find("explain::grad_cam: unknown layer 'layer5'; valid names: conv1, bn1, layer1,") == 0 &&
               s.find("layer4.1.conv2") != std::string::npos && s.find('\n') == std::string::npos;
    });
    BOOST_TEST(m->get_submodule("layer4").forward_hook_count() == 0u);
}

BOOST_AUTO_TEST_CASE(a_layer_without_spatial_output_and_a_bad_class_are_refused) {
    auto m = fixture_model();
    const auto x = test::ref::random<float>({1, 1, 32, 32}, 2);
    explain::CamOptions o;
    o.layer = "fc";
    BOOST_CHECK_EXCEPTION(explain::grad_cam(*m, x, o), ValueError,
                          message_contains("layer 'fc' gives a [1,2] output with no spatial dimensions"));
    BOOST_TEST(m->get_submodule("fc").forward_hook_count() == 0u);
    BOOST_TEST(!m->is_training());
    o.layer = "layer4";
    o.classes = {2};
    BOOST_CHECK_EXCEPTION(explain::grad_cam(*m, x, o), ValueError, message_contains("target class 2 is out of range"));
    o.classes = {0, 1, 0};
    BOOST_CHECK_EXCEPTION(explain::grad_cam_pp(*m, x, o), ValueError, message_contains("explain::grad_cam_pp: give no target"));
    explain::OcclusionOptions oo;
    oo.stride = 0;
    BOOST_CHECK_EXCEPTION(explain::occlusion(*m, x, oo), ValueError, message_contains("explain::occlusion: patch, stride"));
    BOOST_CHECK_EXCEPTION(explain::grad_cam(*m, Tensor<float>::zeros({1, 32, 32}), o), ShapeError,
                          message_contains("explain::grad_cam: input must be a non-empty (N, C, H, W) batch"));
}

BOOST_AUTO_TEST_CASE(a_one_pixel_image_gives_an_all_zero_map) {
    // Every stage of a ResNet keeps a 1x1 input at 1x1, so the map has one value: min-max scaling
    // makes it 0 (a single number says nothing about where the model looked).
    auto m = fixture_model();
    const auto x = Tensor<float>::full({1, 1, 1, 1}, 0.7f);
    const auto e = explain::grad_cam(*m, x);
    BOOST_TEST(e.heatmap.shape() == (Shape{1, 1, 1}));
    BOOST_TEST(e.raw.shape() == (Shape{1, 1, 1}));
    BOOST_TEST(e.heatmap[0] == 0.f);
    explain::OcclusionOptions oo;
    oo.patch = 4;
    const auto occ = explain::occlusion(*m, x, oo);
    BOOST_TEST(occ.raw.shape() == (Shape{1, 1, 1}));
    BOOST_TEST(occ.heatmap[0] == 0.f);
}

BOOST_AUTO_TEST_SUITE_END()
