// SPDX-License-Identifier: MIT
// io/utf8.hpp: UTF-8 checks for text that ends up in JSON (checkpoint metadata, --json output).
// Paths are bytes to medimg (a folder name need not be UTF-8), but JSON strings must be valid
// UTF-8 (RFC 8259 section 8.1), so text headed for JSON is either checked (class names, which
// must round-trip exactly) or written with its invalid bytes spelled out (a config record).
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace medimg::io {

/// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is not one. Follows RFC 3629
/// section 4: no overlong forms, no UTF-16 surrogates (U+D800..U+DFFF), nothing above U+10FFFF.
inline std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = b(i);
    if (c < 0x80) return 1;
    std::size_t n;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c == 0xE0) n = 3, lo = 0xA0;
    else if (c == 0xED) n = 3, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF) n = 3;
    else if (c == 0xF0) n = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) n = 4;
    else if (c == 0xF4) n = 4, hi = 0x8F;
    else return 0;  // 0x80..0xC1 (continuation or overlong lead), 0xF5..0xFF
    if (i + n > s.size() || b(i + 1) < lo || b(i + 1) > hi) return 0;
    for (std::size_t k = 2; k < n; ++k)
        if (b(i + k) < 0x80 || b(i + k) > 0xBF) return 0;
    return n;
}

inline bool valid_utf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t n = utf8_sequence_length(s, i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

/// `s` with each byte that is not part of a valid UTF-8 sequence written as the four characters
/// \xNN (as Python's "backslashreplace" error handler does); valid text is returned unchanged. For
/// records meant to be read by people, not parsed back (a literal "\xFF" in the input reads the same).
inline std::string escape_invalid_utf8(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t n = utf8_sequence_length(s, i);
        if (n == 0) {
            char hex[5];
            std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned char>(s[i]));
            out += hex;
            ++i;
        } else {
            out.append(s, i, n);
            i += n;
        }
    }
    return out;
}

}  // namespace medimg::io
