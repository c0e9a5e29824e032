// SPDX-License-Identifier: MIT
// bench_loader.cpp: the input pipeline's throughput: decode a 512x512 16-bit grayscale PNG,
// then the training recipe (RandomResizedCrop 224, flip, replicate to 3 channels, normalize),
// through DataLoader with 0 (inline), 1 and 2 workers, batch 32. Reports images per second,
// to set against the training step's consumption (BM_resnet18_train_step at 224).
#include <benchmark/benchmark.h>

#include <filesystem>

#include <medimg/medimg.hpp>

namespace {
using namespace medimg;
namespace fs = std::filesystem;

const data::FolderDataset& dataset() {
    static const data::FolderDataset ds = [] {
        const fs::path root = fs::temp_directory_path() / "medimg-bench-loader";
        fs::remove_all(root);
        const std::int64_t counts[3] = {128, 2, 2};
        data::write_phantom_dataset(root.string(), 512, counts, 1);
        return data::FolderDataset::scan((root / "train").string(), {"normal", "lesao"});
    }();
    return ds;
}

void BM_loader_epoch(benchmark::State& state) {
    const auto& ds = dataset();
    data::TransformOptions t;
    t.image_size = 224;
    t.channels = 3;
    const auto pipeline = data::train_pipeline(t);
    data::LoaderOptions o;
    o.batch_size = 32;
    o.workers = static_cast<int>(state.range(0));
    data::DataLoader loader(ds.labels(), [&](std::int64_t i, Rng& rng) { return pipeline(data::read_image(ds.path(i), 1).pixels, rng); }, o);
    std::int64_t epoch = 0, images = 0;
    for (auto _ : state) {
        loader.start_epoch(epoch++);
        while (auto b = loader.next()) {
            images += b->labels.numel();
            benchmark::DoNotOptimize(b->images.data());
        }
    }
    state.counters["img/s"] = benchmark::Counter(static_cast<double>(images), benchmark::Counter::kIsRate);
}
}  // namespace

BENCHMARK(BM_loader_epoch)->ArgName("workers")->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
