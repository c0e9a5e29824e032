// SPDX-License-Identifier: MIT
// bench_register.cpp: rigid alignment (reg::align, ECC over an image pyramid) of an exam pair at
// 512x512: the first pair of `medimg-phantoms --pairs 1 --size 512 --seed 7` (a phantom, then the
// same phantom with a lesion, turned and shifted, with its own noise), written and read back as the
// program would. benchmarks/compare_register_simpleitk.py times SimpleITK's registration of the
// same files with the same criterion and pyramid.
#include <benchmark/benchmark.h>

#include <filesystem>

#include <medimg/data/image.hpp>
#include <medimg/data/phantom.hpp>
#include <medimg/register/register.hpp>

namespace {
using namespace medimg;

void BM_align_rigid(benchmark::State& state) {
    namespace fs = std::filesystem;
    const auto side = static_cast<int>(state.range(0));
    const fs::path dir = fs::temp_directory_path() / ("medimg-bench-register-" + std::to_string(side));
    fs::remove_all(dir);
    data::write_phantom_pairs(dir.string(), side, 1, 7);
    const auto ref = data::read_image((dir / "0000_reference.png").string(), 1).pixels;
    const auto tgt = data::read_image((dir / "0000_moved_lesion.png").string(), 1).pixels;
    fs::remove_all(dir);
    reg::AlignOptions o;
    o.motion = reg::Motion::rigid;
    double angle = 0;
    for (auto _ : state) {
        const auto a = reg::align(ref, tgt, o);
        angle = a.transform.angle_degrees();
        benchmark::DoNotOptimize(angle);
    }
    state.counters["angle_deg"] = angle;
}
}  // namespace

BENCHMARK(BM_align_rigid)->ArgNames({"side"})->Arg(512)->Unit(benchmark::kMillisecond);
