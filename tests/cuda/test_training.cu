// SPDX-License-Identifier: MIT
// Tests for training on the GPU: autograd through every differentiable op (CUDA gradients vs CPU
// gradients of a small network, in double), one full ResNet18<float, Cuda> training step vs
// ResNet18<float, Cpu> on identical weights and inputs, ResNet18 on the GPU vs the PyTorch fixture
// the CPU is tested against, the optimizers (bitwise equal to the CPU loops), a steady-state step
// without cudaMalloc, and a short learning run. Mirrors tests/cpu/test_autograd.cpp,
// test_resnet.cpp and test_optim.cpp.
#include <boost/mpl/list.hpp>
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cuda_helpers.hpp"
#include "medimg/autograd/functions.hpp"
#include "medimg/autograd/loss.hpp"
#include "medimg/core/rng.hpp"
#include "medimg/io/safetensors.hpp"
#include "medimg/nn/nn.hpp"
#include "medimg/optim/optim.hpp"
#include "reference.hpp"

using namespace medimg;
using medimg::test::has_cuda_device;
using medimg::test::relative_l2;
namespace ref = medimg::test::ref;
namespace utf = boost::unit_test;

namespace {

template <class T, class B>
using Params = std::map<std::string, autograd::Var<T, B>>;

/// The same parameter set on backend B (copied from the host values).
template <class B, class T>
Params<T, B> params_on(const std::map<std::string, Tensor<T, Cpu>>& host) {
    Params<T, B> out;
    for (const auto& [k, v] : host) {
        if constexpr (std::is_same_v<B, Cpu>)
            out[k] = autograd::Var<T, B>::parameter(v.clone());
        else
            out[k] = autograd::Var<T, B>::parameter(v.template to<B>());
    }
    return out;
}

/// A small network that uses every differentiable op of autograd/functions.hpp and loss.hpp:
/// conv (+bias) -> batch norm (training) -> relu -> max pool -> conv -> batch norm (inference,
/// running stats) -> + residual (add) -> mul gate -> affine -> add_scalar -> adaptive avg pool ->
/// flatten -> linear -> cross-entropy (weights, smoothing) + mean of log_softmax (a second path
/// into the logits) + sum of the squared, reshaped features. (autograd::ssim: test_ssim.cu.)
template <class T, class B>
autograd::Var<T, B> small_network_loss(Params<T, B>& P, const autograd::Var<T, B>& x, const Tensor<std::int64_t, B>& target,
                                      const Tensor<T, B>& class_weight, Tensor<T, B> rm1, Tensor<T, B> rv1, Tensor<T, B> rm2,
                                      Tensor<T, B> rv2) {
    namespace ag = autograd;
    auto h = ag::conv2d(x, P["w1"], P["b1"], ops::Conv2dParams{1, 1, 1, 1, 1, 1});                 // (N, 4, 10, 10)
    h = ag::batch_norm(h, P["g1"], P["be1"], rm1, rv1, /*training=*/true);
    h = ag::relu(h);
    h = ag::max_pool2d(h, ops::MaxPool2dParams{3, 3, 2, 2, 1, 1});                              // (N, 4, 5, 5)
    auto r = ag::conv2d(h, P["w2"], autograd::Var<T, B>(), ops::Conv2dParams{1, 1, 1, 1, 1, 1});  // (N, 4, 5, 5)
    r = ag::batch_norm(r, P["g2"], P["be2"], rm2, rv2, /*training=*/false);
    h = ag::add(h, r);
    h = ag::mul(h, ag::relu(h));
    h = ag::affine(h, T(0.5), T(0.1));
    h = ag::add_scalar(h, T(-0.05));
    auto f = ag::flatten(ag::adaptive_avg_pool2d(h, 2, 2));                                      // (N, 16)
    auto logits = ag::linear(f, P["w3"], P["b3"]);                                               // (N, 3)
    loss::CrossEntropyOptions<T, B> o;
    o.weight = class_weight;
    o.label_smoothing = 0.1;
    auto l = loss::cross_entropy(logits, target, o);
    l = ag::add(l, ag::scale(ag::mean(ag::log_softmax(logits)), T(-0.01)));
    // sum and reshape (the remaining differentiable ops): a small penalty on the features.
    auto f2 = ag::reshape(f, Shape{f.size(0) * 4, 4});                                           // (4N, 4)
    return ag::add(l, ag::scale(ag::sum(ag::mul(f2, f2)), T(1e-3)));
}

/// tests/data, or $MEDIMG_TEST_DATA_DIR when the binary runs away from its source tree (GPU machine).
std::string data_dir() {
    const char* env = std::getenv("MEDIMG_TEST_DATA_DIR");
    return env && *env ? std::string(env) : std::string(MEDIMG_TEST_DATA_DIR);
}

// The PyTorch fixture (tests/data/resnet) sets its weights by ref::det_init's closed form (reference.hpp).

/// Copies every parameter and buffer of a host model into a device model of the same architecture.
template <class T>
void copy_state(nn::Module<T, Cpu>& from, nn::Module<T, Cuda>& to) {
    std::map<std::string, Tensor<T, Cuda>> state;
    for (auto& e : from.state_dict()) state[e.name] = e.value.template to<Cuda>();
    to.load_state_dict(state);
}

template <class T, class B>
Tensor<T, Cpu> state_of(nn::Module<T, B>& m, const std::string& name) {
    for (auto& e : m.state_dict())
        if (e.name == name) return medimg::test::host(e.value);
    BOOST_FAIL("no state entry " << name);
    return {};
}
template <class T, class B>
Tensor<T, Cpu> grad_of(nn::Module<T, B>& m, const std::string& name) {
    for (auto& [n, p] : m.named_parameters())
        if (n == name) return medimg::test::host(p.grad());
    BOOST_FAIL("no parameter " << name);
    return {};
}

// float ResNet18 on the GPU vs the CPU: ~20 layers of float sums in different orders, batch
// statistics at small batch amplifying them; measured CPU-vs-PyTorch differences are ~1e-6
// relative. Gradients are compared as whole tensors (relative L2), where near-zero elements
// cannot dominate; a wrong formula moves these by 1e-2 or more.
constexpr double kNetRtol = 1e-3, kNetAtol = 1e-4;
constexpr double kNetGradRelL2 = 1e-3;

}  // namespace

BOOST_AUTO_TEST_SUITE(cuda_training)

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(small_network_gradients_match_the_cpu_in_double) {
    using T = double;
    std::map<std::string, Tensor<T, Cpu>> host{
        {"w1", ref::random<T>({4, 2, 3, 3}, 1)}, {"b1", ref::random<T>({4}, 2)},
        {"g1", ref::random<T>({4}, 3, 0.5, 1.5)}, {"be1", ref::random<T>({4}, 4)},
        {"w2", ref::random<T>({4, 4, 3, 3}, 5)}, {"g2", ref::random<T>({4}, 6, 0.5, 1.5)},
        {"be2", ref::random<T>({4}, 7)}, {"w3", ref::random<T>({3, 16}, 8)}, {"b3", ref::random<T>({3}, 9)}};
    const auto x = ref::random<T>({3, 2, 10, 10}, 10);
    const auto target = Tensor<std::int64_t, Cpu>::from_vector({3}, {2, 0, 1});
    const auto cw = ref::random<T>({3}, 11, 0.5, 2.0);
    const auto rm1 = ref::random<T>({4}, 12), rv1 = ref::random<T>({4}, 13, 0.5, 2.0);
    const auto rm2 = ref::random<T>({4}, 14), rv2 = ref::random<T>({4}, 15, 0.5, 2.0);

    auto pc = params_on<Cpu>(host);
    auto xc = autograd::Var<T, Cpu>::parameter(x.clone());
    auto rm1c = rm1.clone(), rv1c = rv1.clone();
    auto lc = small_network_loss<T, Cpu>(pc, xc, target, cw, rm1c, rv1c, rm2.clone(), rv2.clone());
    lc.backward();

    auto pg = params_on<Cuda>(host);
    auto xg = autograd::Var<T, Cuda>::parameter(x.to<Cuda>());
    auto rm1g = rm1.to<Cuda>(), rv1g = rv1.to<Cuda>();
    auto lg = small_network_loss<T, Cuda>(pg, xg, target.to<Cuda>(), cw.to<Cuda>(), rm1g, rv1g, rm2.to<Cuda>(), rv2.to<Cuda>());
    lg.backward();

    const double tol = medimg::test::kGpuDoubleTol * 100;  // through ~15 ops, still only summation order
    MEDIMG_CHECK_GPU_CPU("loss", lg.value(), lc.value(), tol, tol);
    MEDIMG_CHECK_GPU_CPU("grad x", xg.grad(), xc.grad(), tol, tol);
    for (const auto& [k, v] : host) MEDIMG_CHECK_GPU_CPU("grad " + k, pg[k].grad(), pc[k].grad(), tol, tol);
    MEDIMG_CHECK_GPU_CPU("running_mean after the training batch norm", rm1g, rm1c, tol, tol);
    MEDIMG_CHECK_GPU_CPU("running_var after the training batch norm", rv1g, rv1c, tol, tol);
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(resnet18_training_step_matches_the_cpu) {
    nn::ResNet18<float, Cpu> mc(nn::ResNetOptions{3, 3, 5});
    nn::ResNet18<float, Cuda> mg(nn::ResNetOptions{3, 3, 5});  // same seed: the same host-drawn weights
    for (auto& e : mc.state_dict()) MEDIMG_CHECK_GPU_CPU_EXACT("initial " + e.name, state_of(mg, e.name), e.value);
    const auto x = ref::random<float>({4, 3, 64, 64}, 21);
    const auto y = Tensor<std::int64_t, Cpu>::from_vector({4}, {0, 2, 1, 2});
    optim::SGDOptions so(0.05);
    so.momentum = 0.9;
    so.weight_decay = 1e-4;
    optim::SGD<float, Cpu> oc(mc.named_parameters(), so);
    optim::SGD<float, Cuda> og(mg.named_parameters(), so);
    mc.train();
    mg.train();
    for (int step = 0; step < 2; ++step) {
        BOOST_TEST_CONTEXT("step " << step) {
            auto logits_c = mc(autograd::Var<float, Cpu>(x));
            auto logits_g = mg(autograd::Var<float, Cuda>(x.to<Cuda>()));
            MEDIMG_CHECK_GPU_CPU("logits", logits_g.value(), logits_c.value(), kNetRtol, kNetAtol);
            auto lc = loss::cross_entropy(logits_c, y);
            auto lg = loss::cross_entropy(logits_g, y.to<Cuda>());
            MEDIMG_CHECK_GPU_CPU("loss", lg.value(), lc.value(), kNetRtol, kNetAtol);
            lc.backward();
            lg.backward();
            for (auto& [name, p] : mc.named_parameters()) {
                const double r = relative_l2(grad_of(mg, name), p.grad());
                BOOST_CHECK_MESSAGE(r < kNetGradRelL2, "grad " << name << ": relative L2 difference " << r);
            }
            oc.step();
            og.step();
            oc.zero_grad();
            og.zero_grad();
            for (auto& e : mc.state_dict()) {
                const double r = relative_l2(state_of(mg, e.name), e.value);
                BOOST_CHECK_MESSAGE(r < kNetGradRelL2, "after the step, " << e.name << ": relative L2 difference " << r);
            }
        }
    }
    mc.eval();
    mg.eval();
    autograd::NoGrad guard;
    MEDIMG_CHECK_GPU_CPU("eval logits after two steps", mg(autograd::Var<float, Cuda>(x.to<Cuda>())).value(),
                         mc(autograd::Var<float, Cpu>(x)).value(), kNetRtol, kNetAtol);
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(resnet18_on_the_gpu_matches_the_pytorch_fixture) {
    const auto f = io::SafetensorsFile::load(data_dir() + "/resnet/resnet18.safetensors");
    nn::ResNet18<float, Cpu> host(nn::ResNetOptions{2, 3});
    ref::det_init(host);
    nn::ResNet18<float, Cuda> m(nn::ResNetOptions{2, 3});
    copy_state(host, m);
    const autograd::Var<float, Cuda> x(f.tensor<float>("input").to<Cuda>());
    m.eval();
    {
        autograd::NoGrad g;
        MEDIMG_CHECK_GPU_CPU("logits_eval", m(x).value(), f.tensor<float>("logits_eval"), kNetRtol, kNetAtol);
    }
    m.train();
    auto logits = m(x);
    MEDIMG_CHECK_GPU_CPU("logits_train", logits.value(), f.tensor<float>("logits_train"), kNetRtol, kNetAtol);
    auto loss = loss::cross_entropy(logits, f.tensor<std::int64_t>("target").to<Cuda>());
    MEDIMG_CHECK_GPU_CPU("loss", loss.value(), f.tensor<float>("loss"), kNetRtol, kNetAtol);
    loss.backward();
    for (const char* name : {"conv1.weight", "layer3.0.downsample.0.weight", "layer4.1.bn2.weight", "fc.weight", "fc.bias"}) {
        const double r = relative_l2(grad_of(m, name), f.tensor<float>(std::string("grad.") + name));
        BOOST_CHECK_MESSAGE(r < kNetGradRelL2, "grad " << name << " vs PyTorch: relative L2 difference " << r);
    }
    for (const char* name : {"bn1.running_mean", "bn1.running_var", "layer4.1.bn2.running_mean", "layer4.1.bn2.running_var"})
        MEDIMG_CHECK_GPU_CPU(name, state_of(m, name), f.tensor<float>(std::string("after_train_forward.") + name), kNetRtol,
                             kNetAtol);
    BOOST_TEST(state_of(m, "bn1.num_batches_tracked")[0] == 1.0f);
}

using float_types = boost::mpl::list<float, double>;

namespace {
/// Builds the same optimizer on either backend (optimizers_update_bitwise_like_the_cpu).
template <class T>
struct MakeOptimizer {
    std::string kind;  // sgd | adam | adamw
    double momentum = 0, dampening = 0, weight_decay = 0;
    bool nesterov = false, amsgrad = false;
    double adamw_weight_decay = 1e-2;  // AdamW's own default (decoupled decay on)
    template <class B>
    std::unique_ptr<optim::Optimizer<T, B>> make(const optim::NamedParams<T, B>& params) const {
        if (kind == "sgd") {
            optim::SGDOptions o(0.1);
            o.momentum = momentum;
            o.dampening = dampening;
            o.weight_decay = weight_decay;
            o.nesterov = nesterov;
            return std::make_unique<optim::SGD<T, B>>(params, o);
        }
        if (kind == "adam") {
            optim::AdamOptions o;
            o.lr = 0.01;
            o.weight_decay = weight_decay;
            o.amsgrad = amsgrad;
            return std::make_unique<optim::Adam<T, B>>(params, o);
        }
        optim::AdamWOptions o;
        o.lr = 0.01;
        o.weight_decay = adamw_weight_decay;
        o.amsgrad = amsgrad;
        return std::make_unique<optim::AdamW<T, B>>(params, o);
    }
};
}  // namespace

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE_TEMPLATE(optimizers_update_bitwise_like_the_cpu, T, float_types) {
    const Shape s{1000, 37};
    const auto p0 = ref::random<T>(s, 31), g1 = ref::random<T>(s, 32), g2 = ref::random<T>(s, 33);
    auto run = [&](const MakeOptimizer<T>& make) {
        auto pc = autograd::Var<T, Cpu>::parameter(p0.clone());
        auto pg = autograd::Var<T, Cuda>::parameter(p0.template to<Cuda>());
        auto oc = make.template make<Cpu>(optim::NamedParams<T, Cpu>{{"p", pc}});
        auto og = make.template make<Cuda>(optim::NamedParams<T, Cuda>{{"p", pg}});
        for (const auto* g : {&g1, &g2, &g1}) {
            pc.grad() = g->clone();
            pg.grad() = g->template to<Cuda>();
            oc->step();
            og->step();
        }
        MEDIMG_CHECK_GPU_CPU_EXACT("parameter after 3 steps", pg.value(), pc.value());
        const auto sc = oc->state_dict(), sg = og->state_dict();
        for (const auto& [k, v] : sc) MEDIMG_CHECK_GPU_CPU_EXACT("state " + k, sg.at(k), v);
    };
    BOOST_TEST_CONTEXT("SGD plain") { run({"sgd"}); }
    BOOST_TEST_CONTEXT("SGD momentum, weight decay") { run({"sgd", 0.9, 0.0, 1e-4}); }
    BOOST_TEST_CONTEXT("SGD momentum, dampening") { run({"sgd", 0.9, 0.3, 0.0}); }
    BOOST_TEST_CONTEXT("SGD nesterov") { run({"sgd", 0.9, 0.0, 5e-4, true}); }
    BOOST_TEST_CONTEXT("SGD nesterov, no weight decay") { run({"sgd", 0.9, 0.0, 0.0, true}); }
    BOOST_TEST_CONTEXT("Adam plain (no L2 term)") { run({"adam"}); }
    BOOST_TEST_CONTEXT("AdamW without decay") { run({"adamw", 0, 0, 0, false, false, 0.0}); }
    for (const bool amsgrad : {false, true}) {
        BOOST_TEST_CONTEXT("Adam, weight decay, amsgrad " << amsgrad) { run({"adam", 0, 0, 0.01, false, amsgrad}); }
        BOOST_TEST_CONTEXT("AdamW, amsgrad " << amsgrad) { run({"adamw", 0, 0, 0, false, amsgrad}); }
    }
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(a_steady_state_training_step_makes_no_device_allocation) {
    nn::ResNet18<float, Cuda> m(nn::ResNetOptions{2, 1, 7});
    optim::AdamW<float, Cuda> opt(m.named_parameters(), optim::AdamWOptions{});
    const auto x = ref::random<float>({8, 1, 64, 64}, 41);
    const auto y = Tensor<std::int64_t, Cpu>::from_vector({8}, {0, 1, 0, 1, 1, 0, 0, 1});
    auto step = [&] {
        auto loss = loss::cross_entropy(m(autograd::Var<float, Cuda>(x.to<Cuda>())), y.to<Cuda>());
        loss.backward();
        opt.step();
        opt.zero_grad();
        return loss.value().item();
    };
    step();
    step();  // warm: algorithms chosen, optimizer state created, every size class cached
    const auto before = cuda::allocator_stats();
    const float l = step();
    const auto after = cuda::allocator_stats();
    BOOST_TEST(std::isfinite(l));
    BOOST_TEST(after.device_allocations == before.device_allocations);
    BOOST_TEST(after.device_frees == before.device_frees);
    BOOST_TEST(after.cache_hits > before.cache_hits);
    BOOST_TEST_MESSAGE("one step: " << (after.requests - before.requests) << " allocations, all from the cache; peak "
                                    << after.peak_bytes_in_use / (1 << 20) << " MiB");
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(resnet18_learns_a_tiny_two_class_set_on_the_gpu) {
    // As tests/cpu/test_resnet.cpp: class 1 has a bright 6x6 square at a random place.
    const auto set = medimg::test::two_class_squares();  // class 1: a bright 6x6 square
    const auto& x = set.x;
    const auto& y = set.y;
    nn::ResNet18<float, Cuda> m(nn::ResNetOptions{2, 1, 3});
    optim::Adam<float, Cuda> opt(m.named_parameters(), optim::AdamOptions{1e-3});
    const auto gx = x.to<Cuda>();
    const auto gy = y.to<Cuda>();
    double first = 0, last = 0;
    const int steps = 12;  // full-batch steps, as on the CPU
    for (int s = 0; s < steps; ++s) {
        auto loss = loss::cross_entropy(m(autograd::Var<float, Cuda>(gx)), gy);
        const double l = loss.value().item();
        if (s == 0) first = l;
        last = l;
        loss.backward();
        opt.step();
        opt.zero_grad();
    }
    BOOST_TEST_MESSAGE("loss " << first << " -> " << last << " in " << steps << " steps");
    BOOST_TEST(last < 0.1 * first);  // the CPU test's bound
}

BOOST_AUTO_TEST_SUITE_END()
