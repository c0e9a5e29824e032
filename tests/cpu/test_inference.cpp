// SPDX-License-Identifier: MIT
// Tests for the inference path (nn/inference.hpp, cpu/inference.hpp): eval-mode ResNets under
// NoGrad with BatchNorm folded into the convolutions, pre-packed filters and the fused
// bias + residual + ReLU epilogue give the unfused modules' logits within float rounding, at every
// depth, on both convolution algorithms (ctest runs this file again with MEDIMG_WINOGRAD=always),
// in float and double; the folded form follows every change of the weights (optimizer steps,
// BN statistics, load_state_dict, copy_); hooks still see their modules' outputs; and the packed
// GEMM is the plain GEMM to the bit. In training, the fused batch norm + ReLU (BatchNorm2d::
// forward_relu) gives the modules' loss, gradients and statistics, and leaves hooked modules alone.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "helpers.hpp"
#include "medimg/medimg.hpp"

using namespace medimg;

namespace {

/// Folding rounds each filter once more (w * s in double, then to T) and the sums run in another
/// order only where the epilogue moved; through ResNet50's ~50 layers the float logits moved by a
/// few 1e-6 relative in measurement: 1e-4 / 1e-4 keeps a margin yet catches a wrong fold (a missing
/// eps or mean moves them by 1e-2 and more).
constexpr double kRtol = 1e-4, kAtol = 1e-4;

/// Switches the inference path on or off for a scope.
struct FusedScope {
    bool old;
    explicit FusedScope(bool on) : old(nn::fused_inference()) { nn::fused_inference() = on; }
    ~FusedScope() { nn::fused_inference() = old; }
};

/// Non-trivial BatchNorm state everywhere: gamma, beta, running mean and variance drawn at random
/// (with fresh modules they are 1, 0, 0, 1 and folding would hardly be exercised).
template <class T>
void randomise_bn(nn::Module<T, Cpu>& m, std::uint64_t seed) {
    Rng rng(seed);
    for (auto& e : m.state_dict()) {
        const auto& n = e.name;
        auto fill = [&](double lo, double hi) {
            auto h = Tensor<T, Cpu>::empty(e.value.shape());
            for (std::int64_t i = 0; i < h.numel(); ++i) h.data()[i] = static_cast<T>(rng.uniform(lo, hi));
            e.value.copy_(h);
        };
        auto ends = [&](const char* s) { return n.size() >= std::string(s).size() && n.compare(n.size() - std::string(s).size(), std::string::npos, s) == 0; };
        if (n.find("bn") == std::string::npos && n.find("downsample.1") == std::string::npos) continue;
        if (ends("running_var")) fill(0.5, 2.0);
        else if (ends("running_mean")) fill(-0.3, 0.3);
        else if (ends("weight")) fill(0.5, 1.5);
        else if (ends("bias")) fill(-0.2, 0.2);
    }
}

template <class T>
Tensor<T, Cpu> input(std::int64_t n, std::int64_t side, std::uint64_t seed) {
    Rng rng(seed);
    auto x = Tensor<T, Cpu>::empty({n, 3, side, side});
    for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = static_cast<T>(rng.normal(0.0, 1.0));
    return x;
}

/// Logits under NoGrad with the inference path on or off.
template <class T>
Tensor<T, Cpu> logits(nn::Module<T, Cpu>& m, const Tensor<T, Cpu>& x, bool fused) {
    FusedScope f(fused);
    autograd::NoGrad g;
    return m(autograd::Var<T, Cpu>(x)).value().clone();
}

template <class Model>
void check_equivalent(std::int64_t n, std::int64_t side) {
    Model m(nn::ResNetOptions{3, 3, 5});
    randomise_bn(m, 17);
    m.eval();
    const auto x = input<float>(n, side, 3);
    const auto plain = logits(m, x, false), fused = logits(m, x, true);
    MEDIMG_CHECK_CLOSE_TENSORS(fused, plain, kRtol, kAtol);
    // and again: the second call uses the cached folded filters
    MEDIMG_CHECK_CLOSE_TENSORS(logits(m, x, true), plain, kRtol, kAtol);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(inference_path)

BOOST_AUTO_TEST_CASE(resnet18_fused_equals_unfused_at_batch_1_and_4) {
    check_equivalent<nn::ResNet18<float>>(1, 64);
    check_equivalent<nn::ResNet18<float>>(4, 40);  // layer4 at 2x2: images side by side in one GEMM
}

BOOST_AUTO_TEST_CASE(resnet34_fused_equals_unfused) { check_equivalent<nn::ResNet34<float>>(2, 48); }

BOOST_AUTO_TEST_CASE(resnet50_fused_equals_unfused) { check_equivalent<nn::ResNet50<float>>(2, 40); }

BOOST_AUTO_TEST_CASE(double_fused_equals_unfused_closely) {
    nn::ResNet18<double> m(nn::ResNetOptions{2, 3, 9});
    randomise_bn(m, 4);
    m.eval();
    const auto x = input<double>(2, 40, 8);
    MEDIMG_CHECK_CLOSE_TENSORS(logits(m, x, true), logits(m, x, false), 1e-10, 1e-10);
}

BOOST_AUTO_TEST_CASE(folded_form_follows_training_steps_and_loads) {
    nn::ResNet18<float> m(nn::ResNetOptions{2, 3, 1});
    const auto x = input<float>(2, 40, 5);
    auto y = Tensor<std::int64_t, Cpu>::empty({2});
    y[0] = 0;
    y[1] = 1;
    optim::Adam<float> opt(m.named_parameters(), optim::AdamOptions{1e-2});
    for (int round = 0; round < 3; ++round) {
        m.train();  // a step changes weights (optimizer) and BN statistics (forward)
        auto loss = loss::cross_entropy(m(autograd::Var<float, Cpu>(x)), y);
        opt.zero_grad();
        loss.backward();
        opt.step();
        m.eval();
        const auto fused = logits(m, x, true);
        MEDIMG_CHECK_CLOSE_TENSORS(fused, logits(m, x, false), kRtol, kAtol);
    }
    // load_state_dict from another model: the cache must not keep the old filters
    nn::ResNet18<float> other(nn::ResNetOptions{2, 3, 77});
    randomise_bn(other, 78);
    std::map<std::string, Tensor<float, Cpu>> sd;
    for (auto& e : other.state_dict()) sd.emplace(e.name, e.value);
    m.load_state_dict(sd);
    other.eval();
    MEDIMG_CHECK_CLOSE_TENSORS(logits(m, x, true), logits(other, x, false), kRtol, kAtol);
    // a single BN statistic changed through copy_ is seen as well
    for (auto& e : m.state_dict())
        if (e.name == "layer3.1.bn2.running_mean") e.value.copy_(Tensor<float, Cpu>::full(e.value.shape(), 0.25f));
    MEDIMG_CHECK_CLOSE_TENSORS(logits(m, x, true), logits(m, x, false), kRtol, kAtol);
    // a write through data() announced with bump_version()
    for (auto& [n, p] : m.named_parameters())
        if (n == "layer1.0.conv1.weight") {
            p.value().data()[0] += 1.0f;
            p.value().bump_version();
        }
    MEDIMG_CHECK_CLOSE_TENSORS(logits(m, x, true), logits(m, x, false), kRtol, kAtol);
}

BOOST_AUTO_TEST_CASE(hooks_on_folded_modules_still_run) {
    nn::ResNet18<float> m(nn::ResNetOptions{2, 3, 2});
    m.eval();
    const auto x = input<float>(1, 40, 6);
    auto block = m.child("layer2")->child("0");
    int bn_calls = 0, down_calls = 0;
    Shape seen;
    auto h1 = block->child("bn1")->register_forward_hook([&](nn::Module<float, Cpu>&, const autograd::Var<float, Cpu>&,
                                                             const autograd::Var<float, Cpu>& out) {
        ++bn_calls;
        seen = out.shape();
        return autograd::Var<float, Cpu>();
    });
    auto h2 = block->child("downsample")->register_forward_hook(
        [&](nn::Module<float, Cpu>&, const autograd::Var<float, Cpu>&, const autograd::Var<float, Cpu>&) {
            ++down_calls;
            return autograd::Var<float, Cpu>();
        });
    const auto hooked = logits(m, x, true);
    BOOST_TEST(bn_calls == 1);
    BOOST_TEST(down_calls == 1);
    BOOST_TEST(seen == (Shape{1, 128, 5, 5}));
    h1.remove();
    h2.remove();
    MEDIMG_CHECK_CLOSE_TENSORS(logits(m, x, true), hooked, kRtol, kAtol);  // folded again without them
}

BOOST_AUTO_TEST_CASE(training_mode_and_grad_mode_keep_the_modules) {
    nn::ResNet18<float> m(nn::ResNetOptions{2, 3, 2});
    const auto x = input<float>(2, 40, 6);
    m.eval();
    // with gradients on, eval mode still records the graph through the modules
    auto out = m(autograd::Var<float, Cpu>(x, true));
    BOOST_TEST(out.requires_grad());
}

/// One training forward + backward of m on x with BatchNorm2d::forward_relu fused or not: the
/// loss, every parameter's gradient and every buffer afterwards.
struct Step {
    double loss;
    std::vector<Tensor<float, Cpu>> grads, buffers;
};
Step train_step(std::uint64_t seed, const Tensor<float, Cpu>& x, bool fused) {
    struct Scope {
        bool old = nn::fused_batch_norm_relu();
        ~Scope() { nn::fused_batch_norm_relu() = old; }
    } scope;
    nn::fused_batch_norm_relu() = fused;
    nn::ResNet18<float> m(nn::ResNetOptions{3, 3, seed});
    m.train();
    const auto t = Tensor<std::int64_t, Cpu>::from_vector({4}, {0, 2, 1, 1});
    auto loss = loss::cross_entropy(m(autograd::Var<float, Cpu>(x)), t);
    loss.backward();
    Step s{loss.value().item(), {}, {}};
    for (auto& p : m.parameters()) s.grads.push_back(p.grad().clone());
    for (auto& e : m.state_dict()) s.buffers.push_back(e.value.clone());
    return s;
}

BOOST_AUTO_TEST_CASE(fused_batch_norm_relu_trains_as_the_modules) {
    // ResNet18 in training mode with every BN + (residual add) + ReLU as one op against the modules
    // one by one: the same loss, gradients and running statistics within float rounding. The
    // forward is the same to the bit; the fused backward writes dx with per-channel float
    // coefficients (~1e-7 relative apart), which the convolutions' backward carries to the
    // parameters' gradients: up to 9.4e-6 absolute with every 3x3 through F(4x4) (ctest's
    // cpu.inference.winograd), so the PyTorch parity tolerance (1e-4 / 1e-5, test_resnet.cpp).
    const auto x = input<float>(4, 40, 8);
    const Step fused = train_step(4, x, true), plain = train_step(4, x, false);
    BOOST_TEST(std::abs(fused.loss - plain.loss) <= 1e-6 * std::abs(plain.loss));
    BOOST_REQUIRE(fused.grads.size() == plain.grads.size());
    for (std::size_t i = 0; i < fused.grads.size(); ++i) MEDIMG_CHECK_CLOSE_TENSORS(fused.grads[i], plain.grads[i], 1e-4, 1e-5);
    BOOST_REQUIRE(fused.buffers.size() == plain.buffers.size());
    for (std::size_t i = 0; i < fused.buffers.size(); ++i) MEDIMG_CHECK_CLOSE_TENSORS(fused.buffers[i], plain.buffers[i], 1e-6, 1e-7);
}

BOOST_AUTO_TEST_CASE(hooks_on_a_batch_norm_see_its_own_output_in_training) {
    // A forward hook on bn1 must see batch norm's output before the ReLU (negative values
    // included): the block then runs its modules one by one.
    nn::ResNet18<float> m(nn::ResNetOptions{2, 3, 2});
    m.train();
    auto bn = m.child("layer1")->child("0")->child("bn1");
    double smallest = 0.0;
    auto h = bn->register_forward_hook(
        [&](nn::Module<float, Cpu>&, const autograd::Var<float, Cpu>&, const autograd::Var<float, Cpu>& out) {
            for (float v : out.value().to_vector()) smallest = std::min(smallest, static_cast<double>(v));
            return autograd::Var<float, Cpu>();
        });
    int grads = 0;
    auto hb = bn->register_backward_hook([&](nn::Module<float, Cpu>&, const Tensor<float, Cpu>&) { ++grads; });
    autograd::sum(m(autograd::Var<float, Cpu>(input<float>(2, 40, 6)))).backward();
    BOOST_TEST(smallest < -0.1);
    BOOST_TEST(grads == 1);
}

BOOST_AUTO_TEST_CASE(packed_gemm_is_the_plain_gemm_bit_for_bit) {
    if (!cpu::sgemm::available()) return;
    Rng rng(3);
    for (auto [m, n, k] : {std::tuple<std::int64_t, std::int64_t, std::int64_t>{1, 1, 1}, {13, 37, 300}, {200, 65, 513},
                           {64, 3136, 576}}) {
        std::vector<float> a(static_cast<std::size_t>(m * k)), b(static_cast<std::size_t>(k * n));
        for (auto& v : a) v = static_cast<float>(rng.normal(0.0, 1.0));
        for (auto& v : b) v = static_cast<float>(rng.normal(0.0, 1.0));
        std::vector<float> c1(static_cast<std::size_t>(m * n)), c2(c1.size());
        cpu::sgemm::gemm(m, n, k, {a.data(), k, false}, {b.data(), n, false}, c1.data(), n, false);
        cpu::PackedWeights<float> w;
        w.assign(a.data(), m, k);
        w.multiply(n, b.data(), n, c2.data(), n, false);
        BOOST_TEST(c1 == c2, "m " << m << " n " << n << " k " << k);
    }
}

BOOST_AUTO_TEST_SUITE_END()
