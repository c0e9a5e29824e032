// SPDX-License-Identifier: MIT
// libFuzzer target: io::TorchStateDict::load_from_memory on arbitrary bytes (the ZIP reader, the
// restricted unpickler, the storage and view checks), then every tensor read as float and as
// int64, and the same bytes through io::WeightsFile (the format chosen by the first bytes).
// Differential check of the structure-first path that TorchStateDict::load takes on a file:
// io::ZipArchive::check_layout, reading pieces of the bytes, must accept exactly the archives the
// in-memory ZipArchive accepts and refuse the others with the same message (else abort).
// Allowed outcomes: success or medimg::Error; anything else (another exception, a crash, a
// sanitizer report, a leak, a timeout) is a finding. The inflation cap is lowered to 64 MiB so a
// bomb that slips past the checks shows as out-of-memory. Build and run: scripts/fuzz.sh
// (docs/reliability.md).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "medimg/io/torch_pth.hpp"
#include "medimg/io/weights_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::size_t total = 0;
    {
        std::string in_memory = "ok", in_pieces = "ok";
        try {
            medimg::io::ZipArchive zip(data, size, "fuzz", "pth");
        } catch (const medimg::Error& e) {
            in_memory = e.what();
        }
        try {
            medimg::io::ZipArchive::check_layout(
                size,
                [&](std::uint64_t off, std::uint64_t n, std::vector<std::uint8_t>& out) {
                    if (off > size || n > size - off) std::abort();  // a read outside the file: a finding
                    out.insert(out.end(), data + off, data + off + n);
                },
                "fuzz", "pth");
        } catch (const medimg::Error& e) {
            in_pieces = e.what();
        }
        if (in_memory != in_pieces) std::abort();
    }
    try {
        medimg::io::ZipLimits limits;
        limits.max_inflated_bytes = std::uint64_t{64} << 20;
        const auto f = medimg::io::TorchStateDict::load_from_memory(data, size, "fuzz", limits);
        for (const auto& key : f.keys()) {
            const auto shape = f.shape(key);
            const auto t = f.tensor<float>(key);
            if (t.shape() != shape || f.stride(key).size() != static_cast<std::size_t>(shape.rank())) std::abort();
            total += static_cast<std::size_t>(t.numel());
            try {
                total += static_cast<std::size_t>(f.tensor<std::int64_t>(key).numel());
            } catch (const medimg::IoError&) {  // a value that does not fit int64 (NaN, 1e300, ...)
            }
        }
    } catch (const medimg::Error&) {
    }
    try {
        const auto w = medimg::io::WeightsFile::load_from_memory(std::vector<std::uint8_t>(data, data + size), "fuzz");
        for (const auto& key : w.keys()) total += static_cast<std::size_t>(w.tensor<float>(key).numel());
    } catch (const medimg::Error&) {
    }
    if (total == static_cast<std::size_t>(-1)) std::abort();  // keeps the reads from being optimised away
    return 0;
}
