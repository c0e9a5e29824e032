// SPDX-License-Identifier: MIT
// libFuzzer target: data::read_image_from_memory on arbitrary bytes (PNG, JPEG, BMP, PGM/PPM and
// anything else), as stored (channels 0), as gray (1) and as RGB (3), under a small pixel limit.
// Allowed outcomes: a decoded image whose pixels lie in [0, 1], or medimg::Error. Anything else
// (another exception, a crash, a sanitizer report, a leak, a timeout) is a finding.
// Build and run: scripts/fuzz.sh (docs/reliability.md).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "medimg/data/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    medimg::data::ReadOptions opts;
    opts.max_pixels = 1 << 16;  // 256 x 256: keeps each input fast; the limit logic is what is exercised
    for (int channels : {0, 1, 3}) {
        try {
            const auto img = medimg::data::read_image_from_memory(data, size, "fuzz", channels, opts);
            const auto& px = img.pixels;
            if (px.rank() != 3 || (channels != 0 && img.channels() != channels) || (img.channels() != 1 && img.channels() != 3) ||
                static_cast<std::int64_t>(img.width()) * img.height() > opts.max_pixels)
                std::abort();
            for (std::int64_t i = 0; i < px.numel(); ++i)
                if (!(px[i] >= 0.0f && px[i] <= 1.0f)) std::abort();
        } catch (const medimg::Error&) {
            return 0;  // a rejected file is rejected whatever the channel request
        }
    }
    return 0;
}
