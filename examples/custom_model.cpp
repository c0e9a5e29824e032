// SPDX-License-Identifier: MIT
// medimg-custom-model: the model of docs/extending.md, a 4-layer CNN written from the public API
// alone, trained for a few steps on phantom slices, then explained with Grad-CAM and saved and
// reloaded by name. What it shows: an nn::ImageClassifier subclass (forward_features /
// forward_head, the default Grad-CAM layer), submodules registered under PyTorch-style names,
// the optimizer over named_parameters, a forward hook, a state_dict round trip. Prints what it
// does; exits 1 on any failure. A research tool, not for clinical diagnosis.
#include <medimg/medimg.hpp>

#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <string>

using namespace medimg;

// ---- the model (the code docs/extending.md walks through) ----------------------------------
/// conv-bn-relu x4 (16, 32, 64, 64 channels; stride 2 from the second) -> global average -> fc.
template <class T, class B = Cpu>
class SmallCnn : public nn::ImageClassifier<T, B> {
public:
    using Var = autograd::Var<T, B>;
    SmallCnn(std::int64_t in_channels, std::int64_t classes, std::uint64_t seed) {
        Rng rng(seed);
        features_ = this->register_module("features", std::make_shared<nn::Sequential<T, B>>());
        std::int64_t c = in_channels;
        const std::int64_t widths[4] = {16, 32, 64, 64};
        for (int i = 0; i < 4; ++i) {
            auto block = std::make_shared<nn::Sequential<T, B>>();  // "features.<i>.{conv,bn,relu}"
            block->push_back("conv", std::make_shared<nn::Conv2d<T, B>>(
                                         nn::Conv2dOptions{c, widths[i], 3, i == 0 ? 1 : 2, 1, 1, false}, rng));
            block->push_back("bn", std::make_shared<nn::BatchNorm2d<T, B>>(nn::BatchNorm2dOptions{widths[i]}));
            block->push_back("relu", std::make_shared<nn::ReLU<T, B>>());
            features_->push_back(block);
            c = widths[i];
        }
        fc_ = this->register_module("fc", std::make_shared<nn::Linear<T, B>>(nn::LinearOptions{c, classes}, rng));
    }
    Var forward_features(const Var& x) override { return (*features_)(x); }
    Var forward_head(const Var& f, bool pre_logits = false) override {
        auto pooled = autograd::flatten(autograd::adaptive_avg_pool2d(f, 1, 1));
        return pre_logits ? pooled : (*fc_)(pooled);
    }
    std::int64_t num_features() const override { return 64; }
    std::string default_cam_layer(std::int64_t) const override { return "features.3"; }  // 1/8 of the side

private:
    std::shared_ptr<nn::Sequential<T, B>> features_;
    std::shared_ptr<nn::Linear<T, B>> fc_;
};

// ---- using it ---------------------------------------------------------------------------------
int main(int argc, char** argv) try {
    if (argc > 1) {
        std::cout << "usage: medimg-custom-model   (no options: trains, explains and reloads the model of docs/extending.md)\n";
        return std::string(argv[1]) == "--help" ? 0 : 1;
    }
    using V = autograd::Var<float>;
    SmallCnn<float> model(1, 2, 42);
    std::cout << "SmallCnn: " << model.parameter_count() << " parameters; first names:";
    for (std::size_t i = 0; i < 3; ++i) std::cout << " " << model.named_parameters()[i].first;
    std::cout << "\n";

    // 64 phantom slices (half with a lesion), 48 x 48, from the library's generator
    Rng rng(3);
    const std::int64_t N = 64, S = 48;
    auto x = Tensor<float>::empty({N, 1, S, S});
    auto y = Tensor<std::int64_t>::empty({N});
    for (std::int64_t i = 0; i < N; ++i) {
        y[i] = i % 2;
        const auto slice = data::phantom_slice(rng, S, y[i] == 1);
        std::copy(slice.data(), slice.data() + S * S, x.data() + i * S * S);
    }
    optim::Adam<float> opt(model.named_parameters(), optim::AdamOptions{3e-3});
    for (int step = 1; step <= 40; ++step) {
        model.train();
        opt.zero_grad();
        auto loss = loss::cross_entropy(model(V(x)), y);
        loss.backward();
        opt.step();
        if (step % 10 == 0) {
            const auto p = nn::predict_proba(model, x);  // eval mode: BN's running statistics
            int right = 0;
            for (std::int64_t i = 0; i < N; ++i) right += (p[i * 2 + 1] > 0.5) == (y[i] == 1);
            std::printf("step %d  train loss %.4f  eval accuracy %d/%lld\n", step, loss.value().item(), right,
                        static_cast<long long>(N));
        }
    }

    // a forward hook sees features.3's output; Grad-CAM explains the same layer by default
    model.eval();
    Shape seen;
    auto handle = model.module("features.3").register_forward_hook([&](nn::Module<float>&, const V&, const V& out) {
        seen = out.shape();
        return V();
    });
    explain::CamOptions co;
    co.layer = model.default_cam_layer(S);
    co.classes = {1};
    const auto cam = explain::grad_cam(model, x.slice0(1, 1), co);
    std::cout << "hook saw features.3 output " << seen << "; Grad-CAM map " << cam.heatmap.shape() << " at " << co.layer << "\n";

    // the state_dict round trip (what a checkpoint stores) gives the same logits
    std::map<std::string, Tensor<float>> state;
    for (const auto& e : model.state_dict()) state[e.name] = e.value.clone();
    SmallCnn<float> again(1, 2, 7);
    again.load_state_dict(state);
    again.eval();
    autograd::NoGrad guard;
    const auto a = model(V(x)).value().to_vector(), b = again(V(x)).value().to_vector();
    MEDIMG_CHECK(a == b, ValueError, "the reloaded model gives other logits");
    const auto p = nn::predict_proba(again, x.slice0(1, 1));
    std::printf("reloaded: same logits; p(lesao) of a lesion slice %.3f\n", p[1]);
    return 0;
} catch (const std::exception& e) {
    std::cerr << "medimg-custom-model: " << e.what() << "\n";
    return 1;
}
