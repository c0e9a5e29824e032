// SPDX-License-Identifier: MIT
// bench_explain.cpp: the cost of an explanation of one 3x224x224 image by ResNet18 (2 classes) on
// the CPU, beside a plain prediction of the same image: Grad-CAM and Grad-CAM++ at layer4 (one
// forward pass, a backward pass from the logits down to layer4 only, the map on the host) and
// occlusion with patch 32 / stride 16 (169 occluded copies in forward batches of 32).
// benchmarks/compare_explain_pytorch.py times the same work with pytorch-grad-cam and Captum.
#include <benchmark/benchmark.h>

#include <medimg/medimg.hpp>

namespace {
using namespace medimg;

enum Work : int { predict = 0, gradcam = 1, gradcampp = 2, occlusion = 3 };

void BM_explain(benchmark::State& state) {
    const auto work = static_cast<Work>(state.range(0));
    nn::ResNet18<float> model(nn::ResNetOptions{2, 3});
    model.eval();
    auto x = Tensor<float>::empty({1, 3, 224, 224});
    Rng(1).fill_normal(x, 0.0, 1.0);
    for (auto _ : state) {
        if (work == predict) {
            autograd::NoGrad guard;
            auto logits = model(autograd::Var<float>(x));
            benchmark::DoNotOptimize(logits.value().data());
        } else if (work == occlusion) {
            explain::OcclusionOptions o;  // patch 32, stride 16, batches of 32
            auto e = explain::occlusion(model, x, o);
            benchmark::DoNotOptimize(e.heatmap.data());
        } else {
            explain::CamOptions o;
            o.method = work == gradcam ? explain::CamMethod::grad_cam : explain::CamMethod::grad_cam_pp;
            o.layer = "layer4";
            auto e = explain::grad_cam(model, x, o);
            benchmark::DoNotOptimize(e.heatmap.data());
        }
    }
    state.counters["threads"] = num_threads();
}
}  // namespace

// work: 0 = plain prediction (NoGrad), 1 = Grad-CAM, 2 = Grad-CAM++, 3 = occlusion 32/16
BENCHMARK(BM_explain)->ArgNames({"work"})->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_explain)->ArgNames({"work"})->Arg(3)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(5.0);
