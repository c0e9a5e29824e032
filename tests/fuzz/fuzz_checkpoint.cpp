// SPDX-License-Identifier: MIT
// libFuzzer target: io::Checkpoint::load_from_memory on arbitrary bytes (safetensors parsing plus
// the checkpoint metadata: JSON lists, numbers, the format tag), then the model and optimizer
// state read as float. (Loading into a ResNet is left out: it would cost ~100 ms per input; the
// shape checks of load_into are covered by the unit tests.) Allowed outcomes: success or
// medimg::Error; anything else is a finding. Build and run: scripts/fuzz.sh (docs/reliability.md).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "medimg/io/checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        const auto ck = medimg::io::Checkpoint::load_from_memory(data, size, "fuzz");
        std::size_t total = ck.meta().classes.size() + ck.meta().mean.size() + ck.meta().extra.size();
        for (const auto& [k, t] : ck.model_state<float>()) total += static_cast<std::size_t>(t.numel());
        for (const auto& [k, t] : ck.optimizer_state<float>()) total += static_cast<std::size_t>(t.numel());
        if (total == static_cast<std::size_t>(-1)) std::abort();
    } catch (const medimg::Error&) {
    }
    return 0;
}
