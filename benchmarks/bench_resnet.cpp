// SPDX-License-Identifier: MIT
// bench_resnet.cpp: the classification models end to end on the CPU (resnet18, densenet121,
// efficientnet_b0, vit_tiny_patch16_224, vit_small_patch16_224; 2 classes): the training step
// (forward, cross-entropy, backward, Adam) at batch 32 on 3x224x224 and (the CNNs) 3x128x128, and
// inference (eval mode, NoGrad) at batch 1 and 32 on 3x224x224. Reports images per second. Benchmarks are named BM_<model>_train_step and
// BM_<model>_inference; these are the workloads benchmarks/compare_pytorch.py runs in PyTorch for
// the ratio table in RESULTS.md.
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

void train_step(benchmark::State& state, const std::string& arch) {
    const auto n = state.range(0), side = state.range(1);
    auto model = nn::make_model<float>(arch, nn::ModelOptions{2, 3});
    optim::Adam<float> opt(model->named_parameters(), optim::AdamOptions{});
    const autograd::Var<float> x(random_batch(n, side));
    auto y = Tensor<std::int64_t>::empty({n});
    for (std::int64_t i = 0; i < n; ++i) y[i] = i % 2;
    model->train();
    for (auto _ : state) {
        auto loss = loss::cross_entropy((*model)(x), y);
        loss.backward();
        opt.step();
        opt.zero_grad();
        benchmark::DoNotOptimize(loss.value().data());
    }
    state.counters["img/s"] = benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate);
    state.counters["threads"] = num_threads();
}

void inference(benchmark::State& state, const std::string& arch) {
    const auto n = state.range(0), side = state.range(1);
    auto model = nn::make_model<float>(arch, nn::ModelOptions{2, 3});
    model->eval();
    const autograd::Var<float> x(random_batch(n, side));
    autograd::NoGrad guard;
    for (auto _ : state) {
        auto logits = (*model)(x);
        benchmark::DoNotOptimize(logits.value().data());
    }
    state.counters["img/s"] = benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate);
}

const bool registered = [] {
    for (const std::string arch : {"resnet18", "densenet121", "efficientnet_b0", "vit_tiny_patch16_224", "vit_small_patch16_224"}) {
        auto* t = benchmark::RegisterBenchmark(("BM_" + arch + "_train_step").c_str(), train_step, arch)
                      ->ArgNames({"N", "side"})->Args({32, 224})->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(5.0);
        if (!nn::is_vit(arch)) t->Args({32, 128});  // a ViT at 128 would resample its 14x14 grid: not the workload timm times
        benchmark::RegisterBenchmark(("BM_" + arch + "_inference").c_str(), inference, arch)
            ->ArgNames({"N", "side"})->Args({1, 224})->Args({32, 224})->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(3.0);
    }
    return true;
}();
}  // namespace
