// SPDX-License-Identifier: MIT
// bench_formats.cpp: reading medical files as the data pipeline does (docs/formats.md), for
// benchmarks/compare_formats.py, which writes the files with pydicom / nibabel and times the same
// work in Python: a DICOM CT slice read (GDCM) and windowed to [0, 1] (BM_dicom_read_window), and
// one axial slice of a NIfTI volume, the volume read whole, scaled and reoriented to RAS+ first
// (BM_nifti_read_slice). The files come from the environment (MEDIMG_BENCH_DICOM,
// MEDIMG_BENCH_NIFTI); without them the benchmark says so and is skipped.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>

#include <medimg/medimg.hpp>
#if defined(MEDIMG_WITH_DICOM)
#  include <medimg/io/dicom.hpp>
#endif
#if defined(MEDIMG_WITH_NIFTI)
#  include <medimg/io/nifti.hpp>
#endif

namespace {
using namespace medimg;

const char* file_from(const char* var, benchmark::State& state) {
    const char* f = std::getenv(var);
    if (!f || !*f) state.SkipWithError((std::string(var) + " is not set (benchmarks/compare_formats.py sets it)").c_str());
    return f;
}

#if defined(MEDIMG_WITH_DICOM)
void BM_dicom_read_window(benchmark::State& state) {
    const char* f = file_from("MEDIMG_BENCH_DICOM", state);
    if (!f) return;
    const auto brain = data::IntensitySetting::parse("brain");
    for (auto _ : state) {
        const auto x = io::read_dicom(f).to_unit(brain);
        benchmark::DoNotOptimize(x.data());
    }
}
BENCHMARK(BM_dicom_read_window)->Unit(benchmark::kMillisecond)->UseRealTime();
#endif

#if defined(MEDIMG_WITH_NIFTI)
void BM_nifti_read_slice(benchmark::State& state) {
    const char* f = file_from("MEDIMG_BENCH_NIFTI", state);
    if (!f) return;
    for (auto _ : state) {
        const auto v = io::read_nifti(f);
        const auto s = io::nifti_slice(v, 2, v.values.size(2) / 2);
        benchmark::DoNotOptimize(s.data());
    }
}
BENCHMARK(BM_nifti_read_slice)->Unit(benchmark::kMillisecond)->UseRealTime();
#endif

}  // namespace
