// SPDX-License-Identifier: MIT
// libFuzzer target: checkpoint metadata specifically (#22 item 2). fuzz_checkpoint mutates whole
// files, so most of its inputs die in the safetensors structure; here the input is text, one
// `key=value` per line, laid over the metadata medimg-train writes, and the checkpoint is built
// valid around it (a head "fc.weight" with 2 outputs; a line "@head=N" changes N). The values
// then go where the programs send them: io::Checkpoint's checks, train::Preprocessing::from_meta
// (read channels, resize, window, volume slices), the eval transform pipeline, the model options
// and the calibration temperature. Allowed outcomes: success or medimg::Error; anything else is a
// finding, and so is an accepted checkpoint whose values lie outside the config's ranges.
// Build and run: scripts/fuzz.sh 60 fuzz_metadata (docs/reliability.md).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>

#include "medimg/io/checkpoint.hpp"
#include "medimg/train/setup.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace medimg;
    std::map<std::string, std::string> meta{
        {"format", "medimg-checkpoint"}, {"format_version", "1"}, {"architecture", "resnet18"},
        {"classes", "[\"normal\",\"lesao\"]"}, {"in_channels", "1"}, {"image_size", "32"},
        {"normalize_mean", "[0.3]"}, {"normalize_std", "[0.25]"}, {"epoch", "2"}, {"metrics", "{\"val_acc\":0.75}"},
        {"read_channels", "1"}, {"resize", "36"}, {"window", "file"}, {"volume_axis", "axial"}, {"volume_slices", "all"}};
    std::int64_t head = 2;
    const std::string text(reinterpret_cast<const char*>(data), size);
    for (std::size_t pos = 0; pos <= text.size();) {
        std::size_t end = text.find('\n', pos);
        if (end == std::string::npos) end = text.size();
        const std::string line = text.substr(pos, end - pos);
        pos = end + 1;
        const std::size_t eq = line.find('=');
        if (eq == std::string::npos) continue;
        const std::string key = line.substr(0, eq), value = line.substr(eq + 1);
        if (key == "@head") {
            std::int64_t n = 0;
            if (io::parse_integer(value, n) && n >= 0 && n <= 64) head = n;
            continue;
        }
        if (!io::valid_utf8(key) || !io::valid_utf8(value)) continue;  // safetensors metadata is JSON text
        meta[key] = value;
    }
    io::SafetensorsWriter w;
    w.add("fc.weight", Tensor<float, Cpu>::zeros({head, 2}));
    try {
        for (const auto& [k, v] : meta) w.set_metadata(k, v);
    } catch (const medimg::Error&) {
        return 0;  // a key the writer refuses (empty, or the reserved __metadata__): not a checkpoint
    }
    const auto bytes = w.to_bytes();
    try {
        const auto ck = io::Checkpoint::load_from_memory(bytes.data(), bytes.size(), "fuzz");
        const auto& m = ck.meta();
        // What the checks promise: the config's ranges (a finding if an accepted value is outside).
        if (m.in_channels != 1 && m.in_channels != 3) std::abort();
        if (m.image_size < 32 || m.image_size > 4096) std::abort();
        if (static_cast<std::int64_t>(m.classes.size()) != head || m.classes.size() < 2) std::abort();
        if (m.mean.size() != static_cast<std::size_t>(m.in_channels) || m.std.size() != m.mean.size()) std::abort();
        const auto pre = train::Preprocessing::from_meta(m);
        if (pre.resize != data::TransformOptions::no_resize && (pre.resize < pre.image_size || pre.resize > 8192)) std::abort();
        const auto pipeline = pre.eval();  // validates the transform options built from the metadata
        const auto opts = train::model_options(m);
        if (opts.num_classes != head) std::abort();
        (void)train::calibration_temperature(m, "", "fuzz");
        (void)pipeline;
    } catch (const medimg::Error&) {
    }
    return 0;
}
