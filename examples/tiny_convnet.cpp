// SPDX-License-Identifier: MIT
// medimg-tiny-convnet: trains a small convnet on generated two-class "scans" for a few seconds on the
// CPU and prints the falling loss and the held-out accuracy. Class 0 ("normal") is a noisy
// elliptical phantom; class 1 ("lesao") is the same with a small soft bright spot. Everything is
// seeded, so two runs with the same thread count print the same numbers.
// It shows the functional autograd API without nn:: modules or the data pipeline. A research
// tool, not for clinical diagnosis.
#include <medimg/medimg.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <vector>

namespace {
using namespace medimg;
using namespace medimg::autograd;
using V = Var<float, Cpu>;

constexpr int kSide = 32;

/// One 1 x 32 x 32 image in [0, 1]: an ellipse of random size and brightness plus noise, and for
/// label 1 a Gaussian spot of random position, radius and contrast inside it.
void draw(Rng& rng, int label, float* img) {
    const double cx = rng.uniform(13, 19), cy = rng.uniform(13, 19);
    const double ax = rng.uniform(9, 13), ay = rng.uniform(10, 14), level = rng.uniform(0.35, 0.6);
    const double lx = cx + rng.uniform(-5, 5), ly = cy + rng.uniform(-5, 5);
    const double lr = rng.uniform(1.5, 3.0), lc = rng.uniform(0.25, 0.45);
    for (int y = 0; y < kSide; ++y)
        for (int x = 0; x < kSide; ++x) {
            const double e = std::pow((x - cx) / ax, 2) + std::pow((y - cy) / ay, 2);
            double v = e < 1.0 ? level : 0.05;
            if (label == 1) v += lc * std::exp(-((x - lx) * (x - lx) + (y - ly) * (y - ly)) / (2 * lr * lr));
            v += rng.normal(0.0, 0.05);
            img[y * kSide + x] = static_cast<float>(std::min(1.0, std::max(0.0, v)));
        }
}

struct Batch {
    Tensor<float> x;            // (N, 1, 32, 32)
    Tensor<std::int64_t> y;     // (N)
};
Batch make_set(Rng& rng, int n) {
    Batch b{Tensor<float>::empty({n, 1, kSide, kSide}), Tensor<std::int64_t>::empty({n})};
    for (int i = 0; i < n; ++i) {
        b.y[i] = i % 2;
        draw(rng, static_cast<int>(b.y[i]), b.x.data() + i * kSide * kSide);
    }
    return b;
}

/// conv3x3(1->16) BN ReLU maxpool -> conv3x3(16->32) BN ReLU maxpool -> global avg -> linear(32->2)
struct SmallNet {
    V w1, g1, b1, w2, g2, b2, fw, fb;
    Tensor<float> rm1 = Tensor<float>::zeros({16}), rv1 = Tensor<float>::ones({16});
    Tensor<float> rm2 = Tensor<float>::zeros({32}), rv2 = Tensor<float>::ones({32});
    explicit SmallNet(Rng& rng) {
        auto kaiming = [&](Shape s, double fan_in) {  // He et al. 2015: std = sqrt(2 / fan_in)
            auto t = Tensor<float>::empty(s);
            rng.fill_normal(t, 0.0, std::sqrt(2.0 / fan_in));
            return V::parameter(t);
        };
        w1 = kaiming({16, 1, 3, 3}, 9);
        w2 = kaiming({32, 16, 3, 3}, 144);
        fw = kaiming({2, 32}, 32);
        g1 = V::parameter(Tensor<float>::ones({16}));
        b1 = V::parameter(Tensor<float>::zeros({16}));
        g2 = V::parameter(Tensor<float>::ones({32}));
        b2 = V::parameter(Tensor<float>::zeros({32}));
        fb = V::parameter(Tensor<float>::zeros({2}));
    }
    std::vector<V*> parameters() { return {&w1, &g1, &b1, &w2, &g2, &b2, &fw, &fb}; }
    V forward(const V& x, bool train) {
        const ops::Conv2dParams same{1, 1, 1, 1, 1, 1};
        const ops::MaxPool2dParams pool{2, 2, 2, 2, 0, 0};
        auto h = max_pool2d(relu(batch_norm(conv2d(x, w1, V(), same), g1, b1, rm1, rv1, train)), pool);
        h = max_pool2d(relu(batch_norm(conv2d(h, w2, V(), same), g2, b2, rm2, rv2, train)), pool);
        return linear(flatten(adaptive_avg_pool2d(h)), fw, fb);
    }
};

double accuracy(SmallNet& net, const Batch& set) {
    NoGrad guard;
    const auto logits = net.forward(V(set.x), false).value();
    int right = 0;
    for (std::int64_t i = 0; i < set.y.numel(); ++i) right += ((logits[2 * i + 1] > logits[2 * i]) ? 1 : 0) == set.y[i];
    return static_cast<double>(right) / static_cast<double>(set.y.numel());
}
}  // namespace

int main() try {
    std::cout << "medimg " << medimg::version << " tiny convnet: a small convnet on generated phantom scans (CPU, "
              << num_threads() << " threads)\n"
              << "research software, not for clinical diagnosis\n";
    Rng rng(2024);
    const Batch train = make_set(rng, 1024), val = make_set(rng, 256);
    SmallNet net(rng);
    const int batch = 32, epochs = 12;
    const float lr = 0.05f, momentum = 0.9f;
    std::vector<Tensor<float>> velocity;
    for (V* p : net.parameters()) velocity.push_back(Tensor<float>::zeros(p->shape()));

    std::printf("before training: val accuracy %.1f%%\n", 100 * accuracy(net, val));
    const auto t0 = std::chrono::steady_clock::now();
    for (int epoch = 1; epoch <= epochs; ++epoch) {
        double loss_sum = 0;
        int steps = 0;
        for (std::int64_t start = 0; start + batch <= train.y.numel(); start += batch, ++steps) {
            V x(train.x.slice0(start, batch));
            auto loss = loss::cross_entropy(net.forward(x, true), train.y.slice0(start, batch));
            loss_sum += loss.value().item();
            loss.backward();
            NoGrad guard;  // SGD with momentum, PyTorch's rule: v = m v + g; p -= lr v
            auto params = net.parameters();
            for (std::size_t k = 0; k < params.size(); ++k) {
                ops::affine(velocity[k], momentum, 0.0f, velocity[k]);
                ops::add_(velocity[k], params[k]->grad());
                ops::axpy_(params[k]->value(), -lr, velocity[k]);
                params[k]->zero_grad();
            }
        }
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("epoch %d  train loss %.4f  val accuracy %.1f%%  (%.1f s, %.0f img/s)\n", epoch, loss_sum / steps,
                    100 * accuracy(net, val), secs, epoch * train.y.numel() / secs);
    }
    return 0;
} catch (const std::exception& e) {
    std::cerr << "medimg-tiny-convnet: " << e.what() << "\n";
    return 1;
}
