// SPDX-License-Identifier: MIT
// bench_conv2d.cpp: the CPU convolution kernels on ResNet18's shapes at batch 8, plus the
// one-channel 256x256 medical stem. Reports GFLOP/s (2 * N * C_out * Ho * Wo * C_in * kH * kW
// per pass). Args: N, C_in, H, W, C_out, k, stride, pad.
#include <benchmark/benchmark.h>

#include <medimg/medimg.hpp>

namespace {
using namespace medimg;

struct ConvArgs {
    Tensor<float> x, w, y, dy, dx, dw;
    ops::Conv2dParams p;
    double flops;
};
ConvArgs setup(const benchmark::State& s) {
    const auto N = s.range(0), C = s.range(1), H = s.range(2), W = s.range(3), Co = s.range(4), k = s.range(5);
    ConvArgs a;
    a.p = {s.range(6), s.range(6), s.range(7), s.range(7), 1, 1};
    Rng rng(1);
    a.x = Tensor<float>::empty({N, C, H, W});
    a.w = Tensor<float>::empty({Co, C, k, k});
    rng.fill_uniform(a.x, -1, 1);
    rng.fill_uniform(a.w, -1, 1);
    const Shape ys = ops::conv2d_output_shape("bench", a.x.shape(), a.w.shape(), a.p);
    a.y = Tensor<float>::empty(ys);
    a.dy = Tensor<float>::full(ys, 0.5f);
    a.dx = Tensor<float>::empty(a.x.shape());
    a.dw = Tensor<float>::empty(a.w.shape());
    a.flops = 2.0 * ys.numel() * C * k * k;
    return a;
}

void BM_conv2d_forward(benchmark::State& state) {
    auto a = setup(state);
    for (auto _ : state) {
        ops::conv2d_forward(a.x, a.w, Tensor<float>(), a.y, a.p);
        benchmark::DoNotOptimize(a.y.data());
    }
    state.counters["GFLOP/s"] = benchmark::Counter(a.flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
void BM_conv2d_backward_data(benchmark::State& state) {
    auto a = setup(state);
    for (auto _ : state) {
        ops::conv2d_backward_data(a.dy, a.w, a.dx, a.p);
        benchmark::DoNotOptimize(a.dx.data());
    }
    state.counters["GFLOP/s"] = benchmark::Counter(a.flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
void BM_conv2d_backward_filter(benchmark::State& state) {
    auto a = setup(state);
    for (auto _ : state) {
        ops::conv2d_backward_filter(a.x, a.dy, a.dw, a.p);
        benchmark::DoNotOptimize(a.dw.data());
    }
    state.counters["GFLOP/s"] = benchmark::Counter(a.flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void resnet18_shapes(benchmark::internal::Benchmark* b) {
    b->ArgNames({"N", "Cin", "H", "W", "Cout", "k", "s", "p"});
    b->Args({8, 3, 224, 224, 64, 7, 2, 3});   // stem
    b->Args({8, 64, 56, 56, 64, 3, 1, 1});    // layer1
    b->Args({8, 128, 28, 28, 128, 3, 1, 1});  // layer2
    b->Args({8, 256, 14, 14, 256, 3, 1, 1});  // layer3
    b->Args({8, 512, 7, 7, 512, 3, 1, 1});    // layer4
    b->Args({8, 256, 14, 14, 512, 1, 2, 0});  // layer4 downsample
    b->Args({8, 1, 256, 256, 64, 7, 2, 3});   // one-channel medical stem
    b->Unit(benchmark::kMillisecond)->UseRealTime();
}
}  // namespace

BENCHMARK(BM_conv2d_forward)->Apply(resnet18_shapes);
BENCHMARK(BM_conv2d_backward_data)->Apply(resnet18_shapes);
BENCHMARK(BM_conv2d_backward_filter)->Apply(resnet18_shapes);
