// SPDX-License-Identifier: MIT
// io/text.hpp: reading a number that a person typed (a command-line value) or that a file holds as
// text (checkpoint metadata): all of the text must be the number, so "0.5x", "", " 5", "0x10",
// "inf" and "1e999" are refused instead of read as 0.5, 0, 5, 16, infinity or HUGE_VAL. The
// parsers return false and never throw, so a caller's message names its own flag or key (std::stod
// and std::stoll throw exceptions whose text, "stod" or "stoll", is no message for a user).
// The programs' option parsers share it (examples/cli.hpp, metrics/compare.hpp), and
// io/checkpoint.hpp reads its integer metadata with it.
#pragma once

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace medimg::io {

namespace detail {
/// True when `t` is a plain decimal number: [+-] digits [. digits] [(e|E) [+-] digits], with at
/// least one digit before the exponent. Hexadecimal, "inf", "nan" and white space are not.
inline bool decimal_syntax(std::string_view t) {
    std::size_t i = 0, digits = 0;
    auto digit = [&](std::size_t k) { return k < t.size() && std::isdigit(static_cast<unsigned char>(t[k])); };
    if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
    while (digit(i)) ++i, ++digits;
    if (i < t.size() && t[i] == '.') {
        ++i;
        while (digit(i)) ++i, ++digits;
    }
    if (digits == 0) return false;
    if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
        ++i;
        if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
        if (!digit(i)) return false;
        while (digit(i)) ++i;
    }
    return i == t.size();
}
}  // namespace detail

/// True, with `value` set, when the whole of `text` is one finite decimal number (detail::decimal_syntax).
inline bool parse_number(const std::string& text, double& value) {
    if (!detail::decimal_syntax(text)) return false;
    errno = 0;
    char* end = nullptr;
    const double x = std::strtod(text.c_str(), &end);
    // ERANGE with a huge result is an overflow ("1e999"); an underflow to (nearly) 0 is a number.
    if (end != text.c_str() + text.size() || !std::isfinite(x) || (errno == ERANGE && std::fabs(x) > 1.0)) return false;
    value = x;
    return true;
}

/// True, with `value` set, when the whole of `text` is a whole number ([+-] digits) that fits int64.
inline bool parse_integer(const std::string& text, std::int64_t& value) {
    std::size_t i = text.size() && (text[0] == '+' || text[0] == '-') ? 1 : 0;
    if (i == text.size()) return false;
    for (std::size_t k = i; k < text.size(); ++k)
        if (!std::isdigit(static_cast<unsigned char>(text[k]))) return false;
    errno = 0;
    const long long x = std::strtoll(text.c_str(), nullptr, 10);
    if (errno == ERANGE) return false;
    value = static_cast<std::int64_t>(x);
    return true;
}

/// `text` cut to at most `max` bytes (with "..." after the cut), for quoting a value in a message.
inline std::string clipped(const std::string& text, std::size_t max = 60) {
    return text.size() <= max ? text : text.substr(0, max) + "...";
}

}  // namespace medimg::io
