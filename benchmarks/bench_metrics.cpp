// SPDX-License-Identifier: MIT
// bench_metrics.cpp: the evaluation figures on large score sets: ROC AUC with DeLong's variance
// (Sun & Xu's O(n log n) algorithm) on 100,000 scores, and a 2,000-replicate stratified bootstrap
// of the AUC on 1,000. benchmarks/compare_metrics_sklearn.py times scikit-learn's roc_auc_score on
// the same sizes.
#include <benchmark/benchmark.h>

#include <medimg/metrics/intervals.hpp>

namespace {
using namespace medimg;

void scores(std::int64_t n, std::vector<double>& s, std::vector<bool>& pos) {
    Rng rng(3);
    s.resize(static_cast<std::size_t>(n));
    pos.resize(static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < s.size(); ++i) {
        pos[i] = i % 4 == 0;
        s[i] = rng.normal(pos[i] ? 1.0 : 0.0, 1.0);
    }
}

void BM_delong_auc(benchmark::State& state) {
    std::vector<double> s;
    std::vector<bool> pos;
    scores(state.range(0), s, pos);
    for (auto _ : state) {
        auto d = metrics::delong_auc(s, pos);
        benchmark::DoNotOptimize(d.variance);
    }
}

void BM_bootstrap_auc(benchmark::State& state) {
    std::vector<double> s;
    std::vector<bool> pos;
    scores(state.range(0), s, pos);
    for (auto _ : state) {
        auto b = metrics::bootstrap_auc(s, pos, state.range(1), 1);
        benchmark::DoNotOptimize(b.lo);
    }
}
}  // namespace

BENCHMARK(BM_delong_auc)->ArgNames({"n"})->Arg(100000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_bootstrap_auc)->ArgNames({"n", "B"})->Args({1000, 2000})->Unit(benchmark::kMillisecond);
