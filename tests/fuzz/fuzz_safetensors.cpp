// SPDX-License-Identifier: MIT
// libFuzzer target: io::SafetensorsFile::load_from_memory on arbitrary bytes, then every tensor
// read as float and as int64, and the metadata walked. Allowed outcomes: success or medimg::Error;
// anything else (another exception, a crash, a sanitizer report, a leak, a timeout) is a finding.
// Build and run: scripts/fuzz.sh (docs/reliability.md).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "medimg/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        const auto f = medimg::io::SafetensorsFile::load_from_memory(data, size, "fuzz");
        std::size_t total = 0;
        for (const auto& [k, v] : f.metadata()) total += k.size() + v.size();
        for (const auto& key : f.keys()) {
            const auto [begin, end] = f.data_offsets(key);
            if (end < begin || end - begin != static_cast<std::uint64_t>(f.shape(key).numel()) * medimg::io::dtype_size(f.dtype(key)))
                std::abort();
            const auto t = f.tensor<float>(key);
            total += static_cast<std::size_t>(t.numel());
            try {
                total += static_cast<std::size_t>(f.tensor<std::int64_t>(key).numel());
            } catch (const medimg::IoError&) {  // a value that does not fit int64 (NaN, 1e300, ...)
            }
        }
        if (total == static_cast<std::size_t>(-1)) std::abort();  // keeps the reads from being optimised away
    } catch (const medimg::Error&) {
    }
    return 0;
}
