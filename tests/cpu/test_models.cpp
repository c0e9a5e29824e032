// SPDX-License-Identifier: MIT
// Tests for nn/densenet.hpp, nn/efficientnet.hpp and nn/models.hpp: torchvision's names, shapes
// and parameter counts, the memory-efficient dense layer against the plain composition, and
// numeric parity with torchvision for densenet121 and efficientnet_b0 (eval and train logits, loss,
// gradients of stem / middle / head parameters, BN running statistics, one Adam step) from fixtures
// written by tests/data/make_models_fixtures.py (weights from the closed form ref::det_init).
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <map>
#include <tuple>
#include <string>

#include "helpers.hpp"
#include "reference.hpp"
#include "medimg/io/checkpoint.hpp"
#include "medimg/io/safetensors.hpp"
#include "medimg/io/torch_pth.hpp"
#include "medimg/medimg.hpp"
#include "medimg/optim/optim.hpp"

using namespace medimg;
using medimg::test::message_contains;
using V = autograd::Var<float, Cpu>;
namespace ref = medimg::test::ref;

namespace {
// As for ResNet (test_resnet.cpp): float32 against float32 with other summation orders.
constexpr double kParityRtol = 1e-4;
constexpr double kParityAtol = 1e-5;

std::string fixture(const std::string& name) { return std::string(MEDIMG_TEST_DATA_DIR) + "/models/" + name; }

// In double both sides compute the same sums in other orders: measured differences ~1e-12
// relative, so 1e-7 still catches any wrong formula (1e-2 and up) while the ill-conditioning of
// batch-2 statistics on 2x2 maps, which takes PyTorch's own float32 gradients 1e-3 from its
// float64 ones, does not matter (make_models_fixtures.py).
constexpr double kDoubleRtol = 1e-7;
constexpr double kDoubleAtol = 1e-10;

template <class T>
std::shared_ptr<nn::ImageClassifier<T, Cpu>> det_model(const std::string& arch) {
    auto m = nn::make_model<T>(arch, nn::ModelOptions{2, 3});
    ref::det_init(*m);
    if (auto* e = dynamic_cast<nn::EfficientNet<T>*>(m.get())) e->set_drop_probabilities(0.0, 0.0);
    return m;
}

/// Every check of one fixture file against freshly det-initialised models (dropout and stochastic
/// depth off, as the generator sets them): float32 logits and loss, then in double the training
/// pass, the gradients, the BN statistics and one Adam step.
void check_against_torchvision(const std::string& arch, const std::vector<std::string>& grads,
                               const std::vector<std::string>& stats, const std::vector<std::string>& adam) {
    const auto f = io::SafetensorsFile::load(fixture(arch + ".safetensors"));
    const auto target = f.tensor<std::int64_t>("target");
    {
        auto m = det_model<float>(arch);
        const V x(f.tensor<float>("input"));
        m->eval();
        {
            autograd::NoGrad g;
            MEDIMG_CHECK_CLOSE_TENSORS((*m)(x).value(), f.tensor<float>("logits_eval"), kParityRtol, kParityAtol);
        }
        m->train();
        auto logits = (*m)(x);
        MEDIMG_CHECK_CLOSE_TENSORS(logits.value(), f.tensor<float>("logits_train"), kParityRtol, kParityAtol);
        BOOST_TEST(loss::cross_entropy(logits, target).value().item() == f.tensor<float>("loss").item(),
                   boost::test_tools::tolerance(1e-5f));
    }
    using D = autograd::Var<double, Cpu>;
    auto m = det_model<double>(arch);
    m->train();
    auto logits = (*m)(D(f.tensor<double>("input")));
    MEDIMG_CHECK_CLOSE_TENSORS(logits.value(), f.tensor<double>("f64.logits_train"), kDoubleRtol, kDoubleAtol);
    auto loss = loss::cross_entropy(logits, target);
    BOOST_TEST(loss.value().item() == f.tensor<double>("f64.loss").item(), boost::test_tools::tolerance(1e-9));
    loss.backward();
    for (const auto& name : grads)
        BOOST_TEST_CONTEXT("grad of " << name) {
            auto& p = m->parameter(name);
            BOOST_REQUIRE_MESSAGE(p.grad().defined(), "no gradient reached " << name);
            MEDIMG_CHECK_CLOSE_TENSORS(p.grad(), f.tensor<double>("f64.grad." + name), kDoubleRtol, kDoubleAtol);
        }
    for (const auto& bn : stats)
        for (const std::string s : {".running_mean", ".running_var"})
            BOOST_TEST_CONTEXT(bn + s) {
                MEDIMG_CHECK_CLOSE_TENSORS(m->get_buffer(bn + s), f.tensor<double>("f64.after_train_forward." + bn + s),
                                           kDoubleRtol, kDoubleAtol);
            }
    optim::Adam<double> opt(m->named_parameters(), optim::AdamOptions{1e-3});
    opt.step();
    for (const auto& name : adam)
        BOOST_TEST_CONTEXT("after Adam: " << name) {
            MEDIMG_CHECK_CLOSE_TENSORS(m->parameter(name).value(), f.tensor<double>("f64.adam." + name), kDoubleRtol,
                                       kDoubleAtol);
        }
}
}  // namespace

BOOST_AUTO_TEST_SUITE(models_layout)

BOOST_AUTO_TEST_CASE(densenet121_and_efficientnet_b0_have_torchvision_names_and_counts) {
    // torchvision 0.14: sum(p.numel() for p in model.parameters()), len(model.state_dict())
    const std::map<std::string, std::pair<std::int64_t, std::size_t>> expected{
        {"densenet121", {7978856, 727}}, {"efficientnet_b0", {5288548, 360}}};
    for (const auto& [name, counts] : expected) {
        BOOST_TEST_CONTEXT(name) {
            auto m = nn::make_model<float>(name, nn::ModelOptions{1000, 3});
            BOOST_TEST(m->parameter_count() == counts.first);
            BOOST_TEST(m->state_dict().size() == counts.second);
        }
    }
    auto d = nn::make_model<float>("densenet121", nn::ModelOptions{2, 1});
    BOOST_TEST(d->parameter("features.conv0.weight").shape() == (Shape{64, 1, 7, 7}));
    BOOST_TEST(d->parameter("features.denseblock4.denselayer16.conv2.weight").shape() == (Shape{32, 128, 3, 3}));
    BOOST_TEST(d->parameter("features.transition3.conv.weight").shape() == (Shape{512, 1024, 1, 1}));
    BOOST_TEST(d->get_buffer("features.norm5.running_var").shape() == (Shape{1024}));
    BOOST_TEST(d->parameter("classifier.weight").shape() == (Shape{2, 1024}));
    auto e = nn::make_model<float>("efficientnet_b0", nn::ModelOptions{2, 1});
    BOOST_TEST(e->parameter("features.0.0.weight").shape() == (Shape{32, 1, 3, 3}));
    BOOST_TEST(e->parameter("features.1.0.block.0.0.weight").shape() == (Shape{32, 1, 3, 3}));  // depthwise, no expansion
    BOOST_TEST(e->parameter("features.2.0.block.0.0.weight").shape() == (Shape{96, 16, 1, 1}));  // expand x6
    BOOST_TEST(e->parameter("features.6.3.block.1.0.weight").shape() == (Shape{1152, 1, 5, 5}));
    BOOST_TEST(e->parameter("features.6.3.block.2.fc1.weight").shape() == (Shape{48, 1152, 1, 1}));
    BOOST_TEST(e->parameter("features.8.0.weight").shape() == (Shape{1280, 320, 1, 1}));
    BOOST_TEST(e->parameter("classifier.1.weight").shape() == (Shape{2, 1280}));
    BOOST_CHECK_EXCEPTION(nn::make_model<float>("vgg16", {}), ValueError,
                          message_contains("unknown architecture 'vgg16' (resnet18, resnet34, resnet50, densenet121, efficientnet_b0, "
                                           "vit_tiny_patch16_224, vit_small_patch16_224, vit_b_16)"));
}

BOOST_AUTO_TEST_CASE(initialisation_follows_torchvision) {
    auto d = nn::densenet121<float>(nn::DenseNetOptions{});
    // kaiming_normal_ fan_in: std sqrt(2 / fan_in), conv0 fan_in 3*49
    const auto w = d->parameter("features.conv0.weight").value();
    double s2 = 0;
    for (std::int64_t i = 0; i < w.numel(); ++i) s2 += double(w[i]) * w[i];
    BOOST_TEST(std::sqrt(s2 / w.numel()) == std::sqrt(2.0 / 147), boost::test_tools::tolerance(0.05));
    BOOST_TEST(d->parameter("classifier.bias").value().to_vector() == std::vector<float>(1000, 0.0f));
    auto e = nn::efficientnet_b0<float>(nn::EfficientNetOptions{});
    const auto c = e->parameter("features.8.0.weight").value();  // fan_out 1280
    s2 = 0;
    for (std::int64_t i = 0; i < c.numel(); ++i) s2 += double(c[i]) * c[i];
    BOOST_TEST(std::sqrt(s2 / c.numel()) == std::sqrt(2.0 / 1280), boost::test_tools::tolerance(0.05));
    const auto fc = e->parameter("classifier.1.weight").value();
    float most = 0;
    for (std::int64_t i = 0; i < fc.numel(); ++i) most = std::max(most, std::abs(fc[i]));
    BOOST_TEST(most <= 1.0f / std::sqrt(1000.0f));  // U(-1/sqrt(out_features), +)
    BOOST_TEST(most > 0.9f / std::sqrt(1000.0f));
    BOOST_TEST(e->parameter("features.1.0.block.1.fc1.bias").value().to_vector() == std::vector<float>(8, 0.0f));
}

BOOST_AUTO_TEST_CASE(model_options_set_the_head_init_and_the_drop_rates) {
    auto max_abs = [](const Tensor<float, Cpu>& t) {
        float m = 0;
        for (std::int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::abs(t[i]));
        return m;
    };
    for (const std::string name : {"densenet121", "efficientnet_b0"}) {
        BOOST_TEST_CONTEXT(name) {
            nn::ModelOptions o{2, 1, 11};
            auto tv = nn::make_model<float>(name, o);
            o.head_init = nn::HeadInit::linear;
            auto lin = nn::make_model<float>(name, o);
            const auto params_tv = tv->named_parameters(), params_lin = lin->named_parameters();
            const std::string head = params_tv.back().first.substr(0, params_tv.back().first.rfind('.') + 1);
            const float in = static_cast<float>(tv->num_features());
            for (std::size_t i = 0; i < params_tv.size(); ++i) {
                const auto& [key, p] = params_tv[i];
                if (key.rfind(head, 0) == 0) continue;  // everything but the head is drawn as before
                BOOST_TEST_CONTEXT(key) BOOST_TEST(p.value().to_vector() == params_lin[i].second.value().to_vector());
            }
            // torch.nn.Linear's default: weight and bias in U(+-1/sqrt(in_features)), bias not zero
            const auto w = lin->parameter(head + "weight").value(), b = lin->parameter(head + "bias").value();
            BOOST_TEST(max_abs(w) <= 1.0f / std::sqrt(in));
            BOOST_TEST(max_abs(w) > 0.9f / std::sqrt(in));
            BOOST_TEST(max_abs(b) > 0.0f);
            BOOST_TEST(max_abs(b) <= 1.0f / std::sqrt(in));
            BOOST_TEST(max_abs(tv->parameter(head + "bias").value()) == 0.0f);  // torchvision: bias 0 in both
        }
    }
    // EfficientNet-B0's torchvision head for 2 classes is U(+-1/sqrt(2)): what head_init linear avoids
    auto e = nn::make_model<float>("efficientnet_b0", nn::ModelOptions{2, 1, 11});
    BOOST_TEST(max_abs(e->parameter("classifier.1.weight").value()) > 0.6f);

    nn::ModelOptions o{2, 1, 3};
    o.dropout = 0.0;
    o.stochastic_depth = 0.1;
    auto m = nn::make_model<float>("efficientnet_b0", o);
    auto& eff = dynamic_cast<nn::EfficientNet<float>&>(*m);
    BOOST_TEST(eff.options().dropout == 0.0);
    BOOST_TEST(eff.options().stochastic_depth_prob == 0.1);
    // the rates change only the random streams' use, not the weights drawn
    BOOST_TEST(m->parameter("features.3.1.block.1.0.weight").value().to_vector() ==
               nn::make_model<float>("efficientnet_b0", nn::ModelOptions{2, 1, 3})->parameter("features.3.1.block.1.0.weight").value().to_vector());
    BOOST_CHECK_EXCEPTION(nn::make_model<float>("resnet18", o), ValueError,
                          message_contains("make_model: resnet18 has no dropout to set (torchvision's resnet18 has none; efficientnet_b0 has)"));
    o.dropout = 1.0;
    BOOST_CHECK_EXCEPTION(nn::make_model<float>("efficientnet_b0", o), ValueError,
                          message_contains("make_model: dropout must be in [0, 1), got 1"));
}

BOOST_AUTO_TEST_CASE(named_children_are_the_direct_submodules_and_push_back_refuses_a_taken_name) {
    auto r = nn::make_model<float>("resnet18", nn::ModelOptions{2, 1});
    std::vector<std::string> names;
    for (const auto& [n, c] : r->named_children()) names.push_back(n);
    // torchvision also lists relu, maxpool and avgpool, which hold no state; medimg's ResNet calls them as functions
    BOOST_TEST(names == (std::vector<std::string>{"conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"}),
               boost::test_tools::per_element());
    nn::Sequential<float> seq;
    seq.push_back("stem", std::make_shared<nn::Sequential<float>>())->push_back("conv", std::make_shared<nn::ReLU<float>>());
    seq.push_back("conv", std::make_shared<nn::ReLU<float>>());  // a grandchild's name is free at this level
    BOOST_CHECK_EXCEPTION(seq.push_back("stem", std::make_shared<nn::ReLU<float>>()), ValueError,
                          message_contains("Sequential::push_back: a child named 'stem' exists already"));
    BOOST_TEST(seq.size() == 2u);
}

BOOST_AUTO_TEST_CASE(the_memory_efficient_dense_layer_equals_the_plain_composition) {
    nn::DenseNetOptions o;
    o.num_classes = 3;
    o.growth_rate = 4;
    o.block_config = {3, 2};
    o.num_init_features = 8;
    o.bn_size = 2;
    for (bool training : {true, false}) {
        BOOST_TEST_CONTEXT((training ? "train" : "eval")) {
            std::vector<std::vector<float>> logits, grads, stats;
            for (bool efficient : {true, false}) {
                o.memory_efficient = efficient;
                nn::DenseNet<float> m(o);
                ref::det_init(m);
                m.train(training);
                auto y = m(V(ref::random<float>({2, 3, 32, 32}, 5)));
                autograd::sum(autograd::mul(y, V(ref::random<float>(y.shape(), 6)))).backward();
                logits.push_back(y.value().to_vector());
                grads.push_back(m.parameter("features.denseblock1.denselayer3.norm1.weight").grad().to_vector());
                auto g2 = m.parameter("features.denseblock1.denselayer2.conv1.weight").grad().to_vector();
                grads.back().insert(grads.back().end(), g2.begin(), g2.end());
                auto g3 = m.parameter("features.conv0.weight").grad().to_vector();
                grads.back().insert(grads.back().end(), g3.begin(), g3.end());
                stats.push_back(m.get_buffer("features.denseblock1.denselayer3.norm1.running_var").to_vector());
                BOOST_TEST(m.get_buffer("features.denseblock1.denselayer3.norm1.num_batches_tracked").item() ==
                           (training ? 1.0f : 0.0f));
            }
            BOOST_TEST(logits[0] == logits[1], boost::test_tools::per_element());
            BOOST_TEST(grads[0] == grads[1], boost::test_tools::per_element());
            BOOST_TEST(stats[0] == stats[1], boost::test_tools::per_element());
        }
    }
}

BOOST_AUTO_TEST_CASE(features_and_head_split_the_forward_pass) {
    for (const std::string name : {"densenet121", "efficientnet_b0"}) {
        BOOST_TEST_CONTEXT(name) {
            auto m = nn::make_model<float>(name, nn::ModelOptions{3, 1, 7});
            m->eval();
            autograd::NoGrad g;
            const V x(ref::random<float>({2, 1, 64, 64}, 8));
            const auto f = m->forward_features(x);
            BOOST_TEST(f.shape() == (Shape{2, m->num_features(), 2, 2}));
            BOOST_TEST(m->forward_head(f).value().to_vector() == (*m)(x).value().to_vector(), boost::test_tools::per_element());
            BOOST_TEST(m->features(x).shape() == (Shape{2, m->num_features()}));
        }
    }
    BOOST_TEST(nn::make_model<float>("densenet121", {})->default_cam_layer(224) == "features.norm5");
    BOOST_TEST(nn::make_model<float>("densenet121", {})->default_cam_layer(64) == "features.denseblock3");
    BOOST_TEST(nn::make_model<float>("efficientnet_b0", {})->default_cam_layer(224) == "features.8");
    BOOST_TEST(nn::make_model<float>("efficientnet_b0", {})->default_cam_layer(40) == "features.3");
    BOOST_TEST(nn::make_model<float>("resnet18", {})->default_cam_layer(64) == "layer3");
}

BOOST_AUTO_TEST_CASE(backward_hooks_see_the_gradient_of_a_module_output_until_removed) {
    auto m = nn::make_model<float>("efficientnet_b0", nn::ModelOptions{2, 1, 4});
    m->eval();
    const V x(ref::random<float>({2, 1, 64, 64}, 10));
    std::vector<float> via_module, via_var;
    int calls = 0;
    auto handle = m->module("features.5").register_backward_hook([&](nn::Module<float>&, const Tensor<float>& g) {
        via_module = g.to_vector();
        ++calls;
    });
    auto fwd = m->module("features.5").register_forward_hook([&](nn::Module<float>&, const V&, const V& out) {
        V o = out;
        if (o.requires_grad()) o.register_hook([&](const Tensor<float>& g) { via_var = g.to_vector(); });
        return V();
    });
    autograd::sum((*m)(x)).backward();
    BOOST_TEST(calls == 1);
    BOOST_TEST(!via_module.empty());
    BOOST_TEST(via_module == via_var, boost::test_tools::per_element());
    handle.remove();
    autograd::sum((*m)(x)).backward();
    BOOST_TEST(calls == 1);  // removed: not called again
    {
        auto again = m->module("features.5").register_backward_hook([&](nn::Module<float>&, const Tensor<float>&) { ++calls; });
        autograd::NoGrad g;
        (*m)(x);  // no graph, no gradient: the hook cannot run
    }
    BOOST_TEST(calls == 1);
}

BOOST_AUTO_TEST_CASE(dropout_and_stochastic_depth_act_in_training_only_and_follow_the_seed) {
    auto run = [](std::uint64_t seed, bool training) {
        nn::EfficientNetOptions o;
        o.num_classes = 2;
        o.seed = 3;
        o.stages = {{1, 3, 1, 16, 8, 1}, {4, 3, 1, 8, 8, 3}};  // residual blocks: stochastic depth applies
        o.last_channels = 32;
        o.stochastic_depth_prob = 0.9;
        o.dropout = 0.5;
        nn::EfficientNet<float> m(o);
        m.reseed(seed);
        m.train(training);
        autograd::NoGrad g;
        return m(V(ref::random<float>({4, 3, 32, 32}, 9))).value().to_vector();
    };
    BOOST_TEST(run(1, true) == run(1, true), boost::test_tools::per_element());
    BOOST_TEST(run(1, true) != run(2, true));
    BOOST_TEST(run(1, false) == run(2, false), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()

namespace {
/// The reduced configurations make_models_fixtures.py gives torchvision's DenseNet and EfficientNet
/// classes for the .pth files (3 classes).
std::shared_ptr<nn::ImageClassifier<float, Cpu>> small_model(const std::string& which, std::int64_t classes = 3,
                                                             std::int64_t channels = 3) {
    if (which == "densenet_small") {
        nn::DenseNetOptions o;
        o.num_classes = classes;
        o.in_channels = channels;
        o.growth_rate = 8;
        o.block_config = {2, 2, 2, 2};
        o.num_init_features = 16;
        o.bn_size = 2;
        return std::make_shared<nn::DenseNet<float>>(o);
    }
    nn::EfficientNetOptions o;
    o.num_classes = classes;
    o.in_channels = channels;
    o.stages = {{1, 3, 1, 16, 8, 1}, {4, 3, 2, 8, 16, 2}, {4, 5, 2, 16, 24, 1}};
    o.last_channels = 64;
    return std::make_shared<nn::EfficientNet<float>>(o);
}
}  // namespace

BOOST_AUTO_TEST_SUITE(models_torchvision_files)

BOOST_AUTO_TEST_CASE(torchvision_pth_files_load_directly_and_give_torchvision_logits) {
    for (const std::string which : {"densenet_small", "efficientnet_small"}) {
        BOOST_TEST_CONTEXT(which) {
            const auto f = io::SafetensorsFile::load(fixture(which + "_logits.safetensors"));
            const auto sd = io::load_torch_state_dict(fixture(which + ".pth"));
            std::map<std::string, Tensor<float>> state;
            for (const auto& k : sd.keys()) state[k] = sd.tensor<float>(k);
            auto m = small_model(which);
            m->load_state_dict(state);  // strict: every key of torchvision's file, nothing else
            m->eval();
            autograd::NoGrad g;
            MEDIMG_CHECK_CLOSE_TENSORS((*m)(V(f.tensor<float>("input"))).value(), f.tensor<float>("logits_eval"), 1e-5, 1e-5);
        }
    }
}

BOOST_AUTO_TEST_CASE(pretrained_pth_weights_adapt_the_stem_to_gray_and_reset_the_head) {
    for (const auto& [which, stem, head] : std::vector<std::tuple<std::string, std::string, std::string>>{
             {"densenet_small", "features.conv0.weight", "classifier.weight"},
             {"efficientnet_small", "features.0.0.weight", "classifier.1.weight"}}) {
        BOOST_TEST_CONTEXT(which) {
            auto gray = small_model(which, 2, 1);
            const auto head_before = gray->parameter(head).value().clone();
            const auto r = io::load_pretrained(*gray, fixture(which + ".pth"));
            BOOST_TEST(r.adapted.size() == 1u);
            BOOST_TEST(r.adapted[0].rfind(stem, 0) == 0);
            BOOST_TEST(r.reinitialised.size() == 2u);  // the classifier's weight and bias
            BOOST_TEST(r.ignored.empty());
            MEDIMG_CHECK_CLOSE_TENSORS(gray->parameter(head).value(), head_before, 0.0, 0.0);
            const auto rgb = io::load_torch_state_dict(fixture(which + ".pth")).tensor<float>(stem);
            const auto& w1 = gray->parameter(stem).value();
            const std::int64_t K = w1.size(2) * w1.size(3);
            BOOST_TEST(w1[0] == rgb[0] + rgb[K] + rgb[2 * K], boost::test_tools::tolerance(1e-6f));
        }
    }
    auto other = nn::make_model<float>("resnet18", nn::ModelOptions{2, 3});
    BOOST_CHECK_EXCEPTION(io::load_pretrained(*other, fixture("densenet_small.pth")), IoError,
                          message_contains("missing 'conv1.weight' (is this the same architecture, with torchvision names?)"));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(models_parity)

BOOST_AUTO_TEST_CASE(densenet121_matches_torchvision_in_eval_train_gradients_and_adam) {
    check_against_torchvision("densenet121",
                              {"features.conv0.weight", "features.denseblock3.denselayer7.norm2.weight",
                               "features.transition1.norm.bias", "features.norm5.weight", "classifier.weight", "classifier.bias"},
                              {"features.norm0", "features.denseblock2.denselayer4.norm1", "features.norm5"},
                              {"features.denseblock3.denselayer7.norm2.weight", "features.norm5.weight", "classifier.weight"});
}

BOOST_AUTO_TEST_CASE(efficientnet_b0_matches_torchvision_in_eval_train_gradients_and_adam) {
    check_against_torchvision("efficientnet_b0",
                              {"features.0.0.weight", "features.4.1.block.1.0.weight", "features.4.1.block.2.fc1.bias",
                               "features.6.3.block.3.1.weight", "classifier.1.weight", "classifier.1.bias"},
                              {"features.0.1", "features.4.1.block.1.1", "features.8.1"},
                              {"features.4.1.block.1.0.weight", "features.6.3.block.3.1.weight", "classifier.1.weight"});
}

BOOST_AUTO_TEST_SUITE_END()
