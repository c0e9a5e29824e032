// SPDX-License-Identifier: MIT
// bench_resnet.cpp: ResNet18 end to end on the CPU: the training step (forward, cross-entropy,
// backward, Adam) at batch 32 on 3x224x224 and 3x128x128, and inference (eval mode, NoGrad) at
// batch 1 and 32 on 3x224x224. Reports images per second. These are the workloads
// benchmarks/compare_pytorch.py runs in PyTorch for the ratio table in RESULTS.md.
#include <benchmark/benchmark.h>

#include <medimg/medimg.hpp>
#include <medimg/nn/nn.hpp>
#include <medimg/optim/optim.hpp>

namespace {
using namespace medimg;

Tensor<float> random_batch(std::int64_t n, std::int64_t side) {
    auto x = Tensor<float>::empty({n, 3, side, side});
    Rng(1).fill_normal(x, 0.0, 1.0);
    return x;
}

void BM_resnet18_train_step(benchmark::State& state) {
    const auto n = state.range(0), side = state.range(1);
    nn::ResNet18<float> model(nn::ResNetOptions{2, 3});
    optim::Adam<float> opt(model.named_parameters(), optim::AdamOptions{});
    const autograd::Var<float> x(random_batch(n, side));
    auto y = Tensor<std::int64_t>::empty({n});
    for (std::int64_t i = 0; i < n; ++i) y[i] = i % 2;
    model.train();
    for (auto _ : state) {
        auto loss = loss::cross_entropy(model(x), y);
        loss.backward();
        opt.step();
        opt.zero_grad();
        benchmark::DoNotOptimize(loss.value().data());
    }
    state.counters["img/s"] = benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate);
    state.counters["threads"] = num_threads();
}

void BM_resnet18_inference(benchmark::State& state) {
    const auto n = state.range(0), side = state.range(1);
    nn::ResNet18<float> model(nn::ResNetOptions{2, 3});
    model.eval();
    const autograd::Var<float> x(random_batch(n, side));
    autograd::NoGrad guard;
    for (auto _ : state) {
        auto logits = model(x);
        benchmark::DoNotOptimize(logits.value().data());
    }
    state.counters["img/s"] = benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate);
}
}  // namespace

BENCHMARK(BM_resnet18_train_step)->ArgNames({"N", "side"})->Args({32, 224})->Args({32, 128})->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(5.0);
BENCHMARK(BM_resnet18_inference)->ArgNames({"N", "side"})->Args({1, 224})->Args({32, 224})->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(3.0);
