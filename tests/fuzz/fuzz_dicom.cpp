// SPDX-License-Identifier: MIT
// libFuzzer target: io::read_dicom_from_memory on arbitrary bytes, under small limits, then the
// unit-range conversion with the file's own window and with min-max. Allowed outcomes: an image
// whose shape matches its attributes and whose [0, 1] values are in [0, 1] (NaN only where the
// stored data makes the rescale non-finite, which the reader refuses), or medimg::Error.
// Anything else (another exception, an abort inside GDCM, a sanitizer report, a leak, a timeout,
// more than the RSS limit) is a finding. Build and run: scripts/fuzz.sh 300 fuzz_dicom.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "medimg/io/dicom.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    medimg::io::DicomLimits limits;
    limits.max_values = 1 << 18;
    try {
        const auto im = medimg::io::read_dicom_from_memory(data, size, "fuzz", limits);
        if (im.stored.rank() != 4 || im.stored.size(0) != im.frames || im.stored.size(1) != im.samples ||
            im.stored.size(2) != im.rows || im.stored.size(3) != im.columns || im.stored.numel() > limits.max_values)
            std::abort();
        for (const char* setting : {"file", "minmax"}) {
            try {
                const auto u = im.to_unit(medimg::data::IntensitySetting::parse(setting));
                for (std::int64_t i = 0; i < u.numel(); ++i)
                    if (!(u.data()[i] >= 0.0f && u.data()[i] <= 1.0f)) std::abort();
            } catch (const medimg::Error&) {
            }
        }
    } catch (const medimg::Error&) {
    }
    return 0;
}
