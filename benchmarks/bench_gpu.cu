// SPDX-License-Identifier: MIT
// bench_gpu.cu: ResNet18 on the GPU (medimg-bench-gpu): the training step (forward, cross-entropy,
// backward, SGD with momentum) at batch 64 and 256 on 3x224x224, and inference (eval, NoGrad) at
// batch 1 and 256, with FP32 math, with TF32 tensor cores (cuda::settings().allow_tf32,
// PyTorch's default for cuDNN convolutions), and mixed precision: bf16 / fp16 convolutions and
// linear layers (cuda::settings().precision; fp16 training with the GradScaler). cuDNN algorithms are chosen by timing
// (settings().cudnn_benchmark, as torch.backends.cudnn.benchmark = True) during warm-up, outside
// the timed loop. Batches stay on the device (the input copy is not timed). Times come from CUDA
// events around each iteration (UseManualTime); img/s = N * iterations / summed event time.
// benchmarks/bench_gpu_pytorch.py runs the same workloads in PyTorch for the ratios in RESULTS.md.
// Also SSIM on the GPU: the metric and the differentiable SSIM's forward + backward (Mpix/s).
// The argument "math": 0 fp32, 1 tf32, 2 bf16, 3 fp16 (both with half activations, autocast's way),
// 4 bf16 with float32 activations (cuda::settings().half_activations off: the A/B of half storage).
// Deliberately not here: multi-GPU.
#include <benchmark/benchmark.h>

#include <medimg/medimg.hpp>

namespace {
using namespace medimg;

/// Elapsed GPU time between two events on medimg's stream.
class GpuTimer {
public:
    GpuTimer() {
        MEDIMG_CUDA_CHECK(cudaEventCreate(&start_));
        MEDIMG_CUDA_CHECK(cudaEventCreate(&stop_));
    }
    ~GpuTimer() {
        (void)cudaEventDestroy(start_);
        (void)cudaEventDestroy(stop_);
    }
    void start() { MEDIMG_CUDA_CHECK(cudaEventRecord(start_, cuda::stream())); }
    double stop_seconds() {
        MEDIMG_CUDA_CHECK(cudaEventRecord(stop_, cuda::stream()));
        MEDIMG_CUDA_CHECK(cudaEventSynchronize(stop_));
        float ms = 0.0f;
        MEDIMG_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
        return static_cast<double>(ms) / 1e3;
    }

private:
    cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

bool ready(benchmark::State& state) {
    if (cuda::device_count() > 0) return true;
    state.SkipWithError("no CUDA device");
    return false;
}

enum Math : int { kFp32 = 0, kTf32 = 1, kBf16 = 2, kFp16 = 3, kBf16FloatActivations = 4 };

void configure(std::int64_t math) {
    cuda::settings().allow_tf32 = math == kTf32;
    cuda::settings().precision = math == kBf16 || math == kBf16FloatActivations ? Precision::bf16
                                 : math == kFp16                                ? Precision::fp16
                                                                                : Precision::fp32;
    cuda::settings().half_activations = math != kBf16FloatActivations;
    cuda::settings().cudnn_benchmark = true;
    cuda::settings().deterministic = false;  // as PyTorch's default: the fastest algorithm
}

Tensor<float, Cuda> random_batch(std::int64_t n, std::int64_t side) {
    auto x = Tensor<float, Cpu>::empty({n, 3, side, side});
    Rng(1).fill_normal(x, 0.0, 1.0);
    return x.to<Cuda>();
}

void report(benchmark::State& state, std::int64_t n, double seconds, std::int64_t iterations) {
    state.counters["img/s"] = seconds > 0 ? static_cast<double>(n * iterations) / seconds : 0.0;
    const auto s = cuda::allocator_stats();
    state.counters["peak_MiB"] = static_cast<double>(s.peak_bytes_in_use) / (1 << 20);
}

// Args: N, side, math
void BM_resnet18_train_step(benchmark::State& state) {
    if (!ready(state)) return;
    const auto n = state.range(0), side = state.range(1);
    configure(state.range(2));
    optim::GradScaler<float, Cuda> scaler;  // fp16 only, as torch.amp
    const bool scaled = state.range(2) == kFp16;
    nn::ResNet18<float, Cuda> model(nn::ResNetOptions{2, 3});
    optim::SGDOptions so(0.01);
    so.momentum = 0.9;
    so.weight_decay = 1e-4;
    optim::SGD<float, Cuda> opt(model.named_parameters(), so);
    const autograd::Var<float, Cuda> x(random_batch(n, side));
    auto host_y = Tensor<std::int64_t, Cpu>::empty({n});
    for (std::int64_t i = 0; i < n; ++i) host_y[i] = i % 2;
    const auto y = host_y.to<Cuda>();
    model.train();
    auto step = [&] {
        auto loss = loss::cross_entropy(model(x), y);
        if (scaled) {
            scaler.scale(loss).backward();
            scaler.step(opt);  // reads one flag back, as torch's GradScaler.step
            scaler.update();
        } else {
            loss.backward();
            opt.step();
        }
        opt.zero_grad();
        return loss;
    };
    for (int i = 0; i < 3; ++i) step();  // algorithm search, optimizer state, allocator cache
    cuda::synchronize();
    cuda::CachingAllocator::instance().reset_peak();
    GpuTimer timer;
    double total = 0.0;
    for (auto _ : state) {
        timer.start();
        auto loss = step();
        const double t = timer.stop_seconds();
        state.SetIterationTime(t);
        total += t;
        benchmark::DoNotOptimize(loss.value().data());
    }
    report(state, n, total, static_cast<std::int64_t>(state.iterations()));
}

void BM_resnet18_inference(benchmark::State& state) {
    if (!ready(state)) return;
    const auto n = state.range(0), side = state.range(1);
    configure(state.range(2));
    nn::ResNet18<float, Cuda> model(nn::ResNetOptions{2, 3});
    model.eval();
    const autograd::Var<float, Cuda> x(random_batch(n, side));
    autograd::NoGrad guard;
    for (int i = 0; i < 3; ++i) model(x);
    cuda::synchronize();
    cuda::CachingAllocator::instance().reset_peak();
    GpuTimer timer;
    double total = 0.0;
    for (auto _ : state) {
        timer.start();
        auto logits = model(x);
        const double t = timer.stop_seconds();
        state.SetIterationTime(t);
        total += t;
        benchmark::DoNotOptimize(logits.value().data());
    }
    report(state, n, total, static_cast<std::int64_t>(state.iterations()));
}

// SSIM on the GPU (cuda/ssim.cuh): the metric (mean only, as medimg-compare asks) on C planes of
// side x side, and the differentiable SSIM's forward + backward (a loss on a batch).
// Args: planes, side, window (0 uniform 7x7, 1 Gaussian 11x11). Counter: megapixels per second.
std::pair<Tensor<float, Cuda>, Tensor<float, Cuda>> ssim_pair(std::int64_t planes, std::int64_t side) {
    auto a = Tensor<float, Cpu>::empty({planes, side, side}), b = Tensor<float, Cpu>::empty({planes, side, side});
    Rng rng(2);
    for (std::int64_t i = 0; i < a.numel(); ++i) {
        a[i] = static_cast<float>(rng.uniform(0.0, 1.0));
        b[i] = 0.7f * a[i] + 0.3f * static_cast<float>(rng.uniform(0.0, 1.0));
    }
    return {a.to<Cuda>(), b.to<Cuda>()};
}
metrics::SsimOptions ssim_window(std::int64_t w) {
    return w ? metrics::SsimOptions::wang2004() : metrics::SsimOptions::skimage_default();
}

void BM_ssim_metric(benchmark::State& state) {
    if (!ready(state)) return;
    const auto planes = state.range(0), side = state.range(1);
    const auto [a, b] = ssim_pair(planes, side);
    const auto o = ssim_window(state.range(2));
    benchmark::DoNotOptimize(metrics::ssim(a, b, o).mean);  // warm-up: scratch sizes cached
    GpuTimer timer;
    double total = 0.0;
    for (auto _ : state) {
        timer.start();
        const double m = metrics::ssim(a, b, o).mean;  // includes the read of the per-plane sums
        const double t = timer.stop_seconds();
        state.SetIterationTime(t);
        total += t;
        benchmark::DoNotOptimize(m);
    }
    state.counters["Mpix/s"] = total > 0 ? static_cast<double>(planes * side * side * state.iterations()) / total / 1e6 : 0.0;
}

void BM_ssim_loss_forward_backward(benchmark::State& state) {
    if (!ready(state)) return;
    const auto planes = state.range(0), side = state.range(1);
    const auto [a, b] = ssim_pair(planes, side);
    const auto o = ssim_window(state.range(2));
    const autograd::Var<float, Cuda> y(b);
    auto step = [&] {
        autograd::Var<float, Cuda> x(a, true);
        auto l = autograd::ssim(x, y, o);
        l.backward();
        return x;
    };
    step();  // warm-up: the allocator caches the scratch sizes
    GpuTimer timer;
    double total = 0.0;
    for (auto _ : state) {
        timer.start();
        const auto x = step();
        const double t = timer.stop_seconds();
        state.SetIterationTime(t);
        total += t;
        benchmark::DoNotOptimize(x.grad().data());
    }
    state.counters["Mpix/s"] = total > 0 ? static_cast<double>(planes * side * side * state.iterations()) / total / 1e6 : 0.0;
}

struct Context {
    Context() {
        if (cuda::device_count() > 0) benchmark::AddCustomContext("gpu", cuda::device_description(cuda::current_device()));
        benchmark::AddCustomContext("cudnn", std::to_string(cudnnGetVersion()));
    }
} context;
}  // namespace

BENCHMARK(BM_resnet18_train_step)->ArgNames({"N", "side", "math"})
    ->Args({64, 224, 0})->Args({64, 224, 1})->Args({64, 224, 2})->Args({256, 224, 0})->Args({256, 224, 1})
    ->Args({256, 224, 2})->Args({256, 224, 3})->Args({256, 224, 4})
    ->Unit(benchmark::kMillisecond)->UseManualTime()->Iterations(20);
BENCHMARK(BM_resnet18_inference)->ArgNames({"N", "side", "math"})
    ->Args({1, 224, 0})->Args({256, 224, 0})->Args({256, 224, 1})->Args({256, 224, 2})
    ->Unit(benchmark::kMillisecond)->UseManualTime()->Iterations(30);
BENCHMARK(BM_ssim_metric)->ArgNames({"planes", "side", "gaussian"})
    ->Args({1, 512, 0})->Args({1, 512, 1})->Args({64, 256, 0})->Args({64, 256, 1})
    ->Unit(benchmark::kMillisecond)->UseManualTime()->Iterations(20);
BENCHMARK(BM_ssim_loss_forward_backward)->ArgNames({"planes", "side", "gaussian"})
    ->Args({64, 256, 0})->Args({64, 256, 1})
    ->Unit(benchmark::kMillisecond)->UseManualTime()->Iterations(20);
