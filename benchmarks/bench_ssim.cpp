// SPDX-License-Identifier: MIT
// bench_ssim.cpp: metrics::ssim on one-channel float images of 512x512 and 2048x2048, for both
// conventions (uniform: scikit-image's default 7x7, sample covariance; gaussian: Wang et al. 2004,
// 11x11, sigma 1.5) and both outputs (mean: the mean only; map: the mean plus the full map).
// Names BM_ssim_<window>_<mean|map>/<side> (the exact float64 arithmetic) and ..._f32 (SsimOptions::
// arithmetic = float32); benchmarks/compare_ssim_skimage.py runs these against scikit-image's
// structural_similarity on the same sizes. Reports megapixels per second.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>

#include <medimg/core/parallel.hpp>
#include <medimg/core/rng.hpp>
#include <medimg/metrics/ssim.hpp>

namespace {
using namespace medimg;

/// A reference image (smooth waves plus noise) and a distorted copy, float in [0, 1]: (side, side).
struct SsimPair {
    Tensor<float> a, b;
};
SsimPair make_pair(std::int64_t side) {
    SsimPair p{Tensor<float>::empty({side, side}), Tensor<float>::empty({side, side})};
    Rng rng(7);
    for (std::int64_t i = 0; i < side; ++i)
        for (std::int64_t j = 0; j < side; ++j) {
            const double base = 0.5 + 0.25 * std::sin(0.031 * i) * std::cos(0.017 * j);
            const double noise = 0.1 * (rng.uniform() - 0.5);
            p.a[i * side + j] = static_cast<float>(base);
            p.b[i * side + j] = static_cast<float>(std::min(1.0, std::max(0.0, base + noise)));
        }
    return p;
}

void run(benchmark::State& state, metrics::Window window, bool full,
         metrics::Arithmetic arithmetic = metrics::Arithmetic::float64) {
    const std::int64_t side = state.range(0);
    const auto p = make_pair(side);
    metrics::SsimOptions o;
    o.window = window;
    o.full = full;
    o.arithmetic = arithmetic;
    for (auto _ : state) {
        auto r = metrics::ssim(p.a, p.b, o);
        benchmark::DoNotOptimize(r.mean);
        benchmark::DoNotOptimize(r.map);
    }
    state.counters["Mpix/s"] = benchmark::Counter(static_cast<double>(side * side) * 1e-6,
                                                  benchmark::Counter::kIsIterationInvariantRate);
    state.counters["threads"] = num_threads();
    state.SetLabel(metrics::detail::active_isa());  // which compiled loops ran: "avx2+fma" or "baseline"
}

void BM_ssim_uniform_mean(benchmark::State& s) { run(s, metrics::Window::uniform, false); }
void BM_ssim_uniform_map(benchmark::State& s) { run(s, metrics::Window::uniform, true); }
void BM_ssim_gaussian_mean(benchmark::State& s) { run(s, metrics::Window::gaussian, false); }
void BM_ssim_gaussian_map(benchmark::State& s) { run(s, metrics::Window::gaussian, true); }
constexpr auto f32 = metrics::Arithmetic::float32;
void BM_ssim_uniform_mean_f32(benchmark::State& s) { run(s, metrics::Window::uniform, false, f32); }
void BM_ssim_uniform_map_f32(benchmark::State& s) { run(s, metrics::Window::uniform, true, f32); }
void BM_ssim_gaussian_mean_f32(benchmark::State& s) { run(s, metrics::Window::gaussian, false, f32); }
void BM_ssim_gaussian_map_f32(benchmark::State& s) { run(s, metrics::Window::gaussian, true, f32); }

void sizes(benchmark::internal::Benchmark* b) {
    b->ArgName("side")->Arg(512)->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();
}
}  // namespace

BENCHMARK(BM_ssim_uniform_mean)->Apply(sizes);
BENCHMARK(BM_ssim_uniform_map)->Apply(sizes);
BENCHMARK(BM_ssim_gaussian_mean)->Apply(sizes);
BENCHMARK(BM_ssim_gaussian_map)->Apply(sizes);
BENCHMARK(BM_ssim_uniform_mean_f32)->Apply(sizes);
BENCHMARK(BM_ssim_uniform_map_f32)->Apply(sizes);
BENCHMARK(BM_ssim_gaussian_mean_f32)->Apply(sizes);
BENCHMARK(BM_ssim_gaussian_map_f32)->Apply(sizes);
