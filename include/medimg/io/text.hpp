// SPDX-License-Identifier: MIT
// io/text.hpp: reading a number that a person typed (a command-line value): all of the text must
// be the number, so "0.5x", "" and "1e999" are refused instead of read as 0.5, 0 and infinity.
// The programs' option parsers share it (examples/cli.hpp, metrics/compare.hpp).
#pragma once

#include <cmath>
#include <exception>
#include <string>

namespace medimg::io {

/// True, with `value` set, when the whole of `text` is one finite number (std::stod's syntax).
inline bool parse_number(const std::string& text, double& value) {
    std::size_t used = 0;
    double x = 0;
    try {
        x = std::stod(text, &used);
    } catch (const std::exception&) {
        return false;
    }
    if (used != text.size() || !std::isfinite(x)) return false;
    value = x;
    return true;
}

}  // namespace medimg::io
