// SPDX-License-Identifier: MIT
// bench_conv2d.cpp: the CPU convolution kernels on every ResNet18 convolution shape at batch 8,
// plus the one-channel 256x256 medical stem. Reports GFLOP/s (2 * N * C_out * Ho * Wo * C_in * kH
// * kW per pass) and that as a percentage of the machine's fp32 FMA peak on the same threads,
// measured here (BM_fma_peak). The 3x3 stride-1 layers also at batch 32, with Winograd's default
// tile choice and with F(2x2) forced (_f2). Args: N, C_in, H, W, C_out, k, stride, pad.
#include <benchmark/benchmark.h>

#include <chrono>
#include <utility>
#if defined(__x86_64__)
#  include <immintrin.h>
#endif

#include <medimg/medimg.hpp>

namespace {
using namespace medimg;

// ---- the FMA peak: 12 independent chains of fused multiply-adds per thread (more than the FMA
// latency x throughput product of current x86 cores), the widest vectors the processor has ----
#if defined(__x86_64__)
__attribute__((target("avx512f"), noinline)) float fma_chains_avx512(long iters) {
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    __m512 a[12];
    for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(0.1f * static_cast<float>(i + 1));  // distinct: no chain merged
    for (long it = 0; it < iters; ++it)
#  pragma GCC unroll 12
        for (int i = 0; i < 12; ++i) a[i] = _mm512_fmadd_ps(a[i], m, c);
    for (int i = 1; i < 12; ++i) a[0] = _mm512_add_ps(a[0], a[i]);
    alignas(64) float out[16];
    _mm512_store_ps(out, a[0]);
    return out[0];
}
__attribute__((target("avx2,fma"), noinline)) float fma_chains_avx2(long iters) {
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    __m256 a[12];
    for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(0.1f * static_cast<float>(i + 1));
    for (long it = 0; it < iters; ++it)
#  pragma GCC unroll 12
        for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], m, c);
    for (int i = 1; i < 12; ++i) a[0] = _mm256_add_ps(a[0], a[i]);
    alignas(32) float out[8];
    _mm256_store_ps(out, a[0]);
    return out[0];
}
#endif

/// GFLOP/s of `threads` threads running the chains at once (0 where no AVX2/AVX-512 exists).
double fma_peak_gflops(int threads) {
#if defined(__x86_64__)
    const auto isa = cpu::sgemm::detect_isa();
    if (isa == cpu::sgemm::Isa::none) return 0.0;
    const long iters = 20'000'000;
    const double lanes = isa == cpu::sgemm::Isa::avx512 ? 16.0 : 8.0;
    volatile float sink = 0.0f;
    const auto t0 = std::chrono::steady_clock::now();
#  ifdef _OPENMP
#    pragma omp parallel num_threads(threads)
#  endif
    {
        const float r = isa == cpu::sgemm::Isa::avx512 ? fma_chains_avx512(iters) : fma_chains_avx2(iters);
        sink = sink + r;
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return threads * iters * 12.0 * lanes * 2.0 / s * 1e-9;
#else
    (void)threads;
    return 0.0;
#endif
}

/// The peak on num_threads() threads, measured once (best of three short runs).
double measured_peak() {
    static const double peak = [] {
        double best = 0.0;
        for (int r = 0; r < 3; ++r) best = std::max(best, fma_peak_gflops(num_threads()));
        return best;
    }();
    return peak;
}

void BM_fma_peak(benchmark::State& state) {
    double g = 0.0;
    for (auto _ : state) g = fma_peak_gflops(num_threads());
    state.counters["GFLOP/s"] = g;
    state.counters["threads"] = num_threads();
}

void report(benchmark::State& state, double flops) {
    state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    if (measured_peak() > 0)
        state.counters["%peak"] = benchmark::Counter(flops * 1e-9 * 100.0 / measured_peak(), benchmark::Counter::kIsIterationInvariantRate);
}

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
    report(state, a.flops);
}
void BM_conv2d_backward_data(benchmark::State& state) {
    auto a = setup(state);
    for (auto _ : state) {
        ops::conv2d_backward_data(a.dy, a.w, a.dx, a.p);
        benchmark::DoNotOptimize(a.dx.data());
    }
    report(state, a.flops);
}
/// The 3x3 stride-1 shapes again with Winograd off (im2col + GEMM), for the A/B in one run. The
/// Winograd rows' GFLOP/s and %peak count the direct convolution's multiply-adds ("effective"),
/// so they can pass 100%.
template <void (*Op)(benchmark::State&)>
void im2col_only(benchmark::State& state) {
    auto& mode = cpu::winograd::mode();
    mode = cpu::winograd::Mode::never;
    Op(state);
    mode = cpu::winograd::Mode::automatic;
}
void BM_conv2d_forward_im2col(benchmark::State& state) { im2col_only<BM_conv2d_forward>(state); }
void BM_conv2d_backward_data_im2col(benchmark::State& state) { im2col_only<BM_conv2d_backward_data>(state); }

void BM_conv2d_backward_filter(benchmark::State& state) {
    auto a = setup(state);
    for (auto _ : state) {
        ops::conv2d_backward_filter(a.x, a.dy, a.dw, a.p);
        benchmark::DoNotOptimize(a.dw.data());
    }
    report(state, a.flops);
}
/// The same with Winograd's largest tile set to 2 (F(2x2, 3x3) wherever Winograd runs; what
/// MEDIMG_WINOGRAD_TILE=2 sets), against the default that takes F(4x4, 3x3) where its tiles fill an
/// image group: the A/B of benchmarks/RESULTS.md's "Winograd F(4x4, 3x3)".
template <void (*Op)(benchmark::State&)>
void f2_only(benchmark::State& state) {
    auto& tile = cpu::winograd::max_tile();
    const int before = tile;
    tile = 2;
    Op(state);
    tile = before;
}
void BM_conv2d_forward_f2(benchmark::State& state) { f2_only<BM_conv2d_forward>(state); }
void BM_conv2d_backward_data_f2(benchmark::State& state) { f2_only<BM_conv2d_backward_data>(state); }
void BM_conv2d_backward_filter_f2(benchmark::State& state) { f2_only<BM_conv2d_backward_filter>(state); }

void resnet18_shapes(benchmark::internal::Benchmark* b) {
    b->ArgNames({"N", "Cin", "H", "W", "Cout", "k", "s", "p"});
    b->Args({8, 3, 224, 224, 64, 7, 2, 3});   // stem
    b->Args({8, 64, 56, 56, 64, 3, 1, 1});    // layer1
    b->Args({8, 64, 56, 56, 128, 3, 2, 1});   // layer2, first conv
    b->Args({8, 64, 56, 56, 128, 1, 2, 0});   // layer2 downsample
    b->Args({8, 128, 28, 28, 128, 3, 1, 1});  // layer2
    b->Args({8, 128, 28, 28, 256, 3, 2, 1});  // layer3, first conv
    b->Args({8, 128, 28, 28, 256, 1, 2, 0});  // layer3 downsample
    b->Args({8, 256, 14, 14, 256, 3, 1, 1});  // layer3
    b->Args({8, 256, 14, 14, 512, 3, 2, 1});  // layer4, first conv
    b->Args({8, 256, 14, 14, 512, 1, 2, 0});  // layer4 downsample
    b->Args({8, 512, 7, 7, 512, 3, 1, 1});    // layer4
    b->Args({8, 1, 256, 256, 64, 7, 2, 3});   // one-channel medical stem
    b->Unit(benchmark::kMillisecond)->UseRealTime();
}
void resnet18_3x3_stride1_shapes(benchmark::internal::Benchmark* b) {
    b->ArgNames({"N", "Cin", "H", "W", "Cout", "k", "s", "p"});
    b->Args({8, 64, 56, 56, 64, 3, 1, 1});
    b->Args({8, 128, 28, 28, 128, 3, 1, 1});
    b->Args({8, 256, 14, 14, 256, 3, 1, 1});
    b->Args({8, 512, 7, 7, 512, 3, 1, 1});
    b->Unit(benchmark::kMillisecond)->UseRealTime();
}
/// ResNet18's 3x3 stride-1 layers at the training batch (32) and 224x224 input.
void resnet18_3x3_stride1_batch32_shapes(benchmark::internal::Benchmark* b) {
    b->ArgNames({"N", "Cin", "H", "W", "Cout", "k", "s", "p"});
    for (const auto& [c, h] : {std::pair{64, 56}, std::pair{128, 28}, std::pair{256, 14}, std::pair{512, 7}})
        b->Args({32, c, h, h, c, 3, 1, 1});
    b->Unit(benchmark::kMillisecond)->UseRealTime();
}
}  // namespace

BENCHMARK(BM_fma_peak)->Iterations(3)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_conv2d_forward)->Apply(resnet18_shapes);
BENCHMARK(BM_conv2d_backward_data)->Apply(resnet18_shapes);
BENCHMARK(BM_conv2d_backward_filter)->Apply(resnet18_shapes);
BENCHMARK(BM_conv2d_forward_im2col)->Apply(resnet18_3x3_stride1_shapes);
BENCHMARK(BM_conv2d_backward_data_im2col)->Apply(resnet18_3x3_stride1_shapes);
BENCHMARK(BM_conv2d_forward)->Apply(resnet18_3x3_stride1_batch32_shapes);
BENCHMARK(BM_conv2d_forward_f2)->Apply(resnet18_3x3_stride1_batch32_shapes);
BENCHMARK(BM_conv2d_backward_data)->Apply(resnet18_3x3_stride1_batch32_shapes);
BENCHMARK(BM_conv2d_backward_data_f2)->Apply(resnet18_3x3_stride1_batch32_shapes);
BENCHMARK(BM_conv2d_backward_filter)->Apply(resnet18_3x3_stride1_batch32_shapes);
BENCHMARK(BM_conv2d_backward_filter_f2)->Apply(resnet18_3x3_stride1_batch32_shapes);
