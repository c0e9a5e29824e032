// SPDX-License-Identifier: MIT
// Tests for nn/: Module bookkeeping (names, state_dict, strict loading), torchvision's
// parameter names, initialisation, and numeric parity with PyTorch/torchvision for ResNet18
// (eval + train logits, loss, gradients, BN running statistics) and ResNet34/50 (eval), from
// fixtures written by tests/data/make_resnet_fixtures.py. Weights are set on both sides from the
// same closed form (ref::det_init in reference.hpp mirrors det_value there: a splitmix64 hash of the entry index
// and the element index, so both languages get bit-identical weights).
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "helpers.hpp"
#include "reference.hpp"
#include "medimg/io/safetensors.hpp"
#include "medimg/medimg.hpp"
#include "medimg/nn/nn.hpp"
#include "medimg/optim/optim.hpp"

using namespace medimg;
using medimg::test::message_contains;
using V = autograd::Var<float, Cpu>;
namespace ref = medimg::test::ref;

namespace {
// float32 network vs PyTorch's float32 network: the same sums in another order through ~20
// layers; measured max differences are ~1e-6 relative, so 1e-4 / 1e-5 leaves a wide margin
// while a wrong formula (biased running variance, a missing bias correction) moves values by
// 1e-2 or more.
constexpr double kParityRtol = 1e-4;
constexpr double kParityAtol = 1e-5;
// Gradients pass back through the whole network and BN's batch statistics at batch 2; measured
// they stay within the same bounds as the logits.
constexpr double kGradRtol = kParityRtol;
constexpr double kGradAtol = kParityAtol;

std::string fixture(const std::string& name) { return std::string(MEDIMG_TEST_DATA_DIR) + "/resnet/" + name; }

Tensor<float> find_param(nn::Module<float, Cpu>& m, const std::string& name) {
    for (auto& [n, p] : m.named_parameters())
        if (n == name) return p.grad().defined() ? p.grad() : Tensor<float>();
    BOOST_FAIL("no parameter " << name);
    return {};
}
Tensor<float> find_state(nn::Module<float, Cpu>& m, const std::string& name) {
    for (auto& e : m.state_dict())
        if (e.name == name) return e.value;
    BOOST_FAIL("no state entry " << name);
    return {};
}
}  // namespace

BOOST_AUTO_TEST_SUITE(resnet)

BOOST_AUTO_TEST_CASE(resnet18_has_torchvision_names_shapes_and_count) {
    nn::ResNet18<float> m(nn::ResNetOptions{2, 3});
    auto sd = m.state_dict();
    BOOST_TEST(sd.size() == 122u);  // len(torchvision.models.resnet18().state_dict())
    BOOST_TEST(sd.front().name == "conv1.weight");
    BOOST_TEST(sd.back().name == "fc.bias");
    BOOST_TEST(m.parameter_count() == 11177538);  // torchvision resnet18(num_classes=2)
    bool found = false;
    for (auto& e : sd)
        if (e.name == "layer2.0.downsample.0.weight") {
            found = true;
            BOOST_TEST(e.value.shape() == (Shape{128, 64, 1, 1}));
        }
    BOOST_TEST(found);
    BOOST_TEST(sd[5].name == "bn1.num_batches_tracked");
    BOOST_TEST(sd[5].integer);
    nn::ResNet50<float> r50(nn::ResNetOptions{1000, 3});
    BOOST_TEST(r50.parameter_count() == 25557032);  // torchvision resnet50()
    nn::ResNet34<float> r34(nn::ResNetOptions{1000, 1});
    BOOST_TEST(r34.conv1().weight().shape() == (Shape{64, 1, 7, 7}));
}

BOOST_AUTO_TEST_CASE(initialisation_follows_torchvision_and_the_seed) {
    nn::ResNet18<float> a(nn::ResNetOptions{2, 1, 7}), b(nn::ResNetOptions{2, 1, 7}), c(nn::ResNetOptions{2, 1, 8});
    auto wa = a.conv1().weight().value(), wb = b.conv1().weight().value(), wc = c.conv1().weight().value();
    BOOST_TEST(wa[10] == wb[10]);
    BOOST_TEST(wa[10] != wc[10]);
    // kaiming_normal fan_out: std = sqrt(2 / (64 * 7 * 7)) for conv1.
    double s2 = 0;
    for (std::int64_t i = 0; i < wa.numel(); ++i) s2 += double(wa[i]) * wa[i];
    BOOST_TEST(std::sqrt(s2 / wa.numel()) == std::sqrt(2.0 / (64 * 49)), boost::test_tools::tolerance(0.1));
    auto fw = a.fc().weight().value();
    for (std::int64_t i = 0; i < fw.numel(); ++i) BOOST_REQUIRE(std::abs(fw[i]) <= 1.0f / std::sqrt(512.0f));
    auto sd = a.state_dict();
    BOOST_TEST(sd[1].name == "bn1.weight");
    BOOST_TEST(sd[1].value[0] == 1.0f);
}

BOOST_AUTO_TEST_CASE(load_state_dict_names_missing_unexpected_and_misshaped_keys) {
    nn::ResNet18<float> m(nn::ResNetOptions{2, 3});
    std::map<std::string, Tensor<float>> state;
    for (auto& e : m.state_dict()) state[e.name] = e.value.clone();
    state["fc.weight"].fill_(0.5f);
    m.load_state_dict(state);
    BOOST_TEST(m.fc().weight().value()[3] == 0.5f);
    auto wrong = state;
    wrong["fc.weight"] = Tensor<float>::zeros({3, 512});
    BOOST_CHECK_EXCEPTION(m.load_state_dict(wrong), ShapeError,
                          message_contains("load_state_dict: 'fc.weight' has shape [3,512] in the given state but [2,512] in the model"));
    auto partial = state;
    partial.erase("layer1.0.conv1.weight");
    partial["extra.weight"] = Tensor<float>::zeros({1});
    BOOST_CHECK_EXCEPTION(m.load_state_dict(partial), ValueError,
                          message_contains("1 missing key ('layer1.0.conv1.weight'); 1 unexpected key ('extra.weight')"));
    m.load_state_dict(partial, false);  // non-strict: loads what matches
}

BOOST_AUTO_TEST_CASE(resnet18_matches_pytorch_in_eval_and_train) {
    const auto f = io::SafetensorsFile::load(fixture("resnet18.safetensors"));
    nn::ResNet18<float> m(nn::ResNetOptions{2, 3});
    ref::det_init(m);
    const V x(f.tensor<float>("input"));
    m.eval();
    {
        autograd::NoGrad g;
        MEDIMG_CHECK_CLOSE_TENSORS(m(x).value(), f.tensor<float>("logits_eval"), kParityRtol, kParityAtol);
    }
    m.train();
    auto logits = m(x);
    MEDIMG_CHECK_CLOSE_TENSORS(logits.value(), f.tensor<float>("logits_train"), kParityRtol, kParityAtol);
    auto loss = loss::cross_entropy(logits, f.tensor<std::int64_t>("target"));
    BOOST_TEST(loss.value().item() == f.tensor<float>("loss").item(), boost::test_tools::tolerance(1e-5f));
    for (const char* name : {"bn1.running_mean", "bn1.running_var", "layer4.1.bn2.running_mean", "layer4.1.bn2.running_var"}) {
        BOOST_TEST_CONTEXT(name) {
            MEDIMG_CHECK_CLOSE_TENSORS(find_state(m, name), f.tensor<float>(std::string("after_train_forward.") + name),
                                       kParityRtol, kParityAtol);
        }
    }
    BOOST_TEST(find_state(m, "bn1.num_batches_tracked").item() == 1.0f);
}

// The gradient checks below route through every ReLU mask of a training-mode forward pass on two
// 64x64 images, whose batch-normalised activations sit densely around the ReLU's kink. With every
// 3x3 forward convolution forced through F(4x4, 3x3) (ctest's cpu.resnet.winograd4; ~5e-6 relative
// error per convolution) the stem's weight gradient moves by up to 3e-3 (median 4e-4) from
// PyTorch's: forward F(4x4) with backward F(2x2) gives the same, forward F(2x2) with backward
// F(4x4) stays within 7e-6, so the difference comes from activations that change side of zero,
// not from the backward transforms. That run leaves these out (label "relu_masks"); the
// automatic choice never takes F(4x4) at these sizes, and cpu.resnet.winograd checks them with
// F(2x2) forced (benchmarks/RESULTS.md, "Winograd F(4x4, 3x3)").
BOOST_AUTO_TEST_CASE(resnet18_gradients_match_pytorch, *boost::unit_test::label("relu_masks")) {
    const auto f = io::SafetensorsFile::load(fixture("resnet18.safetensors"));
    nn::ResNet18<float> m(nn::ResNetOptions{2, 3});
    ref::det_init(m);
    m.train();
    loss::cross_entropy(m(V(f.tensor<float>("input"))), f.tensor<std::int64_t>("target")).backward();
    for (const char* name : {"conv1.weight", "layer3.0.downsample.0.weight", "layer4.1.bn2.weight", "fc.weight", "fc.bias"}) {
        BOOST_TEST_CONTEXT("grad of " << name) {
            MEDIMG_CHECK_CLOSE_TENSORS(find_param(m, name), f.tensor<float>(std::string("grad.") + name), kGradRtol, kGradAtol);
        }
    }
}

BOOST_AUTO_TEST_CASE(one_sgd_adam_and_adamw_step_on_resnet18_match_pytorch, *boost::unit_test::label("relu_masks")) {
    const auto f = io::SafetensorsFile::load(fixture("resnet18.safetensors"));
    for (const std::string opt : {"sgd", "adam", "adamw"}) {
        BOOST_TEST_CONTEXT(opt) {
            nn::ResNet18<float> m(nn::ResNetOptions{2, 3});
            ref::det_init(m);
            m.train();
            loss::cross_entropy(m(V(f.tensor<float>("input"))), f.tensor<std::int64_t>("target")).backward();
            std::unique_ptr<optim::OptimizerBase> o;
            if (opt == "sgd") {
                optim::SGDOptions so(0.1);
                so.momentum = 0.9;
                so.weight_decay = 1e-4;
                o = std::make_unique<optim::SGD<float>>(m.named_parameters(), so);
            } else if (opt == "adam") {
                o = std::make_unique<optim::Adam<float>>(m.named_parameters(), optim::AdamOptions{});
            } else {
                o = std::make_unique<optim::AdamW<float>>(m.named_parameters(), optim::AdamWOptions{});
            }
            o->step();
            for (const char* name : {"conv1.weight", "layer4.1.bn2.weight", "fc.weight", "fc.bias"})
                BOOST_TEST_CONTEXT(name) {
                    MEDIMG_CHECK_CLOSE_TENSORS(find_state(m, name), f.tensor<float>(opt + "." + name), kParityRtol, kParityAtol);
                }
        }
    }
}

BOOST_AUTO_TEST_CASE(resnet18_learns_a_tiny_two_class_set) {
    // 64 gray 32x32 images: class 1 has a bright 6x6 square at a random place, class 0 does not.
    const auto set = medimg::test::two_class_squares();
    const auto& x = set.x;
    const auto& y = set.y;
    nn::ResNet18<float> m(nn::ResNetOptions{2, 1, 3});
    optim::Adam<float> opt(m.named_parameters(), optim::AdamOptions{1e-3});
    double first = 0, last = 0;
    const int steps = 12;  // full-batch steps
    for (int s = 0; s < steps; ++s) {
        auto loss = loss::cross_entropy(m(V(x)), y);
        const double l = loss.value().item();
        if (s == 0) first = l;
        last = l;
        loss.backward();
        opt.step();
        opt.zero_grad();
    }
    BOOST_TEST_MESSAGE("loss " << first << " -> " << last << " in " << steps << " steps");
    BOOST_TEST(last < 0.1 * first);  // stated bound: below 10% of the starting loss within 12 steps
}

BOOST_AUTO_TEST_CASE(resnet34_and_resnet50_match_pytorch_in_eval) {
    for (const char* name : {"resnet34_eval.safetensors", "resnet50_eval.safetensors"}) {
        BOOST_TEST_CONTEXT(name) {
            const auto f = io::SafetensorsFile::load(fixture(name));
            std::unique_ptr<nn::Module<float, Cpu>> m;
            if (std::string(name).find("34") != std::string::npos)
                m = std::make_unique<nn::ResNet34<float>>(nn::ResNetOptions{3, 3});
            else
                m = std::make_unique<nn::ResNet50<float>>(nn::ResNetOptions{3, 3});
            ref::det_init(*m);
            m->eval();
            autograd::NoGrad g;
            MEDIMG_CHECK_CLOSE_TENSORS(m->forward(V(f.tensor<float>("input"))).value(), f.tensor<float>("logits_eval"),
                                       kParityRtol, kParityAtol);
        }
    }
}

BOOST_AUTO_TEST_CASE(parameters_buffers_and_modules_are_found_by_their_dotted_names) {
    nn::ResNet18<float> m(nn::ResNetOptions{2, 1});
    BOOST_TEST(m.parameter("layer4.1.conv2.weight").shape() == (Shape{512, 512, 3, 3}));
    BOOST_TEST(m.get_parameter("fc.bias").shape() == (Shape{2}));
    BOOST_TEST(m.get_buffer("layer4.1.bn2.running_var").shape() == (Shape{512}));
    BOOST_TEST(&m.module("layer4") == &m.get_submodule("layer4"));
    // the same storage the model computes with: a change through the name is seen by the model
    m.parameter("fc.bias").value()[1] = 7.0f;
    BOOST_TEST(m.fc().bias().value()[1] == 7.0f);
    BOOST_CHECK_EXCEPTION(m.parameter("layer4.1.conv2.bias"), ValueError,
                          message_contains("no parameter named 'layer4.1.conv2.bias'; module 'layer4.1.conv2' has parameters weight "
                                           "and buffers (none)"));
    BOOST_CHECK_EXCEPTION(m.get_buffer("bn1.running_mode"), ValueError,
                          message_contains("buffers running_mean, running_var, num_batches_tracked"));
    BOOST_CHECK_EXCEPTION(m.module("layer9"), ValueError, message_contains("no module named 'layer9'; valid names: conv1, bn1"));
}

BOOST_AUTO_TEST_CASE(forward_is_forward_head_of_forward_features_and_features_is_the_pooled_embedding) {
    nn::ResNet18<float> m(nn::ResNetOptions{3, 1});
    m.eval();
    autograd::NoGrad guard;
    Rng rng(5);
    auto x = Tensor<float>::empty({2, 1, 64, 64});
    for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(rng.uniform());
    const auto logits = m(V(x)).value();
    const auto fmap = m.forward_features(V(x)).value();
    BOOST_TEST(fmap.shape() == (Shape{2, 512, 2, 2}));
    const auto emb = m.features(V(x)).value();
    BOOST_TEST(emb.shape() == (Shape{2, 512}));
    const auto head = m.forward_head(V(fmap)).value();
    const auto via_fc = m.fc()(V(emb)).value();
    for (std::int64_t i = 0; i < logits.numel(); ++i) {
        BOOST_TEST(head[i] == logits[i]);
        BOOST_TEST(via_fc[i] == logits[i]);
    }
    // predict_proba: the softmax of those logits, rows summing to 1; a temperature above 1 softens it
    m.train();
    const auto p = nn::predict_proba(m, x);
    BOOST_TEST(!m.is_training());  // evaluated in eval mode
    const auto q = nn::functional::softmax(logits);
    const auto soft = nn::predict_proba(m, x, 4.0);
    for (std::int64_t r = 0; r < 2; ++r) {
        double sum = 0, top = 0, top_soft = 0;
        for (std::int64_t k = 0; k < 3; ++k) {
            BOOST_TEST(p[r * 3 + k] == q[r * 3 + k]);
            sum += p[r * 3 + k];
            top = std::max(top, p[r * 3 + k]);
            top_soft = std::max(top_soft, soft[r * 3 + k]);
        }
        BOOST_TEST(sum == 1.0, boost::test_tools::tolerance(1e-6));
        BOOST_TEST(top_soft <= top);
    }
    BOOST_CHECK_EXCEPTION(nn::functional::softmax(logits, 0.0), ValueError, message_contains("temperature must be > 0, got 0"));
}

BOOST_AUTO_TEST_CASE(resnet_rejects_wrong_input_channels) {
    nn::ResNet18<float> m(nn::ResNetOptions{2, 1});
    BOOST_CHECK_EXCEPTION(m(V(Tensor<float>::zeros({1, 3, 32, 32}))), ShapeError,
                          message_contains("ResNet: input must be (N, 1, H, W), got [1,3,32,32]"));
}

BOOST_AUTO_TEST_SUITE_END()
