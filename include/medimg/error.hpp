// SPDX-License-Identifier: MIT
// error.hpp: the exception family and the always-on argument check.
// Every message starts with the API name (a greppable prefix) and prints the values at fault:
//   "conv2d_forward: input has 3 channels but weight expects 1 (input [8,3,224,224], weight [64,1,7,7])".
// The library throws and never calls exit(); programs catch at main and print one line.
// One line is kept by construction: Error escapes control characters in its message (a file name
// may hold a newline), and current_exception_message() gives programs one line for any exception.
#pragma once

#include <exception>
#include <new>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "medimg/io/utf8.hpp"  // a leaf (no medimg includes): error.hpp stays the base of every header

namespace medimg {

/// `text` with every control character written as \xNN, so that a message quoting a path or a
/// value stays one line and cannot drive the terminal: C0 (0x00-0x1f: newline, carriage return,
/// tab, escape), DEL (0x7f) and C1 (U+0080..U+009F, which is 0xc2 0x80..0x9f in UTF-8; a lone byte
/// 0x80..0x9f that is not part of a UTF-8 sequence, which some terminals read as C1, e.g. 0x9b CSI).
/// Everything else stays as it is, other bytes that are not UTF-8 included: a path is bytes to
/// medimg, and a message shows them (docs/errors.md). Idempotent (a backslash is not escaped).
inline std::string escape_controls(std::string_view text) {
    static const char* hex = "0123456789abcdef";
    std::string out;
    out.reserve(text.size());
    auto escape = [&](unsigned char c) {
        out += "\\x";
        out += hex[c >> 4];
        out += hex[c & 15];
    };
    for (std::size_t i = 0; i < text.size();) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f) escape(c);
            else out += static_cast<char>(c);
            ++i;
            continue;
        }
        const std::size_t n = io::utf8_sequence_length(text, i);
        if (n == 0) {  // not UTF-8: shown as it is, unless it is a C1 byte
            if (c <= 0x9f) escape(c);
            else out += static_cast<char>(c);
            ++i;
        } else if (n == 2 && c == 0xc2 && static_cast<unsigned char>(text[i + 1]) <= 0x9f) {  // U+0080..U+009F
            escape(c);
            escape(static_cast<unsigned char>(text[i + 1]));
            i += 2;
        } else {
            out.append(text, i, n);
            i += n;
        }
    }
    return out;
}

/// Base of every exception medimg throws. The message is kept to one line (escape_controls).
class Error : public std::runtime_error {
public:
    explicit Error(const std::string& what) : std::runtime_error(escape_controls(what)) {}
};
/// Thrown when tensor ranks or dimensions do not fit an operation.
class ShapeError : public Error { using Error::Error; };
/// Thrown for a device mismatch or an unsupported backend/dtype combination.
class BackendError : public Error { using Error::Error; };
/// Thrown when the CUDA runtime, cuDNN or cuBLAS reports a failure.
class CudaError : public Error { using Error::Error; };
/// Thrown when a file cannot be read, written or parsed (images, checkpoints, safetensors, CSV).
class IoError : public Error { using Error::Error; };
/// Thrown for a bad configuration key, type or value (YAML config, command-line overrides, options).
class ConfigError : public Error { using Error::Error; };
/// Thrown for an invalid argument value (negative learning rate, zero stride, ...).
class ValueError : public Error { using Error::Error; };

namespace detail {
/// Streams every argument into one string; used to build messages without a format library.
template <class... Args>
std::string concat(Args&&... args) {
    std::ostringstream os;
    (os << ... << std::forward<Args>(args));
    return os.str();
}
}  // namespace detail

/// The one line a program prints for the exception being handled; call it inside a catch block
/// (examples/cli.hpp's cli::fail, metrics::run_compare). A medimg::Error's message is printed as
/// it is. Anything else reaching a program's main is a gap in medimg's own checks: its text is not
/// meant for users ("stoi", "map::at", "std::bad_alloc"), so it is named for what it is and kept to
/// one line. Out of memory gets its own words: some inputs legitimately need more than a machine has.
inline std::string current_exception_message() {
    try {
        throw;
    } catch (const Error& e) {
        return e.what();
    } catch (const std::bad_alloc&) {
        return "out of memory: this input and these settings need more memory than the system would give "
               "(a smaller image size, batch size or data set needs less)";
    } catch (const std::exception& e) {
        return escape_controls(std::string("unexpected error, not a medimg message (please report it): ") + e.what());
    } catch (...) {
        return "unexpected error of an unknown type (please report it)";
    }
}
}  // namespace medimg

/// Always-on check for the front door: MEDIMG_CHECK(cond, ShapeError, "fn: ", what, ...).
#define MEDIMG_CHECK(cond, ErrorType, ...)                                   \
    do {                                                                     \
        if (!(cond)) throw ::medimg::ErrorType(::medimg::detail::concat(__VA_ARGS__)); \
    } while (0)

/// Debug-only invariant for hot loops; compiled out under NDEBUG.
#ifdef NDEBUG
#  define MEDIMG_ASSERT(cond) ((void)0)
#else
#  include <cassert>
#  define MEDIMG_ASSERT(cond) assert(cond)
#endif
