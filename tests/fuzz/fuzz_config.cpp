// SPDX-License-Identifier: MIT
// libFuzzer target: io::parse_config on arbitrary bytes, once as the YAML text of a config file and
// once as a `--set key=value` override; an accepted config must survive to_yaml -> parse_config
// unchanged. Allowed outcomes: success or medimg::Error (ConfigError); anything else (a yaml-cpp
// exception escaping, a crash, a stack overflow, a sanitizer report, a leak, a timeout) is a
// finding. Build and run: scripts/fuzz.sh (docs/reliability.md).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "medimg/io/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    medimg::io::Config c;
    try {
        c = medimg::io::parse_config(text, "fuzz.yaml");
    } catch (const medimg::Error&) {
        c.source.clear();  // rejected: nothing to round-trip
    }
    if (!c.source.empty()) {
        try {
            const std::string yaml = medimg::io::to_yaml(c);
            const auto again = medimg::io::parse_config(yaml, "round-trip.yaml");
            if (medimg::io::to_yaml(again) != yaml) std::abort();  // the round trip changed a value
        } catch (const medimg::Error&) {
            std::abort();  // what to_yaml wrote does not read back
        }
    }
    try {
        medimg::io::parse_config("", "fuzz.yaml", {text});
    } catch (const medimg::Error&) {
    }
    return 0;
}
